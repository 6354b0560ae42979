package earlysignals

import (
	"errors"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary, run again by these tests, act as the process under test.
const helperEnv = "EARLYSIGNALS_HELPER"

// TestMain stands in for a hapair image's main: when run as the helper it signals itself before
// anything subscribes in main, as a `systemctl stop` during an upgrade's execve would, and only
// then asks for the subscription. It exits 0 when the SIGTERM and the SIGHUP both come out of it.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "" {
		os.Exit(m.Run())
	}
	// To this very thread: the kernel delivers a signal a thread sends itself before the
	// system call returns, so the runtime's handler has run (and, with nothing subscribed,
	// ended the process) by the time Tgkill returns.
	runtime.LockOSThread()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP} {
		if err := syscall.Tgkill(os.Getpid(), syscall.Gettid(), sig); err != nil {
			os.Exit(4)
		}
	}
	got := map[os.Signal]bool{}
	c := Subscribe()
	timeout := time.After(5 * time.Second)
	for len(got) < 2 {
		select {
		case sig := <-c:
			got[sig] = true
		case <-timeout:
			os.Exit(3)
		}
	}
	if !got[syscall.SIGTERM] || !got[syscall.SIGHUP] {
		os.Exit(5)
	}
	os.Exit(0)
}

// runHelper runs the test binary as the helper with env added, and returns how it ended.
func runHelper(t *testing.T, env ...string) error {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append(env, helperEnv+"=1")...)
	out, err := cmd.CombinedOutput()
	if len(out) > 0 {
		t.Logf("helper output:\n%s", out)
	}
	return err
}

// An upgraded image keeps a stop and a reload that came before main, and hands them to the
// caller of Subscribe.
func TestUpgradedImageKeepsSignalsFromBeforeMain(t *testing.T) {
	if err := runHelper(t, UpgradeEnv+"=v1"); err != nil {
		t.Fatalf("the upgraded image did not keep the SIGTERM and SIGHUP sent before main: %v", err)
	}
}

// Any other process keeps Go's defaults until it subscribes: a SIGTERM before then ends it, so
// that `hapair check` and the other commands stop on a SIGTERM or a Ctrl-C as any program does.
// This is also what an upgraded image did before this package.
func TestOtherProcessesDieOfAnEarlySIGTERM(t *testing.T) {
	os.Unsetenv(UpgradeEnv)
	err := runHelper(t)
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("helper ended with %v, want killed by SIGTERM", err)
	}
	ws, ok := exit.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Fatalf("helper ended with %v, want killed by SIGTERM", err)
	}
}

// Outside an upgraded image Subscribe subscribes anew.
func TestSubscribeWithoutEarlySubscription(t *testing.T) {
	if early != nil {
		t.Skip("this test process runs with " + UpgradeEnv + " set")
	}
	c := Subscribe()
	defer signal.Stop(c)
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	select {
	case sig := <-c:
		if sig != syscall.SIGUSR1 {
			t.Fatalf("got %v, want SIGUSR1", sig)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no SIGUSR1 on the subscription")
	}
}
