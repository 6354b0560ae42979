package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
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

// TestReloadCommand: `hapair reload` waits for the outcome of its own SIGHUP and fails with the
// reason when the file is refused; the refusal shows in `hapair status` and in the metrics, the
// way Prometheus shows a refused reload of its own configuration.
func TestReloadCommand(t *testing.T) {
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
