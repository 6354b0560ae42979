package metrics

import (
	"math"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// hapair's per-instance gauge and histogram families; help and labels as they were as
// GaugeVecs and HistogramVecs.
var (
	descState = prometheus.NewDesc("hapair_vrrp_state",
		"VRRP state of the instance: 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT.", []string{"instance", "interface", "vrid"}, nil)
	descPriority = prometheus.NewDesc("hapair_vrrp_priority",
		"Effective VRRP priority of the instance (base priority plus tracked check weights).", []string{"instance"}, nil)
	descTakeover = prometheus.NewDesc("hapair_vrrp_takeover_seconds",
		"On becoming MASTER: time from the previous master's last valid (or priority-0 / lower-priority) advert to VIPs attached and the first gratuitous ARP sent.", []string{"instance"}, nil)
	descLastTakeover = prometheus.NewDesc("hapair_vrrp_last_takeover_seconds",
		"Duration of the most recent takeover of the instance, as observed in hapair_vrrp_takeover_seconds.", []string{"instance"}, nil)
	descRelease = prometheus.NewDesc("hapair_vrrp_release_seconds",
		"On the old MASTER: time from the failure being seen to the priority-0 or lower-priority advert being sent.", []string{"instance"}, nil)
	descCompatState = prometheus.NewDesc("keepalived_vrrp_state",
		"keepalived exporter compatibility: VRRP state per VIP, 0 INIT, 1 BACKUP, 2 MASTER, 3 FAULT.", []string{"iname", "intf", "vrid", "ip_address"}, nil)
)

// gaugeCollector exports the gauges and histograms of every instance of m: the registry's way
// (the protobuf exposition, and tests); the text exposition writes the same values itself.
type gaugeCollector struct{ m *Metrics }

func (gaugeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descState, descPriority, descTakeover, descLastTakeover, descRelease} {
		ch <- d
	}
}

func (gc gaugeCollector) Collect(ch chan<- prometheus.Metric) {
	for _, im := range gc.m.snapshot() {
		l := im.dtoLabels()
		ch <- &gaugeMetric{desc: descState, labels: l.state, value: float64(im.state.Load())}
		ch <- &gaugeMetric{desc: descPriority, labels: l.instance, value: float64(im.priority.Load())}
		ch <- &gaugeMetric{desc: descLastTakeover, labels: l.instance, value: math.Float64frombits(im.lastTakeover.Load())}
		ch <- &histogramMetric{desc: descTakeover, labels: l.instance, counts: im.takeover.snapshot(), created: l.created}
		ch <- &histogramMetric{desc: descRelease, labels: l.instance, counts: im.release.snapshot(), created: l.created}
	}
}

// compatStateCollector exports keepalived_vrrp_state, one series per VIP of every instance.
type compatStateCollector struct{ m *Metrics }

func (compatStateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descCompatState }

func (cc compatStateCollector) Collect(ch chan<- prometheus.Metric) {
	for _, im := range cc.m.snapshot() {
		st := float64(im.state.Load())
		for _, a := range im.vipAddrs() {
			// Sorted by label name: iname, intf, ip_address, vrid.
			l := im.dtoLabels().compat
			ch <- &gaugeMetric{desc: descCompatState, labels: []*dto.LabelPair{l[0], l[1], labelPair("ip_address", a), l[2]}, value: st}
		}
	}
}

// gaugeMetric is one gauge series as a scrape sees it.
type gaugeMetric struct {
	desc   *prometheus.Desc
	labels []*dto.LabelPair // sorted by name; never written
	value  float64
}

func (g *gaugeMetric) Desc() *prometheus.Desc { return g.desc }

func (g *gaugeMetric) Write(out *dto.Metric) error {
	out.Label = g.labels
	out.Gauge = &dto.Gauge{Value: proto.Float64(g.value)}
	return nil
}

// histogramMetric is one histogram series on failoverBuckets, as client_golang writes one.
type histogramMetric struct {
	desc    *prometheus.Desc
	labels  []*dto.LabelPair
	counts  histogramCounts
	created *timestamppb.Timestamp
}

func (h *histogramMetric) Desc() *prometheus.Desc { return h.desc }

func (h *histogramMetric) Write(out *dto.Metric) error {
	buckets := make([]*dto.Bucket, len(failoverBuckets))
	var cum uint64
	for i, b := range failoverBuckets {
		cum += h.counts.buckets[i]
		buckets[i] = &dto.Bucket{CumulativeCount: proto.Uint64(cum), UpperBound: proto.Float64(b)}
	}
	out.Label = h.labels
	out.Histogram = &dto.Histogram{
		SampleCount:      proto.Uint64(h.counts.count),
		SampleSum:        proto.Float64(h.counts.sum),
		Bucket:           buckets,
		CreatedTimestamp: h.created,
	}
	return nil
}
