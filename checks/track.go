package checks

// tracker turns raw probe results into a tracked status with fall/rise
// hysteresis. It is a value with a pure step function so that the sequences can be
// table tested without a Runner or a clock.
//
// keepalived keeps one counter per script (0..rise+fall-1, "good" at >= rise) and
// starts it at rise-1, so that the first success is enough to be good and the first
// failure resets it to 0. The observable behaviour is the same as counting
// consecutive successes and failures, which is what this does.
type tracker struct {
	fall, rise int
	started    bool // a first result has been seen; before that the check is pending
	up         bool
	okRun      int // consecutive successes, reset by a failure
	failRun    int // consecutive failures, reset by a success
}

func newTracker(fall, rise int) tracker {
	return tracker{fall: max(fall, 1), rise: max(rise, 1)}
}

// step records one result and reports whether the tracked status changed. The first
// result always counts as a change (pending -> up or down).
func (t tracker) step(ok bool) (tracker, bool) {
	if ok {
		t.okRun++
		t.failRun = 0
	} else {
		t.failRun++
		t.okRun = 0
	}
	if !t.started {
		t.started = true
		t.up = ok
		return t, true
	}
	switch {
	case !t.up && t.okRun >= t.rise:
		t.up = true
		return t, true
	case t.up && t.failRun >= t.fall:
		t.up = false
		return t, true
	}
	return t, false
}
