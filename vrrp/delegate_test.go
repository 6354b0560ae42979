package vrrp

import (
	"testing"
	"time"
)

// A steady Master hands its adverts to the caller's sender: Tick sends none and NextDeadline
// leaves the Adver_Timer out until the caller takes them back, and the cadence then goes on
// from the sender's last advert.
func TestHapairDelegatedAdvertsKeepTheirCadence(t *testing.T) {
	m := newTestMachine(t, nil)
	at := startMaster(t, m)
	prio, next, ok := m.DelegateAdverts()
	if !ok || prio != 100 || !next.Equal(at.Add(time.Second)) {
		t.Fatalf("DelegateAdverts = %d, %v, %v; want 100, %v, true", prio, next, ok, at.Add(time.Second))
	}
	if !m.Delegated() {
		t.Fatal("Delegated false after DelegateAdverts")
	}
	wantDeadline(t, m, time.Time{})
	wantActions(t, "Tick while delegated", m.Tick(next.Add(5*time.Second)))

	// The sender sent the adverts due at next .. next+3s.
	last := next.Add(3 * time.Second)
	m.ReclaimAdverts(last)
	if m.Delegated() {
		t.Fatal("Delegated true after ReclaimAdverts")
	}
	wantDeadline(t, m, last.Add(time.Second))
	wantActions(t, "Tick before the next advert", m.Tick(last.Add(time.Second-time.Millisecond)))
	wantActions(t, "Tick at the next advert", m.Tick(last.Add(time.Second)), sendAdvert(100))
}

// A sender that sent nothing leaves the Adver_Timer where it was.
func TestHapairReclaimedAdvertsWithoutAnySent(t *testing.T) {
	m := newTestMachine(t, nil)
	startMaster(t, m)
	_, next, _ := m.DelegateAdverts()
	m.ReclaimAdverts(time.Time{})
	wantDeadline(t, m, next)
	m.ReclaimAdverts(next.Add(time.Hour)) // not delegated: nothing to take back
	wantDeadline(t, m, next)
}

// Adverts that are not plain ones stay with the Machine: a Backup's, a handover's priority 0,
// an answer to priority 0 brought forward, a re-announcement riding on the next advert.
func TestHapairOnlySteadyAdvertsAreDelegated(t *testing.T) {
	notDelegated := func(t *testing.T, m *Machine) {
		t.Helper()
		if _, _, ok := m.DelegateAdverts(); ok || m.Delegated() {
			t.Fatalf("adverts delegated in %v", m.State())
		}
	}
	t.Run("backup", func(t *testing.T) {
		m := newTestMachine(t, nil)
		startBackup(t, m)
		notDelegated(t, m)
	})
	t.Run("handing over", func(t *testing.T) {
		m := newTestMachine(t, nil)
		at := startMaster(t, m)
		m.Resign(at)
		notDelegated(t, m)
	})
	t.Run("priority 0 answer due", func(t *testing.T) {
		m := newTestMachine(t, nil)
		at := startMaster(t, m)
		m.Receive(at, lower, adv(m, 0, time.Second))                       // answered at once
		m.Receive(at.Add(time.Millisecond), lower, adv(m, 0, time.Second)) // too soon: answer due
		notDelegated(t, m)
	})
	t.Run("re-announcement due", func(t *testing.T) {
		m := newTestMachine(t, nil)
		at := startMaster(t, m)
		m.Receive(at, lower, adv(m, 50, time.Second)) // a lower Master: re-announce with the next advert
		notDelegated(t, m)
	})
	t.Run("a transition ends the delegation", func(t *testing.T) {
		m := newTestMachine(t, nil)
		at := startMaster(t, m)
		m.DelegateAdverts()
		m.SetFault(at, true, "link down")
		if m.Delegated() {
			t.Fatal("still delegated in FAULT")
		}
	})
}
