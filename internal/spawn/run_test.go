package spawn

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hapair/hapair/internal/spawn/spawntest"
)

// helperEnv makes the test binary a stand-in for hapair that runs a program and waits to be
// killed (TestProgramDiesWithParent).
const helperEnv = "HAPAIR_PROC_TEST_HELPER"

func TestMain(m *testing.M) {
	if command := os.Getenv(helperEnv); command != "" {
		p, err := Parse(command, "")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		go p.Run(context.Background(), Options{})
		select {}
	}
	os.Exit(m.Run())
}

func script(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func run(t *testing.T, command string, timeout time.Duration, opts Options) Result {
	t.Helper()
	p, err := Parse(command, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return p.Run(ctx, opts)
}

func TestRunResults(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, command string
		args          []string
		success       bool
		output, err   string
	}{
		{name: "exit 0 with output", command: script(t, "echo all good"), success: true, output: "all good"},
		{name: "exit 3, stderr kept", command: script(t, "echo broken >&2; exit 3"), output: "broken"},
		{name: "extra arguments after its own", command: script(t, `echo "$*"`) + " own", args: []string{"INSTANCE", "VI_1"}, success: true, output: "own INSTANCE VI_1"},
		{name: "no shell", command: "echo $HOME | wc", success: true, output: "$HOME | wc"},
		{name: "missing", command: filepath.Join(dir, "nope"), err: "no such file or directory"},
		{name: "not executable", command: plain, err: "not executable (mode -rw-r--r--)"},
		{name: "directory", command: dir, err: "is a directory"},
		{name: "not in PATH", command: "hapair-no-such-command-xyz", err: "not found in PATH"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := run(t, tt.command, 10*time.Second, Options{Args: tt.args})
			if res.Success() != tt.success || !strings.Contains(res.Output, tt.output) {
				t.Errorf("success %v output %q (%v), want %v %q", res.Success(), res.Output, res.Err, tt.success, tt.output)
			}
			if tt.err != "" && (res.Err == nil || !strings.Contains(res.Err.Error(), tt.err)) {
				t.Errorf("err = %v, want %q", res.Err, tt.err)
			}
		})
	}
}

func TestRunOutputLimited(t *testing.T) {
	res := run(t, script(t, "head -c 10000 /dev/zero | tr '\\0' x"), 10*time.Second, Options{MaxOutput: 100})
	if len(res.Output) > 200 || !strings.HasSuffix(res.Output, "[9900 more bytes truncated]") {
		t.Errorf("output of %d bytes ending %q", len(res.Output), res.Output[max(0, len(res.Output)-40):])
	}
}

func TestRunEnvironmentScrubbed(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	t.Setenv("WATCHDOG_USEC", "1000")
	t.Setenv("HAPAIR_TEST_KEPT", "yes")
	res := run(t, "env", 10*time.Second, Options{Env: []string{"EXTRA=1"}})
	for _, gone := range []string{"NOTIFY_SOCKET=", "WATCHDOG_USEC="} {
		if strings.Contains(res.Output, gone) {
			t.Errorf("the child saw %s", gone)
		}
	}
	for _, kept := range []string{"HAPAIR_TEST_KEPT=yes", "EXTRA=1"} {
		if !strings.Contains(res.Output, kept) {
			t.Errorf("the child lacks %s", kept)
		}
	}
}

func TestRunTimeoutKillsProcessGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pids")
	res := run(t, script(t, "sleep 300 & echo $$ $! > "+pidFile+".t; mv "+pidFile+".t "+pidFile+"; echo started; sleep 300"),
		300*time.Millisecond, Options{})
	if !res.TimedOut || res.Success() || !strings.Contains(res.Output, "started") {
		t.Errorf("result %+v, want a timeout with the output so far", res)
	}
	spawntest.WaitGone(t, "after the timeout", spawntest.ReadPids(t, pidFile, 2)...)
}

func TestRunLeftovers(t *testing.T) {
	for _, kill := range []bool{true, false} {
		t.Run(fmt.Sprintf("KillLeftovers=%v", kill), func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "pid")
			// Exits 0 at once, leaving a child that holds the output pipe.
			res := run(t, script(t, "sleep 300 & echo $! > "+pidFile+"; echo done"), 10*time.Second, Options{KillLeftovers: kill})
			if !res.Success() || !strings.Contains(res.Output, "done") {
				t.Errorf("result %+v, want success", res)
			}
			pid := spawntest.ReadPids(t, pidFile, 1)[0]
			if kill {
				spawntest.WaitGone(t, "leftover", pid)
				return
			}
			if !spawntest.Alive(pid) {
				t.Errorf("leftover %d killed without KillLeftovers", pid)
			}
			_ = syscall.Kill(pid, syscall.SIGKILL)
		})
	}
}

// TestProgramDiesWithParent: a program still running when hapair is SIGKILLed dies with it.
func TestProgramDiesWithParent(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	// exec: the program's own process is the one that sleeps.
	command := script(t, "echo $$ > "+pidFile+".t; mv "+pidFile+".t "+pidFile+"; exec sleep 300")
	helper := exec.Command(os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(), helperEnv+"="+command)
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	pid := spawntest.ReadPids(t, pidFile, 1)[0]
	if !spawntest.Alive(pid) {
		t.Fatalf("program %d not running", pid)
	}
	_ = helper.Process.Kill()
	_ = helper.Wait()
	spawntest.WaitGone(t, "after its parent's SIGKILL", pid)
}

// TestRunAsUserWithGroups: a program run as a user has that user's ids and all its groups.
func TestRunAsUserWithGroups(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching users needs root")
	}
	u, err := user.Lookup("frr")
	if err != nil {
		t.Skip("no frr user (apt-get install frr), the one Debian user here with a supplementary group")
	}
	want, err := u.GroupIds()
	if err != nil || len(want) < 2 {
		t.Skipf("frr has groups %q (%v), want a supplementary one", want, err)
	}
	p, err := Parse("id -G", "frr")
	if err != nil {
		t.Fatal(err)
	}
	res := p.Run(context.Background(), Options{})
	got := strings.Fields(res.Output)
	slices.Sort(got)
	slices.Sort(want)
	if !res.Success() || !slices.Equal(got, want) {
		t.Errorf("id -G as frr: %q (%v), want %q", res.Output, res.Err, want)
	}
	p, err = Parse("id -u", "frr")
	if err != nil {
		t.Fatal(err)
	}
	if res := p.Run(context.Background(), Options{}); res.Output != u.Uid {
		t.Errorf("id -u as frr: %q, want %s", res.Output, u.Uid)
	}
}

func TestRunRefusesInsecureAsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("script security applies when running as root")
	}
	base := secureBase(t)
	open := mkdir(t, filepath.Join(base, "open"), 0, 0, 0o777)
	s := writeFile(t, filepath.Join(open, "s.sh"), 0, 0, 0o755)
	p, err := Parse(s, "")
	if err != nil {
		t.Fatal(err)
	}
	if res := p.Run(context.Background(), Options{ScriptSecurity: true}); res.Err == nil || res.State != nil {
		t.Errorf("insecure script ran: %+v", res)
	}
	if res := p.Run(context.Background(), Options{}); !res.Success() {
		t.Errorf("without script security: %+v", res)
	}
	p, err = Parse(s, "nobody") // keepalived protects only what runs as root
	if err != nil {
		t.Fatal(err)
	}
	if err := p.CheckSecure(true); err != nil {
		t.Errorf("as nobody: %v", err)
	}
}
