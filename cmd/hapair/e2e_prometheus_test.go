package main

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hapair/hapair/cmd/internal/lab"
	"github.com/hapair/hapair/cmd/internal/lab/labtest"
	"github.com/hapair/hapair/metrics/promtest"
)

// The monitoring files shipped in deploy/, as an operator installs them.
var (
	deployScrapeConfig = filepath.Join("..", "..", "deploy", "prometheus", "prometheus.yml")
	deployRules        = filepath.Join("..", "..", "deploy", "prometheus", "hapair.rules.yml")
	deployDashboard    = filepath.Join("..", "..", "deploy", "grafana", "hapair-failover.json")
)

const (
	// monScrape is the scrape and rule evaluation interval of the test's
	// Prometheus: short, so that a MASTER period of a few seconds is seen.
	monScrape = 500 * time.Millisecond
	// monListen is the status listener of hapair hosts that the monitor
	// scrapes: every address, so that it is reachable over the lab switch.
	monListen  = "0.0.0.0:9479"
	monPort    = 9479
	monCluster = "e2e"
)

// monitor is Debian's Prometheus in a lab host of its own, scraping hapair
// hosts over the lab switch with the shipped scrape configuration and rules,
// as a Prometheus server on the operator's network would.
type monitor struct {
	*promtest.Prometheus
	host *lab.Host
}

// startMonitor adds host "mon" to l and starts Prometheus in it, scraping
// targets (host label = lab host name, cluster = monCluster).
func startMonitor(t *testing.T, l *lab.Lab, targets ...*lab.Host) *monitor {
	t.Helper()
	mon := labtest.AddHost(t, l, "mon", l.Addr(60))
	var tgs []promtest.Target
	for _, h := range targets {
		tgs = append(tgs, promtest.Target{
			Addr:   netip.AddrPortFrom(h.IP(), monPort).String(),
			Labels: map[string]string{"host": h.Name, "cluster": monCluster},
		})
	}
	cfg, err := promtest.AdaptConfig(deployScrapeConfig, tgs, []string{deployRules}, monScrape)
	if err != nil {
		t.Fatal(err)
	}
	p := promtest.StartWith(t, promtest.Options{
		Config:  cfg,
		Wrapper: []string{"ip", "netns", "exec", mon.NS},
		// Prometheus listens on mon's loopback, which only mon reaches.
		DialContext: mon.DialContext,
	})
	return &monitor{Prometheus: p, host: mon}
}

// scrape fetches h's /metrics from the monitor host, as Prometheus does.
func (m *monitor) scrape(t testing.TB, h *lab.Host) string {
	t.Helper()
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: m.host.DialContext}}
	resp, err := client.Get("http://" + netip.AddrPortFrom(h.IP(), monPort).String() + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s from %s: %v", h.Name, m.host.Name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s: %v", h.Name, resp.Status, err)
	}
	return string(b)
}

// value evaluates expr, which must return one sample, and returns its value.
func (m *monitor) value(t testing.TB, expr string) float64 {
	t.Helper()
	v, err := m.Query(expr)
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 1 {
		t.Fatalf("%s = %v, want one sample", expr, v)
	}
	return v[0].Value
}

// atLeast is a WaitFor condition: one sample, at least min.
func atLeast(min float64) func(promtest.Vector) bool {
	return func(v promtest.Vector) bool { return len(v) == 1 && v[0].Value >= min }
}

// findExpr returns the dashboard expression whose Where starts with where.
func findExpr(t testing.TB, exprs []promtest.Expr, where string) promtest.Expr {
	t.Helper()
	for _, e := range exprs {
		if strings.HasPrefix(e.Where, where) {
			return e
		}
	}
	t.Fatalf("the dashboard has no %s", where)
	return promtest.Expr{}
}

// byHost maps each sample's host label to its value (summed, if repeated).
func byHost(v promtest.Vector) map[string]float64 {
	out := map[string]float64{}
	for _, s := range v {
		out[s.Labels["host"]] += s.Value
	}
	return out
}

// vrrpLines returns the hapair_vrrp_* sample lines of an exposition, less
// histogram buckets (their _sum and _count stay).
func vrrpLines(exposition string) []string {
	var out []string
	for _, l := range strings.Split(exposition, "\n") {
		if strings.HasPrefix(l, "hapair_vrrp_") && !strings.Contains(l, "_bucket{") {
			out = append(out, l)
		}
	}
	return out
}

// TestPrometheusSeesHAProxyFailover: the shipped scrape configuration, rules
// and dashboard on a real Prometheus in a third lab host, scraping the two
// hapair hosts over the lab switch while HAProxy is SIGKILLed on the MASTER.
// Every dashboard and rule expression must be accepted, and the key ones must
// show what happened: lb2 took over (transition, takeover observation), lb1
// restarted HAProxy, and once the pair settles exactly one MASTER remains.
func TestPrometheusSeesHAProxyFailover(t *testing.T) {
	promtest.Require(t, promtest.PrometheusBinary)
	promtest.Require(t, promtest.PromtoolBinary)
	began := time.Now()
	// A BGP section with a peer nobody answers gives the BGP panels their series: the prefix
	// follows the haproxy check into the speaker's announced routes whether or not a session is up, so killing
	// HAProxy withdraws it and records the withdraw delay (a router is TestBGP's business).
	p := startHAProxyPair(t, func(n *labNode) {
		n.Listen = monListen
		n.Extra = "bgp:\n  local_asn: 65010\n  drain_time: 0s\n  peers:\n    - {address: 10.0.0.1, asn: 65000, hold_time: 3s}\n" +
			"  announce:\n    - {prefix: 10.77.9.10/32, checks: [haproxy]}\n"
	})
	mon := startMonitor(t, p.lab, p.lb1, p.lb2)
	mon.WaitForTargetsUp(t, 2, 20*time.Second)
	mon.WaitForValue(t, `hapair_vrrp_state{host="lb1"}`, 2, 10*time.Second)
	mon.WaitForValue(t, `hapair_vrrp_state{host="lb2"}`, 1, 10*time.Second)
	// increase() needs two samples of the steady pair to count from.
	mon.WaitFor(t, `min(count_over_time(up{job="hapair"}[1m]))`, 10*time.Second, atLeast(2))
	ready := time.Now()
	t.Logf("pair and Prometheus ready, both targets scraped twice, after %s", ready.Sub(began).Round(time.Millisecond))

	const (
		lb2ToMaster   = `sum(hapair_vrrp_transitions_total{host="lb2", to="MASTER"})`
		lb2Takeovers  = `hapair_vrrp_takeover_seconds_count{host="lb2"}`
		lb2TakeoverS  = `hapair_vrrp_takeover_seconds_sum{host="lb2"}`
		lb1Restarts   = `hapair_haproxy_restarts_total{host="lb1"}`
		mastersNow    = `count(hapair_vrrp_state == 2)`
		splitBrainAny = `ALERTS{alertname="HapairSplitBrain"}`
	)
	toMaster0 := mon.value(t, lb2ToMaster)
	takeovers0 := mon.value(t, lb2Takeovers)
	takeoverSum0 := mon.value(t, lb2TakeoverS)
	restarts0 := mon.value(t, lb1Restarts)

	// The failover: HAProxy dies on the MASTER, its priority drops below
	// lb2's, lb2 takes over; hapair restarts HAProxy and lb1 preempts back.
	from1, from2 := p.d1.lines(), p.d2.lines()
	killed := time.Now()
	if err := syscall.Kill(haproxyMasterPID(t, p.d1), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	tookOver := p.d2.waitState(from2, "MASTER", 5*time.Second).At

	// lb2's exposition right after the takeover, as the monitor reads it.
	var raw string
	deadline := time.Now().Add(2 * time.Second)
	for {
		raw = mon.scrape(t, p.lb2)
		if strings.Contains(raw, `hapair_vrrp_state{instance="VI_LOGS",interface="eth0",vrid="51"} 2`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lb2 logged MASTER but its /metrics does not say so:\n%s", strings.Join(vrrpLines(raw), "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("HAProxy SIGKILLed on lb1: lb2 MASTER after %s; lb2 /metrics %s later:\n%s",
		tookOver.Sub(killed).Round(time.Millisecond), time.Since(tookOver).Round(time.Millisecond), strings.Join(vrrpLines(raw), "\n"))
	// promtool lints what a real running hapair serves, mid-failover.
	if out, err := promtest.Promtool(t, []byte(raw), "check", "metrics"); err != nil {
		t.Error(err)
	} else if strings.TrimSpace(out) != "" {
		t.Errorf("promtool check metrics on lb2's /metrics:\n%s", out)
	}

	// What Prometheus recorded of the takeover.
	mon.WaitFor(t, lb2ToMaster, 5*time.Second, atLeast(toMaster0+1))
	mon.WaitFor(t, lb2Takeovers, 5*time.Second, atLeast(takeovers0+1))
	n, sum := mon.value(t, lb2Takeovers)-takeovers0, mon.value(t, lb2TakeoverS)-takeoverSum0
	if sum <= 0 || sum >= 2*n {
		t.Errorf("lb2's takeover(s) took %.3fs in %v observation(s), want under 2s each", sum, n)
	}
	mon.WaitFor(t, lb1Restarts, 10*time.Second, atLeast(restarts0+1))
	inc := mon.WaitFor(t, `sum(increase(hapair_vrrp_transitions_total{host="lb2", from="BACKUP", to="MASTER"}[5m]))`,
		5*time.Second, atLeast(1))
	t.Logf("Prometheus: lb2 increase(BACKUP->MASTER) %.2f, takeovers %v taking %.3fs; lb1 HAProxy restarts %v",
		inc[0].Value, n, sum, mon.value(t, lb1Restarts)-restarts0)

	// Settled: lb1 preempted back once its HAProxy and checks were up.
	settled := p.d1.waitState(from1, "MASTER", 20*time.Second).At
	mon.WaitForValue(t, `hapair_vrrp_state{host="lb1"}`, 2, 5*time.Second)
	mon.WaitForValue(t, `hapair_vrrp_state{host="lb2"}`, 1, 5*time.Second)
	mon.WaitForValue(t, mastersNow, 1, 5*time.Second)
	t.Logf("lb1 MASTER again %s after the kill; Prometheus agrees %s later",
		settled.Sub(killed).Round(time.Millisecond), time.Since(settled).Round(time.Millisecond))
	if v := mon.value(t, `max_over_time(hapair_vrrp_state{host="lb2"}[5m])`); v != 2 {
		t.Errorf("no scrape saw lb2 as MASTER (max state %v) though it was for %s", v, settled.Sub(tookOver).Round(time.Millisecond))
	}

	// Every expression of the dashboard and of the rules is accepted, on
	// series that now hold a failover.
	dash, err := promtest.DashboardExprs(deployDashboard)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := promtest.RuleExprs(deployRules)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range append(append([]promtest.Expr{}, dash...), rules...) {
		v, err := mon.Query(e.PromQL())
		if err != nil {
			t.Errorf("%s: Prometheus refused %q: %v", e.Where, e.PromQL(), err)
			continue
		}
		// A real pair that just failed over gives every panel something to
		// draw; annotations and alerts select events, so may be empty.
		if len(v) == 0 && (e.Kind == promtest.PanelQuery || e.Kind == promtest.VariableQuery) {
			t.Errorf("%s: no data from the running pair: %q", e.Where, e.PromQL())
		}
	}
	t.Logf("%d dashboard and %d rule expressions accepted", len(dash), len(rules))
	for _, r := range mon.WaitForRulesEvaluated(t, 10*time.Second) {
		if r.Health != "ok" {
			t.Errorf("rule %s: health %s: %s", r.Name, r.Health, r.LastError)
		}
	}

	// The dashboard's key queries show the failover (Grafana's variables at
	// "All", $__rate_interval 1m: all of it happened within the last minute).
	checkHosts := func(where string, want func(map[string]float64) bool) {
		t.Helper()
		e := findExpr(t, dash, where)
		v, err := mon.Query(e.PromQL())
		if err != nil {
			t.Fatal(err)
		}
		if got := byHost(v); !want(got) {
			t.Errorf("%s: %q = %v", e.Where, e.PromQL(), v)
		}
	}
	checkHosts("annotation Became MASTER", func(h map[string]float64) bool { return h["lb2"] > 0 && h["lb1"] > 0 })
	checkHosts(`panel "MASTER now"`, func(h map[string]float64) bool { return len(h) == 1 && h["lb1"] == 2 })
	checkHosts(`panel "MASTERs per VRID`, func(h map[string]float64) bool { return len(h) == 1 && h[""] == 1 })
	checkHosts(`panel "Takeovers"`, func(h map[string]float64) bool { return h["lb2"] > 0 })
	checkHosts(`panel "Last takeover"`, func(h map[string]float64) bool { return h["lb2"] > 0 && h["lb2"] < 2 })
	checkHosts(`panel "HAProxy restarts"`, func(h map[string]float64) bool { return h["lb1"] > 0 })
	trans := findExpr(t, dash, `panel "State transitions"`)
	v, err := mon.Query(trans.PromQL())
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, s := range v {
		if s.Value > 0 {
			seen[s.Labels["host"]+" "+s.Labels["from"]+">"+s.Labels["to"]] = true
		}
	}
	for _, want := range []string{"lb2 BACKUP>MASTER", "lb2 MASTER>BACKUP", "lb1 MASTER>BACKUP", "lb1 BACKUP>MASTER"} {
		if !seen[want] {
			t.Errorf("%s: no %s in %v", trans.Where, want, seen)
		}
	}

	// What the scrapes recorded of the state, relative to the kill: each
	// target's samples are taken at its own offset within the interval.
	since := func(at time.Time) string { return fmt.Sprintf("%+.2fs", at.Sub(killed).Seconds()) }
	timeline, err := mon.QueryRange(`hapair_vrrp_state[1m]`)
	if err != nil {
		t.Fatal(err)
	}
	for _, sr := range timeline {
		var seq []string
		for _, x := range sr.Samples {
			if x.Time.After(killed.Add(-time.Second)) && x.Time.Before(settled.Add(time.Second)) {
				seq = append(seq, fmt.Sprintf("%s=%v", since(x.Time), x.Value))
			}
		}
		t.Logf("hapair_vrrp_state scraped on %s: %s", sr.Labels["host"], strings.Join(seq, " "))
	}

	// The split-brain alert never fires. It may be pending for an
	// evaluation: the two targets' latest scrapes can straddle a handover, so
	// one evaluation counts the old and the new MASTER; its `for` absorbs that.
	sb, err := mon.QueryRange(splitBrainAny + `[5m]`)
	if err != nil {
		t.Fatal(err)
	}
	var pending []string
	for _, sr := range sb {
		for _, x := range sr.Samples {
			if sr.Labels["alertstate"] == "firing" {
				t.Errorf("HapairSplitBrain firing at %s after the kill", since(x.Time))
			}
			pending = append(pending, since(x.Time))
		}
	}
	maxMasters := mon.value(t, `max_over_time(`+mastersNow+`[5m:`+monScrape.String()+`])`)
	t.Logf("split brain: alert active at evaluations %v (none: stayed inactive), most MASTERs in one evaluation %v; lb2 MASTER at %s, lb1 MASTER again at %s",
		pending, maxMasters, since(tookOver), since(settled))
	active, err := mon.Query(`sum by (alertname, alertstate) (count_over_time(ALERTS[5m]))`)
	if err != nil {
		t.Fatal(err)
	}
	var alerts []string
	for _, s := range active {
		alerts = append(alerts, fmt.Sprintf("%s %s (%v evaluations)", s.Labels["alertname"], s.Labels["alertstate"], s.Value))
	}
	sort.Strings(alerts)
	t.Logf("alerts active at some point: %v; whole test %s", alerts, time.Since(began).Round(time.Millisecond))
}
