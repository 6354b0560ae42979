package nspawn

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestABootThatFailsReturnsItsError: systemd-nspawn refuses a root with no operating system in
// it and exits. Boot must say so and clean up: it used to reach the machine through its own nil
// result, and the clean-up and the goroutine waiting for systemd-nspawn panicked, taking the
// whole test binary with them. The lock on containers is free again afterwards.
func TestABootThatFailsReturnsItsError(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("systemd-nspawn needs root")
	}
	if _, err := exec.LookPath("systemd-nspawn"); err != nil {
		t.Skip("no systemd-nspawn")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	m, err := Boot(ctx, Options{Rootfs: t.TempDir(), NetNS: "/run/netns/hapair-no-such-namespace", Log: filepath.Join(t.TempDir(), "console.log")})
	if err == nil {
		m.Close()
		t.Fatal("booted a root with nothing in it")
	}
	t.Log(err)
	time.Sleep(500 * time.Millisecond) // the goroutine that waited for systemd-nspawn has ended

	locked := make(chan func(), 1)
	go func() {
		if unlock, err := lockFile(lockPath); err == nil {
			locked <- unlock
		}
	}()
	select {
	case unlock := <-locked:
		unlock()
	case <-time.After(10 * time.Second):
		t.Fatal("the lock on containers is still held after a failed boot")
	}
}
