package checks

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// TestReloadHoldsFailures: HAProxy pauses its listeners for about 2 s during a reload that fails
// at bind. A stats check with fall 2 counted those failures and moved the VIP away and back. While
// a reload is under way, and for ReloadSettle after it, a failure of a periodic check is not
// counted toward fall; successes count, and so do failures before and after.
func TestReloadHoldsFailures(t *testing.T) { synctest.Test(t, testReloadHoldsFailures) }

func testReloadHoldsFailures(t *testing.T) {
	probe := probeFunc(func(context.Context) Result { return Result{OK: true} })
	r := NewRunner([]Spec{{Name: "haproxy_stats", Interval: time.Second, Fall: 2, Rise: 1, Probe: probe}}, nil, nil)
	c := r.checks[1]
	at := func(d time.Duration) time.Time { return time.Now().Add(d) }
	up := func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return c.tr.up
	}

	r.record(c, Result{OK: true, At: at(0)})
	if !up() {
		t.Fatal("not up after a success")
	}
	end := r.HoldFailures()
	time.Sleep(time.Second)
	r.record(c, Result{OK: false, At: at(0)})
	time.Sleep(time.Second)
	r.record(c, Result{OK: false, At: at(0)})
	if !up() {
		t.Fatal("two failures during a reload took the check down")
	}
	end() // the reload's outcome is known now
	time.Sleep(ReloadSettle / 2)
	r.record(c, Result{OK: false, At: at(0)}) // started within the settle window
	if !up() {
		t.Fatal("a failure in the settle window after a reload counted")
	}
	time.Sleep(ReloadSettle)
	r.record(c, Result{OK: false, At: at(0)})
	if !up() {
		t.Fatal("one failure after the settle window took a fall-2 check down")
	}
	time.Sleep(time.Second)
	r.record(c, Result{OK: false, At: at(0)})
	if up() {
		t.Fatal("two failures after the settle window did not take the check down")
	}

	// A check already down stays down, and holds do not nest wrongly: the outer one still holds.
	r.record(c, Result{OK: true, At: at(0)})
	outer := r.HoldFailures()
	inner := r.HoldFailures()
	inner()
	time.Sleep(ReloadSettle * 2)
	r.record(c, Result{OK: false, At: at(0)})
	r.record(c, Result{OK: false, At: at(0)})
	if !up() {
		t.Fatal("failures counted while an outer hold is still on")
	}
	outer()
	outer() // a second call is harmless
}

// watchingProbe is a check that learns of changes by events, like a link check.
type watchingProbe struct{ probeFunc }

func (watchingProbe) Watch(ctx context.Context, changed func()) error { <-ctx.Done(); return nil }

// TestReloadHoldsNoLinkCheck: a link going down has nothing to do with HAProxy's reload.
func TestReloadHoldsNoLinkCheck(t *testing.T) { synctest.Test(t, testReloadHoldsNoLinkCheck) }

func testReloadHoldsNoLinkCheck(t *testing.T) {
	probe := watchingProbe{probeFunc(func(context.Context) Result { return Result{OK: true} })}
	r := NewRunner([]Spec{{Name: "link", Interval: time.Second, Fall: 1, Rise: 1, Probe: probe}}, nil, nil)
	c := r.checks[1]
	r.record(c, Result{OK: true, At: time.Now()})
	end := r.HoldFailures()
	defer end()
	r.record(c, Result{OK: false, At: time.Now()})
	r.mu.Lock()
	defer r.mu.Unlock()
	if c.tr.up {
		t.Fatal("a link check's failure was held during a reload")
	}
}
