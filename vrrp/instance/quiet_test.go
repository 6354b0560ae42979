package instance

import (
	"bytes"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hapair/hapair/vrrp"
)

// quietConn is a fakeConn that keeps the expected advert away from the handler, as the
// transport's filters do, and reports it through Quiet.
type quietConn struct {
	*fakeConn
	mu      sync.Mutex
	src     netip.Addr
	payload []byte // nil: nothing expected
	count   int
	latest  time.Time
	kept    []time.Time // when each advert was kept, whether Quiet has reported it or not
	expects int         // Expect calls that changed the expectation
}

func newQuietConn(c *fakeConn) *quietConn {
	q := &quietConn{fakeConn: c}
	c.keep = q.keepIt
	return q
}

func (q *quietConn) keepIt(p packet) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.payload == nil || p.src != q.src || p.ttl != 255 || !bytes.Equal(p.payload, q.payload) {
		return false
	}
	q.count++
	q.latest = time.Now()
	q.kept = append(q.kept, q.latest)
	return true
}

func (q *quietConn) Expect(src netip.Addr, payload []byte) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.src != src || !bytes.Equal(q.payload, payload) {
		q.expects++
	}
	q.src, q.payload = src, bytes.Clone(payload)
	return nil
}

func (q *quietConn) Unexpect() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.payload = nil
}

func (q *quietConn) Quiet() (time.Time, int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	at, n := q.latest, q.count
	q.count = 0
	return at, n
}

func (q *quietConn) expecting() bool { q.mu.Lock(); defer q.mu.Unlock(); return q.payload != nil }

// lastKept is when the latest advert was kept (zero: none was).
func (q *quietConn) lastKept() time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.kept) == 0 {
		return time.Time{}
	}
	return q.kept[len(q.kept)-1]
}

func (q *quietConn) keptAt() []time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.kept)
}

// quietPair is a MASTER at 110 and a BACKUP at 100 whose transport can expect adverts, settled.
func quietPair(t *testing.T) (high, low *node, q *quietConn, timers *countingTimers) {
	t.Helper()
	b := &bus{}
	high = startNode(t, b, "10.0.0.11", 110, "")
	settle(time.Second)
	timers = &countingTimers{}
	low = &node{vips: &fakeVIPs{}, ann: &countAnnouncer{}, rep: &recordReporter{}, conn: b.conn(netip.MustParseAddr("10.0.0.12")), done: make(chan struct{})}
	q = newQuietConn(low.conn)
	cfg := nodeConfig(netip.MustParseAddr("10.0.0.12"), 100)
	cfg.Timers = timers
	low.createOn(t, cfg, q, nil)
	low.run(t)
	settle(time.Second)
	if high.inst.Status().State != vrrp.Master || low.inst.Status().State != vrrp.Backup {
		t.Fatalf("high %s, low %s; want MASTER and BACKUP", high.inst.Status().State, low.inst.Status().State)
	}
	return high, low, q, timers
}

// TestBackupExpectingItsMasterWakesPerMasterDownInterval: the BACKUP hands its MASTER's steady
// advert to the transport, and then wakes about once per master-down interval instead of once
// per advert, staying BACKUP; when the MASTER falls silent it still takes over exactly at the
// master-down deadline after the last advert.
func TestBackupExpectingItsMasterWakesPerMasterDownInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		high, low, q, timers := quietPair(t)
		if !q.expecting() {
			t.Fatal("the BACKUP expects nothing from its MASTER")
		}
		before := timers.fired()
		settle(5 * time.Second) // 100 adverts at 50 ms, all kept away from the reader
		turns := timers.fired() - before
		// Master_Down_Interval at priority 100: 150ms + 30ms; the BACKUP wakes just after the
		// third advert since the last wake-up: every 150 ms (33 in 5 s).
		if turns < 25 || turns > 45 {
			t.Errorf("%d timer expiries in 5 s, want one per 130 to 180 ms", turns)
		}
		if st := low.inst.Status().State; st != vrrp.Backup || low.vips.has() {
			t.Fatalf("BACKUP went %v (VIP %v) while its MASTER's adverts were kept away", st, low.vips.has())
		}
		t.Logf("%d timer expiries for 100 adverts", turns)

		// The MASTER falls silent: the BACKUP takes over Master_Down_Interval after its last
		// advert, within the timer grid (a tenth of the interval).
		high.conn.mute.Store(true)
		// VRRPv3 counts Skew_Time in whole centiseconds: (256-100)*5cs/256 = 3cs.
		mdi := 3*advertInt + 30*time.Millisecond
		for low.inst.Status().State != vrrp.Master {
			settle(time.Millisecond)
		}
		took := low.inst.Status().Since.Sub(q.lastKept())
		if took < mdi || took > mdi+advertInt/10+time.Millisecond {
			t.Errorf("took over %s after the last advert, want %s to %s", took, mdi, mdi+advertInt/10)
		}
		if q.expecting() {
			t.Error("a MASTER still expects adverts")
		}
	})
}

// TestBackupExpectingWakesJustAfterAnAdvert: the BACKUP's wake-ups while it expects its
// MASTER's adverts come a moment after one of them arrived (quietWakeLag, on its grid), not
// most of an interval after the last (at the master-down deadline), and still every three
// intervals; when the MASTER falls silent, the wake-up that finds nothing waits for the
// deadline instead of firing again and again.
func TestBackupExpectingWakesJustAfterAnAdvert(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		high, low, q, timers := quietPair(t)
		from := time.Now()
		settle(3 * time.Second) // 60 adverts at 50 ms
		var wakes []time.Time
		for _, at := range timers.expiries() {
			if at.After(from) {
				wakes = append(wakes, at)
			}
		}
		kept := q.keptAt()
		if len(wakes) < 15 || len(wakes) > 25 {
			t.Errorf("%d wake-ups in 3 s, want one per three intervals (20)", len(wakes))
		}
		for _, w := range wakes {
			i, _ := slices.BinarySearchFunc(kept, w, func(a, b time.Time) int { return a.Compare(b) })
			if i == 0 {
				t.Fatalf("wake-up at %v before any advert", w)
			}
			if after := w.Sub(kept[i-1]); after <= 0 || after > quietWakeLag+quietWakeSlot {
				t.Errorf("wake-up %v after the last advert, want within %v", after, quietWakeLag+quietWakeSlot)
			}
		}

		high.conn.mute.Store(true)
		silent := timers.fired()
		for low.inst.Status().State != vrrp.Master {
			settle(time.Millisecond)
		}
		// At most the wake-up after the advert that did not come and the deadline's (and the
		// turns of becoming MASTER).
		if n := timers.fired() - silent; n > 4 {
			t.Errorf("%d timer expiries between the MASTER's silence and the takeover, want at most 4", n)
		}
	})
}

// TestExpectedAdvertsGiveWayToWhatDiffers: a priority-0 advert is not the expected one and comes
// through at once (takeover at the skew time); a BACKUP whose priority rises above its
// MASTER's stops expecting and preempts on the next advert.
func TestExpectedAdvertsGiveWayToWhatDiffers(t *testing.T) {
	t.Run("priority 0", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			high, low, _, _ := quietPair(t)
			stopped := time.Now()
			skew := time.Duration(256-100) * advertInt / 256
			high.cancel()
			settle(skew + time.Millisecond)
			if !low.vips.has() {
				t.Fatalf("backup has no VIP %s after priority 0, want it at the skew time %s", time.Since(stopped), skew)
			}
		})
	})
	t.Run("preempt", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			_, low, q, _ := quietPair(t)
			raised := time.Now()
			low.inst.SetPriority(120)
			for low.inst.Status().State != vrrp.Master {
				settle(time.Millisecond)
				if time.Since(raised) > time.Second {
					t.Fatal("the BACKUP raised above its MASTER never preempted")
				}
			}
			// Its turn stops the expectation; the next advert is then weighed and preempted.
			if took := time.Since(raised); took > 2*advertInt {
				t.Errorf("preempted %s after the priority rose, want within two advert intervals", took)
			}
			if q.expecting() {
				t.Error("still expecting after the priority rose")
			}
		})
	})
}

// TestKeptAdvertDoesNotCancelPriorityZero (RFC 5798 6.4.2: on priority 0, "Set the
// Master_Down_Timer to Skew_Time"): the MASTER's steady adverts were kept away from the reader,
// the latest a moment ago; its priority-0 advert arrives while the loop holds its turn and
// queues. The turn that takes it must not then feed the machine the older kept adverts after it
// as if they were newer, which accepted them, cancelled the takeover and left the BACKUP
// waiting a whole Master_Down_Interval.
func TestKeptAdvertDoesNotCancelPriorityZero(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		high, low, q, _ := quietPair(t)
		high.conn.mute.Store(true) // the priority 0 below is its last advert
		settle(advertInt / 5)      // after the latest advert kept
		highAddr := netip.MustParseAddr("10.0.0.11")
		zero, err := (&vrrp.Advert{Version: 3, VRID: 51, Priority: 0, Interval: advertInt}).Marshal(highAddr, group, vrrp.ChecksumWithPseudoHeader)
		if err != nil {
			t.Fatal(err)
		}
		in := low.inst
		in.turn.Lock() // the loop is in a turn: the advert queues
		in.HandlePacket(zero, highAddr, group, 255)
		q.mu.Lock()
		q.count = 2 // kept since the last turn, the latest at q.latest
		q.mu.Unlock()
		if len(in.received) != 1 {
			in.turn.Unlock()
			t.Fatalf("%d adverts queued, want the priority 0", len(in.received))
		}
		arrived := time.Now()
		if kept := q.lastKept(); !kept.Before(arrived) {
			in.turn.Unlock()
			t.Fatalf("latest advert kept at %v, want before the priority 0 at %v", kept, arrived)
		}
		in.turn.Unlock()
		synctest.Wait() // the turn the advert asked for

		skew := 30 * time.Millisecond // (256-100)*5cs/256 = 3cs
		in.turn.Lock()
		deadline := in.machine.NextDeadline()
		in.turn.Unlock()
		if due := arrived.Add(skew); deadline.After(due) {
			t.Fatalf("master-down deadline %v after the priority 0, want at most Skew_Time %v", deadline.Sub(arrived), skew)
		}
		settle(skew + timerGridFor(advertInt))
		if !low.vips.has() {
			t.Errorf("no VIP %v after the priority 0, want it at Skew_Time %v", time.Since(arrived), skew)
		}
	})
}
