package checks

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func probeWithTimeout(t *testing.T, p Probe, d time.Duration) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return p.Probe(ctx)
}

// wantResult fails t unless res is ok as wanted, its output contains want, and it says when it
// ran and how long it took.
func wantResult(t *testing.T, res Result, ok bool, want string) {
	t.Helper()
	if res.OK != ok || !strings.Contains(res.Output, want) {
		t.Errorf("result ok=%v %q; want ok=%v containing %q", res.OK, res.Output, ok, want)
	}
	if res.Duration <= 0 || res.At.IsZero() {
		t.Errorf("duration %v at %v not set", res.Duration, res.At)
	}
}

func TestHTTPProbe(t *testing.T) {
	up, down := readStats(t, "up"), readStats(t, "down")
	cond := &StatsConditions{Frontends: []string{"fe_logs"}, Backends: map[string]int{"be_two": 1}}
	mux := http.NewServeMux()
	serve := func(path string, status int, body []byte) {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			w.Write(body)
		})
	}
	serve("/stats-up", 200, up)
	serve("/stats-down", 200, down)
	serve("/html", 200, []byte("<!DOCTYPE HTML PUBLIC>\n<html>Statistics Report for HAProxy</html>\n"))
	serve("/unavailable", 503, []byte("<html><body><h1>503 Service Unavailable</h1></body></html>"))
	serve("/no-newline", 200, up[:len(up)-1])
	mux.HandleFunc("/short-body", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(up)))
		w.Write(up[:len(up)/2]) // the server closes early: unexpected EOF
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/stats-up", http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	tests := []struct {
		name   string
		path   string
		expect int
		stats  *StatsConditions
		ok     bool
		want   string
	}{
		{"stats all good", "/stats-up", 0, cond, true, "frontend fe_logs OPEN, backend be_two 2 up"},
		{"stats down", "/stats-down", 0, cond, false, "frontend fe_logs is PAUSED; backend be_two has 0 active servers up, need 1"},
		{"html instead of csv", "/html", 0, cond, false, `not HAProxy stats CSV: first line "<!DOCTYPE HTML PUBLIC>"`},
		{"truncated csv", "/no-newline", 0, cond, false, "truncated stats CSV"},
		{"body cut short", "/short-body", 0, cond, false, "unexpected EOF"},
		{"503", "/unavailable", 0, nil, false, "HTTP 503, want 200: <html>"},
		{"503 expected", "/unavailable", 503, nil, true, "HTTP 503"},
		{"plain 200 without stats", "/html", 0, nil, true, "HTTP 200"},
		{"redirect not followed", "/redirect", 0, cond, false, "HTTP 302, want 200"},
		{"404", "/nothing", 0, nil, false, "HTTP 404"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewHTTPProbe(srv.URL+tt.path, tt.expect, tt.stats)
			if err != nil {
				t.Fatal(err)
			}
			wantResult(t, probeWithTimeout(t, p, 2*time.Second), tt.ok, tt.want)
		})
	}
}

func TestHTTPProbeTimeouts(t *testing.T) {
	stop := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/hang-body", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("# pxname,svname,status,act\n"))
		w.(http.Flusher).Flush()
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer close(stop)

	for _, path := range []string{"/hang", "/hang-body"} {
		t.Run(path, func(t *testing.T) {
			p, err := NewHTTPProbe(srv.URL+path, 0, &StatsConditions{})
			if err != nil {
				t.Fatal(err)
			}
			const timeout = 200 * time.Millisecond
			res := probeWithTimeout(t, p, timeout)
			if res.OK || !strings.Contains(res.Output, "timed out") {
				t.Errorf("result %+v, want a timeout failure", res)
			}
			// The deadline is set just before the probe starts its own clock: allow a few ms.
			if res.Duration < timeout-20*time.Millisecond || res.Duration > timeout+time.Second {
				t.Errorf("took %v with a %v timeout", res.Duration, timeout)
			}
			t.Logf("%s: %s in %v", path, res.Output, res.Duration)
		})
	}
}

func TestHTTPProbeRefused(t *testing.T) {
	p, err := NewHTTPProbe("http://"+closedPort(t)+"/stats;csv", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	res := probeWithTimeout(t, p, time.Second)
	if res.OK || !strings.Contains(res.Output, "connection refused") {
		t.Errorf("result %+v, want connection refused", res)
	}
}

func TestNewHTTPProbeRejects(t *testing.T) {
	for _, tt := range []struct {
		url    string
		expect int
		want   string
	}{
		{"127.0.0.1:8404/stats", 0, "http check url"},
		{"localhost:8404/stats", 0, "want http://"},
		{"ftp://127.0.0.1/", 0, "want http://"},
		{"http:///stats", 0, "with a host"},
		{"http://127.0.0.1:8404/%zz", 0, "invalid URL escape"},
		{"http://127.0.0.1:8404/", 42, "not an HTTP status"},
	} {
		if _, err := NewHTTPProbe(tt.url, tt.expect, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewHTTPProbe(%q, %d) error %v, want %q", tt.url, tt.expect, err, tt.want)
		}
	}
}

// closedPort returns a loopback address nobody listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// needHAProxy returns haproxy's path, or skips (fails under CI) without it.
func needHAProxy(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("haproxy not installed: %v", err)
		}
		t.Skipf("haproxy not installed: %v", err)
	}
	return path
}

// TestHTTPProbeRealHAProxy runs a real HAProxy with a stats listener and backends
// with 0, 1 and 2 servers, and watches the probe follow a server going down.
func TestHTTPProbeRealHAProxy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts haproxy")
	}
	haproxy := needHAProxy(t)
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer server.Close()
	serverAddr := server.Listener.Addr().String()
	statsAddr, feAddr, dead := closedPort(t), closedPort(t), closedPort(t)

	dir := t.TempDir()
	cfg := filepath.Join(dir, "haproxy.cfg")
	conf := fmt.Sprintf(`global
    pidfile %[1]s/haproxy.pid
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
listen stats
    bind %[2]s
    stats enable
    stats uri /stats
frontend fe_logs
    bind %[3]s
    default_backend be_two
backend be_empty
backend be_one
    server s1 %[4]s check inter 100ms fall 1 rise 1
backend be_two
    server s1 %[4]s check inter 100ms fall 1 rise 1
    server s2 %[5]s check inter 100ms fall 1 rise 1
`, dir, statsAddr, feAddr, serverAddr, dead)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(haproxy, "-db", "-f", cfg)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out)
		}
	})

	url := "http://" + statsAddr + "/stats;csv"
	good, err := NewHTTPProbe(url, 0, &StatsConditions{Frontends: []string{"fe_logs"}, Backends: map[string]int{"be_one": 1, "be_two": 1}})
	if err != nil {
		t.Fatal(err)
	}
	var res Result
	waitFor(t, "haproxy stats to show be_one and be_two up", func() bool {
		res = probeWithTimeout(t, good, time.Second)
		return res.OK
	})
	t.Logf("real haproxy: %s in %v", res.Output, res.Duration)

	for _, tt := range []struct {
		cond StatsConditions
		want string
	}{
		{StatsConditions{Backends: map[string]int{"be_two": 2}}, "backend be_two has 1 active servers up, need 2"},
		{StatsConditions{Backends: map[string]int{"be_empty": 1}}, "backend be_empty has 0 active servers up, need 1"},
	} {
		p, _ := NewHTTPProbe(url, 0, &tt.cond)
		waitFor(t, tt.want, func() bool {
			res = probeWithTimeout(t, p, time.Second)
			return !res.OK && res.Output == tt.want
		})
	}

	// Measure the probe against a live HAProxy.
	var total, worst time.Duration
	const n = 50
	for range n {
		res = probeWithTimeout(t, good, time.Second)
		if !res.OK {
			t.Fatalf("probe failed: %s", res.Output)
		}
		total += res.Duration
		worst = max(worst, res.Duration)
	}
	t.Logf("stats probe against haproxy 2.6: mean %v, worst %v over %d", total/n, worst, n)

	// The only server of be_one goes away: HAProxy's checks mark it down, and so does the probe.
	server.Close()
	waitFor(t, "probe to see be_one down", func() bool {
		res = probeWithTimeout(t, good, time.Second)
		return !res.OK && strings.Contains(res.Output, "backend be_one has 0 active servers up, need 1")
	})

	// HAProxy gone: refused.
	cmd.Process.Kill()
	cmd.Wait()
	waitFor(t, "probe to fail with haproxy dead", func() bool {
		res = probeWithTimeout(t, good, time.Second)
		return !res.OK && strings.Contains(res.Output, "connection refused")
	})
}
