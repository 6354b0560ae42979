package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
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

// haproxyPIDFile reads the HAProxy master pid hapair recorded in its runtime dir.
func haproxyPIDFile(t testing.TB, d *daemonHost) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(d.node.RuntimeDir, "haproxy.pid"))
	if err != nil {
		t.Fatalf("%s: %v", d.host.Name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// seedNode is the seed's settings: v2, advert 1 s, stats probe every 2 s with fall 2 rise 2,
// weights -20.
func seedNode(n *labNode) { n.StatsInterval = "2s" }

// TestCrashWithoutOutage: the MASTER's hapair is SIGKILLed and started again 0.5 s later
// (systemd's Restart=): its HAProxy keeps serving and is adopted, the MASTER resumes from its
// state record within the BACKUP's Master_Down_Interval, the VIP never moves, and a client
// sending a request through the VIP every 20 ms sees no failure. Before, HAProxy died with
// hapair and the VIP moved away and back: 35-38 failed requests.
func TestCrashWithoutOutage(t *testing.T) {
	p := startHAProxyPair(t, seedNode)
	haproxyBefore := haproxyPIDFile(t, p.d1)
	time.Sleep(time.Second)
	p.client.Stop() // a fresh client: only the crash window counts
	c, err := p.cli.StartClientWith(context.Background(), lab.ClientOptions{URL: "http://" + vip.String() + "/", Every: 20 * time.Millisecond, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Stop() })
	time.Sleep(500 * time.Millisecond)

	from2 := p.d2.lines() // the BACKUP's log from the crash on (the start is TestStartTogether's)
	killed := p.d1.kill()
	time.Sleep(500 * time.Millisecond)
	p.d1.start()
	p.d1.waitState(0, "MASTER", 5*time.Second)
	resumed := time.Since(killed)
	// Watch for a while: the BACKUP's Master_Down_Interval passes, the stats check reports.
	deadline := time.Now().Add(seedMasterDown + 2*time.Second)
	for time.Now().Before(deadline) {
		if holders := vipHolders(t, p.lb1, p.lb2); len(holders) != 1 || holders[0] != "lb1" {
			t.Errorf("VIP held by %v after the crash, want lb1 alone", holders)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	st := c.Stop()
	t.Logf("SIGKILL of the MASTER's hapair, restart 0.5 s later: resumed MASTER %s after the kill; client: %s", resumed.Round(time.Millisecond), st)
	if st.Failed != 0 {
		t.Errorf("%d failed requests through the crash, want 0 (windows %+v)", st.Failed, st.Windows)
	}
	for _, l := range p.d2.proc.Lines()[from2:] {
		if strings.Contains(l.Text, "Entering MASTER STATE") {
			t.Errorf("the BACKUP entered MASTER after the crash: %s", l.Text)
		}
	}
	if got := haproxyPIDFile(t, p.d1); got != haproxyBefore {
		t.Errorf("HAProxy master pid %d after the crash, want %d kept", got, haproxyBefore)
	}
	out := p.d1.proc.Output() // the restarted hapair's
	for _, want := range []string{"Adopted the running HAProxy master", "Resumed MASTER"} {
		if !strings.Contains(out, want) {
			t.Errorf("restarted hapair did not log %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Entering BACKUP STATE") {
		t.Errorf("restarted hapair passed through BACKUP:\n%s", out)
	}
}
