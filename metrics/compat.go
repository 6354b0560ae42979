package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hapair/hapair/vrrp"
)

// keepalivedCompat holds the keepalived_* series of the keepalived exporters
// (mehdy/cafebazaar keepalived-exporter naming), fed by the same
// InstanceMetrics calls as hapair's own series. Its counters are hapair's own
// (instanceCounters) under keepalived's names, made when scraped.
type keepalivedCompat struct {
	m  *Metrics
	up prometheus.Gauge
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
	}
	c.up.Set(1)
	return c
}

// collectors are the registry's: keepalived_up, and the per-instance series (the text
// exposition writes those itself).
func (c *keepalivedCompat) collectors() (static, perInstance []prometheus.Collector) {
	return []prometheus.Collector{c.up}, []prometheus.Collector{compatStateCollector{c.m}, compatCounterCollector{c.m}}
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
	for _, im := range cc.m.snapshot() {
		c, l := &im.counters, im.dtoLabels()
		emit := func(d *prometheus.Desc, v uint64) {
			ch <- &counterMetric{desc: d, labels: l.compat, value: v, created: l.created}
		}
		emit(descCompatAdvertsReceived, c.received())
		sent, _ := c.sent()
		emit(descCompatAdvertsSent, sent)
		emit(descCompatPrioZeroSent, c.prioZeroSent.Load())
		emit(descCompatPrioZeroReceived, c.prioZeroReceived.Load())
		emit(descCompatBecomeMaster, c.becomeMaster())
		emit(descCompatReleaseMaster, c.releaseMaster())
		for d, r := range compatDrops {
			emit(d, c.dropped[dropIndex(r)].Load())
		}
	}
}
