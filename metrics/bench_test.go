package metrics

import (
	"fmt"
	"net/http"
	"net/http/httptest"
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

// BenchmarkScrape255 is a /metrics scrape with 255 instances: its garbage is what hapair's
// resident memory grows by between collections when Prometheus scrapes it.
func BenchmarkScrape255(b *testing.B) {
	m := New(BuildInfo{})
	for i := range 255 {
		m.Instance(fmt.Sprintf("VI_%d", i), "eth0", uint8(i), netip.MustParsePrefix("10.0.0.1/32"))
	}
	h := m.Handler()
	req := httptest.NewRequest("GET", "/metrics", nil)
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(discardResponse{http.Header{}}, req)
	}
}

// discardResponse is an http.ResponseWriter that keeps nothing, so that the benchmark counts
// the scrape's allocations and not a recorder's buffer.
type discardResponse struct{ h http.Header }

func (d discardResponse) Header() http.Header         { return d.h }
func (d discardResponse) Write(p []byte) (int, error) { return len(p), nil }
func (d discardResponse) WriteHeader(int)             {}
