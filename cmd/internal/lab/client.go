package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// ClientOptions configure Host.StartClientWith.
type ClientOptions struct {
	URL   string
	Every time.Duration // a new request this often; default 50ms
	// Timeout per request, connection included; default 1s. Requests
	// overlap when Timeout > Every, so one hanging request does not stop
	// the clock: every request is sent on time.
	Timeout time.Duration
}

// Client sends an HTTP GET from inside a host at a fixed rate, each on a new
// connection, and records what a user behind that host would have seen.
type Client struct {
	opts   ClientOptions
	cancel context.CancelFunc
	wg     sync.WaitGroup
	stop   sync.Once

	mu      sync.Mutex
	results []result
}

type result struct {
	sent time.Time
	ok   bool
	body string // trimmed, at most 64 bytes
	err  string
}

// Window is a stretch of failed requests: from the first failed request's
// send time to the send time of the first successful one after it (zero End
// while it lasts). Its resolution is ClientOptions.Every.
type Window struct {
	Start, End time.Time
	Failed     int    // failed requests in the window
	Err        string // the first failure's error
}

// Duration of the window; 0 while it is open.
func (w Window) Duration() time.Duration {
	if w.End.IsZero() {
		return 0
	}
	return w.End.Sub(w.Start)
}

// Change is a successful response from another server than the previous one.
type Change struct {
	At       time.Time // send time of the first request the new server answered
	From, To string
}

// ClientStats summarise the completed requests in the order they were sent.
type ClientStats struct {
	OK, Failed int
	Windows    []Window
	Responses  map[string]int // successful response body -> count
	Changes    []Change
	LastBody   string // body of the latest successful request
}

// Longest is the longest closed failure window (0 if none).
func (s ClientStats) Longest() time.Duration {
	var d time.Duration
	for _, w := range s.Windows {
		d = max(d, w.Duration())
	}
	return d
}

func (s ClientStats) String() string {
	return fmt.Sprintf("ok=%d failed=%d windows=%d longest=%v responses=%v", s.OK, s.Failed, len(s.Windows),
		s.Longest(), s.Responses)
}

// StartClient starts a client in the host that GETs url every interval (1s
// timeout). Stop it, or let ctx or Lab.Close end it.
func (h *Host) StartClient(ctx context.Context, url string, every time.Duration) (*Client, error) {
	return h.StartClientWith(ctx, ClientOptions{URL: url, Every: every})
}

// StartClientWith starts a client with all options.
func (h *Host) StartClientWith(ctx context.Context, opts ClientOptions) (*Client, error) {
	if opts.Every <= 0 {
		opts.Every = 50 * time.Millisecond
	}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	if _, err := http.NewRequest(http.MethodGet, opts.URL, nil); err != nil {
		return nil, fmt.Errorf("%s: client: %w", h.Name, err)
	}
	hc := &http.Client{
		Transport: &http.Transport{
			DialContext:       h.DialContext, // the socket is made inside the host's namespace
			DisableKeepAlives: true,          // a new connection each time, as a fresh client would
			Proxy:             nil,
		},
		Timeout: opts.Timeout,
	}
	ctx, cancel := context.WithCancel(ctx)
	c := &Client{opts: opts, cancel: cancel}
	if err := h.lab.trackClient(c); err != nil {
		cancel()
		return nil, fmt.Errorf("%s: client: %w", h.Name, err)
	}
	inflight := make(chan struct{}, int(opts.Timeout/opts.Every)+2)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		tick := time.NewTicker(opts.Every)
		defer tick.Stop()
		for {
			select {
			case inflight <- struct{}{}:
				c.wg.Add(1)
				go func(sent time.Time) {
					defer c.wg.Done()
					defer func() { <-inflight }()
					c.record(c.get(ctx, hc, sent))
				}(time.Now())
			default:
				// All slots busy: cannot happen while requests honour the
				// timeout; skipping keeps the loop on its clock.
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return c, nil
}

func (c *Client) get(ctx context.Context, hc *http.Client, sent time.Time) result {
	r := result{sent: sent}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.opts.URL, nil)
	if err != nil {
		r.err = err.Error()
		return r
	}
	resp, err := hc.Do(req)
	if err != nil {
		r.err = err.Error()
		return r
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		r.err = fmt.Sprintf("read body: %v", err)
		return r
	}
	if resp.StatusCode != http.StatusOK {
		r.err = resp.Status
		return r
	}
	b := strings.TrimSpace(string(body))
	if len(b) > 64 {
		b = b[:64]
	}
	r.ok, r.body = true, b
	return r
}

func (c *Client) record(r result) {
	// A request cut short by Stop says nothing about the service.
	if !r.ok && strings.Contains(r.err, context.Canceled.Error()) {
		return
	}
	c.mu.Lock()
	c.results = append(c.results, r)
	c.mu.Unlock()
}

// Stats summarises the requests completed so far.
func (c *Client) Stats() ClientStats {
	c.mu.Lock()
	rs := slices.Clone(c.results)
	c.mu.Unlock()
	slices.SortStableFunc(rs, func(a, b result) int { return a.sent.Compare(b.sent) })
	s := ClientStats{Responses: map[string]int{}}
	var open *Window
	for _, r := range rs {
		if !r.ok {
			s.Failed++
			if open == nil {
				open = &Window{Start: r.sent, Err: r.err}
			}
			open.Failed++
			continue
		}
		s.OK++
		s.Responses[r.body]++
		if open != nil {
			open.End = r.sent
			s.Windows = append(s.Windows, *open)
			open = nil
		}
		if s.LastBody != "" && s.LastBody != r.body {
			s.Changes = append(s.Changes, Change{At: r.sent, From: s.LastBody, To: r.body})
		}
		s.LastBody = r.body
	}
	if open != nil {
		s.Windows = append(s.Windows, *open)
	}
	return s
}

// WaitServedBy waits until a request sent after since was answered with body.
func (c *Client) WaitServedBy(ctx context.Context, since time.Time, body string) error {
	err := WaitFor(ctx, DefaultWait, func() (bool, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, r := range c.results {
			if r.ok && r.body == body && !r.sent.Before(since) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return errors.Join(fmt.Errorf("client %s: no answer from %q: %s", c.opts.URL, body, c.Stats()), err)
	}
	return nil
}

// Stop ends the client, waits for requests in flight and returns the final
// statistics. Safe to call more than once.
func (c *Client) Stop() ClientStats {
	c.stop.Do(func() {
		c.cancel()
		c.wg.Wait()
	})
	return c.Stats()
}
