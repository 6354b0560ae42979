package notify

import (
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hapair/hapair/internal/spawn"
)

// script writes an executable shell script that appends its arguments to out.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

type recorder struct {
	mu   sync.Mutex
	runs []string
	errs []error
	done chan struct{}
}

func (r *recorder) ran(cmd string, err error) {
	r.mu.Lock()
	r.runs = append(r.runs, cmd)
	r.errs = append(r.errs, err)
	r.mu.Unlock()
	r.done <- struct{}{}
}

func (r *recorder) wait(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("hook did not finish")
		}
	}
}

func TestHooksGetKeepalivedArguments(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	master := script(t, dir, "master.sh", `echo "master $*" >> `+out)
	all := script(t, dir, "all.sh", `echo "all $*" >> `+out)
	rec := &recorder{done: make(chan struct{}, 8)}
	r := New(Hooks{Master: master + " --flag", All: all}, Options{}, nil)
	r.ran = rec.ran
	r.Notify("VI_LOGS", "MASTER", 110)
	r.Notify("VI_LOGS", "BACKUP", 90)
	rec.wait(t, 3)
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	want := "master --flag\nall INSTANCE VI_LOGS MASTER 110\nall INSTANCE VI_LOGS BACKUP 90\n"
	if string(data) != want {
		t.Fatalf("hooks wrote\n%s\nwant\n%s", data, want)
	}
}

func TestNotifyNeverBlocksOnAHungScript(t *testing.T) {
	dir := t.TempDir()
	hang := script(t, dir, "hang.sh", "sleep 30")
	rec := &recorder{done: make(chan struct{}, 64)}
	r := New(Hooks{Master: hang}, Options{Timeout: 200 * time.Millisecond}, nil)
	r.ran = rec.ran
	start := time.Now()
	for range 40 { // more than the queue holds: the extra ones are dropped, not waited for
		r.Notify("VI_LOGS", "MASTER", 110)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("Notify blocked for %s", d)
	}
	rec.wait(t, 1)
	rec.mu.Lock()
	err := rec.errs[0]
	rec.mu.Unlock()
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("hung hook error = %v, want a timeout", err)
	}
}

func TestFailingAndMissingScriptsAreReported(t *testing.T) {
	dir := t.TempDir()
	fail := script(t, dir, "fail.sh", "echo broken >&2; exit 3")
	rec := &recorder{done: make(chan struct{}, 8)}
	r := New(Hooks{Fault: fail, Stop: filepath.Join(dir, "missing.sh")}, Options{}, nil)
	r.ran = rec.ran
	r.Notify("VI_LOGS", "FAULT", 0)
	r.Notify("VI_LOGS", "STOP", 0)
	rec.wait(t, 2)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.errs[0] == nil || !strings.Contains(rec.errs[0].Error(), "broken") {
		t.Errorf("failing hook error = %v, want its output", rec.errs[0])
	}
	if rec.errs[1] == nil {
		t.Errorf("missing hook reported no error")
	}
}

func TestScriptSecurity(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("ownership rules apply when running as root")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil { // world-writable, not sticky: anyone may replace the script
		t.Fatal(err)
	}
	p := script(t, dir, "x.sh", "exit 0")
	rec := &recorder{done: make(chan struct{}, 2)}
	r := New(Hooks{Master: p}, Options{ScriptSecurity: true}, nil)
	r.ran = rec.ran
	r.Notify("VI_LOGS", "MASTER", 110)
	rec.wait(t, 1)
	if !errors.Is(rec.errs[0], spawn.ErrInsecure) {
		t.Fatalf("insecure hook ran: err = %v", rec.errs[0])
	}
}

// runAs runs a MASTER hook as user that runs command with its output to a file, and returns
// what the hook wrote.
func runAs(t *testing.T, user, command string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root")
	}
	dir, err := os.MkdirTemp("", "hapair-notify-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil { // the user must reach the script and its output
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	p := script(t, dir, "hook.sh", command+" > "+out)
	rec := &recorder{done: make(chan struct{}, 2)}
	r := New(Hooks{Master: p}, Options{User: user}, nil)
	r.ran = rec.ran
	r.Notify("VI_LOGS", "MASTER", 110)
	rec.wait(t, 1)
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("hook did not run: %v (hook error %v)", err, rec.errs[0])
	}
	return strings.TrimSpace(string(data))
}

func TestRunsAsConfiguredUser(t *testing.T) {
	if got := runAs(t, "nobody", "id -un"); got != "nobody" {
		t.Fatalf("hook ran as %q, want nobody", got)
	}
}

// TestRunsWithTheUsersGroups: a hook run as a user has all the user's groups (it used to run with
// none). Debian's frr user is in frrvty.
func TestRunsWithTheUsersGroups(t *testing.T) {
	u, err := user.Lookup("frr")
	if err != nil {
		t.Skip("no frr user (apt-get install frr)")
	}
	want, err := u.GroupIds()
	if err != nil || len(want) < 2 {
		t.Skipf("frr has groups %q (%v), want a supplementary one", want, err)
	}
	got := strings.Fields(runAs(t, "frr", "id -G"))
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("hook ran with groups %q, want %q", got, want)
	}
}

// TestWaitAfterClose: Wait returns once the hooks queued before Close have run, and false when
// they run past its timeout.
func TestWaitAfterClose(t *testing.T) {
	dir := t.TempDir()
	slow := script(t, dir, "slow", "sleep 0.5; touch "+filepath.Join(dir, "ran"))
	r := New(Hooks{Stop: slow}, Options{}, nil)
	r.Notify("VI_1", "STOP", 100)
	r.Close()
	if r.Wait(50 * time.Millisecond) {
		t.Error("Wait reported the hooks done while the slow one still ran")
	}
	if !r.Wait(5 * time.Second) {
		t.Fatal("Wait timed out on a hook of 0.5 s")
	}
	if _, err := os.Stat(filepath.Join(dir, "ran")); err != nil {
		t.Errorf("Wait returned before the hook had run: %v", err)
	}
}
