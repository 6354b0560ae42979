package main

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/hapair/hapair/cmd/internal/config"
)

// trackedLinks are the interfaces whose link going down puts an instance in FAULT: its own
// interface, as keepalived does unless dont_track_primary is set, and its track_interface
// entries.
func trackedLinks(ic config.Instance) []string {
	out := slices.Clone(ic.TrackInterfaces)
	if !ic.DontTrackPrimary && !slices.Contains(out, ic.Interface) {
		out = append(out, ic.Interface)
	}
	return out
}

// Waits before subscribing to link notifications again after the subscription ended: the first
// short, since a lost subscription is mostly a burst of link events (ENOBUFS) that is over by
// then, doubling while subscribing fails. No jitter: nothing else on the host waits in step.
const (
	linkWatchRetry    = 100 * time.Millisecond
	linkWatchMaxRetry = 5 * time.Second
)

// followLinks re-evaluates every instance whenever a link changes state, until ctx is done.
// Instances read their tracked links from their current configuration, so a track_interface
// or dont_track_primary changed by a reload applies with the reload's own re-evaluation.
//
// The netlink subscription ends at its first error (the kernel dropped notifications when a
// burst of link events filled the socket's buffer): followLinks subscribes again, and Watch
// reads every link once subscribed, so that a link that went down meanwhile still faults its
// instances, as keepalived re-reads its links after a netlink error. Until then the tracked
// links keep their last known state.
func (d *daemon) followLinks(ctx context.Context) {
	wait := linkWatchRetry
	changed := d.linksChanged
	for {
		began := time.Now()
		err := d.links.Watch(ctx, changed)
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) >= linkWatchMaxRetry {
			wait = linkWatchRetry // it had been working: a new loss, not the same one going on
		}
		d.log.Warn("Following link state failed, subscribing again: tracked interfaces keep their last known state until then", "err", err, "retry", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, linkWatchMaxRetry)
		var again sync.Once // Watch calls changed first once it has read every link
		changed = func() {
			again.Do(func() { d.log.Info("Following link state again, every link read anew") })
			d.linksChanged()
		}
	}
}
