package metrics

import (
	"net/netip"
	"testing"
)

// BenchmarkAdvertPath is what the VRRP loop pays per advert sent and
// received (with keepalived compatibility, the costlier case).
func BenchmarkAdvertPath(b *testing.B) {
	m := New(BuildInfo{})
	m.EnableKeepalivedCompat()
	im := m.Instance("VI_LOGS", "eth0", 51, netip.MustParsePrefix("10.0.0.10/24"))
	b.ReportAllocs()
	for b.Loop() {
		im.AdvertSent(110)
		im.AdvertReceived(100)
	}
}
