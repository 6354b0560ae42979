package promtest

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// ExprKind says where a PromQL expression comes from, and so what a test
// may expect of its result.
type ExprKind int

const (
	// PanelQuery is a dashboard panel's target: it returns series whenever
	// the pair runs.
	PanelQuery ExprKind = iota
	// VariableQuery is a dashboard templating query, e.g. label_values().
	VariableQuery
	// AnnotationQuery selects events (`... > 0`), so a steady pair may
	// legitimately return nothing.
	AnnotationQuery
	// AlertRule is the expr of an alerting rule.
	AlertRule
	// RecordingRule is the expr of a recording rule.
	RecordingRule
)

func (k ExprKind) String() string {
	switch k {
	case PanelQuery:
		return "panel"
	case VariableQuery:
		return "variable"
	case AnnotationQuery:
		return "annotation"
	case AlertRule:
		return "alert"
	case RecordingRule:
		return "record"
	}
	return fmt.Sprintf("ExprKind(%d)", int(k))
}

// Expr is one PromQL expression of a Grafana dashboard or a rule file.
type Expr struct {
	Kind ExprKind
	// Where names it for messages: panel title and refId, variable or
	// annotation name, rule name with file and line.
	Where string
	// Text is the expression as written, Grafana variables included.
	Text string
	// Label is, for a label_values() variable query, the label it lists.
	Label string
}

// PromQL is Text as Prometheus evaluates it: dashboard queries through
// ToPromQL, rule expressions as they are.
func (e Expr) PromQL() string {
	if e.Kind == AlertRule || e.Kind == RecordingRule {
		return e.Text
	}
	return ToPromQL(e.Text)
}

// Dashboard is the part of a Grafana dashboard's JSON model that the tests
// read: its queries (templating, annotations, panel targets) and the panel
// layout.
type Dashboard struct {
	SchemaVersion int `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Type       string          `json:"type"`
			Name       string          `json:"name"`
			Query      json.RawMessage `json:"query"`
			Datasource json.RawMessage `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []struct {
			Name string `json:"name"`
			Expr string `json:"expr"`
		} `json:"list"`
	} `json:"annotations"`
	Panels []Panel `json:"panels"`
}

// Panel is one panel of a Dashboard; a collapsed row holds its own Panels.
type Panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ X, Y, W, H int } `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []Panel `json:"panels"` // inside collapsed rows
}

// LoadDashboard reads and parses the Grafana dashboard at path.
func LoadDashboard(path string) (Dashboard, error) {
	var d Dashboard
	b, err := os.ReadFile(path)
	if err != nil {
		return d, fmt.Errorf("read dashboard: %w", err)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("parse dashboard %s: %w", path, err)
	}
	return d, nil
}

// DashboardExprs returns every PromQL expression of the Grafana dashboard
// at path: templating queries (string or the newer object form), annotation
// queries and panel targets, nested rows included, in that order.
func DashboardExprs(path string) ([]Expr, error) {
	d, err := LoadDashboard(path)
	if err != nil {
		return nil, err
	}
	var out []Expr
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q string
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var obj struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &obj); err != nil {
				return nil, fmt.Errorf("dashboard %s: variable %s: query neither string nor object: %s", path, v.Name, v.Query)
			}
			q = obj.Query
		}
		e := Expr{Kind: VariableQuery, Where: "variable " + v.Name, Text: q}
		if m := labelValuesRe.FindStringSubmatch(q); m != nil {
			e.Label = m[2]
		}
		out = append(out, e)
	}
	for _, a := range d.Annotations.List {
		if a.Expr != "" {
			out = append(out, Expr{Kind: AnnotationQuery, Where: "annotation " + a.Name, Text: a.Expr})
		}
	}
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				out = append(out, Expr{Kind: PanelQuery, Where: fmt.Sprintf("panel %q %s", p.Title, tg.RefID), Text: tg.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out, nil
}

// RuleExprs returns the expr of every alerting and recording rule of the
// Prometheus rule file at path.
func RuleExprs(path string) ([]Expr, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read rules: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("parse rules %s: %w", path, err)
	}
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert string    `yaml:"alert"`
				Rec   string    `yaml:"record"`
				Expr  yaml.Node `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := doc.Decode(&f); err != nil {
		return nil, fmt.Errorf("parse rules %s: %w", path, err)
	}
	var out []Expr
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			e := Expr{Kind: AlertRule, Text: r.Expr.Value}
			name := r.Alert
			if r.Rec != "" {
				e.Kind, name = RecordingRule, r.Rec
			}
			if r.Expr.Kind != yaml.ScalarNode || strings.TrimSpace(e.Text) == "" {
				return nil, fmt.Errorf("%s:%d: rule %s: expr is not a non-empty string", path, r.Expr.Line, name)
			}
			e.Where = fmt.Sprintf("%s %s (%s:%d)", e.Kind, name, path, r.Expr.Line)
			out = append(out, e)
		}
	}
	return out, nil
}

var (
	labelValuesRe = regexp.MustCompile(`^\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)
	grafanaVarRe  = regexp.MustCompile(`\$\{[a-zA-Z0-9_:]+\}|\$[a-zA-Z0-9_]+|\[\[[a-zA-Z0-9_]+\]\]`)
)

// ToPromQL turns a Grafana query into what Prometheus evaluates: the series
// selector of label_values(), Grafana's interval variables as durations, and
// every other variable as the "All" value ".*" (used only inside =~). Rule
// expressions, which have no variables, pass unchanged.
func ToPromQL(q string) string {
	if m := labelValuesRe.FindStringSubmatch(q); m != nil {
		q = m[1]
	}
	q = strings.NewReplacer("$__rate_interval", "1m", "${__rate_interval}", "1m",
		"$__interval", "15s", "${__interval}", "15s", "$__range", "5m", "${__range}", "5m").Replace(q)
	return grafanaVarRe.ReplaceAllString(q, ".*")
}
