package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hapair/hapair/cmd/internal/lab/labtest"
)

// TestFetchStatusBoundsTheAnswer: whatever squats on the status port, `hapair status` and
// `hapair reload` read a bounded answer (938 MB were read from such a squatter).
func TestFetchStatusBoundsTheAnswer(t *testing.T) {
	const sent = 64 << 20 // the squatter stops after 64 MiB, so a test of the old code ends too
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"router_id": "`))
		chunk := []byte(strings.Repeat("a", 1<<16))
		for n := 0; n < sent; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		w.Write([]byte(`"}`))
	}))
	defer srv.Close()
	_, err := fetchStatus(context.Background(), listenerEndpoint(strings.TrimPrefix(srv.URL, "http://")))
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("fetchStatus from a squatter sending %d bytes = %v, want refused as larger than allowed", sent, err)
	}
}

// TestStatusGoesToHapairNotToAProxy: an operator's shell often has http_proxy set; with
// status.listen on a host address (not loopback, which Go never proxies), `hapair status` and
// `hapair reload` went through that proxy, which cannot reach the node's listener or answers for
// something else. They speak to the listener directly. Everything runs in a lab namespace: the
// command, its listener and the proxy.
func TestStatusGoesToHapairNotToAProxy(t *testing.T) {
	l := labtest.New(t)
	h := labtest.AddHost(t, l, "lb1", l.Addr(11))
	var direct, proxy net.Listener
	if err := h.Do(func() (err error) {
		if direct, err = net.Listen("tcp", netip.AddrPortFrom(h.IP(), 0).String()); err != nil {
			return err
		}
		proxy, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	go http.Serve(direct, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"router_id": "lb1"}`))
	}))
	proxied := make(chan string, 1)
	go http.Serve(proxy, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case proxied <- r.URL.String():
		default:
		}
		http.Error(w, "a proxy", http.StatusBadGateway)
	}))
	t.Cleanup(func() { direct.Close(); proxy.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := h.Command(ctx, hapairBin, "status", "--json", "--addr", direct.Addr().String())
	cmd.Env = append(cmd.Env, "http_proxy=http://"+proxy.Addr().String(), "HTTP_PROXY=http://"+proxy.Addr().String())
	out, err := cmd.CombinedOutput()
	select {
	case u := <-proxied:
		t.Errorf("hapair status went through http_proxy (%s)", u)
	default:
	}
	if err != nil || !strings.Contains(string(out), `"router_id": "lb1"`) {
		t.Errorf("hapair status --addr %s: %v\n%s", direct.Addr(), err, out)
	}
}
