package supervisor

import "time"

// backoffJitter spreads each wait ±20% so that two nodes restarting after the same event (a bad
// config pushed to both) do not march in step.
const backoffJitter = 0.2

// backoff is the restart schedule: initial, doubling per consecutive short-lived child, capped at
// max, ±20% jitter, back to initial once a child has run for resetAfter. It reads no clock: how
// long the child ran comes in as an argument, and the randomness is injected, so it is tested
// exactly.
type backoff struct {
	backoffLimits
	rand func() float64 // [0,1)

	nominal  time.Duration // the last wait before jitter; 0 before the first
	failures int           // children in a row that ran less than resetAfter
}

// backoffLimits are the schedule's settings (haproxy.restart_backoff).
type backoffLimits struct{ initial, max, resetAfter time.Duration }

// setLimits changes the settings (a reload) and keeps the failures counted so far: the next wait
// doubles from the last one, brought within the new bounds.
func (b *backoff) setLimits(l backoffLimits) {
	b.backoffLimits = l
	if b.nominal != 0 {
		b.nominal = min(max(b.nominal, l.initial), l.max)
	}
}

// next returns the wait before the next start, given how long the child that just ended ran.
func (b *backoff) next(ran time.Duration) time.Duration {
	if ran >= b.resetAfter {
		b.nominal, b.failures = 0, 0
	}
	b.failures++
	switch {
	case b.nominal == 0:
		b.nominal = b.initial
	case b.nominal < b.max:
		b.nominal = min(2*b.nominal, b.max)
	}
	return time.Duration(float64(b.nominal) * (1 + backoffJitter*(2*b.rand()-1)))
}
