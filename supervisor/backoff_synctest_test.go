package supervisor

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// TestFailedStartsBackOffOnTheClock: a supervisor whose HAProxy cannot start retries after
// 200ms, 400ms, 800ms, then at the 1s cap (no jitter here: rand returns the middle), and waits
// on nothing else. In a synctest bubble the waits are exact, where a test of a real crash loop
// can only bound them.
func TestFailedStartsBackOffOnTheClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, stop := runFailing(t, time.Second)

		start := time.Now()
		var at []time.Duration
		for range 5 {
			ev := <-s.Events()
			if ev.Up || ev.PID != 0 {
				t.Fatalf("event %+v, want a failed start", ev)
			}
			at = append(at, time.Since(start))
		}
		want := []time.Duration{0, 200 * time.Millisecond, 600 * time.Millisecond, 1400 * time.Millisecond, 2400 * time.Millisecond}
		for i := range want {
			if at[i] != want[i] {
				t.Fatalf("failed starts at %v, want %v (backoff 200ms doubling to the 1s cap)", at, want)
			}
		}
		synctest.Wait()
		if st := s.Status(); st.Backoff != time.Second || st.Failures != 5 || st.Restarts != 4 {
			t.Errorf("status during the loop: backoff %s, failures %d, restarts %d; want 1s, 5, 4", st.Backoff, st.Failures, st.Restarts)
		}
		stop()
		if st := s.Status(); st.Backoff != 0 {
			t.Errorf("backoff %s after the stop, want none pending", st.Backoff)
		}
	})
}

// TestRestartBackoffSetSinceStart: a restart backoff changed while HAProxy fails to start (a
// reload of haproxy.restart_backoff) paces the restarts after the one already waiting, and a
// wait the old schedule had doubled past the new max is cut to it.
func TestRestartBackoffSetSinceStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, stop := runFailing(t, 10*time.Second)

		start := time.Now()
		var at []time.Duration
		for i := range 5 {
			if i == 3 {
				synctest.Wait() // Run waits its 800ms for the fourth start
				s.SetTimings(Config{StopGrace: time.Second, BackoffInitial: 100 * time.Millisecond, BackoffMax: 300 * time.Millisecond, BackoffResetAfter: 10 * time.Second})
			}
			<-s.Events()
			at = append(at, time.Since(start))
		}
		// 200, 400, 800 (already waiting), then 300: the new max, not 1.6s.
		want := []time.Duration{0, 200 * time.Millisecond, 600 * time.Millisecond, 1400 * time.Millisecond, 1700 * time.Millisecond}
		if !slices.Equal(at, want) {
			t.Errorf("failed starts at %v, want %v (the 300ms max set after the third)", at, want)
		}
		stop()
	})
}

// runFailing runs a supervisor whose HAProxy cannot start, its restart backoff from 200ms
// doubling up to max, without jitter; stop ends Run and checks it returned nil.
func runFailing(t *testing.T, max time.Duration) (s *Supervisor, stop func()) {
	dir := t.TempDir()
	c := Config{Command: filepath.Join(dir, "no-haproxy"), ConfigFile: filepath.Join(dir, "haproxy.cfg"),
		RuntimeDir: filepath.Join(dir, "run"), StopGrace: time.Second,
		BackoffInitial: 200 * time.Millisecond, BackoffMax: max, BackoffResetAfter: 10 * time.Second}
	s = New(c, &fakeReporter{}, nil)
	s.rand = func() float64 { return 0.5 } // jitter factor 1
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return s, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}
