package metrics

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestBGPMetrics(t *testing.T) {
	m := New(BuildInfo{})
	if n := len(gather(t, m)); n == 0 {
		t.Fatal("nothing gathered")
	}
	for name := range gather(t, m) {
		if strings.HasPrefix(name, "hapair_bgp_") {
			t.Errorf("%s exported without a bgp section", name)
		}
	}
	b := m.EnableBGP()
	p := netip.MustParsePrefix("10.77.9.10/32")
	peer := netip.MustParseAddr("10.0.0.1")
	b.PeerUp(peer, false)
	b.PrefixAnnounced(p, false) // declared, not announced: both counters read 0
	if got := testutil.ToFloat64(b.announcements.WithLabelValues(p.String())); got != 0 {
		t.Errorf("announcements after declaring = %v, want 0", got)
	}
	b.PrefixAnnounced(p, true)
	b.PrefixAnnounced(p, true) // no change, not counted
	b.PrefixAnnounced(p, false)
	b.PrefixAnnounced(p, false)
	b.PrefixAnnounced(p, true)
	b.PeerUp(peer, true)
	b.WithdrawDelay(40 * time.Microsecond)
	for _, c := range []struct {
		name string
		got  float64
		want float64
	}{
		{"announced", testutil.ToFloat64(b.announced.WithLabelValues(p.String())), 1},
		{"announcements", testutil.ToFloat64(b.announcements.WithLabelValues(p.String())), 2},
		{"withdrawals", testutil.ToFloat64(b.withdrawals.WithLabelValues(p.String())), 1},
		{"peer up", testutil.ToFloat64(b.peerUp.WithLabelValues(peer.String())), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if n := testutil.CollectAndCount(b.withdrawDelay); n != 1 {
		t.Errorf("withdraw delay histogram: %d series", n)
	}
	b.RemovePrefix(p)
	b.RemovePeer(peer)
	for name, mf := range gather(t, m) {
		if (name == "hapair_bgp_prefix_announced" || name == "hapair_bgp_peer_up") && len(mf.GetMetric()) != 0 {
			t.Errorf("%s still has %d series after removal", name, len(mf.GetMetric()))
		}
	}
}
