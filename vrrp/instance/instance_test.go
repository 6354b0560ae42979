package instance

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/hapair/hapair/vrrp"
)

// bus is an in-memory multicast segment: what one conn writes, every other conn reads.
type bus struct {
	mu    sync.Mutex
	conns []*fakeConn
}

type packet struct {
	payload  []byte
	src, dst netip.Addr
	ttl      int
}

type fakeConn struct {
	bus    *bus
	addr   netip.Addr
	in     chan packet
	closed chan struct{}
	once   sync.Once
}

func (b *bus) conn(addr netip.Addr) *fakeConn {
	c := &fakeConn{bus: b, addr: addr, in: make(chan packet, 64), closed: make(chan struct{})}
	b.mu.Lock()
	b.conns = append(b.conns, c)
	b.mu.Unlock()
	return c
}

func (c *fakeConn) ReadAdvert(buf []byte) ([]byte, netip.Addr, netip.Addr, int, error) {
	select {
	case p := <-c.in:
		n := copy(buf, p.payload)
		return buf[:n], p.src, p.dst, p.ttl, nil
	case <-c.closed:
		return nil, netip.Addr{}, netip.Addr{}, 0, net.ErrClosed
	}
}

func (c *fakeConn) WriteAdvert(payload []byte) error {
	c.bus.mu.Lock()
	defer c.bus.mu.Unlock()
	for _, o := range c.bus.conns {
		if o == c {
			continue
		}
		select {
		case o.in <- packet{payload: append([]byte(nil), payload...), src: c.addr, dst: group, ttl: 255}:
		default:
		}
	}
	return nil
}

func (c *fakeConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

var group = netip.MustParseAddr("224.0.0.18")

// fakeVIPs records whether the VIPs are attached, like an interface would.
type fakeVIPs struct {
	mu       sync.Mutex
	attached bool
	removed  bool // set to simulate `ip addr del` by hand
}

func (v *fakeVIPs) Attach() error {
	v.mu.Lock()
	v.attached, v.removed = true, false
	v.mu.Unlock()
	return nil
}
func (v *fakeVIPs) Detach() error { v.mu.Lock(); v.attached = false; v.mu.Unlock(); return nil }
func (v *fakeVIPs) RemoveStale() error {
	return v.Detach()
}
func (v *fakeVIPs) Missing() ([]netip.Prefix, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.attached && v.removed {
		return []netip.Prefix{vipPrefix}, nil
	}
	return nil, nil
}
func (v *fakeVIPs) has() bool { v.mu.Lock(); defer v.mu.Unlock(); return v.attached && !v.removed }

var vipPrefix = netip.MustParsePrefix("10.0.0.10/24")

type countAnnouncer struct {
	mu sync.Mutex
	n  int
}

func (a *countAnnouncer) Announce(vips []netip.Prefix) (int, error) {
	a.mu.Lock()
	a.n += len(vips)
	a.mu.Unlock()
	return len(vips), nil
}

func (a *countAnnouncer) count() int { a.mu.Lock(); defer a.mu.Unlock(); return a.n }

// recordReporter keeps what an operator would see.
type recordReporter struct {
	mu        sync.Mutex
	state     int
	takeovers []time.Duration
	releases  []time.Duration
	dropped   map[string]int
	zeroSent  int
	mismatch  int
}

func (r *recordReporter) SetState(s int)             { r.mu.Lock(); r.state = s; r.mu.Unlock() }
func (r *recordReporter) Transition(from, to string) {}
func (r *recordReporter) SetPriority(p int)          {}
func (r *recordReporter) ObserveTakeover(d time.Duration) {
	r.mu.Lock()
	r.takeovers = append(r.takeovers, d)
	r.mu.Unlock()
}
func (r *recordReporter) ObserveRelease(d time.Duration) {
	r.mu.Lock()
	r.releases = append(r.releases, d)
	r.mu.Unlock()
}
func (r *recordReporter) AdvertSent(prio uint8) {
	if prio == 0 {
		r.mu.Lock()
		r.zeroSent++
		r.mu.Unlock()
	}
}
func (r *recordReporter) AdvertReceived(prio uint8) {}
func (r *recordReporter) Dropped(reason string) {
	r.mu.Lock()
	if r.dropped == nil {
		r.dropped = map[string]int{}
	}
	r.dropped[reason]++
	r.mu.Unlock()
}
func (r *recordReporter) AddrListMismatch()  { r.mu.Lock(); r.mismatch++; r.mu.Unlock() }
func (r *recordReporter) GARPSent(n int)     {}
func (r *recordReporter) VIPError(op string) {}

type node struct {
	inst   *Instance
	vips   *fakeVIPs
	ann    *countAnnouncer
	rep    *recordReporter
	conn   *fakeConn
	cancel context.CancelFunc
	done   chan struct{}
}

const advertInt = 50 * time.Millisecond

func startNode(t *testing.T, b *bus, addr string, prio uint8, pass string) *node {
	t.Helper()
	a := netip.MustParseAddr(addr)
	n := &node{vips: &fakeVIPs{}, ann: &countAnnouncer{}, rep: &recordReporter{}, conn: b.conn(a), done: make(chan struct{})}
	cfg := Config{
		Name: "VI_TEST", Interface: "eth0",
		Machine: vrrp.Config{Name: "VI_TEST", Version: 3, VRID: 51, Priority: prio,
			AdvertInterval: advertInt, Preempt: true, PrimaryAddr: a, FastFailover: true},
		Filter:     vrrp.Filter{VRID: 51, Version: 3},
		VIPs:       []netip.Prefix{vipPrefix},
		Source:     a,
		GARPRepeat: 2, GARPDelay: 100 * time.Millisecond,
		Destination:    []netip.Addr{group},
		ReconcileEvery: 20 * time.Millisecond,
	}
	if pass != "" {
		cfg.Machine.Version, cfg.Filter.Version = 2, 2
		cfg.Machine.AdvertInterval, cfg.Filter.Interval = time.Second, time.Second
		cfg.AuthType, cfg.AuthPass = 1, pass
		cfg.Filter.AuthType, cfg.Filter.AuthPass = 1, pass
	}
	inst, err := New(cfg, n.conn, n.vips, n.ann, n.rep, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	n.inst = inst
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() { defer close(n.done); inst.Run(ctx) }()
	t.Cleanup(n.stop)
	return n
}

func (n *node) stop() {
	n.cancel()
	<-n.done
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHigherPriorityOwnsTheVIP(t *testing.T) {
	b := &bus{}
	high := startNode(t, b, "10.0.0.11", 110, "")
	low := startNode(t, b, "10.0.0.12", 100, "")
	// Status shows MASTER as soon as the transition is logged; the VIPs follow in the same turn.
	waitFor(t, "one MASTER with the VIP", 2*time.Second, func() bool {
		return high.inst.Status().State == vrrp.Master && low.inst.Status().State == vrrp.Backup && high.vips.has()
	})
	if !high.vips.has() || low.vips.has() {
		t.Fatalf("VIP on master=%v backup=%v, want only the master", high.vips.has(), low.vips.has())
	}
	// The second GARP burst comes GARPDelay after the first: 2 rounds of 2 announcements.
	waitFor(t, "second GARP burst", time.Second, func() bool { return high.ann.count() == 4 })
	for _, n := range []*node{high, low} {
		select {
		case <-n.inst.Settled():
		case <-time.After(time.Second):
			t.Fatalf("%s not settled (systemd would never hear READY)", n.conn.addr)
		}
	}
	if got := low.inst.Status().MasterAddr; got != netip.MustParseAddr("10.0.0.11") {
		t.Errorf("backup sees master %s, want 10.0.0.11", got)
	}
}

func TestGracefulStopHandsOverWithinSkewTime(t *testing.T) {
	b := &bus{}
	high := startNode(t, b, "10.0.0.11", 110, "")
	low := startNode(t, b, "10.0.0.12", 100, "")
	waitFor(t, "high MASTER", 2*time.Second, func() bool { return high.inst.Status().State == vrrp.Master })
	waitFor(t, "low BACKUP", 2*time.Second, func() bool { return low.inst.Status().State == vrrp.Backup })

	stopped := time.Now()
	high.stop()
	if high.vips.has() {
		t.Fatal("stopped master still has the VIP")
	}
	if high.rep.zeroSent != 1 {
		t.Fatalf("stopped master sent %d priority-0 adverts, want 1", high.rep.zeroSent)
	}
	waitFor(t, "backup takes over", time.Second, func() bool { return low.vips.has() })
	// Skew time at priority 100 and 50ms: (256-100)*50ms/256 = 30ms; allow scheduling slack.
	if d := time.Since(stopped); d > 300*time.Millisecond {
		t.Errorf("takeover after priority 0 took %s, want about the skew time", d)
	}
	low.rep.mu.Lock()
	defer low.rep.mu.Unlock()
	if len(low.rep.takeovers) != 1 {
		t.Fatalf("takeover observations = %v, want one", low.rep.takeovers)
	}
}

func TestLowerPriorityMasterHandsOverAtOnce(t *testing.T) {
	b := &bus{}
	high := startNode(t, b, "10.0.0.11", 110, "")
	low := startNode(t, b, "10.0.0.12", 100, "")
	waitFor(t, "high MASTER", 2*time.Second, func() bool { return high.inst.Status().State == vrrp.Master })
	waitFor(t, "low BACKUP", 2*time.Second, func() bool { return low.inst.Status().State == vrrp.Backup })

	high.inst.SetPriority(90) // the seed: HAProxy down, weight -20
	waitFor(t, "backup preempts", time.Second, func() bool { return low.vips.has() && !high.vips.has() })
	high.rep.mu.Lock()
	releases := len(high.rep.releases)
	high.rep.mu.Unlock()
	if releases != 1 {
		t.Errorf("release observations on the old master = %d, want 1", releases)
	}

	high.inst.SetPriority(110) // HAProxy back: preempt takes the VIP back
	waitFor(t, "old master takes back", 2*time.Second, func() bool { return high.vips.has() && !low.vips.has() })
}

func TestFaultReleasesAtOnce(t *testing.T) {
	b := &bus{}
	high := startNode(t, b, "10.0.0.11", 110, "")
	low := startNode(t, b, "10.0.0.12", 100, "")
	waitFor(t, "high MASTER", 2*time.Second, func() bool { return high.inst.Status().State == vrrp.Master })
	waitFor(t, "low BACKUP", 2*time.Second, func() bool { return low.inst.Status().State == vrrp.Backup })
	high.inst.SetFault(true, "haproxy failed")
	waitFor(t, "FAULT and handover", time.Second, func() bool {
		return high.inst.Status().State == vrrp.Fault && low.vips.has() && !high.vips.has()
	})
	if got := high.inst.Status().Fault; got != "haproxy failed" {
		t.Errorf("status fault = %q", got)
	}
}

func TestVIPRemovedByHandComesBack(t *testing.T) {
	b := &bus{}
	n := startNode(t, b, "10.0.0.11", 110, "")
	waitFor(t, "MASTER", 2*time.Second, func() bool { return n.vips.has() })
	n.vips.mu.Lock()
	n.vips.removed = true
	n.vips.mu.Unlock()
	waitFor(t, "VIP reattached", time.Second, func() bool { return n.vips.has() })
}

func TestWrongPasswordIsCountedAndIgnored(t *testing.T) {
	b := &bus{}
	// Two passwords: each drops the other's adverts, so both become MASTER (no group forms).
	a := startNode(t, b, "10.0.0.11", 110, "secret")
	c := startNode(t, b, "10.0.0.12", 100, "wrong")
	waitFor(t, "both MASTER (no group)", 6*time.Second, func() bool {
		return a.inst.Status().State == vrrp.Master && c.inst.Status().State == vrrp.Master
	})
	waitFor(t, "auth drops counted", 3*time.Second, func() bool {
		a.rep.mu.Lock()
		defer a.rep.mu.Unlock()
		return a.rep.dropped["auth"] > 0
	})
}

func TestApplySwapsVIPsWhileMaster(t *testing.T) {
	b := &bus{}
	n := startNode(t, b, "10.0.0.11", 110, "")
	waitFor(t, "MASTER", 2*time.Second, func() bool { return n.vips.has() })
	next := &fakeVIPs{}
	other := netip.MustParsePrefix("10.0.0.20/24")
	u := &Update{BasePriority: 120, VIPs: []netip.Prefix{other}, Manager: next, GARPRepeat: 1, Applied: make(chan struct{})}
	n.inst.Apply(u)
	select {
	case <-u.Applied:
	case <-time.After(time.Second):
		t.Fatal("update not applied")
	}
	if !next.has() {
		t.Fatal("the new VIP manager was not attached while MASTER")
	}
	st := n.inst.Status()
	if st.BasePriority != 120 || len(st.VIPs) != 1 || st.VIPs[0] != other {
		t.Fatalf("status after update = %+v", st)
	}
}
