package metrics

import (
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/hapair/hapair/metrics/promtest"
)

var dashboardPath = filepath.Join("..", "deploy", "grafana", "hapair-failover.json")

func loadDashboard(t *testing.T) promtest.Dashboard {
	t.Helper()
	d, err := promtest.LoadDashboard(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func allPanels(ps []promtest.Panel) []promtest.Panel {
	var out []promtest.Panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

// dashboardExprs returns every PromQL expression of the dashboard.
func dashboardExprs(t *testing.T) []promtest.Expr {
	t.Helper()
	exprs, err := promtest.DashboardExprs(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	return exprs
}

var (
	stringLitRe = regexp.MustCompile("\"(?:[^\"\\\\]|\\\\.)*\"|'(?:[^'\\\\]|\\\\.)*'|`[^`]*`")
	matchersRe  = regexp.MustCompile(`\{[^}]*\}`)
	rangeRe     = regexp.MustCompile(`\[[^\]]*\]`)
	groupingRe  = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	tokenRe     = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*|[0-9][a-zA-Z0-9_.]*`)
	promqlWords = map[string]bool{
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"bool": true, "and": true, "or": true, "unless": true, "offset": true, "inf": true, "nan": true,
		"atan2": true, "Inf": true, "NaN": true,
	}
)

// metricNames returns the metric names a PromQL expression selects: the
// identifiers left after removing strings, label matchers, ranges, grouping
// clauses, numbers, keywords and function or aggregation calls.
func metricNames(expr string) []string {
	s := stringLitRe.ReplaceAllString(expr, `""`)
	s = matchersRe.ReplaceAllString(s, " ")
	s = rangeRe.ReplaceAllString(s, " ")
	s = groupingRe.ReplaceAllString(s, " ")
	seen := map[string]bool{}
	var names []string
	for _, loc := range tokenRe.FindAllStringIndex(s, -1) {
		tok := s[loc[0]:loc[1]]
		if tok[0] >= '0' && tok[0] <= '9' || promqlWords[tok] {
			continue
		}
		if rest := strings.TrimLeft(s[loc[1]:], " \t\n"); strings.HasPrefix(rest, "(") {
			continue // function or aggregation
		}
		if !seen[tok] {
			seen[tok] = true
			names = append(names, tok)
		}
	}
	sort.Strings(names)
	return names
}

func TestMetricNames(t *testing.T) {
	tests := []struct {
		expr string
		want string
	}{
		{`up`, "up"},
		{`hapair_vrrp_state{instance=~"a|b", host="x"} == 2`, "hapair_vrrp_state"},
		{`count by (cluster, vrid) (hapair_vrrp_state == 2) or count by (cluster, vrid) (hapair_vrrp_state) * 0`, "hapair_vrrp_state"},
		{`histogram_quantile(0.99, sum by (le) (rate(hapair_vrrp_takeover_seconds_bucket[5m])))`, "hapair_vrrp_takeover_seconds_bucket"},
		{`a_total / ignoring (le) b_total offset 5m > bool 1e3`, "a_total,b_total"},
		{`sum without (instance) (rate(x{job="y{z}"}[1m:10s]))`, "x"},
		{`label_replace(m, "dst", "$1", "src", "(.*)")`, "m"},
		{`hapair_x{l="by (foo)"} unless on (a) hapair_y`, "hapair_x,hapair_y"},
	}
	for _, tt := range tests {
		if got := strings.Join(metricNames(tt.expr), ","); got != tt.want {
			t.Errorf("metricNames(%q) = %q, want %q", tt.expr, got, tt.want)
		}
	}
}

// exportedNames returns every series name a fully populated hapair can
// expose (histograms expanded to _bucket, _sum, _count), plus "up".
func exportedNames(t *testing.T) map[string]bool {
	t.Helper()
	m := New(BuildInfo{})
	m.EnableKeepalivedCompat()
	populate(t, m)
	names := map[string]bool{"up": true}
	for name, mf := range gather(t, m) {
		names[name] = true
		if mf.GetType() == dto.MetricType_HISTOGRAM || mf.GetType() == dto.MetricType_SUMMARY {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				names[name+suffix] = true
			}
		}
	}
	return names
}

func TestDashboardStructure(t *testing.T) {
	d := loadDashboard(t)
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d, want a current one (39)", d.SchemaVersion)
	}
	var dsVar bool
	for _, v := range d.Templating.List {
		if v.Type == "datasource" && string(v.Query) == `"prometheus"` {
			dsVar = true
		}
	}
	if !dsVar {
		t.Error("no datasource variable of type prometheus")
	}
	ids := map[int]string{}
	for _, p := range allPanels(d.Panels) {
		if prev, ok := ids[p.ID]; ok {
			t.Errorf("panel id %d used by %q and %q", p.ID, prev, p.Title)
		}
		ids[p.ID] = p.Title
		if p.GridPos.X < 0 || p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H <= 0 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want the ${datasource} variable", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if refs[tg.RefID] {
				t.Errorf("panel %q: refId %s twice", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
		}
	}
	// The panels the issue asks for, by title.
	titles := strings.Join(func() []string {
		var ts []string
		for _, p := range allPanels(d.Panels) {
			ts = append(ts, p.Title)
		}
		return ts
	}(), "|")
	for _, want := range []string{"VRRP state per host", "MASTER now", "State transitions", "Last takeover",
		"Takeover p50", "Takeover p99", "HAProxy", "HAProxy restarts", "HAProxy reloads by result",
		"Check status", "Dropped packets by reason", "split brain"} {
		if !strings.Contains(titles, want) {
			t.Errorf("no panel titled like %q", want)
		}
	}
}

// TestDashboardMetricNames: every expression selects only metrics hapair
// exports (or up), and selects nodes by host, never by Prometheus's instance.
func TestDashboardMetricNames(t *testing.T) {
	exported := exportedNames(t)
	exprs := dashboardExprs(t)
	if len(exprs) < 20 {
		t.Fatalf("only %d expressions found; extraction broken?", len(exprs))
	}
	for _, e := range exprs {
		names := metricNames(e.PromQL())
		if len(names) == 0 {
			t.Errorf("%s: no metric in %q", e.Where, e.Text)
		}
		for _, n := range names {
			if !exported[n] {
				t.Errorf("%s: %q is not a metric hapair exports (in %q)", e.Where, n, e.Text)
			}
		}
	}
}

// deployScrapeConfig returns deploy/prometheus/prometheus.yml with its
// targets replaced by targets (address -> host label), its rule file by the
// repository's, and 1s intervals: the shipped scrape configuration itself,
// honor_labels and relabelling included, is what the test exercises.
func deployScrapeConfig(t *testing.T, targets map[string]string) []byte {
	t.Helper()
	var tgs []promtest.Target
	for addr, host := range targets {
		tgs = append(tgs, promtest.Target{Addr: addr, Labels: map[string]string{"host": host, "cluster": "test"}})
	}
	cfg, err := promtest.AdaptConfig(filepath.Join(deployDir, "prometheus.yml"), tgs,
		[]string{filepath.Join(deployDir, "hapair.rules.yml")}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestDashboardAndRulesOnPrometheus scrapes two populated hapair registries
// (a split brain: both MASTER) with the shipped scrape configuration and
// rules, then runs every dashboard expression through Prometheus.
func TestDashboardAndRulesOnPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Prometheus")
	}
	start := time.Now()
	hosts := map[string]string{}
	for _, host := range []string{"loglb01", "loglb02"} {
		m := New(BuildInfo{Version: "test", Commit: host})
		populate(t, m)
		srv := httptest.NewServer(m.Handler())
		t.Cleanup(srv.Close)
		hosts[strings.TrimPrefix(srv.URL, "http://")] = host
	}
	p := promtest.StartWith(t, promtest.Options{Config: deployScrapeConfig(t, hosts)})
	p.WaitForTargetsUp(t, 2, 20*time.Second)
	// rate() and increase() need two samples in their window.
	p.WaitFor(t, `min(count_over_time(up{job="hapair"}[1m]))`, 20*time.Second, func(v promtest.Vector) bool {
		return len(v) == 1 && v[0].Value >= 2
	})
	t.Logf("two scrapes of both targets after %v", time.Since(start))

	// The label clash resolution, as stored: hapair's instance kept, node in host.
	v, err := p.Query(`hapair_vrrp_state{host="loglb01"}`)
	if err != nil || len(v) != 1 || v[0].Labels["instance"] != "VI_LOGS" || v[0].Labels["cluster"] != "test" || v[0].Labels["exported_instance"] != "" {
		t.Errorf("hapair_vrrp_state{host=loglb01} = %v, %v; want instance=VI_LOGS, cluster=test, no exported_instance", v, err)
	}
	v, err = p.Query(`up{host="loglb02"}`)
	if err != nil || len(v) != 1 || !strings.HasPrefix(v[0].Labels["instance"], "127.0.0.1:") {
		t.Errorf("up{host=loglb02} = %v, %v; want Prometheus's instance=address", v, err)
	}

	for _, e := range dashboardExprs(t) {
		q := e.PromQL()
		res, err := p.Query(q)
		if err != nil {
			t.Errorf("%s: Prometheus refused %q: %v", e.Where, q, err)
			continue
		}
		// Annotations select events (> 0), which a steady test pair lacks.
		if e.Kind != promtest.AnnotationQuery && len(res) == 0 {
			t.Errorf("%s: %q returned no series from a running pair", e.Where, q)
		}
		if e.Kind == promtest.VariableQuery && e.Label != "" {
			for _, s := range res {
				if s.Labels[e.Label] == "" {
					t.Errorf("%s: a series without label %s: %v", e.Where, e.Label, s.Labels)
				}
			}
		}
	}
	// The variables list the hosts and the VRRP instance.
	for expr, want := range map[string]string{
		`count by (host) (hapair_vrrp_state)`:     "loglb01,loglb02",
		`count by (instance) (hapair_vrrp_state)`: "VI_LOGS",
	} {
		res, err := p.Query(expr)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range res {
			for _, l := range []string{"host", "instance"} {
				if s.Labels[l] != "" {
					got = append(got, s.Labels[l])
				}
			}
		}
		sort.Strings(got)
		if strings.Join(got, ",") != want {
			t.Errorf("%s = %v, want %s", expr, got, want)
		}
	}

	// Every rule evaluates without error on real hapair series, and the split
	// brain of the two MASTERs is detected.
	for _, r := range p.WaitForRulesEvaluated(t, 20*time.Second) {
		if r.Health != "ok" {
			t.Errorf("rule %s: health %s: %s", r.Name, r.Health, r.LastError)
		}
	}
	a := waitForAlertActive(t, p, "HapairSplitBrain", 20*time.Second)
	if a.Labels["cluster"] != "test" || a.Labels["vrid"] != "51" || a.Labels["instance"] != "VI_LOGS" {
		t.Errorf("HapairSplitBrain labels = %v", a.Labels)
	}
	t.Logf("done after %v", time.Since(start))
}

// waitForAlertActive waits for name to be pending or firing.
func waitForAlertActive(t *testing.T, p *promtest.Prometheus, name string, timeout time.Duration) promtest.Alert {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		as, err := p.Alerts()
		for _, a := range as {
			if a.Labels["alertname"] == name {
				return a
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("alert %s never active: %v, %v", name, as, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
