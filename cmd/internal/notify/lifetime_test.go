package notify

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hapair/hapair/internal/spawn/spawntest"
)

// helperEnv names the hook that the re-executed test binary runs (see TestMain).
const helperEnv = "HAPAIR_NOTIFY_TEST_HOOK"

func TestMain(m *testing.M) {
	if hook := os.Getenv(helperEnv); hook != "" {
		// The helper stands in for hapair: it starts a hook and waits to be killed.
		r := New(Hooks{Master: hook}, Options{Timeout: time.Hour}, nil)
		r.Notify("VI_1", "MASTER", 100)
		select {}
	}
	os.Exit(m.Run())
}

// TestHookDiesWithHapair (issue 9 item 9): a hook still running when hapair is SIGKILLed dies
// with it (the parent-death signal), rather than running on unowned for its whole timeout.
func TestHookDiesWithHapair(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pids")
	// exec: the hook's own process is the one that sleeps.
	hook := script(t, dir, "hook.sh", `echo $$ > `+pidFile+`.tmp && mv `+pidFile+`.tmp `+pidFile+`; exec sleep 300`)
	helper := exec.Command(os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(), helperEnv+"="+hook)
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	pids := spawntest.ReadPids(t, pidFile, 1)
	if !spawntest.Alive(pids[0]) {
		t.Fatalf("the hook %d is not running", pids[0])
	}
	if err := helper.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := helper.Wait(); err == nil {
		t.Fatal("the helper exited cleanly, want killed")
	}
	spawntest.WaitGone(t, "after hapair's SIGKILL", pids...)
}

// TestHookGroupKilledAtTimeout (issue 9 item 9): at its timeout the hook's whole process group is
// killed, also what it started in the background.
func TestHookGroupKilledAtTimeout(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pids")
	hook := script(t, dir, "hook.sh", `sleep 300 & echo $$ $! > `+pidFile+`.tmp && mv `+pidFile+`.tmp `+pidFile+`; sleep 300`)
	rec := &recorder{done: make(chan struct{}, 2)}
	r := New(Hooks{Master: hook}, Options{Timeout: 300 * time.Millisecond}, nil)
	r.ran = rec.ran
	r.Notify("VI_1", "MASTER", 100)
	pids := spawntest.ReadPids(t, pidFile, 2)
	rec.wait(t, 1)
	rec.mu.Lock()
	err := rec.errs[0]
	rec.mu.Unlock()
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("hook error = %v, want a timeout", err)
	}
	spawntest.WaitGone(t, "after the timeout", pids...)
}
