package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/hapair/hapair/bgp"
	"github.com/hapair/hapair/checks"
	"github.com/hapair/hapair/cmd/internal/config"
	"github.com/hapair/hapair/metrics"
	"github.com/hapair/hapair/metrics/status"
	"github.com/hapair/hapair/vrrp"
	"github.com/hapair/hapair/vrrp/instance"
)

// Compile-time checks that metrics speaks the interfaces package bgp owns.
var (
	_ bgp.Reporter     = (*metrics.BGPMetrics)(nil)
	_ bgp.PeerReporter = (*metrics.BGPMetrics)(nil)
)

// bgpMachine is what the BGP side needs from the machine: the BGP speaker, the loopback and the
// route toward a peer. hostMachine is the real one; the daemon's unit tests use a fake.
type bgpMachine interface {
	StartSpeaker(ctx context.Context, cfg bgp.ServerConfig, rep bgp.PeerReporter, log *slog.Logger) (bgpServer, error)
	Loopback(name string) (bgpLoopback, error)
	RouterIDToward(peer netip.Addr) (netip.Addr, error)
}

// bgpServer is a running speaker (*bgp.Server).
type bgpServer interface {
	bgp.Speaker
	SetPeers(ctx context.Context, peers []bgp.Peer) error
	Peers() []bgp.PeerStatus
	Stop()
}

// bgpLoopback holds the service addresses (*bgp.Loopback).
type bgpLoopback interface {
	Add(p netip.Prefix) error
	Remove(p netip.Prefix) error
}

// hostMachine is the real machine: the BGP speaker (package bgp) and netlink.
type hostMachine struct{}

func (hostMachine) StartSpeaker(ctx context.Context, cfg bgp.ServerConfig, rep bgp.PeerReporter, log *slog.Logger) (bgpServer, error) {
	s, err := bgp.Start(ctx, cfg, rep, log)
	if err != nil {
		return nil, err // not a nil *bgp.Server in a non-nil interface
	}
	return s, nil
}

func (hostMachine) Loopback(name string) (bgpLoopback, error) {
	lo, err := bgp.OpenLoopback(name)
	if err != nil {
		return nil, err
	}
	return lo, nil
}

func (hostMachine) RouterIDToward(peer netip.Addr) (netip.Addr, error) {
	return bgp.RouterIDToward(peer)
}

// bgpSpeaker is the daemon's BGP side: the BGP speaker, the Gate deciding what it
// announces, and the service addresses on the loopback.
type bgpSpeaker struct {
	log     *slog.Logger
	metrics *metrics.BGPMetrics
	machine bgpMachine

	mu       sync.Mutex  // guards cfg against status() during a reload, and gate against drainBGP
	cfg      *config.BGP // as started; reload replaces peers, routes and drain time
	routerID netip.Addr
	server   bgpServer
	gate     *bgp.Gate
	lo       bgpLoopback
	onLo     map[netip.Prefix]bool // addresses this hapair put on the loopback

	// VRRP transitions wait here for followStates (the VRRP loop must not block on the speaker).
	qmu         sync.Mutex
	queue       []instanceChange
	wake        chan struct{}
	stopFollows context.CancelFunc
}

func newBGPSpeaker(cfg *config.BGP, m *metrics.Metrics, log *slog.Logger) *bgpSpeaker {
	return &bgpSpeaker{log: log, metrics: m.EnableBGP(), machine: hostMachine{}, cfg: cfg,
		onLo: map[netip.Prefix]bool{}, wake: make(chan struct{}, 1)}
}

func bgpRoutes(cfg *config.BGP) []bgp.Route {
	out := make([]bgp.Route, 0, len(cfg.Announce))
	for _, a := range cfg.Announce {
		out = append(out, bgp.Route{Prefix: a.Prefix, Checks: a.Checks, Instance: a.VRRPInstance})
	}
	return out
}

func bgpPeers(cfg *config.BGP) []bgp.Peer {
	out := make([]bgp.Peer, 0, len(cfg.Peers))
	for _, p := range cfg.Peers {
		out = append(out, bgp.Peer{
			Address: p.Address, ASN: p.ASN, HoldTime: p.HoldTime, Port: p.Port,
			Password: p.Password, Passive: p.Passive, Multihop: p.Multihop,
		})
	}
	return out
}

// start puts the checks-gated service addresses on the loopback (before HAProxy starts, so that
// it can bind them) and opens the sessions. Nothing is announced until the Gate's inputs allow.
func (b *bgpSpeaker) start(ctx context.Context, drained func() bool) error {
	lo, err := b.machine.Loopback(b.cfg.Loopback)
	if err != nil {
		return err
	}
	b.lo = lo
	b.syncLoopback(b.cfg)
	b.routerID = b.cfg.RouterID
	if !b.routerID.IsValid() {
		id, err := b.machine.RouterIDToward(b.cfg.Peers[0].Address)
		if err != nil {
			return err
		}
		b.routerID = id
	}
	srv, err := b.machine.StartSpeaker(ctx, bgp.ServerConfig{
		LocalASN: b.cfg.LocalASN, RouterID: b.routerID, ListenPort: b.cfg.ListenPort, Peers: bgpPeers(b.cfg),
	}, b.metrics, b.log)
	if err != nil {
		return err
	}
	b.server = srv
	gate := bgp.NewGate(bgpRoutes(b.cfg), srv, b.metrics, b.log)
	b.mu.Lock()
	b.gate = gate
	b.mu.Unlock()
	fctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	b.stopFollows = stop
	go b.followStates(fctx, gate) // transitions queued before now are delivered too
	// Read after the gate is published: a drain arriving meanwhile (the control socket is open
	// already) either finds the gate or has set the flag read here.
	if drained() { // a drain recorded in the runtime dir holds the checks-gated prefixes back
		gate.SetDrained(true, time.Now())
	}
	b.log.Info(fmt.Sprintf("BGP speaker started: AS %d, router id %s, %d peers, %d prefixes",
		b.cfg.LocalASN, b.routerID, len(b.cfg.Peers), len(b.cfg.Announce)))
	return nil
}

// syncLoopback makes the loopback hold exactly the checks-gated addresses of cfg (those gated by
// a VRRP instance are the instance's VIPs: VRRP attaches them where they belong).
func (b *bgpSpeaker) syncLoopback(cfg *config.BGP) {
	want := map[netip.Prefix]bool{}
	for _, a := range cfg.Announce {
		if a.VRRPInstance == "" {
			want[a.Prefix] = true
		}
	}
	for p := range want {
		if b.onLo[p] {
			continue
		}
		if err := b.lo.Add(p); err != nil {
			b.log.Error(fmt.Sprintf("BGP: %v", err))
			continue
		}
		b.onLo[p] = true
	}
	for p := range b.onLo {
		if !want[p] {
			b.removeFromLoopback(p)
		}
	}
}

func (b *bgpSpeaker) removeFromLoopback(p netip.Prefix) {
	if err := b.lo.Remove(p); err != nil {
		b.log.Error(fmt.Sprintf("BGP: %v", err))
		return
	}
	delete(b.onLo, p)
}

// checks feeds the checks' status to the Gate: the same event that changes a VRRP priority.
func (b *bgpSpeaker) checks(statuses []checks.CheckStatus) {
	if b.gate == nil {
		return
	}
	states := make(map[string]bgp.CheckState, len(statuses))
	for _, c := range statuses {
		states[c.Name] = bgp.CheckState{Up: c.Up, Pending: c.Pending, Since: c.Since}
	}
	b.gate.Checks(states, time.Now())
}

// notifier wraps an instance's notifier so that the Gate learns each VRRP state change.
func (b *bgpSpeaker) notifier(next instance.Notifier) instance.Notifier {
	return &bgpStateNotifier{next: next, b: b}
}

type bgpStateNotifier struct {
	next instance.Notifier
	b    *bgpSpeaker
}

// Notify queues the change for the Gate: the VRRP loop calls it and must not wait on the speaker.
func (n *bgpStateNotifier) Notify(name string, state vrrp.State, priority uint8) {
	n.b.queueState(instanceChange{name: name, master: state == vrrp.Master, at: time.Now()})
	if n.next != nil {
		n.next.Notify(name, state, priority)
	}
}

// instanceChange is one VRRP transition on its way to the Gate.
type instanceChange struct {
	name   string
	master bool
	at     time.Time
}

// queueState appends a VRRP transition for followStates; it never blocks.
func (b *bgpSpeaker) queueState(c instanceChange) {
	b.qmu.Lock()
	b.queue = append(b.queue, c)
	b.qmu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// followStates hands the queued VRRP transitions to the Gate in order, until ctx is done.
func (b *bgpSpeaker) followStates(ctx context.Context, gate *bgp.Gate) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.wake:
		}
		b.qmu.Lock()
		q := b.queue
		b.queue = nil
		b.qmu.Unlock()
		for _, c := range q {
			gate.InstanceState(c.name, c.master, c.at)
		}
	}
}

// withdrawSettle is how long HAProxy keeps serving after the withdrawal has been sent: the
// routers need that long to take the route out of their forwarding table (FRR 8.4 took 60 to 90 ms
// in the lab, from the UPDATE to its kernel route). Routers that honour GRACEFUL_SHUTDOWN have
// moved the traffic away already; this covers those that do not, and drain_time 0.
const withdrawSettle = 250 * time.Millisecond

// withdraw is the first step of a stop: announce with GRACEFUL_SHUTDOWN, let the routers move the
// traffic away for the drain time, then withdraw everything and let the routers act on it.
// HAProxy is still serving meanwhile.
func (b *bgpSpeaker) withdraw(drain time.Duration) {
	if b.gate == nil {
		return
	}
	b.gate.Drain(time.Now())
	if drain > 0 && b.gate.Draining() {
		b.log.Info(fmt.Sprintf("BGP: draining for %s before withdrawing", drain))
		time.Sleep(drain)
	}
	if b.gate.WithdrawAll(time.Now()) > 0 {
		time.Sleep(withdrawSettle)
	}
}

// close ends the sessions and, once HAProxy has stopped, takes the addresses off the loopback.
// For an in-place upgrade (handingOver) the addresses stay, as HAProxy does: the next image puts
// them there again (present already is fine), and meanwhile what the routers still send here,
// until they have withdrawn this node, reaches HAProxy instead of being dropped.
func (b *bgpSpeaker) close(handingOver bool) {
	if b.stopFollows != nil {
		b.stopFollows()
	}
	if b.server != nil {
		b.server.Stop()
	}
	if b.lo != nil && !handingOver {
		for p := range b.onLo {
			b.removeFromLoopback(p)
		}
	}
}

// reload applies peer, prefix and drain time changes in place; Reloadable refused the rest.
func (b *bgpSpeaker) reload(ctx context.Context, next *config.BGP) {
	if b.server == nil {
		return
	}
	if err := b.server.SetPeers(ctx, bgpPeers(next)); err != nil {
		b.log.Error(fmt.Sprintf("BGP peers: %v", err))
	}
	forgetRemoved(b.cfg.Peers, next.Peers, func(p config.BGPPeer) netip.Addr { return p.Address }, b.metrics.RemovePeer)
	b.syncLoopback(next) // new addresses first, so that HAProxy can take their traffic once announced
	b.gate.SetRoutes(bgpRoutes(next), time.Now())
	forgetRemoved(b.cfg.Announce, next.Announce, func(a config.BGPAnnounce) netip.Prefix { return a.Prefix }, b.metrics.RemovePrefix)
	b.mu.Lock()
	b.cfg = next
	b.mu.Unlock()
}

func (b *bgpSpeaker) status() *status.BGPStatus {
	b.mu.Lock()
	st := &status.BGPStatus{LocalASN: b.cfg.LocalASN, RouterID: b.routerID.String()}
	b.mu.Unlock()
	if b.server != nil {
		for _, p := range b.server.Peers() {
			st.Peers = append(st.Peers, status.BGPPeerStatus{
				Address: p.Address, ASN: p.ASN, State: p.State, Up: p.Up, Since: p.Since, Reason: p.Reason,
			})
		}
	}
	if b.gate != nil {
		for _, p := range b.gate.Status() {
			st.Prefixes = append(st.Prefixes, status.BGPPrefixStatus{
				Prefix: p.Prefix, Announced: p.Announced, Draining: p.Draining, GatedBy: p.GatedBy, Reason: p.Reason, Since: p.Since,
			})
		}
	}
	return st
}

// withBGP makes an instance's notifier tell the BGP Gate of its state changes too.
func (d *daemon) withBGP(n *hookNotifier) instance.Notifier {
	if d.bgp == nil {
		return n
	}
	return d.bgp.notifier(n)
}

// updateBGP hands the checks' status to the BGP Gate after a check event.
func (d *daemon) updateBGP(r *checks.Runner) {
	if d.bgp != nil {
		d.bgp.checks(r.Status())
	}
}

// withdrawBGP is the first step of a stop: drain with GRACEFUL_SHUTDOWN, then withdraw, while
// HAProxy still serves.
func (d *daemon) withdrawBGP() {
	if d.bgp == nil {
		return
	}
	d.mu.Lock()
	drain := d.cfg.BGP.DrainTime
	d.mu.Unlock()
	d.bgp.withdraw(drain)
}

// drainBGP is the BGP part of `hapair drain` and `hapair undrain`, run beside the VRRP handovers:
// a drain announces with GRACEFUL_SHUTDOWN for the drain time, then withdraws the checks-gated
// prefixes (HAProxy keeps serving); an undrain lets them follow their checks again. The channel
// is closed when it is done.
func (d *daemon) drainBGP(drained bool) <-chan struct{} {
	done := make(chan struct{})
	var g *bgp.Gate
	if d.bgp != nil {
		d.bgp.mu.Lock()
		g = d.bgp.gate
		d.bgp.mu.Unlock()
	}
	if g == nil { // no bgp section, or not started yet: start reads d.drained itself
		close(done)
		return done
	}
	d.mu.Lock()
	drain := d.cfg.BGP.DrainTime
	d.mu.Unlock()
	go func() {
		defer close(done)
		if drained {
			g.Drain(time.Now())
			if drain > 0 && g.Draining() {
				time.Sleep(drain)
			}
		}
		g.SetDrained(drained, time.Now())
	}()
	return done
}

// forgetRemoved calls forget with the key of every item of old that no item of next has the key
// of: the metric series of the peers and prefixes a reload removed.
func forgetRemoved[E any, K comparable](old, next []E, key func(E) K, forget func(K)) {
	keep := map[K]bool{}
	for _, e := range next {
		keep[key(e)] = true
	}
	for _, e := range old {
		if k := key(e); !keep[k] {
			forget(k)
		}
	}
}
