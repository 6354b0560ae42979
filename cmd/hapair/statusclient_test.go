package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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
	_, err := fetchStatus(context.Background(), strings.TrimPrefix(srv.URL, "http://"))
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("fetchStatus from a squatter sending %d bytes = %v, want refused as larger than allowed", sent, err)
	}
}
