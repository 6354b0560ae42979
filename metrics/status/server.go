package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// DefaultListen is the status listener's address when the configuration
// names none: loopback only, since /status tells anyone who can reach it
// the pair's layout.
const DefaultListen = "127.0.0.1:9479"

// MaxRequestsInFlight bounds the scrapes of /metrics, and separately the requests of /status,
// served at once; more are answered 503 at once. Each request builds its answer in memory, and the
// Go runtime keeps memory it grew into: 1000 concurrent scrapes took hapair from 25 to 147 MB
// resident, for good. Prometheus' own handler has the same bound (promhttp.HandlerOpts).
const MaxRequestsInFlight = 10

// shutdownGrace bounds how long Run waits for requests in flight at stop.
const shutdownGrace = 5 * time.Second

// Server is the HTTP listener: GET /metrics, GET /status (JSON, or text with
// ?format=text), GET /healthz.
type Server struct {
	addr string
	srv  *http.Server

	mu       sync.Mutex
	ln       net.Listener
	served   chan struct{} // closed when Serve has returned
	serveErr error         // Serve's error, set before served is closed
}

// NewServer returns a server for addr (DefaultListen when empty) serving metrics (the
// registry's handler, see metrics.Metrics.Handler) and status; status may be nil, then
// /status answers 503.
func NewServer(addr string, metrics http.Handler, status Source) *Server {
	if addr == "" {
		addr = DefaultListen
	}
	s := &Server{addr: addr}
	s.srv = &http.Server{
		Handler:           NewHandler(metrics, status),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	return s
}

// NewHandler returns the listener's routes, for tests and for callers that
// serve them themselves.
func NewHandler(metrics http.Handler, status Source) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", limitInFlight(metrics, MaxRequestsInFlight))
	mux.Handle("GET /status", StatusHandler(status))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write([]byte("ok"))
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("hapair\n/metrics  Prometheus metrics\n/status   JSON status (?format=text for people)\n/healthz  liveness\n"))
	})
	return mux
}

// StatusHandler serves the status document (GET /status, ?format=json or text), for the
// listener and for hapair's control socket.
func StatusHandler(status Source) http.Handler {
	return limitInFlight(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serveStatus(w, r, status)
	}), MaxRequestsInFlight)
}

// limitInFlight serves at most n requests of h at once and answers the rest 503 at once, as
// promhttp.HandlerOpts.MaxRequestsInFlight does.
func limitInFlight(h http.Handler, n int) http.Handler {
	slots := make(chan struct{}, n)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
		default:
			http.Error(w, fmt.Sprintf("limit of concurrent requests reached (%d), try again later", n), http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func serveStatus(w http.ResponseWriter, r *http.Request, status Source) {
	w.Header().Set("Cache-Control", "no-store")
	if status == nil {
		http.Error(w, "status not available yet", http.StatusServiceUnavailable)
		return
	}
	st := status.Status()
	switch r.URL.Query().Get("format") {
	case "", "json":
		b, err := json.MarshalIndent(st, "", "  ")
		if err != nil {
			http.Error(w, "encode status: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(append(b, '\n'))
	case "text":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		WriteText(w, st)
	default:
		http.Error(w, "format: want json or text", http.StatusBadRequest)
	}
}

// Start binds the address and serves in the background. Binding errors
// (address in use, bad address) are returned here, so the caller can refuse
// to start.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return fmt.Errorf("status listener on %s: already started", s.addr)
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("status listener on %s: %w", s.addr, err)
	}
	s.ln = ln
	served := make(chan struct{})
	s.served = served
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.mu.Lock()
		s.serveErr = err
		s.mu.Unlock()
		close(served)
	}()
	return nil
}

// Addr returns the bound address once started (useful with port 0), else the
// configured one.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln != nil {
		return s.ln.Addr().String()
	}
	return s.addr
}

// Shutdown stops accepting, waits for requests in flight until ctx is done,
// and returns once the serving goroutine has ended.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	served := s.served
	s.mu.Unlock()
	if err := s.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("status listener on %s: shutdown: %w", s.addr, err)
	}
	if served == nil {
		return nil
	}
	select {
	case <-served:
		return s.err()
	case <-ctx.Done():
		return fmt.Errorf("status listener on %s: shutdown: %w", s.addr, ctx.Err())
	}
}

func (s *Server) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.serveErr != nil {
		return fmt.Errorf("status listener on %s: %w", s.addr, s.serveErr)
	}
	return nil
}

// Run starts the server and serves until ctx is done, then shuts down
// gracefully. It returns early with the error if serving fails.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(); err != nil {
		return err
	}
	s.mu.Lock()
	served := s.served
	s.mu.Unlock()
	select {
	case <-served:
		return s.err()
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	return s.Shutdown(sctx)
}
