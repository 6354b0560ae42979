package promtest

import (
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

func TestStartQueryAlerts(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "promtest_value", Help: "test"}, []string{"instance"})
	g.WithLabelValues("VI_TEST").Set(42)
	reg.MustRegister(g)
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()

	rules := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(rules, []byte(`groups:
- name: t
  rules:
  - alert: PromtestHigh
    expr: promtest_value > 40
`), 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p := Start(t, []string{strings.TrimPrefix(srv.URL, "http://")}, rules)
	t.Logf("prometheus ready after %v", time.Since(start))
	p.WaitForTargetsUp(t, 1, 10*time.Second)
	t.Logf("target up after %v", time.Since(start))

	// honor_labels keeps the exporter's instance label; host comes from the address.
	v := p.WaitForSeries(t, "promtest_value", 10*time.Second)
	if got := v[0].Labels; got["instance"] != "VI_TEST" || got["host"] != "127.0.0.1" || got["job"] != Job || v[0].Value != 42 {
		t.Errorf("promtest_value = %v %v", got, v[0].Value)
	}
	up, err := p.Query("up")
	if err != nil {
		t.Fatal(err)
	}
	if len(up) != 1 || up[0].Labels["host"] != "127.0.0.1" || !strings.HasPrefix(up[0].Labels["instance"], "127.0.0.1:") {
		t.Errorf("up = %v", up)
	}
	s, err := p.Query("scalar(promtest_value) * 2")
	if err != nil || len(s) != 1 || s[0].Value != 84 {
		t.Errorf("scalar query = %v, %v", s, err)
	}

	_, err = p.Query("sum(")
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.ErrorType != "bad_data" {
		t.Errorf("bad query error = %v, want an *Error bad_data", err)
	}
	if _, err := p.Query("promtest_value[1m]"); err == nil {
		t.Error("range vector: want an error")
	}

	m, err := p.QueryRange("promtest_value[1m]")
	if err != nil || len(m) != 1 || len(m[0].Samples) == 0 || m[0].Labels["instance"] != "VI_TEST" || m[0].Samples[0].Value != 42 ||
		time.Since(m[0].Samples[0].Time) > time.Minute {
		t.Errorf("range query = %+v, %v", m, err)
	}
	if _, err := p.QueryRange("promtest_value"); err == nil {
		t.Error("QueryRange of an instant vector: want an error")
	}

	t.Logf("queries done after %v", time.Since(start))
	a := p.WaitForAlert(t, "PromtestHigh", "firing", 10*time.Second)
	t.Logf("alert firing after %v", time.Since(start))
	if a.Labels["instance"] != "VI_TEST" {
		t.Errorf("alert labels = %v", a.Labels)
	}
	for _, r := range p.WaitForRulesEvaluated(t, 10*time.Second) {
		if r.Health != "ok" {
			t.Errorf("rule %s health %s: %s", r.Name, r.Health, r.LastError)
		}
	}
	t.Logf("whole test %v", time.Since(start))
}

func TestGenerateConfigPromtool(t *testing.T) {
	cfg, err := GenerateConfig(Options{Targets: []string{"127.0.0.1:9479", "[::1]:9479"}, TargetLabels: map[string]string{"cluster": "loglb"}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := Promtool(t, nil, "check", "config", path); err != nil {
		t.Fatalf("%v", err)
	} else if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool check config: %s", out)
	}
}
