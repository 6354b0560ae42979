package alarm

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func newAlarms(t *testing.T) *Alarms {
	t.Helper()
	a, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// TestNeverEarly: every timer fires, none before its deadline, in any order of setting.
func TestNeverEarly(t *testing.T) {
	a := newAlarms(t)
	var wg sync.WaitGroup
	for i := range 50 {
		d := time.Duration(rand.IntN(30)+1) * time.Millisecond
		tm := a.NewTimer()
		set := time.Now()
		tm.Reset(d)
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case at := <-tm.C():
				if got := time.Since(set); got < d {
					t.Errorf("timer %d: fired after %v, set for %v", i, got, d)
				}
				if at.Before(set.Add(d)) {
					t.Errorf("timer %d: delivered time %v before its deadline", i, at.Sub(set))
				}
			case <-time.After(5 * time.Second):
				t.Errorf("timer %d (%v) never fired", i, d)
			}
		}()
	}
	wg.Wait()
}

// TestResetReplaces: a Reset moves the deadline (earlier and later) and drops an unread expiry.
func TestResetReplaces(t *testing.T) {
	a := newAlarms(t)
	tm := a.NewTimer()
	tm.Reset(time.Hour)
	tm.Reset(5 * time.Millisecond) // earlier: the timerfd must be re-armed
	select {
	case <-tm.C():
	case <-time.After(5 * time.Second):
		t.Fatal("a deadline moved earlier never fired")
	}

	tm.Reset(time.Millisecond)
	for deadline := time.Now().Add(5 * time.Second); len(tm.c) == 0; { // fired, unread
		if time.Now().After(deadline) {
			t.Fatal("a 1ms timer did not fire in 5s")
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	tm.Reset(50 * time.Millisecond) // must drop the unread expiry
	<-tm.C()
	if got := time.Since(start); got < 50*time.Millisecond {
		t.Fatalf("got a stale expiry %v after Reset(50ms)", got)
	}

	other := a.NewTimer()
	other.Reset(10 * time.Millisecond)
	tm.Reset(5 * time.Millisecond)
	tm.Reset(time.Hour) // later: the other timer must still fire
	select {
	case <-other.C():
	case <-time.After(5 * time.Second):
		t.Fatal("moving one timer later lost another's expiry")
	}
	select {
	case <-tm.C():
		t.Fatal("a timer moved an hour out fired")
	default:
	}
}

// TestStop: a stopped timer does not fire; the others do.
func TestStop(t *testing.T) {
	a := newAlarms(t)
	stopped, kept := a.NewTimer(), a.NewTimer()
	stopped.Reset(5 * time.Millisecond)
	kept.Reset(30 * time.Millisecond)
	stopped.Stop()
	<-kept.C()
	select {
	case <-stopped.C():
		t.Fatal("a stopped timer fired")
	default:
	}
	stopped.Stop() // stopping twice is harmless
}

// TestHeapOrder drives the heap directly with many timers set, moved and removed at random,
// and checks that the heap is in deadline order and the timerfd armed no later than its first.
func TestHeapOrder(t *testing.T) {
	a := newAlarms(t)
	timers := make([]*Timer, 200)
	for i := range timers {
		timers[i] = a.NewTimer()
		timers[i].Reset(time.Hour + time.Duration(rand.IntN(1000))*time.Second)
	}
	for range 500 {
		tm := timers[rand.IntN(len(timers))]
		if rand.IntN(4) == 0 {
			tm.Stop()
		} else {
			tm.Reset(time.Hour + time.Duration(rand.IntN(1000))*time.Second)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, tm := range a.heap {
		if tm.idx != i {
			t.Fatalf("heap[%d] says it is at %d", i, tm.idx)
		}
		if i > 0 && a.less(i, (i-1)/2) {
			t.Fatalf("heap[%d] is earlier than its parent", i)
		}
	}
	// Armed for the earliest deadline, or for an earlier one it was pushed back from (arm):
	// early at worst, never late.
	if a.armed.IsZero() || a.armed.After(a.heap[0].at) {
		t.Fatalf("timerfd armed for %v, earliest deadline %v", a.armed, a.heap[0].at)
	}
}

// TestClose: Close returns once the reader has stopped.
func TestClose(t *testing.T) {
	a, err := New()
	if err != nil {
		t.Fatal(err)
	}
	a.NewTimer().Reset(time.Millisecond)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestAfterFunc: an AfterFunc timer calls its function once per expiry, never before its
// deadline, not after Stop, and again after a Reset.
func TestAfterFunc(t *testing.T) {
	a := newAlarms(t)
	calls := make(chan time.Time, 4)
	tm := a.AfterFunc(func() { calls <- time.Now() })
	set := time.Now()
	tm.Reset(10 * time.Millisecond)
	select {
	case at := <-calls:
		if d := at.Sub(set); d < 10*time.Millisecond {
			t.Errorf("called %v after Reset(10ms)", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("an AfterFunc timer never called its function")
	}
	tm.Reset(5 * time.Millisecond)
	tm.Stop()
	other := a.NewTimer()
	other.Reset(20 * time.Millisecond)
	<-other.C() // past the stopped deadline
	select {
	case <-calls:
		t.Fatal("a stopped AfterFunc timer called its function")
	default:
	}
	tm.Reset(time.Millisecond)
	select {
	case <-calls:
	case <-time.After(5 * time.Second):
		t.Fatal("an AfterFunc timer set again after Stop never called its function")
	}
	if tm.C() != nil {
		t.Error("an AfterFunc timer has a channel")
	}
}

// TestExpiryCostsNoRead: the reader never reads the timerfd's expiration count (a MASTER's
// every advert is an expiry, and the read was one system call of the few an advert costs). The
// timer below is not set again after it fires, so nothing re-arms the timerfd and clears its
// count: the count the reader left is there for the test to read. Before, the reader read
// every expiry, and the test's read found nothing (EAGAIN).
func TestExpiryCostsNoRead(t *testing.T) {
	a := newAlarms(t)
	tm := a.NewTimer()
	tm.Reset(time.Millisecond)
	select {
	case <-tm.C():
	case <-time.After(5 * time.Second):
		t.Fatal("the expiry never came")
	}
	time.Sleep(20 * time.Millisecond) // let the reader come back to wait
	var count [8]byte
	if _, err := unix.Read(int(a.fd), count[:]); err != nil {
		t.Fatalf("the timerfd's count after the expiry was delivered: %v (the reader read it)", err)
	}
	// And timers keep firing, with the count left unread in between.
	for i := range 20 {
		tm.Reset(time.Millisecond)
		select {
		case <-tm.C():
		case <-time.After(5 * time.Second):
			t.Fatalf("expiry %d never came", i)
		}
	}
}

// BenchmarkReset is what a BACKUP's reader pays per advert to push its master-down timer back:
// the timer is the earliest, so every Reset re-arms the timerfd (timerfd_settime); "later" is
// the same with an earlier timer pending, so that only the heap changes.
func BenchmarkReset(b *testing.B) {
	for _, tc := range []struct {
		name    string
		earlier bool
	}{{"rearms", false}, {"heap-only", true}} {
		b.Run(tc.name, func(b *testing.B) {
			a, err := New()
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			if tc.earlier {
				a.NewTimer().Reset(time.Hour)
			}
			tm := a.NewTimer()
			d := 2 * time.Hour
			for b.Loop() {
				d += time.Microsecond
				tm.Reset(d)
			}
		})
	}
}

// TestPushedBackDeadlineRearmsLate: a BACKUP's master-down timer is pushed back by every advert
// it hears. Re-arming the timerfd each time is a timerfd_settime (BenchmarkReset: 5 µs here);
// it is re-armed only once the deadline it is armed for comes within a quarter of the way to
// the new one, so that pushing a timer back repeatedly costs few re-arms and, when the pushes
// stop, the timer still fires, never early.
func TestPushedBackDeadlineRearmsLate(t *testing.T) {
	a := newAlarms(t)
	tm := a.NewTimer()
	start := time.Now()
	tm.Reset(100 * time.Millisecond)
	before := a.arms.Load()
	const pushes = 30
	for i := 1; i <= pushes; i++ {
		tm.Reset(100*time.Millisecond + time.Duration(i)*time.Millisecond)
	}
	if arms := a.arms.Load() - before; arms > 1 {
		t.Errorf("%d timerfd re-arms for %d pushes of a deadline 100 ms away by 1 ms each, want at most 1", arms, pushes)
	}
	set := time.Now()
	final := 100*time.Millisecond + pushes*time.Millisecond
	select {
	case at := <-tm.C():
		if got := at.Sub(set); got < final {
			t.Errorf("fired %v after its last Reset(%v)", got, final)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the pushed-back timer never fired (set %v ago)", time.Since(start))
	}
	// An earlier deadline re-arms at once.
	other := a.NewTimer()
	other.Reset(time.Hour)
	tm.Reset(time.Hour)
	set = time.Now()
	tm.Reset(5 * time.Millisecond)
	select {
	case <-tm.C():
		if got := time.Since(set); got < 5*time.Millisecond {
			t.Errorf("fired %v after Reset(5ms)", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a deadline moved earlier never fired")
	}
}
