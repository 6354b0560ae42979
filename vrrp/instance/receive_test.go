package instance

import (
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hapair/hapair/internal/syncbuf"
	"github.com/hapair/hapair/vrrp"
)

// lockedBuffer collects log output from the loop and the reader goroutine.
type lockedBuffer struct{ syncbuf.Buffer }

// count returns how many lines contain every one of subs.
func (l *lockedBuffer) count(subs ...string) int {
	n := 0
	for line := range strings.Lines(l.String()) {
		if !slices.ContainsFunc(subs, func(sub string) bool { return !strings.Contains(line, sub) }) {
			n++
		}
	}
	return n
}

// masterWithLog starts one v3 node that owns vipPrefix, logging at debug level into the
// returned buffer, with the address check on (as the daemon configures it), and waits for it
// to become MASTER.
func masterWithLog(t *testing.T) (*node, *lockedBuffer) {
	t.Helper()
	a := netip.MustParseAddr("10.0.0.11")
	n := &node{vips: &fakeVIPs{}, ann: &countAnnouncer{}, rep: &recordReporter{}, conn: (&bus{}).conn(a), done: make(chan struct{})}
	logs := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := Config{
		Name: "VI_TEST", Interface: "eth0",
		Machine: vrrp.Config{Name: "VI_TEST", Version: 3, VRID: 51, Priority: 110,
			AdvertInterval: advertInt, Preempt: true, PrimaryAddr: a},
		Filter:      vrrp.Filter{VRID: 51, Version: 3, Addrs: []netip.Addr{vipPrefix.Addr()}},
		VIPs:        []netip.Prefix{vipPrefix},
		Source:      a,
		Destination: []netip.Addr{group},
	}
	n.start(t, cfg, log)
	settle(time.Second)
	if !n.vips.has() {
		t.Fatal("not MASTER with the VIP after 1s alone")
	}
	return n, logs
}

// inject delivers count copies of an advert from src as if the wire had carried them.
func inject(t *testing.T, n *node, src netip.Addr, ttl, count int, adv vrrp.Advert) {
	t.Helper()
	payload, err := adv.Marshal(src, group, vrrp.ChecksumWithPseudoHeader)
	if err != nil {
		t.Fatal(err)
	}
	for range count {
		n.conn.in <- packet{payload: payload, src: src, dst: group, ttl: ttl}
	}
}

// expect fails the test unless cond holds once every goroutine has done what it can.
func expect(t *testing.T, what string, cond func() bool) {
	t.Helper()
	synctest.Wait()
	if !cond() {
		t.Fatalf("want %s", what)
	}
}

func (r *recordReporter) drops(reason vrrp.DropReason) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dropped[reason]
}

func (r *recordReporter) mismatches() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mismatch
}

// TestDebugLoggingUnderFloodIsRateLimited (issue 9 item 3): at debug level a flood of bad
// packets costs a few lines a second, each drop still counted, not one line per packet.
func TestDebugLoggingUnderFloodIsRateLimited(t *testing.T) {
	synctest.Test(t, testDebugLoggingUnderFloodIsRateLimited)
}

func testDebugLoggingUnderFloodIsRateLimited(t *testing.T) {
	n, logs := masterWithLog(t)
	const flood = 2000
	src := netip.MustParseAddr("10.0.0.66")
	start := time.Now()
	// TTL 64: sent from off the link, dropped with reason "ttl".
	inject(t, n, src, 64, flood, vrrp.Advert{Version: 3, VRID: 51, Priority: 200, Interval: advertInt, Addrs: []netip.Addr{vipPrefix.Addr()}})
	expect(t, "every packet of the flood counted", func() bool { return n.rep.drops(vrrp.DropTTL) == flood })
	elapsed := time.Since(start)
	lines := logs.count("dropped")
	// dropLogBurst lines per started second, plus one "not logged" summary each.
	limit := 2 * dropLogBurst * (int(elapsed/time.Second) + 1)
	t.Logf("%d bad packets in %s: %d log lines", flood, elapsed.Round(time.Millisecond), lines)
	if lines > limit {
		t.Errorf("%d bad packets logged %d lines in %s, want at most %d", flood, lines, elapsed.Round(time.Millisecond), limit)
	}
	if lines == 0 {
		t.Error("no drop logged at all at debug level")
	}
	if n.inst.Status().State != vrrp.Master {
		t.Errorf("state %s after the flood, want MASTER", n.inst.Status().State)
	}
}

// TestForeignAddressListIsDroppedAndLoggedOnce (issue 9 item 1): an advert with a higher
// priority but none of our addresses (another router on our VRID, or a forgery) leaves the
// MASTER alone, is counted as "addresses" and logged once per sender and list; an advert whose
// list overlaps ours is used, counted as a mismatch and logged once.
func TestForeignAddressListIsDroppedAndLoggedOnce(t *testing.T) {
	synctest.Test(t, testForeignAddressListIsDroppedAndLoggedOnce)
}

func testForeignAddressListIsDroppedAndLoggedOnce(t *testing.T) {
	n, logs := masterWithLog(t)
	forger := netip.MustParseAddr("10.0.0.66")
	foreign := vrrp.Advert{Version: 3, VRID: 51, Priority: 254, Interval: advertInt, Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.99")}}
	inject(t, n, forger, 255, 50, foreign)
	expect(t, "50 address drops", func() bool { return n.rep.drops(vrrp.DropAddrs) == 50 })
	// Twice: the same finding from the same sender is not news.
	dup := vrrp.Advert{Version: 3, VRID: 51, Priority: 254, Interval: advertInt, Addrs: []netip.Addr{vipPrefix.Addr(), vipPrefix.Addr()}}
	inject(t, n, forger, 255, 20, dup)
	expect(t, "20 more address drops", func() bool { return n.rep.drops(vrrp.DropAddrs) == 70 })
	time.Sleep(5 * advertInt) // let a wrongly accepted advert act on the machine
	if st := n.inst.Status(); st.State != vrrp.Master || !n.vips.has() {
		t.Fatalf("after adverts with a foreign list: state %s, VIP %v; want MASTER with the VIP", st.State, n.vips.has())
	}
	if got := logs.count("ignoring adverts", "from=10.0.0.66"); got != 2 {
		t.Errorf("%d lines about the foreign lists, want 2 (one per list)\n%s", got, logs.String())
	}

	// A rolling VIP change: the peer already has a second VIP. Lower priority: we stay MASTER
	// and the advert counts.
	peer := netip.MustParseAddr("10.0.0.12")
	rolling := vrrp.Advert{Version: 3, VRID: 51, Priority: 100, Interval: advertInt,
		Addrs: []netip.Addr{vipPrefix.Addr(), netip.MustParseAddr("10.0.0.20")}}
	inject(t, n, peer, 255, 30, rolling)
	expect(t, "30 mismatches counted", func() bool { return n.rep.mismatches() == 30 })
	if got := logs.count("address list differs", "from=10.0.0.12"); got != 1 {
		t.Errorf("%d lines about the overlapping list, want 1", got)
	}
	// The same peer with a higher priority is obeyed: its adverts are used, not dropped.
	rolling.Priority = 200
	inject(t, n, peer, 255, 1, rolling)
	expect(t, "BACKUP under the rolling peer", func() bool {
		return n.inst.Status().State == vrrp.Backup && !n.vips.has()
	})
}

// countingTimers counts the expiries of the instance's timer: the turns it makes for its
// deadlines.
type countingTimers struct {
	mu sync.Mutex
	at []time.Time // when each expiry came
}

func (c *countingTimers) AfterFunc(fire func()) Timer {
	return goTimers{}.AfterFunc(func() {
		c.mu.Lock()
		c.at = append(c.at, time.Now())
		c.mu.Unlock()
		fire()
	})
}

// fired is how many expiries came so far.
func (c *countingTimers) fired() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.at)
}

// expiries are the times of the expiries so far.
func (c *countingTimers) expiries() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.at)
}

// TestBackupHearsMasterWithoutTurns: a BACKUP's machine takes its MASTER's adverts on the
// reader's goroutine, which re-arms the master-down timer: the loop does not turn for them.
func TestBackupHearsMasterWithoutTurns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &bus{}
		startNode(t, b, "10.0.0.11", 110, "")
		settle(time.Second)
		timers := &countingTimers{}
		backup := startNodeWith(t, b, "10.0.0.12", 100, func(c *Config) { c.Timers = timers })
		settle(time.Second)
		if st := backup.inst.Status().State; st != vrrp.Backup {
			t.Fatalf("lower priority in %v, want BACKUP", st)
		}
		before := timers.fired()
		settle(5 * time.Second) // 100 adverts at 50 ms
		turns := timers.fired() - before
		if turns > 10 {
			t.Errorf("the BACKUP's timer fired %d times while it heard 100 adverts, want none", turns)
		}
		if st := backup.inst.Status().State; st != vrrp.Backup || backup.vips.has() {
			t.Fatalf("BACKUP went %v (VIP %v) while hearing its MASTER", st, backup.vips.has())
		}
		t.Logf("%d timer expiries for 100 adverts", turns)
	})
}

// TestMasterChecksVIPsOnItsAdvertTurns: a MASTER whose adverts come at least as often as its VIP
// checks makes each check in an advert's turn: the check costs no wake-up of its own (one
// instance at 1 s adverts woke twice a second, once for the advert and once for the check).
func TestMasterChecksVIPsOnItsAdvertTurns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		timers := &countingTimers{}
		n := startNodeWith(t, &bus{}, "10.0.0.11", 110, func(c *Config) {
			c.Timers = timers
			c.ReconcileEvery = 4*advertInt + advertInt/3 // not a multiple: checks and adverts fall apart
		})
		settle(time.Second)
		if st := n.inst.Status().State; st != vrrp.Master {
			t.Fatalf("alone in %v, want MASTER", st)
		}
		firedBefore, checksBefore, sentBefore := timers.fired(), n.vips.checkCount(), n.rep.sentCount()
		settle(100 * advertInt)
		turns, checks, sent := int(timers.fired()-firedBefore), n.vips.checkCount()-checksBefore, n.rep.sentCount()-sentBefore
		t.Logf("%d turns, %d adverts, %d VIP checks in 100 advert intervals", turns, sent, checks)
		if sent < 99 {
			t.Fatalf("%d adverts in 100 intervals, want 100", sent)
		}
		// A check at least every ReconcileEvery, rounded up to reconcileGrid.
		if every := 4*advertInt + advertInt/3 + reconcileGrid; checks < int(100*advertInt/every)-1 {
			t.Errorf("%d VIP checks in 100 advert intervals, want one at least every %v", checks, every)
		}
		if turns > sent+1 {
			t.Errorf("%d timer turns for %d adverts: the VIP checks woke the loop %d times of their own", turns, sent, turns-sent)
		}
	})
}

// TestAddressListLinesHaveABudget: the once-per-sender-and-change rule forgets past its bounds
// (64 senders, 8 lists a sender) and when a sender falls back in line, so a forger rotating
// sources, or alternating a foreign list with one in line, had a warning logged for every
// packet: a log flood, at 20 ms adverts 50 lines a second of up to 255 addresses each. The lines
// now have a budget (a few a minute), and the first line after held-back ones says how many.
func TestAddressListLinesHaveABudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, logs := masterWithLog(t)
		foreign := vrrp.Advert{Version: 3, VRID: 51, Priority: 254, Interval: advertInt, Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.99")}}
		for i := range 200 {
			inject(t, n, netip.AddrFrom4([4]byte{10, 1, byte(i / 250), byte(1 + i%250)}), 255, 1, foreign)
		}
		expect(t, "200 address drops", func() bool { return n.rep.drops(vrrp.DropAddrs) == 200 })
		if got := logs.count("ignoring adverts"); got > listLogBurst {
			t.Errorf("%d lines for 200 forged adverts from 200 sources, want at most %d in a minute", got, listLogBurst)
		}
		time.Sleep(listLogPeriod)
		inject(t, n, netip.MustParseAddr("10.2.0.1"), 255, 1, foreign)
		expect(t, "one more drop", func() bool { return n.rep.drops(vrrp.DropAddrs) == 201 })
		if got := logs.count("ignoring adverts", "not_logged="); got != 1 {
			t.Errorf("%d lines saying how many were held back, want 1\n%s", got, logs.String())
		}
	})
}

// TestUnicastAdvertToAMulticastInstanceIsDropped: an instance without unicast peers takes only
// adverts sent to the VRRP group, as keepalived does ("Expected multicast packet but received
// unicast packet"). Its socket is also handed VRRP sent by unicast to the host's own addresses,
// and such adverts with a higher priority made the MASTER give up its VIP.
func TestUnicastAdvertToAMulticastInstanceIsDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n, _ := masterWithLog(t)
		since := n.inst.Status().Since
		sender := netip.MustParseAddr("10.0.0.66")
		ours := netip.MustParseAddr("10.0.0.11") // the MASTER's own address
		higher := vrrp.Advert{Version: 3, VRID: 51, Priority: 254, Interval: advertInt, Addrs: []netip.Addr{vipPrefix.Addr()}}
		// Checksummed for the address it is sent to, as a unicast sender does.
		payload, err := higher.Marshal(sender, ours, vrrp.ChecksumWithPseudoHeader)
		if err != nil {
			t.Fatal(err)
		}
		const count = 50 // one every fifth of an interval: 10 intervals, past Master_Down_Interval
		for range count {
			n.conn.in <- packet{payload: payload, src: sender, dst: ours, ttl: 255}
			time.Sleep(advertInt / 5)
		}
		if st := n.inst.Status(); st.State != vrrp.Master || !st.Since.Equal(since) || !n.vips.has() {
			t.Fatalf("after %d unicast adverts of priority 254: state %s since %v (MASTER since %v before), VIP %v; want MASTER throughout, with the VIP",
				count, st.State, st.Since, since, n.vips.has())
		}
		expect(t, "every unicast advert counted as a destination drop", func() bool { return n.rep.drops(vrrp.DropDestination) == count })

		// The same advert to the group is obeyed: only the destination made the difference.
		inject(t, n, sender, 255, 1, higher)
		expect(t, "BACKUP under the higher priority sent to the group", func() bool {
			return n.inst.Status().State == vrrp.Backup && !n.vips.has()
		})
	})
}
