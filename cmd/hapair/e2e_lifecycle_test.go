package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hapair/hapair/cmd/internal/lab"
)

// TestSecondRunRefused: a second `hapair run` on the same host (same runtime_dir, another status
// port so nothing else stops it) refuses at once, before it touches the VIP: the running MASTER
// keeps it the whole time. Without the lock the second one removed the MASTER's VIP as stale and
// then ran as a second VRRP speaker.
func TestSecondRunRefused(t *testing.T) {
	p := newPair(t)
	lb1 := startDaemon(t, p.lb1, labNode{Priority: 110, AuthPass: "1a2b3c4d"})
	lb1.waitState(0, "MASTER", 10*time.Second)
	waitVIPOn(t, p.lb1, 5*time.Second)

	second := lb1.node
	second.Listen = "127.0.0.1:9480"
	cfg := filepath.Join(p.lb1.Dir(), "second.yaml")
	if err := os.WriteFile(cfg, []byte(second.YAML()), 0o600); err != nil {
		t.Fatal(err)
	}
	proc, err := p.lb1.StartWith(context.Background(), lab.ProcOptions{LogPath: filepath.Join(p.lb1.Dir(), "second.log")},
		hapairBin, "run", "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proc.Kill() })
	deadline := time.After(5 * time.Second)
	for missing := 0; ; {
		if !lb1.hasVIP() {
			missing++
			t.Errorf("the MASTER's VIP was gone while a second hapair started (%d polls)", missing)
		}
		select {
		case <-proc.Done():
		case <-deadline:
			t.Fatalf("the second hapair is still running after 5 s:\n%s", proc.Output())
		case <-time.After(5 * time.Millisecond):
			continue
		}
		break
	}
	if code := proc.Cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("second hapair exited %d, want 1", code)
	}
	out := proc.Output()
	if !strings.Contains(out, "another hapair is running") || !strings.Contains(out, "pid ") {
		t.Errorf("refusal does not say who runs:\n%s", out)
	}
	if strings.Contains(out, "Starting hapair") {
		t.Errorf("the second hapair got as far as starting:\n%s", out)
	}
	if !lb1.hasVIP() || lb1.proc.Exited() {
		t.Error("the first hapair lost its VIP or died")
	}
}

// TestSharedRuntimeDirRefused: `runtime_dir: /tmp`-like directories are refused and keep their
// mode (hapair used to chmod them 0700).
func TestSharedRuntimeDirRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for the VIP interface check")
	}
	dir := t.TempDir()
	shared := filepath.Join(dir, "shared")
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(shared, os.ModeSticky|0o777); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "hapair.yaml")
	text := labNode{RouterID: "lb1", Priority: 110, Interface: "lo", VIPs: []string{vipCIDR}, RuntimeDir: shared, Listen: "127.0.0.1:9481"}.YAML()
	if err := os.WriteFile(cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code := runHapair(t, "run", "--config", cfg)
	if code != 1 || !strings.Contains(out, "writable by others") {
		t.Errorf("run with a shared runtime_dir: exit %d\n%s", code, out)
	}
	fi, err := os.Stat(shared)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode() & (os.ModePerm | os.ModeSticky); got != os.ModeSticky|0o777 {
		t.Errorf("runtime_dir mode now %v, want it untouched", got)
	}
}
