package bgp

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// GracefulShutdown is the well-known GRACEFUL_SHUTDOWN community 65535:0 (RFC 8326): a router
// that receives it lowers the route's LOCAL_PREF (to 0), so traffic leaves this node while the
// route still stands, before it is withdrawn.
const GracefulShutdown uint32 = 0xFFFF0000

// Speaker sends announcements and withdrawals to every peer. The Server implements it; the
// Gate's tests use a fake.
type Speaker interface {
	// Announce (re)announces prefix with this host's address toward each peer as next hop,
	// tagged with GRACEFUL_SHUTDOWN when gshut is set. Announcing again replaces the earlier
	// announcement.
	Announce(prefix netip.Prefix, gshut bool) error
	// Withdraw withdraws prefix from every peer.
	Withdraw(prefix netip.Prefix) error
}

// Reporter receives the Gate's announcements and withdrawals (package metrics implements it).
type Reporter interface {
	PrefixAnnounced(prefix netip.Prefix, announced bool)
	// WithdrawDelay is the time from the check failing to the withdrawal being sent.
	WithdrawDelay(d time.Duration)
}

// Route is one announced service address and what gates it: Checks (all up) or Instance (MASTER).
type Route struct {
	Prefix   netip.Prefix
	Checks   []string
	Instance string
}

// CheckState is one check's tracked status as the Gate needs it.
type CheckState struct {
	Up bool
	// Pending: no first result yet. A route gated by it is not announced yet; one announced
	// already stays (a reload that changes the checks starts them afresh).
	Pending bool
	Since   time.Time // when Up last changed
}

// PrefixStatus is one route as /status shows it.
type PrefixStatus struct {
	Prefix    string    `json:"prefix"`
	Announced bool      `json:"announced"`
	Draining  bool      `json:"draining"` // announced with GRACEFUL_SHUTDOWN
	GatedBy   string    `json:"gated_by"` // "checks a, b" or "vrrp_instance VI_1"
	Reason    string    `json:"reason"`   // why it is or is not announced
	Since     time.Time `json:"since"`
}

// Gate decides, from checks and VRRP states, which routes are announced, and tells the Speaker
// the moment that changes. It holds no goroutine and reads no clock: each input carries the time.
// Its methods may be called from several goroutines.
type Gate struct {
	mu       sync.Mutex
	speaker  Speaker
	rep      Reporter
	log      *slog.Logger
	routes   []Route
	checks   map[string]CheckState
	masters  map[string]bool
	state    map[netip.Prefix]*routeState
	draining bool // stop or drain has begun: nothing is announced anew; what stands carries GRACEFUL_SHUTDOWN
	drained  bool // hapair drain: checks-gated routes withdrawn until undrain
	stopped  bool // everything withdrawn for good
}

type routeState struct {
	announced bool
	gshut     bool
	reason    string
	since     time.Time
}

// NewGate returns a Gate that announces nothing until its inputs say so.
func NewGate(routes []Route, speaker Speaker, rep Reporter, log *slog.Logger) *Gate {
	g := &Gate{
		speaker: speaker, rep: rep, log: log,
		checks: map[string]CheckState{}, masters: map[string]bool{}, state: map[netip.Prefix]*routeState{},
	}
	g.setRoutesLocked(routes)
	for _, r := range g.routes {
		rep.PrefixAnnounced(r.Prefix, false)
	}
	return g
}

// Checks gives every check's status (at least those the routes list) and applies the outcome.
func (g *Gate) Checks(states map[string]CheckState, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.checks = states
	g.applyLocked(now)
}

// InstanceState tells whether a VRRP instance is MASTER now.
func (g *Gate) InstanceState(instance string, master bool, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.masters[instance] = master
	g.applyLocked(now)
}

// SetRoutes replaces the routes (a reload): a route no longer listed is withdrawn, a new one is
// announced when its inputs allow, the others are left as they are.
func (g *Gate) SetRoutes(routes []Route, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	keep := map[netip.Prefix]bool{}
	for _, r := range routes {
		keep[r.Prefix] = true
	}
	for _, r := range g.routes {
		if keep[r.Prefix] {
			continue
		}
		st := g.state[r.Prefix]
		if st.announced {
			g.withdrawLocked(r.Prefix, st, "no longer configured", time.Time{}, now)
		}
		delete(g.state, r.Prefix)
	}
	g.setRoutesLocked(routes)
	g.applyLocked(now)
}

func (g *Gate) setRoutesLocked(routes []Route) {
	g.routes = slices.Clone(routes)
	for _, r := range g.routes {
		if g.state[r.Prefix] == nil {
			g.state[r.Prefix] = &routeState{reason: "waiting for first results"}
			g.rep.PrefixAnnounced(r.Prefix, false)
		}
	}
}

// Drain begins a stop (RFC 8326): every announced prefix is announced again with
// GRACEFUL_SHUTDOWN, and nothing is announced anew. A check going down still withdraws at once.
// The caller waits the drain time, then calls WithdrawAll.
func (g *Gate) Drain(now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.draining = true
	for _, r := range g.routes {
		st := g.state[r.Prefix]
		if !st.announced || st.gshut {
			continue
		}
		if err := g.speaker.Announce(r.Prefix, true); err != nil {
			g.log.Error(fmt.Sprintf("BGP: announce %s with GRACEFUL_SHUTDOWN: %v", r.Prefix, err))
			continue
		}
		st.gshut, st.reason = true, "stopping: announced with GRACEFUL_SHUTDOWN"
		g.log.Info(fmt.Sprintf("BGP: draining %s (GRACEFUL_SHUTDOWN)", r.Prefix))
	}
}

// SetDrained is `hapair drain` (true) and `hapair undrain` (false) for the checks-gated routes:
// drained, they are withdrawn and stay so whatever the checks say; undrained, they follow the
// checks again. (A route gated by a VRRP instance follows that instance, which a drain hands
// over.) For a graceful drain, call Drain first and wait the drain time.
func (g *Gate) SetDrained(drained bool, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.drained = drained
	if !drained && !g.stopped {
		g.draining = false
	}
	g.applyLocked(now)
}

// Draining reports whether any prefix is announced with GRACEFUL_SHUTDOWN now, that is whether
// a drain time is worth waiting.
func (g *Gate) Draining() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, st := range g.state {
		if st.announced && st.gshut {
			return true
		}
	}
	return false
}

// WithdrawAll withdraws every prefix for good, the last step before HAProxy stops, and returns
// how many were withdrawn.
func (g *Gate) WithdrawAll(now time.Time) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.draining, g.stopped = true, true
	n := 0
	for _, r := range g.routes {
		if st := g.state[r.Prefix]; st.announced {
			g.withdrawLocked(r.Prefix, st, "stopping", time.Time{}, now)
			n++
		}
	}
	return n
}

// Status lists every route in configuration order.
func (g *Gate) Status() []PrefixStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]PrefixStatus, 0, len(g.routes))
	for _, r := range g.routes {
		st := g.state[r.Prefix]
		gated := "vrrp_instance " + r.Instance
		if r.Instance == "" {
			gated = "checks " + strings.Join(r.Checks, ", ")
		}
		out = append(out, PrefixStatus{
			Prefix: r.Prefix.String(), Announced: st.announced, Draining: st.announced && st.gshut,
			GatedBy: gated, Reason: st.reason, Since: st.since,
		})
	}
	return out
}

// applyLocked brings every route's announcement in line with its inputs.
func (g *Gate) applyLocked(now time.Time) {
	if g.stopped {
		return
	}
	for _, r := range g.routes {
		st := g.state[r.Prefix]
		want, pending, reason, failedAt := g.wantLocked(r)
		if pending && st.announced {
			continue // results are coming for checks restarted by a reload: keep what stands
		}
		switch {
		case want && !st.announced && !g.draining:
			if err := g.speaker.Announce(r.Prefix, false); err != nil {
				g.log.Error(fmt.Sprintf("BGP: announce %s: %v", r.Prefix, err))
				st.reason = "announce failed: " + err.Error()
				continue
			}
			st.announced, st.gshut, st.reason, st.since = true, false, reason, now
			g.rep.PrefixAnnounced(r.Prefix, true)
			g.log.Info(fmt.Sprintf("BGP: announcing %s (%s)", r.Prefix, reason))
		case !want && st.announced:
			g.withdrawLocked(r.Prefix, st, reason, failedAt, now)
		case !want && st.reason != reason:
			st.reason = reason
		}
	}
}

// withdrawLocked withdraws one prefix; failedAt, when set, is when the check that caused it failed.
func (g *Gate) withdrawLocked(p netip.Prefix, st *routeState, reason string, failedAt, now time.Time) {
	if err := g.speaker.Withdraw(p); err != nil {
		g.log.Error(fmt.Sprintf("BGP: withdraw %s: %v", p, err))
		st.reason = "withdraw failed: " + err.Error()
		return
	}
	st.announced, st.gshut, st.reason, st.since = false, false, reason, now
	g.rep.PrefixAnnounced(p, false)
	if !failedAt.IsZero() && !now.Before(failedAt) {
		g.rep.WithdrawDelay(now.Sub(failedAt))
	}
	g.log.Info(fmt.Sprintf("BGP: withdrawing %s (%s)", p, reason))
}

// wantLocked says whether r should be announced, whether it only waits for first results (so
// that an announced route stays), why, and when a failure that forbids it began.
func (g *Gate) wantLocked(r Route) (want, pending bool, reason string, failedAt time.Time) {
	if r.Instance != "" {
		if g.masters[r.Instance] {
			return true, false, r.Instance + " is MASTER", time.Time{}
		}
		return false, false, r.Instance + " is not MASTER", time.Time{}
	}
	if g.drained {
		return false, false, "drained (hapair drain)", time.Time{}
	}
	var down, waiting []string
	for _, name := range r.Checks {
		cs, ok := g.checks[name]
		switch {
		case !ok || cs.Pending:
			waiting = append(waiting, name)
		case !cs.Up:
			down = append(down, name)
			if cs.Since.After(failedAt) {
				failedAt = cs.Since // the latest failure is the one that changed the outcome
			}
		}
	}
	switch {
	case len(down) > 0:
		return false, false, "check " + strings.Join(down, ", ") + " down", failedAt
	case len(waiting) > 0:
		return false, true, "waiting for first results of " + strings.Join(waiting, ", "), time.Time{}
	}
	return true, false, "checks " + strings.Join(r.Checks, ", ") + " up", time.Time{}
}
