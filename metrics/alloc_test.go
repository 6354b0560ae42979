package metrics

import (
	"net/netip"
	"testing"
)

// TestAdvertCountersDoNotAllocate: counting an advert sent, received or failed to send, with or
// without the keepalived-compatible series, allocates nothing (it runs for every advert; on a
// link whose transmit queue stays full, every advert fails).
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
			im.AdvertSendError()
		})
		if n != 0 {
			t.Errorf("compat %v: %.1f allocations per advert sent and received, want 0", compat, n)
		}
	}
}
