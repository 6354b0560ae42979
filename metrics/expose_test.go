package metrics

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hapair/hapair/vrrp"
)

// registryText is the text exposition client_golang's handler makes of every family of m, as
// /metrics served it before hapair wrote the per-instance families itself.
func registryText(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(m.Registry(), promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return withoutRuntime(rec.Body.String())
}

// scrape is what /metrics answers to a text scrape (Prometheus' Accept header).
func scrape(t *testing.T, m *Metrics, acceptEncoding string) (body string, rsp *http.Response) {
	t.Helper()
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1")
	if acceptEncoding != "" {
		req.Header.Set("Accept-Encoding", acceptEncoding)
	}
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, req)
	rsp = rec.Result()
	var r io.Reader = rsp.Body
	if rsp.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(rsp.Body)
		if err != nil {
			t.Fatal(err)
		}
		r = gz
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), rsp
}

// withoutRuntime drops the Go and process collectors' families, whose values change between
// two scrapes.
func withoutRuntime(s string) string {
	var out []string
	for _, l := range strings.SplitAfter(s, "\n") {
		f := strings.TrimPrefix(strings.TrimPrefix(l, "# HELP "), "# TYPE ")
		if strings.HasPrefix(f, "go_") || strings.HasPrefix(f, "process_") {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "")
}

// populateInstances adds instances in every state, with counters, histograms, VIPs and a drop
// reason outside the fixed set, named so that their order by name is not their order of
// creation.
func populateInstances(m *Metrics) {
	for i, name := range []string{"VI_2", "VI_10", "VI_1", "web \"quoted\"\\"} {
		im := m.Instance(name, fmt.Sprintf("eth%d", i), uint8(50+i), netip.MustParsePrefix(fmt.Sprintf("10.0.%d.10/24", i)), netip.MustParsePrefix("2001:db8::1/64"))
		im.SetPriority(uint8(100 + i))
		im.Transition(vrrp.Init, vrrp.Backup)
		for range i {
			im.Transition(vrrp.Backup, vrrp.Master)
			im.ObserveTakeover(time.Duration(i) * 700 * time.Millisecond)
			im.Transition(vrrp.Master, vrrp.Backup)
			im.ObserveRelease(time.Duration(i) * time.Millisecond)
		}
		for range 1000 * i {
			im.AdvertSent(110)
			im.AdvertReceived(100)
		}
		im.AdvertSent(0)
		for range i {
			im.AdvertSendError()
		}
		im.Dropped(vrrp.DropTTL)
		im.Dropped(vrrp.DropOther)
		im.Dropped(vrrp.DropReason("aaa-first"))
		im.GARPSent(3 * i)
		im.VIPError(vrrp.ActDetachVIPs)
		im.AddrListMismatch()
	}
	m.OtherVRID("eth0").Add(4)
}

// TestTextExpositionMatchesRegistry: the text /metrics writes itself is, byte for byte, what
// client_golang's handler writes of the same registry (families, help, types, series, values,
// order), with and without keepalived compatibility and gzip, with and without instances.
func TestTextExpositionMatchesRegistry(t *testing.T) {
	for _, tc := range []struct {
		name      string
		compat    bool
		instances bool
		encoding  string
	}{
		{"instances", false, true, ""},
		{"instances, keepalived compat, gzip", true, true, "gzip"},
		{"no instances, keepalived compat", true, false, "identity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := New(BuildInfo{Version: "v1", Commit: "abc"})
			if tc.compat {
				m.EnableKeepalivedCompat()
			}
			populate(t, m)
			if !tc.instances {
				m.RemoveInstance("VI_LOGS")
			} else {
				populateInstances(m)
			}
			want := registryText(t, m)
			body, rsp := scrape(t, m, tc.encoding)
			got := withoutRuntime(body)
			if got != want {
				t.Errorf("text exposition differs from the registry's:\n%s", firstDiff(got, want))
			}
			if ct := rsp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
				t.Errorf("Content-Type %q", ct)
			}
			if ce := rsp.Header.Get("Content-Encoding"); (tc.encoding == "gzip") != (ce == "gzip") {
				t.Errorf("Accept-Encoding %q: Content-Encoding %q", tc.encoding, ce)
			}
			if !strings.Contains(body, "go_goroutines ") || !strings.Contains(body, "process_resident_memory_bytes ") {
				t.Error("the Go and process collectors' series are missing")
			}
		})
	}
}

func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range min(len(g), len(w)) {
		if g[i] != w[i] {
			return fmt.Sprintf("line %d:\n got  %s\n want %s", i+1, g[i], w[i])
		}
	}
	return fmt.Sprintf("%d lines, want %d", len(g), len(w))
}

// TestProtobufExpositionStillServed: a client that asks for the protobuf format gets the
// registry's exposition, per-instance families included.
func TestProtobufExpositionStillServed(t *testing.T) {
	m := New(BuildInfo{})
	populate(t, m)
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.Header.Set("Accept", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, req)
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/vnd.google.protobuf") {
		t.Fatalf("Content-Type %q, want protobuf", ct)
	}
	if !bytes.Contains(rec.Body.Bytes(), []byte("hapair_vrrp_takeover_seconds")) {
		t.Error("the protobuf exposition lacks the per-instance families")
	}
}

// TestScrapeGarbageIsSmall: a text scrape of 255 instances allocates little (it made 5 MB
// through client_golang's registry, all of it alive until encoded).
func TestScrapeGarbageIsSmall(t *testing.T) {
	m := New(BuildInfo{})
	m.EnableKeepalivedCompat()
	for i := range 255 {
		m.Instance(fmt.Sprintf("VI_%d", i), "eth0", uint8(i), netip.MustParsePrefix("10.0.0.1/32"))
	}
	h := m.Handler()
	req := httptest.NewRequest("GET", "/metrics", nil)
	h.ServeHTTP(discardResponse{http.Header{}}, req) // the collectors' first-time set-up
	bytes := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			h.ServeHTTP(discardResponse{http.Header{}}, req)
		}
	}).AllocedBytesPerOp()
	t.Logf("%d bytes allocated per scrape of 255 instances", bytes)
	if bytes > 512<<10 {
		t.Errorf("a scrape of 255 instances allocates %d bytes, want at most 512 KiB", bytes)
	}
}
