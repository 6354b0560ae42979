package nspawn

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/hapair/hapair/cmd/internal/lab/labtest"
)

// TestABootThatFailsReturnsItsError: systemd-nspawn refuses a root with no operating system in
// it and exits. Boot must say so and clean up: it used to reach the machine through its own nil
// result, and the clean-up after the failure panicked, taking the whole test binary with it.
// The lock on containers is free again once Boot has returned.
func TestABootThatFailsReturnsItsError(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireCommands(t, Required...)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	m, err := Boot(ctx, Options{Rootfs: t.TempDir(), NetNS: "/run/netns/hapair-no-such-namespace", Log: filepath.Join(t.TempDir(), "console.log")})
	if err == nil {
		m.Close()
		t.Fatal("booted a root with nothing in it")
	}
	t.Log(err)

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
