package metrics

import (
	"net/netip"
	"testing"
)

// TestAdvertCountersDoNotAllocate: counting an advert sent or received, with or without the
// keepalived-compatible series, allocates nothing (it runs for every advert).
func TestAdvertCountersDoNotAllocate(t *testing.T) {
	for _, compat := range []bool{false, true} {
		m := New(BuildInfo{Version: "test"})
		if compat {
			m.EnableKeepalivedCompat()
		}
		im := m.Instance("VI_1", "eth0", 51, netip.MustParsePrefix("10.0.0.10/24"))
		n := testing.AllocsPerRun(100, func() {
			im.AdvertReceived(200)
			im.AdvertSent(100)
		})
		if n != 0 {
			t.Errorf("compat %v: %.1f allocations per advert sent and received, want 0", compat, n)
		}
	}
}
