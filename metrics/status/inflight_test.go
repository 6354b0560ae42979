package status

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hapair/hapair/metrics"
)

// blockingCollector holds every scrape until released, like a scrape slowed by a busy host.
type blockingCollector struct {
	desc    *prometheus.Desc
	entered chan struct{}
	release chan struct{}
}

func (c *blockingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c *blockingCollector) Collect(ch chan<- prometheus.Metric) {
	c.entered <- struct{}{}
	<-c.release
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1)
}

// TestRequestsInFlightAreCapped: a flood of scrapes used to be served all at once (1000
// concurrent scrapes took hapair from 21 to 130 MB, and it stayed). Beyond MaxRequestsInFlight,
// /metrics and /status answer 503 at once, as Prometheus' promhttp.HandlerOpts.MaxRequestsInFlight
// does; the requests in flight are served.
func TestRequestsInFlightAreCapped(t *testing.T) {
	m := metrics.New(metrics.BuildInfo{})
	bc := &blockingCollector{
		desc:    prometheus.NewDesc("test_blocking", "blocks", nil, nil),
		entered: make(chan struct{}, 100), release: make(chan struct{}),
	}
	m.MustRegister(bc)
	statusEntered, statusRelease := make(chan struct{}, 100), make(chan struct{})
	status := Func(func() Status {
		statusEntered <- struct{}{}
		<-statusRelease
		return sampleStatus()
	})
	srv := httptest.NewServer(NewHandler(m.Handler(), status))
	defer srv.Close()
	// Whatever happens, the handlers are released before the server closes (Close waits for them).
	var releaseMetrics, releaseStatus sync.Once
	defer releaseMetrics.Do(func() { close(bc.release) })
	defer releaseStatus.Do(func() { close(statusRelease) })

	for _, tt := range []struct {
		path    string
		entered chan struct{}
		release func()
	}{
		{"/metrics", bc.entered, func() { releaseMetrics.Do(func() { close(bc.release) }) }},
		{"/status", statusEntered, func() { releaseStatus.Do(func() { close(statusRelease) }) }},
	} {
		t.Run(tt.path, func(t *testing.T) {
			codes := make(chan int, MaxRequestsInFlight+5)
			var wg sync.WaitGroup
			get := func() {
				defer wg.Done()
				resp, err := http.Get(srv.URL + tt.path)
				if err != nil {
					t.Error(err)
					codes <- 0
					return
				}
				resp.Body.Close()
				codes <- resp.StatusCode
			}
			for range MaxRequestsInFlight {
				wg.Add(1)
				go get()
			}
			for range MaxRequestsInFlight {
				select {
				case <-tt.entered:
				case <-time.After(10 * time.Second):
					t.Fatal("the first requests never reached the handler")
				}
			}
			// Every slot is taken: five more are turned away without waiting.
			for range 5 {
				wg.Add(1)
				go get()
			}
			for range 5 {
				select {
				case code := <-codes:
					if code != http.StatusServiceUnavailable {
						t.Errorf("a request over the limit got %d, want 503", code)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("requests over the limit waited instead of being refused")
				}
			}
			tt.release()
			wg.Wait()
			close(codes)
			for code := range codes {
				if code != http.StatusOK {
					t.Errorf("a request within the limit got %d, want 200", code)
				}
			}
		})
	}
}
