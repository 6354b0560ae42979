package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hapair/hapair/cmd/internal/config"
	"github.com/hapair/hapair/internal/syncbuf"
	"github.com/hapair/hapair/metrics"
	"github.com/hapair/hapair/supervisor"
	"github.com/hapair/hapair/vrrp"
	"github.com/hapair/hapair/vrrp/instance"
	"github.com/hapair/hapair/vrrp/transport"
)

// Fakes for the daemon's seams (host.go). The daemon's unit tests run in a testing/synctest
// bubble: the VRRP loops, the checks and the rise hold run on its fake clock, so "after 2s" is
// exact and nothing waits on the machine's load.

// events is the order in which things happened across the fakes (the stop order).
type events struct {
	mu   sync.Mutex
	list []string
}

func (e *events) add(s string) {
	e.mu.Lock()
	e.list = append(e.list, s)
	e.mu.Unlock()
}

func (e *events) all() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.list)
}

// fakeHost opens fake sockets and VIP managers that record what they are asked.
type fakeHost struct {
	ev *events

	mu       sync.Mutex
	conns    map[string]*fakeConn // by instance name
	managers []*fakeVIPs          // every manager made, in order
	failOpen error
	gone     func(netip.Prefix) // OnVIPGone's: each Detach calls it, as the kernel's notifications do
	// Rejoin: how many calls fail before one succeeds; what each success opened.
	rejoinFails int
	rejoined    []instanceIO
	// Source: each instance's address now (fakeSource when not set), or none at all.
	sources   map[string]netip.Addr
	noAddress bool
	sourceErr error // Source fails with it: netlink could not be read
}

func newFakeHost(ev *events) *fakeHost {
	return &fakeHost{ev: ev, conns: map[string]*fakeConn{}}
}

var fakeSource = netip.MustParseAddr("10.9.9.1")

func (h *fakeHost) Open(ic config.Instance, mayResume bool) (instanceIO, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failOpen != nil {
		return instanceIO{}, h.failOpen
	}
	c := &fakeConn{name: ic.Name, ev: h.ev}
	h.conns[ic.Name] = c
	v := &fakeVIPs{name: ic.Name, vips: ic.VIPs, ev: h.ev, host: h}
	h.managers = append(h.managers, v)
	return instanceIO{source: fakeSource, conn: c, vips: v, ann: &fakeAnnouncer{}}, nil
}

// Rejoin fails rejoinFails times, as on an interface without its address yet, then opens a new
// fake socket and announcer (on "index 3").
func (h *fakeHost) Rejoin(ic config.Instance, source netip.Addr) (instanceIO, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.rejoinFails > 0 {
		h.rejoinFails--
		return instanceIO{}, errors.New("primary address of eth0: no usable address (IPv4 address)")
	}
	c := &fakeConn{name: ic.Name, ev: h.ev}
	h.conns[ic.Name] = c
	nio := instanceIO{source: source, conn: c, ann: &closingAnnouncer{}, ifindex: 3}
	h.rejoined = append(h.rejoined, nio)
	return nio, nil
}

// Source is the instance's source as the test set it (sources), else the address it opened with;
// noAddress: the interface has none.
func (h *fakeHost) Source(ic config.Instance, notOurs []netip.Addr) (netip.Addr, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.noAddress {
		return netip.Addr{}, fmt.Errorf("primary address of %s: %w (IPv4 address)", ic.Interface, transport.ErrNoAddress)
	}
	if h.sourceErr != nil {
		return netip.Addr{}, h.sourceErr
	}
	if a, ok := h.sources[ic.Name]; ok {
		return a, nil
	}
	return fakeSource, nil
}

func (h *fakeHost) VIPs(ifname string, vips []netip.Prefix) (instance.VIPs, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v := &fakeVIPs{name: ifname, vips: vips, ev: h.ev, host: h}
	h.managers = append(h.managers, v)
	return v, nil
}

func (h *fakeHost) Links() (links, error) { return &fakeLinks{}, nil }

func (h *fakeHost) OnVIPGone(gone func(netip.Prefix)) {
	h.mu.Lock()
	h.gone = gone
	h.mu.Unlock()
}

// fakeLinks: every link is up and stays up.
type fakeLinks struct{}

func (*fakeLinks) Down(names []string) (bool, string) { return false, "" }

func (*fakeLinks) Index(name string) int { return 0 } // fake instances have no index: never moved

func (*fakeLinks) Watch(ctx context.Context, changed func()) error {
	changed()
	<-ctx.Done()
	return nil
}

// flappingLinks is a tracked link whose state the test sets. Like checks.Links, Down answers
// from what a Watch saw: the state it read once subscribed (a dump; changed at once), then each
// change it announced (changed). A Watch ends with the error sent on fail, as a netlink
// subscription ends at its first receive error; a change while none runs is seen by nobody.
type flappingLinks struct {
	fail chan error

	mu      sync.Mutex
	down    bool   // the link as it is
	known   bool   // the link as Down says it is: down as last seen by a Watch
	changed func() // the running Watch's; nil while none runs
	watches int    // Watch calls so far
}

func newFlappingLinks() *flappingLinks { return &flappingLinks{fail: make(chan error)} }

func (*flappingLinks) Index(name string) int { return 0 }

func (l *flappingLinks) Down(names []string) (bool, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.known && len(names) > 0 {
		return true, "link " + names[0] + " down"
	}
	return false, ""
}

func (l *flappingLinks) Watch(ctx context.Context, changed func()) error {
	l.mu.Lock()
	l.changed = changed
	l.known = l.down
	l.watches++
	l.mu.Unlock()
	changed()
	select {
	case <-ctx.Done():
		return nil
	case err := <-l.fail:
		l.mu.Lock()
		l.changed = nil
		l.mu.Unlock()
		return err
	}
}

// set puts the link down or up, and announces it if a Watch runs.
func (l *flappingLinks) set(down bool) {
	l.mu.Lock()
	l.down = down
	changed := l.changed
	if changed != nil {
		l.known = down
	}
	l.mu.Unlock()
	if changed != nil {
		changed()
	}
}

func (l *flappingLinks) watchCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.watches
}

func (h *fakeHost) conn(name string) *fakeConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.conns[name]
}

func (h *fakeHost) allManagers() []*fakeVIPs {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.managers)
}

// fakeConn is a segment with nobody else on it: writes are recorded.
type fakeConn struct {
	name   string
	ev     *events
	mu     sync.Mutex
	sent   []uint8 // priorities advertised
	closes int
}

// Receive: nobody else is on the segment, so deliver is never called.
func (c *fakeConn) Receive(deliver func(payload []byte, src, dst netip.Addr, ttl int)) {}

func (c *fakeConn) WriteAdvert(payload []byte) error {
	adv, err := vrrp.Parse(payload, fakeSource, netip.MustParseAddr("224.0.0.18"))
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.sent = append(c.sent, adv.Priority)
	c.mu.Unlock()
	if adv.Priority == 0 {
		c.ev.add(c.name + " advertised priority 0")
	}
	return nil
}

func (c *fakeConn) Close() error {
	c.mu.Lock()
	c.closes++
	c.mu.Unlock()
	return nil
}

func (c *fakeConn) lastSent() uint8 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.sent) == 0 {
		return 255
	}
	return c.sent[len(c.sent)-1]
}

// fakeVIPs is a VIP manager that knows whether its VIPs are attached.
type fakeVIPs struct {
	name string
	vips []netip.Prefix
	ev   *events
	host *fakeHost

	mu       sync.Mutex
	attached bool
	detaches int
	checks   int // Missing calls
}

func (v *fakeVIPs) Attach() error {
	v.mu.Lock()
	v.attached = true
	v.mu.Unlock()
	return nil
}

func (v *fakeVIPs) Detach() error {
	v.mu.Lock()
	v.attached = false
	v.detaches++
	v.mu.Unlock()
	v.ev.add(v.name + " detached " + prefixList(v.vips))
	v.host.mu.Lock()
	gone := v.host.gone
	v.host.mu.Unlock()
	if gone != nil {
		for _, p := range v.vips {
			gone(p)
		}
	}
	return nil
}

func (v *fakeVIPs) RemoveStale() error { return nil }

func (v *fakeVIPs) Missing() ([]netip.Prefix, error) {
	v.mu.Lock()
	v.checks++
	v.mu.Unlock()
	return nil, nil
}

func (v *fakeVIPs) checkCount() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.checks
}

func (v *fakeVIPs) has() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.attached
}

func prefixList(ps []netip.Prefix) string {
	var s []string
	for _, p := range ps {
		s = append(s, p.String())
	}
	return strings.Join(s, ",")
}

type fakeAnnouncer struct{}

func (fakeAnnouncer) Announce(vips []netip.Prefix) (int, error) { return len(vips), nil }
func (fakeAnnouncer) Close() error                              { return nil }

// closingAnnouncer is a fakeAnnouncer that says whether it was closed.
type closingAnnouncer struct {
	fakeAnnouncer
	closed atomic.Bool
}

func (a *closingAnnouncer) Close() error { a.closed.Store(true); return nil }

// recreatedLinks: every link is up; the test gives the interface a new index (created again)
// and announces it, as checks.Links does.
type recreatedLinks struct {
	mu      sync.Mutex
	index   int
	changed func()
}

func (l *recreatedLinks) Index(name string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.index
}

func (*recreatedLinks) Down(names []string) (bool, string) { return false, "" }

func (l *recreatedLinks) Watch(ctx context.Context, changed func()) error {
	l.mu.Lock()
	l.changed = changed
	l.mu.Unlock()
	changed()
	<-ctx.Done()
	return nil
}

func (l *recreatedLinks) recreate(index int) {
	l.mu.Lock()
	l.index = index
	changed := l.changed
	l.mu.Unlock()
	changed()
}

// fakeHAProxy stands for the supervisor: it says HAProxy is up when it starts, and its test
// sends further events.
type fakeHAProxy struct {
	ev     *events
	events chan supervisor.Event
	runErr error // Run returns it at once, as a failed start does
	quiet  bool  // Run says nothing: HAProxy is still starting (a huge configuration)

	mu      sync.Mutex
	reloads int
	up      bool
	timings supervisor.Config // the daemon's supervisor.Config, then SetTimings' latest
}

func newFakeHAProxy(ev *events) *fakeHAProxy {
	return &fakeHAProxy{ev: ev, events: make(chan supervisor.Event, 16)}
}

func (f *fakeHAProxy) Run(ctx context.Context) error {
	if f.runErr != nil {
		return f.runErr
	}
	if !f.quiet {
		f.send(true, "started")
	}
	<-ctx.Done()
	f.ev.add("haproxy stopped")
	return ctx.Err()
}

func (f *fakeHAProxy) send(up bool, reason string) {
	f.mu.Lock()
	f.up = up
	f.mu.Unlock()
	f.events <- supervisor.Event{Up: up, Reason: reason, At: time.Now()}
}

func (f *fakeHAProxy) Events() <-chan supervisor.Event { return f.events }

func (f *fakeHAProxy) Status() supervisor.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return supervisor.Status{Up: f.up, PID: 4242}
}

func (f *fakeHAProxy) SetTimings(c supervisor.Config) {
	f.mu.Lock()
	f.timings = c
	f.mu.Unlock()
}

func (f *fakeHAProxy) currentTimings() supervisor.Config {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.timings
}

func (f *fakeHAProxy) Reload(ctx context.Context) error {
	f.mu.Lock()
	f.reloads++
	f.mu.Unlock()
	f.ev.add("haproxy reloaded")
	return nil
}

// testDaemon is a daemon built on fakes from a configuration file, serving in the bubble.
type testDaemon struct {
	t       *testing.T
	d       *daemon
	host    *fakeHost
	haproxy *fakeHAProxy
	ev      *events
	logs    *syncbuf.Buffer // the daemon's log lines
	path    string
	cancel  context.CancelFunc
	served  chan error
}

// newTestDaemon writes yaml to a file and builds a daemon from it on fakes; start serves it.
func newTestDaemon(t *testing.T, yaml string) *testDaemon {
	t.Helper()
	td := &testDaemon{t: t, ev: &events{}, logs: &syncbuf.Buffer{}}
	td.host = newFakeHost(td.ev)
	td.haproxy = newFakeHAProxy(td.ev)
	td.path = filepath.Join(t.TempDir(), "hapair.yaml")
	td.write(yaml)
	cfg, err := config.Load(td.path)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(td.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	td.d, err = newDaemonOn(cfg, log, func(*metrics.Metrics) hostNetwork { return td.host }, func(c supervisor.Config, _ supervisor.Reporter, _ *slog.Logger) haproxy {
		td.haproxy.timings = c
		return td.haproxy
	})
	if err != nil {
		t.Fatal(err)
	}
	return td
}

func (td *testDaemon) write(yaml string) {
	td.t.Helper()
	if err := os.WriteFile(td.path, []byte(yaml), 0o600); err != nil {
		td.t.Fatal(err)
	}
}

func (td *testDaemon) start() {
	ctx, cancel := context.WithCancel(context.Background())
	td.cancel = cancel
	td.served = make(chan error, 1)
	go func() { td.served <- td.d.serve(ctx) }()
	td.t.Cleanup(td.stop)
}

// stop stops the daemon as SIGTERM does and waits for serve to return.
func (td *testDaemon) stop() {
	if td.cancel == nil {
		return
	}
	td.cancel()
	td.cancel = nil
	if err := <-td.served; err != nil {
		td.t.Errorf("serve: %v", err)
	}
}

func (td *testDaemon) status(name string) instance.Status {
	td.t.Helper()
	for _, vi := range td.d.instances {
		if vi.cfg.Name == name {
			return vi.run.Status()
		}
	}
	td.t.Fatalf("no instance %s", name)
	return instance.Status{}
}

// settle lets d of fake time pass, then waits until every goroutine has done what it can.
func settle(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

// tcpTarget is something for a TCP check to connect to: the kernel completes the handshake on
// a listening socket without Accept (no goroutine of the test blocks on the network).
type tcpTarget struct {
	t    *testing.T
	addr string
	ln   net.Listener
}

func newTCPTarget(t *testing.T) *tcpTarget {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tt := &tcpTarget{t: t, addr: ln.Addr().String(), ln: ln}
	t.Cleanup(func() { tt.ln.Close() })
	return tt
}

func (tt *tcpTarget) down() { tt.ln.Close() }

func (tt *tcpTarget) up() {
	ln, err := net.Listen("tcp", tt.addr)
	if err != nil {
		tt.t.Fatal(err)
	}
	tt.ln = ln
}

func (h *fakeHost) opened() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

func (c *fakeConn) closeCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closes
}

func (v *fakeVIPs) detachCount() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.detaches
}

func (f *fakeHAProxy) reloadCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reloads
}

// sentSince is the priorities advertised after the first n adverts.
func (c *fakeConn) sentSince(n int) []uint8 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sent[min(n, len(c.sent)):])
}

func (c *fakeConn) sentCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.sent)
}
