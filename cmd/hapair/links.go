package main

import (
	"context"
	"slices"

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

// followLinks re-evaluates every instance whenever a link changes state, until ctx is done.
// Instances read their tracked links from their current configuration, so a track_interface
// or dont_track_primary changed by a reload applies with the reload's own re-evaluation.
func (d *daemon) followLinks(ctx context.Context) {
	if err := d.links.Watch(ctx, d.refreshPriorities); err != nil {
		d.log.Error("Following link state failed: tracked interfaces keep their last known state", "err", err)
	}
}

// refreshPriorities is updatePriorities with the current checks runner's results.
func (d *daemon) refreshPriorities() {
	d.mu.Lock()
	runner := d.checks
	d.mu.Unlock()
	d.updatePriorities(runner.Up())
}
