package vrrp

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// Tests named TestRFC5798_6_x_y follow the paragraphs of RFC 5798 section 6 (and RFC 3768
// section 6 for the VRRPv2 timer forms). Tests named TestHapair... cover where hapair goes
// beyond the letter of the RFC (see the Machine documentation).

var (
	t0     = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	us     = netip.MustParseAddr("10.0.0.2")
	higher = netip.MustParseAddr("10.0.0.3") // a peer with a higher primary address
	lower  = netip.MustParseAddr("10.0.0.1") // a peer with a lower primary address
)

const testVRID = 51

// newTestMachine returns a plain RFC 5798 machine (VRRPv3, priority 100, 1s, preempt on,
// no fast failover, no preempt delay), changed by edit.
func newTestMachine(t *testing.T, edit func(*Config)) *Machine {
	t.Helper()
	cfg := Config{
		Name: "VI_TEST", Version: 3, VRID: testVRID, Priority: 100,
		AdvertInterval: time.Second, Preempt: true, PrimaryAddr: us,
	}
	if edit != nil {
		edit(&cfg)
	}
	m, err := NewMachine(cfg)
	if err != nil {
		t.Fatalf("NewMachine: %v", err)
	}
	return m
}

// startBackup starts m at t0 and checks it entered Backup.
func startBackup(t *testing.T, m *Machine) {
	t.Helper()
	wantActions(t, "Start", m.Start(t0), transition(Init, Backup, "init", time.Time{}))
}

// startMaster starts m at t0 and lets its Master_Down_Timer fire without any advert.
func startMaster(t *testing.T, m *Machine) time.Time {
	t.Helper()
	startBackup(t, m)
	at := m.NextDeadline()
	m.Tick(at)
	if m.State() != Master {
		t.Fatalf("after the Master_Down_Timer at %v: state %v, want MASTER", at, m.State())
	}
	return at
}

func adv(m *Machine, prio uint8, interval time.Duration) Advert {
	return Advert{Version: m.cfg.Version, VRID: testVRID, Priority: prio, Interval: interval}
}

func transition(from, to State, reason string, since time.Time) Action {
	return Action{Kind: ActTransition, From: from, To: to, Reason: reason, Since: since}
}

func sendAdvert(prio uint8) Action { return Action{Kind: ActSendAdvert, Priority: prio} }

var (
	attach = Action{Kind: ActAttachVIPs}
	detach = Action{Kind: ActDetachVIPs}
	garp   = Action{Kind: ActSendGARP}
)

// becameMaster is the exact action list of a transition to Master.
func becameMaster(from State, reason string, since time.Time, prio uint8) []Action {
	return []Action{transition(from, Master, reason, since), attach, garp, sendAdvert(prio)}
}

func wantActions(t *testing.T, what string, got []Action, want ...Action) {
	t.Helper()
	eq := func(a, b Action) bool {
		return a.Kind == b.Kind && a.Priority == b.Priority && a.From == b.From && a.To == b.To &&
			a.Reason == b.Reason && a.Since.Equal(b.Since) && a.HandedTo == b.HandedTo
	}
	if !slices.EqualFunc(got, want, eq) {
		t.Fatalf("%s:\n got  %v\n want %v", what, got, want)
	}
}

func wantState(t *testing.T, m *Machine, want State) {
	t.Helper()
	if got := m.State(); got != want {
		t.Fatalf("state %v, want %v", got, want)
	}
}

func wantDeadline(t *testing.T, m *Machine, want time.Time) {
	t.Helper()
	if got := m.NextDeadline(); !got.Equal(want) {
		t.Fatalf("next deadline %v, want %v (off by %v)", got, want, got.Sub(want))
	}
}

// --- 6.1 Parameters per Virtual Router, 6.2 Timers (and RFC 3768 6.1/6.2) ---

func TestRFC5798_6_1_SkewTimeAndMasterDownInterval(t *testing.T) {
	tests := []struct {
		name     string
		version  int
		prio     uint8
		interval time.Duration
		skew     time.Duration
		down     time.Duration
	}{
		// v3: ((256-Priority)*Master_Adver_Interval)/256 in whole centiseconds.
		{"v3 100 1s", 3, 100, time.Second, 600 * time.Millisecond, 3600 * time.Millisecond},                // 156*100/256 = 60.9
		{"v3 110 1s", 3, 110, time.Second, 570 * time.Millisecond, 3570 * time.Millisecond},                // 146*100/256 = 57.03
		{"v3 254 1s", 3, 254, time.Second, 0, 3 * time.Second},                                             // 2*100/256 = 0.78
		{"v3 1 1s", 3, 1, time.Second, 990 * time.Millisecond, 3990 * time.Millisecond},                    // 255*100/256 = 99.6
		{"v3 100 50ms", 3, 100, 50 * time.Millisecond, 30 * time.Millisecond, 180 * time.Millisecond},      // 156*5/256 = 3.05
		{"v3 100 40.95s", 3, 100, 4095 * v3TimerUnit, 24950 * time.Millisecond, 147800 * time.Millisecond}, // 156*4095/256 = 2495.4
		{"v3 owner 1s", 3, 255, time.Second, 0, 3 * time.Second},
		// v2 (RFC 3768 6.1): Skew_Time = (256-Priority)/256 seconds, whatever the interval.
		{"v2 100 1s", 2, 100, time.Second, 609375 * time.Microsecond, 3609375 * time.Microsecond},
		{"v2 110 1s", 2, 110, time.Second, 570312500 * time.Nanosecond, 3570312500 * time.Nanosecond},
		{"v2 100 3s", 2, 100, 3 * time.Second, 609375 * time.Microsecond, 9609375 * time.Microsecond},
		{"v2 255 1s", 2, 255, time.Second, 3906250 * time.Nanosecond, 3003906250 * time.Nanosecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestMachine(t, func(c *Config) {
				c.Version, c.Priority, c.AdvertInterval = tt.version, tt.prio, tt.interval
			})
			if got := m.SkewTime(); got != tt.skew {
				t.Errorf("SkewTime = %v, want %v", got, tt.skew)
			}
			if got := m.MasterDownInterval(); got != tt.down {
				t.Errorf("MasterDownInterval = %v, want %v", got, tt.down)
			}
		})
	}
}

func TestRFC5798_6_1_SkewTimeFollowsEffectivePriority(t *testing.T) {
	m := newTestMachine(t, nil)
	m.SetPriority(t0, 200)
	if got, want := m.SkewTime(), 210*time.Millisecond; got != want { // 56*100/256 = 21.9
		t.Fatalf("SkewTime at priority 200 = %v, want %v", got, want)
	}
}

func TestRFC5798_6_1_PreemptModeIgnoredByOwner(t *testing.T) {
	// "the router that owns the IPvX address associated with the VR always preempts,
	// independent of the setting of this flag" - and of hapair's preempt delay.
	m := newTestMachine(t, func(c *Config) {
		c.Preempt, c.PreemptDelay, c.FastFailover = false, time.Hour, true
	})
	startBackup(t, m) // priority 100 at start, then the owner's priority
	m.SetPriority(t0, OwnerPriority)
	at := t0.Add(time.Second)
	wantActions(t, "lower-priority advert", m.Receive(at, higher, adv(m, 200, time.Second)))
	got := m.Tick(at)
	wantActions(t, "Tick", got, becameMaster(Backup, "preempt", at, 255)...)
}

func TestRFC5798_6_1_NewMachineRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"version 1", func(c *Config) { c.Version = 1 }, "version 1"},
		{"vrid 0", func(c *Config) { c.VRID = 0 }, "virtual router id 0"},
		{"priority 0", func(c *Config) { c.Priority = 0 }, "priority 0"},
		{"v3 interval 0", func(c *Config) { c.AdvertInterval = 0 }, "advert interval 0s"},
		{"v3 interval 15ms", func(c *Config) { c.AdvertInterval = 15 * time.Millisecond }, "10ms steps"},
		{"v3 interval 41s", func(c *Config) { c.AdvertInterval = 41 * time.Second }, "advert interval 41s"},
		{"v2 interval 500ms", func(c *Config) { c.Version, c.AdvertInterval = 2, 500*time.Millisecond }, "whole seconds"},
		{"v2 interval 256s", func(c *Config) { c.Version, c.AdvertInterval = 2, 256*time.Second }, "advert interval 4m16s"},
		{"v2 over ipv6", func(c *Config) { c.Version, c.PrimaryAddr = 2, netip.MustParseAddr("fe80::1") }, "IPv4 only"},
		{"no primary", func(c *Config) { c.PrimaryAddr = netip.Addr{} }, "primary address missing"},
		{"negative delay", func(c *Config) { c.PreemptDelay = -time.Second }, "preempt delay"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Name: "VI_BAD", Version: 3, VRID: 1, Priority: 100, AdvertInterval: time.Second, PrimaryAddr: us}
			tt.edit(&cfg)
			_, err := NewMachine(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "VI_BAD") {
				t.Fatalf("NewMachine error %v, want one naming VI_BAD and containing %q", err, tt.want)
			}
		})
	}
	for _, cfg := range []Config{
		{Version: 2, VRID: 255, Priority: 255, AdvertInterval: 255 * time.Second, PrimaryAddr: us},
		{Version: 3, VRID: 1, Priority: 1, AdvertInterval: 10 * time.Millisecond, PrimaryAddr: netip.MustParseAddr("fe80::1")},
		{Version: 2, VRID: 1, Priority: 1, AdvertInterval: time.Second, PrimaryAddr: netip.MustParseAddr("::ffff:10.0.0.2")},
	} {
		if _, err := NewMachine(cfg); err != nil {
			t.Errorf("NewMachine(%+v): %v", cfg, err)
		}
	}
}

// --- 6.4.1 Initialize ---

func TestRFC5798_6_4_1_OwnerBecomesMasterAtOnce(t *testing.T) {
	// "If the Priority = 255 ... Send an ADVERTISEMENT, broadcast a gratuitous ARP ...,
	// Set the Adver_Timer to Advertisement_Interval, Transition to the {Master} state"
	for _, version := range []int{2, 3} {
		m := newTestMachine(t, func(c *Config) { c.Version, c.Priority = version, OwnerPriority })
		wantActions(t, "Start", m.Start(t0), becameMaster(Init, "init", t0, 255)...)
		wantState(t, m, Master)
		wantDeadline(t, m, t0.Add(time.Second))
		if m.MasterAddr() != us || m.MasterPriority() != 255 {
			t.Errorf("v%d: MasterAddr %v priority %d, want us at 255", version, m.MasterAddr(), m.MasterPriority())
		}
	}
}

func TestRFC5798_6_4_1_OthersBecomeBackup(t *testing.T) {
	// "Set Master_Adver_Interval to Advertisement_Interval, Set the Master_Down_Timer to
	// Master_Down_Interval, Transition to the {Backup} state"
	for _, version := range []int{2, 3} {
		m := newTestMachine(t, func(c *Config) { c.Version = version })
		startBackup(t, m)
		wantState(t, m, Backup)
		wantDeadline(t, m, t0.Add(m.MasterDownInterval()))
		if m.MasterAddr().IsValid() {
			t.Errorf("v%d: MasterAddr %v before any advert, want none", version, m.MasterAddr())
		}
	}
}

func TestRFC5798_6_4_1_OnlyFromInitialize(t *testing.T) {
	m := newTestMachine(t, nil)
	startBackup(t, m)
	wantActions(t, "second Start", m.Start(t0.Add(time.Second)))
	wantDeadline(t, m, t0.Add(m.MasterDownInterval()))
	// Init ignores everything but Start.
	n := newTestMachine(t, nil)
	wantActions(t, "Receive in Init", n.Receive(t0, higher, adv(n, 0, time.Second)))
	wantActions(t, "Tick in Init", n.Tick(t0.Add(time.Hour)))
	wantActions(t, "Shutdown in Init", n.Shutdown(t0))
	wantState(t, n, Init)
	if !n.NextDeadline().IsZero() {
		t.Fatalf("deadline %v in Init", n.NextDeadline())
	}
}

// --- 6.4.2 Backup ---

func TestRFC5798_6_4_2_BackupShutdownCancelsMasterDownTimer(t *testing.T) {
	// "If a Shutdown event is received, then: Cancel the Master_Down_Timer, Transition to
	// the {Initialize} state"
	m := newTestMachine(t, nil)
	startBackup(t, m)
	wantActions(t, "Shutdown", m.Shutdown(t0.Add(time.Second)), transition(Backup, Init, "stop", time.Time{}))
	wantState(t, m, Init)
	if !m.NextDeadline().IsZero() {
		t.Fatalf("deadline %v after Shutdown", m.NextDeadline())
	}
	wantActions(t, "Tick after Shutdown", m.Tick(t0.Add(time.Hour)))
	// And it can start again.
	wantActions(t, "restart", m.Start(t0.Add(time.Hour)), transition(Init, Backup, "init", time.Time{}))
}

func TestRFC5798_6_4_2_BackupMasterDownTimerFires(t *testing.T) {
	// "If the Master_Down_Timer fires, then: Send an ADVERTISEMENT, broadcast gratuitous ARP,
	// Set the Adver_Timer to Advertisement_Interval, Transition to the {Master} state"
	for _, version := range []int{2, 3} {
		m := newTestMachine(t, func(c *Config) { c.Version = version })
		startBackup(t, m)
		heard := t0.Add(1500 * time.Millisecond)
		m.Receive(heard, higher, adv(m, 200, time.Second))
		deadline := heard.Add(m.MasterDownInterval())
		wantDeadline(t, m, deadline)
		wantActions(t, "Tick just before", m.Tick(deadline.Add(-time.Nanosecond)))
		wantState(t, m, Backup)
		// Since: the arrival of the last valid advert of the previous Master.
		wantActions(t, "Tick at deadline", m.Tick(deadline), becameMaster(Backup, "master down", heard, 100)...)
		wantDeadline(t, m, deadline.Add(time.Second))
	}
}

func TestRFC5798_6_4_2_BackupNeverHeardAMasterSinceIsTimerArmed(t *testing.T) {
	m := newTestMachine(t, nil)
	startBackup(t, m)
	late := t0.Add(time.Minute) // Tick may come late; Since still says when the wait began
	wantActions(t, "Tick", m.Tick(late), becameMaster(Backup, "master down", t0, 100)...)
	wantDeadline(t, m, late.Add(time.Second))
}

func TestRFC5798_6_4_2_BackupPriorityZeroSetsSkewTime(t *testing.T) {
	// "If the Priority in the ADVERTISEMENT is zero, then: Set the Master_Down_Timer to Skew_Time"
	for _, version := range []int{2, 3} {
		for _, preempt := range []bool{true, false} {
			m := newTestMachine(t, func(c *Config) { c.Version, c.Preempt = version, preempt })
			startBackup(t, m)
			m.Receive(t0.Add(time.Second), higher, adv(m, 200, time.Second))
			at := t0.Add(1500 * time.Millisecond)
			wantActions(t, "priority 0", m.Receive(at, higher, adv(m, 0, time.Second)))
			wantDeadline(t, m, at.Add(m.SkewTime()))
			wantActions(t, "Tick", m.Tick(at.Add(m.SkewTime())), becameMaster(Backup, "priority 0 received", at, 100)...)
		}
	}
}

func TestRFC5798_6_4_2_BackupPriorityZeroDoesNotLearnInterval(t *testing.T) {
	m := newTestMachine(t, nil)
	startBackup(t, m)
	m.Receive(t0, higher, adv(m, 0, 10*time.Second))
	if got := m.MasterDownInterval(); got != 3600*time.Millisecond {
		t.Fatalf("MasterDownInterval %v after a priority-0 advert, want 3.6s unchanged", got)
	}
}

func TestRFC5798_6_4_2_BackupAcceptsHigherOrEqualPriority(t *testing.T) {
	// "If Preempt_Mode is False, or If the Priority in the ADVERTISEMENT is greater than or
	// equal to the local Priority, then: ... Reset the Master_Down_Timer to Master_Down_Interval"
	// Equal priority is accepted from a higher address (hapair orders equal priorities by
	// address, see TestHapair_BackupEqualPriorityLowerAddressIsPreempted).
	for _, tc := range []struct {
		prio uint8
		src  netip.Addr
	}{{101, lower}, {255, lower}, {100, higher}} {
		m := newTestMachine(t, nil)
		startBackup(t, m)
		for i := 1; i <= 10; i++ { // far past the first Master_Down_Interval
			at := t0.Add(time.Duration(i) * time.Second)
			wantActions(t, "Tick", m.Tick(at))
			wantActions(t, "advert", m.Receive(at, tc.src, adv(m, tc.prio, time.Second)))
			wantDeadline(t, m, at.Add(m.MasterDownInterval()))
		}
		wantState(t, m, Backup)
		if m.MasterAddr() != tc.src || m.MasterPriority() != tc.prio {
			t.Errorf("MasterAddr %v/%d, want %v/%d", m.MasterAddr(), m.MasterPriority(), tc.src, tc.prio)
		}
	}
}

func TestRFC5798_6_4_2_BackupWithoutPreemptAcceptsLowerPriority(t *testing.T) {
	for _, fast := range []bool{false, true} {
		m := newTestMachine(t, func(c *Config) { c.Preempt, c.FastFailover = false, fast })
		startBackup(t, m)
		for i := 1; i <= 10; i++ {
			at := t0.Add(time.Duration(i) * time.Second)
			wantActions(t, "Tick", m.Tick(at))
			wantActions(t, "advert", m.Receive(at, lower, adv(m, 50, time.Second)))
			wantDeadline(t, m, at.Add(m.MasterDownInterval()))
		}
		wantState(t, m, Backup)
		if m.MasterAddr() != lower {
			t.Errorf("MasterAddr %v, want %v", m.MasterAddr(), lower)
		}
	}
}

func TestRFC5798_6_4_2_BackupAdoptsMasterAdverIntervalV3(t *testing.T) {
	// "Set Master_Adver_Interval to Adver Interval contained in the ADVERTISEMENT,
	// Recompute the Master_Down_Interval"
	m := newTestMachine(t, nil)
	startBackup(t, m)
	m.Receive(t0, higher, adv(m, 200, 100*time.Millisecond))
	// 3*100ms + 156*10/256 cs = 300ms + 60ms
	if got, want := m.MasterDownInterval(), 360*time.Millisecond; got != want {
		t.Fatalf("MasterDownInterval %v, want %v", got, want)
	}
	wantDeadline(t, m, t0.Add(360*time.Millisecond))
	m.Receive(t0.Add(100*time.Millisecond), higher, adv(m, 200, 3*time.Second))
	if got, want := m.MasterDownInterval(), 10820*time.Millisecond; got != want { // 9s + 156*300/256 cs
		t.Fatalf("MasterDownInterval %v, want %v", got, want)
	}
	// An interval of 0 (possible on the wire) is not adopted: it would mean no patience at all.
	m.Receive(t0.Add(200*time.Millisecond), higher, adv(m, 200, 0))
	if got, want := m.MasterDownInterval(), 10820*time.Millisecond; got != want {
		t.Fatalf("MasterDownInterval %v after interval 0, want %v", got, want)
	}
	// As Master it advertises at its own Advertisement_Interval.
	at := t0.Add(200 * time.Millisecond).Add(10820 * time.Millisecond)
	m.Tick(at)
	wantState(t, m, Master)
	wantDeadline(t, m, at.Add(time.Second))
}

func TestRFC3768_6_4_2_BackupKeepsOwnIntervalV2(t *testing.T) {
	// VRRPv2 has no Master_Adver_Interval: Master_Down_Interval = 3*Advertisement_Interval + Skew.
	m := newTestMachine(t, func(c *Config) { c.Version = 2 })
	startBackup(t, m)
	m.Receive(t0, higher, adv(m, 200, 5*time.Second))
	if got, want := m.MasterDownInterval(), 3609375*time.Microsecond; got != want {
		t.Fatalf("MasterDownInterval %v, want %v", got, want)
	}
}

func TestRFC5798_6_4_2_BackupPreemptDiscardsLowerPriority(t *testing.T) {
	// "Else (Priority less than local Priority and Preempt_Mode True): Discard the ADVERTISEMENT"
	// Plain RFC (no fast failover): the Master_Down_Timer runs out from the last accepted advert.
	for _, version := range []int{2, 3} {
		m := newTestMachine(t, func(c *Config) { c.Version = version })
		startBackup(t, m)
		accepted := t0.Add(time.Second)
		m.Receive(accepted, higher, adv(m, 120, time.Second))
		deadline := accepted.Add(m.MasterDownInterval())
		firstLower := accepted.Add(time.Second)
		for at := firstLower; at.Before(deadline); at = at.Add(time.Second) {
			wantActions(t, "lower advert", m.Receive(at, higher, adv(m, 90, time.Second)))
			wantDeadline(t, m, deadline)
		}
		wantActions(t, "Tick", m.Tick(deadline), becameMaster(Backup, "preempt", firstLower, 100)...)
	}
}

func TestRFC5798_6_4_2_BackupNeverOwnsTheAddresses(t *testing.T) {
	// A Backup "MUST NOT respond to ARP requests" / "MUST NOT accept packets addressed to the
	// IPvX address(es)": nothing it does attaches the VIPs or announces them.
	m := newTestMachine(t, func(c *Config) { c.Preempt = false })
	startBackup(t, m)
	for i := 1; i < 20; i++ {
		at := t0.Add(time.Duration(i) * time.Second)
		got := slices.Clone(m.Receive(at, lower, adv(m, uint8(i*13), time.Second)))
		got = append(got, m.Tick(at)...)
		got = append(got, m.SetPriority(at, uint8(100+i))...)
		for _, a := range got {
			if a.Kind != ActTransition {
				t.Fatalf("Backup produced %v", a)
			}
		}
	}
}

// --- 6.4.3 Master ---

func TestRFC5798_6_4_3_MasterShutdownSendsPriorityZero(t *testing.T) {
	// "If a Shutdown event is received, then: Cancel the Adver_Timer, Send an ADVERTISEMENT
	// with Priority = 0, Transition to the {Initialize} state"
	m := newTestMachine(t, nil)
	at := startMaster(t, m)
	wantActions(t, "Shutdown", m.Shutdown(at.Add(time.Millisecond)),
		transition(Master, Init, "stop", time.Time{}), sendAdvert(0), detach)
	wantState(t, m, Init)
	if !m.NextDeadline().IsZero() || m.MasterAddr().IsValid() {
		t.Fatalf("after Shutdown: deadline %v, master %v", m.NextDeadline(), m.MasterAddr())
	}
}

func TestRFC5798_6_4_3_MasterAdverTimerSendsAdvert(t *testing.T) {
	// "If the Adver_Timer fires, then: Send an ADVERTISEMENT, Reset the Adver_Timer to
	// Advertisement_Interval"
	m := newTestMachine(t, func(c *Config) { c.AdvertInterval = 100 * time.Millisecond })
	became := startMaster(t, m)
	next := became.Add(100 * time.Millisecond)
	wantDeadline(t, m, next)
	wantActions(t, "Tick early", m.Tick(next.Add(-time.Nanosecond)))
	wantActions(t, "Tick", m.Tick(next), sendAdvert(100))
	// The next one is early, once, to move onto the interval's phase (TestHapair_MastersShareAnAdvertPhase).
	next = next.Add(100 * time.Millisecond).Truncate(100 * time.Millisecond)
	wantDeadline(t, m, next)
	wantActions(t, "Tick in phase", m.Tick(next), sendAdvert(100))
	wantDeadline(t, m, next.Add(100*time.Millisecond))
	// A slightly late Tick keeps the cadence ...
	next = next.Add(100 * time.Millisecond)
	wantActions(t, "late Tick", m.Tick(next.Add(30*time.Millisecond)), sendAdvert(100))
	wantDeadline(t, m, next.Add(100*time.Millisecond))
	// ... a very late one sends one advert, not a burst, and restarts the cadence.
	late := next.Add(time.Second)
	wantActions(t, "very late Tick", m.Tick(late), sendAdvert(100))
	wantActions(t, "Tick again", m.Tick(late))
	wantDeadline(t, m, late.Add(100*time.Millisecond))
}

func TestHapair_MastersShareAnAdvertPhase(t *testing.T) {
	// Masters that took over at different moments advertise at the same moment from their third
	// advert on, on a whole multiple of the interval: a host's Masters then send one burst per
	// interval and the peer's reader wakes once for all of them. The second advert is still a
	// full interval after the first (Adver_Timer); no gap is ever longer than the interval.
	const interval = 20 * time.Millisecond
	var deadlines []time.Time
	for i, offset := range []time.Duration{0, 3 * time.Millisecond, 13 * time.Millisecond, 19*time.Millisecond + 999*time.Microsecond} {
		m := newTestMachine(t, func(c *Config) { c.AdvertInterval = interval })
		startBackup(t, m)
		became := m.NextDeadline().Add(offset)
		m.Tick(became)
		wantState(t, m, Master)
		sent := []time.Time{became}
		for len(sent) < 6 {
			at := m.NextDeadline()
			for _, a := range m.Tick(at) {
				if a.Kind == ActSendAdvert {
					sent = append(sent, at)
				}
			}
		}
		if gap := sent[1].Sub(sent[0]); gap != interval {
			t.Errorf("Master %d: second advert %v after the first, want the interval %v", i, gap, interval)
		}
		for j := 1; j < len(sent); j++ {
			if gap := sent[j].Sub(sent[j-1]); gap <= 0 || gap > interval {
				t.Errorf("Master %d: advert %d came %v after the one before, want (0, %v]", i, j, gap, interval)
			}
		}
		for j := 2; j < len(sent); j++ {
			if !sent[j].Equal(sent[j].Truncate(interval)) {
				t.Errorf("Master %d: advert %d at %v, not on the interval's phase", i, j, sent[j])
			}
		}
		deadlines = append(deadlines, m.NextDeadline())
	}
	for i, d := range deadlines {
		if !d.Equal(d.Truncate(interval)) {
			t.Errorf("Master %d's next advert at %v, off the interval's phase", i, d)
		}
	}
}

func TestHapair_AdvertPhaseKeepsTheMonotonicClock(t *testing.T) {
	// The move onto the phase must not leave the Adver_Timer on the wall clock alone: a step of
	// the wall clock back by an hour would then silence the Master for an hour.
	m := newTestMachine(t, func(c *Config) { c.AdvertInterval = 20 * time.Millisecond })
	m.Start(time.Now())
	m.Tick(m.NextDeadline()) // Master_Down_Timer: MASTER
	wantState(t, m, Master)
	for range 3 {
		at := m.NextDeadline()
		if !strings.Contains(at.String(), " m=") {
			t.Fatalf("Adver_Timer %v has no monotonic reading", at)
		}
		m.Tick(at)
	}
}

func TestRFC5798_6_4_3_MasterPriorityZeroSendsAdvertAtOnce(t *testing.T) {
	// "If the Priority in the ADVERTISEMENT is zero, then: Send an ADVERTISEMENT, Reset the
	// Adver_Timer to Advertisement_Interval"
	m := newTestMachine(t, nil)
	became := startMaster(t, m)
	at := became.Add(400 * time.Millisecond)
	wantActions(t, "priority 0", m.Receive(at, higher, adv(m, 0, time.Second)), sendAdvert(100))
	wantState(t, m, Master)
	wantDeadline(t, m, at.Add(time.Second))
}

// TestHapair_MasterAnswersPriorityZeroAtMostOncePerQuarterInterval: 6.4.3 has a Master answer
// every priority-0 advert at once, so that the leaving Master's Backups hear a Master before
// their Skew_Time ends. A neighbour flooding forged priority-0 adverts made the Master send one
// advert per forged packet. It answers at once at most once per quarter Advertisement_Interval;
// a priority 0 heard sooner brings the Adver_Timer forward to the end of that quarter, and that
// advert answers every one heard meanwhile: none waits longer than a quarter interval.
func TestHapair_MasterAnswersPriorityZeroAtMostOncePerQuarterInterval(t *testing.T) {
	type step struct {
		after    time.Duration // since the first priority 0
		tick     bool          // Tick at NextDeadline, which must be at after; else priority 0 is received
		want     []Action
		deadline time.Duration // NextDeadline after the step, since the first priority 0; 0: not checked
	}
	answer := []Action{sendAdvert(100)}
	tests := []struct {
		name    string
		version int
		steps   []step
	}{
		{"alone, a quarter apart: each at once", 3, []step{
			{0, false, answer, time.Second},
			{250 * time.Millisecond, false, answer, 1250 * time.Millisecond},
			{900 * time.Millisecond, false, answer, 1900 * time.Millisecond},
		}},
		{"a flood: one advert a quarter interval", 3, []step{
			{0, false, answer, time.Second},
			{time.Millisecond, false, nil, 250 * time.Millisecond},
			{100 * time.Millisecond, false, nil, 250 * time.Millisecond},
			{249 * time.Millisecond, false, nil, 250 * time.Millisecond},
			{250 * time.Millisecond, true, answer, 0},
			// That advert was an answer: the next quarter starts with it.
			{251 * time.Millisecond, false, nil, 500 * time.Millisecond},
			{499 * time.Millisecond, false, nil, 500 * time.Millisecond},
			{500 * time.Millisecond, true, answer, 0},
			// The flood ends; the next priority 0 after a quarter is answered at once again.
			{800 * time.Millisecond, false, answer, 1800 * time.Millisecond},
		}},
		{"RFC 3768 likewise", 2, []step{
			{0, false, answer, time.Second},
			{10 * time.Millisecond, false, nil, 250 * time.Millisecond},
			{250 * time.Millisecond, true, answer, 0},
			{600 * time.Millisecond, false, answer, 1600 * time.Millisecond},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestMachine(t, func(c *Config) { c.Version = tt.version })
			first := startMaster(t, m).Add(400 * time.Millisecond)
			for _, s := range tt.steps {
				now := first.Add(s.after)
				var got []Action
				what := fmt.Sprintf("priority 0 at +%v", s.after)
				if s.tick {
					what = fmt.Sprintf("Tick at +%v", s.after)
					wantDeadline(t, m, now)
					got = m.Tick(now)
				} else {
					got = m.Receive(now, higher, adv(m, 0, time.Second))
				}
				wantActions(t, what, got, s.want...)
				wantState(t, m, Master)
				if s.deadline != 0 {
					wantDeadline(t, m, first.Add(s.deadline))
				}
			}
		})
	}
}

func TestRFC5798_6_4_3_MasterHigherPriorityBecomesBackup(t *testing.T) {
	// "If the Priority in the ADVERTISEMENT is greater than the local Priority ... Cancel
	// Adver_Timer, Set Master_Adver_Interval to Adver Interval contained in the ADVERTISEMENT,
	// Recompute the Skew_Time, Recompute the Master_Down_Interval, Set Master_Down_Timer to
	// Master_Down_Interval, Transition to the {Backup} state"
	m := newTestMachine(t, nil)
	became := startMaster(t, m)
	at := became.Add(300 * time.Millisecond)
	wantActions(t, "higher advert", m.Receive(at, lower, adv(m, 101, 2*time.Second)),
		transition(Master, Backup, "higher priority", time.Time{}), detach)
	wantState(t, m, Backup)
	if got, want := m.MasterDownInterval(), 7210*time.Millisecond; got != want { // 6s + 156*200/256 cs
		t.Fatalf("MasterDownInterval %v, want %v (learned 2s interval)", got, want)
	}
	wantDeadline(t, m, at.Add(7210*time.Millisecond))
	if m.MasterAddr() != lower || m.MasterPriority() != 101 {
		t.Fatalf("MasterAddr %v/%d, want %v/101", m.MasterAddr(), m.MasterPriority(), lower)
	}
	// If that Master goes silent, Since is its last advert.
	wantActions(t, "Tick", m.Tick(at.Add(7210*time.Millisecond)), becameMaster(Backup, "master down", at, 100)...)
}

func TestRFC5798_6_4_3_MasterEqualPriorityTieBreakByAddress(t *testing.T) {
	// "... or the Priority in the ADVERTISEMENT is equal to the local Priority and the
	// primary IPvX Address of the sender is greater than the local primary IPvX Address"
	// compared as unsigned integers in network byte order.
	tests := []struct {
		name     string
		ours     string
		sender   string
		yields   bool
		fromIPv6 bool
	}{
		{"higher last octet", "10.0.0.2", "10.0.0.3", true, false},
		{"lower last octet", "10.0.0.2", "10.0.0.1", false, false},
		{"numeric not textual", "10.0.0.9", "10.0.0.10", true, false},
		{"unsigned first octet", "127.0.0.1", "128.0.0.1", true, false},
		{"unsigned high bit", "10.0.0.200", "10.0.0.100", false, false},
		{"own looped-back advert", "10.0.0.2", "10.0.0.2", false, false},
		{"v4-mapped sender", "10.0.0.2", "::ffff:10.0.0.3", true, false},
		{"ipv6 link-local higher", "fe80::1", "fe80::2", true, true},
		{"ipv6 link-local lower", "fe80::a", "fe80::9", false, true},
		{"ipv6 unsigned", "fe80::7fff", "fe80::8000", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestMachine(t, func(c *Config) { c.PrimaryAddr = netip.MustParseAddr(tt.ours) })
			startMaster(t, m)
			got := m.Receive(t0.Add(time.Hour), netip.MustParseAddr(tt.sender), adv(m, 100, time.Second))
			if tt.yields {
				wantActions(t, "equal priority", got,
					transition(Master, Backup, "equal priority, higher address", time.Time{}), detach)
				wantState(t, m, Backup)
			} else {
				// Stays Master; a router that is not us also acts as Master: re-announce
				// (TestHapair_MasterReannouncesOnLowerPriorityMaster).
				var want []Action
				if netip.MustParseAddr(tt.sender).Unmap() != netip.MustParseAddr(tt.ours) {
					want = []Action{sendAdvert(100), garp}
				}
				wantActions(t, "equal priority", got, want...)
				wantState(t, m, Master)
			}
		})
	}
}

func TestRFC5798_6_4_3_MasterDiscardsLowerPriority(t *testing.T) {
	// "Else: Discard ADVERTISEMENT": the Master stays Master (what it sends in return is
	// TestHapair_MasterReannouncesOnLowerPriorityMaster).
	m := newTestMachine(t, nil)
	became := startMaster(t, m)
	m.Receive(became.Add(time.Millisecond), higher, adv(m, 99, time.Second))
	wantState(t, m, Master)
}

// TestHapair_MasterReannouncesOnLowerPriorityMaster: only a Master sends adverts, so a Master
// that hears a lower priority has just come out of a split brain (a partition healed, VRRP
// loss, a peer back from SIGSTOP). The other stands down when it hears us, but its gratuitous
// ARPs have pointed the clients at its MAC, and nothing would point them back: a client failed
// for about 10 s in the chaos suite. So the Master advertises at once (keepalived does too,
// unless lower_prio_no_advert) and announces its VIPs again, at most once per advert interval
// so that a flood of such adverts cannot make it flood the link.
func TestHapair_MasterReannouncesOnLowerPriorityMaster(t *testing.T) {
	m := newTestMachine(t, nil)
	became := startMaster(t, m)
	at := became.Add(300 * time.Millisecond)
	wantActions(t, "lower advert", m.Receive(at, higher, adv(m, 99, time.Second)), sendAdvert(100), garp)
	wantState(t, m, Master)
	wantDeadline(t, m, at.Add(time.Second))
	wantActions(t, "again within the interval", m.Receive(at.Add(500*time.Millisecond), higher, adv(m, 99, time.Second)))
	// The other router's takeover ARPs and ours cross on the wire, and the client believes
	// whichever it hears last: the next advert, by when the other has heard us and stood
	// down, brings a second announcement, and only that one.
	wantActions(t, "next advert", m.Tick(at.Add(time.Second)), sendAdvert(100), garp)
	wantActions(t, "the advert after", m.Tick(at.Add(2*time.Second)), sendAdvert(100))
	wantActions(t, "again later", m.Receive(at.Add(2500*time.Millisecond), higher, adv(m, 99, time.Second)), sendAdvert(100), garp)
}

func TestRFC5798_6_4_ReceiveIgnoresOtherRouters(t *testing.T) {
	m := newTestMachine(t, nil)
	became := startMaster(t, m)
	other := adv(m, 200, time.Second)
	other.VRID = testVRID + 1
	wantActions(t, "other VRID", m.Receive(became, higher, other))
	v2 := adv(m, 200, time.Second)
	v2.Version = 2
	wantActions(t, "other version", m.Receive(became, higher, v2))
	wantState(t, m, Master)
}

// --- hapair: fast failover, preempt delay, tie-break in Backup ---

func TestHapair_FastFailoverTakesOverAfterSkewTime(t *testing.T) {
	for _, version := range []int{2, 3} {
		m := newTestMachine(t, func(c *Config) { c.Version, c.FastFailover = version, true })
		startBackup(t, m)
		m.Receive(t0.Add(time.Second), higher, adv(m, 110, time.Second))
		lowAt := t0.Add(2 * time.Second)
		wantActions(t, "lower advert from the Master", m.Receive(lowAt, higher, adv(m, 90, time.Second)))
		wantDeadline(t, m, lowAt.Add(m.SkewTime()))
		// A second lower advert does not push the takeover later.
		m.Receive(lowAt.Add(m.SkewTime()/2), higher, adv(m, 90, time.Second))
		wantDeadline(t, m, lowAt.Add(m.SkewTime()))
		wantActions(t, "Tick", m.Tick(lowAt.Add(m.SkewTime())), becameMaster(Backup, "preempt", lowAt, 100)...)
	}
}

func TestHapair_FastFailoverOnlyFromTheCurrentMaster(t *testing.T) {
	m := newTestMachine(t, func(c *Config) { c.FastFailover = true })
	startBackup(t, m)
	accepted := t0.Add(time.Second)
	m.Receive(accepted, higher, adv(m, 110, time.Second))
	// Another, weaker Master (a healing partition): it will yield to ours; we keep waiting.
	stranger := netip.MustParseAddr("10.0.0.7")
	m.Receive(accepted.Add(100*time.Millisecond), stranger, adv(m, 50, time.Second))
	wantDeadline(t, m, accepted.Add(m.MasterDownInterval()))
	if m.MasterAddr() != higher {
		t.Fatalf("MasterAddr %v, want %v", m.MasterAddr(), higher)
	}
}

func TestHapair_FastFailoverFromAMasterNotYetKnown(t *testing.T) {
	// A router that starts while a weaker router is Master takes over after Skew_Time.
	m := newTestMachine(t, func(c *Config) { c.FastFailover = true })
	startBackup(t, m)
	at := t0.Add(300 * time.Millisecond)
	m.Receive(at, lower, adv(m, 90, time.Second))
	wantDeadline(t, m, at.Add(m.SkewTime()))
	if m.MasterAddr() != lower {
		t.Fatalf("MasterAddr %v, want %v", m.MasterAddr(), lower)
	}
}

func TestHapair_FastFailoverCancelledByAcceptedAdvert(t *testing.T) {
	m := newTestMachine(t, func(c *Config) { c.FastFailover = true })
	startBackup(t, m)
	m.Receive(t0, higher, adv(m, 110, time.Second))
	m.Receive(t0.Add(100*time.Millisecond), higher, adv(m, 90, time.Second))
	back := t0.Add(200 * time.Millisecond)
	m.Receive(back, higher, adv(m, 110, time.Second)) // its check recovered
	wantDeadline(t, m, back.Add(m.MasterDownInterval()))
	// A later silence is reported as master down from that advert, not as a preemption.
	wantActions(t, "Tick", m.Tick(m.NextDeadline()), becameMaster(Backup, "master down", back, 100)...)
}

func TestHapair_BackupEqualPriorityLowerAddressIsPreempted(t *testing.T) {
	// Equal priorities rank by address in Backup too, so the same router wins whatever the
	// start order.
	m := newTestMachine(t, func(c *Config) { c.FastFailover = true })
	startBackup(t, m)
	at := t0.Add(time.Second)
	m.Receive(at, lower, adv(m, 100, time.Second))
	wantDeadline(t, m, at.Add(m.SkewTime()))
	wantActions(t, "Tick", m.Tick(at.Add(m.SkewTime())), becameMaster(Backup, "preempt", at, 100)...)
}

func TestHapair_PreemptDelay(t *testing.T) {
	// keepalived's preempt_delay: no preemption of a lower-priority Master until PreemptDelay
	// after Start; until then its adverts are accepted as if preempt were off.
	const delay = 10 * time.Second
	for _, fast := range []bool{true, false} {
		m := newTestMachine(t, func(c *Config) { c.PreemptDelay, c.FastFailover = delay, fast })
		startBackup(t, m)
		var at time.Time
		for i := 1; i < 10; i++ {
			at = t0.Add(time.Duration(i) * time.Second)
			wantActions(t, "Tick in the window", m.Tick(at))
			wantActions(t, "lower advert in the window", m.Receive(at, lower, adv(m, 50, time.Second)))
			wantDeadline(t, m, at.Add(m.MasterDownInterval()))
		}
		lastAccepted := at
		open := t0.Add(delay)
		wantActions(t, "lower advert at the window's end", m.Receive(open, lower, adv(m, 50, time.Second)))
		want := lastAccepted.Add(m.MasterDownInterval()) // RFC: the timer runs out
		if fast {
			want = open.Add(m.SkewTime())
		}
		wantDeadline(t, m, want)
		wantActions(t, "Tick", m.Tick(want), becameMaster(Backup, "preempt", open, 100)...)
	}
}

func TestHapair_PreemptDelayDoesNotDelayMasterDownOrPriorityZero(t *testing.T) {
	m := newTestMachine(t, func(c *Config) { c.PreemptDelay, c.FastFailover = time.Hour, true })
	startBackup(t, m)
	wantActions(t, "Tick", m.Tick(t0.Add(m.MasterDownInterval())), becameMaster(Backup, "master down", t0, 100)...)

	n := newTestMachine(t, func(c *Config) { c.PreemptDelay, c.FastFailover = time.Hour, true })
	startBackup(t, n)
	n.Receive(t0.Add(time.Second), lower, adv(n, 50, time.Second))
	at := t0.Add(2 * time.Second)
	n.Receive(at, lower, adv(n, 0, time.Second))
	wantActions(t, "Tick", n.Tick(at.Add(n.SkewTime())), becameMaster(Backup, "priority 0 received", at, 100)...)
}

func TestHapair_PreemptDelayRestartsWhenFaultClears(t *testing.T) {
	const delay = 5 * time.Second
	m := newTestMachine(t, func(c *Config) { c.PreemptDelay, c.FastFailover = delay, true })
	startBackup(t, m)
	m.SetFault(t0.Add(time.Minute), true, "haproxy down")
	cleared := t0.Add(2 * time.Minute)
	m.SetFault(cleared, false, "")
	at := cleared.Add(delay - time.Millisecond)
	m.Receive(at, lower, adv(m, 50, time.Second))
	wantDeadline(t, m, at.Add(m.MasterDownInterval()))
	open := cleared.Add(delay)
	m.Receive(open, lower, adv(m, 50, time.Second))
	wantDeadline(t, m, open.Add(m.SkewTime()))
}

// --- SetPriority ---

func TestHapair_SetPriorityMasterAdvertisesAtOnce(t *testing.T) {
	m := newTestMachine(t, nil)
	became := startMaster(t, m)
	at := became.Add(250 * time.Millisecond)
	wantActions(t, "drop", m.SetPriority(at, 80), sendAdvert(80))
	wantDeadline(t, m, at.Add(time.Second))
	wantActions(t, "unchanged", m.SetPriority(at, 80))
	wantActions(t, "Tick", m.Tick(at.Add(time.Second)), sendAdvert(80))
	if m.Priority() != 80 || m.MasterPriority() != 80 {
		t.Fatalf("Priority %d / MasterPriority %d, want 80", m.Priority(), m.MasterPriority())
	}
	// 0 is the release priority and never an effective priority.
	wantActions(t, "zero", m.SetPriority(at, 0), sendAdvert(1))
	wantState(t, m, Master)
}

func TestHapair_SetPriorityBackupRisingAboveMasterTakesOver(t *testing.T) {
	m := newTestMachine(t, func(c *Config) { c.Priority, c.FastFailover = 90, true })
	startBackup(t, m)
	m.Receive(t0.Add(time.Second), lower, adv(m, 100, time.Second))
	at := t0.Add(1200 * time.Millisecond)
	wantActions(t, "rise", m.SetPriority(at, 110))
	wantDeadline(t, m, at.Add(m.SkewTime()))
	wantActions(t, "Tick", m.Tick(at.Add(m.SkewTime())), becameMaster(Backup, "preempt", at, 110)...)
}

func TestHapair_SetPriorityBackupFallingCancelsTakeover(t *testing.T) {
	m := newTestMachine(t, func(c *Config) { c.FastFailover = true })
	startBackup(t, m)
	heard := t0.Add(time.Second)
	m.Receive(heard, higher, adv(m, 90, time.Second)) // lower than our 100: takeover started
	wantDeadline(t, m, heard.Add(m.SkewTime()))
	wantActions(t, "fall", m.SetPriority(heard.Add(10*time.Millisecond), 80))
	// The Master outranks us again: its advert counts as accepted.
	wantDeadline(t, m, heard.Add(m.MasterDownInterval()))
	wantActions(t, "Tick at the old takeover", m.Tick(heard.Add(time.Second)))
	wantState(t, m, Backup)
}

func TestHapair_SetPriorityOutsideBackupAndMasterOnlyRecords(t *testing.T) {
	m := newTestMachine(t, nil)
	wantActions(t, "Init", m.SetPriority(t0, 120))
	startBackup(t, m)
	if m.Priority() != 120 {
		t.Fatalf("Priority %d, want 120", m.Priority())
	}
	m.SetFault(t0, true, "x")
	wantActions(t, "Fault", m.SetPriority(t0, 130))
	if m.Priority() != 130 {
		t.Fatalf("Priority %d, want 130", m.Priority())
	}
}

// --- Fault ---

func TestHapair_FaultMasterReleasesWithPriorityZero(t *testing.T) {
	m := newTestMachine(t, nil)
	became := startMaster(t, m)
	at := became.Add(time.Millisecond)
	wantActions(t, "fault", m.SetFault(at, true, "haproxy down"),
		transition(Master, Fault, "fault: haproxy down", time.Time{}), sendAdvert(0), detach)
	wantState(t, m, Fault)
	if !m.NextDeadline().IsZero() {
		t.Fatalf("deadline %v in Fault", m.NextDeadline())
	}
	wantActions(t, "second fault", m.SetFault(at, true, "again"))
}

func TestHapair_FaultIgnoresAdvertsAndTimers(t *testing.T) {
	m := newTestMachine(t, nil)
	startBackup(t, m)
	m.Receive(t0.Add(time.Second), higher, adv(m, 200, time.Second))
	wantActions(t, "fault", m.SetFault(t0.Add(2*time.Second), true, ""), transition(Backup, Fault, "fault", time.Time{}))
	for i := 3; i < 30; i++ {
		at := t0.Add(time.Duration(i) * time.Second)
		wantActions(t, "advert in Fault", m.Receive(at, lower, adv(m, uint8(i%3*50), time.Second)))
		wantActions(t, "Tick in Fault", m.Tick(at))
	}
	wantState(t, m, Fault)
	if m.MasterAddr() != higher {
		t.Fatalf("MasterAddr %v in Fault, want the last known %v", m.MasterAddr(), higher)
	}
}

func TestHapair_FaultClearedEntersBackupWithFreshTimer(t *testing.T) {
	m := newTestMachine(t, nil)
	startBackup(t, m)
	m.Receive(t0.Add(time.Second), higher, adv(m, 200, 3*time.Second)) // learned 3s
	m.SetFault(t0.Add(2*time.Second), true, "link down")
	cleared := t0.Add(time.Minute)
	wantActions(t, "clear", m.SetFault(cleared, false, ""), transition(Fault, Backup, "fault cleared", time.Time{}))
	// Master_Adver_Interval is our own again, as after Initialize.
	wantDeadline(t, m, cleared.Add(3600*time.Millisecond))
	wantActions(t, "clear again", m.SetFault(cleared, false, ""))
	// Nothing heard since: Since is when the timer was armed, not the advert before the fault.
	wantActions(t, "Tick", m.Tick(m.NextDeadline()), becameMaster(Backup, "master down", cleared, 100)...)
}

func TestHapair_FaultBeforeStart(t *testing.T) {
	m := newTestMachine(t, func(c *Config) { c.Priority = OwnerPriority })
	wantActions(t, "fault in Init", m.SetFault(t0, true, "link down"))
	wantState(t, m, Init)
	wantActions(t, "Start", m.Start(t0), transition(Init, Fault, "fault: link down", time.Time{}))
	wantActions(t, "Shutdown", m.Shutdown(t0), transition(Fault, Init, "stop", time.Time{}))
	m.SetFault(t0, false, "")
	wantActions(t, "Start", m.Start(t0), becameMaster(Init, "init", t0, 255)...)
}

func TestHapair_OwnerLeavingFaultGoesThroughBackup(t *testing.T) {
	// The owner re-enters Backup like everyone else and preempts from there.
	m := newTestMachine(t, func(c *Config) { c.Priority, c.FastFailover = OwnerPriority, true })
	m.Start(t0)
	m.SetFault(t0.Add(time.Second), true, "")
	cleared := t0.Add(time.Minute)
	wantActions(t, "clear", m.SetFault(cleared, false, ""), transition(Fault, Backup, "fault cleared", time.Time{}))
	at := cleared.Add(500 * time.Millisecond)
	m.Receive(at, lower, adv(m, 100, time.Second))
	wantDeadline(t, m, at) // skew 0 at priority 255 with 1s
	wantActions(t, "Tick", m.Tick(at), becameMaster(Backup, "preempt", at, 255)...)
}

// --- returned slice ---

func TestHapair_HotPathsDoNotAllocate(t *testing.T) {
	m := newTestMachine(t, func(c *Config) { c.FastFailover = true })
	startBackup(t, m)
	a := adv(m, 200, time.Second)
	now := t0
	if n := testing.AllocsPerRun(100, func() {
		now = now.Add(time.Second)
		m.Receive(now, higher, a)
		m.Tick(now)
	}); n != 0 {
		t.Errorf("Backup Receive+Tick: %v allocations per run, want 0", n)
	}
	m.Tick(m.NextDeadline().Add(time.Hour)) // Master now
	wantState(t, m, Master)
	if n := testing.AllocsPerRun(100, func() {
		now = m.NextDeadline()
		m.Tick(now)
		m.Receive(now, lower, adv(m, 50, time.Second))
	}); n != 0 {
		t.Errorf("Master Tick+Receive: %v allocations per run, want 0", n)
	}
	// Even a failover and back does not allocate.
	if n := testing.AllocsPerRun(100, func() {
		now = now.Add(time.Second)
		m.Receive(now, higher, a)
		m.Tick(now.Add(time.Hour))
	}); n != 0 {
		t.Errorf("Master->Backup->Master: %v allocations per run, want 0", n)
	}
}

func BenchmarkReceiveBackup(b *testing.B) {
	m, _ := NewMachine(Config{Version: 3, VRID: testVRID, Priority: 100, AdvertInterval: time.Second,
		Preempt: true, FastFailover: true, PrimaryAddr: us})
	m.Start(t0)
	a := Advert{Version: 3, VRID: testVRID, Priority: 200, Interval: time.Second,
		Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.10")}}
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Second)
		if acts := m.Receive(now, higher, a); len(acts) != 0 {
			b.Fatal(acts)
		}
	}
}

func BenchmarkReceiveMasterDiscard(b *testing.B) {
	m, _ := NewMachine(Config{Version: 3, VRID: testVRID, Priority: OwnerPriority, AdvertInterval: time.Second,
		Preempt: true, FastFailover: true, PrimaryAddr: us})
	m.Start(t0)
	a := Advert{Version: 3, VRID: testVRID, Priority: 100, Interval: time.Second}
	b.ReportAllocs()
	for b.Loop() {
		if acts := m.Receive(t0, lower, a); len(acts) != 0 {
			b.Fatal(acts)
		}
	}
}

func BenchmarkTickMaster(b *testing.B) {
	m, _ := NewMachine(Config{Version: 3, VRID: testVRID, Priority: OwnerPriority,
		AdvertInterval: 10 * time.Millisecond, PrimaryAddr: us})
	m.Start(t0)
	b.ReportAllocs()
	for b.Loop() {
		if acts := m.Tick(m.NextDeadline()); len(acts) != 1 {
			b.Fatal(acts)
		}
	}
}

func BenchmarkTickIdle(b *testing.B) {
	m, _ := NewMachine(Config{Version: 3, VRID: testVRID, Priority: 100, AdvertInterval: time.Second, PrimaryAddr: us})
	m.Start(t0)
	b.ReportAllocs()
	for b.Loop() {
		if acts := m.Tick(t0); len(acts) != 0 {
			b.Fatal(acts)
		}
	}
}

// TestHapair_LastAdvertDue: a Backup following its Master knows when that Master's last advert
// before Master_Down_Timer is due: three of the Master's intervals after the last one heard
// (v3 learns the interval from the advert); none while a takeover is under way, in Master, or
// before any advert.
func TestHapair_LastAdvertDue(t *testing.T) {
	m := newTestMachine(t, nil)
	startBackup(t, m)
	if due := m.LastAdvertDue(); !due.IsZero() {
		t.Fatalf("no advert heard yet: LastAdvertDue %v, want zero", due)
	}
	heard := t0.Add(500 * time.Millisecond)
	m.Receive(heard, higher, adv(m, 200, 2*time.Second)) // a Master advertising every 2 s
	// Master_Down_Interval is 3*2s + (256-100)*200cs/256 = 6s + 1.21s: three whole intervals.
	if due, want := m.LastAdvertDue(), heard.Add(6*time.Second); !due.Equal(want) {
		t.Errorf("LastAdvertDue %v after the Master's advert, want %v (3 of its 2 s intervals)", due.Sub(t0), want.Sub(t0))
	}
	if !m.LastAdvertDue().Before(m.NextDeadline()) {
		t.Errorf("LastAdvertDue %v not before Master_Down_Timer %v", m.LastAdvertDue().Sub(t0), m.NextDeadline().Sub(t0))
	}
	// Priority 0: the takeover runs on Skew_Time, not from the last advert.
	m.Receive(heard.Add(time.Second), higher, adv(m, 0, 2*time.Second))
	if due := m.LastAdvertDue(); !due.IsZero() {
		t.Errorf("takeover under way: LastAdvertDue %v, want zero", due.Sub(t0))
	}
	m.Tick(m.NextDeadline())
	if m.State() != Master {
		t.Fatalf("state %v after the skew time, want MASTER", m.State())
	}
	if due := m.LastAdvertDue(); !due.IsZero() {
		t.Errorf("Master: LastAdvertDue %v, want zero", due.Sub(t0))
	}
}

// TestHapair_SetPrimaryAddrBreaksTiesWithTheNewAddress: a Master renumbered from 10.0.0.2 to
// 10.0.0.9 keeps its state, names its new address as the Master's, and an equal-priority
// advert from 10.0.0.5, which outranked the old address, no longer outranks it.
func TestHapair_SetPrimaryAddrBreaksTiesWithTheNewAddress(t *testing.T) {
	m := newTestMachine(t, func(c *Config) { c.PrimaryAddr = netip.MustParseAddr("10.0.0.2") })
	startMaster(t, m)
	renumbered := netip.MustParseAddr("10.0.0.9")
	m.SetPrimaryAddr(renumbered)
	wantState(t, m, Master)
	if got := m.MasterAddr(); got != renumbered {
		t.Fatalf("MasterAddr after SetPrimaryAddr = %s, want %s", got, renumbered)
	}
	got := m.Receive(t0.Add(time.Hour), netip.MustParseAddr("10.0.0.5"), adv(m, 100, time.Second))
	wantActions(t, "equal priority from a lower address than the new one", got, sendAdvert(100), garp)
	wantState(t, m, Master)
}
