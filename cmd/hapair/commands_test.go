package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hapair/hapair/cmd/internal/config"
	"github.com/hapair/hapair/cmd/internal/rundir"
	"github.com/hapair/hapair/metrics/status"
)

// In-process tests of the commands that need neither root nor a lab (the e2e tests run the built
// binary; these run the same code where coverage and the race detector see it).

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hapair.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const loOnly = `vrrp_instances:
  - name: VI_1
    interface: lo
    virtual_router_id: 51
    virtual_ipaddress: [10.255.0.10/24]
`

func TestRunDispatch(t *testing.T) {
	tests := []struct {
		args []string
		code int
		out  string // in stdout or stderr
	}{
		{nil, 2, "Usage:"},
		{[]string{"version"}, 0, "hapair dev"},
		{[]string{"help"}, 0, "Usage:"},
		{[]string{"bogus"}, 2, `unknown command "bogus"`},
		{[]string{"check", "--bogus-flag"}, 2, "flag provided but not defined"},
		{[]string{"convert"}, 2, "usage: hapair convert"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		if code := run(tt.args, &stdout, &stderr); code != tt.code || !strings.Contains(stdout.String()+stderr.String(), tt.out) {
			t.Errorf("hapair %v: exit %d, output %q; want %d and %q", tt.args, code, stdout.String()+stderr.String(), tt.code, tt.out)
		}
	}
}

func TestCheckInProcess(t *testing.T) {
	good := writeConfig(t, loOnly)
	bad := writeConfig(t, "bogus: 1\n"+loOnly)
	elsewhere := writeConfig(t, strings.Replace(loOnly, "interface: lo", "interface: eth-elsewhere9", 1))
	for _, tt := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"--config", good}, 0, ""},
		{[]string{"--config", bad}, 1, "bogus: unknown key"},
		{[]string{"--config", elsewhere}, 1, "eth-elsewhere9"},
		{[]string{"--config", elsewhere, "--skip-interface-check"}, 0, ""},
	} {
		var stdout, stderr bytes.Buffer
		code := cmdCheck(tt.args, &stdout, &stderr)
		if code != tt.code || (tt.err != "" && !strings.Contains(stderr.String(), tt.err)) {
			t.Errorf("check %v: exit %d, stderr %q; want %d and %q", tt.args, code, stderr.String(), tt.code, tt.err)
		}
	}
}

func TestConvertInProcess(t *testing.T) {
	var stdout, stderr bytes.Buffer
	t.Chdir(filepath.Join("..", "internal", "convert", "testdata")) // the file name is in the output
	if code := cmdConvert([]string{"loglb01.conf"}, &stdout, &stderr); code != 0 {
		t.Fatalf("convert: exit %d, stderr %s", code, stderr.String())
	}
	golden, err := os.ReadFile("loglb01.golden.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if stdout.String() != string(golden) {
		t.Errorf("convert output differs from the golden file:\n%s", stdout.String())
	}
	stdout.Reset()
	stderr.Reset()
	if code := cmdConvert([]string{filepath.Join(t.TempDir(), "missing.conf")}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "missing.conf") {
		t.Errorf("convert of a missing file: exit %d, stderr %q", code, stderr.String())
	}
}

// TestRunRefusesBadConfiguration: `hapair run` stops before anything runs, with the config exit code.
func TestRunRefusesBadConfiguration(t *testing.T) {
	bad := writeConfig(t, "bogus: 1\n"+loOnly)
	var stderr bytes.Buffer
	if code := cmdRun([]string{"--config", bad}, &stderr); code != exitConfig || !strings.Contains(stderr.String(), "bogus: unknown key") {
		t.Errorf("run with a bad file: exit %d, stderr %q; want %d", code, stderr.String(), exitConfig)
	}
	noHAProxy := writeConfig(t, "haproxy:\n  command: /nonexistent/haproxy\n  config: /etc/haproxy/haproxy.cfg\n"+loOnly)
	stderr.Reset()
	if code := cmdRun([]string{"--config", noHAProxy}, &stderr); code != exitConfig || !strings.Contains(stderr.String(), "haproxy.command") {
		t.Errorf("run without the HAProxy binary: exit %d, stderr %q; want %d", code, stderr.String(), exitConfig)
	}
	stderr.Reset()
	if code := cmdRun([]string{"--bogus"}, &stderr); code != 2 {
		t.Errorf("run with a bad flag: exit %d, want 2", code)
	}
}

// TestStatusCommandAgainstTheListener: `hapair status` reads a daemon's status listener, as text
// and as JSON, and says so when the listener is disabled.
func TestStatusCommandAgainstTheListener(t *testing.T) {
	td := newTestDaemon(t, pairYAML(t.TempDir(), "127.0.0.1:1", "10.255.0.10/24"))
	srv := status.NewServer("127.0.0.1:0", td.d.metrics.Handler(), td.d)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(t.Context()) })

	var stdout, stderr bytes.Buffer
	if code := cmdStatus([]string{"--addr", srv.Addr()}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "VI_1") {
		t.Fatalf("status: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	if code := cmdStatus([]string{"--addr", srv.Addr(), "--json"}, &stdout, &stderr); code != 0 {
		t.Fatalf("status --json: exit %d, stderr %q", code, stderr.String())
	}
	var st status.Status
	if err := json.Unmarshal(stdout.Bytes(), &st); err != nil || len(st.Instances) != 1 || st.Instances[0].Name != "VI_1" {
		t.Fatalf("status --json: %v, %+v", err, st)
	}
	stderr.Reset()
	disabled := writeConfig(t, "runtime_dir: "+t.TempDir()+"\n"+loOnly+"status:\n  listen: \"\"\n")
	if code := cmdStatus([]string{"--config", disabled}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "disabled") {
		t.Errorf("status with the listener disabled and no hapair: exit %d, stderr %q", code, stderr.String())
	}
}

// TestStatusCommandThroughTheControlSocket: as root, `hapair status` asks hapair through the
// control socket in its runtime dir, which needs no status listener.
func TestStatusCommandThroughTheControlSocket(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the control socket is root's")
	}
	dir := t.TempDir()
	td := newTestDaemon(t, pairYAML(dir, "127.0.0.1:1", "10.255.0.10/24")) // status.listen: ""
	control, err := startControl(dir, td.d, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(control.close)
	var stdout, stderr bytes.Buffer
	if code := cmdStatus([]string{"--config", td.path}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "VI_1") {
		t.Fatalf("status through the control socket: exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}
}

// TestLineHandler: the message first and unquoted (keepalived's words stay greppable), then the
// attributes, quoted only when they must be.
func TestLineHandler(t *testing.T) {
	var b bytes.Buffer
	log := slog.New(newLineHandler(&b, slog.LevelInfo, false)).With("source", "checks")
	log.Debug("not shown")
	log.Info("(VI_1) Entering MASTER STATE", "reason", "master down", "priority", 110, "took", 1500*time.Microsecond, "empty", "")
	log.WithGroup("g").Warn("grouped", slog.Attr{})
	want := "INFO (VI_1) Entering MASTER STATE source=checks reason=\"master down\" priority=110 took=1.5ms empty=\"\"\n" +
		"WARN grouped source=checks\n"
	if b.String() != want {
		t.Errorf("lines\n%q\nwant\n%q", b.String(), want)
	}
	b.Reset()
	slog.New(newLineHandler(&b, slog.LevelDebug, true)).Debug("with time")
	if line := b.String(); !strings.HasSuffix(line, " DEBUG with time\n") || len(line) < len("2006-01-02T15:04:05.000Z DEBUG with time\n") {
		t.Errorf("timed line %q", line)
	}
}

// TestRunWithoutRootStopsAtTheSocket: as a normal user, `hapair run` gets past the configuration
// and its runtime dir lock, then stops at the raw socket with the reason, exit 1, and leaves the
// lock free. (As root it would run for real on lo: not a unit test.)
func TestRunWithoutRootStopsAtTheSocket(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("as root, hapair run would start on lo in this machine's namespace")
	}
	rt := filepath.Join(t.TempDir(), "run")
	path := writeConfig(t, "runtime_dir: "+rt+"\nstatus:\n  listen: \"\"\n"+loOnly)
	var stderr bytes.Buffer
	if code := cmdRun([]string{"--config", path}, &stderr); code != 1 || !strings.Contains(stderr.String(), "instance VI_1") {
		t.Fatalf("run as a normal user: exit %d, stderr %q; want 1 naming the instance", code, stderr.String())
	}
	stderr.Reset()
	if code := cmdRun([]string{"--config", path}, &stderr); code != 1 || strings.Contains(stderr.String(), "lock") {
		t.Errorf("second run: exit %d, stderr %q; the first run left its lock behind", code, stderr.String())
	}
}

// TestReloadCommandErrors: `hapair reload` fails with the reason when it cannot find or reach
// the running hapair.
func TestReloadCommandErrors(t *testing.T) {
	disabled := writeConfig(t, "runtime_dir: "+t.TempDir()+"\n"+loOnly+"status:\n  listen: \"\"\n")
	ln := newTCPTarget(t)
	ln.down() // a port nobody listens on
	for _, tt := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"--bogus"}, 2, "flag provided but not defined"},
		{[]string{"--config", disabled}, 1, "disabled"},
		{[]string{"--addr", ln.addr, "--timeout", "2s"}, 1, "reload"},
	} {
		var stdout, stderr bytes.Buffer
		if code := cmdReload(tt.args, &stdout, &stderr); code != tt.code || !strings.Contains(stderr.String(), tt.err) {
			t.Errorf("reload %v: exit %d, stderr %q; want %d and %q", tt.args, code, stderr.String(), tt.code, tt.err)
		}
	}
}

// TestUnfitHAProxyRuntimeDirIsAConfigRefusal: haproxy.runtime_dir, when it is another directory,
// is held to runtime_dir's rule, and its refusal is rundir.ErrUnfit too, so that `hapair run`
// exits exitConfig for it as for runtime_dir (TestSharedRuntimeDirRefused) and takes no lock.
func TestUnfitHAProxyRuntimeDirIsAConfigRefusal(t *testing.T) {
	base := t.TempDir()
	shared := filepath.Join(base, "shared")
	if err := os.Mkdir(shared, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{RuntimeDir: filepath.Join(base, "run"), HAProxy: &config.HAProxy{RuntimeDir: shared}}
	lock, err := lockRuntimeDir(cfg)
	if err == nil {
		lock.Release()
		t.Fatal("lockRuntimeDir accepted a haproxy.runtime_dir writable by others")
	}
	if !errors.Is(err, rundir.ErrUnfit) || !strings.HasPrefix(err.Error(), "haproxy.runtime dir") {
		t.Errorf("lockRuntimeDir = %v, want a haproxy.runtime_dir refusal wrapping rundir.ErrUnfit", err)
	}
	again, err := rundir.Acquire(cfg.RuntimeDir)
	if err != nil {
		t.Fatalf("runtime_dir still locked after the refusal: %v", err)
	}
	again.Release()
}
