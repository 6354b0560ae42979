package checks

import "sort"

const (
	priorityOwner = 255 // VRRP address owner
	priorityMax   = 254 // highest priority a non-owner (or a weighted-down owner) can have
	priorityMin   = 1
)

// EffectivePriority combines an instance's base priority with the weights of its
// tracked checks, as keepalived does for track_script:
//
//   - a failing check with a negative weight adds it (110 - 20 = 90);
//   - a passing check with a positive weight adds it;
//   - a failing check with weight 0 puts the instance in FAULT (fault is true and
//     faultBy names the first such check in name order);
//   - the result is clamped to 1..254. An address owner (base 255) stays 255 unless
//     a negative weight applies; then it is clamped like any other priority, so that
//     an owner whose HAProxy is dead can lose the VIP. keepalived ignores weights for
//     an owner altogether; hapair deliberately does not.
//
// up holds the tracked status of every known check, pending ones as false. A name in
// track that is not in up is unknown (configuration validation rejects those) and is
// ignored rather than guessed at.
func EffectivePriority(base uint8, track map[string]int, up map[string]bool) (prio uint8, fault bool, faultBy string) {
	names := make([]string, 0, len(track))
	for name := range track {
		names = append(names, name)
	}
	sort.Strings(names)

	total := int(base)
	lowered := false
	for _, name := range names {
		weight := track[name]
		passing, known := up[name]
		if !known {
			continue
		}
		switch {
		case weight == 0 && !passing:
			if !fault {
				fault, faultBy = true, name
			}
		case weight < 0 && !passing:
			total += weight
			lowered = true
		case weight > 0 && passing:
			total += weight
		}
	}
	if base == priorityOwner && !lowered {
		return priorityOwner, fault, faultBy
	}
	return uint8(min(max(total, priorityMin), priorityMax)), fault, faultBy
}
