package checks

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hapair/hapair/internal/spawn"
	"github.com/hapair/hapair/internal/spawn/spawntest"
)

func writeScript(t *testing.T, body string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "check.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func badInterpreter(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "bad.sh")
	if err := os.WriteFile(path, []byte("#!/nonexistent/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestScriptProbe(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		command string
		ok      bool
		want    string
	}{
		{"exit 0", writeScript(t, "echo all good", 0o755), true, "all good"},
		{"exit 0 silent", writeScript(t, "exit 0", 0o755), true, "exit status 0"},
		{"exit 1 with output", writeScript(t, "echo 'haproxy not running' >&2; exit 1", 0o755), false, "exit status 1: haproxy not running"},
		{"exit 2", writeScript(t, "exit 2", 0o755), false, "exit status 2"},
		{"missing script fails", filepath.Join(dir, "nope.sh"), false, "no such file"},
		{"non-executable script fails", writeScript(t, "exit 0", 0o644), false, "not executable (mode -rw-r--r--)"},
		{"directory fails", dir, false, "is a directory"},
		{"not in PATH fails", "hapair-no-such-command-xyz", false, "not found in PATH"},
		{"PATH lookup and arguments", "test 'a b' = \"a b\"", true, "exit status 0"},
		{"killed by a signal", writeScript(t, "kill -9 $$", 0o755), false, "signal: killed"},
		{"no shell: metacharacters are arguments", "echo $HOME | wc", true, "$HOME | wc"},
		{"bad interpreter", badInterpreter(t), false, "no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewScriptProbe(tt.command, "", false)
			if err != nil {
				t.Fatal(err)
			}
			wantResult(t, probeWithTimeout(t, p, 5*time.Second), tt.ok, tt.want)
		})
	}
}

func TestScriptProbeOutputTruncated(t *testing.T) {
	p, err := NewScriptProbe(writeScript(t, "head -c 10000 /dev/zero | tr '\\0' x; exit 1", 0o755), "", false)
	if err != nil {
		t.Fatal(err)
	}
	res := probeWithTimeout(t, p, 5*time.Second)
	if res.OK || len(res.Output) > spawn.DefaultMaxOutput+100 || !strings.Contains(res.Output, "[5904 more bytes truncated]") {
		t.Errorf("result ok=%v, %d bytes ending %q", res.OK, len(res.Output), res.Output[max(len(res.Output)-60, 0):])
	}
}

func TestScriptProbeTimeoutKillsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	// A background grandchild in the same group, and a foreground sleep.
	p, err := NewScriptProbe(writeScript(t, "sleep 300 & echo $! > "+pidFile+"; echo started; sleep 300", 0o755), "", false)
	if err != nil {
		t.Fatal(err)
	}
	const timeout = 300 * time.Millisecond
	res := probeWithTimeout(t, p, timeout)
	if res.OK || !strings.Contains(res.Output, "timed out after") || !strings.Contains(res.Output, "process group killed: started") {
		t.Errorf("result %+v, want a timeout failure with the output so far", res)
	}
	if res.Duration < timeout-20*time.Millisecond || res.Duration > timeout+time.Second {
		t.Errorf("took %v with a %v timeout", res.Duration, timeout)
	}
	t.Logf("timed-out script: %q after %v", res.Output, res.Duration)
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "background child killed", func() bool { return !spawntest.Alive(pid) })
}

func TestScriptProbeLeftoverChildKilled(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	// Exits 0 at once, leaving a child that holds the output pipe.
	p, err := NewScriptProbe(writeScript(t, "sleep 300 & echo $! > "+pidFile+"; echo done", 0o755), "", false)
	if err != nil {
		t.Fatal(err)
	}
	res := probeWithTimeout(t, p, 10*time.Second)
	if !res.OK || !strings.Contains(res.Output, "done") {
		t.Errorf("result %+v, want success", res)
	}
	if res.Duration > 2*time.Second {
		t.Errorf("took %v", res.Duration)
	}
	b, _ := os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if pid == 0 {
		t.Fatal("no child pid")
	}
	waitFor(t, "leftover child killed", func() bool { return !spawntest.Alive(pid) })
}

func TestScriptProbeAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("needs root")
		}
		t.Skip("needs root")
	}
	idPath, err := exec.LookPath("id")
	if err != nil {
		t.Skip("no id command")
	}
	p, err := NewScriptProbe(idPath+" -u", "nobody", false)
	if err != nil {
		t.Fatal(err)
	}
	res := probeWithTimeout(t, p, 5*time.Second)
	if !res.OK || res.Output != "65534" {
		t.Errorf("result %+v, want uid 65534", res)
	}
	// nobody cannot run a script in root's 0700 temp dir: a failure, not a success.
	p, err = NewScriptProbe(writeScript(t, "exit 0", 0o700), "nobody", false)
	if err != nil {
		t.Fatal(err)
	}
	if res := probeWithTimeout(t, p, 5*time.Second); res.OK || !strings.Contains(res.Output, "as nobody: ") {
		t.Errorf("result %+v, want a start failure as nobody", res)
	}
}

func TestNewScriptProbeRejects(t *testing.T) {
	for _, tt := range []struct{ command, user, want string }{
		{"", "", "empty command"},
		{"   ", "", "empty command"},
		{"/bin/true 'x", "", "unterminated single quote"},
		{`/bin/true "x`, "", "unterminated double quote"},
		{`/bin/true x\`, "", "trailing backslash"},
		{"/bin/true", "hapair-no-such-user-xyz", "look up user"},
	} {
		if _, err := NewScriptProbe(tt.command, tt.user, false); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewScriptProbe(%q, %q) error %v, want %q", tt.command, tt.user, err, tt.want)
		}
	}
}
