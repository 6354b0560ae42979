package instance

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hapair/hapair/vrrp"
)

// slowReporter stalls the loop in SetPriority while delay is set (a stand-in for a loop that
// gets no CPU for a while) and counts the entries into MASTER.
type slowReporter struct {
	*recordReporter
	delay    atomic.Int64
	toMaster atomic.Int32
}

func (r *slowReporter) SetPriority(uint8) { time.Sleep(time.Duration(r.delay.Load())) }
func (r *slowReporter) Transition(_, to vrrp.State) {
	if to == vrrp.Master {
		r.toMaster.Add(1)
	}
}

// TestLateLoopKeepsBackup: a BACKUP whose loop stalls for longer than the master-down interval
// while its MASTER's adverts keep arriving on time stays BACKUP. Its adverts were queued; they
// count before the timer fires. It went MASTER (and back) when the loop ticked before taking the
// queue, or timed the queued adverts by their arrival (make bench-scale under load).
func TestLateLoopKeepsBackup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &bus{}
		startNode(t, b, "10.0.0.11", 110, "")
		settle(time.Second)

		a := netip.MustParseAddr("10.0.0.12")
		rep := &slowReporter{recordReporter: &recordReporter{}}
		n := &node{vips: &fakeVIPs{}, ann: &countAnnouncer{}, rep: rep.recordReporter, conn: b.conn(a), done: make(chan struct{})}
		cfg := Config{
			Name: "VI_TEST", Interface: "eth0",
			Machine: vrrp.Config{Name: "VI_TEST", Version: 3, VRID: 51, Priority: 100,
				AdvertInterval: advertInt, Preempt: true, PrimaryAddr: a},
			Filter:      vrrp.Filter{VRID: 51, Version: 3},
			VIPs:        []netip.Prefix{vipPrefix},
			Source:      a,
			Destination: []netip.Addr{group},
		}
		inst, err := New(cfg, n.conn, n.vips, n.ann, rep, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer func() { cancel(); <-n.done }()
		go func() { defer close(n.done); inst.Run(ctx) }()
		settle(time.Second)
		if st := inst.Status().State; st != vrrp.Backup {
			t.Fatalf("lower-priority node in %s, want BACKUP", st)
		}

		// Stall the loop for 300 ms: longer than the master-down interval (180 ms), while the
		// MASTER sends six adverts.
		rep.delay.Store(int64(300 * time.Millisecond))
		inst.SetPriority(100)
		settle(10 * time.Millisecond)
		rep.delay.Store(0)
		settle(time.Second)
		if got := rep.toMaster.Load(); got != 0 || n.vips.has() {
			t.Errorf("the BACKUP went MASTER %d times after its loop stalled with its MASTER's adverts queued (VIP now: %v)", got, n.vips.has())
		}
	})
}
