package vrrp

import (
	"testing"
	"time"
)

// Tests for Resume, hapair's Start variant for a router that restarts (crash, in-place upgrade)
// while its peers still count it as Master. The rule must never make two Masters where RFC 5798
// would make one: it resumes only inside the smallest Master_Down_Interval a Backup can have,
// and a Master that outranks it wins through 6.4.3 as between any two Masters.

func wasMaster(at time.Time) *Previous {
	return &Previous{State: Master, Priority: 100, LastAdvert: at, VIPsAttached: true}
}

func TestHapair_ResumeAsMasterWithinWindow(t *testing.T) {
	m := newTestMachine(t, nil)
	now := t0.Add(500 * time.Millisecond)
	wantActions(t, "Resume", m.Resume(now, wasMaster(t0)), becameMaster(Init, ReasonResume, now, 100)...)
	if m.State() != Master {
		t.Fatalf("state %v, want MASTER", m.State())
	}
	if got, want := m.NextDeadline(), now.Add(time.Second); !got.Equal(want) {
		t.Errorf("Adver_Timer at %v, want %v (one interval after the resume advert)", got, want)
	}
}

func TestHapair_ResumeWindowInsideEveryMasterDownInterval(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval time.Duration
		version  int
	}{{"v2 1s", time.Second, 2}, {"v3 100ms", 100 * time.Millisecond, 3}} {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestMachine(t, func(c *Config) { c.Version, c.AdvertInterval = tc.version, tc.interval })
			window := 3*tc.interval - tc.interval/4
			if got := m.ResumeWindow(); got != window {
				t.Fatalf("ResumeWindow %v, want %v", got, window)
			}
			// The smallest Master_Down_Interval of any Backup (priority 254) is above the window.
			peer := newTestMachine(t, func(c *Config) { c.Version, c.AdvertInterval, c.Priority = tc.version, tc.interval, 254 })
			if peer.MasterDownInterval() <= m.ResumeWindow() {
				t.Errorf("a priority-254 Backup's Master_Down_Interval %v is not above the window %v", peer.MasterDownInterval(), m.ResumeWindow())
			}
			if m.Resumable(t0.Add(window), wasMaster(t0)) {
				t.Error("resumable at exactly the window")
			}
			if !m.Resumable(t0.Add(window-time.Millisecond), wasMaster(t0)) {
				t.Error("not resumable just inside the window")
			}
		})
	}
}

func TestHapair_ResumeOtherwiseStartsNormally(t *testing.T) {
	cases := map[string]*Previous{
		"no record":          nil,
		"was backup":         {State: Backup, Priority: 100, LastAdvert: t0, VIPsAttached: true},
		"was fault":          {State: Fault, Priority: 100, LastAdvert: t0, VIPsAttached: true},
		"stopped (init)":     {State: Init, Priority: 100, LastAdvert: t0, VIPsAttached: true},
		"too old":            {State: Master, Priority: 100, LastAdvert: t0.Add(-2750 * time.Millisecond), VIPsAttached: true},
		"from the future":    {State: Master, Priority: 100, LastAdvert: t0.Add(time.Second), VIPsAttached: true},
		"VIPs gone":          {State: Master, Priority: 100, LastAdvert: t0, VIPsAttached: false},
		"older than a while": {State: Master, Priority: 100, LastAdvert: t0.Add(-time.Hour), VIPsAttached: true},
		// Resigning or draining: its last adverts said priority 0, so a Backup took over
		// after Skew_Time, well inside the window.
		"handing over": {State: Master, Priority: 0, LastAdvert: t0, VIPsAttached: true},
	}
	for name, prev := range cases {
		t.Run(name, func(t *testing.T) {
			m := newTestMachine(t, nil)
			wantActions(t, "Resume", m.Resume(t0, prev), transition(Init, Backup, "init", time.Time{}))
		})
	}
}

func TestHapair_ResumeNotWithAFault(t *testing.T) {
	m := newTestMachine(t, nil)
	m.SetFault(t0, true, "haproxy")
	wantActions(t, "Resume", m.Resume(t0, wasMaster(t0)), transition(Init, Fault, "fault: haproxy", time.Time{}))
}

func TestHapair_ResumeOnlyFromInit(t *testing.T) {
	m := newTestMachine(t, nil)
	startBackup(t, m)
	if acts := m.Resume(t0, wasMaster(t0)); len(acts) != 0 {
		t.Errorf("Resume of a running Machine = %v, want nothing", acts)
	}
}

// RFC 5798 6.4.3: a resumed Master that hears a higher-priority Master goes back to Backup.
func TestHapair_ResumedMasterYieldsToHigherPriority(t *testing.T) {
	m := newTestMachine(t, nil)
	m.Resume(t0, wasMaster(t0))
	at := t0.Add(10 * time.Millisecond)
	acts := m.Receive(at, lower, adv(m, 110, time.Second))
	wantActions(t, "Receive", acts, transition(Master, Backup, "higher priority", time.Time{}), detach)
}

// Two routers that both resume (both records say Master: they were split a moment ago) end with
// one Master, as any two Masters do.
func TestHapair_TwoResumedMastersResolve(t *testing.T) {
	a := newTestMachine(t, nil)
	b := newTestMachine(t, func(c *Config) { c.Priority, c.PrimaryAddr = 110, higher })
	a.Resume(t0, wasMaster(t0))
	b.Resume(t0, wasMaster(t0))
	a.Receive(t0.Add(time.Millisecond), higher, adv(a, 110, time.Second))
	b.Receive(t0.Add(time.Millisecond), us, adv(b, 100, time.Second))
	if a.State() != Backup || b.State() != Master {
		t.Errorf("states %v, %v; want BACKUP, MASTER", a.State(), b.State())
	}
}
