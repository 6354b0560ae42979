package notify

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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

// readPids waits until the hook has written want pids.
func readPids(t *testing.T, pidFile string, want int) []int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _ := os.ReadFile(pidFile)
		fields := strings.Fields(string(data))
		if len(fields) >= want {
			var pids []int
			for _, f := range fields[:want] {
				pid, err := strconv.Atoi(f)
				if err != nil {
					t.Fatalf("pid file %q: %v", data, err)
				}
				pids = append(pids, pid)
			}
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hook wrote %q to its pid file, want %d pids", data, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid runs (a zombie waiting for its new parent to reap it is dead).
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// waitGone waits a generous while for each pid to end and kills any survivor (so a failing test
// leaves nothing behind).
func waitGone(t *testing.T, what string, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for alive(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if alive(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("%s: the hook's process %d still runs", what, pid)
		}
	}
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
	pids := readPids(t, pidFile, 1)
	if !alive(pids[0]) {
		t.Fatalf("the hook %d is not running", pids[0])
	}
	if err := helper.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := helper.Wait(); err == nil {
		t.Fatal("the helper exited cleanly, want killed")
	}
	waitGone(t, "after hapair's SIGKILL", pids...)
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
	pids := readPids(t, pidFile, 2)
	rec.wait(t, 1)
	rec.mu.Lock()
	err := rec.errs[0]
	rec.mu.Unlock()
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("hook error = %v, want a timeout", err)
	}
	waitGone(t, "after the timeout", pids...)
}
