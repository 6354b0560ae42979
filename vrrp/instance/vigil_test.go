package instance

import (
	"errors"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hapair/hapair/vrrp"
)

// watchConn is a quietConn whose kept adverts a fake watcher reads, as package steady's Watch
// does: it wakes at first, then after past the newest advert kept, and calls silent when a
// wake-up finds none new (at once when fails is set). Like the transport, it requires the watch to be ended (Unwatch)
// before Quiet, Expect or Unexpect; it counts the calls that did not.
type watchConn struct {
	*quietConn
	wmu        sync.Mutex
	timer      *time.Timer // nil: not watching
	seen       int         // len(kept) at the watcher's last wake-up
	paid       uint64      // read by watchers since the last Unwatch
	starts     int
	silents    int
	after      time.Duration
	unended    int   // Quiet, Expect or Unexpect while watching
	fails      error // what every Unwatch reports: the watcher could not do its work
	firstDelay time.Duration
	thread     bool // the last Watch's
}

func (w *watchConn) Watch(first time.Time, after time.Duration, thread bool, silent func()) (func() uint64, error) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.starts++
	w.after = after
	w.thread = thread
	w.seen = len(w.keptAt())
	w.firstDelay = time.Until(first)
	var wake func()
	wake = func() {
		w.wmu.Lock()
		if w.timer == nil {
			w.wmu.Unlock()
			return
		}
		kept := w.keptAt()
		if len(kept) > w.seen && w.fails == nil { // a failing watcher hands back at its first wake-up
			w.paid += uint64(len(kept) - w.seen)
			w.seen = len(kept)
			w.timer = time.AfterFunc(time.Until(kept[len(kept)-1].Add(after)), wake)
			w.wmu.Unlock()
			return
		}
		w.timer = nil
		w.silents++
		w.wmu.Unlock()
		silent()
	}
	w.timer = time.AfterFunc(time.Until(first), wake)
	return w.received, nil
}

func (w *watchConn) received() uint64 { w.wmu.Lock(); defer w.wmu.Unlock(); return w.paid }

func (w *watchConn) Unwatch() (uint64, error) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if w.timer != nil {
		w.timer.Stop()
		w.timer = nil
	}
	n := w.paid
	w.paid = 0
	return n, w.fails
}

func (w *watchConn) watching() bool { w.wmu.Lock(); defer w.wmu.Unlock(); return w.timer != nil }

func (w *watchConn) checkEnded() {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if w.timer != nil {
		w.unended++
	}
}

func (w *watchConn) Quiet() (time.Time, int) { w.checkEnded(); return w.quietConn.Quiet() }
func (w *watchConn) Unexpect()               { w.checkEnded(); w.quietConn.Unexpect() }
func (w *watchConn) Expect(src netip.Addr, payload []byte) error {
	w.checkEnded()
	return w.quietConn.Expect(src, payload)
}

// watchReporter counts the adverts received, those a watcher read included.
type watchReporter struct {
	*recordReporter
	mu       sync.Mutex
	counted  uint64
	live     func() uint64
	started  int
	stoppedN int
	moves    []string // transitions
}

func (r *watchReporter) Transition(from, to vrrp.State) {
	r.mu.Lock()
	r.moves = append(r.moves, from.String()+" -> "+to.String())
	r.mu.Unlock()
}

func (r *watchReporter) transitions() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.moves...)
}

func (r *watchReporter) AdvertReceived(uint8) { r.mu.Lock(); r.counted++; r.mu.Unlock() }
func (r *watchReporter) WatchStarted(received func() uint64) {
	r.mu.Lock()
	r.live = received
	r.started++
	r.mu.Unlock()
}
func (r *watchReporter) WatchStopped(received uint64) {
	r.mu.Lock()
	r.counted += received
	r.live = nil
	r.stoppedN++
	r.mu.Unlock()
}

// received is what a scrape would show.
func (r *watchReporter) received() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.counted
	if r.live != nil {
		n += r.live()
	}
	return n
}

// watchPair is quietPair with the BACKUP allowed a watcher (Config.Steady).
func watchPair(t *testing.T) (high, low *node, w *watchConn, rep *watchReporter, timers *countingTimers) {
	t.Helper()
	b := &bus{}
	high = startNode(t, b, "10.0.0.11", 110, "")
	settle(time.Second)
	timers = &countingTimers{}
	low = &node{vips: &fakeVIPs{}, ann: &countAnnouncer{}, rep: &recordReporter{}, conn: b.conn(netip.MustParseAddr("10.0.0.12")), done: make(chan struct{})}
	w = &watchConn{quietConn: newQuietConn(low.conn)}
	rep = &watchReporter{recordReporter: low.rep}
	cfg := nodeConfig(netip.MustParseAddr("10.0.0.12"), 100)
	cfg.Timers = timers
	cfg.Steady = true
	inst, err := New(cfg, w, low.vips, low.ann, rep, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	low.inst = inst
	low.run(t)
	settle(time.Second)
	if high.inst.Status().State != vrrp.Master || low.inst.Status().State != vrrp.Backup {
		t.Fatalf("high %s, low %s; want MASTER and BACKUP", high.inst.Status().State, low.inst.Status().State)
	}
	if !w.watching() {
		t.Fatal("the BACKUP hands its MASTER's adverts to no watcher")
	}
	return high, low, w, rep, timers
}

// TestWatchedBackupWakesOnlyWhenTheAdvertsStop: a BACKUP alone on its loop hands the reading of
// its MASTER's steady adverts to a watcher, each wake-up of which comes just after the last
// advert due before the master-down deadline. While the adverts come the loop never wakes, and
// every advert counts once. When the MASTER falls silent, the watcher wakes the loop, which
// takes over exactly at the master-down deadline after the last advert.
func TestWatchedBackupWakesOnlyWhenTheAdvertsStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		high, low, w, rep, timers := watchPair(t)
		// Master_Down_Interval at priority 100: 150ms + 30ms. The last advert due before it is
		// the third: the watcher wakes 150 ms and quietWakeLag after the newest.
		if want := 3*advertInt + quietWakeLag; w.after != want {
			t.Errorf("the watcher wakes %v after the newest advert, want %v", w.after, want)
		}
		if w.firstDelay <= 0 || w.firstDelay > 3*advertInt+quietWakeSlot+quietWakeLag {
			t.Errorf("its first wake-up %v away, want within the next three intervals", w.firstDelay)
		}
		if !w.thread {
			t.Error("the watcher of a 180 ms master-down interval reads from a process, want its thread (watchProcessFrom)")
		}
		before, receivedBefore, moves := timers.fired(), rep.received(), len(rep.transitions())
		settle(5 * time.Second) // 100 adverts at 50 ms
		if n := timers.fired() - before; n != 0 {
			t.Errorf("the loop's timer fired %d times while the watcher read the adverts", n)
		}
		if got := rep.received() - receivedBefore; got < 98 || got > 101 {
			t.Errorf("%d adverts counted in 5 s, want 100", got)
		}
		if m := rep.transitions()[moves:]; len(m) > 0 || low.vips.has() {
			t.Fatalf("BACKUP went %v (VIP %v) while the watcher read its MASTER's adverts", m, low.vips.has())
		}

		high.conn.mute.Store(true)
		mdi := 3*advertInt + 30*time.Millisecond // Skew_Time (256-100)*5cs/256 = 3cs
		for low.inst.Status().State != vrrp.Master {
			settle(time.Millisecond)
		}
		took := low.inst.Status().Since.Sub(w.lastKept())
		if took < mdi || took > mdi+advertInt/10+time.Millisecond {
			t.Errorf("took over %v after the last advert, want the master-down interval %v", took, mdi)
		}
		if w.silents == 0 {
			t.Error("the watcher never woke the loop")
		}
		if w.watching() || w.unended != 0 {
			t.Errorf("watching %v as MASTER; %d calls of Quiet, Expect or Unexpect with the watch running", w.watching(), w.unended)
		}
		if rep.live != nil || rep.started != rep.stoppedN {
			t.Errorf("%d watches reported started and %d stopped", rep.started, rep.stoppedN)
		}
	})
}

// TestWatchedBackupTakesPriorityZeroAfterTheWatchedAdverts: the MASTER's priority-0 advert
// comes by the reader while the watcher holds steady adverts the machine has not seen. It goes
// to the loop, which takes the watcher's older adverts first and the priority 0 after them:
// the takeover comes at Skew_Time, not a master-down interval later.
func TestWatchedBackupTakesPriorityZeroAfterTheWatchedAdverts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		high, low, w, _, _ := watchPair(t)
		settle(2 * time.Second)
		stopped := time.Now()
		high.cancel() // its last advert is a priority 0
		skew := time.Duration(256-100) * advertInt / 256
		settle(skew + time.Millisecond)
		if !low.vips.has() {
			t.Fatalf("backup has no VIP %s after priority 0, want it at the skew time %s", time.Since(stopped), skew)
		}
		if w.unended != 0 {
			t.Errorf("%d calls of Quiet, Expect or Unexpect with the watch running", w.unended)
		}
	})
}

// TestWatchedBackupNotAlone: with another instance on the loop, the BACKUP reads its adverts
// itself, as before (one wake-up of the process serves both).
func TestWatchedBackupNotAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &bus{}
		startNode(t, b, "10.0.0.11", 110, "")
		settle(time.Second)
		loop := NewLoop()
		other := &node{vips: &fakeVIPs{}, ann: &countAnnouncer{}, rep: &recordReporter{}, conn: b.conn(netip.MustParseAddr("10.0.0.13")), done: make(chan struct{})}
		ocfg := nodeConfig(netip.MustParseAddr("10.0.0.13"), 90)
		ocfg.Machine.VRID, ocfg.Filter.VRID, ocfg.Loop = 52, 52, loop
		other.createOn(t, ocfg, other.conn, nil)
		other.run(t)
		low := &node{vips: &fakeVIPs{}, ann: &countAnnouncer{}, rep: &recordReporter{}, conn: b.conn(netip.MustParseAddr("10.0.0.12")), done: make(chan struct{})}
		w := &watchConn{quietConn: newQuietConn(low.conn)}
		cfg := nodeConfig(netip.MustParseAddr("10.0.0.12"), 100)
		cfg.Steady, cfg.Loop = true, loop
		low.createOn(t, cfg, w, nil)
		low.run(t)
		settle(2 * time.Second)
		if low.inst.Status().State != vrrp.Backup || !w.expecting() {
			t.Fatalf("state %v, expecting %v; want a BACKUP expecting its MASTER's adverts", low.inst.Status().State, w.expecting())
		}
		if w.starts != 0 {
			t.Errorf("%d watches started beside another instance on the loop", w.starts)
		}
	})
}

// TestWatchedBackupRebind: the interface is created again while the watcher holds adverts the
// machine has not seen. The turn that swaps the socket in gives the old one's expected adverts
// back, counted and not weighed (unexpect): it must first have handed the machine the
// watcher's, or the master-down deadline, behind them, would make it MASTER at once.
func TestWatchedBackupRebind(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		high, low, w, rep, _ := watchPair(t)
		settle(2 * time.Second)
		before := len(rep.transitions())
		fresh := low.conn.bus.conn(low.conn.addr)
		<-low.inst.Rebind(fresh, low.ann, netip.Addr{})
		settle(time.Second)
		if moves := rep.transitions()[before:]; len(moves) > 0 || low.vips.has() {
			t.Fatalf("after Rebind the BACKUP went %v (VIP %v); want it BACKUP throughout", moves, low.vips.has())
		}
		if st := high.inst.Status().State; st != vrrp.Master {
			t.Fatalf("MASTER is %s", st)
		}
		if w.unended != 0 {
			t.Errorf("%d calls of Quiet, Expect or Unexpect with the watch running", w.unended)
		}
	})
}

// TestWatchedBackupFollowsAChangedAdvert: the MASTER's advert changes (its priority drops,
// still above ours) while the watcher reads the old one. The new one comes by the reader; it
// goes to the loop, after the watcher's, rather than to the machine at once, whose deadline is
// behind the watcher's adverts. The BACKUP stays BACKUP and watches the new advert.
func TestWatchedBackupFollowsAChangedAdvert(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		high, low, w, rep, _ := watchPair(t)
		settle(2 * time.Second)
		before := len(rep.transitions())
		high.inst.SetPriority(105)
		settle(2 * time.Second)
		if moves := rep.transitions()[before:]; len(moves) > 0 || low.vips.has() {
			t.Fatalf("the BACKUP went %v (VIP %v) after its MASTER's priority changed; want it BACKUP throughout", moves, low.vips.has())
		}
		if w.unended != 0 {
			t.Errorf("%d calls of Quiet, Expect or Unexpect with the watch running", w.unended)
		}
		if w.starts < 2 || !w.watching() {
			t.Errorf("%d watches started, watching %v: want the new advert watched", w.starts, w.watching())
		}
	})
}

// TestFailingWatcherIsNotStartedAgainAtOnce: a watcher that stops because it cannot do its
// work (Unwatch's error) would stop alike if started again; the BACKUP reads its adverts
// itself for steadyRetryAfter rather than start one at every turn.
func TestFailingWatcherIsNotStartedAgainAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, low, w, rep, _ := watchPair(t)
		w.wmu.Lock()
		w.fails = errors.New("watcher: read: EBADF")
		w.wmu.Unlock()
		before := w.starts
		settle(10 * time.Second)
		if n := w.starts - before; n > 1 {
			t.Errorf("the watcher was started %d times in 10 s after it failed, want at most once", n)
		}
		if st := low.inst.Status().State; st != vrrp.Backup || len(rep.transitions()) > 1 {
			t.Errorf("BACKUP went %v (%v) while reading its adverts itself", st, rep.transitions())
		}
	})
}

// TestWatchInThread: the watcher reads from a process of its own from a master-down interval of
// watchProcessFrom up (adverts every second or so), from its thread below and whenever
// Config.SteadyThread says so.
func TestWatchInThread(t *testing.T) {
	for _, tc := range []struct {
		steadyThread bool
		masterDown   time.Duration
		want         bool
	}{
		{false, 36 * time.Millisecond, true},  // 10 ms adverts
		{false, 360 * time.Millisecond, true}, // 100 ms
		{false, watchProcessFrom - time.Millisecond, true},
		{false, watchProcessFrom, false},
		{false, 3609 * time.Millisecond, false}, // 1 s, priority 100
		{true, 3609 * time.Millisecond, true},
	} {
		if got := watchInThread(tc.steadyThread, tc.masterDown); got != tc.want {
			t.Errorf("watchInThread(%v, %v) = %v, want %v", tc.steadyThread, tc.masterDown, got, tc.want)
		}
	}
}
