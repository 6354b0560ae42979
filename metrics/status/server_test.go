package status

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hapair/hapair/metrics"
	"github.com/hapair/hapair/supervisor"
	"github.com/hapair/hapair/vrrp"
)

func TestHandler(t *testing.T) {
	m := metrics.New(metrics.BuildInfo{Version: "1.2.3"})
	m.Instance("VI_LOGS", "eth0", 51).Transition(vrrp.Backup, vrrp.Master)
	m.HAProxyReload(supervisor.ReloadRefused)
	st := sampleStatus()
	h := NewHandler(m.Handler(), Func(func() Status { return st }))

	tests := []struct {
		name     string
		method   string
		target   string
		code     int
		ctype    string
		contains []string
	}{
		{"metrics", "GET", "/metrics", 200, "text/plain", []string{
			`hapair_vrrp_state{instance="VI_LOGS",interface="eth0",vrid="51"} 2`,
			`hapair_haproxy_reloads_total{result="refused"} 1`,
			`hapair_build_info{commit="",goversion="go`,
			"go_goroutines", "process_start_time_seconds"}},
		{"metrics HEAD", "HEAD", "/metrics", 200, "text/plain", nil},
		{"status json", "GET", "/status", 200, "application/json", []string{`"router_id": "loglb01"`, `"state": "MASTER"`}},
		{"status text", "GET", "/status?format=text", 200, "text/plain", []string{" VRRP Instance = VI_LOGS\n   State = MASTER\n"}},
		{"status bad format", "GET", "/status?format=xml", 400, "text/plain", nil},
		{"healthz", "GET", "/healthz", 200, "text/plain", []string{"ok"}},
		{"healthz POST", "POST", "/healthz", 405, "", nil},
		{"metrics DELETE", "DELETE", "/metrics", 405, "", nil},
		{"index", "GET", "/", 200, "text/plain", []string{"/metrics", "/status", "/healthz"}},
		{"unknown", "GET", "/debug/pprof/", 404, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.target, nil))
			if rec.Code != tt.code {
				t.Fatalf("code = %d, want %d; body %q", rec.Code, tt.code, rec.Body.String())
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, tt.ctype) {
				t.Errorf("Content-Type = %q, want %q...", ct, tt.ctype)
			}
			for _, want := range tt.contains {
				if !strings.Contains(rec.Body.String(), want) {
					t.Errorf("body lacks %q:\n%.2000s", want, rec.Body.String())
				}
			}
		})
	}

	// /healthz is exactly "ok": probes compare it.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Body.String() != "ok" {
		t.Errorf("/healthz body = %q, want \"ok\"", rec.Body.String())
	}
	// /status decodes back into the same Status: `hapair status` relies on it.
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/status", nil))
	var got Status
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("decode /status: %v", err)
	}
	if got.Instances[1].EffectivePriority != 80 || *got.HAProxy.LastExit != 139 || time.Duration(got.Instances[0].InState) != 90*time.Second {
		t.Errorf("decoded /status differs: %+v", got)
	}
}

func TestHandlerNilStatus(t *testing.T) {
	h := NewHandler(metrics.New(metrics.BuildInfo{}).Handler(), nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/status", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("code = %d, want 503", rec.Code)
	}
}

func TestServerLifecycle(t *testing.T) {
	s := NewServer("127.0.0.1:0", metrics.New(metrics.BuildInfo{}).Handler(), Func(func() Status { return Status{RouterID: "r1"} }))
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil {
		t.Error("second Start: want an error")
	}
	addr := s.Addr()
	if strings.HasSuffix(addr, ":0") {
		t.Fatalf("Addr = %s, want the bound port", addr)
	}
	body := get(t, "http://"+addr+"/healthz")
	if body != "ok" {
		t.Errorf("/healthz = %q", body)
	}
	if body := get(t, "http://"+addr+"/status"); !strings.Contains(body, `"router_id": "r1"`) {
		t.Errorf("/status = %q", body)
	}

	// The port is taken while we serve: a second listener must say so.
	other := NewServer(addr, metrics.New(metrics.BuildInfo{}).Handler(), nil)
	if err := other.Start(); err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("bind on a used port: err = %v, want one naming %s", err, addr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("still accepting after Shutdown")
	}
}

func TestServerRun(t *testing.T) {
	s := NewServer("127.0.0.1:0", metrics.New(metrics.BuildInfo{}).Handler(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()

	// Poll until bound and answering.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if a := s.Addr(); !strings.HasSuffix(a, ":0") {
			if resp, err := http.Get("http://" + a + "/healthz"); err == nil {
				resp.Body.Close()
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("server never answered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestServerRunBindError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	err = NewServer(ln.Addr().String(), metrics.New(metrics.BuildInfo{}).Handler(), nil).Run(context.Background())
	var opErr *net.OpError
	if !errors.As(err, &opErr) {
		t.Errorf("Run on a used port = %v, want a *net.OpError", err)
	}
}

func TestServerDefaultAddr(t *testing.T) {
	if got := NewServer("", metrics.New(metrics.BuildInfo{}).Handler(), nil).Addr(); got != DefaultListen {
		t.Errorf("Addr = %q, want %q", got, DefaultListen)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return string(b)
}
