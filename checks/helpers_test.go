package checks

import (
	"testing"
	"testing/synctest"
	"time"
)

// The runner's timing tests run in a testing/synctest bubble: the runner's timers read the
// bubble's fake clock, which moves only when every goroutine waits, so intervals, timeouts and
// fall/rise sequences run without sleeping on the wall clock.

// advance lets d of fake time pass, then waits until every goroutine has done what it can.
func advance(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

// expect fails the test unless cond holds once every goroutine has done what it can (in a
// bubble).
func expect(t *testing.T, what string, cond func() bool) {
	t.Helper()
	synctest.Wait()
	if !cond() {
		t.Fatalf("want %s", what)
	}
}

// eventNow returns the event the runner has published once every goroutine has done what it
// can (in a bubble).
func eventNow(t *testing.T, r *Runner) Event {
	t.Helper()
	synctest.Wait()
	select {
	case ev := <-r.Events():
		return ev
	default:
		t.Fatal("no event")
		return Event{}
	}
}

// waitFor polls cond until it holds or a generous deadline passes, for tests of real processes
// and sockets outside a bubble; it stands for "the goroutines under test reached this point",
// never for elapsed time.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
