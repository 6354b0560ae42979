package metrics

import (
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hapair/hapair/vrrp"
)

// keepalivedCompat holds the keepalived_* series of the keepalived exporters
// (mehdy/cafebazaar keepalived-exporter naming), fed by the same
// InstanceMetrics calls as hapair's own series.
type keepalivedCompat struct {
	up    prometheus.Gauge
	state *prometheus.GaugeVec // iname, intf, vrid, ip_address

	// Counters labelled iname, intf, vrid.
	advertsReceived  *prometheus.CounterVec
	advertsSent      *prometheus.CounterVec
	becomeMaster     *prometheus.CounterVec
	releaseMaster    *prometheus.CounterVec
	prioZeroSent     *prometheus.CounterVec
	prioZeroReceived *prometheus.CounterVec
	ttlErrors        *prometheus.CounterVec
	lengthErrors     *prometheus.CounterVec
	authFailures     *prometheus.CounterVec
	intervalErrors   *prometheus.CounterVec
	typeErrors       *prometheus.CounterVec
	addrListErrors   *prometheus.CounterVec
}

func newKeepalivedCompat() *keepalivedCompat {
	labels := []string{"iname", "intf", "vrid"}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	c := &keepalivedCompat{
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "keepalived_up",
			Help: "keepalived exporter compatibility: 1 while hapair serves metrics.",
		}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "keepalived_vrrp_state",
			Help: "keepalived exporter compatibility: VRRP state per VIP, 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT.",
		}, []string{"iname", "intf", "vrid", "ip_address"}),
		advertsReceived:  counter("keepalived_advertisements_received_total", "keepalived exporter compatibility: advertisements received."),
		advertsSent:      counter("keepalived_advertisements_sent_total", "keepalived exporter compatibility: advertisements sent."),
		becomeMaster:     counter("keepalived_become_master_total", "keepalived exporter compatibility: transitions to MASTER."),
		releaseMaster:    counter("keepalived_release_master_total", "keepalived exporter compatibility: transitions out of MASTER."),
		prioZeroSent:     counter("keepalived_priority_zero_sent_total", "keepalived exporter compatibility: priority-0 advertisements sent."),
		prioZeroReceived: counter("keepalived_priority_zero_received_total", "keepalived exporter compatibility: priority-0 advertisements received."),
		ttlErrors:        counter("keepalived_ip_ttl_errors_total", "keepalived exporter compatibility: packets dropped for a TTL other than 255."),
		lengthErrors:     counter("keepalived_packet_length_errors_total", "keepalived exporter compatibility: packets dropped for their length."),
		authFailures:     counter("keepalived_authentication_failure_total", "keepalived exporter compatibility: packets dropped for failed authentication."),
		intervalErrors:   counter("keepalived_advertisements_interval_errors_total", "keepalived exporter compatibility: packets dropped for a different advert interval."),
		typeErrors:       counter("keepalived_invalid_type_received_total", "keepalived exporter compatibility: packets dropped for an invalid type."),
		addrListErrors:   counter("keepalived_address_list_errors_total", "keepalived exporter compatibility: packets dropped for a mismatching address list."),
	}
	c.up.Set(1)
	return c
}

func (c *keepalivedCompat) counters() []*prometheus.CounterVec {
	return []*prometheus.CounterVec{
		c.advertsReceived, c.advertsSent, c.becomeMaster, c.releaseMaster,
		c.prioZeroSent, c.prioZeroReceived, c.ttlErrors, c.lengthErrors,
		c.authFailures, c.intervalErrors, c.typeErrors, c.addrListErrors,
	}
}

func (c *keepalivedCompat) collectors() []prometheus.Collector {
	cs := []prometheus.Collector{c.up, c.state}
	for _, v := range c.counters() {
		cs = append(cs, v)
	}
	return cs
}

func (c *keepalivedCompat) remove(iname string) {
	l := prometheus.Labels{"iname": iname}
	c.state.DeletePartialMatch(l)
	for _, v := range c.counters() {
		v.DeletePartialMatch(l)
	}
}

// dropCounter maps a hapair drop reason to its keepalived counter, nil when
// keepalived has none.
func (c *keepalivedCompat) dropCounter(reason vrrp.DropReason) *prometheus.CounterVec {
	switch reason {
	case vrrp.DropTTL:
		return c.ttlErrors
	case vrrp.DropLength:
		return c.lengthErrors
	case vrrp.DropAuth:
		return c.authFailures
	case vrrp.DropInterval:
		return c.intervalErrors
	case vrrp.DropType:
		return c.typeErrors
	case vrrp.DropAddrs:
		return c.addrListErrors
	}
	return nil
}

// compatInstance is one VRRP instance's view of keepalivedCompat.
type compatInstance struct {
	c      *keepalivedCompat
	labels []string // iname, intf, vrid

	// The per-advert counters, resolved once: WithLabelValues on every advert was a tenth of
	// a MASTER's CPU with 255 instances.
	advertsSent, advertsReceived, prioZeroSent, prioZeroReceived prometheus.Counter

	mu    sync.Mutex
	state float64
	addrs []string // ip_address label values; [""] without VIPs, as the exporters do
}

func (c *keepalivedCompat) instance(iname, intf, vrid string, vips []netip.Prefix) *compatInstance {
	ci := &compatInstance{c: c, labels: []string{iname, intf, vrid}}
	for _, v := range c.counters() {
		v.WithLabelValues(ci.labels...)
	}
	ci.advertsSent = c.advertsSent.WithLabelValues(ci.labels...)
	ci.advertsReceived = c.advertsReceived.WithLabelValues(ci.labels...)
	ci.prioZeroSent = c.prioZeroSent.WithLabelValues(ci.labels...)
	ci.prioZeroReceived = c.prioZeroReceived.WithLabelValues(ci.labels...)
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

func (ci *compatInstance) transition(from, to vrrp.State) {
	if to == vrrp.Master {
		ci.c.becomeMaster.WithLabelValues(ci.labels...).Inc()
	}
	if from == vrrp.Master {
		ci.c.releaseMaster.WithLabelValues(ci.labels...).Inc()
	}
}

func (ci *compatInstance) advertSent(prio uint8) {
	ci.advertsSent.Inc()
	if prio == 0 {
		ci.prioZeroSent.Inc()
	}
}

func (ci *compatInstance) advertReceived(prio uint8) {
	ci.advertsReceived.Inc()
	if prio == 0 {
		ci.prioZeroReceived.Inc()
	}
}

func (ci *compatInstance) dropped(reason vrrp.DropReason) {
	if v := ci.c.dropCounter(reason); v != nil {
		v.WithLabelValues(ci.labels...).Inc()
	}
}
