package metrics

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hapair/hapair/vrrp"
)

// instanceCounters are the counters of one VRRP instance as plain atomics, exported by
// counterCollector (hapair's series) and compatCounterCollector (keepalived's).
//
// Why not a client_golang child per series: an instance has 32 counter series of its own (7
// counters, 12 transition pairs, 11 drop reasons, 2 VIP operations: all exist from the start at
// 0) and 12 keepalived ones, and a child with its label pairs and created timestamp costs about
// 450 bytes, 19 KiB an instance: 4.9 MiB of live heap at 255 instances, most of hapair's heap.
// Here an instance costs its atomics, and the series are made when scraped.
type instanceCounters struct {
	created time.Time

	advertsSent, advertsReceived   atomic.Uint64
	prioZeroSent, prioZeroReceived atomic.Uint64
	garpSent, addrMismatch         atomic.Uint64
	advertSendErrors               atomic.Uint64
	transitions                    [len(stateNames)][len(stateNames)]atomic.Uint64
	dropped                        [len(dropReasonNames)]atomic.Uint64
	vipErrors                      [len(vipOpNames)]atomic.Uint64

	// steady sends the instance's adverts meanwhile (SteadyStarted): its counts are added to
	// advertsSent and advertSendErrors when scraped, and into them when it stops.
	steadyMu                 sync.Mutex
	steadySent, steadyErrors func() uint64 // nil: no steady sender
	// A watcher reads the instance's expected adverts meanwhile (WatchStarted): its count is
	// added to advertsReceived when scraped, and into it when it stops.
	watchReceived func() uint64 // nil: no watcher; guarded by steadyMu

	// Labels outside the fixed sets (vrrp.DropOther, an unexpected state or operation): made
	// on first use, as a CounterVec child would have been.
	mu    sync.Mutex
	other map[otherKey]uint64
}

// otherKey is a counter outside the fixed sets: the family and its label values after the
// instance.
type otherKey struct {
	family *prometheus.Desc
	a, b   string
}

// The fixed label sets, in the order of vrrp.States, vrrp.DropReasons and vipOps.
var (
	stateNames      = [...]string{vrrp.Init.String(), vrrp.Backup.String(), vrrp.Master.String(), vrrp.Fault.String()}
	dropReasonNames = [...]vrrp.DropReason{vrrp.DropLength, vrrp.DropVersion, vrrp.DropType, vrrp.DropChecksum,
		vrrp.DropTTL, vrrp.DropVRID, vrrp.DropAuth, vrrp.DropInterval, vrrp.DropPeer, vrrp.DropFamily, vrrp.DropAddrs,
		vrrp.DropDestination}
	vipOpNames = [...]string{"attach", "detach"}
)

func stateIndex(s vrrp.State) int {
	if i := int(s); i >= 0 && i < len(stateNames) && vrrp.States()[i] == s {
		return i
	}
	return -1
}

func dropIndex(r vrrp.DropReason) int {
	for i, n := range dropReasonNames {
		if n == r {
			return i
		}
	}
	return -1
}

func vipOpIndex(op string) int {
	for i, n := range vipOpNames {
		if n == op {
			return i
		}
	}
	return -1
}

func (c *instanceCounters) addOther(k otherKey, n uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.other == nil {
		c.other = map[otherKey]uint64{}
	}
	c.other[k] += n
}

// other is one counter outside the fixed sets, for the text exposition.
type other struct {
	a, b string
	v    uint64
}

// others returns the counters of family d outside the fixed sets, sorted by their label
// values; nil (and no allocation) when there are none, the usual case.
func (c *instanceCounters) others(d *prometheus.Desc) []other {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []other
	for k, v := range c.other {
		if k.family == d {
			out = append(out, other{k.a, k.b, v})
		}
	}
	slices.SortFunc(out, func(x, y other) int { return cmp.Or(cmp.Compare(x.a, y.a), cmp.Compare(x.b, y.b)) })
	return out
}

// becomeMaster is keepalived_become_master_total: the transitions to MASTER.
func (c *instanceCounters) becomeMaster() uint64 {
	master, n := stateIndex(vrrp.Master), uint64(0)
	for i := range stateNames {
		n += c.transitions[i][master].Load()
	}
	return n
}

// releaseMaster is keepalived_release_master_total: the transitions out of MASTER.
func (c *instanceCounters) releaseMaster() uint64 {
	master, n := stateIndex(vrrp.Master), uint64(0)
	for i := range stateNames {
		n += c.transitions[master][i].Load()
	}
	return n
}

func (c *instanceCounters) transition(from, to vrrp.State) {
	if f, t := stateIndex(from), stateIndex(to); f >= 0 && t >= 0 && f != t {
		c.transitions[f][t].Add(1)
		return
	}
	c.addOther(otherKey{descTransitions, from.String(), to.String()}, 1)
}

func (c *instanceCounters) drop(r vrrp.DropReason) {
	if i := dropIndex(r); i >= 0 {
		c.dropped[i].Add(1)
		return
	}
	c.addOther(otherKey{descDropped, string(r), ""}, 1)
}

func (c *instanceCounters) vipError(op string) {
	if i := vipOpIndex(op); i >= 0 {
		c.vipErrors[i].Add(1)
		return
	}
	c.addOther(otherKey{descVIPErrors, op, ""}, 1)
}

// hapair's per-instance counter families; help and labels as they were as CounterVecs.
var (
	descTransitions = prometheus.NewDesc("hapair_vrrp_transitions_total",
		"VRRP state changes of the instance.", []string{"instance", "from", "to"}, nil)
	descAdvertsSent = prometheus.NewDesc("hapair_vrrp_adverts_sent_total",
		"VRRP advertisements sent.", []string{"instance"}, nil)
	descAdvertsReceived = prometheus.NewDesc("hapair_vrrp_adverts_received_total",
		"Valid VRRP advertisements received (after every check passed).", []string{"instance"}, nil)
	descPrioZeroSent = prometheus.NewDesc("hapair_vrrp_priority_zero_sent_total",
		"VRRP advertisements with priority 0 (master releasing) sent.", []string{"instance"}, nil)
	descPrioZeroReceived = prometheus.NewDesc("hapair_vrrp_priority_zero_received_total",
		"VRRP advertisements with priority 0 (master releasing) received.", []string{"instance"}, nil)
	descDropped = prometheus.NewDesc("hapair_vrrp_packets_dropped_total",
		"VRRP packets dropped, by reason; every drop is counted.", []string{"instance", "reason"}, nil)
	descGARPSent = prometheus.NewDesc("hapair_vrrp_garp_sent_total",
		"Gratuitous ARP and unsolicited neighbour advertisement packets sent for the instance's VIPs.", []string{"instance"}, nil)
	descAddrMismatch = prometheus.NewDesc("hapair_vrrp_address_list_mismatches_total",
		"VRRP advertisements accepted although their address list differs from the instance's VIPs (overlapping: a VIP change applied on one host only).", []string{"instance"}, nil)
	descVIPErrors = prometheus.NewDesc("hapair_vrrp_vip_errors_total",
		"Errors attaching or detaching the instance's virtual IPs.", []string{"instance", "op"}, nil)
	descAdvertSendErrors = prometheus.NewDesc("hapair_vrrp_advert_send_errors_total",
		"VRRP advertisements that could not be sent (the socket refused them, e.g. ENOBUFS on a link whose transmit queue stays full).", []string{"instance"}, nil)
)

// counterCollector exports the counters of every instance of m.
type counterCollector struct{ m *Metrics }

func (counterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTransitions, descAdvertsSent, descAdvertsReceived, descPrioZeroSent,
		descPrioZeroReceived, descDropped, descGARPSent, descAddrMismatch, descVIPErrors, descAdvertSendErrors} {
		ch <- d
	}
}

func (cc counterCollector) Collect(ch chan<- prometheus.Metric) {
	for _, im := range cc.m.snapshot() {
		c, l := &im.counters, im.dtoLabels()
		emit := func(d *prometheus.Desc, v *atomic.Uint64, labels []*dto.LabelPair) {
			ch <- &counterMetric{desc: d, labels: labels, value: v.Load(), created: l.created}
		}
		sent, sendErrors := c.sent()
		ch <- &counterMetric{desc: descAdvertsSent, labels: l.instance, value: sent, created: l.created}
		ch <- &counterMetric{desc: descAdvertsReceived, labels: l.instance, value: c.received(), created: l.created}
		emit(descPrioZeroSent, &c.prioZeroSent, l.instance)
		emit(descPrioZeroReceived, &c.prioZeroReceived, l.instance)
		emit(descGARPSent, &c.garpSent, l.instance)
		emit(descAddrMismatch, &c.addrMismatch, l.instance)
		ch <- &counterMetric{desc: descAdvertSendErrors, labels: l.instance, value: sendErrors, created: l.created}
		for f := range stateNames {
			for t := range stateNames {
				if f != t {
					// Sorted by label name: from, instance, to.
					emit(descTransitions, &c.transitions[f][t], []*dto.LabelPair{fromPairs[f], l.instance[0], toPairs[t]})
				}
			}
		}
		for i := range dropReasonNames {
			emit(descDropped, &c.dropped[i], []*dto.LabelPair{l.instance[0], reasonPairs[i]})
		}
		for i := range vipOpNames {
			emit(descVIPErrors, &c.vipErrors[i], []*dto.LabelPair{l.instance[0], opPairs[i]})
		}
		c.mu.Lock()
		for k, v := range c.other {
			ct := c.created
			if k.family == descTransitions {
				ch <- prometheus.MustNewConstMetricWithCreatedTimestamp(k.family, prometheus.CounterValue, float64(v), ct, im.name, k.a, k.b)
			} else {
				ch <- prometheus.MustNewConstMetricWithCreatedTimestamp(k.family, prometheus.CounterValue, float64(v), ct, im.name, k.a)
			}
		}
		c.mu.Unlock()
	}
}

// counterMetric is one counter series as the registry sees it, with label pairs made once per
// instance and scrape (prometheus.NewConstMetric would make them and a dto.Metric for every
// series). Only the protobuf exposition (and tests) gather the per-instance series through the
// registry: the text exposition writes them itself (expose.go).
type counterMetric struct {
	desc    *prometheus.Desc
	labels  []*dto.LabelPair // sorted by name, as the registry wants them; never written
	value   uint64
	created *timestamppb.Timestamp
}

func (c *counterMetric) Desc() *prometheus.Desc { return c.desc }

func (c *counterMetric) Write(out *dto.Metric) error {
	out.Label = c.labels
	out.Counter = &dto.Counter{Value: proto.Float64(float64(c.value)), CreatedTimestamp: c.created}
	return nil
}

// labelPair is one name="value" pair of the exposition.
func labelPair(name, value string) *dto.LabelPair {
	return &dto.LabelPair{Name: proto.String(name), Value: proto.String(value)}
}

// The label pairs of the fixed sets, shared by every instance.
var (
	fromPairs, toPairs [len(stateNames)]*dto.LabelPair
	reasonPairs        [len(dropReasonNames)]*dto.LabelPair
	opPairs            [len(vipOpNames)]*dto.LabelPair
)

func init() {
	for i, s := range stateNames {
		fromPairs[i], toPairs[i] = labelPair("from", s), labelPair("to", s)
	}
	for i, r := range dropReasonNames {
		reasonPairs[i] = labelPair("reason", string(r))
	}
	for i, op := range vipOpNames {
		opPairs[i] = labelPair("op", op)
	}
}

// init sets the instance's creation time.
func (c *instanceCounters) init(created time.Time) { c.created = created }

// dtoLabels are an instance's label pairs and creation time for the registry's collectors,
// made per scrape: kept, they cost about 600 bytes an instance, for the protobuf exposition
// only.
type dtoLabels struct {
	// instance; instance, interface, vrid for hapair_vrrp_state; iname, intf, vrid for
	// keepalived's. Sorted by label name, as the registry wants them.
	instance, state, compat []*dto.LabelPair
	created                 *timestamppb.Timestamp
}

func (im *InstanceMetrics) dtoLabels() dtoLabels {
	inst := labelPair("instance", im.name)
	return dtoLabels{
		instance: []*dto.LabelPair{inst},
		state:    []*dto.LabelPair{inst, labelPair("interface", im.iface), labelPair("vrid", im.vrid)},
		compat:   []*dto.LabelPair{labelPair("iname", im.name), labelPair("intf", im.iface), labelPair("vrid", im.vrid)},
		created:  timestamppb.New(im.counters.created),
	}
}

// sent is the adverts sent and failed, with those of a steady sender running now.
func (c *instanceCounters) sent() (sent, sendErrors uint64) {
	c.steadyMu.Lock()
	defer c.steadyMu.Unlock()
	sent, sendErrors = c.advertsSent.Load(), c.advertSendErrors.Load()
	if c.steadySent != nil {
		sent += c.steadySent()
		sendErrors += c.steadyErrors()
	}
	return sent, sendErrors
}

// received is the adverts received, with those a watcher running now has read.
func (c *instanceCounters) received() uint64 {
	c.steadyMu.Lock()
	defer c.steadyMu.Unlock()
	n := c.advertsReceived.Load()
	if c.watchReceived != nil {
		n += c.watchReceived()
	}
	return n
}
