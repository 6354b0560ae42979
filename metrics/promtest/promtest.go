// Package promtest runs a real Prometheus server (Debian's
// /usr/bin/prometheus) for tests: it scrapes the given targets every second,
// loads rule files, and answers PromQL through its HTTP API. The dashboard and
// alert-rule tests of package metrics use it, and so can end-to-end tests.
//
// It is a test-support package: it takes a testing.TB and skips when the
// binary is missing, unless the CI environment variable is set, then it fails.
package promtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Default binaries, as Debian's prometheus package installs them.
const (
	PrometheusBinary = "/usr/bin/prometheus"
	PromtoolBinary   = "/usr/bin/promtool"
)

// Job is the job name of the generated scrape configuration, the one the
// alert rules in deploy/prometheus expect.
const Job = "hapair"

// Require returns the path of binary, or skips the test when it is missing;
// with CI set in the environment a missing binary fails the test instead.
func Require(t testing.TB, binary string) string {
	t.Helper()
	if _, err := os.Stat(binary); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required in CI: %v", binary, err)
		}
		t.Skipf("%s not available: %v", binary, err)
	}
	return binary
}

// Options configure Start.
type Options struct {
	// Targets are host:port addresses scraped as job "hapair" at /metrics.
	Targets []string
	// TargetLabels are added to every target (e.g. cluster, host).
	TargetLabels map[string]string
	// RuleFiles are loaded and evaluated every ScrapeInterval.
	RuleFiles []string
	// ScrapeInterval is also the rule evaluation interval; default 1s.
	ScrapeInterval time.Duration
	// Config, when set, is the whole prometheus.yml, used as is instead of
	// the generated one (Targets, TargetLabels, RuleFiles and ScrapeInterval
	// are then ignored; paths in it must be absolute).
	Config []byte
	// Wrapper prefixes the command line, e.g. {"ip", "netns", "exec", "ns1"}
	// to run Prometheus inside a lab namespace.
	Wrapper []string
	// DialContext, when set, dials the connections to Prometheus's HTTP API.
	// A Prometheus run in another network namespace (see Wrapper) listens
	// on that namespace's 127.0.0.1, which only a dialer inside it reaches,
	// such as lab.Host.DialContext.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// Binary is the prometheus binary; default PrometheusBinary.
	Binary string
}

// Prometheus is a running server, stopped by the test's cleanup.
type Prometheus struct {
	// URL is the base URL of the HTTP API, e.g. http://127.0.0.1:40123.
	URL string
	// Dir holds the configuration, the TSDB and the server's log.
	Dir string

	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
	client  *http.Client
}

// Start runs Prometheus scraping scrapeTargets (host:port) every second with
// rulesFiles loaded, and waits until it is ready.
func Start(t testing.TB, scrapeTargets []string, rulesFiles ...string) *Prometheus {
	t.Helper()
	return StartWith(t, Options{Targets: scrapeTargets, RuleFiles: rulesFiles})
}

// StartWith is Start with every option.
func StartWith(t testing.TB, opts Options) *Prometheus {
	t.Helper()
	if opts.Binary == "" {
		opts.Binary = PrometheusBinary
	}
	Require(t, opts.Binary)
	if opts.ScrapeInterval <= 0 {
		opts.ScrapeInterval = time.Second
	}
	dir := t.TempDir()
	cfg := opts.Config
	if cfg == nil {
		var err error
		if cfg, err = GenerateConfig(opts); err != nil {
			t.Fatalf("prometheus config: %v", err)
		}
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		t.Fatalf("write prometheus config: %v", err)
	}

	// The port is chosen by closing a listener on port 0 and handing the
	// number over; another process can take it in between, so retry.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		p, err := launch(opts, dir, cfgPath, attempt)
		if err == nil {
			t.Cleanup(p.stop)
			return p
		}
		lastErr = err
	}
	t.Fatalf("start prometheus: %v", lastErr)
	return nil
}

// GenerateConfig returns the prometheus.yml Start uses: job "hapair" with
// honor_labels and the host label taken from the target address, as in
// deploy/prometheus/prometheus.yml.
func GenerateConfig(opts Options) ([]byte, error) {
	interval := opts.ScrapeInterval
	if interval <= 0 {
		interval = time.Second
	}
	// JSON is valid YAML, so the config is built as JSON: no quoting bugs.
	type staticConfig struct {
		Targets []string          `json:"targets"`
		Labels  map[string]string `json:"labels,omitempty"`
	}
	type relabel struct {
		SourceLabels []string `json:"source_labels"`
		Separator    string   `json:"separator"`
		Regex        string   `json:"regex"`
		TargetLabel  string   `json:"target_label"`
		Replacement  string   `json:"replacement"`
	}
	targets := opts.Targets
	if targets == nil {
		targets = []string{}
	}
	rules := make([]string, 0, len(opts.RuleFiles))
	for _, f := range opts.RuleFiles {
		abs, err := filepath.Abs(f)
		if err != nil {
			return nil, fmt.Errorf("rule file %s: %w", f, err)
		}
		rules = append(rules, abs)
	}
	cfg := map[string]any{
		"global": map[string]any{
			"scrape_interval":     interval.String(),
			"scrape_timeout":      interval.String(),
			"evaluation_interval": interval.String(),
		},
		"rule_files": rules,
		"scrape_configs": []any{map[string]any{
			"job_name":       Job,
			"honor_labels":   true,
			"metrics_path":   "/metrics",
			"static_configs": []staticConfig{{Targets: targets, Labels: opts.TargetLabels}},
			"relabel_configs": []relabel{{
				// host = the address without its port, unless set already.
				SourceLabels: []string{"host", "__address__"},
				Separator:    ";",
				Regex:        `;\[?([^\]]+?)\]?(?::\d+)?`,
				TargetLabel:  "host",
				Replacement:  "$1",
			}},
		}},
	}
	return json.MarshalIndent(cfg, "", "  ")
}

func launch(opts Options, dir, cfgPath string, attempt int) (*Prometheus, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	logPath := filepath.Join(dir, fmt.Sprintf("prometheus-%d.log", attempt))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create log: %w", err)
	}
	defer logFile.Close()

	args := append(append([]string{}, opts.Wrapper...), opts.Binary,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("exec %s: %w", args[0], err)
	}
	p := &Prometheus{
		URL:     "http://" + addr,
		Dir:     dir,
		cmd:     cmd,
		exited:  make(chan struct{}),
		logPath: logPath,
		client:  newClient(opts.DialContext),
	}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	if err := p.waitReady(30 * time.Second); err != nil {
		p.stop()
		return nil, fmt.Errorf("%w\n%s", err, p.Log())
	}
	return p, nil
}

func newClient(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Client {
	c := &http.Client{Timeout: 10 * time.Second}
	if dial != nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.DialContext = dial
		t.Proxy = nil // the address is only meaningful inside the namespace
		c.Transport = t
	}
	return c
}

// freePort returns a port free on this namespace's loopback. With a Wrapper
// that enters a fresh network namespace every port is free there anyway.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (p *Prometheus) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("prometheus exited before ready: %v", p.cmd.ProcessState)
		default:
		}
		resp, err := p.client.Get(p.URL + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("prometheus not ready after %v (last: %v)", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the server: SIGTERM, then SIGKILL after a grace period.
func (p *Prometheus) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// Log returns the server's log so far (its last 8 KiB), for failure messages.
func (p *Prometheus) Log() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if len(b) > 8<<10 {
		b = b[len(b)-8<<10:]
	}
	return string(b)
}

// Sample is one element of an instant vector.
type Sample struct {
	Labels map[string]string
	Value  float64
	Time   time.Time
}

// Vector is an instant query result; a scalar result is one sample without
// labels.
type Vector []Sample

// Error is an error answer of the Prometheus API (a PromQL syntax error is
// ErrorType "bad_data").
type Error struct {
	ErrorType string
	Message   string
}

func (e *Error) Error() string { return e.ErrorType + ": " + e.Message }

type apiResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
}

// api calls path with form values and returns the data of a success answer.
func (p *Prometheus) api(path string, form url.Values) (json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var body io.Reader
	method := http.MethodGet
	if form != nil {
		method = http.MethodPost
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, p.URL+path, body)
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: %w", path, err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: read: %w", path, err)
	}
	var r apiResponse
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("prometheus %s: %s: decode %.200q: %w", path, resp.Status, b, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("prometheus %s: %w", path, &Error{ErrorType: r.ErrorType, Message: r.Error})
	}
	return r.Data, nil
}

// Query evaluates expr now. Prometheus must accept it (status success); a
// range vector result is an error, since the callers want instant values.
func (p *Prometheus) Query(expr string) (Vector, error) {
	data, err := p.api("/api/v1/query", url.Values{"query": {expr}})
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", expr, err)
	}
	var d struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("query %q: decode: %w", expr, err)
	}
	switch d.ResultType {
	case "vector":
		var rs []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(d.Result, &rs); err != nil {
			return nil, fmt.Errorf("query %q: decode vector: %w", expr, err)
		}
		v := make(Vector, 0, len(rs))
		for _, r := range rs {
			s, err := sample(r.Value)
			if err != nil {
				return nil, fmt.Errorf("query %q: %w", expr, err)
			}
			s.Labels = r.Metric
			v = append(v, s)
		}
		return v, nil
	case "scalar":
		var r [2]any
		if err := json.Unmarshal(d.Result, &r); err != nil {
			return nil, fmt.Errorf("query %q: decode scalar: %w", expr, err)
		}
		s, err := sample(r)
		if err != nil {
			return nil, fmt.Errorf("query %q: %w", expr, err)
		}
		return Vector{s}, nil
	default:
		return nil, fmt.Errorf("query %q: result type %s, want vector or scalar", expr, d.ResultType)
	}
}

// Series is one element of a range vector: a series' raw samples.
type Series struct {
	Labels  map[string]string
	Samples []Sample
}

// QueryRange evaluates expr now; it must be a range vector (a selector
// with a range, or a subquery), whose raw samples are returned, so that a
// test can see what each scrape or rule evaluation recorded and when.
func (p *Prometheus) QueryRange(expr string) ([]Series, error) {
	data, err := p.api("/api/v1/query", url.Values{"query": {expr}})
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", expr, err)
	}
	var d struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Values [][2]any          `json:"values"`
		} `json:"result"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("query %q: decode: %w", expr, err)
	}
	if d.ResultType != "matrix" {
		return nil, fmt.Errorf("query %q: result type %s, want matrix", expr, d.ResultType)
	}
	out := make([]Series, 0, len(d.Result))
	for _, r := range d.Result {
		sr := Series{Labels: r.Metric, Samples: make([]Sample, 0, len(r.Values))}
		for _, v := range r.Values {
			s, err := sample(v)
			if err != nil {
				return nil, fmt.Errorf("query %q: %w", expr, err)
			}
			sr.Samples = append(sr.Samples, s)
		}
		out = append(out, sr)
	}
	return out, nil
}

func sample(v [2]any) (Sample, error) {
	ts, ok1 := v[0].(float64)
	vs, ok2 := v[1].(string)
	if !ok1 || !ok2 {
		return Sample{}, fmt.Errorf("malformed sample %v", v)
	}
	f, err := strconv.ParseFloat(vs, 64)
	if err != nil {
		return Sample{}, fmt.Errorf("sample value %q: %w", vs, err)
	}
	sec := int64(ts)
	return Sample{Value: f, Time: time.Unix(sec, int64((ts-float64(sec))*1e9))}, nil
}

// WaitFor polls expr until cond holds for its result, and returns that
// result; it fails the test after timeout with the last result or error.
func (p *Prometheus) WaitFor(t testing.TB, expr string, timeout time.Duration, cond func(Vector) bool) Vector {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		v, err := p.Query(expr)
		if err == nil && cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %q: last result %v, error %v", timeout, expr, v, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// WaitForSeries waits until expr returns at least one sample.
func (p *Prometheus) WaitForSeries(t testing.TB, expr string, timeout time.Duration) Vector {
	t.Helper()
	return p.WaitFor(t, expr, timeout, func(v Vector) bool { return len(v) > 0 })
}

// WaitForValue waits until expr returns exactly one sample equal to want.
func (p *Prometheus) WaitForValue(t testing.TB, expr string, want float64, timeout time.Duration) {
	t.Helper()
	p.WaitFor(t, expr, timeout, func(v Vector) bool { return len(v) == 1 && v[0].Value == want })
}

// WaitForTargetsUp waits until n targets of job "hapair" have been scraped
// successfully.
func (p *Prometheus) WaitForTargetsUp(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	p.WaitFor(t, `up{job="`+Job+`"} == 1`, timeout, func(v Vector) bool { return len(v) >= n })
}

// Alert is an active alert (pending or firing).
type Alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
	ActiveAt    time.Time         `json:"activeAt"`
	Value       string            `json:"value"`
}

// Alerts returns the active alerts.
func (p *Prometheus) Alerts() ([]Alert, error) {
	data, err := p.api("/api/v1/alerts", nil)
	if err != nil {
		return nil, err
	}
	var d struct {
		Alerts []Alert `json:"alerts"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("decode alerts: %w", err)
	}
	return d.Alerts, nil
}

// WaitForAlert waits until an alert named name is in state ("pending" or
// "firing") and returns it.
func (p *Prometheus) WaitForAlert(t testing.TB, name, state string, timeout time.Duration) Alert {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		as, err := p.Alerts()
		for _, a := range as {
			if a.Labels["alertname"] == name && a.State == state {
				return a
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for alert %s %s: active %v, error %v", timeout, name, state, as, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Rule is a loaded recording or alerting rule with its evaluation health.
type Rule struct {
	Name      string `json:"name"`
	Type      string `json:"type"`   // "alerting" or "recording"
	Health    string `json:"health"` // "ok", "err" or "unknown" before the first evaluation
	LastError string `json:"lastError"`
	Query     string `json:"query"`
	State     string `json:"state"` // alerting: inactive, pending, firing
}

// Rules returns every loaded rule.
func (p *Prometheus) Rules() ([]Rule, error) {
	data, err := p.api("/api/v1/rules", nil)
	if err != nil {
		return nil, err
	}
	var d struct {
		Groups []struct {
			Rules []Rule `json:"rules"`
		} `json:"groups"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return nil, fmt.Errorf("decode rules: %w", err)
	}
	var out []Rule
	for _, g := range d.Groups {
		out = append(out, g.Rules...)
	}
	return out, nil
}

// ErrNoRules is returned by WaitForRulesEvaluated when nothing is loaded.
var ErrNoRules = errors.New("no rules loaded")

// WaitForRulesEvaluated waits until every loaded rule has been evaluated
// at least once and returns them; rules failing evaluation have Health "err".
func (p *Prometheus) WaitForRulesEvaluated(t testing.TB, timeout time.Duration) []Rule {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		rs, err := p.Rules()
		if err == nil && len(rs) == 0 {
			err = ErrNoRules
		}
		if err == nil {
			done := true
			for _, r := range rs {
				if r.Health == "unknown" || r.Health == "" {
					done = false
				}
			}
			if done {
				return rs
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for rules to be evaluated: %v, error %v", timeout, rs, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Promtool runs promtool with args (and stdin, when not nil) and returns its
// combined output; the error carries the output too.
func Promtool(t testing.TB, stdin []byte, args ...string) (string, error) {
	t.Helper()
	bin := Require(t, PromtoolBinary)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("promtool %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}
