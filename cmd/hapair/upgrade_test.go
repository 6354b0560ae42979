package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hapair/hapair/cmd/internal/rundir"
)

// TestRunningPID: `hapair upgrade` finds the running hapair through the lock it holds, and says
// so clearly when nobody holds it (a lock file left by a stopped hapair is no hapair).
func TestRunningPID(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	if _, err := runningPID(dir); err == nil || !strings.Contains(err.Error(), "is hapair running?") {
		t.Errorf("without a lock file: %v", err)
	}
	lock, err := rundir.Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := runningPID(dir)
	if err != nil || pid != os.Getpid() {
		t.Errorf("runningPID = %d, %v; want %d", pid, err, os.Getpid())
	}
	lock.Release()
	if _, err := runningPID(dir); err == nil || !strings.Contains(err.Error(), "no hapair is running") {
		t.Errorf("after the holder stopped: %v", err)
	}
}

func TestSelfPathDropsDeleted(t *testing.T) {
	p, err := selfPath()
	if err != nil || strings.HasSuffix(p, " (deleted)") || !filepath.IsAbs(p) {
		t.Errorf("selfPath = %q, %v", p, err)
	}
}
