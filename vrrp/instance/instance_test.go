package instance

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
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
	mu     sync.Mutex
	pumped chan struct{} // closed when the delivering goroutine has returned; nil before Receive
	once   sync.Once
	keep   func(packet) bool // set: a packet it keeps is not delivered (quietConn)
	mute   atomic.Bool       // its adverts reach nobody: a crashed host, a cut cable
}

func (b *bus) conn(addr netip.Addr) *fakeConn {
	c := &fakeConn{bus: b, addr: addr, in: make(chan packet, 64), closed: make(chan struct{})}
	b.mu.Lock()
	b.conns = append(b.conns, c)
	b.mu.Unlock()
	return c
}

// Receive delivers on a goroutine of its own, as the transport's reader does.
func (c *fakeConn) Receive(deliver func(payload []byte, src, dst netip.Addr, ttl int)) {
	c.mu.Lock()
	pumped := make(chan struct{})
	c.pumped = pumped
	c.mu.Unlock()
	go func() {
		defer close(pumped)
		buf := make([]byte, 1500)
		for {
			select {
			case p := <-c.in:
				c.mu.Lock()
				keep := c.keep
				c.mu.Unlock()
				if keep != nil && keep(p) {
					continue
				}
				n := copy(buf, p.payload)
				deliver(buf[:n], p.src, p.dst, p.ttl)
			case <-c.closed:
				return
			}
		}
	}()
}

func (c *fakeConn) WriteAdvert(payload []byte) error {
	if c.mute.Load() {
		return nil
	}
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

// SetSource makes c send from src, as a renumbered interface's socket does (SourceConn).
func (c *fakeConn) SetSource(src netip.Addr) {
	c.bus.mu.Lock()
	c.addr = src
	c.bus.mu.Unlock()
}

func (c *fakeConn) Close() error {
	c.once.Do(func() {
		close(c.closed)
		c.mu.Lock()
		pumped := c.pumped
		c.mu.Unlock()
		if pumped != nil {
			<-pumped
		}
	})
	return nil
}

var group = netip.MustParseAddr("224.0.0.18")

// fakeVIPs records whether the VIPs are attached, like an interface would.
type fakeVIPs struct {
	mu       sync.Mutex
	attached bool
	removed  bool          // set to simulate `ip addr del` by hand
	onDetach func()        // called after each Detach, from the loop
	block    chan struct{} // when set, Missing waits for it: a netlink call that hangs
	checks   int           // Missing calls: the MASTER's VIP checks
}

func (v *fakeVIPs) Attach() error {
	v.mu.Lock()
	v.attached, v.removed = true, false
	v.mu.Unlock()
	return nil
}
func (v *fakeVIPs) Detach() error {
	v.mu.Lock()
	v.attached = false
	f := v.onDetach
	v.mu.Unlock()
	if f != nil {
		f()
	}
	return nil
}
func (v *fakeVIPs) RemoveStale() error {
	v.mu.Lock()
	v.attached = false
	v.mu.Unlock()
	return nil
}
func (v *fakeVIPs) Missing() ([]netip.Prefix, error) {
	v.mu.Lock()
	block := v.block
	v.mu.Unlock()
	if block != nil {
		<-block
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.checks++
	if v.attached && v.removed {
		return []netip.Prefix{vipPrefix}, nil
	}
	return nil, nil
}

// removeByHand simulates `ip addr del` of the VIP.
func (v *fakeVIPs) removeByHand() { v.mu.Lock(); v.removed = true; v.mu.Unlock() }

func (v *fakeVIPs) checkCount() int { v.mu.Lock(); defer v.mu.Unlock(); return v.checks }

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
	state     vrrp.State
	takeovers []time.Duration
	releases  []time.Duration
	dropped   map[vrrp.DropReason]int
	zeroSent  int
	sent      int
	sendErrs  int
	mismatch  int
}

func (r *recordReporter) SetState(s vrrp.State)          { r.mu.Lock(); r.state = s; r.mu.Unlock() }
func (r *recordReporter) Transition(from, to vrrp.State) {}
func (r *recordReporter) SetPriority(p uint8)            {}
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
	r.mu.Lock()
	r.sent++
	if prio == 0 {
		r.zeroSent++
	}
	r.mu.Unlock()
}

func (r *recordReporter) sentCount() int            { r.mu.Lock(); defer r.mu.Unlock(); return r.sent }
func (r *recordReporter) AdvertSendError()          { r.mu.Lock(); r.sendErrs++; r.mu.Unlock() }
func (r *recordReporter) sendErrCount() int         { r.mu.Lock(); defer r.mu.Unlock(); return r.sendErrs }
func (r *recordReporter) AdvertReceived(prio uint8) {}
func (r *recordReporter) Dropped(reason vrrp.DropReason) {
	r.mu.Lock()
	if r.dropped == nil {
		r.dropped = map[vrrp.DropReason]int{}
	}
	r.dropped[reason]++
	r.mu.Unlock()
}
func (r *recordReporter) AddrListMismatch()           { r.mu.Lock(); r.mismatch++; r.mu.Unlock() }
func (r *recordReporter) GARPSent(n int)              {}
func (r *recordReporter) VIPError(op vrrp.ActionKind) {}

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

// The tests run inside a synctest bubble: the instance's timers and time.Now read the bubble's
// fake clock, which moves only when every goroutine of the test waits. A test lets time pass
// with settle, so every bound below is exact and no test waits on the machine's load.

// settle lets d of fake time pass and then waits until every goroutine has done what it can.
func settle(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

func startNode(t *testing.T, b *bus, addr string, prio uint8, pass string) *node {
	t.Helper()
	return startNodeWith(t, b, addr, prio, func(cfg *Config) {
		if pass != "" {
			cfg.Machine.Version, cfg.Filter.Version = 2, 2
			cfg.Machine.AdvertInterval, cfg.Filter.Interval = time.Second, time.Second
			cfg.AuthType, cfg.AuthPass = 1, pass
			cfg.Filter.AuthType, cfg.Filter.AuthPass = 1, pass
		}
	})
}

// startNodeWith is startNode with the configuration changed by edit.
func startNodeWith(t *testing.T, b *bus, addr string, prio uint8, edit func(*Config)) *node {
	t.Helper()
	a := netip.MustParseAddr(addr)
	n := &node{vips: &fakeVIPs{}, ann: &countAnnouncer{}, rep: &recordReporter{}, conn: b.conn(a), done: make(chan struct{})}
	cfg := nodeConfig(a, prio)
	edit(&cfg)
	n.start(t, cfg, nil)
	return n
}

// nodeConfig is the configuration of the tests' nodes: VRRPv3, VRID 51, at advertInt.
func nodeConfig(a netip.Addr, prio uint8) Config {
	return Config{
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
}

// start runs the instance cfg describes on n until the test ends.
func (n *node) start(t *testing.T, cfg Config, log *slog.Logger) {
	t.Helper()
	n.create(t, cfg, log)
	n.run(t)
}

// create makes the instance cfg describes on n, not started yet.
func (n *node) create(t *testing.T, cfg Config, log *slog.Logger) {
	t.Helper()
	n.createOn(t, cfg, n.conn, log)
}

// createOn is create with conn in place of n.conn (one that wraps it).
func (n *node) createOn(t *testing.T, cfg Config, conn Conn, log *slog.Logger) {
	t.Helper()
	inst, err := New(cfg, conn, n.vips, n.ann, n.rep, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	n.inst = inst
}

// run runs n's instance until the test ends.
func (n *node) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() { defer close(n.done); n.inst.Run(ctx) }()
	t.Cleanup(n.stop)
}

func (n *node) stop() {
	n.cancel()
	<-n.done
}

// pair starts a MASTER at priority 110 and a BACKUP at 100 and lets the election finish.
func pair(t *testing.T) (high, low *node) {
	t.Helper()
	b := &bus{}
	high = startNode(t, b, "10.0.0.11", 110, "")
	low = startNode(t, b, "10.0.0.12", 100, "")
	settle(time.Second)
	if high.inst.Status().State != vrrp.Master || low.inst.Status().State != vrrp.Backup {
		t.Fatalf("after 1s: high %s, low %s; want MASTER and BACKUP", high.inst.Status().State, low.inst.Status().State)
	}
	return high, low
}

func TestHigherPriorityOwnsTheVIP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &bus{}
		high := startNode(t, b, "10.0.0.11", 110, "")
		low := startNode(t, b, "10.0.0.12", 100, "")
		// Master_Down_Interval = 3*50ms + (256-110)*50ms/256 = 178ms: the first to expire is MASTER.
		settle(200 * time.Millisecond)
		if high.inst.Status().State != vrrp.Master || low.inst.Status().State != vrrp.Backup {
			t.Fatalf("high %s, low %s; want MASTER and BACKUP", high.inst.Status().State, low.inst.Status().State)
		}
		if !high.vips.has() || low.vips.has() {
			t.Fatalf("VIP on master=%v backup=%v, want only the master", high.vips.has(), low.vips.has())
		}
		if got := high.ann.count(); got != 2 {
			t.Fatalf("announcements right after takeover = %d, want the first burst of 2", got)
		}
		// The second GARP burst comes GARPDelay (100ms) after the first: 2 rounds of 2 announcements.
		settle(100 * time.Millisecond)
		if got := high.ann.count(); got != 4 {
			t.Fatalf("announcements after GARPDelay = %d, want 4", got)
		}
		for _, n := range []*node{high, low} {
			select {
			case <-n.inst.Settled():
			default:
				t.Fatalf("%s not settled (systemd would never hear READY)", n.conn.addr)
			}
		}
		if got := low.inst.Status().MasterAddr; got != netip.MustParseAddr("10.0.0.11") {
			t.Errorf("backup sees master %s, want 10.0.0.11", got)
		}
	})
}

func TestGracefulStopHandsOverWithinSkewTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		high, low := pair(t)
		stopped := time.Now()
		// Skew time at priority 100 and 50ms: (256-100)*50ms/256 = 30.47ms. The stop keeps the
		// VIP until the backup has taken over (make-before-break), so it returns exactly then.
		skew := time.Duration(256-100) * advertInt / 256
		high.cancel()
		settle(skew - time.Millisecond)
		if low.vips.has() {
			t.Fatalf("backup took over %s after priority 0, before its skew time %s", time.Since(stopped), skew)
		}
		if !high.vips.has() {
			t.Fatalf("stopping master dropped the VIP %s after priority 0, before the backup took over", time.Since(stopped))
		}
		settle(time.Millisecond)
		if !low.vips.has() {
			t.Fatalf("backup has no VIP %s after priority 0, want it at the skew time %s", time.Since(stopped), skew)
		}
		<-high.done
		if high.vips.has() {
			t.Fatal("stopped master still has the VIP")
		}
		if high.rep.zeroSent != 1 {
			t.Fatalf("stopped master sent %d priority-0 adverts, want 1", high.rep.zeroSent)
		}
		low.rep.mu.Lock()
		defer low.rep.mu.Unlock()
		if len(low.rep.takeovers) != 1 {
			t.Fatalf("takeover observations = %v, want one", low.rep.takeovers)
		}
	})
}

func TestLowerPriorityMasterHandsOverAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		high, low := pair(t)
		high.inst.SetPriority(90) // the seed: HAProxy down, weight -20
		// The lower priority is advertised at once, and the backup preempts after its skew time.
		settle(advertInt)
		if !low.vips.has() || high.vips.has() {
			t.Fatalf("%s after the priority drop: VIP on old master=%v, backup=%v; want only the backup", advertInt, high.vips.has(), low.vips.has())
		}
		high.rep.mu.Lock()
		releases := len(high.rep.releases)
		high.rep.mu.Unlock()
		if releases != 1 {
			t.Errorf("release observations on the old master = %d, want 1", releases)
		}

		high.inst.SetPriority(110) // HAProxy back: preempt takes the VIP back
		settle(advertInt)
		if !high.vips.has() || low.vips.has() {
			t.Fatalf("after the priority is back: VIP on old master=%v, backup=%v; want only the old master", high.vips.has(), low.vips.has())
		}
	})
}

func TestFaultReleasesAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		high, low := pair(t)
		high.inst.SetFault(true, "haproxy failed")
		synctest.Wait()
		if st := high.inst.Status(); st.State != vrrp.Fault || high.vips.has() {
			t.Fatalf("at once after SetFault: state %s, VIP %v; want FAULT without the VIP", st.State, high.vips.has())
		}
		settle(advertInt)
		if !low.vips.has() {
			t.Fatal("backup has not taken over within an advert interval of the priority-0 advert")
		}
		if got := high.inst.Status().Fault; got != "haproxy failed" {
			t.Errorf("status fault = %q", got)
		}
	})
}

func TestVIPRemovedByHandComesBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := startNode(t, &bus{}, "10.0.0.11", 110, "")
		settle(time.Second)
		if !n.vips.has() {
			t.Fatal("no VIP after 1s alone")
		}
		n.vips.removeByHand()
		settle(20 * time.Millisecond) // ReconcileEvery
		if !n.vips.has() {
			t.Fatal("VIP not attached again within ReconcileEvery")
		}
	})
}

// TestCheckVIPsPutsBackAtOnce: told that a VIP left (CheckVIPs, from the address watch), a
// MASTER checks at once rather than at its next ReconcileEvery.
func TestCheckVIPsPutsBackAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := startNodeWith(t, &bus{}, "10.0.0.11", 110, func(cfg *Config) { cfg.ReconcileEvery = time.Hour })
		settle(time.Second)
		if !n.vips.has() {
			t.Fatal("no VIP after 1s alone")
		}
		n.vips.removeByHand()
		settle(time.Second)
		if n.vips.has() {
			t.Fatal("VIP attached again with no check due: the test proves nothing")
		}
		n.inst.CheckVIPs()
		settle(0)
		if !n.vips.has() {
			t.Fatal("VIP not attached again at once after CheckVIPs")
		}
	})
}

func TestWrongPasswordIsCountedAndIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &bus{}
		// Two passwords: each drops the other's adverts, so both become MASTER (no group forms).
		a := startNode(t, b, "10.0.0.11", 110, "secret")
		c := startNode(t, b, "10.0.0.12", 100, "wrong")
		settle(5 * time.Second) // v2, advert_int 1s: master-down interval 3.6s
		if a.inst.Status().State != vrrp.Master || c.inst.Status().State != vrrp.Master {
			t.Fatalf("states %s and %s, want both MASTER (no group)", a.inst.Status().State, c.inst.Status().State)
		}
		a.rep.mu.Lock()
		defer a.rep.mu.Unlock()
		if a.rep.dropped["auth"] == 0 {
			t.Fatalf("drops = %v, want auth drops counted", a.rep.dropped)
		}
	})
}

func TestApplySwapsVIPsWhileMaster(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := startNode(t, &bus{}, "10.0.0.11", 110, "")
		settle(time.Second)
		next := &fakeVIPs{}
		other := netip.MustParsePrefix("10.0.0.20/24")
		u := &Update{BasePriority: 120, VIPs: []netip.Prefix{other}, Manager: next, GARPRepeat: 1}
		if !n.inst.Apply(u) {
			t.Fatal("Apply to a running instance reported it stopped")
		}
		select {
		case <-u.Applied:
		default:
			t.Fatal("Apply returned before the loop took the update")
		}
		if !next.has() {
			t.Fatal("the new VIP manager was not attached while MASTER")
		}
		st := n.inst.Status()
		if st.BasePriority != 120 || len(st.VIPs) != 1 || st.VIPs[0] != other {
			t.Fatalf("status after update = %+v", st)
		}
	})
}

// After Run returns nobody reads the control queue: SetPriority, SetFault and Apply must neither
// block the daemon (checks, reload) nor report an update applied.
func TestControlAfterRunReturnsDoesNotBlock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := startNode(t, &bus{}, "10.0.0.11", 110, "")
		settle(time.Second)
		n.stop()
		applied := true
		returned := make(chan struct{})
		go func() {
			defer close(returned)
			for i := range 100 {
				n.inst.SetPriority(uint8(100 + i%10))
				n.inst.SetFault(i%2 == 0, "flapping")
			}
			applied = n.inst.Apply(&Update{Manager: &fakeVIPs{}})
		}()
		synctest.Wait()
		select {
		case <-returned:
		default:
			t.Error("SetPriority / SetFault / Apply block once Run has returned")
			for { // unblock the caller so the bubble can end
				select {
				case c := <-n.inst.control:
					if c.update != nil && c.update.Applied != nil {
						close(c.update.Applied)
					}
				case <-returned:
					return
				}
			}
		}
		if applied {
			t.Error("Apply after Run returned reports the update applied")
		}
	})
}

// A flood of valid adverts fills the 256-slot queue once the loop has exited (here: while it
// detaches the VIPs on the way out); the reader must not hold up the shutdown.
func TestShutdownWithFullQueueReturns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := startNode(t, &bus{}, "10.0.0.11", 110, "")
		settle(time.Second)
		peer := netip.MustParseAddr("10.0.0.12")
		adv := vrrp.Advert{Version: 3, VRID: 51, Priority: 100, Interval: advertInt, Addrs: []netip.Addr{vipPrefix.Addr()}}
		payload, err := adv.Marshal(peer, group, vrrp.ChecksumWithPseudoHeader)
		if err != nil {
			t.Fatal(err)
		}
		n.vips.mu.Lock()
		n.vips.onDetach = func() {
			go func() {
				for range 300 {
					select {
					case n.conn.in <- packet{payload: payload, src: peer, dst: group, ttl: 255}:
					case <-n.conn.closed:
						return
					}
				}
			}()
			// The loop is busy stopping: the reader fills the queue meanwhile.
			time.Sleep(time.Millisecond)
		}
		n.vips.mu.Unlock()
		n.cancel()
		settle(time.Second)
		select {
		case <-n.done:
		default:
			t.Error("Run did not return: the reader is stuck on the full queue")
			for { // drain so the bubble can end
				select {
				case <-n.inst.received:
				case <-n.done:
					return
				}
			}
		}
	})
}

// TestOverdue: the watchdog's measure. A loop that waits for its next deadline, or for nothing
// (FAULT), is never overdue, though it does not turn for a minute; a loop stuck in a call is
// overdue by the time since its deadline passed.
func TestOverdue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := startNode(t, &bus{}, "10.0.0.1", 100, "")
		settle(time.Second)
		if st := n.inst.Status().State; st != vrrp.Master {
			t.Fatalf("alone: %v, want MASTER", st)
		}
		for range 20 {
			settle(37 * time.Millisecond)
			if d := n.inst.Overdue(time.Now()); d != 0 {
				t.Fatalf("a MASTER advertising on time is overdue by %v", d)
			}
		}

		n.inst.SetFault(true, "test")
		settle(time.Minute)
		if d := n.inst.Overdue(time.Now()); d != 0 {
			t.Fatalf("a FAULT loop waiting for nothing is overdue by %v", d)
		}
		n.inst.SetFault(false, "")
		settle(time.Second)

		block := make(chan struct{})
		n.vips.mu.Lock()
		n.vips.block = block
		n.vips.mu.Unlock()
		settle(10 * time.Second) // the next VIP check hangs
		if d := n.inst.Overdue(time.Now()); d < 9*time.Second {
			t.Fatalf("a loop stuck for 10s is overdue by only %v", d)
		}
		n.vips.mu.Lock()
		n.vips.block = nil
		n.vips.mu.Unlock()
		close(block)
		settle(time.Second)
		if d := n.inst.Overdue(time.Now()); d != 0 {
			t.Fatalf("after the call returned, the loop is still overdue by %v", d)
		}
	})
}
