package promtest

import (
	"context"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The files shipped in deploy/, which the e2e tests feed to Prometheus.
var (
	dashboardFile = filepath.Join("..", "..", "deploy", "grafana", "hapair-failover.json")
	rulesFile     = filepath.Join("..", "..", "deploy", "prometheus", "hapair.rules.yml")
	scrapeFile    = filepath.Join("..", "..", "deploy", "prometheus", "prometheus.yml")
)

func TestToPromQL(t *testing.T) {
	tests := []struct{ in, want string }{
		{`up`, `up`},
		{`label_values(hapair_vrrp_state, cluster)`, `hapair_vrrp_state`},
		{`label_values(hapair_vrrp_state{cluster=~"$cluster"}, host)`, `hapair_vrrp_state{cluster=~".*"}`},
		{`rate(x{host=~"${host}"}[$__rate_interval])`, `rate(x{host=~".*"}[1m])`},
		{`increase(x[${__range}]) / $__interval`, `increase(x[5m]) / 15s`},
		{`x{a=~"[[old]]"}`, `x{a=~".*"}`},
		{`sum(x{a=~"$a", b=~"$b_c"}) by (a)`, `sum(x{a=~".*", b=~".*"}) by (a)`},
	}
	for _, tt := range tests {
		if got := ToPromQL(tt.in); got != tt.want {
			t.Errorf("ToPromQL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDashboardExprsForms(t *testing.T) {
	dash := `{
	  "templating": {"list": [
	    {"type": "datasource", "name": "datasource", "query": "prometheus"},
	    {"type": "query", "name": "old", "query": "label_values(m, host)"},
	    {"type": "query", "name": "new", "query": {"qryType": 1, "query": "label_values(m{host=~\"$old\"}, instance)"}},
	    {"type": "custom", "name": "c", "query": "a,b"}
	  ]},
	  "annotations": {"list": [{"name": "builtin"}, {"name": "Became MASTER", "expr": "increase(t[1m]) > 0"}]},
	  "panels": [
	    {"title": "top", "targets": [{"refId": "A", "expr": "m"}, {"refId": "B", "expr": "n"}]},
	    {"title": "row", "type": "row", "panels": [{"title": "inner", "targets": [{"refId": "A", "expr": "o"}]}]}
	  ]
	}`
	path := filepath.Join(t.TempDir(), "d.json")
	if err := os.WriteFile(path, []byte(dash), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := DashboardExprs(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []Expr{
		{Kind: VariableQuery, Where: "variable old", Text: "label_values(m, host)", Label: "host"},
		{Kind: VariableQuery, Where: "variable new", Text: `label_values(m{host=~"$old"}, instance)`, Label: "instance"},
		{Kind: AnnotationQuery, Where: "annotation Became MASTER", Text: "increase(t[1m]) > 0"},
		{Kind: PanelQuery, Where: `panel "top" A`, Text: "m"},
		{Kind: PanelQuery, Where: `panel "top" B`, Text: "n"},
		{Kind: PanelQuery, Where: `panel "inner" A`, Text: "o"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d expressions %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("expression %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if q := got[1].PromQL(); q != `m{host=~".*"}` {
		t.Errorf("PromQL() of the variable = %q", q)
	}

	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"templating": {"list": [{"type": "query", "name": "v", "query": 3}]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := DashboardExprs(bad); err == nil || !strings.Contains(err.Error(), "variable v") {
		t.Errorf("numeric variable query: error %v, want one naming the variable", err)
	}
}

func TestRuleExprs(t *testing.T) {
	rules := `groups:
  - name: a
    rules:
      - alert: A1
        expr: up == 0
      - record: job:up:sum
        expr: |
          sum by (job) (up)
  - name: b
    rules:
      - alert: Dollar
        expr: x{a=~"b$"} > 0
`
	path := filepath.Join(t.TempDir(), "r.yml")
	if err := os.WriteFile(path, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := RuleExprs(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		kind  ExprKind
		where string
		text  string
	}{
		{AlertRule, "alert A1 (" + path + ":5)", "up == 0"},
		{RecordingRule, "record job:up:sum (" + path + ":7)", "sum by (job) (up)\n"},
		{AlertRule, "alert Dollar (" + path + ":12)", `x{a=~"b$"} > 0`},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i, w := range want {
		if got[i].Kind != w.kind || got[i].Where != w.where || got[i].Text != w.text {
			t.Errorf("rule %d = %+v, want %v %q %q", i, got[i], w.kind, w.where, w.text)
		}
	}
	// A rule expression is evaluated as written: "$" is no Grafana variable.
	if q := got[2].PromQL(); q != got[2].Text {
		t.Errorf("PromQL() of a rule = %q, want it unchanged", q)
	}

	noExpr := filepath.Join(t.TempDir(), "n.yml")
	if err := os.WriteFile(noExpr, []byte("groups:\n  - name: a\n    rules:\n      - alert: X\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := RuleExprs(noExpr); err == nil || !strings.Contains(err.Error(), "rule X") {
		t.Errorf("rule without expr: error %v", err)
	}
}

// TestShippedFilesExtract: the shipped dashboard and rules yield every
// expression, so that no e2e test passes by finding none.
func TestShippedFilesExtract(t *testing.T) {
	d, err := DashboardExprs(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[ExprKind]int{}
	for _, e := range d {
		kinds[e.Kind]++
		if strings.Contains(e.PromQL(), "$") {
			t.Errorf("%s: variable left in %q", e.Where, e.PromQL())
		}
	}
	if kinds[PanelQuery] < 20 || kinds[VariableQuery] < 3 || kinds[AnnotationQuery] < 1 {
		t.Errorf("dashboard expressions by kind %v: extraction broken?", kinds)
	}
	r, err := RuleExprs(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(r) < 12 {
		t.Errorf("only %d rules in %s", len(r), rulesFile)
	}
}

func TestAdaptConfig(t *testing.T) {
	targets := []Target{
		{Addr: "10.0.0.11:9479", Labels: map[string]string{"host": "lb1", "cluster": "e2e"}},
		{Addr: "10.0.0.12:9479"},
	}
	cfg, err := AdaptConfig(scrapeFile, targets, []string{rulesFile}, 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Global        map[string]string `yaml:"global"`
		RuleFiles     []string          `yaml:"rule_files"`
		ScrapeConfigs []struct {
			HonorLabels    bool             `yaml:"honor_labels"`
			ScrapeInterval string           `yaml:"scrape_interval"`
			Relabel        []map[string]any `yaml:"relabel_configs"`
			Static         []adaptedStatic  `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	if err := yaml.Unmarshal(cfg, &got); err != nil {
		t.Fatal(err)
	}
	if got.Global["evaluation_interval"] != "500ms" || len(got.RuleFiles) != 1 || !filepath.IsAbs(got.RuleFiles[0]) {
		t.Errorf("global %v rule_files %v", got.Global, got.RuleFiles)
	}
	if len(got.ScrapeConfigs) != 1 {
		t.Fatalf("scrape configs: %+v", got.ScrapeConfigs)
	}
	sc := got.ScrapeConfigs[0]
	if !sc.HonorLabels || sc.ScrapeInterval != "500ms" || len(sc.Relabel) == 0 || len(sc.Static) != 2 ||
		sc.Static[0].Targets[0] != "10.0.0.11:9479" || sc.Static[0].Labels["host"] != "lb1" || sc.Static[1].Labels != nil {
		t.Errorf("adapted job: %+v", sc)
	}

	path := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := Promtool(t, nil, "check", "config", path); err != nil {
		t.Fatal(err)
	} else if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool check config: %s", out)
	}

	other := filepath.Join(t.TempDir(), "other.yml")
	if err := os.WriteFile(other, []byte("scrape_configs:\n  - job_name: node\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := AdaptConfig(other, targets, nil, 0); err == nil {
		t.Error("a job other than hapair without honor_labels: want an error")
	}
}

type adaptedStatic struct {
	Targets []string          `yaml:"targets"`
	Labels  map[string]string `yaml:"labels"`
}

// TestDialContext: every API call goes through Options.DialContext, as it
// must for a Prometheus in another network namespace.
func TestDialContext(t *testing.T) {
	srv := httptest.NewServer(nil) // a target that answers 404: scraped, down
	defer srv.Close()
	var dials atomic.Int64
	var d net.Dialer
	p := StartWith(t, Options{
		Targets: []string{strings.TrimPrefix(srv.URL, "http://")},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			dials.Add(1)
			return d.DialContext(ctx, network, addr)
		},
	})
	if dials.Load() == 0 {
		t.Fatal("readiness was polled without the dialer")
	}
	p.WaitFor(t, `up{job="hapair"}`, 10*time.Second, func(v Vector) bool { return len(v) == 1 })
	before := dials.Load()
	p.client.CloseIdleConnections()
	if _, err := p.Query("up"); err != nil {
		t.Fatal(err)
	}
	if dials.Load() == before {
		t.Error("a query after closing idle connections did not dial through DialContext")
	}
}
