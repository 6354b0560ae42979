package metrics

import (
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// A steady sender's adverts count while it runs, in the registry, in the text exposition and in
// keepalived's series, and once it has stopped, never twice.
func TestSteadySenderCounts(t *testing.T) {
	m := New(BuildInfo{})
	m.EnableKeepalivedCompat()
	im := m.Instance("VI_LOGS", "eth0", 51, netip.MustParsePrefix("10.0.0.10/24"))
	im.AdvertSent(110)
	var sent, errs atomic.Uint64
	im.SteadyStarted(sent.Load, errs.Load)
	sent.Store(41)
	errs.Store(2)
	want := func(when string, wantSent, wantErrs float64) {
		t.Helper()
		vi := labels("instance", "VI_LOGS")
		if v, _ := value(t, m, "hapair_vrrp_adverts_sent_total", vi); v != wantSent {
			t.Errorf("%s: adverts_sent_total %v, want %v", when, v, wantSent)
		}
		if v, _ := value(t, m, "hapair_vrrp_advert_send_errors_total", vi); v != wantErrs {
			t.Errorf("%s: advert_send_errors_total %v, want %v", when, v, wantErrs)
		}
		if v, _ := value(t, m, "keepalived_advertisements_sent_total", labels("iname", "VI_LOGS")); v != wantSent {
			t.Errorf("%s: keepalived_advertisements_sent_total %v, want %v", when, v, wantSent)
		}
		body, _ := scrape(t, m, "")
		line := `hapair_vrrp_adverts_sent_total{instance="VI_LOGS"} `
		if !strings.Contains(body, line+strconv.FormatFloat(wantSent, 'g', -1, 64)+"\n") {
			t.Errorf("%s: text exposition has no %q%v", when, line, wantSent)
		}
	}
	want("while it runs", 42, 2)
	im.SteadyStopped(sent.Load(), errs.Load())
	sent.Store(1000) // a stopped sender is not read again
	want("once stopped", 42, 2)
}

// A watcher's adverts count while it runs, in the registry, in the text exposition and in
// keepalived's series, and once it has stopped, never twice.
func TestWatcherCounts(t *testing.T) {
	m := New(BuildInfo{})
	m.EnableKeepalivedCompat()
	im := m.Instance("VI_LOGS", "eth0", 51, netip.MustParsePrefix("10.0.0.10/24"))
	im.AdvertReceived(110)
	var received atomic.Uint64
	im.WatchStarted(received.Load)
	received.Store(41)
	want := func(when string, wantReceived float64) {
		t.Helper()
		if v, _ := value(t, m, "hapair_vrrp_adverts_received_total", labels("instance", "VI_LOGS")); v != wantReceived {
			t.Errorf("%s: adverts_received_total %v, want %v", when, v, wantReceived)
		}
		if v, _ := value(t, m, "keepalived_advertisements_received_total", labels("iname", "VI_LOGS")); v != wantReceived {
			t.Errorf("%s: keepalived_advertisements_received_total %v, want %v", when, v, wantReceived)
		}
		body, _ := scrape(t, m, "")
		line := `hapair_vrrp_adverts_received_total{instance="VI_LOGS"} `
		if !strings.Contains(body, line+strconv.FormatFloat(wantReceived, 'g', -1, 64)+"\n") {
			t.Errorf("%s: text exposition has no %q%v", when, line, wantReceived)
		}
	}
	want("while it runs", 42)
	im.WatchStopped(received.Load())
	received.Store(1000) // a stopped watcher is not read again
	want("once stopped", 42)
}
