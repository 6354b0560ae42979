package instance

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"runtime"
	"strings"
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
//
// It counts the goroutines of its synctest bubble (bubbleGoroutines), which are every goroutine
// the instances start, directly or not, and nothing else. runtime.NumGoroutine counts the whole
// process, by subtracting the runtime's lists of free goroutines, read without a lock
// (runtime.gcount), from all it ever made; a goroutine of an earlier test ending on the other P
// moves 33 of them from the P's list to the global one (runtime.gfput), so a count taken
// meanwhile is off by 33. Run with the package's other tests, -count=80, it said "34 goroutines
// more than before" 5 times, while a dump of the stacks taken right after showed one more than
// before, the loop's.
func TestInstancesShareOneGoroutine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 100
		before := bubbleGoroutines(t)
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
		// 1: the loop's. Once synctest.Wait has returned, a timer's goroutine that has run its
		// turn has ended and is not in the dump.
		if got := bubbleGoroutines(t) - before; got != 1 {
			t.Errorf("%d instances running on one loop: %d goroutines more than before, want 1:\n%s", n, got, strings.Join(bubbleStacks(t), "\n\n"))
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

// bubbleOf finds the synctest bubble in a goroutine's header line ("goroutine 7 [select
// (durable), synctest bubble 3]:"); no match when it is in none.
var bubbleOf = regexp.MustCompile(`^goroutine \d+ \[[^\]]*synctest bubble (\d+)[\] ]`)

// bubbleStacks is the stacks of every goroutine in the caller's synctest bubble, from a dump of
// every goroutine of the process; the test fails when the caller is in no bubble.
func bubbleStacks(t *testing.T) []string {
	t.Helper()
	buf := make([]byte, 4096)
	own := bubbleOf.FindSubmatch(buf[:runtime.Stack(buf, false)])
	if own == nil {
		t.Fatalf("no synctest bubble in the caller's stack header:\n%s", buf)
	}
	buf = make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	for n == len(buf) { // cut short: again, with room
		buf = make([]byte, 2*len(buf))
		n = runtime.Stack(buf, true)
	}
	var stacks []string
	for g := range strings.SplitSeq(string(buf[:n]), "\n\n") {
		if m := bubbleOf.FindStringSubmatch(g); m != nil && m[1] == string(own[1]) {
			stacks = append(stacks, g)
		}
	}
	return stacks
}

func bubbleGoroutines(t *testing.T) int {
	t.Helper()
	return len(bubbleStacks(t))
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
