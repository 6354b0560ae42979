package main

import (
	"syscall"
	"testing"
	"time"

	"github.com/hapair/hapair/cmd/internal/lab/labtest"
	"github.com/hapair/hapair/vrrp/transport/steady"
)

// TestStalledBackupKeepsBackup: a BACKUP whose whole process is stopped for over twice its
// master-down interval, while its MASTER keeps advertising, stays BACKUP when it runs again:
// the adverts that queued meanwhile say the MASTER is alive, as they do for keepalived, which
// runs beside it on a link of its own as the control.
//   - 40 instances, so that some have their adverts delivered by the reader (32 at most are
//     kept apart and read by the loop itself). Before the BACKUP read its socket ahead of a due
//     master-down deadline, the Go scheduler ran the loop, woken by its timer, before the
//     reader woken by the same poll, and instances went MASTER and back at every stop.
//   - One instance, whose MASTER's adverts a watcher thread reads (instance.Config.Steady): the
//     thread is stopped with the rest and, when it runs again, finds the adverts queued
//     meanwhile, with their arrival times.
func TestStalledBackupKeepsBackup(t *testing.T) {
	labtest.RequireCommands(t, "keepalived")
	t.Parallel()
	t.Run("40 instances", func(t *testing.T) { t.Parallel(); testStalledBackup(t, 40) })
	t.Run("one instance, its watcher thread", func(t *testing.T) { t.Parallel(); testStalledBackup(t, 1) })
}

func testStalledBackup(t *testing.T, n int) {
	p := benchNewPair(t)
	scaleLinks(t, p)
	// At 100 ms the MASTERs may be late by up to 361 ms (the master-down interval) before a
	// BACKUP may take over: the test's machine, busy with other tests, does not stall them so long.
	const iv = 100 * time.Millisecond
	hm := startScaleHapair(t, p.lb1, n, iv, 110)
	km := startScaleKeepalived(t, p.lb1, n, iv, 110)
	for _, s := range []scaleProc{hm, km} {
		if err := s.waitAll(t, n, "MASTER", 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	hb := startScaleHapair(t, p.lb2, n, iv, 100)
	kb := startScaleKeepalived(t, p.lb2, n, iv, 100)
	for _, s := range []scaleProc{hb, kb} {
		if err := s.waitAll(t, n, "BACKUP", 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, s := range []scaleProc{hb, kb, hm, km} {
			_ = s.proc.Stop(5 * time.Second)
		}
	}()
	time.Sleep(time.Second) // every BACKUP has heard a few adverts: the steady state
	if n == 1 && steady.Supported() {
		if w := waitSteadyThreads(t, "lb2", hb.proc.PID(), 1, 5*time.Second); w != 1 {
			t.Fatalf("the BACKUP's hapair has %d threads of package steady, want 1 (its watcher)", w)
		}
	}

	from := [2]int{hb.proc.LineCount(), kb.proc.LineCount()}
	const stops, stall = 5, 800 * time.Millisecond
	for range stops {
		for _, s := range []scaleProc{hb, kb} {
			if err := s.proc.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(stall)
		for _, s := range []scaleProc{hb, kb} {
			if err := s.proc.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Second)
	}
	h, k := hb.transitions(from[0]), kb.transitions(from[1])
	t.Logf("%d stops of %s of the BACKUPs (master-down interval 361 ms): transitions hapair %d, keepalived %d", stops, stall, h, k)
	if h > 0 {
		lines := hb.proc.Lines()[from[0]:]
		for i, l := range lines {
			if scaleTransition.MatchString(l.Text) {
				t.Logf("hapair on lb2 from its first transition:\n%s", joinLines(lines[max(i-5, 0):min(i+15, len(lines))]))
				break
			}
		}
		t.Errorf("hapair's BACKUP made %d transitions after being stopped with its MASTER alive, want none", h)
	}
	if err := hb.waitAll(t, n, "BACKUP", 5*time.Second); err != nil {
		t.Error(err)
	}
}
