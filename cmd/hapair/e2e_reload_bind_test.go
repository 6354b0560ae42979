package main

import (
	"context"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hapair/hapair/cmd/internal/lab"
)

// TestHAProxyReloadFailingAtBind: the new HAProxy file wants a port something else holds.
// `haproxy -c` passes (it does not bind), the new worker fails at bind, and HAProxy pauses its
// listeners meanwhile: a stats check with interval 1s and fall 2 used to move the VIP away and
// back, while hapair logged "Configuration reloaded". The reload must be reported failed, and
// cause no VRRP transition.
func TestHAProxyReloadFailingAtBind(t *testing.T) {
	t.Parallel()
	p := startHAProxyPair(t, func(n *labNode) { n.StatsInterval = "1s" })
	// Something else on lb1 holds the port the new configuration wants.
	var squatter net.Listener
	if err := p.lb1.Do(func() error {
		var err error
		squatter, err = net.Listen("tcp", "0.0.0.0:8081")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer squatter.Close()

	next := lab.HAProxyConfig{Name: "lb1-v2", Extra: "frontend extra\n    bind :8081\n    http-request return status 200"}.Render()
	if err := os.WriteFile(p.cfg1, []byte(next), 0o644); err != nil {
		t.Fatal(err)
	}
	from1, from2 := p.d1.lines(), p.d2.lines()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, code := p.d1.runIn(ctx, "reload", "--config", p.d1.cfgPath)
	t.Logf("hapair reload (exit %d):\n%s", code, out)
	if code == 0 || !strings.Contains(out, "failed") {
		t.Errorf("hapair reload of a file HAProxy cannot bind: exit %d, want the reload reported failed", code)
	}
	// Long enough for a check with interval 1s and fall 2 to have moved the VIP, and back.
	time.Sleep(6 * time.Second)
	st := statusOf(t, p.d1)
	if st.Config == nil || st.Config.LastReload == nil || st.Config.LastReload.Result != "failed" {
		t.Errorf("status after the reload: %+v", st.Config)
	}
	if st.HAProxy.LastReload == nil || st.HAProxy.LastReload.Result != "failed" {
		t.Errorf("HAProxy's last reload in status = %+v, want failed", st.HAProxy.LastReload)
	}
	log1 := strings.Join(lineTexts(p.d1, from1), "\n")
	log2 := strings.Join(lineTexts(p.d2, from2), "\n")
	if strings.Contains(log1, "Configuration reloaded") {
		t.Errorf("lb1 logged \"Configuration reloaded\" for a failed reload:\n%s", log1)
	}
	if regexp.MustCompile(`Entering (MASTER|BACKUP|FAULT) STATE`).MatchString(log1 + log2) {
		t.Errorf("the failed reload caused a VRRP transition:\nlb1:\n%s\nlb2:\n%s", log1, log2)
	}
	t.Logf("stats probe failures held during the reload: %d", strings.Count(log1, "not counted toward fall"))
	if h := vipHolders(t, p.lb1, p.lb2); len(h) != 1 || h[0] != "lb1" {
		t.Errorf("VIP held by %v after the failed reload, want lb1", h)
	}
	// The old workers kept serving: the client still gets lb1's old answer.
	if err := p.client.WaitServedBy(ctx, time.Now(), "lb1"); err != nil {
		t.Errorf("the old configuration is not serving after the failed reload: %v", err)
	}

	// Once the port is free, the same file reloads: a failed reload leaves nothing stuck.
	squatter.Close()
	from1, from2 = p.d1.lines(), p.d2.lines()
	if out, code := p.d1.runIn(ctx, "reload", "--config", p.d1.cfgPath); code != 0 {
		t.Fatalf("hapair reload once the port is free: exit %d\n%s", code, out)
	}
	if err := p.client.WaitServedBy(ctx, time.Now(), "lb1-v2"); err != nil {
		t.Errorf("the new configuration is not serving after the good reload: %v", err)
	}
	if st := statusOf(t, p.d1); st.Config.LastReload.Result != "ok" {
		t.Errorf("status after the good reload: %+v", st.Config.LastReload)
	}
	if l := strings.Join(append(lineTexts(p.d1, from1), lineTexts(p.d2, from2)...), "\n"); regexp.MustCompile(`Entering (MASTER|BACKUP|FAULT) STATE`).MatchString(l) {
		t.Errorf("the good reload caused a VRRP transition:\n%s", l)
	}
}

// lineTexts returns the log lines of d from index from on.
func lineTexts(d *daemonHost, from int) []string {
	var out []string
	for i, l := range d.proc.Lines() {
		if i >= from {
			out = append(out, l.Text)
		}
	}
	return out
}
