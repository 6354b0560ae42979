package checks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// maxHTTPBody bounds what an HTTP probe reads. A stats CSV is about 300 bytes per
// server, so this allows for tens of thousands of servers.
const maxHTTPBody = 8 << 20

// HTTPProbe GETs a URL and expects a status; with Stats set it also parses the
// answer as HAProxy stats CSV and checks the conditions.
type HTTPProbe struct {
	url    string
	expect int
	stats  *StatsConditions
	client *http.Client
}

// NewHTTPProbe checks the URL and builds the probe. expect 0 means 200. stats nil
// means the body is not looked at.
//
// The probe opens a new connection every time (a kept-alive connection would hide
// a listener that stopped accepting), uses no proxy, and does not follow redirects:
// a redirect is reported as its own status.
func NewHTTPProbe(rawURL string, expect int, stats *StatsConditions) (*HTTPProbe, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("http check url %q: %w", rawURL, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("http check url %q: want http:// or https:// with a host", rawURL)
	}
	if expect == 0 {
		expect = http.StatusOK
	}
	if expect < 100 || expect > 599 {
		return nil, fmt.Errorf("http check expected status %d: not an HTTP status", expect)
	}
	tr := &http.Transport{
		Proxy:             nil,
		DisableKeepAlives: true,
	}
	return &HTTPProbe{
		url:    rawURL,
		expect: expect,
		stats:  stats,
		client: &http.Client{
			Transport: tr,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}, nil
}

// Probe runs one GET; the context carries the check's timeout.
func (p *HTTPProbe) Probe(ctx context.Context) Result {
	start := time.Now()
	res := p.probe(ctx, start)
	res.At, res.Duration = start, time.Since(start)
	return res
}

func (p *HTTPProbe) probe(ctx context.Context, start time.Time) Result {
	fail := func(format string, args ...any) Result {
		return Result{Output: fmt.Sprintf(format, args...)}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return fail("GET %s: %v", p.url, err)
	}
	req.Header.Set("User-Agent", "hapair-check")
	resp, err := p.client.Do(req)
	if err != nil {
		if timedOut(ctx, err) {
			return fail("GET %s: timed out after %s", p.url, time.Since(start).Round(time.Millisecond))
		}
		return fail("GET %s: %v", p.url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPBody+1))
	if err != nil {
		if timedOut(ctx, err) {
			return fail("GET %s: timed out reading the answer after %s", p.url, time.Since(start).Round(time.Millisecond))
		}
		return fail("GET %s: read answer: %v", p.url, err)
	}
	if len(body) > maxHTTPBody {
		return fail("GET %s: answer larger than %d bytes", p.url, maxHTTPBody)
	}
	if resp.StatusCode != p.expect {
		return fail("GET %s: HTTP %d, want %d: %s", p.url, resp.StatusCode, p.expect,
			shorten(strings.TrimSpace(string(body)), 100))
	}
	if p.stats == nil {
		return Result{OK: true, Output: fmt.Sprintf("HTTP %d", resp.StatusCode)}
	}
	st, err := ParseStatsCSV(body)
	if err != nil {
		return fail("GET %s: %v", p.url, err)
	}
	summary, err := p.stats.Check(st)
	if err != nil {
		return fail("%v", err)
	}
	if summary == "" {
		summary = fmt.Sprintf("%d stats rows", len(st.Rows))
	}
	return Result{OK: true, Output: summary}
}

// timedOut tells a probe whose context ran out of time (the Runner's timeout or a
// caller's deadline) from other errors. err counts too: the network stack turns a
// context deadline into a socket deadline, which may fire a moment before the
// context's own timer marks it done.
func timedOut(ctx context.Context, err error) bool {
	return errors.Is(context.Cause(ctx), context.DeadlineExceeded) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)
}
