package metrics

import (
	"bufio"
	"fmt"
	"net/netip"
	"sync"
	"text/tabwriter"
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
	m.reg.MustRegister(b.peerUp, b.announced, b.announcements, b.withdrawals, b.withdrawDelay)
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

// BGPStatus is the bgp part of /status (absent without a bgp section).
type BGPStatus struct {
	LocalASN uint32            `json:"local_asn"`
	RouterID string            `json:"router_id"`
	Peers    []BGPPeerStatus   `json:"peers"`
	Prefixes []BGPPrefixStatus `json:"prefixes"`
}

// BGPPeerStatus is one BGP neighbour.
type BGPPeerStatus struct {
	Address string    `json:"address"`
	ASN     uint32    `json:"asn"`
	State   string    `json:"state"` // IDLE, CONNECT, ACTIVE, OPENSENT, OPENCONFIRM, ESTABLISHED
	Up      bool      `json:"up"`
	Since   time.Time `json:"since"`
	Reason  string    `json:"reason,omitempty"`
}

// BGPPrefixStatus is one announced (or withheld) service address.
type BGPPrefixStatus struct {
	Prefix    string    `json:"prefix"`
	Announced bool      `json:"announced"`
	Draining  bool      `json:"draining"` // announced with GRACEFUL_SHUTDOWN while stopping
	GatedBy   string    `json:"gated_by"`
	Reason    string    `json:"reason"`
	Since     time.Time `json:"since"`
}

// writeBGPTables renders the bgp part of `hapair status`.
func writeBGPTables(w *bufio.Writer, b *BGPStatus) {
	w.WriteString("\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "BGP PEER (AS %d, ID %s)\tASN\tSTATE\tSINCE\tLAST DOWN\n", b.LocalASN, clean(b.RouterID, 0))
	if len(b.Peers) == 0 {
		fmt.Fprintln(tw, "(none)")
	}
	for _, p := range b.Peers {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", clean(p.Address, 0), p.ASN, clean(p.State, 0), formatTime(p.Since), orDash(clean(p.Reason, maxOutput)))
	}
	tw.Flush()
	w.WriteString("\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PREFIX\tANNOUNCED\tGATED BY\tSINCE\tWHY")
	for _, p := range b.Prefixes {
		ann := yesNo(p.Announced)
		if p.Draining {
			ann += " (draining)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", clean(p.Prefix, 0), ann, clean(p.GatedBy, 0), formatTime(p.Since), clean(p.Reason, maxOutput))
	}
	tw.Flush()
}
