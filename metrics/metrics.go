// Package metrics exports hapair's Prometheus metrics: its own registry (no
// globals) and the /metrics handler. The status document and the HTTP listener
// are package metrics/status.
//
// Other packages report through small interfaces they own (supervisor.Reporter,
// checks.Reporter, instance.Reporter); this package implements them, importing
// those packages' value types (vrrp.State, supervisor.ReloadResult) only.
package metrics

import (
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/hapair/hapair/supervisor"
	"github.com/hapair/hapair/vrrp"
)

// dropReasons are the reason label values of hapair_vrrp_packets_dropped_total that are
// pre-initialised to 0 for every instance, so that a dashboard shows a flat zero instead of "no
// data" and increase() sees the first drop. They come from package vrrp, the one list of reasons;
// a reason not listed there is still counted.
func dropReasons() []string {
	var out []string
	for _, r := range vrrp.DropReasons() {
		out = append(out, string(r))
	}
	return out
}

// vipOps are the op label values of hapair_vrrp_vip_errors_total, pre-initialised to 0, by the
// action that failed.
var vipOps = map[vrrp.ActionKind]string{vrrp.ActAttachVIPs: "attach", vrrp.ActDetachVIPs: "detach"}

// vipOp is the op label of a failed action.
func vipOp(op vrrp.ActionKind) string {
	if s, ok := vipOps[op]; ok {
		return s
	}
	return op.String()
}

// Check results of hapair_check_results_total{result}.
const (
	checkResultOK   = "ok"
	checkResultFail = "fail"
)

// failoverBuckets cover 1 ms (a priority-0 handover on one switch) up to 10 s
// (a master-down interval with advert_int 3), with extra resolution around the
// figures hapair is judged on: 0.8 s (HAProxy killed) and 3.6 s (seed's
// master-down interval).
var (
	failoverBucketsArray = [...]float64{
		0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.8,
		1, 2, 3, 4, 5, 7.5, 10,
	}
	failoverBuckets = failoverBucketsArray[:]
)

// checkBuckets cover a probe from a fast local connect to a slow script.
var checkBuckets = []float64{
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
}

// BuildInfo labels hapair_build_info.
type BuildInfo struct {
	Version   string
	Commit    string
	GoVersion string // runtime.Version() when empty
}

// Metrics owns hapair's registry and every metric in it.
type Metrics struct {
	reg *prometheus.Registry // every family
	// static holds the families that are not per instance: the text exposition gathers them
	// and writes the per-instance ones itself (expose.go).
	static *prometheus.Registry
	compat *keepalivedCompat

	mu            sync.Mutex
	compatEnabled bool
	instances     map[string]*InstanceMetrics
	trackedChecks map[string]bool // checks whose hapair_check_up follows CheckUp

	otherVRID *prometheus.CounterVec

	drained prometheus.Gauge

	haproxyUp       prometheus.Gauge
	haproxyRestarts prometheus.Counter
	haproxyReloads  *prometheus.CounterVec
	haproxyLastExit *prometheus.GaugeVec // no labels: absent until the first exit

	checkUp       *prometheus.GaugeVec
	checkResults  *prometheus.CounterVec
	checkDuration *prometheus.HistogramVec

	configReloads          *prometheus.CounterVec
	configLastReloadOK     prometheus.Gauge
	configLastReloadOKTime prometheus.Gauge
}

// New builds a registry holding hapair's metrics plus the Go and process
// collectors.
func New(b BuildInfo) *Metrics {
	if b.GoVersion == "" {
		b.GoVersion = runtime.Version()
	}
	m := &Metrics{
		reg:           prometheus.NewRegistry(),
		static:        prometheus.NewRegistry(),
		instances:     make(map[string]*InstanceMetrics),
		trackedChecks: make(map[string]bool),

		otherVRID: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hapair_vrrp_packets_other_vrid_total",
			Help: "VRRP packets received on an interface for a VRID that no instance here runs (other virtual routers on the segment: normal traffic), or too short to carry a VRID.",
		}, []string{"interface"}),

		drained: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hapair_drained",
			Help: "1 while the node is drained (hapair drain): it hands its VIPs to its peers and serves only as the last resort.",
		}),
		haproxyUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hapair_haproxy_up",
			Help: "1 while the HAProxy child runs and answers, else 0.",
		}),
		haproxyRestarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hapair_haproxy_restarts_total",
			Help: "Restarts of the HAProxy child after it exited.",
		}),
		haproxyReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hapair_haproxy_reloads_total",
			Help: "HAProxy reloads by result: ok, refused (configuration invalid) or failed.",
		}, []string{"result"}),
		haproxyLastExit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hapair_haproxy_last_exit_status",
			Help: "Exit status of the HAProxy child the last time it exited (128+signal when killed); absent until it first exits.",
		}, nil),

		checkUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hapair_check_up",
			Help: "Tracked check status after fall/rise: 1 passing, 0 failing.",
		}, []string{"check"}),
		checkResults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hapair_check_results_total",
			Help: "Individual check probe results: ok or fail.",
		}, []string{"check", "result"}),
		checkDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "hapair_check_duration_seconds",
			Help:    "Duration of individual check probes.",
			Buckets: checkBuckets,
		}, []string{"check"}),

		// Named after Prometheus' own prometheus_config_last_reload_successful and
		// prometheus_config_last_reload_success_timestamp_seconds, so that the alert people
		// already write for Prometheus reads the same for hapair.
		configReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hapair_config_reloads_total",
			Help: "Reloads of hapair's configuration (SIGHUP) by result: ok (applied), refused (a file is invalid or a change needs a restart: nothing was touched) or failed (HAProxy's reload failed: its old workers keep serving and hapair's settings stay as they were).",
		}, []string{"result"}),
		configLastReloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hapair_config_last_reload_successful",
			Help: "1 when the last configuration reload attempt succeeded (or none was made since start), 0 when it was refused or failed.",
		}),
		configLastReloadOKTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "hapair_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful configuration load: the start, or the last reload that succeeded.",
		}),
	}

	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "hapair_build_info",
		Help: "Always 1; labels carry the version, commit and Go version hapair was built with.",
	}, []string{"version", "commit", "goversion"})
	buildInfo.WithLabelValues(b.Version, b.Commit, b.GoVersion).Set(1)
	m.compat = newKeepalivedCompat(m)

	for _, r := range supervisor.ReloadResults() {
		m.haproxyReloads.WithLabelValues(string(r))
		m.configReloads.WithLabelValues(string(r))
	}
	m.configLastReloadOK.Set(1)
	m.configLastReloadOKTime.Set(float64(time.Now().UnixNano()) / 1e9)

	m.register(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo,
		m.otherVRID,
		m.drained,
		m.haproxyUp, m.haproxyRestarts, m.haproxyReloads, m.haproxyLastExit,
		m.checkUp, m.checkResults, m.checkDuration,
		m.configReloads, m.configLastReloadOK, m.configLastReloadOKTime,
	)
	m.reg.MustRegister(gaugeCollector{m}, counterCollector{m})
	return m
}

// MustRegister adds collectors of one's own to /metrics (both expositions).
func (m *Metrics) MustRegister(cs ...prometheus.Collector) { m.register(cs...) }

// register adds collectors of families that are not per instance, to both registries.
func (m *Metrics) register(cs ...prometheus.Collector) {
	m.reg.MustRegister(cs...)
	m.static.MustRegister(cs...)
}

// Registry returns the registry of every family, to gather them (tests). Add a collector
// with MustRegister: one added to this registry directly shows in the protobuf exposition
// only, since the text exposition gathers the families that are not per instance from a
// registry of its own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Instance returns the metrics of the VRRP instance name, creating and
// pre-initialising its series on first use. vips, when given, label the
// keepalived compatibility series (keepalived_vrrp_state{ip_address});
// SetVIPs changes them later. Calling Instance again with the same name
// returns the same value; a changed interface or VRID replaces the old state
// series.
func (m *Metrics) Instance(name, iface string, vrid uint8, vips ...netip.Prefix) *InstanceMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	vridLabel := strconv.Itoa(int(vrid))
	if im, ok := m.instances[name]; ok {
		if im.iface == iface && im.vrid == vridLabel {
			if len(vips) > 0 {
				im.SetVIPs(vips)
			}
			return im
		}
		m.removeLocked(name)
	}
	im := newInstanceMetrics(m, name, iface, vridLabel, vips)
	m.instances[name] = im
	return im
}

// RemoveInstance deletes every series of the VRRP instance name, for an
// snapshot is the instances now, in no order, for the counter collectors.
func (m *Metrics) snapshot() []*InstanceMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*InstanceMetrics, 0, len(m.instances))
	for _, im := range m.instances {
		out = append(out, im)
	}
	return out
}

// instance dropped by a configuration reload.
func (m *Metrics) RemoveInstance(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.removeLocked(name)
}

func (m *Metrics) removeLocked(name string) {
	delete(m.instances, name)
}

// EnableKeepalivedCompat additionally exports the keepalived_* series of the
// keepalived exporters, so existing dashboards and alerts keep working during
// a migration. The series are fed all along; enabling only registers them, so
// the order of this call and Instance does not matter. Idempotent.
func (m *Metrics) EnableKeepalivedCompat() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.compatEnabled {
		return
	}
	m.compatEnabled = true
	static, perInstance := m.compat.collectors()
	m.register(static...)
	m.reg.MustRegister(perInstance...)
}

// WithoutHAProxy removes the hapair_haproxy_* series, for a hapair that runs VRRP alone (no
// haproxy section): a hapair_haproxy_up stuck at 0 there would fire HapairHAProxyDown for an
// HAProxy that does not exist.
func (m *Metrics) WithoutHAProxy() {
	for _, c := range []prometheus.Collector{m.haproxyUp, m.haproxyRestarts, m.haproxyReloads, m.haproxyLastExit} {
		m.reg.Unregister(c)
		m.static.Unregister(c)
	}
}

// SetDrained sets hapair_drained.
func (m *Metrics) SetDrained(drained bool) { m.drained.Set(boolValue(drained)) }

// HAProxyUp implements supervisor.Reporter.
func (m *Metrics) HAProxyUp(up bool) { m.haproxyUp.Set(boolValue(up)) }

// HAProxyRestart implements supervisor.Reporter.
func (m *Metrics) HAProxyRestart() { m.haproxyRestarts.Inc() }

// HAProxyReload implements supervisor.Reporter.
func (m *Metrics) HAProxyReload(result supervisor.ReloadResult) {
	m.haproxyReloads.WithLabelValues(string(result)).Inc()
}

// HAProxyExit implements supervisor.Reporter.
func (m *Metrics) HAProxyExit(status int) { m.haproxyLastExit.WithLabelValues().Set(float64(status)) }

// ConfigReload records the outcome of a configuration reload attempt made at at.
func (m *Metrics) ConfigReload(result supervisor.ReloadResult, at time.Time) {
	m.configReloads.WithLabelValues(string(result)).Inc()
	if result == supervisor.ReloadOK {
		m.configLastReloadOK.Set(1)
		m.configLastReloadOKTime.Set(float64(at.UnixNano()) / 1e9)
		return
	}
	m.configLastReloadOK.Set(0)
}

// DeclareCheck creates the series of check name before its first result, so
// that the check shows in dashboards from the start.
func (m *Metrics) DeclareCheck(name string) {
	m.checkResults.WithLabelValues(name, checkResultOK)
	m.checkResults.WithLabelValues(name, checkResultFail)
	m.checkDuration.WithLabelValues(name)
}

// RemoveCheck drops the series of check name, which a reload removed: its hapair_check_up must
// not stay at 0 (and HapairCheckFailing firing) until hapair restarts.
func (m *Metrics) RemoveCheck(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.trackedChecks, name)
	m.checkUp.DeleteLabelValues(name)
	m.checkResults.DeleteLabelValues(name, checkResultOK)
	m.checkResults.DeleteLabelValues(name, checkResultFail)
	m.checkDuration.DeleteLabelValues(name)
}

// CheckResult implements checks.Reporter: one probe's raw result. Until
// CheckUp has been called for the check, hapair_check_up follows the raw
// result, so the series exists even if nobody reports the tracked status.
func (m *Metrics) CheckResult(name string, ok bool, d time.Duration) {
	result := checkResultFail
	if ok {
		result = checkResultOK
	}
	m.checkResults.WithLabelValues(name, result).Inc()
	m.checkDuration.WithLabelValues(name).Observe(d.Seconds())
	// Under the lock, so a concurrent CheckUp cannot be overwritten.
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.trackedChecks[name] {
		m.checkUp.WithLabelValues(name).Set(boolValue(ok))
	}
}

// CheckUp sets the tracked status of check name (after fall/rise), the value
// that moves the priority; from then on hapair_check_up follows it alone.
func (m *Metrics) CheckUp(name string, up bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.trackedChecks[name] = true
	m.checkUp.WithLabelValues(name).Set(boolValue(up))
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// OtherVRID returns the counter of hapair_vrrp_packets_other_vrid_total for an interface: the
// VRRP packets there that no instance takes (vrrp/transport counts them, once per interface).
func (m *Metrics) OtherVRID(ifname string) prometheus.Counter {
	return m.otherVRID.WithLabelValues(ifname)
}
