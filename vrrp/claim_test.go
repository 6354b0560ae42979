package vrrp

import (
	"slices"
	"testing"
	"time"
)

// Tests for Config.ClaimFirst: the first election after a start is decided by priority, not by
// which router happened to start first.

func claiming(t *testing.T, prio uint8, addr func(*Config)) *Machine {
	t.Helper()
	return newTestMachine(t, func(c *Config) {
		c.ClaimFirst, c.FastFailover, c.Priority = true, true, prio
		if addr != nil {
			addr(c)
		}
	})
}

func TestHapair_ClaimFirstAdvertisesBeforeMaster(t *testing.T) {
	m := claiming(t, 100, nil)
	startBackup(t, m)
	at := m.NextDeadline()
	wantActions(t, "Tick at Master_Down_Interval", m.Tick(at), sendAdvert(100))
	if m.State() != Backup {
		t.Fatalf("state %v after the claim advert, want BACKUP", m.State())
	}
	if got, want := m.NextDeadline(), at.Add(time.Second); !got.Equal(want) {
		t.Fatalf("claim ends at %v, want one interval later %v", got, want)
	}
	// A lone router: silence for the interval, then Master.
	end := m.NextDeadline()
	wantActions(t, "Tick at the claim's end", m.Tick(end), becameMaster(Backup, "master down", t0, 100)...)
}

func TestHapair_ClaimYieldsToHigherPriority(t *testing.T) {
	m := claiming(t, 100, nil)
	startBackup(t, m)
	at := m.NextDeadline()
	m.Tick(at)
	m.Receive(at.Add(300*time.Millisecond), higher, adv(m, 110, time.Second))
	if acts := m.Tick(at.Add(time.Second)); len(acts) != 0 || m.State() != Backup {
		t.Fatalf("at the claim's end after a higher advert: %v, state %v; want nothing, BACKUP", acts, m.State())
	}
}

func TestHapair_NoClaimOnceAMasterWasHeard(t *testing.T) {
	m := claiming(t, 100, nil)
	startBackup(t, m)
	heard := t0.Add(time.Second)
	m.Receive(heard, higher, adv(m, 110, time.Second))
	down := m.NextDeadline()
	wantActions(t, "Tick at Master_Down_Interval", m.Tick(down), becameMaster(Backup, "master down", heard, 100)...)
}

// Two routers started together, the lower-priority one first by up to the claim interval: the
// higher one is Master first and the lower one never enters Master.
func TestHapair_StartTogetherHigherWinsFirstTime(t *testing.T) {
	for _, lead := range []time.Duration{0, 39 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond} {
		low := claiming(t, 100, nil)
		high := claiming(t, 110, func(c *Config) { c.PrimaryAddr = higher })
		low.Start(t0)
		high.Start(t0.Add(lead))
		// Deliver each router's adverts to the other at once, ticking both in time order.
		for now := t0; now.Before(t0.Add(10 * time.Second)); now = now.Add(time.Millisecond) {
			for _, pair := range [][2]*Machine{{low, high}, {high, low}} {
				from, to := pair[0], pair[1]
				for _, a := range from.Tick(now) {
					if a.Kind == ActSendAdvert {
						to.Receive(now, from.cfg.PrimaryAddr, adv(to, a.Priority, time.Second))
					}
				}
			}
			if low.State() == Master {
				t.Fatalf("lead %v: the lower-priority router became Master at %v", lead, now.Sub(t0))
			}
		}
		if high.State() != Master {
			t.Errorf("lead %v: high %v, want MASTER", lead, high.State())
		}
	}
}

// TestHapair_StartTogetherHigherWinsWithoutPreempt: the same with preempt off on both (the lab's
// nopreempt pair). The lower router's claim can reach the higher one in the very moment its own
// claim falls due (their Master_Down_Intervals differ by less than the timer grid); the higher
// one must answer with its own claim, not follow the lower one as if it were a Master already
// in place (TestNoPreemptKeepsTheVIP failed so: lb2 at 100 took the VIP at the start).
func TestHapair_StartTogetherHigherWinsWithoutPreempt(t *testing.T) {
	for _, lead := range []time.Duration{0, 39 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond} {
		noPreempt := func(c *Config) { c.Preempt = false }
		low := claiming(t, 100, noPreempt)
		high := claiming(t, 110, func(c *Config) { c.PrimaryAddr = higher; c.Preempt = false })
		low.Start(t0)
		high.Start(t0.Add(lead))
		// Every advert is delivered at once, those sent in answer to an advert too.
		var send func(now time.Time, from, to *Machine, acts []Action)
		send = func(now time.Time, from, to *Machine, acts []Action) {
			for _, a := range slices.Clone(acts) {
				if a.Kind == ActSendAdvert {
					send(now, to, from, to.Receive(now, from.cfg.PrimaryAddr, adv(to, a.Priority, time.Second)))
				}
			}
		}
		for now := t0; now.Before(t0.Add(10 * time.Second)); now = now.Add(time.Millisecond) {
			send(now, low, high, low.Tick(now))
			send(now, high, low, high.Tick(now))
			if low.State() == Master {
				t.Fatalf("lead %v: the lower-priority router became Master at %v", lead, now.Sub(t0))
			}
		}
		if high.State() != Master {
			t.Errorf("lead %v: high %v, want MASTER", lead, high.State())
		}
	}
}

// TestHapair_NoPreemptFollowsAnEstablishedMaster: a higher router started beside a lower Master
// already in place hears its adverts long before its own claim would fall due, and follows it:
// the claim rule above does not undo nopreempt.
func TestHapair_NoPreemptFollowsAnEstablishedMaster(t *testing.T) {
	m := claiming(t, 110, func(c *Config) { c.Preempt = false })
	startBackup(t, m)
	for i := range 10 {
		now := t0.Add(time.Duration(i)*time.Second + 300*time.Millisecond)
		if acts := m.Receive(now, lower, adv(m, 100, time.Second)); len(acts) != 0 {
			t.Fatalf("advert %d of the lower Master: %v, want nothing", i, acts)
		}
		if acts := m.Tick(now.Add(time.Millisecond)); len(acts) != 0 || m.State() != Backup {
			t.Fatalf("after advert %d: %v, state %v; want nothing, BACKUP", i, acts, m.State())
		}
	}
}
