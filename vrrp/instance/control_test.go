package instance

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hapair/hapair/vrrp"
)

// unstarted makes a node at priority 110 whose instance logs into the returned buffer and is
// not started: the daemon's instances wait so for their checks' first results.
func unstarted(t *testing.T) (*node, *lockedBuffer) {
	t.Helper()
	a := netip.MustParseAddr("10.0.0.11")
	n := &node{vips: &fakeVIPs{}, ann: &countAnnouncer{}, rep: &recordReporter{}, conn: (&bus{}).conn(a), done: make(chan struct{})}
	logs := &lockedBuffer{}
	cfg := Config{
		Name: "VI_TEST", Interface: "eth0",
		Machine: vrrp.Config{Name: "VI_TEST", Version: 3, VRID: 51, Priority: 110,
			AdvertInterval: advertInt, Preempt: true, PrimaryAddr: a},
		Filter: vrrp.Filter{VRID: 51, Version: 3},
		VIPs:   []netip.Prefix{vipPrefix}, Source: a, Destination: []netip.Addr{group},
	}
	n.create(t, cfg, slog.New(slog.NewTextHandler(logs, nil)))
	return n, logs
}

// TestPriorityAndFaultNeverBlock: the daemon hands priorities and fault states over while it
// holds its lock, and the start of an instance waits for that lock. Any number of them before
// the start (a flapping check or link while the instance waits for its checks) must return at
// once, and the instance then applies the last of each: it used to queue them on a channel of
// 8 that nothing read before the start, and the ninth blocked the daemon for good.
func TestPriorityAndFaultNeverBlock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, logs := unstarted(t)
		returned := make(chan struct{})
		go func() {
			defer close(returned)
			for i := range 100 {
				n.inst.SetFault(i%2 == 0, "flapping")
				n.inst.SetPriority(uint8(80 + i%20)) // the last one is 99
			}
		}()
		synctest.Wait()
		select {
		case <-returned:
		default:
			n.run(t) // the loop takes the queue: the sender can return, the bubble end
			t.Fatal("SetFault / SetPriority block before the instance has started")
		}
		n.run(t)
		synctest.Wait()
		st := n.inst.Status()
		if st.State != vrrp.Backup || st.Priority != 99 || st.Fault != "" {
			t.Errorf("after the start: %s at priority %d, fault %q; want BACKUP at 99 (the last of each), no fault", st.State, st.Priority, st.Fault)
		}
		if got := logs.count("Changing effective priority from 110 to 99"); got != 1 {
			t.Errorf("%d lines \"Changing effective priority from 110 to 99\", want 1:\n%s", got, logs)
		}
		if got := logs.count("Changing effective priority"); got != 1 {
			t.Errorf("%d priority changes logged, want the one applied:\n%s", got, logs)
		}
		settle(time.Second)
		if st := n.inst.Status(); st.State != vrrp.Master || st.Priority != 99 {
			t.Errorf("alone for a second: %s at priority %d, want MASTER at 99", st.State, st.Priority)
		}
	})
}

// TestLastFaultStateWins: what the instance applies is the fault state it was handed last,
// whatever came before it in between two turns.
func TestLastFaultStateWins(t *testing.T) {
	for name, tc := range map[string]struct {
		faults []bool
		want   vrrp.State
	}{
		"fault then clear":    {[]bool{true, false}, vrrp.Backup},
		"clear then fault":    {[]bool{false, true}, vrrp.Fault},
		"fault, clear, fault": {[]bool{true, false, true}, vrrp.Fault},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n, _ := unstarted(t)
				for _, f := range tc.faults {
					n.inst.SetFault(f, "link eth0 down")
				}
				n.run(t)
				synctest.Wait()
				st := n.inst.Status()
				if st.State != tc.want {
					t.Fatalf("state %s, want %s", st.State, tc.want)
				}
				if fault := st.Fault != ""; fault != (tc.want == vrrp.Fault) {
					t.Errorf("status fault %q in state %s", st.Fault, st.State)
				}
			})
		})
	}
}

// lostWakeCtx is a context that ends as the instance registers its wake-up for the end
// (context.AfterFunc) and loses that wake-up. With a context already done, AfterFunc runs the
// wake-up at once on a goroutine of its own, which may ask for a turn before Start lets the
// instance take turns, and such a request is dropped; dropping the wake-up here makes that
// order certain rather than a matter of scheduling.
type lostWakeCtx struct{ done chan struct{} }

func (c *lostWakeCtx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *lostWakeCtx) Done() <-chan struct{}       { return c.done }
func (c *lostWakeCtx) Value(any) any               { return nil }
func (c *lostWakeCtx) Err() error {
	select {
	case <-c.done:
		return context.Canceled
	default:
		return nil
	}
}

// AfterFunc makes the context an afterFuncer, which context.AfterFunc asks to register the
// wake-up: the context ends there and then, and the wake-up never runs.
func (c *lostWakeCtx) AfterFunc(func()) func() bool {
	close(c.done)
	return func() bool { return true }
}

// TestStopDuringStartIsNotLost: a stop that comes before the instance takes turns is seen in
// its first turn, which Start asks for; it used to wait for the next timer (the master-down
// interval of a BACKUP), since Start asked for a turn only for the events that wait and not
// for a context already done.
func TestStopDuringStartIsNotLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, _ := unstarted(t)
		stopped := time.Now()
		n.inst.Start(&lostWakeCtx{done: make(chan struct{})})
		synctest.Wait()
		select {
		case <-n.inst.Done():
			return
		default:
		}
		select {
		case <-n.inst.Done():
		case <-time.After(time.Second):
		}
		t.Fatalf("run ended %v after a stop made during Start, want in the turn Start asks for (no time)", time.Since(stopped))
	})
}
