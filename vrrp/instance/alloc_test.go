package instance

import (
	"context"
	"log/slog"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/hapair/hapair/vrrp"
)

// sinkConn counts the adverts written and keeps nothing. With fail set, every write fails with it.
type sinkConn struct {
	writes int
	fail   error
}

func (c *sinkConn) Receive(func([]byte, netip.Addr, netip.Addr, int)) {}
func (c *sinkConn) WriteAdvert([]byte) error                          { c.writes++; return c.fail }
func (c *sinkConn) Close() error                                      { return nil }

// nopReporter records nothing, so that what is measured is the instance's own work.
type nopReporter struct{}

func (nopReporter) SetState(vrrp.State)               {}
func (nopReporter) Transition(vrrp.State, vrrp.State) {}
func (nopReporter) SetPriority(uint8)                 {}
func (nopReporter) ObserveTakeover(time.Duration)     {}
func (nopReporter) ObserveRelease(time.Duration)      {}
func (nopReporter) AdvertSent(uint8)                  {}
func (nopReporter) AdvertSendError()                  {}
func (nopReporter) AdvertReceived(uint8)              {}
func (nopReporter) Dropped(vrrp.DropReason)           {}
func (nopReporter) AddrListMismatch()                 {}
func (nopReporter) GARPSent(int)                      {}
func (nopReporter) VIPError(vrrp.ActionKind)          {}

// hotInstance builds, without running it, a v3 instance configured as the daemon configures one
// (address check on), and starts its machine.
func hotInstance(t testing.TB, prio uint8) (*Instance, *sinkConn) {
	t.Helper()
	self := netip.MustParseAddr("10.0.0.11")
	conn := &sinkConn{}
	cfg := Config{
		Name: "VI_HOT", Interface: "eth0",
		Machine: vrrp.Config{Name: "VI_HOT", Version: 3, VRID: 51, Priority: prio,
			AdvertInterval: 20 * time.Millisecond, Preempt: true, PrimaryAddr: self},
		Filter:      vrrp.Filter{VRID: 51, Version: 3, Addrs: []netip.Addr{vipPrefix.Addr()}},
		VIPs:        []netip.Prefix{vipPrefix},
		Source:      self,
		Destination: []netip.Addr{group},
	}
	in, err := New(cfg, conn, &fakeVIPs{}, &countAnnouncer{}, nopReporter{}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	in.apply(in.machine.Start(time.Now()))
	return in, conn
}

// peerAdvert is a MASTER's advert for VRID 51 as it arrives from peer.
func peerAdvert(t testing.TB, peer netip.Addr) []byte {
	t.Helper()
	adv := vrrp.Advert{Version: 3, VRID: 51, Priority: 200, Interval: 20 * time.Millisecond, Addrs: []netip.Addr{vipPrefix.Addr()}}
	b, err := adv.Marshal(peer, group, vrrp.ChecksumWithPseudoHeader)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHotPathAllocations: a BACKUP receiving its MASTER's adverts (parse, filter, hand-over to
// the loop, state machine) and a MASTER sending its adverts (timer, state machine, marshal,
// write) allocate nothing per advert.
func TestHotPathAllocations(t *testing.T) {
	peer := netip.MustParseAddr("10.0.0.12")
	payload := peerAdvert(t, peer)
	backup, _ := hotInstance(t, 100)
	receive := testing.AllocsPerRun(200, func() {
		backup.HandlePacket(payload, peer, group, 255) // taken at once: no loop holds turn
		backup.applyPending()
		backup.apply(backup.machine.Tick(time.Now()))
	})
	if st := backup.machine.State(); st != vrrp.Backup || backup.machine.MasterAddr() != peer {
		t.Fatalf("backup in %v hearing %v: the adverts were not taken", st, backup.machine.MasterAddr())
	}
	if receive != 0 {
		t.Errorf("BACKUP: %.1f allocations per advert received, want 0", receive)
	}

	master, conn := hotInstance(t, vrrp.OwnerPriority)
	now := time.Now()
	before := conn.writes
	send := testing.AllocsPerRun(200, func() {
		now = now.Add(20 * time.Millisecond)
		master.apply(master.machine.Tick(now))
	})
	if conn.writes-before < 200 {
		t.Fatalf("MASTER sent %d adverts in 201 intervals", conn.writes-before)
	}
	if send != 0 {
		t.Errorf("MASTER: %.1f allocations per advert sent, want 0", send)
	}
}

// TestSendFailureAllocations: a MASTER whose every advert fails (a link whose transmit queue
// stays full) counts each failure and logs only within its budget: between two lines, a failed
// advert allocates nothing either. The logger is enabled, so that a line per advert would show.
func TestSendFailureAllocations(t *testing.T) {
	master, conn := hotInstance(t, vrrp.OwnerPriority)
	lines := &countHandler{}
	master.log = slog.New(lines)
	now := time.Now()
	master.now = func() time.Time { return now }
	conn.fail = syscall.ENOBUFS
	before := conn.writes
	n := testing.AllocsPerRun(200, func() {
		now = now.Add(20 * time.Millisecond)
		master.apply(master.machine.Tick(now))
	})
	if conn.writes-before < 200 {
		t.Fatalf("MASTER tried %d adverts in 201 intervals", conn.writes-before)
	}
	if lines.n != 1 {
		t.Errorf("%d lines logged for %d failed adverts in %v, want 1", lines.n, conn.writes-before, 201*20*time.Millisecond)
	}
	if n != 0 {
		t.Errorf("MASTER: %.1f allocations per failed advert, want 0", n)
	}
}

// countHandler counts the lines logged, at every level.
type countHandler struct{ n int }

func (h *countHandler) Enabled(context.Context, slog.Level) bool  { return true }
func (h *countHandler) Handle(context.Context, slog.Record) error { h.n++; return nil }
func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler        { return h }
func (h *countHandler) WithGroup(string) slog.Handler             { return h }

// BenchmarkHotPath is TestHotPathAllocations as a benchmark: one advert received by a BACKUP and
// one sent by a MASTER per iteration (run with -benchmem).
func BenchmarkHotPath(b *testing.B) {
	peer := netip.MustParseAddr("10.0.0.12")
	payload := peerAdvert(b, peer)
	backup, _ := hotInstance(b, 100)
	master, _ := hotInstance(b, vrrp.OwnerPriority)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		backup.HandlePacket(payload, peer, group, 255) // taken at once: no loop holds turn
		backup.applyPending()
		now = now.Add(20 * time.Millisecond)
		master.apply(master.machine.Tick(now))
	}
}

func TestOnGrid(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct{ in, want time.Duration }{
		{0, 0}, {1, time.Millisecond}, {999 * time.Microsecond, time.Millisecond},
		{time.Millisecond, time.Millisecond}, {20*time.Millisecond + 1, 21 * time.Millisecond},
	} {
		if got := onGrid(base.Add(tc.in), time.Millisecond); !got.Equal(base.Add(tc.want)) {
			t.Errorf("onGrid(+%v) = +%v, want +%v", tc.in, got.Sub(base), tc.want)
		}
	}
	before := time.Date(1960, 1, 1, 0, 0, 0, 500, time.UTC) // before 1970: negative UnixNano
	if got := onGrid(before, time.Millisecond); got.Before(before) || got.Sub(before) >= time.Millisecond || got.UnixNano()%int64(time.Millisecond) != 0 {
		t.Errorf("onGrid(%v) = %v", before, got)
	}
	if got := onGrid(base.Add(time.Second+time.Millisecond), reconcileGrid); !got.Equal(base.Add(1100 * time.Millisecond)) {
		t.Errorf("onGrid(+1.001s, 100ms) = +%v, want +1.1s", got.Sub(base))
	}
}

func TestTimerGridFor(t *testing.T) {
	for _, tc := range []struct{ interval, want time.Duration }{
		{time.Millisecond, time.Millisecond},
		{10 * time.Millisecond, time.Millisecond},
		{20 * time.Millisecond, 2 * time.Millisecond},
		{100 * time.Millisecond, 10 * time.Millisecond},
		{time.Second, 50 * time.Millisecond},
		{40 * time.Second, 50 * time.Millisecond},
	} {
		if got := timerGridFor(tc.interval); got != tc.want {
			t.Errorf("timerGridFor(%v) = %v, want %v", tc.interval, got, tc.want)
		}
	}
}
