package metrics

import (
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hapair/hapair/vrrp"
)

// InstanceMetrics records the metrics of one VRRP instance. Its methods are
// safe for concurrent use and cheap enough for the advert hot path (the
// per-instance series are resolved once, at creation).
type InstanceMetrics struct {
	m     *Metrics
	name  string
	iface string
	vrid  string

	state        prometheus.Gauge
	priority     prometheus.Gauge
	takeover     prometheus.Observer
	lastTakeover prometheus.Gauge
	release      prometheus.Observer
	counters     instanceCounters // every counter series, hapair's and keepalived's

	compat *compatInstance
}

func newInstanceMetrics(m *Metrics, name, iface, vrid string, vips []netip.Prefix) *InstanceMetrics {
	im := &InstanceMetrics{
		m:            m,
		name:         name,
		iface:        iface,
		vrid:         vrid,
		state:        m.vrrpState.WithLabelValues(name, iface, vrid),
		priority:     m.priority.WithLabelValues(name),
		takeover:     m.takeover.WithLabelValues(name),
		lastTakeover: m.lastTakeover.WithLabelValues(name),
		release:      m.release.WithLabelValues(name),
		compat:       m.compat.instance(name, iface, vrid, vips),
	}
	// Every counter series that can exist for the instance exists from the start at 0 (every
	// transition pair, drop reason and VIP operation), so that increase() counts the first
	// event and dashboards show zeros: counterCollector exports the fixed sets whole.
	im.counters.init(name, iface, vrid, time.Now())
	return im
}

// Name returns the VRRP instance name the metrics are labelled with.
func (im *InstanceMetrics) Name() string { return im.name }

// SetState sets hapair_vrrp_state to the value of s (StateInit .. StateFault).
func (im *InstanceMetrics) SetState(s vrrp.State) {
	im.state.Set(float64(s))
	im.compat.setState(s)
}

// Transition counts a state change, labelled with the states' names ("BACKUP", "MASTER", ...).
// It also sets the state gauge, so that the two can never disagree.
func (im *InstanceMetrics) Transition(from, to vrrp.State) {
	im.counters.transition(from, to)
	im.SetState(to)
}

// SetPriority sets the effective priority.
func (im *InstanceMetrics) SetPriority(p uint8) { im.priority.Set(float64(p)) }

// ObserveTakeover records how long becoming MASTER took (see
// hapair_vrrp_takeover_seconds).
func (im *InstanceMetrics) ObserveTakeover(d time.Duration) {
	im.takeover.Observe(d.Seconds())
	im.lastTakeover.Set(d.Seconds())
}

// ObserveRelease records, on the old MASTER, the time from the failure being
// seen to the priority-0 or lower-priority advert being sent.
func (im *InstanceMetrics) ObserveRelease(d time.Duration) { im.release.Observe(d.Seconds()) }

// AdvertSent counts an advert sent with priority prio (0: releasing).
func (im *InstanceMetrics) AdvertSent(prio uint8) {
	im.counters.advertsSent.Add(1)
	if prio == 0 {
		im.counters.prioZeroSent.Add(1)
	}
}

// AdvertReceived counts a valid advert received with priority prio.
func (im *InstanceMetrics) AdvertReceived(prio uint8) {
	im.counters.advertsReceived.Add(1)
	if prio == 0 {
		im.counters.prioZeroReceived.Add(1)
	}
}

// Dropped counts a packet dropped for reason.
func (im *InstanceMetrics) Dropped(reason vrrp.DropReason) {
	im.counters.drop(reason)
}

// GARPSent counts n gratuitous ARP / unsolicited NA packets sent.
func (im *InstanceMetrics) GARPSent(n int) {
	if n > 0 {
		im.counters.garpSent.Add(uint64(n))
	}
}

// AddrListMismatch counts an advert accepted although its address list differs from the
// instance's VIPs (they overlap: a rolling VIP change).
func (im *InstanceMetrics) AddrListMismatch() { im.counters.addrMismatch.Add(1) }

// VIPError counts a failed vrrp.ActAttachVIPs or vrrp.ActDetachVIPs.
func (im *InstanceMetrics) VIPError(op vrrp.ActionKind) {
	im.counters.vipError(vipOp(op))
}

// SetVIPs replaces the VIP list labelling keepalived_vrrp_state{ip_address}.
func (im *InstanceMetrics) SetVIPs(vips []netip.Prefix) { im.compat.setVIPs(vips) }
