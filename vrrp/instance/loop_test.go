package instance

import (
	"context"
	"fmt"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hapair/hapair/vrrp"
)

// countConn counts the adverts written; it delivers nothing and has no goroutine.
type countConn struct{ writes atomic.Int64 }

func (c *countConn) Receive(func([]byte, netip.Addr, netip.Addr, int)) {}
func (c *countConn) WriteAdvert([]byte) error                          { c.writes.Add(1); return nil }
func (c *countConn) Close() error                                      { return nil }

// TestInstancesShareOneGoroutine: instances on one Loop run their turns on its one goroutine,
// not on one each (a goroutine's stack was most of an instance's memory at 255 instances), and
// the goroutine ends with the last of them.
func TestInstancesShareOneGoroutine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 100
		before := runtime.NumGoroutine()
		loop := NewLoop()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		insts := make([]*Instance, n)
		conns := make([]*countConn, n)
		for i := range insts {
			insts[i], conns[i] = loopInstance(t, loop, uint8(i+1))
			insts[i].Start(ctx)
		}
		settle(time.Second) // master-down (about 3.1 intervals), then adverts every 50 ms
		// 1: the loop's. The count is the process's: a goroutine of another test still ending
		// may be in it, hence the margin.
		if got := runtime.NumGoroutine() - before; got > 5 {
			t.Errorf("%d instances running on one loop: %d goroutines more than before, want 1", n, got)
		}
		for i, in := range insts {
			if st := in.Status().State; st != vrrp.Master {
				t.Fatalf("instance %d alone on its VRID is %v, want MASTER", i+1, st)
			}
			// About 16 adverts in the 800 ms as MASTER.
			if w := conns[i].writes.Load(); w < 10 {
				t.Fatalf("instance %d sent %d adverts in a second, want about 16", i+1, w)
			}
		}
		cancel()
		settle(5 * time.Second) // each waits LongestMasterDown for a new MASTER, then detaches
		for i, in := range insts {
			select {
			case <-in.Done():
			default:
				t.Fatalf("instance %d still running 5 s after its context ended", i+1)
			}
		}
		loop.mu.Lock()
		serving, running := loop.serving, loop.running
		loop.mu.Unlock()
		if serving || running != 0 {
			t.Errorf("every instance ended: the loop's goroutine runs (%v) with %d instances, want none", serving, running)
		}
	})
}

// TestTimerTurnsRunWhereTheyFire: a MASTER's adverts, each a timer's expiry, run their turns on
// the goroutine that delivers the expiry when the loop is idle, not on the loop's goroutine:
// waking it, and parking it again, was a goroutine switch per advert.
func TestTimerTurnsRunWhereTheyFire(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		loop := NewLoop()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		in, conn := loopInstance(t, loop, 1)
		in.Start(ctx)
		settle(time.Second) // master-down (about 3.1 intervals), then an advert every 50 ms
		loop.mu.Lock()
		before := loop.batches
		loop.mu.Unlock()
		writes := conn.writes.Load()
		settle(time.Second)
		loop.mu.Lock()
		batches := loop.batches - before
		loop.mu.Unlock()
		sent := conn.writes.Load() - writes
		if sent < 15 {
			t.Fatalf("the MASTER sent %d adverts in a second, want 20", sent)
		}
		if batches > 0 {
			t.Errorf("%d adverts sent, and the loop's goroutine ran %d batches of turns for them, want 0", sent, batches)
		}
		// The last instance's end, in a turn its timer ran, still ends the loop's goroutine.
		cancel()
		settle(5 * time.Second)
		select {
		case <-in.Done():
		default:
			t.Fatal("the instance still runs 5 s after its context ended")
		}
		loop.mu.Lock()
		serving := loop.serving
		loop.mu.Unlock()
		if serving {
			t.Error("the last instance ended: the loop's goroutine still runs")
		}
	})
}

// loopInstance is a MASTER-to-be alone on its VRID, on loop.
func loopInstance(t *testing.T, loop *Loop, vrid uint8) (*Instance, *countConn) {
	t.Helper()
	self := netip.MustParseAddr(fmt.Sprintf("10.0.1.%d", vrid))
	cfg := Config{
		Name: fmt.Sprintf("VI_%d", vrid), Interface: "eth0",
		Machine: vrrp.Config{Name: fmt.Sprintf("VI_%d", vrid), Version: 3, VRID: vrid, Priority: 110,
			AdvertInterval: advertInt, Preempt: true, PrimaryAddr: self},
		Filter:      vrrp.Filter{VRID: vrid, Version: 3},
		VIPs:        []netip.Prefix{vipPrefix},
		Source:      self,
		Destination: []netip.Addr{group},
		Loop:        loop,
	}
	conn := &countConn{}
	in, err := New(cfg, conn, &fakeVIPs{}, &countAnnouncer{}, nopReporter{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return in, conn
}

// TestElectionOnSharedLoop: a MASTER and a BACKUP on one loop elect as on loops of their own,
// and the BACKUP takes over when the MASTER stops.
func TestElectionOnSharedLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		loop := NewLoop()
		b := &bus{}
		shared := func(c *Config) { c.Loop = loop }
		high := startNodeWith(t, b, "10.0.0.11", 110, shared)
		low := startNodeWith(t, b, "10.0.0.12", 100, shared)
		settle(time.Second)
		if high.inst.Status().State != vrrp.Master || low.inst.Status().State != vrrp.Backup {
			t.Fatalf("after 1s: high %s, low %s; want MASTER and BACKUP", high.inst.Status().State, low.inst.Status().State)
		}
		high.stop()
		settle(time.Second)
		if st := low.inst.Status().State; st != vrrp.Master || !low.vips.has() {
			t.Fatalf("after the MASTER stopped: BACKUP in %v (VIP %v), want MASTER with the VIP", st, low.vips.has())
		}
	})
}

// TestInstanceIsSmall holds what New makes for an instance (its state machine, queues and
// buffers, not its collaborators) to a few KiB: at 255 instances every KiB is a quarter of a
// MiB of hapair's heap, and more of its resident memory at GOGC=50.
func TestInstanceIsSmall(t *testing.T) {
	const n = 255
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	insts := make([]*Instance, n)
	for i := range insts {
		self := netip.MustParseAddr("10.0.1.1")
		cfg := Config{
			Name: "VI_SMALL", Interface: "eth0",
			Machine: vrrp.Config{Name: "VI_SMALL", Version: 3, VRID: 51, Priority: 110,
				AdvertInterval: advertInt, Preempt: true, PrimaryAddr: self},
			Filter:      vrrp.Filter{VRID: 51, Version: 3},
			VIPs:        []netip.Prefix{vipPrefix},
			Source:      self,
			Destination: []netip.Addr{group},
		}
		in, err := New(cfg, nil, nil, nil, nopReporter{}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		insts[i] = in
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(insts)
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	t.Logf("%d bytes of heap per instance", per)
	// 4.9 KiB with 16 adverts and 8 control events queued at most; 3.8 KiB with 4 and 8.
	if per > 4<<10 {
		t.Errorf("%d bytes of heap per instance, want at most 4 KiB", per)
	}
}
