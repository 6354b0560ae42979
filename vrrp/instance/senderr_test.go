package instance

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hapair/hapair/vrrp"
)

// failingConn is a fakeConn whose writes fail while fail is set, as a raw socket answers
// ENOBUFS at once on a link whose transmit queue stays full (see
// TestSendIntoALinkThatDoesNotDrain in vrrp/transport).
type failingConn struct {
	*fakeConn
	mu       sync.Mutex
	fail     bool
	failures []time.Time // when each failed write was made, on the bubble's clock
}

func (c *failingConn) WriteAdvert(payload []byte) error {
	c.mu.Lock()
	if c.fail {
		c.failures = append(c.failures, time.Now())
		c.mu.Unlock()
		return syscall.ENOBUFS
	}
	c.mu.Unlock()
	return c.fakeConn.WriteAdvert(payload)
}

func (c *failingConn) setFail(fail bool) { c.mu.Lock(); c.fail = fail; c.mu.Unlock() }

func (c *failingConn) failed() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Time(nil), c.failures...)
}

// TestSendFailuresAreCountedAndLoggedWithoutFlooding: a MASTER whose adverts cannot leave counts
// every failure, logs the first at once in keepalived's manner, then at most one line per
// sendErrLogPeriod with how many failed since the previous one, and one line when sending works
// again. It logged a WARN line per advert: 50 a second at advert_int 20 ms.
func TestSendFailuresAreCountedAndLoggedWithoutFlooding(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := netip.MustParseAddr("10.0.0.11")
		conn := &failingConn{fakeConn: (&bus{}).conn(a)}
		logs := &lockedBuffer{}
		n := startMasterOn(t, conn, conn.fakeConn, a, []netip.Addr{group}, slog.New(slog.NewTextHandler(logs, nil)))
		first := func() int { return logs.count("level=WARN", "(VI_TEST) Sending advert failed", "err=") }
		still := func() int { return logs.count("level=WARN", "(VI_TEST) Sending adverts still failing") }
		again := func() int { return logs.count("level=INFO", "(VI_TEST) Sending adverts works again") }

		sentBefore := n.rep.sentCount()
		conn.setFail(true)
		settle(time.Second)
		failures := conn.failed()
		if len(failures) < 19 {
			t.Fatalf("%d failed writes in 1s at %v, want about 20", len(failures), advertInt)
		}
		if got := n.rep.sendErrCount(); got != len(failures) {
			t.Errorf("send errors counted = %d, want %d (every failed write)", got, len(failures))
		}
		if got := n.rep.sentCount(); got != sentBefore {
			t.Errorf("adverts counted as sent while every write failed: %d more", got-sentBefore)
		}
		if got := first(); got != 1 {
			t.Errorf("%d failures in 1s logged %d first-failure lines, want 1:\n%s", len(failures), got, logs.String())
		}
		if got := still(); got != 0 {
			t.Errorf("%d 'still failing' lines within 1s of the first failure, want none before %v", got, sendErrLogPeriod)
		}

		// The next line comes with the first failure sendErrLogPeriod after the first one, and
		// says how many failed since that one.
		t0 := failures[0]
		settle(time.Until(t0.Add(sendErrLogPeriod)) - advertInt/2)
		if got := still(); got != 0 {
			t.Errorf("%d 'still failing' lines before %v had passed, want none", got, sendErrLogPeriod)
		}
		settle(advertInt)
		failures = conn.failed()
		want := 0
		for _, f := range failures[1:] {
			want++
			if !f.Before(t0.Add(sendErrLogPeriod)) {
				break
			}
		}
		if got := still(); got != 1 {
			t.Fatalf("%d 'still failing' lines %v after the first failure, want 1:\n%s", got, sendErrLogPeriod, logs.String())
		}
		if got := logs.count("Sending adverts still failing", fmt.Sprintf("failed=%d ", want)); got != 1 {
			t.Errorf("the 'still failing' line does not say failed=%d (the failures since the first line):\n%s", want, logs.String())
		}
		settle(sendErrLogPeriod)
		if got := still(); got != 2 {
			t.Errorf("%d 'still failing' lines after 2 periods, want 2", got)
		}
		if got := first(); got != 1 {
			t.Errorf("%d first-failure lines while failures went on, want 1", got)
		}

		// Sending works again: one line, with every failure of the episode.
		conn.setFail(false)
		settle(time.Second)
		total := len(conn.failed())
		if got := n.rep.sendErrCount(); got != total {
			t.Errorf("send errors counted = %d, want %d (every failed write)", got, total)
		}
		if got := n.rep.sentCount(); got <= sentBefore {
			t.Errorf("no advert counted as sent after the link recovered")
		}
		settle(time.Second)
		if got := again(); got != 1 {
			t.Fatalf("%d 'works again' lines after recovery, want 1:\n%s", got, logs.String())
		}
		if got := logs.count("Sending adverts works again", fmt.Sprintf("failed=%d ", total)); got != 1 {
			t.Errorf("the 'works again' line does not say failed=%d:\n%s", total, logs.String())
		}

		// A new failure after recovery is a new episode: logged at once.
		conn.setFail(true)
		settle(2 * advertInt)
		if got := first(); got != 2 {
			t.Errorf("%d first-failure lines after failing again, want 2 (a new episode is logged at once)", got)
		}
	})
}

// peerConn is a unicast fakeConn that writes to one peer at a time (PeerWriter); writes to
// unreachable fail, as a raw socket answers EHOSTUNREACH for a peer it has no route to.
type peerConn struct {
	*fakeConn
	unreachable netip.Addr
	mu          sync.Mutex
	got         map[netip.Addr]int // adverts written, by peer
}

func (c *peerConn) WriteAdvertTo(payload []byte, dst netip.Addr) error {
	if dst == c.unreachable {
		return syscall.EHOSTUNREACH
	}
	c.mu.Lock()
	c.got[dst]++
	c.mu.Unlock()
	return nil
}

func (c *peerConn) written(dst netip.Addr) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.got[dst]
}

// TestAnUnreachablePeerDoesNotSilenceTheOthers: with unicast peers, a send that fails to one of
// them (no route, a full queue) still sends to the rest, as keepalived does. The instance
// returned at the first failure, so the peers after it heard nothing and took the VIP.
func TestAnUnreachablePeerDoesNotSilenceTheOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := netip.MustParseAddr("10.0.0.11")
		peers := []netip.Addr{netip.MustParseAddr("10.0.0.12"), netip.MustParseAddr("10.0.0.13"), netip.MustParseAddr("10.0.0.14")}
		conn := &peerConn{fakeConn: (&bus{}).conn(a), unreachable: peers[0], got: map[netip.Addr]int{}}
		n := startMasterOn(t, conn, conn.fakeConn, a, peers, slog.New(slog.DiscardHandler))
		errs := n.rep.sendErrCount()
		for _, p := range peers[1:] {
			if got := conn.written(p); got < errs-1 || got == 0 {
				t.Errorf("peer %s got %d adverts while %d failed to %s, want one each interval", p, got, errs, peers[0])
			}
		}
		if errs == 0 {
			t.Error("the failures to the unreachable peer were not counted")
		}
	})
}

// startMasterOn runs an instance alone on conn (fake, the fakeConn inside it) and waits until it
// is MASTER; it sends to dsts.
func startMasterOn(t *testing.T, conn Conn, fake *fakeConn, a netip.Addr, dsts []netip.Addr, log *slog.Logger) *node {
	t.Helper()
	n := &node{vips: &fakeVIPs{}, ann: &countAnnouncer{}, rep: &recordReporter{}, conn: fake, done: make(chan struct{})}
	cfg := Config{
		Name: "VI_TEST", Interface: "eth0",
		Machine: vrrp.Config{Name: "VI_TEST", Version: 3, VRID: 51, Priority: 110,
			AdvertInterval: advertInt, Preempt: true, PrimaryAddr: a},
		Filter: vrrp.Filter{VRID: 51, Version: 3},
		VIPs:   []netip.Prefix{vipPrefix}, Source: a, Destination: dsts,
	}
	inst, err := New(cfg, conn, n.vips, n.ann, n.rep, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	n.inst = inst
	n.run(t)
	settle(time.Second)
	if st := n.inst.Status().State; st != vrrp.Master {
		t.Fatalf("alone after 1s: %s, want MASTER", st)
	}
	return n
}
