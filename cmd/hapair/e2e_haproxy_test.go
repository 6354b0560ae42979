package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
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

const statsURL = "http://127.0.0.1:8404/stats;csv"

// appBackend is an HAProxy backend whose one server the test can take down: a listener the test
// opens inside the host, checked by HAProxy every 200 ms.
const appBackend = `backend be_app
    option httpchk GET /
    server app1 127.0.0.1:9000 check inter 200ms fall 1 rise 1`

// haproxyPair is the seed's use case: two hapair hosts, each with its own HAProxy, and a client
// sending HTTP through the VIP.
type haproxyPair struct {
	*pair
	d1, d2 *daemonHost
	client *lab.Client
	cfg1   string // lb1's haproxy.cfg
}

func haproxyConfigFile(t testing.TB, h *lab.Host, body string) string {
	t.Helper()
	dir := filepath.Join(h.Dir(), "haproxy")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// startHAProxyPair starts both hosts; mod adjusts each node before start.
func startHAProxyPair(t *testing.T, mod func(n *labNode)) *haproxyPair {
	t.Helper()
	labtest.RequireCommands(t, "haproxy")
	p := &haproxyPair{pair: newPair(t)}
	start := func(h *lab.Host, prio int) *daemonHost {
		cfg := haproxyConfigFile(t, h, lab.HAProxyConfig{Name: h.Name}.Render())
		if h == p.lb1 {
			p.cfg1 = cfg
		}
		n := labNode{Priority: prio, AuthPass: "1a2b3c4d", HAProxyConfig: cfg, StatsURL: statsURL, StatsInterval: "500ms"}
		if mod != nil {
			mod(&n)
		}
		return startDaemon(t, h, n)
	}
	p.d1 = start(p.lb1, 110)
	p.d2 = start(p.lb2, 100)
	p.d1.waitState(0, "MASTER", 15*time.Second)
	p.d2.waitState(0, "BACKUP", 15*time.Second)
	waitVIP(t, 3*time.Second, p.lb1, p.lb1, p.lb2)
	c, err := p.cli.StartClientWith(context.Background(), lab.ClientOptions{URL: "http://" + vip.String() + "/", Every: 20 * time.Millisecond, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p.client = c
	t.Cleanup(func() { c.Stop() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitServedBy(ctx, time.Now(), "lb1"); err != nil {
		t.Fatal(err)
	}
	return p
}

// haproxyMasterPID finds the HAProxy master hapair started on a host (its direct child).
func haproxyMasterPID(t testing.TB, d *daemonHost) int {
	t.Helper()
	pid, err := childHAProxy(d.proc.PID())
	if err != nil {
		t.Fatalf("%s: %v", d.host.Name, err)
	}
	return pid
}

func statusOf(t testing.TB, d *daemonHost) status.Status {
	t.Helper()
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: d.host.DialContext}}
	resp, err := client.Get("http://127.0.0.1:9479/status")
	if err != nil {
		t.Fatalf("%s: status: %v", d.host.Name, err)
	}
	defer resp.Body.Close()
	var st status.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestHAProxyKilledMovesTheVIP is the seed's failover test: HAProxy dies on the MASTER, the
// BACKUP owns the VIP; HAProxy is restarted by hapair, its checks rise, the VIP comes back.
func TestHAProxyKilledMovesTheVIP(t *testing.T) {
	p := startHAProxyPair(t, nil)
	from1, from2 := p.d1.lines(), p.d2.lines()
	pid := haproxyMasterPID(t, p.d1)
	killed := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.d2.waitState(from2, "MASTER", 5*time.Second)
	took := waitVIP(t, 5*time.Second, p.lb2, p.lb1, p.lb2)
	t.Logf("HAProxy SIGKILLed on the MASTER: VIP on the BACKUP after %s", took.Sub(killed).Round(time.Millisecond))
	if d := took.Sub(killed); d > 2*time.Second {
		t.Errorf("VIP moved %s after HAProxy died, want well under 2s (target 0.8s)", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.client.WaitServedBy(ctx, took, "lb2"); err != nil {
		t.Fatal(err)
	}

	// hapair restarts HAProxy; once its checks rise the old MASTER preempts.
	p.d1.waitState(from1, "BACKUP", 5*time.Second)
	p.d1.waitState(from1, "MASTER", 20*time.Second)
	back := waitVIP(t, 5*time.Second, p.lb1, p.lb1, p.lb2)
	if err := p.client.WaitServedBy(ctx, back, "lb1"); err != nil {
		t.Fatal(err)
	}
	if newPID := haproxyMasterPID(t, p.d1); newPID == pid {
		t.Fatalf("HAProxy was not restarted (pid %d)", pid)
	}
	st := p.client.Stop()
	t.Logf("client: %s", st)
}

// TestStatsProbeFailureMovesTheVIP: the backend's only server goes down, the stats check fails
// (after fall 2), the priority drops by 20 and the BACKUP takes over.
func TestStatsProbeFailureMovesTheVIP(t *testing.T) {
	t.Parallel()
	labtest.RequireCommands(t, "haproxy")
	p := &haproxyPair{pair: newPair(t)}
	var app net.Listener
	if err := p.lb1.Do(func() error {
		l, err := net.Listen("tcp", "127.0.0.1:9000")
		app = l
		return err
	}); err != nil {
		t.Fatal(err)
	}
	go http.Serve(app, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for _, h := range []*lab.Host{p.lb1, p.lb2} {
		cfg := haproxyConfigFile(t, h, lab.HAProxyConfig{Name: h.Name, Extra: appBackend}.Render())
		n := labNode{Priority: 100, AuthPass: "1a2b3c4d", HAProxyConfig: cfg, StatsURL: statsURL, StatsInterval: "500ms"}
		if h == p.lb1 {
			n.Priority = 110
			n.StatsBackends = map[string]int{"be_app": 1}
			p.d1 = startDaemon(t, h, n)
		} else {
			p.d2 = startDaemon(t, h, n)
		}
	}
	p.d1.waitState(0, "MASTER", 15*time.Second)
	waitVIP(t, 3*time.Second, p.lb1, p.lb1, p.lb2)

	from2 := p.d2.lines()
	app.Close() // the server goes DOWN in HAProxy's stats
	p.d2.waitState(from2, "MASTER", 10*time.Second)
	waitVIP(t, 3*time.Second, p.lb2, p.lb1, p.lb2)
	st := statusOf(t, p.d1)
	if len(st.Instances) != 1 || st.Instances[0].EffectivePriority != 90 {
		t.Fatalf("lb1 status after the stats check failed: %+v, want effective priority 90", st.Instances)
	}
	var sawCheck bool
	for _, c := range st.Checks {
		if c.Name == "haproxy_stats" {
			sawCheck = true
			if c.Up {
				t.Errorf("haproxy_stats still up: %+v", c)
			}
			if !strings.Contains(c.Output, "be_app") {
				t.Errorf("haproxy_stats output %q does not name the backend", c.Output)
			}
		}
	}
	if !sawCheck {
		t.Errorf("no haproxy_stats check in status: %+v", st.Checks)
	}
}

// TestReloads: SIGHUP with a broken HAProxy config is refused and nothing moves; SIGHUP with a
// good one brings a new worker with no failover and no failed request.
func TestReloads(t *testing.T) {
	p := startHAProxyPair(t, nil)
	pid := haproxyMasterPID(t, p.d1)

	good := lab.HAProxyConfig{Name: "lb1"}.Render()
	if err := os.WriteFile(p.cfg1, []byte(good+"\nfrontend broken\n    bind :81\n    no-such-keyword here\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	from := p.d1.lines()
	if err := p.d1.proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := p.d1.proc.WaitForLineAfter(ctx, from, regexp.MustCompile(`(?i)reload.*(refused|invalid)|no-such-keyword`)); err != nil {
		t.Fatalf("broken HAProxy config not refused in the log: %v\n%s", err, p.d1.proc.Output())
	}
	if got := haproxyMasterPID(t, p.d1); got != pid {
		t.Fatalf("HAProxy master changed from %d to %d on a refused reload", pid, got)
	}
	st := statusOf(t, p.d1)
	if st.HAProxy.LastReload == nil || st.HAProxy.LastReload.Result != "refused" {
		t.Fatalf("last reload in status = %+v, want refused", st.HAProxy.LastReload)
	}

	// A good config with another answer: the new worker serves it, the VIP stays.
	if err := os.WriteFile(p.cfg1, []byte(lab.HAProxyConfig{Name: "lb1-v2"}.Render()), 0o644); err != nil {
		t.Fatal(err)
	}
	reloaded := time.Now()
	if err := p.d1.proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := p.client.WaitServedBy(ctx, reloaded, "lb1-v2"); err != nil {
		t.Fatal(err)
	}
	// Let the old worker drain and a few more requests pass before judging.
	time.Sleep(500 * time.Millisecond)
	stats := p.client.Stop()
	if stats.Failed != 0 {
		t.Errorf("client saw %d failed requests across the reloads: %s", stats.Failed, stats)
	}
	if h := vipHolders(t, p.lb1, p.lb2); len(h) != 1 || h[0] != "lb1" {
		t.Errorf("VIP held by %v after reloads, want lb1", h)
	}
	// Every transition line carries attributes after STATE: match the words, from the first
	// SIGHUP on.
	for _, l := range p.d1.proc.Lines()[from:] {
		if strings.Contains(l.Text, "Entering ") && strings.Contains(l.Text, " STATE") {
			t.Errorf("lb1 changed state during the reloads: %s", l.Text)
		}
	}
	st = statusOf(t, p.d1)
	if st.HAProxy.LastReload == nil || st.HAProxy.LastReload.Result != "ok" {
		t.Errorf("last reload in status = %+v, want ok", st.HAProxy.LastReload)
	}
	t.Logf("client across reloads: %s", stats)
}

// TestGracefulStopReleasesVIPFirst: on SIGTERM the VIP moves before HAProxy stops, so the
// client barely notices.
func TestGracefulStopReleasesVIPFirst(t *testing.T) {
	p := startHAProxyPair(t, nil)
	from2 := p.d2.lines()
	stopped := p.d1.terminate()
	p.d2.waitState(from2, "MASTER", 3*time.Second)
	took := waitVIPOn(t, p.lb2, 3*time.Second)
	t.Logf("graceful stop: VIP on the BACKUP after %s", took.Sub(stopped).Round(time.Millisecond))

	out := p.d1.proc.Output()
	released := strings.Index(out, "(VI_LOGS) sent 0 priority")
	haproxyStop := strings.Index(out, "Stopping HAProxy")
	if released < 0 {
		t.Fatalf("no priority-0 advert logged:\n%s", out)
	}
	if haproxyStop >= 0 && haproxyStop < released {
		t.Errorf("HAProxy was stopped before the VIP was released:\n%s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.client.WaitServedBy(ctx, took, "lb2"); err != nil {
		t.Fatal(err)
	}
	stats := p.client.Stop()
	t.Logf("client across the graceful stop: %s", stats)
	if stats.Longest() > 2*time.Second {
		t.Errorf("client failure window %s on a graceful stop", stats.Longest())
	}
}

// TestCrashLoopStaysOutOfMaster: an HAProxy that exits at once (it cannot bind) is restarted
// with a growing backoff, and its host never becomes MASTER: the VIP does not flap.
func TestCrashLoopStaysOutOfMaster(t *testing.T) {
	t.Parallel()
	labtest.RequireCommands(t, "haproxy")
	p := newPair(t)
	// 10.9.9.9 is not on the host: `haproxy -c` accepts the file, the start fails to bind.
	bad := haproxyConfigFile(t, p.lb1, lab.HAProxyConfig{Name: "lb1", Bind: "10.9.9.9:80"}.Render())
	okCfg := haproxyConfigFile(t, p.lb2, lab.HAProxyConfig{Name: "lb2"}.Render())
	// lb2 serves first; lb1 joins with an HAProxy that cannot start, as after a bad deploy.
	d2 := startDaemon(t, p.lb2, labNode{Priority: 100, HAProxyConfig: okCfg})
	d2.waitState(0, "MASTER", 15*time.Second)
	waitVIP(t, 3*time.Second, p.lb2, p.lb1, p.lb2)
	d1 := startDaemon(t, p.lb1, labNode{Priority: 110, HAProxyConfig: bad})
	d1.waitState(0, "BACKUP", 10*time.Second)

	var backoffs []time.Duration
	deadline := time.Now().Add(12 * time.Second)
	for time.Now().Before(deadline) {
		if h := vipHolders(t, p.lb1, p.lb2); len(h) != 1 || h[0] != "lb2" {
			t.Fatalf("VIP held by %v during lb1's crash loop, want lb2 only", h)
		}
		st := statusOf(t, d1)
		if b := time.Duration(st.HAProxy.Backoff); b > 0 && (len(backoffs) == 0 || b != backoffs[len(backoffs)-1]) {
			backoffs = append(backoffs, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if strings.Contains(d1.proc.Output(), "Entering MASTER STATE") {
		t.Fatalf("lb1 became MASTER during its HAProxy crash loop:\n%s", d1.proc.Output())
	}
	st := statusOf(t, d1)
	t.Logf("crash loop: restarts %d, backoffs seen %v", st.HAProxy.Restarts, backoffs)
	if st.HAProxy.Restarts < 3 {
		t.Errorf("restarts = %d after 12s of crash loop, want at least 3", st.HAProxy.Restarts)
	}
	if len(backoffs) < 2 || backoffs[len(backoffs)-1] <= backoffs[0] {
		t.Errorf("backoff did not grow: %v", backoffs)
	}
}
