package metrics

import (
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// withdrawBuckets cover an event-driven withdrawal (well under a millisecond inside hapair) up to
// a slow polled check.
var withdrawBuckets = []float64{
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
}

// BGPMetrics are the hapair_bgp_* series. They exist only when the bgp section does (EnableBGP),
// so a pair without BGP exports none of them. It implements bgp.Reporter and bgp.PeerReporter.
type BGPMetrics struct {
	peerUp        *prometheus.GaugeVec
	announced     *prometheus.GaugeVec
	announcements *prometheus.CounterVec
	withdrawals   *prometheus.CounterVec
	withdrawDelay prometheus.Histogram

	mu   sync.Mutex
	last map[netip.Prefix]bool
}

// EnableBGP registers the BGP series and returns them.
func (m *Metrics) EnableBGP() *BGPMetrics {
	b := &BGPMetrics{
		peerUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hapair_bgp_peer_up", Help: "1 while the BGP session to the peer is established.",
		}, []string{"peer"}),
		announced: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hapair_bgp_prefix_announced", Help: "1 while this node announces the prefix over BGP.",
		}, []string{"prefix"}),
		announcements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hapair_bgp_announcements_total", Help: "Announcements of the prefix (not counting re-announcements with GRACEFUL_SHUTDOWN).",
		}, []string{"prefix"}),
		withdrawals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hapair_bgp_withdrawals_total", Help: "Withdrawals of the prefix.",
		}, []string{"prefix"}),
		withdrawDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "hapair_bgp_withdraw_delay_seconds",
			Help:    "Time from a check failing to the withdrawal of the prefixes it gates being handed to the BGP speaker.",
			Buckets: withdrawBuckets,
		}),
		last: map[netip.Prefix]bool{},
	}
	m.register(b.peerUp, b.announced, b.announcements, b.withdrawals, b.withdrawDelay)
	return b
}

// PeerUp implements bgp.PeerReporter.
func (b *BGPMetrics) PeerUp(peer netip.Addr, up bool) {
	b.peerUp.WithLabelValues(peer.String()).Set(boolValue(up))
}

// RemovePeer drops a peer removed by a reload.
func (b *BGPMetrics) RemovePeer(peer netip.Addr) { b.peerUp.DeleteLabelValues(peer.String()) }

// PrefixAnnounced implements bgp.Reporter: it sets the gauge and counts each change.
func (b *BGPMetrics) PrefixAnnounced(prefix netip.Prefix, announced bool) {
	p := prefix.String()
	b.mu.Lock()
	was, known := b.last[prefix]
	b.last[prefix] = announced
	b.mu.Unlock()
	b.announced.WithLabelValues(p).Set(boolValue(announced))
	// Touch both counters so that they read 0, not "no data", before the first change.
	ann, wd := b.announcements.WithLabelValues(p), b.withdrawals.WithLabelValues(p)
	switch {
	case announced && (!known || !was):
		ann.Inc()
	case !announced && known && was:
		wd.Inc()
	}
}

// RemovePrefix drops a prefix removed by a reload.
func (b *BGPMetrics) RemovePrefix(prefix netip.Prefix) {
	p := prefix.String()
	b.mu.Lock()
	delete(b.last, prefix)
	b.mu.Unlock()
	b.announced.DeleteLabelValues(p)
	b.announcements.DeleteLabelValues(p)
	b.withdrawals.DeleteLabelValues(p)
}

// WithdrawDelay implements bgp.Reporter.
func (b *BGPMetrics) WithdrawDelay(d time.Duration) { b.withdrawDelay.Observe(d.Seconds()) }
