package instance

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hapair/hapair/vrrp"
)

// memRecord is a Recorder that keeps the last record in memory.
type memRecord struct {
	mu       sync.Mutex
	state    vrrp.State
	prio     uint8
	advertAt time.Time
	adverts  int // records of an advert sent
}

func (r *memRecord) Record(state vrrp.State, prio uint8, sent bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state, r.prio = state, prio
	if sent {
		r.advertAt = time.Now()
		r.adverts++
	}
}

func (r *memRecord) previous(now time.Time) *vrrp.Previous {
	r.mu.Lock()
	defer r.mu.Unlock()
	return &vrrp.Previous{State: r.state, Priority: r.prio, LastAdvert: r.advertAt}
}

// startRecorded starts a node whose state record is rec; vipsOn says the VIP is on the
// interface already (left by the previous run).
func startRecorded(t *testing.T, b *bus, rec *memRecord, vipsOn bool) *node {
	t.Helper()
	return startRecordedEvery(t, b, rec, vipsOn, advertInt)
}

func startRecordedEvery(t *testing.T, b *bus, rec *memRecord, vipsOn bool, interval time.Duration) *node {
	t.Helper()
	a := netip.MustParseAddr("10.0.0.11")
	n := &node{vips: &fakeVIPs{attached: vipsOn}, ann: &countAnnouncer{}, rep: &recordReporter{}, conn: b.conn(a), done: make(chan struct{})}
	cfg := Config{
		Name: "VI_TEST", Interface: "eth0",
		Machine: vrrp.Config{Name: "VI_TEST", Version: 3, VRID: 51, Priority: 110,
			AdvertInterval: interval, Preempt: true, PrimaryAddr: a, FastFailover: true},
		Filter: vrrp.Filter{VRID: 51, Version: 3},
		VIPs:   []netip.Prefix{vipPrefix}, Source: a, Destination: []netip.Addr{group},
		GARPRepeat: 1, ReconcileEvery: 20 * time.Millisecond,
		Previous: rec.previous, Record: rec,
	}
	n.start(t, cfg, nil)
	return n
}

// A MASTER handed over (upgrade) and started again within the window resumes at once: MASTER
// without passing through BACKUP, VIP kept (never removed as stale), no priority 0 sent.
func TestHandOverThenResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &bus{}
		rec := &memRecord{}
		first := startRecorded(t, b, rec, false)
		settle(time.Second)
		if first.inst.Status().State != vrrp.Master || !first.vips.has() {
			t.Fatalf("first run: %s, VIP %v; want MASTER with the VIP", first.inst.Status().State, first.vips.has())
		}
		first.inst.HandOver()
		first.stop()
		if first.rep.zeroSent != 0 || !first.vips.has() {
			t.Fatalf("hand-over sent %d priority-0 adverts, VIP kept %v; want none, kept", first.rep.zeroSent, first.vips.has())
		}
		if rec.state != vrrp.Master {
			t.Fatalf("record says %s after the hand-over, want MASTER", rec.state)
		}
		settle(100 * time.Millisecond) // the new image starts
		second := startRecorded(t, b, rec, true)
		settle(0)
		st := second.inst.Status()
		if st.State != vrrp.Master || st.LastTransition.Reason != vrrp.ReasonResume || !second.vips.has() {
			t.Fatalf("second run: %s (%s), VIP %v; want MASTER by resume with the VIP kept", st.State, st.LastTransition.Reason, second.vips.has())
		}
	})
}

// A record older than the resume window is a normal start: the stale VIP is removed, BACKUP.
func TestOldRecordStartsNormally(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &memRecord{state: vrrp.Master, prio: 110, advertAt: time.Now().Add(-time.Second)}
		n := startRecorded(t, &bus{}, rec, true)
		settle(0)
		if st := n.inst.Status(); st.State != vrrp.Backup || n.vips.has() {
			t.Fatalf("%s, VIP %v; want BACKUP with the stale VIP removed", st.State, n.vips.has())
		}
	})
}

// A graceful stop leaves a record that does not resume.
func TestStopRecordsInit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := &memRecord{}
		n := startRecorded(t, &bus{}, rec, false)
		settle(time.Second)
		n.stop()
		if rec.state != vrrp.Init {
			t.Fatalf("record says %s after a stop, want INIT", rec.state)
		}
	})
}

// TestAdvertsRecordedOnlyWhenACrashCouldResume: the state record takes every advert's time only
// when a hapair restarted after a crash could still be within the resume window (2.75 intervals)
// of it; at 20 ms (a 55 ms window, where systemd restarts no sooner than 100 ms) the write per
// advert bought nothing and cost a pwrite each. The state is still recorded.
func TestAdvertsRecordedOnlyWhenACrashCouldResume(t *testing.T) {
	for _, tc := range []struct {
		interval time.Duration
		want     bool // every advert recorded
	}{
		{20 * time.Millisecond, false},
		{advertInt, true}, // 50 ms: a 137.5 ms window
	} {
		t.Run(tc.interval.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rec := &memRecord{}
				n := startRecordedEvery(t, &bus{}, rec, false, tc.interval)
				settle(time.Second)
				if st := n.inst.Status().State; st != vrrp.Master {
					t.Fatalf("alone after 1s: %s, want MASTER", st)
				}
				sent := n.rep.sentCount()
				rec.mu.Lock()
				adverts, state := rec.adverts, rec.state
				rec.mu.Unlock()
				if state != vrrp.Master {
					t.Errorf("record says %s, want MASTER", state)
				}
				if tc.want && adverts < sent-1 {
					t.Errorf("%d of %d adverts recorded, want every one", adverts, sent)
				}
				if !tc.want && adverts != 0 {
					t.Errorf("%d of %d adverts recorded, want none at a %v interval", adverts, sent, tc.interval)
				}
			})
		})
	}
}

// TestHandOverResumesAtAShortInterval: at 20 ms no advert goes to the record, but the handover's
// last one does, and the next image, starting at once, resumes.
func TestHandOverResumesAtAShortInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &bus{}
		rec := &memRecord{}
		first := startRecordedEvery(t, b, rec, false, 20*time.Millisecond)
		settle(time.Second)
		first.inst.HandOver()
		first.stop()
		settle(10 * time.Millisecond) // the new image starts
		second := startRecordedEvery(t, b, rec, true, 20*time.Millisecond)
		settle(0)
		if st := second.inst.Status(); st.State != vrrp.Master || st.LastTransition.Reason != vrrp.ReasonResume {
			t.Fatalf("second run: %s (%s); want MASTER by resume", st.State, st.LastTransition.Reason)
		}
	})
}

// steppingClock is an instance's clock that moves on by step at every reading, ahead of the
// bubble's: the time its own work takes.
type steppingClock struct {
	mu     sync.Mutex
	offset time.Duration
	step   time.Duration
}

func (c *steppingClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	at := time.Now().Add(c.offset)
	c.offset += c.step
	return at
}

func (c *steppingClock) stop() { c.mu.Lock(); c.step = 0; c.mu.Unlock() }

// TestStartDecidesResumeOnce: Start weighs the state record once. It asked Resumable whether to
// keep the VIPs (no RemoveStale) and then Resume again at a later reading of the clock: a
// record that aged past ResumeWindow in between started BACKUP with the old VIPs still
// attached, and nothing removed them.
func TestStartDecidesResumeOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := netip.MustParseAddr("10.0.0.11")
		n := &node{vips: &fakeVIPs{attached: true}, ann: &countAnnouncer{}, rep: &recordReporter{}, conn: (&bus{}).conn(a), done: make(chan struct{})}
		cfg := nodeConfig(a, 110)
		// ResumeWindow at 50 ms is 137.5 ms; the record is 80 ms old when read, and each
		// later reading of the clock is 50 ms on.
		cfg.Previous = func(now time.Time) *vrrp.Previous {
			return &vrrp.Previous{State: vrrp.Master, Priority: 110, LastAdvert: now.Add(-80 * time.Millisecond)}
		}
		n.create(t, cfg, nil)
		clock := &steppingClock{step: 50 * time.Millisecond}
		n.inst.now = clock.now
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(func() { cancel(); <-n.inst.Done() })
		n.inst.Start(ctx)
		clock.stop()
		if st := n.inst.Status(); st.State != vrrp.Master && n.vips.has() {
			t.Fatalf("%s (%s) with the VIP of the previous run still attached; want MASTER by resume, or the stale VIP removed",
				st.State, st.LastTransition.Reason)
		}
	})
}
