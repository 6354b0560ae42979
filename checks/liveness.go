package checks

import "time"

// Liveness is the built-in "haproxy" check. The supervisor feeds it the instant
// HAProxy starts or exits; there is no polling and no fall/rise delay, because a
// dead HAProxy is dead and a restarted one is serving. Flapping is damped by the
// supervisor's restart backoff, not here.
type Liveness struct {
	r *Runner
	c *check
}

// Set publishes HAProxy's liveness now. reason becomes the result's Output
// ("exited with status 139", "started pid 4242"). It never blocks and may be
// called before Run.
func (l *Liveness) Set(up bool, reason string) {
	l.r.record(l.c, Result{OK: up, Output: reason, At: time.Now()})
}
