package metrics

import (
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hapair/hapair/vrrp"
)

// keepalivedCompat holds the keepalived_* series of the keepalived exporters
// (mehdy/cafebazaar keepalived-exporter naming), fed by the same
// InstanceMetrics calls as hapair's own series. Its counters are hapair's own
// (instanceCounters) under keepalived's names, made when scraped.
type keepalivedCompat struct {
	m     *Metrics
	up    prometheus.Gauge
	state *prometheus.GaugeVec // iname, intf, vrid, ip_address
}

// The keepalived counter families, labelled iname, intf, vrid.
var (
	compatLabels               = []string{"iname", "intf", "vrid"}
	compatCounter              = func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, compatLabels, nil) }
	descCompatAdvertsReceived  = compatCounter("keepalived_advertisements_received_total", "keepalived exporter compatibility: advertisements received.")
	descCompatAdvertsSent      = compatCounter("keepalived_advertisements_sent_total", "keepalived exporter compatibility: advertisements sent.")
	descCompatBecomeMaster     = compatCounter("keepalived_become_master_total", "keepalived exporter compatibility: transitions to MASTER.")
	descCompatReleaseMaster    = compatCounter("keepalived_release_master_total", "keepalived exporter compatibility: transitions out of MASTER.")
	descCompatPrioZeroSent     = compatCounter("keepalived_priority_zero_sent_total", "keepalived exporter compatibility: priority-0 advertisements sent.")
	descCompatPrioZeroReceived = compatCounter("keepalived_priority_zero_received_total", "keepalived exporter compatibility: priority-0 advertisements received.")
	descCompatTTLErrors        = compatCounter("keepalived_ip_ttl_errors_total", "keepalived exporter compatibility: packets dropped for a TTL other than 255.")
	descCompatLengthErrors     = compatCounter("keepalived_packet_length_errors_total", "keepalived exporter compatibility: packets dropped for their length.")
	descCompatAuthFailures     = compatCounter("keepalived_authentication_failure_total", "keepalived exporter compatibility: packets dropped for failed authentication.")
	descCompatIntervalErrors   = compatCounter("keepalived_advertisements_interval_errors_total", "keepalived exporter compatibility: packets dropped for a different advert interval.")
	descCompatTypeErrors       = compatCounter("keepalived_invalid_type_received_total", "keepalived exporter compatibility: packets dropped for an invalid type.")
	descCompatAddrListErrors   = compatCounter("keepalived_address_list_errors_total", "keepalived exporter compatibility: packets dropped for a mismatching address list.")
	compatDrops                = map[*prometheus.Desc]vrrp.DropReason{
		descCompatTTLErrors: vrrp.DropTTL, descCompatLengthErrors: vrrp.DropLength, descCompatAuthFailures: vrrp.DropAuth,
		descCompatIntervalErrors: vrrp.DropInterval, descCompatTypeErrors: vrrp.DropType, descCompatAddrListErrors: vrrp.DropAddrs,
	}
)

func newKeepalivedCompat(m *Metrics) *keepalivedCompat {
	c := &keepalivedCompat{
		m: m,
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keepalived_up",
			Help: "keepalived exporter compatibility: 1 while hapair serves metrics.",
		}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "keepalived_vrrp_state",
			Help: "keepalived exporter compatibility: VRRP state per VIP, 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT.",
		}, []string{"iname", "intf", "vrid", "ip_address"}),
	}
	c.up.Set(1)
	return c
}

func (c *keepalivedCompat) collectors() []prometheus.Collector {
	return []prometheus.Collector{c.up, c.state, compatCounterCollector{c.m}}
}

func (c *keepalivedCompat) remove(iname string) {
	c.state.DeletePartialMatch(prometheus.Labels{"iname": iname})
}

// compatCounterCollector exports every instance's counters under keepalived's names.
type compatCounterCollector struct{ m *Metrics }

func (compatCounterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCompatAdvertsReceived, descCompatAdvertsSent, descCompatBecomeMaster,
		descCompatReleaseMaster, descCompatPrioZeroSent, descCompatPrioZeroReceived} {
		ch <- d
	}
	for d := range compatDrops {
		ch <- d
	}
}

func (cc compatCounterCollector) Collect(ch chan<- prometheus.Metric) {
	master := stateIndex(vrrp.Master)
	for _, im := range cc.m.snapshot() {
		c := &im.counters
		emit := func(d *prometheus.Desc, v uint64) {
			ch <- &counterMetric{desc: d, labels: c.compat, value: v, created: c.created}
		}
		emit(descCompatAdvertsReceived, c.advertsReceived.Load())
		emit(descCompatAdvertsSent, c.advertsSent.Load())
		emit(descCompatPrioZeroSent, c.prioZeroSent.Load())
		emit(descCompatPrioZeroReceived, c.prioZeroReceived.Load())
		var become, release uint64
		for i := range stateNames {
			become += c.transitions[i][master].Load()
			release += c.transitions[master][i].Load()
		}
		emit(descCompatBecomeMaster, become)
		emit(descCompatReleaseMaster, release)
		for d, r := range compatDrops {
			emit(d, c.dropped[dropIndex(r)].Load())
		}
	}
}

// compatInstance is one VRRP instance's keepalived_vrrp_state series, one per VIP.
type compatInstance struct {
	c      *keepalivedCompat
	labels []string // iname, intf, vrid

	mu    sync.Mutex
	state float64
	addrs []string // ip_address label values; [""] without VIPs, as the exporters do
}

func (c *keepalivedCompat) instance(iname, intf, vrid string, vips []netip.Prefix) *compatInstance {
	ci := &compatInstance{c: c, labels: []string{iname, intf, vrid}}
	ci.setVIPs(vips)
	return ci
}

func (ci *compatInstance) stateLabels(addr string) []string {
	return append(append(make([]string, 0, 4), ci.labels...), addr)
}

func (ci *compatInstance) setState(s vrrp.State) {
	ci.mu.Lock()
	defer ci.mu.Unlock()
	ci.state = float64(s)
	for _, a := range ci.addrs {
		ci.c.state.WithLabelValues(ci.stateLabels(a)...).Set(ci.state)
	}
}

func (ci *compatInstance) setVIPs(vips []netip.Prefix) {
	addrs := make([]string, 0, len(vips))
	for _, p := range vips {
		addrs = append(addrs, p.Addr().String())
	}
	if len(addrs) == 0 {
		addrs = []string{""}
	}
	ci.mu.Lock()
	defer ci.mu.Unlock()
	for _, a := range ci.addrs {
		ci.c.state.DeleteLabelValues(ci.stateLabels(a)...)
	}
	ci.addrs = addrs
	for _, a := range ci.addrs {
		ci.c.state.WithLabelValues(ci.stateLabels(a)...).Set(ci.state)
	}
}
