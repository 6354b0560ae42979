package checks

import (
	"fmt"
	"sync"
	"time"
)

// ReloadSettle is how long after an HAProxy reload's outcome the periodic checks' failures are
// still not counted: a probe started just before the old listeners resumed (or the new worker took
// over) may fail for the reload, not for HAProxy's health.
const ReloadSettle = time.Second

// hold is the Runner's record of HAProxy reloads under way.
type hold struct {
	depth int       // reloads under way
	until time.Time // failures of probes started before this are not counted (the settle window)
}

// HoldFailures is called when an HAProxy reload begins; the function it returns when the reload's
// outcome is known. In between, and for ReloadSettle after, a failed result of a periodic check
// is not counted toward its fall: HAProxy pauses its listeners while a new worker starts (about
// 2 s when the new configuration fails at bind), and a stats probe with interval 1s and fall 2
// would otherwise move the VIP away and back for a reload. Successes still count, a check that is
// down stays down, and neither the built-in liveness check (HAProxy's exit: a master that dies
// during a reload fails over at once) nor a check that watches for events (a link) is held.
func (r *Runner) HoldFailures() (end func()) {
	r.mu.Lock()
	r.hold.depth++
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			r.hold.depth--
			if until := time.Now().Add(ReloadSettle); until.After(r.hold.until) {
				r.hold.until = until
			}
			r.mu.Unlock()
		})
	}
}

// heldLocked tells whether a failed result of c is not counted. r.mu is held.
func (r *Runner) heldLocked(c *check, res Result) bool {
	if res.OK || c == r.live.c || c.trigger != nil || !c.tr.started || !c.tr.up {
		return false
	}
	return r.hold.depth > 0 || res.At.Before(r.hold.until)
}

func heldMessage(name string, res Result) string {
	return fmt.Sprintf("VRRP_Script(%s) failed during an HAProxy reload: not counted toward fall (%s)", name, res.Output)
}
