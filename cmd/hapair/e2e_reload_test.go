package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hapair/hapair/cmd/internal/lab"
	"github.com/hapair/hapair/cmd/internal/lab/labtest"
	"github.com/hapair/hapair/metrics/status"
)

// runIn runs hapair in a lab host and returns its output and exit code.
func (d *daemonHost) runIn(ctx context.Context, args ...string) (string, int) {
	d.t.Helper()
	out, err := d.host.Command(ctx, hapairBin, args...).CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	d.t.Fatalf("%s: hapair %v: %v", d.host.Name, args, err)
	return "", 0
}

// scrape returns the host's /metrics text.
func (d *daemonHost) scrape() string {
	d.t.Helper()
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: d.host.DialContext}}
	resp, err := client.Get("http://127.0.0.1:9479/metrics")
	if err != nil {
		d.t.Fatalf("%s: scrape: %v", d.host.Name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		d.t.Fatal(err)
	}
	return string(b)
}

// TestCommandsWithoutTheStatusListener: with no status listener (status.listen: ""), `hapair
// status` and `hapair reload`, the unit's ExecReload, still reach hapair as root, through the
// control socket in its runtime dir. Before, both failed ("the status listener is disabled"),
// and so did `systemctl reload hapair`.
func TestCommandsWithoutTheStatusListener(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	d := startDaemon(t, p.lb1, labNode{Priority: 110, Listen: `""`})
	d.waitState(0, "MASTER", 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := d.host.DialContext(ctx, "tcp", "127.0.0.1:9479"); err == nil {
		t.Fatal("a status listener answers on 127.0.0.1:9479 with status.listen empty")
	}

	text, code := d.runIn(ctx, "status", "--config", d.cfgPath)
	if code != 0 || !strings.Contains(text, "VI_LOGS") || !strings.Contains(text, "MASTER") {
		t.Fatalf("hapair status without a listener: exit %d:\n%s", code, text)
	}
	good, err := os.ReadFile(d.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.cfgPath, []byte(strings.Replace(string(good), "priority: 110", "priority: 120", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code := d.runIn(ctx, "reload", "--config", d.cfgPath)
	if code != 0 || !strings.Contains(out, "reloaded") {
		t.Fatalf("hapair reload without a listener: exit %d:\n%s", code, out)
	}
	js, code := d.runIn(ctx, "status", "--json", "--config", d.cfgPath)
	var st status.Status
	if err := json.Unmarshal([]byte(js), &st); code != 0 || err != nil {
		t.Fatalf("hapair status --json: exit %d, %v:\n%s", code, err, js)
	}
	if len(st.Instances) != 1 || st.Instances[0].BasePriority != 120 {
		t.Errorf("after hapair reload, instances %+v, want priority 120", st.Instances)
	}
}

// TestReloadCommand: `hapair reload` waits for the outcome of its own SIGHUP and fails with the
// reason when the file is refused; the refusal shows in `hapair status` and in the metrics, the
// way Prometheus shows a refused reload of its own configuration.
func TestReloadCommand(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	d := startDaemon(t, p.lb1, labNode{Priority: 110})
	d.waitState(0, "MASTER", 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	good, err := os.ReadFile(d.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.cfgPath, []byte(strings.Replace(string(good), "priority: 110", "priority: 999", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code := d.runIn(ctx, "reload", "--config", d.cfgPath)
	if code == 0 || !strings.Contains(out, "refused") || !strings.Contains(out, "999") {
		t.Fatalf("hapair reload of a broken file: exit %d, want non-zero with the reason:\n%s", code, out)
	}
	t.Logf("hapair reload of a broken file (exit %d):\n%s", code, out)
	st := statusOf(t, d)
	if st.Config == nil || st.Config.LastReload == nil || st.Config.LastReload.Result != "refused" ||
		!strings.Contains(st.Config.LastReload.Error, "999") || st.Config.LastReload.At.IsZero() {
		t.Fatalf("status after a refused reload: %+v", st.Config)
	}
	text, code := d.runIn(ctx, "status", "--config", d.cfgPath)
	if code != 0 || !strings.Contains(text, "last reload: refused at") {
		t.Errorf("hapair status does not show the refused reload (exit %d):\n%s", code, text)
	}
	m := d.scrape()
	for _, want := range []string{
		`hapair_config_reloads_total{result="refused"} 1`,
		`hapair_config_reloads_total{result="ok"} 0`,
		"hapair_config_last_reload_successful 0",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q after a refused reload", want)
		}
	}

	if err := os.WriteFile(d.cfgPath, []byte(strings.Replace(string(good), "priority: 110", "priority: 120", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	out, code = d.runIn(ctx, "reload", "--config", d.cfgPath)
	if code != 0 || !strings.Contains(out, "reloaded") {
		t.Fatalf("hapair reload of a good file: exit %d:\n%s", code, out)
	}
	// The command returned after the reload was applied, not merely after the signal.
	st = statusOf(t, d)
	if len(st.Instances) != 1 || st.Instances[0].BasePriority != 120 {
		t.Fatalf("hapair reload returned before the new priority was applied: %+v", st.Instances)
	}
	if st.Config.LastReload.Result != "ok" || st.Config.LoadedAt.Before(before) {
		t.Errorf("status after a good reload: %+v / %+v", st.Config, st.Config.LastReload)
	}
	m = d.scrape()
	for _, want := range []string{`hapair_config_reloads_total{result="ok"} 1`, "hapair_config_last_reload_successful 1"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q after a good reload", want)
		}
	}
}

// TestCheckRefusesAFIFO: `hapair check` on a FIFO (hapair's file or HAProxy's) answers at once
// instead of waiting for a writer.
func TestCheckRefusesAFIFO(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	withHAProxyFIFO := filepath.Join(dir, "hapair.yaml")
	text := labNode{RouterID: "lb1", Priority: 110, Interface: "lo", VIPs: []string{vipCIDR}, HAProxyConfig: fifo}.YAML()
	if err := os.WriteFile(withHAProxyFIFO, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ config, want string }{
		{fifo, "named pipe (FIFO), not a regular file"},
		{withHAProxyFIFO, "haproxy.config: " + fifo + " is a named pipe (FIFO), not a regular file"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		began := time.Now()
		out, err := exec.CommandContext(ctx, hapairBin, "check", "--config", tt.config).CombinedOutput()
		timedOut := ctx.Err() != nil
		cancel()
		if err == nil || timedOut || !strings.Contains(string(out), tt.want) {
			t.Errorf("hapair check --config %s: %v after %s, want a prompt refusal with %q:\n%s",
				tt.config, err, time.Since(began).Round(time.Millisecond), tt.want, out)
		}
	}
}

// TestReloadOfAFIFOThenSIGTERM: a reload pointed at a FIFO is refused at once, and in any case
// SIGTERM is acted on at once: it used to wait behind the reload, for ever.
func TestReloadOfAFIFOThenSIGTERM(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	d := startDaemon(t, p.lb1, labNode{Priority: 110})
	d.waitState(0, "MASTER", 10*time.Second)
	if err := os.Rename(d.cfgPath, d.cfgPath+".saved"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(d.cfgPath, 0o600); err != nil {
		t.Fatal(err)
	}
	from := d.lines()
	if err := d.proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.proc.WaitForLineAfter(ctx, from, regexp.MustCompile(`Reloading configuration`)); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	if err := d.proc.Stop(10 * time.Second); err != nil {
		t.Fatalf("hapair did not stop cleanly within 10s of SIGTERM: %v\n%s", err, d.proc.Output())
	}
	took := time.Since(began)
	t.Logf("SIGTERM after a reload of a FIFO: stopped in %s", took.Round(time.Millisecond))
	if !strings.Contains(d.proc.Output(), "named pipe (FIFO), not a regular file") {
		t.Errorf("the reload of a FIFO was not refused as such:\n%s", d.proc.Output())
	}
	if took > 5*time.Second {
		t.Errorf("SIGTERM took %s to act", took)
	}
}

// TestDumpDuringAStuckHAProxyReload: HAProxy's master stopped (SIGSTOP) makes a reload wait up to
// its 15 s bound; SIGUSR1 must not wait with it. (That SIGTERM does not either is
// TestStuckReloadDelaysNoSignal's, on fakes: here the stopped master would hold up HAProxy's own
// stop for its stop grace.)
func TestDumpDuringAStuckHAProxyReload(t *testing.T) {
	t.Parallel()
	labtest.RequireCommands(t, "haproxy")
	p := newPair(t)
	cfg := haproxyConfigFile(t, p.lb1, lab.HAProxyConfig{Name: "lb1"}.Render())
	dump := filepath.Join(p.lb1.Dir(), "hapair.data")
	d := startDaemon(t, p.lb1, labNode{Priority: 110, HAProxyConfig: cfg, DumpFile: dump})
	d.waitState(0, "MASTER", 15*time.Second)
	master := haproxyMasterPID(t, d)
	if err := syscall.Kill(master, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(master, syscall.SIGCONT)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hup := d.lines()
	if err := d.proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if _, err := d.proc.WaitForLineAfter(ctx, hup, regexp.MustCompile(`Reloading configuration`)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // the reload is now waiting on the stopped master
	from := d.lines()
	began := time.Now()
	if err := d.proc.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if _, err := d.proc.WaitForLineAfter(ctx, from, regexp.MustCompile(`State dump written`)); err != nil {
		t.Fatal(err)
	}
	took := time.Since(began)
	t.Logf("SIGUSR1 during a stuck HAProxy reload: dump written in %s", took.Round(time.Millisecond))
	if took > 3*time.Second {
		t.Errorf("the dump waited %s behind the reload", took)
	}
	// Whatever its outcome, a reload that ended before the dump would prove nothing.
	for _, l := range d.proc.Lines()[hup:] {
		for _, outcome := range []string{"Configuration reloaded", "Reload refused", "Reload failed", "HAProxy reload failed"} {
			if strings.Contains(l.Text, outcome) {
				t.Errorf("the reload ended (%q) before the dump was written; the test proves nothing", l.Text)
			}
		}
	}
}

// TestDumpFileOverTheConfigRefused: a reload that points status.dump_file at the configuration
// file is refused, and SIGUSR1 then leaves the file alone (it used to replace it with the dump).
func TestDumpFileOverTheConfigRefused(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	d := startDaemon(t, p.lb1, labNode{Priority: 110, DumpFile: filepath.Join(p.lb1.Dir(), "hapair.data")})
	d.waitState(0, "MASTER", 10*time.Second)
	good, err := os.ReadFile(d.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(good), filepath.Join(p.lb1.Dir(), "hapair.data"), d.cfgPath, 1)
	if err := os.WriteFile(d.cfgPath, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, code := d.runIn(ctx, "reload", "--config", d.cfgPath)
	if code == 0 || !strings.Contains(out, "status.dump_file") {
		t.Fatalf("reload with dump_file = the configuration: exit %d, want refused:\n%s", code, out)
	}
	from := d.lines()
	if err := d.proc.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if _, err := d.proc.WaitForLineAfter(ctx, from, regexp.MustCompile(`State dump written file=`+regexp.QuoteMeta(filepath.Join(p.lb1.Dir(), "hapair.data")))); err != nil {
		t.Fatal(err)
	}
	if now, _ := os.ReadFile(d.cfgPath); string(now) != bad {
		t.Fatalf("SIGUSR1 overwrote the configuration file:\n%.300s", now)
	}
	// And `hapair check` says so too.
	if out, code := d.runIn(ctx, "check", "--config", d.cfgPath); code == 0 || !strings.Contains(out, "status.dump_file") {
		t.Errorf("hapair check: exit %d:\n%s", code, out)
	}
}
