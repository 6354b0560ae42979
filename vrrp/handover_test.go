package vrrp

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// Tests of the make-before-break handover (Machine.Resign) and of drain (Machine.SetDrained):
// hapair's additions to RFC 5798 6.4.3's Shutdown event, see the Machine documentation.

func handoverDone(since time.Time, to netip.Addr) Action {
	return Action{Kind: ActHandoverDone, Since: since, HandedTo: to}
}

func TestHapair_ResignSendsPriorityZeroAndKeepsTheVIPs(t *testing.T) {
	m := newTestMachine(t, nil)
	became := startMaster(t, m)
	at := became.Add(300 * time.Millisecond)
	// RFC 5798 6.4.3 Shutdown sends priority 0 and leaves at once; Resign sends it and stays.
	wantActions(t, "Resign", m.Resign(at), sendAdvert(0))
	wantState(t, m, Master)
	if !m.HandingOver() || m.MasterAddr() != us {
		t.Fatalf("after Resign: handing over %v, master %v; want true, us", m.HandingOver(), m.MasterAddr())
	}
	wantDeadline(t, m, at.Add(time.Second))
	// Its Adver_Timer repeats priority 0, never its own priority, so that a Backup that lost
	// the first one still takes over after Skew_Time.
	wantActions(t, "Tick", m.Tick(at.Add(time.Second)), sendAdvert(0))
	// A priority change during the handover is not advertised: it would cancel the takeover
	// of a Backup without preempt.
	wantActions(t, "SetPriority", m.SetPriority(at.Add(1100*time.Millisecond), 90))
	// Another Master leaving as well is no new Master.
	wantActions(t, "priority 0 heard", m.Receive(at.Add(1200*time.Millisecond), lower, adv(m, 0, time.Second)))
	wantState(t, m, Master)
	// The new Master's first advert: now, and only now, the VIPs go.
	heard := at.Add(1610 * time.Millisecond)
	wantActions(t, "new Master heard", m.Receive(heard, lower, adv(m, 100, time.Second)),
		transition(Master, Init, "stop", time.Time{}), detach, handoverDone(at, lower))
	wantState(t, m, Init)
	if m.HandingOver() || !m.NextDeadline().IsZero() || m.MasterAddr() != lower {
		t.Fatalf("after the handover: handing over %v, deadline %v, master %v; want false, none, %v",
			m.HandingOver(), m.NextDeadline(), m.MasterAddr(), lower)
	}
}

func TestHapair_ResignEndsWhenAnyRouterAdvertises(t *testing.T) {
	// Our adverts say 0, so a lower-priority or lower-address router advertising is the new
	// Master too: RFC 5798 6.4.3 would discard its advert, a resigning Master must not.
	for _, from := range []netip.Addr{lower, higher} {
		m := newTestMachine(t, nil)
		at := startMaster(t, m)
		m.Resign(at)
		wantActions(t, "advert from "+from.String(), m.Receive(at.Add(time.Millisecond), from, adv(m, 1, time.Second)),
			transition(Master, Init, "stop", time.Time{}), detach, handoverDone(at, from))
	}
}

func TestHapair_ResignWithoutANewMasterReleasesAfterLongestMasterDown(t *testing.T) {
	for _, version := range []int{2, 3} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			m := newTestMachine(t, func(c *Config) { c.Version = version })
			at := startMaster(t, m)
			m.Resign(at)
			// 3*Master_Adver_Interval + Skew_Time at priority 1: the longest any Backup waits.
			want := 3*time.Second + 996093750*time.Nanosecond
			if version == 3 {
				want = 3*time.Second + 990*time.Millisecond
			}
			if got := m.LongestMasterDown(); got != want {
				t.Fatalf("LongestMasterDown %v, want %v", got, want)
			}
			end := at.Add(want)
			sent := []time.Time{at}
			for now := m.NextDeadline(); now.Before(end); now = m.NextDeadline() {
				for _, a := range m.Tick(now) {
					if a.Kind != ActSendAdvert || a.Priority != 0 {
						t.Fatalf("Tick at +%v: %v, want only priority-0 adverts", now.Sub(at), a)
					}
					sent = append(sent, now)
				}
			}
			// One per interval, the third moved onto the interval's phase (one early advert).
			if len(sent) < 4 || len(sent) > 5 {
				t.Fatalf("%d priority-0 adverts before the deadline, want 4 or 5 (one per interval, one early)", len(sent))
			}
			for i := 1; i < len(sent); i++ {
				if gap := sent[i].Sub(sent[i-1]); gap <= 0 || gap > time.Second {
					t.Fatalf("priority-0 advert %d %v after the one before, want (0, 1s]", i, gap)
				}
			}
			wantDeadline(t, m, end)
			wantActions(t, "deadline", m.Tick(end),
				transition(Master, Init, "stop", time.Time{}), detach, handoverDone(at, netip.Addr{}))
			wantState(t, m, Init)
		})
	}
}

// TestHapair_LongestMasterDownIsOurIntervalOnceMaster: a VRRPv3 router that followed a faster
// Master learnt its interval (RFC 5798 6.4.2); once Master itself, its Backups learn ours, so a
// handover is bounded by our Advertisement_Interval. It kept the one learnt: at 1 s after a
// 100 ms Master, a handover ended after 390 ms while a Backup at priority 110 takes over from
// our priority 0 only at its Skew_Time, 570 ms.
func TestHapair_LongestMasterDownIsOurIntervalOnceMaster(t *testing.T) {
	m := newTestMachine(t, nil)
	startBackup(t, m)
	m.Receive(t0.Add(time.Second), higher, adv(m, 200, 100*time.Millisecond))
	at := m.NextDeadline() // the faster Master is gone
	m.Tick(at)
	wantState(t, m, Master)
	want := 3*time.Second + 990*time.Millisecond // 3 s + 255*100cs/256
	if got := m.LongestMasterDown(); got != want {
		t.Fatalf("LongestMasterDown %v, want %v: our 1 s interval, not the 100 ms one learnt as a Backup", got, want)
	}
	m.Resign(at)
	wantDeadline(t, m, at.Add(time.Second)) // the priority 0 repeated, before the end at +3.99 s
}

func TestHapair_ResignOutsideMasterIsShutdown(t *testing.T) {
	m := newTestMachine(t, nil)
	startBackup(t, m)
	wantActions(t, "Resign", m.Resign(t0.Add(time.Second)), transition(Backup, Init, "stop", time.Time{}))
	wantActions(t, "Resign in Init", m.Resign(t0.Add(2*time.Second)))
}

func TestHapair_ShutdownDuringAHandoverLeavesAtOnce(t *testing.T) {
	m := newTestMachine(t, nil)
	at := startMaster(t, m)
	m.Resign(at)
	wantActions(t, "Shutdown", m.Shutdown(at.Add(time.Millisecond)),
		transition(Master, Init, "stop", time.Time{}), sendAdvert(0), detach)
	if m.HandingOver() {
		t.Fatal("still handing over after Shutdown")
	}
}

func TestHapair_FaultDuringAHandoverReleasesAtOnce(t *testing.T) {
	// HAProxy died: holding the VIPs any longer only black-holes the clients.
	m := newTestMachine(t, nil)
	at := startMaster(t, m)
	m.Resign(at)
	wantActions(t, "SetFault", m.SetFault(at.Add(time.Millisecond), true, "haproxy"),
		transition(Master, Fault, "fault: haproxy", time.Time{}), sendAdvert(0), detach)
	if m.HandingOver() {
		t.Fatal("still handing over in Fault")
	}
}

func TestHapair_DrainedMasterHandsOverAndStaysBackup(t *testing.T) {
	m := newTestMachine(t, func(c *Config) { c.FastFailover = true })
	at := startMaster(t, m)
	wantActions(t, "SetDrained", m.SetDrained(at, true), sendAdvert(0))
	if m.Priority() != 1 || !m.Drained() || !m.HandingOver() {
		t.Fatalf("drained Master: priority %d, drained %v, handing over %v; want 1, true, true",
			m.Priority(), m.Drained(), m.HandingOver())
	}
	heard := at.Add(610 * time.Millisecond)
	wantActions(t, "new Master heard", m.Receive(heard, lower, adv(m, 100, time.Second)),
		transition(Master, Backup, "drain", time.Time{}), detach, handoverDone(at, lower))
	wantState(t, m, Backup)
	if m.MasterAddr() != lower || m.MasterPriority() != 100 {
		t.Fatalf("master %v at %d, want %v at 100", m.MasterAddr(), m.MasterPriority(), lower)
	}
	// The checks recovering do not lift a drain: the drained router stays at 1 and never
	// preempts its new Master.
	wantActions(t, "SetPriority", m.SetPriority(heard.Add(time.Millisecond), 120))
	if m.Priority() != 1 {
		t.Fatalf("drained priority %d after SetPriority(120), want 1", m.Priority())
	}
	next := heard.Add(time.Second)
	wantActions(t, "next advert", m.Receive(next, lower, adv(m, 100, time.Second)))
	wantDeadline(t, m, next.Add(m.MasterDownInterval()))
	// Undrained: the tracked priority (120) comes back and the router preempts.
	undrained := next.Add(100 * time.Millisecond)
	wantActions(t, "undrain", m.SetDrained(undrained, false))
	if m.Priority() != 120 {
		t.Fatalf("undrained priority %d, want 120 (the tracked priority)", m.Priority())
	}
	wantDeadline(t, m, undrained.Add(m.SkewTime()))
	wantActions(t, "Tick", m.Tick(undrained.Add(m.SkewTime())), becameMaster(Backup, "preempt", undrained, 120)...)
}

func TestHapair_DrainWithoutANewMasterStaysMasterAtPriorityOne(t *testing.T) {
	// Releasing to nobody would stop the service until our own Master_Down_Timer brought the
	// VIPs back: a drain nobody takes keeps the VIPs and says so.
	m := newTestMachine(t, nil)
	at := startMaster(t, m)
	m.SetDrained(at, true)
	end := at.Add(m.LongestMasterDown())
	for now := m.NextDeadline(); now.Before(end); now = m.NextDeadline() {
		m.Tick(now)
	}
	wantActions(t, "deadline", m.Tick(end), sendAdvert(1), handoverDone(at, netip.Addr{}))
	wantState(t, m, Master)
	if m.HandingOver() {
		t.Fatal("still handing over after the deadline")
	}
	wantActions(t, "Tick", m.Tick(end.Add(time.Second)), sendAdvert(1))
	// A router that appears later takes over as from any lower-priority Master.
	wantActions(t, "higher", m.Receive(end.Add(1500*time.Millisecond), lower, adv(m, 100, time.Second)),
		transition(Master, Backup, "higher priority", time.Time{}), detach)
}

func TestHapair_UndrainDuringTheHandoverClaimsTheRouterBack(t *testing.T) {
	m := newTestMachine(t, nil)
	at := startMaster(t, m)
	m.SetDrained(at, true)
	back := at.Add(200 * time.Millisecond)
	// Our own priority at once: a Backup that started its Skew_Time on our 0 accepts it and
	// stands down (RFC 5798 6.4.2, with or without preempt).
	wantActions(t, "undrain", m.SetDrained(back, false), sendAdvert(100))
	wantState(t, m, Master)
	if m.HandingOver() || m.Priority() != 100 {
		t.Fatalf("handing over %v, priority %d; want false, 100", m.HandingOver(), m.Priority())
	}
	wantDeadline(t, m, back.Add(time.Second))
}

func TestHapair_ResignDuringADrainBecomesAStop(t *testing.T) {
	m := newTestMachine(t, nil)
	at := startMaster(t, m)
	m.SetDrained(at, true)
	wantActions(t, "Resign", m.Resign(at.Add(100*time.Millisecond)))
	wantDeadline(t, m, at.Add(time.Second))
	wantActions(t, "new Master heard", m.Receive(at.Add(700*time.Millisecond), lower, adv(m, 100, time.Second)),
		transition(Master, Init, "stop", time.Time{}), detach, handoverDone(at, lower))
}

func TestHapair_DrainedBackupIsTheLastResort(t *testing.T) {
	m := newTestMachine(t, func(c *Config) { c.FastFailover = true })
	startBackup(t, m)
	at := t0.Add(500 * time.Millisecond)
	m.Receive(at, lower, adv(m, 90, time.Second)) // a lower Master: a fast takeover starts
	wantDeadline(t, m, at.Add(m.SkewTime()))
	// Drained, it no longer outranks that Master: the takeover is called off.
	wantActions(t, "SetDrained", m.SetDrained(at.Add(10*time.Millisecond), true))
	wantDeadline(t, m, at.Add(m.MasterDownInterval()))
	// The Master leaving: a drained router still takes over rather than leave nobody.
	left := at.Add(time.Second)
	m.Receive(left, lower, adv(m, 0, time.Second))
	wantActions(t, "Tick", m.Tick(left.Add(m.SkewTime())), becameMaster(Backup, "priority 0 received", left, 1)...)
}

func TestHapair_DrainedBeforeStart(t *testing.T) {
	// The drained state is kept across restarts: set before Start, it holds from the start.
	m := newTestMachine(t, nil)
	wantActions(t, "SetDrained", m.SetDrained(t0, true))
	startBackup(t, m)
	if m.Priority() != 1 {
		t.Fatalf("priority %d, want 1", m.Priority())
	}
}

// --- the simulation: no instant without a router holding the VIPs ---

// wantCovered checks from the routers' histories that after `from` the VIPs were never
// without a holder: the old Master left Master no earlier than the new one entered it.
func wantCovered(t *testing.T, n *simNet, old, new *simRouter, from time.Time) {
	t.Helper()
	var left time.Time
	for _, h := range old.history {
		if h.from == Master && !h.at.Before(from) && left.IsZero() {
			left = h.at
		}
	}
	h, _ := lastTakeover(t, n, new)
	took := h.at
	if left.IsZero() || took.Before(from) || left.Before(took) {
		t.Fatalf("r%d left Master at %v, r%d entered it at %v: a gap without a holder\n%s",
			old.id, left, new.id, took, n.report())
	}
}

func TestSim_SeedPairResignHandsOverWithoutAGap(t *testing.T) {
	for _, version := range []int{2, 3} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			n := seedPair(t, version, true)
			master, backup := n.routers[0], n.routers[1]
			stopAt := n.now.Add(300 * time.Millisecond)
			n.at(stopAt, "r0 resign", func() { n.apply(master, master.m.Resign(n.now)) })
			n.run(stopAt.Add(10 * time.Second))
			if ms := n.masters(); len(ms) != 1 || ms[0] != backup || master.state != Init || len(n.errs) > 0 {
				t.Fatalf("want r1 sole Master and r0 stopped:\n%s", n.report())
			}
			// The peer's takeover time is unchanged: Skew_Time after the priority 0.
			h, took := lastTakeover(t, n, backup)
			if h.reason != "priority 0 received" || took != backup.m.SkewTime() {
				t.Fatalf("takeover %q after %v, want priority 0 received after Skew_Time %v:\n%s",
					h.reason, took, backup.m.SkewTime(), n.report())
			}
			wantCovered(t, n, master, backup, stopAt)
		})
	}
}

func TestSim_SeedPairResignLosingThePriorityZeroAdvert(t *testing.T) {
	// The first priority-0 advert is lost: the Backup hears the repeat one interval later.
	n := seedPair(t, 2, true)
	master, backup := n.routers[0], n.routers[1]
	stopAt := n.now.Add(300 * time.Millisecond)
	n.at(stopAt, "r0 resign, link r0->r1 lossy for 500ms", func() {
		n.links[0][1].loss = 1
		n.apply(master, master.m.Resign(n.now))
	})
	n.at(stopAt.Add(500*time.Millisecond), "link r0->r1 fine", func() { n.links[0][1].loss = 0 })
	n.run(stopAt.Add(10 * time.Second))
	h, _ := lastTakeover(t, n, backup)
	if got, want := h.at.Sub(stopAt), time.Second+backup.m.SkewTime(); got > want+time.Millisecond || got < want {
		t.Fatalf("takeover %v after the stop, want one interval + Skew_Time = %v:\n%s", got, want, n.report())
	}
	wantCovered(t, n, master, backup, stopAt)
}

func TestSim_SeedPairResignWhileDeafReleasesAtTheDeadline(t *testing.T) {
	// r0 cannot hear r1 (one-way partition): r1 takes over on r0's priority 0, r0 never hears
	// it and releases at its deadline, as it would have released at once without the handover.
	n := seedPair(t, 2, true)
	master, backup := n.routers[0], n.routers[1]
	stopAt := n.now.Add(300 * time.Millisecond)
	n.at(stopAt, "r1->r0 cut, r0 resign", func() {
		n.links[1][0].cut = true
		n.apply(master, master.m.Resign(n.now))
	})
	n.run(stopAt.Add(10 * time.Second))
	var left time.Time
	for _, h := range master.history {
		if h.from == Master && h.to == Init {
			left = h.at
		}
	}
	if got, want := left.Sub(stopAt), master.m.LongestMasterDown(); got != want {
		t.Fatalf("r0 left Master %v after the stop, want LongestMasterDown %v:\n%s", got, want, n.report())
	}
	if ms := n.masters(); len(ms) != 1 || ms[0] != backup {
		t.Fatalf("want r1 sole Master:\n%s", n.report())
	}
}

func TestSim_SeedPairDrainAndUndrainWithoutAGap(t *testing.T) {
	for _, version := range []int{2, 3} {
		t.Run(fmt.Sprintf("v%d", version), func(t *testing.T) {
			n := seedPair(t, version, true)
			a, b := n.routers[0], n.routers[1]
			drainAt := n.now.Add(300 * time.Millisecond)
			n.at(drainAt, "r0 drain", func() { n.apply(a, a.m.SetDrained(n.now, true)) })
			undrainAt := drainAt.Add(20 * time.Second)
			n.run(undrainAt)
			if ms := n.masters(); len(ms) != 1 || ms[0] != b || a.state != Backup || len(n.errs) > 0 {
				t.Fatalf("drained r0 should be Backup under r1:\n%s", n.report())
			}
			wantCovered(t, n, a, b, drainAt)
			n.at(undrainAt, "r0 undrain", func() { n.apply(a, a.m.SetDrained(n.now, false)) })
			n.run(undrainAt.Add(20 * time.Second))
			if ms := n.masters(); len(ms) != 1 || ms[0] != a || len(n.errs) > 0 {
				t.Fatalf("undrained r0 should preempt back:\n%s", n.report())
			}
			h, took := lastTakeover(t, n, a)
			if h.reason != "preempt" || took != a.m.SkewTime() {
				t.Fatalf("preempted back %q after %v, want preempt after Skew_Time %v", h.reason, took, a.m.SkewTime())
			}
			wantCovered(t, n, b, a, undrainAt)
		})
	}
}
