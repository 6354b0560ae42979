package nldump

import (
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/vishvananda/netlink"
)

// interrupted is a dump interrupted n times before it reads a whole table.
func interrupted(n int, calls *int) func() (int, error) {
	return func() (int, error) {
		*calls++
		if *calls <= n {
			return 0, netlink.ErrDumpInterrupted
		}
		return 42, nil
	}
}

// TestRetryOutlastsARunOfChanges: five interrupted dumps in a row (three were enough to make
// hapair exit) end in a whole table, after waits that grow.
func TestRetryOutlastsARunOfChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls int
		start := time.Now()
		v, err := Retry(interrupted(5, &calls))
		if err != nil || v != 42 || calls != 6 {
			t.Fatalf("Retry = %d, %v after %d reads; want 42 after 6", v, err, calls)
		}
		if waited := time.Since(start); waited != (1+2+4+8+16)*time.Millisecond {
			t.Errorf("waited %v between the reads, want 31ms", waited)
		}
	})
}

// TestRetryGivesUp: a table that never stops changing is reported as interrupted after Tries
// reads, about a second, not waited for forever.
func TestRetryGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls int
		start := time.Now()
		_, err := Retry(interrupted(1000, &calls))
		if !errors.Is(err, netlink.ErrDumpInterrupted) || calls != Tries {
			t.Fatalf("Retry: %v after %d reads; want the interruption after %d", err, calls, Tries)
		}
		if waited := time.Since(start); waited > 2*time.Second {
			t.Errorf("gave up after %v, want about a second", waited)
		}
	})
}

// TestRetryReturnsOtherErrorsAtOnce: an error that is not an interruption is not retried.
func TestRetryReturnsOtherErrorsAtOnce(t *testing.T) {
	var calls int
	boom := errors.New("no such device")
	_, err := Retry(func() (int, error) { calls++; return 0, boom })
	if !errors.Is(err, boom) || calls != 1 {
		t.Fatalf("Retry: %v after %d reads; want the error after 1", err, calls)
	}
}
