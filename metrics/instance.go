package metrics

import (
	"math"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hapair/hapair/vrrp"
)

// InstanceMetrics records the metrics of one VRRP instance. Its methods are
// safe for concurrent use and cheap enough for the advert hot path.
//
// Every series of an instance is a plain value here (atomics, and histograms made at their
// first observation), exported when scraped (instanceCollector for the registry, the text
// exposition straight from these values): a client_golang child per series, with its label
// pairs, cost about 9 KiB an instance (two 17-bucket histograms, the gauges, their maps),
// 2.3 MB of heap at 255 instances.
type InstanceMetrics struct {
	m     *Metrics
	name  string
	iface string
	vrid  string

	state        atomic.Uint32 // a vrrp.State
	priority     atomic.Uint32
	lastTakeover atomic.Uint64 // float64 bits, seconds
	takeover     histogram
	release      histogram
	counters     instanceCounters // every counter series, hapair's and keepalived's

	// Text exposition: the instance's label pairs, escaped once.
	text instanceText

	mu       sync.Mutex
	addrs    []string // keepalived_vrrp_state's ip_address values, sorted; [""] without VIPs, as the exporters do
	addrText []string // the same as ip_address="..." label texts
}

func newInstanceMetrics(m *Metrics, name, iface, vrid string, vips []netip.Prefix) *InstanceMetrics {
	im := &InstanceMetrics{m: m, name: name, iface: iface, vrid: vrid}
	// Every counter series that can exist for the instance exists from the start at 0 (every
	// transition pair, drop reason and VIP operation), so that increase() counts the first
	// event and dashboards show zeros: counterCollector exports the fixed sets whole.
	im.counters.init(time.Now())
	im.text = newInstanceText(name, iface, vrid)
	im.setVIPs(vips)
	return im
}

// Name returns the VRRP instance name the metrics are labelled with.
func (im *InstanceMetrics) Name() string { return im.name }

// SetState sets hapair_vrrp_state to the value of s (StateInit .. StateFault).
func (im *InstanceMetrics) SetState(s vrrp.State) { im.state.Store(uint32(s)) }

// Transition counts a state change, labelled with the states' names ("BACKUP", "MASTER", ...).
// It also sets the state gauge, so that the two can never disagree.
func (im *InstanceMetrics) Transition(from, to vrrp.State) {
	im.counters.transition(from, to)
	im.SetState(to)
}

// SetPriority sets the effective priority.
func (im *InstanceMetrics) SetPriority(p uint8) { im.priority.Store(uint32(p)) }

// ObserveTakeover records how long becoming MASTER took (see
// hapair_vrrp_takeover_seconds).
func (im *InstanceMetrics) ObserveTakeover(d time.Duration) {
	im.takeover.observe(d.Seconds())
	im.lastTakeover.Store(math.Float64bits(d.Seconds()))
}

// ObserveRelease records, on the old MASTER, the time from the failure being
// seen to the priority-0 or lower-priority advert being sent.
func (im *InstanceMetrics) ObserveRelease(d time.Duration) { im.release.observe(d.Seconds()) }

// AdvertSent counts an advert sent with priority prio (0: releasing).
func (im *InstanceMetrics) AdvertSent(prio uint8) {
	im.counters.advertsSent.Add(1)
	if prio == 0 {
		im.counters.prioZeroSent.Add(1)
	}
}

// SteadyStarted says that a sender beside the instance sends its adverts from now on (package
// vrrp/transport/steady): scrapes add what sent and errors say it has sent and failed to send.
func (im *InstanceMetrics) SteadyStarted(sent, errors func() uint64) {
	c := &im.counters
	c.steadyMu.Lock()
	c.steadySent, c.steadyErrors = sent, errors
	c.steadyMu.Unlock()
}

// SteadyStopped says that the steady sender has stopped, having sent sent adverts and failed
// errors: they are counted, and no scrape sees them twice or not at all.
func (im *InstanceMetrics) SteadyStopped(sent, errors uint64) {
	c := &im.counters
	c.steadyMu.Lock()
	c.advertsSent.Add(sent)
	c.advertSendErrors.Add(errors)
	c.steadySent, c.steadyErrors = nil, nil
	c.steadyMu.Unlock()
}

// WatchStarted says that a watcher beside the instance reads its MASTER's adverts from now on
// (package vrrp/transport/steady's Watch): scrapes add what received says it has read.
func (im *InstanceMetrics) WatchStarted(received func() uint64) {
	c := &im.counters
	c.steadyMu.Lock()
	c.watchReceived = received
	c.steadyMu.Unlock()
}

// WatchStopped says that the watcher has stopped, having read received adverts: they are
// counted, and no scrape sees them twice or not at all.
func (im *InstanceMetrics) WatchStopped(received uint64) {
	c := &im.counters
	c.steadyMu.Lock()
	c.advertsReceived.Add(received)
	c.watchReceived = nil
	c.steadyMu.Unlock()
}

// AdvertSendError counts an advert that could not be sent (the socket refused it).
func (im *InstanceMetrics) AdvertSendError() { im.counters.advertSendErrors.Add(1) }

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
func (im *InstanceMetrics) SetVIPs(vips []netip.Prefix) { im.setVIPs(vips) }

func (im *InstanceMetrics) setVIPs(vips []netip.Prefix) {
	addrs := make([]string, 0, len(vips))
	for _, p := range vips {
		addrs = append(addrs, p.Addr().String())
	}
	if len(addrs) == 0 {
		addrs = []string{""}
	}
	sort.Strings(addrs) // the order a scrape lists them in
	addrs = dedupSorted(addrs)
	texts := make([]string, len(addrs))
	for i, a := range addrs {
		texts[i] = labelText("ip_address", a)
	}
	im.mu.Lock()
	im.addrs, im.addrText = addrs, texts
	im.mu.Unlock()
}

// vipAddrTexts is vipAddrs as label texts.
func (im *InstanceMetrics) vipAddrTexts() []string {
	im.mu.Lock()
	defer im.mu.Unlock()
	return im.addrText
}

// vipAddrs is the ip_address label values now; the slice is never written.
func (im *InstanceMetrics) vipAddrs() []string {
	im.mu.Lock()
	defer im.mu.Unlock()
	return im.addrs
}

func dedupSorted(ss []string) []string {
	out := ss[:0]
	for i, s := range ss {
		if i == 0 || s != ss[i-1] {
			out = append(out, s)
		}
	}
	return out
}

// histogram is one instance's hapair_vrrp_takeover_seconds or hapair_vrrp_release_seconds,
// on failoverBuckets. Its counts are made at the first observation: most instances never take
// over, and a histogram with no observation is exported as zeros.
type histogram struct {
	mu sync.Mutex
	h  *histogramCounts
}

type histogramCounts struct {
	buckets [len(failoverBucketsArray)]uint64 // observations in (bound[i-1], bound[i]]: not cumulative
	count   uint64
	sum     float64
}

func (h *histogram) observe(v float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.h == nil {
		h.h = &histogramCounts{}
	}
	if i := sort.SearchFloat64s(failoverBuckets, v); i < len(h.h.buckets) {
		h.h.buckets[i]++
	}
	h.h.count++
	h.h.sum += v
}

// snapshot returns the histogram's counts now (zero without an observation).
func (h *histogram) snapshot() histogramCounts {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.h == nil {
		return histogramCounts{}
	}
	return *h.h
}
