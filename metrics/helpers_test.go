package metrics

import (
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/hapair/hapair/supervisor"

	"github.com/hapair/hapair/vrrp"
)

// populate drives every reporting method once or more, as a running pair
// would, so that every family hapair can export is present.
func populate(t *testing.T, m *Metrics) {
	t.Helper()
	im := m.Instance("VI_LOGS", "eth0", 51, netip.MustParsePrefix("10.0.0.10/24"))
	im.SetState(vrrp.Backup)
	im.SetPriority(110)
	im.Transition(vrrp.Init, vrrp.Backup)
	im.Transition(vrrp.Backup, vrrp.Master)
	im.ObserveTakeover(350 * time.Millisecond)
	im.ObserveRelease(2 * time.Millisecond)
	im.AdvertSent(110)
	im.AdvertSent(0)
	im.AdvertSendError()
	im.AdvertReceived(100)
	im.AdvertReceived(0)
	im.Dropped(vrrp.DropTTL)
	im.Dropped(vrrp.DropAuth)
	im.GARPSent(5)
	im.VIPError(vrrp.ActAttachVIPs)
	m.HAProxyUp(true)
	m.HAProxyRestart()
	m.HAProxyReload(supervisor.ReloadOK)
	m.HAProxyReload(supervisor.ReloadRefused)
	m.HAProxyExit(139)
	m.DeclareCheck("haproxy_stats")
	m.CheckResult("haproxy", true, 0)
	m.CheckResult("haproxy_stats", false, 3*time.Millisecond)
	m.CheckUp("haproxy_stats", false)
	b := m.EnableBGP()
	b.PeerUp(netip.MustParseAddr("10.0.0.1"), true)
	b.PrefixAnnounced(netip.MustParsePrefix("10.77.9.10/32"), true)
	b.PrefixAnnounced(netip.MustParsePrefix("10.77.9.10/32"), false)
	b.PrefixAnnounced(netip.MustParsePrefix("10.77.9.10/32"), true)
	b.WithdrawDelay(30 * time.Microsecond)
}

func gather(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := make(map[string]*dto.MetricFamily, len(mfs))
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// labelNames returns the sorted label names of a family's first metric.
func labelNames(mf *dto.MetricFamily) []string {
	var names []string
	if len(mf.GetMetric()) == 0 {
		return nil
	}
	for _, lp := range mf.GetMetric()[0].GetLabel() {
		names = append(names, lp.GetName())
	}
	sort.Strings(names)
	return names
}

// value returns the value of the series of family name whose labels include
// want (a counter, gauge, or a histogram's sample count), and whether it exists.
func value(t *testing.T, m *Metrics, name string, want map[string]string) (float64, bool) {
	t.Helper()
	mf, ok := gather(t, m)[name]
	if !ok {
		return 0, false
	}
	for _, metric := range mf.GetMetric() {
		if !hasLabels(metric, want) {
			continue
		}
		switch {
		case metric.GetCounter() != nil:
			return metric.GetCounter().GetValue(), true
		case metric.GetGauge() != nil:
			return metric.GetGauge().GetValue(), true
		case metric.GetHistogram() != nil:
			return float64(metric.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func hasLabels(metric *dto.Metric, want map[string]string) bool {
	got := map[string]string{}
	for _, lp := range metric.GetLabel() {
		got[lp.GetName()] = lp.GetValue()
	}
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

func seriesCount(t *testing.T, m *Metrics, name string, want map[string]string) int {
	t.Helper()
	mf, ok := gather(t, m)[name]
	if !ok {
		return 0
	}
	n := 0
	for _, metric := range mf.GetMetric() {
		if hasLabels(metric, want) {
			n++
		}
	}
	return n
}

func labels(kv ...string) map[string]string {
	if len(kv)%2 != 0 {
		panic("labels: odd argument count")
	}
	out := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func joined(ss []string) string { return strings.Join(ss, ",") }
