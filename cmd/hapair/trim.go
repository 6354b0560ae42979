package main

import (
	"os"
	"runtime/debug"
	"time"

	"github.com/hapair/hapair/internal/residency"
	"github.com/hapair/hapair/vrrp"
)

// trimEnv, set to 0, keeps the executable's pages resident (see package residency).
const trimEnv = "HAPAIR_TRIM_TEXT"

// trimExecutable gives back the heap's free pages and the executable's pages that start-up
// touched, once every instance has settled: at that point what the daemon runs from now on has
// run at least once, and start-up's share (package initialisation, configuration, the
// metrics' set-up) is behind it. About 20 MiB of a 23.5 MiB resident binary go; what runs
// later comes back page by page.
func (d *daemon) trimExecutable() {
	if os.Getenv(trimEnv) == "0" {
		return
	}
	// Start-up's garbage too (configuration, a netlink dump per instance): at GOGC=50 the heap
	// stays at its start-up peak until the scavenger returns it, minutes later. One collection
	// now, a few milliseconds once.
	debug.FreeOSMemory()
	// And once more after the MASTERs' second GARP burst (garp_master_delay after they took
	// over, 5 s by default), whose frames are the last of start-up's garbage: 0.35 MiB at 255
	// instances (2026-12-04), resident for good, the heap being far below its next collection.
	// Only when an instance is MASTER: a BACKUP sends no burst, and the collection would be
	// a millisecond of work for nothing (at one instance at 1 s, a third of what the BACKUP
	// spends in a minute).
	if delay := d.pendingGARPDelay(); delay > 0 {
		time.AfterFunc(delay+time.Second, debug.FreeOSMemory)
	}
	ms, err := residency.Trim()
	if err != nil {
		d.log.Warn("could not give back the executable's start-up pages", "err", err)
		return
	}
	var n uintptr
	for _, m := range ms {
		n += m.Len()
	}
	d.log.Debug("gave back the executable's start-up pages", "mapped_bytes", n)
}

// pendingGARPDelay is the longest garp_master_delay of the instances that are MASTER now, whose
// second GARP burst is still to come; 0 when none is.
func (d *daemon) pendingGARPDelay() time.Duration {
	var longest time.Duration
	for _, vi := range d.instances { // fixed once the daemon is built
		if vi.run.Status().State == vrrp.Master {
			d.mu.Lock() // a reload may change garp_master_delay
			longest = max(longest, vi.cfg.GARPMasterDelay)
			d.mu.Unlock()
		}
	}
	return longest
}
