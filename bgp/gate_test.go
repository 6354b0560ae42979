package bgp

import (
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

// fakeSpeaker records what would go to the peers.
type fakeSpeaker struct {
	sent    []string // "announce P", "announce P gshut", "withdraw P"
	failing bool
}

func (f *fakeSpeaker) Announce(p netip.Prefix, gshut bool) error {
	if f.failing {
		return errors.New("speaker down")
	}
	s := "announce " + p.String()
	if gshut {
		s += " gshut"
	}
	f.sent = append(f.sent, s)
	return nil
}

func (f *fakeSpeaker) Withdraw(p netip.Prefix) error {
	if f.failing {
		return errors.New("speaker down")
	}
	f.sent = append(f.sent, "withdraw "+p.String())
	return nil
}

func (f *fakeSpeaker) take() []string {
	s := f.sent
	f.sent = nil
	return s
}

type fakeReporter struct {
	announced map[netip.Prefix]bool
	delays    []time.Duration
}

func (r *fakeReporter) PrefixAnnounced(p netip.Prefix, a bool) { r.announced[p] = a }
func (r *fakeReporter) WithdrawDelay(d time.Duration)          { r.delays = append(r.delays, d) }

var (
	svc   = netip.MustParsePrefix("10.77.9.10/32")
	svc6  = netip.MustParsePrefix("2001:db8:9::10/128")
	vip   = netip.MustParsePrefix("10.77.9.20/32")
	t0    = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	quiet = slog.New(slog.NewTextHandler(io.Discard, nil))
)

func newTestGate(routes ...Route) (*Gate, *fakeSpeaker, *fakeReporter) {
	sp := &fakeSpeaker{}
	rep := &fakeReporter{announced: map[netip.Prefix]bool{}}
	return NewGate(routes, sp, rep, quiet), sp, rep
}

func up(since time.Time) CheckState   { return CheckState{Up: true, Since: since} }
func down(since time.Time) CheckState { return CheckState{Up: false, Since: since} }

func expectSent(t *testing.T, sp *fakeSpeaker, want ...string) {
	t.Helper()
	if got := sp.take(); !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
		t.Errorf("sent %q, want %q", got, want)
	}
}

func TestAnnouncedOnlyOnceEveryListedCheckHasAFirstResult(t *testing.T) {
	g, sp, rep := newTestGate(Route{Prefix: svc, Checks: []string{"haproxy", "haproxy_stats"}})
	g.Checks(map[string]CheckState{"haproxy": up(t0), "haproxy_stats": {Pending: true}}, t0)
	expectSent(t, sp)
	if rep.announced[svc] {
		t.Error("reported announced while a check is pending")
	}
	g.Checks(map[string]CheckState{"haproxy": up(t0), "haproxy_stats": up(t0)}, t0.Add(time.Second))
	expectSent(t, sp, "announce 10.77.9.10/32")
	if !rep.announced[svc] {
		t.Error("not reported announced")
	}
	// The same inputs again send nothing.
	g.Checks(map[string]CheckState{"haproxy": up(t0), "haproxy_stats": up(t0)}, t0.Add(2*time.Second))
	expectSent(t, sp)
}

func TestWithdrawnWhileAnyListedCheckIsDownAndTheDelayIsMeasured(t *testing.T) {
	g, sp, rep := newTestGate(Route{Prefix: svc, Checks: []string{"haproxy", "haproxy_stats"}})
	g.Checks(map[string]CheckState{"haproxy": up(t0), "haproxy_stats": up(t0)}, t0)
	sp.take()

	failed := t0.Add(10 * time.Second)
	g.Checks(map[string]CheckState{"haproxy": down(failed), "haproxy_stats": up(t0)}, failed.Add(3*time.Millisecond))
	expectSent(t, sp, "withdraw 10.77.9.10/32")
	if rep.announced[svc] {
		t.Error("still reported announced")
	}
	if want := []time.Duration{3 * time.Millisecond}; !reflect.DeepEqual(rep.delays, want) {
		t.Errorf("withdraw delays %v, want %v", rep.delays, want)
	}
	if st := g.Status()[0]; st.Announced || st.Reason != "check haproxy down" {
		t.Errorf("status %+v", st)
	}

	// A second check failing while withdrawn sends nothing more.
	g.Checks(map[string]CheckState{"haproxy": down(failed), "haproxy_stats": down(failed.Add(time.Second))}, failed.Add(time.Second))
	expectSent(t, sp)
	// One back up is not enough.
	g.Checks(map[string]CheckState{"haproxy": up(failed.Add(2 * time.Second)), "haproxy_stats": down(failed.Add(time.Second))}, failed.Add(2*time.Second))
	expectSent(t, sp)
	g.Checks(map[string]CheckState{"haproxy": up(failed.Add(2 * time.Second)), "haproxy_stats": up(failed.Add(3 * time.Second))}, failed.Add(3*time.Second))
	expectSent(t, sp, "announce 10.77.9.10/32")
	if len(rep.delays) != 1 {
		t.Errorf("withdraw delays %v, want one", rep.delays)
	}
}

func TestUnlistedChecksDoNotGate(t *testing.T) {
	g, sp, _ := newTestGate(Route{Prefix: svc, Checks: []string{"haproxy"}}, Route{Prefix: svc6, Checks: []string{"stats6"}})
	g.Checks(map[string]CheckState{"haproxy": up(t0), "stats6": down(t0), "other": down(t0)}, t0)
	expectSent(t, sp, "announce 10.77.9.10/32")
}

func TestVRRPGatedRouteFollowsMaster(t *testing.T) {
	g, sp, _ := newTestGate(Route{Prefix: vip, Instance: "VI_LOGS"})
	g.Checks(map[string]CheckState{"haproxy": up(t0)}, t0)
	expectSent(t, sp)
	g.InstanceState("VI_LOGS", true, t0)
	expectSent(t, sp, "announce 10.77.9.20/32")
	g.InstanceState("VI_OTHER", false, t0)
	expectSent(t, sp)
	g.InstanceState("VI_LOGS", false, t0.Add(time.Second))
	expectSent(t, sp, "withdraw 10.77.9.20/32")
}

func TestStopDrainsWithGracefulShutdownThenWithdraws(t *testing.T) {
	g, sp, rep := newTestGate(Route{Prefix: svc, Checks: []string{"haproxy"}}, Route{Prefix: vip, Instance: "VI_LOGS"})
	g.Checks(map[string]CheckState{"haproxy": up(t0)}, t0)
	sp.take()

	g.Drain(t0.Add(time.Second))
	expectSent(t, sp, "announce 10.77.9.10/32 gshut")
	if !g.Draining() || !g.Status()[0].Draining {
		t.Error("not draining after Drain")
	}
	// While draining nothing is announced anew, not even a route whose instance became MASTER.
	g.InstanceState("VI_LOGS", true, t0.Add(1500*time.Millisecond))
	expectSent(t, sp)

	if n := g.WithdrawAll(t0.Add(3 * time.Second)); n != 1 {
		t.Errorf("WithdrawAll withdrew %d prefixes, want 1", n)
	}
	expectSent(t, sp, "withdraw 10.77.9.10/32")
	if rep.announced[svc] || g.Draining() {
		t.Error("announced after WithdrawAll")
	}
	if len(rep.delays) != 0 {
		t.Errorf("a stop counted as a check failure: %v", rep.delays)
	}
	// After the stop, no input announces again.
	g.Checks(map[string]CheckState{"haproxy": up(t0)}, t0.Add(4*time.Second))
	expectSent(t, sp)
}

func TestCheckFailingDuringDrainWithdrawsAtOnce(t *testing.T) {
	g, sp, _ := newTestGate(Route{Prefix: svc, Checks: []string{"haproxy"}})
	g.Checks(map[string]CheckState{"haproxy": up(t0)}, t0)
	g.Drain(t0)
	sp.take()
	g.Checks(map[string]CheckState{"haproxy": down(t0.Add(time.Second))}, t0.Add(time.Second))
	expectSent(t, sp, "withdraw 10.77.9.10/32")
}

func TestSetRoutesWithdrawsRemovedAndAnnouncesAdded(t *testing.T) {
	g, sp, rep := newTestGate(Route{Prefix: svc, Checks: []string{"haproxy"}}, Route{Prefix: vip, Checks: []string{"haproxy"}})
	g.Checks(map[string]CheckState{"haproxy": up(t0)}, t0)
	expectSent(t, sp, "announce 10.77.9.10/32", "announce 10.77.9.20/32")

	g.SetRoutes([]Route{{Prefix: svc, Checks: []string{"haproxy"}}, {Prefix: svc6, Checks: []string{"haproxy"}}}, t0.Add(time.Second))
	expectSent(t, sp, "withdraw 10.77.9.20/32", "announce 2001:db8:9::10/128")
	if rep.announced[vip] || !rep.announced[svc6] || !rep.announced[svc] {
		t.Errorf("reported %v", rep.announced)
	}
	if got := len(g.Status()); got != 2 {
		t.Errorf("%d routes in status, want 2", got)
	}
	// A route whose gate changes is re-evaluated, not re-announced needlessly: the added check
	// has no result yet, so what stands stays until it has one.
	g.SetRoutes([]Route{{Prefix: svc, Checks: []string{"haproxy", "stats"}}, {Prefix: svc6, Checks: []string{"haproxy"}}}, t0.Add(2*time.Second))
	expectSent(t, sp)
	g.Checks(map[string]CheckState{"haproxy": up(t0), "stats": down(t0.Add(3 * time.Second))}, t0.Add(3*time.Second))
	expectSent(t, sp, "withdraw 10.77.9.10/32")
}

func TestSpeakerFailureLeavesTheRouteUnannouncedAndRetries(t *testing.T) {
	g, sp, rep := newTestGate(Route{Prefix: svc, Checks: []string{"haproxy"}})
	sp.failing = true
	g.Checks(map[string]CheckState{"haproxy": up(t0)}, t0)
	if rep.announced[svc] {
		t.Error("reported announced although the speaker failed")
	}
	if st := g.Status()[0]; st.Announced || st.Reason != "announce failed: speaker down" {
		t.Errorf("status %+v", st)
	}
	sp.failing = false
	g.Checks(map[string]CheckState{"haproxy": up(t0)}, t0.Add(time.Second))
	expectSent(t, sp, "announce 10.77.9.10/32")
}

func TestChecksRestartedByAReloadDoNotWithdraw(t *testing.T) {
	g, sp, _ := newTestGate(Route{Prefix: svc, Checks: []string{"haproxy", "haproxy_stats"}})
	g.Checks(map[string]CheckState{"haproxy": up(t0), "haproxy_stats": up(t0)}, t0)
	sp.take()
	// The reload's new runner has no result for haproxy_stats yet.
	g.Checks(map[string]CheckState{"haproxy": up(t0), "haproxy_stats": {Pending: true}}, t0.Add(time.Second))
	expectSent(t, sp)
	// But a check that is down while another is pending withdraws.
	g.Checks(map[string]CheckState{"haproxy": down(t0.Add(2 * time.Second)), "haproxy_stats": {Pending: true}}, t0.Add(2*time.Second))
	expectSent(t, sp, "withdraw 10.77.9.10/32")
}

func TestDrainWithdrawsChecksGatedRoutesUntilUndrain(t *testing.T) {
	g, sp, rep := newTestGate(Route{Prefix: svc, Checks: []string{"haproxy"}}, Route{Prefix: vip, Instance: "VI_LOGS"})
	g.Checks(map[string]CheckState{"haproxy": up(t0)}, t0)
	g.InstanceState("VI_LOGS", true, t0)
	expectSent(t, sp, "announce 10.77.9.10/32", "announce 10.77.9.20/32")

	g.Drain(t0.Add(time.Second))
	expectSent(t, sp, "announce 10.77.9.10/32 gshut", "announce 10.77.9.20/32 gshut")
	g.SetDrained(true, t0.Add(3*time.Second))
	expectSent(t, sp, "withdraw 10.77.9.10/32") // the VRRP-gated one goes with the handover
	if st := g.Status()[0]; st.Announced || st.Reason != "drained (hapair drain)" {
		t.Errorf("status %+v", st)
	}
	// Checks recovering or flapping do not announce a drained node.
	g.Checks(map[string]CheckState{"haproxy": up(t0.Add(4 * time.Second))}, t0.Add(4*time.Second))
	expectSent(t, sp)
	if len(rep.delays) != 0 {
		t.Errorf("a drain counted as a check failure: %v", rep.delays)
	}

	g.SetDrained(false, t0.Add(5*time.Second))
	expectSent(t, sp, "announce 10.77.9.10/32")
	// A node started drained announces nothing until undrain.
	g2, sp2, _ := newTestGate(Route{Prefix: svc, Checks: []string{"haproxy"}})
	g2.SetDrained(true, t0)
	g2.Checks(map[string]CheckState{"haproxy": up(t0)}, t0)
	expectSent(t, sp2)
	// A stop after an undrain still withdraws for good.
	g.WithdrawAll(t0.Add(6 * time.Second))
	expectSent(t, sp, "withdraw 10.77.9.10/32", "withdraw 10.77.9.20/32")
	g.SetDrained(false, t0.Add(7*time.Second))
	expectSent(t, sp)
	g.Checks(map[string]CheckState{"haproxy": up(t0)}, t0.Add(8*time.Second))
	expectSent(t, sp)
}
