package main

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

func runHapair(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(hapairBin, args...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// TestCheckCommand: like `keepalived -t`, silent and 0 for a good file, every problem with
// file:line and non-zero for a bad one.
func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(labNode{RouterID: "lb1", Priority: 110, AuthPass: "1a2b3c4d", VIPs: []string{vipCIDR}, Interface: "lo"}.YAML()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := runHapair(t, "check", "--config", good); code != 0 || out != "" {
		t.Fatalf("check of a good file: exit %d, output %q", code, out)
	}

	bad := filepath.Join(dir, "bad.yaml")
	text := strings.Replace(labNode{RouterID: "lb1", Priority: 110, AuthPass: "1a2b3c4d123", VIPs: []string{"10.0.0.300/24"}, Interface: "lo"}.YAML(),
		"virtual_router_id: 51", "virtual_router_id: 300", 1) + "unknown_key: 1\n"
	if err := os.WriteFile(bad, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code := runHapair(t, "check", "--config", bad)
	if code == 0 {
		t.Fatalf("check of a bad file exited 0:\n%s", out)
	}
	for _, want := range []string{"bad.yaml:6:", "virtual_router_id", "auth_pass", "virtual_ipaddress", "unknown_key"} {
		if !strings.Contains(out, want) {
			t.Errorf("check output lacks %q:\n%s", want, out)
		}
	}
	t.Logf("hapair check on a broken file:\n%s", out)

	// The shipped examples, with HAProxy's own verdict on the example haproxy.cfg.
	for _, ex := range []string{"loglb01.yaml", "loglb02.yaml"} {
		data, err := os.ReadFile(filepath.Join("..", "..", "deploy", "examples", ex))
		if err != nil {
			t.Fatal(err)
		}
		cfg := strings.ReplaceAll(string(data), "/etc/haproxy/haproxy.cfg", filepath.Join("..", "..", "deploy", "examples", "haproxy.cfg"))
		p := filepath.Join(dir, ex)
		if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, code := runHapair(t, "check", "--skip-interface-check", "--config", p); code != 0 {
			t.Errorf("check %s: exit %d\n%s", ex, code, out)
		}
	}
}

// TestConvertSeedConfigs: `hapair convert` turns the seed's keepalived.conf into YAML that
// `hapair check` accepts.
func TestConvertSeedConfigs(t *testing.T) {
	for _, name := range []string{"loglb01", "loglb02"} {
		out, err := exec.Command(hapairBin, "convert", filepath.Join("..", "internal", "convert", "testdata", name+".conf")).Output()
		if err != nil {
			t.Fatalf("convert %s: %v", name, err)
		}
		for _, want := range []string{"virtual_router_id: 51", "10.0.0.10/24", "haproxy: -20"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("%s: converted YAML lacks %q:\n%s", name, want, out)
			}
		}
		p := filepath.Join(t.TempDir(), name+".yaml")
		// The seed has no haproxy section (keepalived never ran HAProxy); point it at the example.
		text := string(out)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if msg, code := runHapair(t, "check", "--skip-interface-check", "--config", p); code != 0 {
			t.Errorf("converted %s refused by check (exit %d):\n%s\n%s", name, code, msg, text)
		}
	}
}

// TestStatusDumpAndReload: `hapair status`, the SIGUSR1 dump, and SIGHUP with a broken then a
// good file, against a running daemon in the lab.
func TestStatusDumpAndReload(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	dump := filepath.Join(p.lb1.Dir(), "hapair.data")
	d := startDaemon(t, p.lb1, labNode{Priority: 110, DumpFile: dump})
	d.waitState(0, "MASTER", 10*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := p.lb1.Run(ctx, hapairBin, "status", "--config", d.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"VI_LOGS", "MASTER", "10.0.0.10/24"} {
		if !strings.Contains(out, want) {
			t.Errorf("hapair status lacks %q:\n%s", want, out)
		}
	}
	js, err := p.lb1.Run(ctx, hapairBin, "status", "--json", "--config", d.cfgPath)
	if err != nil || !strings.Contains(js, `"state": "MASTER"`) {
		t.Errorf("hapair status --json: %v\n%s", err, js)
	}

	if err := d.proc.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if _, err := d.proc.WaitForLine(ctx, regexp.MustCompile(`State dump written file=`+regexp.QuoteMeta(dump))); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dump)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("dump mode %v, want 0600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(dump)
	if !regexp.MustCompile(`VRRP Instance = VI_LOGS\s*\n\s*State = MASTER`).Match(data) {
		t.Errorf("dump lacks the keepalived-style lines:\n%s", data)
	}

	// A broken file: refused, the daemon keeps running as it was.
	good, _ := os.ReadFile(d.cfgPath)
	if err := os.WriteFile(d.cfgPath, []byte(strings.Replace(string(good), "priority: 110", "priority: 999", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	from := d.lines()
	_ = d.proc.Signal(syscall.SIGHUP)
	if _, err := d.proc.WaitForLineAfter(ctx, from, regexp.MustCompile(`Reload refused, the running configuration stays`)); err != nil {
		t.Fatal(err)
	}
	// A good file with another priority: applied in place, no transition.
	if err := os.WriteFile(d.cfgPath, []byte(strings.Replace(string(good), "priority: 110", "priority: 120", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	from = d.lines()
	_ = d.proc.Signal(syscall.SIGHUP)
	if _, err := d.proc.WaitForLineAfter(ctx, from, regexp.MustCompile(`Configuration reloaded`)); err != nil {
		t.Fatal(err)
	}
	out, _ = p.lb1.Run(ctx, hapairBin, "status", "--json", "--config", d.cfgPath)
	if !strings.Contains(out, `"base_priority": 120`) || !strings.Contains(out, `"effective_priority": 120`) {
		t.Errorf("priority not reloaded:\n%s", out)
	}
	// VIPs: a second one added by reload is attached at once by the MASTER, then removed again.
	second := netip.MustParseAddr("10.0.0.20")
	withTwo := strings.Replace(string(good), "virtual_ipaddress: [10.0.0.10/24]", "virtual_ipaddress: [10.0.0.10/24, 10.0.0.20/24]", 1)
	for _, step := range []struct {
		text string
		want bool
	}{{withTwo, true}, {string(good), false}} {
		if err := os.WriteFile(d.cfgPath, []byte(step.text), 0o600); err != nil {
			t.Fatal(err)
		}
		from = d.lines()
		_ = d.proc.Signal(syscall.SIGHUP)
		if _, err := d.proc.WaitForLineAfter(ctx, from, regexp.MustCompile(`Configuration reloaded`)); err != nil {
			t.Fatal(err)
		}
		if has, err := p.lb1.HasAddr(second); err != nil || has != step.want {
			t.Fatalf("after reload, 10.0.0.20 on lb1 = %v (%v), want %v", has, err, step.want)
		}
		if has, _ := p.lb1.HasAddr(vip); !has {
			t.Fatal("the unchanged VIP went away during a VIP reload")
		}
	}
	if strings.Count(d.proc.Output(), "Entering MASTER STATE") != 1 {
		t.Errorf("reloads caused a transition:\n%s", d.proc.Output())
	}
}

// TestRunRefusesMissingHAProxy: a missing HAProxy binary or configuration is a clear error at
// start, not a silent restart loop.
func TestRunRefusesMissingHAProxy(t *testing.T) {
	dir := t.TempDir()
	missingCfg := filepath.Join(dir, "config.yaml")
	text := labNode{RouterID: "lb1", Priority: 110, Interface: "lo", VIPs: []string{vipCIDR}, HAProxyConfig: filepath.Join(dir, "missing.cfg")}.YAML()
	if err := os.WriteFile(missingCfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := runHapair(t, "run", "--config", missingCfg); code == 0 || !strings.Contains(out, "missing.cfg") {
		t.Errorf("run with a missing HAProxy config: exit %d\n%s", code, out)
	}
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte("global\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	text = labNode{RouterID: "lb1", Priority: 110, Interface: "lo", VIPs: []string{vipCIDR}, HAProxyConfig: cfg}.YAML()
	text = strings.Replace(text, "haproxy:\n", "haproxy:\n  command: /nonexistent/haproxy\n", 1)
	p := filepath.Join(dir, "binary.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code := runHapair(t, "run", "--config", p)
	if code == 0 || !strings.Contains(out, "/nonexistent/haproxy") {
		t.Errorf("run with a missing HAProxy binary: exit %d\n%s", code, out)
	}
	if out, code := runHapair(t, "check", "--config", p); code == 0 || !strings.Contains(out, "/nonexistent/haproxy") {
		t.Errorf("check with a missing HAProxy binary: exit %d\n%s", code, out)
	}
}
