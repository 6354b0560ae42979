package instance

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hapair/hapair/vrrp"

	"github.com/hapair/hapair/vrrp/internal/nstest"
	"github.com/hapair/hapair/vrrp/transport"
	"github.com/hapair/hapair/vrrp/transport/steady"
)

// steadyReporter is a recordReporter that also counts a steady sender's adverts.
type steadyReporter struct {
	*recordReporter
	started, stopped atomic.Int64
	sent             atomic.Uint64 // the stopped senders' adverts
	running          atomic.Pointer[func() uint64]
}

func (r *steadyReporter) SteadyStarted(sent, errors func() uint64) {
	r.started.Add(1)
	r.running.Store(&sent)
}

func (r *steadyReporter) SteadyStopped(sent, errors uint64) {
	r.stopped.Add(1)
	r.sent.Add(sent)
	r.running.Store(nil)
}

// heard is one advert the peer received.
type heard struct {
	prio uint8
	at   time.Time
}

// listener collects the adverts of VRID 51 that reach the peer's namespace.
type listener struct {
	mu  sync.Mutex
	got []heard
}

func (l *listener) handle(payload []byte, src, dst netip.Addr, ttl int) {
	if len(payload) < 3 {
		return
	}
	l.mu.Lock()
	l.got = append(l.got, heard{prio: payload[2], at: time.Now()})
	l.mu.Unlock()
}

func (l *listener) since(i int) []heard {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]heard(nil), l.got[min(i, len(l.got)):]...)
}

func (l *listener) count() int { l.mu.Lock(); defer l.mu.Unlock(); return len(l.got) }

// delegated says whether the instance's adverts are with a sender thread now.
func (in *Instance) delegated() bool {
	in.turn.Lock()
	defer in.turn.Unlock()
	return in.steady != nil
}

// steadyInterval is the advert interval of runSteadyMaster's MASTER.
const steadyInterval = 20 * time.Millisecond

// runSteadyMaster runs a MASTER of VRID 51 at priority 200 with its adverts delegated
// (Config.Steady) on a real socket in a namespace of a pair, and listens on the peer's side. It
// returns the instance, what the peer heard, the reporter, and the run's cancel and end.
func runSteadyMaster(t *testing.T) (*Instance, *listener, *steadyReporter, context.CancelFunc, chan struct{}) {
	t.Helper()
	p := nstest.NewPair(t)
	var conn, peer *transport.Member
	p.A.MustDo(t, func() (err error) {
		conn, err = transport.NewHub(transport.HubOptions{}).Join(transport.Options{Interface: p.AIf, Family: 4}, 51)
		return err
	})
	p.B.MustDo(t, func() (err error) {
		peer, err = transport.NewHub(transport.HubOptions{}).Join(transport.Options{Interface: p.BIf, Family: 4}, 51)
		return err
	})
	t.Cleanup(func() { peer.Close() })
	l := &listener{}
	peer.Receive(l.handle)

	cfg := nodeConfig(p.A4.Addr(), 200)
	cfg.Machine.AdvertInterval = steadyInterval
	cfg.Machine.FastFailover = false
	cfg.ReconcileEvery = time.Second
	cfg.Destination = []netip.Addr{transport.Group(4)}
	cfg.Steady = true
	rep := &steadyReporter{recordReporter: &recordReporter{}}
	in, err := New(cfg, conn, &fakeVIPs{}, &countAnnouncer{}, rep, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); in.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return in, l, rep, cancel, done
}

// TestSteadyMasterAdvertsFromTheSenderThread runs a MASTER on a real socket with its adverts
// delegated (Config.Steady) and listens on its peer: the adverts keep their interval; a priority
// change takes them back at once, the new priority goes out at once and the old never again; the
// stop's priority 0 is followed by nothing; and every advert heard was counted.
func TestSteadyMasterAdvertsFromTheSenderThread(t *testing.T) {
	if !steady.Supported() {
		t.Skip("no steady sender on this architecture")
	}
	in, l, rep, cancel, done := runSteadyMaster(t)
	const interval = steadyInterval

	nstest.Eventually(t, 5*time.Second, func() error {
		if !in.delegated() {
			return errString("the MASTER's adverts are not delegated")
		}
		return nil
	})
	from := l.count()
	time.Sleep(30 * interval)
	steadyOnes := l.since(from)
	if len(steadyOnes) < 15 {
		t.Fatalf("%d adverts heard in %v at %v, want about 30", len(steadyOnes), 30*interval, interval)
	}
	for i, h := range steadyOnes {
		if h.prio != 200 {
			t.Fatalf("advert %d has priority %d, want 200", i, h.prio)
		}
		// Generous: the machine may be busy; the gap is the interval, not a burst or a pause.
		// The times are the listener goroutine's, on reading: an advert read late (12 ms
		// under -race) makes a long gap and then a short one, whose sum is two intervals;
		// a burst makes a short gap after a whole one.
		if i > 0 {
			if gap := h.at.Sub(steadyOnes[i-1].at); gap > 10*interval {
				t.Errorf("gap of %v between adverts %d and %d, want about %v", gap, i-1, i, interval)
			}
		}
		if i > 1 {
			if two := h.at.Sub(steadyOnes[i-2].at); two < 3*interval/2 {
				t.Errorf("%v from advert %d to advert %d, want about %v: a burst", two, i-2, i, 2*interval)
			}
		}
	}

	// A priority change: the advert at once, and never the old priority after it.
	from = l.count()
	in.SetPriority(150)
	var first int
	nstest.Eventually(t, 5*time.Second, func() error {
		for i, h := range l.since(from) {
			if h.prio == 150 {
				first = from + i
				return nil
			}
		}
		return errString("no advert with priority 150")
	})
	time.Sleep(10 * interval)
	for i, h := range l.since(first) {
		if h.prio != 150 {
			t.Fatalf("advert %d after the first at priority 150 has priority %d", i, h.prio)
		}
	}
	nstest.Eventually(t, 5*time.Second, func() error {
		if !in.delegated() {
			return errString("the adverts at priority 150 are not delegated again")
		}
		return nil
	})
	if n := rep.started.Load(); n < 2 {
		t.Errorf("SteadyStarted %d times, want 2 or more", n)
	}

	// The stop: priority 0, then nothing.
	from = l.count()
	cancel()
	<-done
	stopped := time.Now()
	time.Sleep(5 * interval)
	tail := l.since(from)
	zero := -1
	for i, h := range tail {
		if h.prio == 0 && zero < 0 {
			zero = i
		}
		if zero >= 0 && h.prio != 0 {
			t.Errorf("advert %d after priority 0 has priority %d", i, h.prio)
		}
		if h.at.After(stopped.Add(time.Millisecond)) {
			t.Errorf("advert with priority %d heard %v after Run returned", h.prio, h.at.Sub(stopped))
		}
	}
	if zero < 0 {
		t.Fatalf("no priority 0 at the stop; heard %v", tail)
	}
	if in.delegated() || rep.running.Load() != nil {
		t.Error("a sender still runs after Run returned")
	}
	if rep.started.Load() != rep.stopped.Load() {
		t.Errorf("senders started %d, stopped %d", rep.started.Load(), rep.stopped.Load())
	}
	counted := uint64(rep.sentCount()) + rep.sent.Load()
	if heard := uint64(l.count()); counted != heard {
		t.Errorf("adverts counted %d (%d by the loop, %d by the senders), heard %d", counted, rep.sentCount(), rep.sent.Load(), heard)
	}
	if rep.sendErrCount() != 0 {
		t.Errorf("%d send errors", rep.sendErrCount())
	}
}

// TestKilledSenderProcessHandsTheAdvertsBack: a MASTER whose sender process is killed (by an
// operator, by the OOM killer) sends its adverts from the loop again at once, not at its next
// VIP check, and does not start another sender at once.
func TestKilledSenderProcessHandsTheAdvertsBack(t *testing.T) {
	if !steady.Supported() {
		t.Skip("no steady sender on this architecture")
	}
	in, l, _, _, _ := runSteadyMaster(t)
	const interval = steadyInterval

	var child int
	nstest.Eventually(t, 5*time.Second, func() error {
		in.turn.Lock()
		defer in.turn.Unlock()
		if in.steady == nil {
			return errString("the MASTER's adverts are not with a sender process")
		}
		g := in.steady.g
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.s == nil || g.s.Child() <= 0 {
			return errString("the MASTER's adverts are not with a sender process")
		}
		child = g.s.Child()
		return nil
	})
	time.Sleep(5 * interval)
	from := l.count()
	if err := syscall.Kill(child, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	time.Sleep(25 * interval)
	got := l.since(from)
	// Generous: a busy machine may delay the loop; without the sender's Ended the adverts
	// stop until the next VIP check, a second on.
	const longest = 10 * interval
	last := killed
	for _, h := range got {
		if h.at.After(killed) {
			if gap := h.at.Sub(last); gap > longest {
				t.Errorf("no advert for %v after the sender process was killed (gap ending %v after the kill), want at most %v",
					gap, h.at.Sub(killed).Round(time.Millisecond), longest)
			}
			last = h.at
		}
	}
	if time.Since(last) > longest+5*interval {
		t.Errorf("last advert %v before the end, %v after the kill", time.Since(last).Round(time.Millisecond), last.Sub(killed).Round(time.Millisecond))
	}
	if in.delegated() {
		t.Error("delegated again at once after the sender process was killed")
	}
}

type errString string

func (e errString) Error() string { return string(e) }

// refusingConn is a fakeConn whose adverts no sender outside the loop can send.
type refusingConn struct {
	*fakeConn
	asked atomic.Int64
}

func (c *refusingConn) SteadySocket() (int, []byte, error) {
	c.asked.Add(1)
	return -1, nil, errString("no socket for you")
}

// TestFailedDelegationIsNotRetriedAtEveryAdvert: when the adverts cannot be delegated (here the
// transport cannot say where to send), the loop sends them, and tries again a minute later, not
// at the end of every advert's turn.
func TestFailedDelegationIsNotRetriedAtEveryAdvert(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &bus{}
		n := &node{vips: &fakeVIPs{}, ann: &countAnnouncer{}, rep: &recordReporter{}, conn: b.conn(netip.MustParseAddr("10.0.0.11")), done: make(chan struct{})}
		conn := &refusingConn{fakeConn: n.conn}
		cfg := nodeConfig(netip.MustParseAddr("10.0.0.11"), 110)
		cfg.Steady = true
		n.createOn(t, cfg, conn, nil)
		n.run(t)
		settle(time.Second) // MASTER after its Master_Down_Interval
		if st := n.inst.Status().State; st != vrrp.Master {
			t.Fatalf("state %s, want MASTER", st)
		}
		sent := n.rep.sentCount()
		settle(10 * time.Second)
		if got := n.rep.sentCount() - sent; got < int(10*time.Second/advertInt)-1 {
			t.Errorf("%d adverts sent by the loop in 10 s, want one every %v", got, advertInt)
		}
		if asked := conn.asked.Load(); asked != 1 {
			t.Errorf("delegation tried %d times in 11 s, want once (then a minute later)", asked)
		}
		settle(time.Minute)
		if asked := conn.asked.Load(); asked != 2 {
			t.Errorf("delegation tried %d times after a minute more, want twice", asked)
		}
	})
}

// TestMastersOfALoopShareOneSender: three MASTERs on one loop hand their adverts to one sender
// (one process, waking once per interval for the three); a priority change of one takes its
// adverts back, its new priority goes out at once, and the other two go on with no gap; at the
// stop each sends its priority 0 and nothing after; every advert heard was counted.
func TestMastersOfALoopShareOneSender(t *testing.T) {
	if !steady.Supported() {
		t.Skip("no steady sender on this architecture")
	}
	p := nstest.NewPair(t)
	const n = 3
	hubA, hubB := transport.NewHub(transport.HubOptions{}), transport.NewHub(transport.HubOptions{})
	var conns, peers [n]*transport.Member
	var ls [n]listener
	for i := range n {
		vrid := uint8(51 + i)
		p.A.MustDo(t, func() (err error) {
			conns[i], err = hubA.Join(transport.Options{Interface: p.AIf, Family: 4}, vrid)
			return err
		})
		p.B.MustDo(t, func() (err error) {
			peers[i], err = hubB.Join(transport.Options{Interface: p.BIf, Family: 4}, vrid)
			return err
		})
		t.Cleanup(func() { peers[i].Close() })
		peers[i].Receive(ls[i].handle)
	}

	const interval = 20 * time.Millisecond
	loop := NewLoop()
	var ins [n]*Instance
	var reps [n]*steadyReporter
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	for i := range n {
		cfg := nodeConfig(p.A4.Addr(), 200)
		cfg.Name = fmt.Sprintf("VI_%d", i)
		cfg.Machine.Name = cfg.Name
		cfg.Machine.VRID = uint8(51 + i)
		cfg.Filter.VRID = cfg.Machine.VRID
		cfg.Machine.AdvertInterval = interval
		cfg.Machine.FastFailover = false
		cfg.ReconcileEvery = time.Second
		cfg.Destination = []netip.Addr{transport.Group(4)}
		cfg.Steady = true
		cfg.Loop = loop
		reps[i] = &steadyReporter{recordReporter: &recordReporter{}}
		var err error
		if ins[i], err = New(cfg, conns[i], &fakeVIPs{}, &countAnnouncer{}, reps[i], nil, nil); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); ins[i].Run(ctx) }()
	}

	// members is the sender's datagrams and its process, read in a turn's stead.
	members := func() (int, int) {
		loop.mu.Lock() // no turn runs while busy is set by us
		if loop.busy {
			loop.mu.Unlock()
			return -1, 0
		}
		loop.busy = true
		loop.mu.Unlock()
		defer func() {
			loop.mu.Lock()
			loop.busy = false
			loop.mu.Unlock()
			loop.signal()
		}()
		g := loop.steadyGroup()
		if g == nil {
			return 0, 0
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.s == nil {
			return len(g.members), 0
		}
		return len(g.members), g.s.Child()
	}
	var child int
	nstest.Eventually(t, 5*time.Second, func() error {
		var m int
		if m, child = members(); m != n || child <= 0 {
			return fmt.Errorf("%d members of the loop's sender (process %d), want %d", m, child, n)
		}
		return nil
	})
	// One process, which wakes once per interval for all three.
	ctx0 := blockedCount(t, child)
	var from [n]int
	for i := range n {
		from[i] = ls[i].count()
	}
	time.Sleep(50 * interval)
	wakes := blockedCount(t, child) - ctx0
	for i := range n {
		got := ls[i].since(from[i])
		if len(got) < 25 {
			t.Fatalf("instance %d: %d adverts heard in %v at %v, want about 50", i, len(got), 50*interval, interval)
		}
		if wakes > uint64(len(got))+5 {
			t.Errorf("the sender process woke %d times for %d adverts of each instance, want once for all", wakes, len(got))
		}
	}

	// A priority change of the second: its advert at once; the others go on without a gap.
	for i := range n {
		from[i] = ls[i].count()
	}
	ins[1].SetPriority(150)
	nstest.Eventually(t, 5*time.Second, func() error {
		for _, h := range ls[1].since(from[1]) {
			if h.prio == 150 {
				return nil
			}
		}
		return errString("no advert with priority 150")
	})
	nstest.Eventually(t, 5*time.Second, func() error {
		if m, _ := members(); m != n {
			return fmt.Errorf("%d members after the priority change, want %d again", m, n)
		}
		return nil
	})
	time.Sleep(10 * interval)
	for _, i := range []int{0, 2} {
		got := ls[i].since(from[i])
		for j := 1; j < len(got); j++ {
			if gap := got[j].at.Sub(got[j-1].at); gap > 5*interval {
				t.Errorf("instance %d: a gap of %v in its adverts across the other's priority change", i, gap)
			}
			if got[j].prio != 200 {
				t.Errorf("instance %d: an advert with priority %d", i, got[j].prio)
			}
		}
	}

	// The stop: every instance's priority 0, then nothing; every advert counted.
	cancel()
	wg.Wait()
	// members says -1 while the loop's goroutine ends its last batch.
	nstest.Eventually(t, 5*time.Second, func() error {
		if m, _ := members(); m != 0 {
			return fmt.Errorf("%d members after the stop", m)
		}
		return nil
	})
	for i := range n {
		// The runs have returned: every advert is sent and counted; wait for the peer to
		// have read the last of them.
		counted := uint64(reps[i].sentCount()) + reps[i].sent.Load()
		nstest.Eventually(t, 5*time.Second, func() error {
			if heard := uint64(ls[i].count()); counted != heard {
				return fmt.Errorf("instance %d: adverts counted %d (%d by the loop, %d by the sender), heard %d", i, counted, reps[i].sentCount(), reps[i].sent.Load(), heard)
			}
			return nil
		})
		if last := ls[i].since(0); len(last) == 0 || last[len(last)-1].prio != 0 {
			t.Errorf("instance %d: the last advert heard is not its priority 0", i)
		}
		if reps[i].started.Load() != reps[i].stopped.Load() || reps[i].started.Load() < 2 && i == 1 {
			t.Errorf("instance %d: joined %d times, left %d", i, reps[i].started.Load(), reps[i].stopped.Load())
		}
	}
}

// blockedCount is how many times process pid has blocked (its wake-ups):
// voluntary_ctxt_switches of /proc/<pid>/status. Not schedstat's timeslices, which also count
// the times a reader it woke preempted it.
func blockedCount(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "voluntary_ctxt_switches:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no voluntary_ctxt_switches in /proc/%d/status", pid)
	return 0
}
