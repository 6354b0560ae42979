package lab

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"
)

func TestCleanupStaleRemovesNamespacesOfDeadProcesses(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("needs root (CI is set, so not skipping)")
		}
		t.Skip("needs root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// A pid that certainly belonged to a process that is gone now.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	self, err := processStart(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	base := "hpstale" + randomHex(3)
	cases := []struct {
		ns      string
		marker  marker
		removed bool
	}{
		{base + "-dead", marker{PID: dead.Process.Pid, Start: 1}, true},
		// Our pid with another start time: the pid was recycled.
		{base + "-reused", marker{PID: os.Getpid(), Start: self + 1}, true},
		{base + "-alive", marker{PID: os.Getpid(), Start: self}, false},
	}
	for _, c := range cases {
		if err := writeMarkerFor(c.ns, c.marker); err != nil {
			t.Fatal(err)
		}
		if err := runCmd(ctx, "ip", "netns", "add", c.ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { removeNamespace(context.Background(), c.ns) })
	}
	// A process left running in a stale namespace is killed with it.
	sleeper := exec.Command("ip", "netns", "exec", cases[0].ns, "sleep", "600")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { sleeper.Wait(); close(exited) }()
	// A marker whose namespace is gone already is just removed.
	if err := writeMarkerFor(base+"-gone", marker{PID: dead.Process.Pid, Start: 1}); err != nil {
		t.Fatal(err)
	}

	removed, err := cleanupStale(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names, err := listNamespaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		// Another test binary's sweep may have removed a stale one first, so
		// only "kept" can be checked on the returned list.
		if !c.removed && slices.Contains(removed, c.ns) {
			t.Errorf("%s: removed, though its creator lives", c.ns)
		}
		if slices.Contains(names, c.ns) == c.removed {
			t.Errorf("%s: still listed=%v", c.ns, !c.removed)
		}
		_, err := os.Stat(markerPath(c.ns))
		if os.IsNotExist(err) != c.removed {
			t.Errorf("%s: marker: %v", c.ns, err)
		}
	}
	if _, err := os.Stat(markerPath(base + "-gone")); !os.IsNotExist(err) {
		t.Errorf("marker of a vanished namespace kept: %v", err)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Error("process in the stale namespace survived")
	}
	if err := CleanupStale(); err != nil {
		t.Errorf("second run: %v", err)
	}
}

func TestProcessStart(t *testing.T) {
	a, err := processStart(os.Getpid())
	if err != nil || a == 0 {
		t.Fatalf("processStart(self) = %d, %v", a, err)
	}
	b, _ := processStart(os.Getpid())
	if a != b {
		t.Fatalf("start time changed: %d %d", a, b)
	}
	if _, err := processStart(1 << 30); err == nil {
		t.Fatal("start time of a pid that cannot exist")
	}
}
