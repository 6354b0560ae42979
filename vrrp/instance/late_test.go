package instance

import (
	"context"
	"net/netip"
	"sync"
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

// stallConn is a fakeConn whose reader can be held back, a stand-in for a reader that the Go
// scheduler runs after the loop, with a ReadPending that takes what it holds (PendingConn).
type stallConn struct {
	*fakeConn
	mu      sync.Mutex // one reader at a time, as the transport's rxMu
	deliver func(payload []byte, src, dst netip.Addr, ttl int)
	held    chan struct{} // open while held; nil when not
	reads   atomic.Int32  // ReadPending calls
}

func (c *stallConn) Receive(deliver func(payload []byte, src, dst netip.Addr, ttl int)) {
	c.mu.Lock()
	c.deliver = deliver
	c.mu.Unlock()
	pumped := make(chan struct{})
	c.fakeConn.mu.Lock()
	c.fakeConn.pumped = pumped
	c.fakeConn.mu.Unlock()
	go func() {
		defer close(pumped)
		for {
			select {
			case p := <-c.in:
				c.mu.Lock()
				held := c.held
				c.mu.Unlock()
				if held != nil {
					select {
					case <-held:
					case <-c.closed:
						return
					}
				}
				c.deliverOne(p)
			case <-c.closed:
				return
			}
		}
	}()
}

func (c *stallConn) deliverOne(p packet) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deliver(p.payload, p.src, p.dst, p.ttl)
}

func (c *stallConn) hold() {
	c.mu.Lock()
	c.held = make(chan struct{})
	c.mu.Unlock()
}

func (c *stallConn) release() {
	c.mu.Lock()
	close(c.held)
	c.held = nil
	c.mu.Unlock()
}

func (c *stallConn) ReadPending() {
	c.reads.Add(1)
	for {
		select {
		case p := <-c.in:
			c.deliverOne(p)
		default:
			return
		}
	}
}

// TestBackupReadsItsSocketBeforeMasterDown: a BACKUP whose master-down deadline comes while its
// MASTER's adverts wait, unread, for a reader the scheduler has not run yet, reads them before
// the deadline takes effect, and stays BACKUP. Without it, the loop, woken by its timer first
// after the process ran late, took over from a live MASTER and handed back at its next advert.
func TestBackupReadsItsSocketBeforeMasterDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &bus{}
		startNode(t, b, "10.0.0.11", 110, "")
		settle(time.Second)

		a := netip.MustParseAddr("10.0.0.12")
		conn := &stallConn{fakeConn: b.conn(a)}
		rep := &slowReporter{recordReporter: &recordReporter{}}
		vips := &fakeVIPs{}
		inst, err := New(nodeConfig(a, 100), conn, vips, &countAnnouncer{}, rep, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		defer func() { cancel(); <-done }()
		go func() { defer close(done); inst.Run(ctx) }()
		settle(time.Second)
		if st := inst.Status().State; st != vrrp.Backup {
			t.Fatalf("lower-priority node in %s, want BACKUP", st)
		}

		// Five intervals without the reader: the master-down interval (180 ms at 50 ms and
		// priority 100) passes while the MASTER's adverts queue.
		conn.hold()
		settle(5 * advertInt)
		conn.release()
		settle(time.Second)
		if got := rep.toMaster.Load(); got != 0 || vips.has() {
			t.Errorf("the BACKUP went MASTER %d times while its MASTER's adverts waited for its reader (VIP now: %v)", got, vips.has())
		}
		if conn.reads.Load() == 0 {
			t.Error("ReadPending was never called")
		}
	})
}
