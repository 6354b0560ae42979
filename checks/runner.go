package checks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// LivenessName is the name of the built-in HAProxy liveness check.
const LivenessName = "haproxy"

// Defaults applied to a Spec's zero fields; the configuration's defaults are these.
const (
	// DefaultInterval is 2s where keepalived's vrrp_script uses 1s: HAProxy's own liveness is
	// event driven in hapair, so the polled checks (stats, scripts) need not be as eager, and 2s
	// is what the seed's setup uses. `hapair convert` writes keepalived's 1s out explicitly.
	DefaultInterval = 2 * time.Second
	// DefaultTimeout applies when it is shorter than the interval; otherwise the timeout is the
	// interval (keepalived's own rule for vrrp_script).
	DefaultTimeout = time.Second
	DefaultFall    = 1 // keepalived's default
	DefaultRise    = 1 // keepalived's default
	// MaxWeight bounds a check's weight to -MaxWeight..MaxWeight, keepalived's rule for
	// track_script and track_interface weights.
	MaxWeight = 253
	// probeGrace is how long a timed-out probe may take to return after its context
	// is cancelled (a script's process group is being killed and reaped) before the
	// Runner stops waiting for it.
	probeGrace = 2 * time.Second
)

// Result is the outcome of one probe run.
type Result struct {
	OK       bool          `json:"ok"`
	Output   string        `json:"output"`   // why it failed, or a short summary of success
	Duration time.Duration `json:"duration"` // how long the probe ran
	At       time.Time     `json:"at"`       // when the probe started
}

// Probe runs one check once. It must return when ctx is done; the Runner cancels
// ctx at the check's timeout.
type Probe interface {
	Probe(ctx context.Context) Result
}

// Watcher is implemented by probes that learn of changes without polling (netlink
// link events). Watch blocks until ctx is done and calls changed whenever a new
// probe is worth running now rather than at the next interval. An error means
// watching is not possible; the Runner then relies on the interval alone.
type Watcher interface {
	Watch(ctx context.Context, changed func()) error
}

// Spec describes one periodic check.
type Spec struct {
	Name     string
	Interval time.Duration // between the starts of two runs; 0 = DefaultInterval
	Timeout  time.Duration // 0 = Interval
	Fall     int           // consecutive failures to go down; 0 = 1
	Rise     int           // consecutive successes to come back up; 0 = 1
	Weight   int           // default weight for tracking (an instance's track overrides it)
	Probe    Probe
}

// Event tells that a check's tracked status (after fall/rise) changed, or that the
// check produced its first result.
type Event struct {
	Name   string
	Up     bool
	Result Result // the result that caused the change
}

// Reporter receives every single result (metrics implements it).
type Reporter interface {
	CheckResult(name string, ok bool, d time.Duration)
}

// CheckStatus is one check as shown by /status and `hapair status`.
type CheckStatus struct {
	Name     string        `json:"name"`
	Up       bool          `json:"up"`      // tracked status; false while pending
	Pending  bool          `json:"pending"` // no result yet
	Weight   int           `json:"weight"`
	Interval time.Duration `json:"interval"` // 0 for the event-driven haproxy check
	Timeout  time.Duration `json:"timeout"`
	Fall     int           `json:"fall"`
	Rise     int           `json:"rise"`
	Since    time.Time     `json:"since"`    // when Up last changed (zero while pending)
	OKRun    int           `json:"ok_run"`   // consecutive successes
	FailRun  int           `json:"fail_run"` // consecutive failures
	Last     Result        `json:"last"`     // latest result
}

// Option configures a Runner.
type Option func(*Runner)

// WithStartGate holds the periodic checks' first run until gate is closed. hapair
// closes it when HAProxy has started, so that a stats probe's "connection refused"
// while HAProxy boots is no result at all: the check stays pending.
func WithStartGate(gate <-chan struct{}) Option { return func(r *Runner) { r.gate = gate } }

type check struct {
	spec    Spec
	trigger chan struct{} // probe now (from a Watcher); nil for the liveness check

	// Guarded by Runner.mu.
	tr    tracker
	last  Result
	since time.Time
}

// Runner runs every check on its own schedule, applies fall/rise and publishes
// tracked status changes. The built-in "haproxy" liveness check always exists.
type Runner struct {
	rep    Reporter
	log    *slog.Logger
	err    error // invalid specs; returned by Run
	checks []*check
	live   *Liveness

	mu    sync.Mutex
	queue []Event // events not yet handed to the consumer
	hold  hold    // HAProxy reloads under way: failures not counted

	gate    <-chan struct{} // nil: no gate
	wake    chan struct{}
	events  chan Event
	started atomic.Bool
}

// NewRunner builds a Runner for specs plus the built-in "haproxy" check. A spec
// named "haproxy" may only carry a Weight for it (no Probe). Invalid specs make Run
// return an error. rep and log may be nil.
func NewRunner(specs []Spec, rep Reporter, log *slog.Logger, opts ...Option) *Runner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Runner{
		rep:    rep,
		log:    log,
		wake:   make(chan struct{}, 1),
		events: make(chan Event, 16),
	}
	for _, o := range opts {
		o(r)
	}

	liveSpec := Spec{Name: LivenessName, Fall: 1, Rise: 1}
	seen := map[string]bool{}
	var errs []error
	var periodic []*check
	for i, s := range specs {
		if s.Name == LivenessName {
			if s.Probe != nil {
				errs = append(errs, fmt.Errorf("check %q: the name is reserved for the built-in HAProxy liveness check", s.Name))
			}
			liveSpec.Weight = s.Weight
			continue
		}
		s, err := normalize(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("check %d: %w", i, err))
			continue
		}
		if seen[s.Name] {
			errs = append(errs, fmt.Errorf("check %q: duplicate name", s.Name))
			continue
		}
		seen[s.Name] = true
		c := &check{spec: s, tr: newTracker(s.Fall, s.Rise)}
		if _, ok := s.Probe.(Watcher); ok {
			c.trigger = make(chan struct{}, 1)
		}
		periodic = append(periodic, c)
	}
	lc := &check{spec: liveSpec, tr: newTracker(1, 1)}
	r.live = &Liveness{r: r, c: lc}
	r.checks = append([]*check{lc}, periodic...)
	r.err = errors.Join(errs...)
	return r
}

func normalize(s Spec) (Spec, error) {
	switch {
	case s.Name == "":
		return s, errors.New("empty name")
	case s.Probe == nil:
		return s, fmt.Errorf("check %q: no probe", s.Name)
	case s.Interval < 0 || s.Timeout < 0 || s.Fall < 0 || s.Rise < 0:
		return s, fmt.Errorf("check %q: negative interval, timeout, fall or rise", s.Name)
	case s.Weight < -MaxWeight || s.Weight > MaxWeight:
		return s, fmt.Errorf("check %q: weight %d outside -%d..%d", s.Name, s.Weight, MaxWeight, MaxWeight)
	}
	if s.Interval == 0 {
		s.Interval = DefaultInterval
	}
	if s.Timeout == 0 {
		s.Timeout = min(DefaultTimeout, s.Interval)
	}
	if s.Fall == 0 {
		s.Fall = DefaultFall
	}
	if s.Rise == 0 {
		s.Rise = DefaultRise
	}
	return s, nil
}

// Liveness returns the built-in "haproxy" check, for the supervisor to feed.
func (r *Runner) Liveness() *Liveness { return r.live }

// Events delivers tracked status changes in the order they happened. It is closed
// when Run returns. Nothing a check does blocks on a slow reader: events wait in
// an internal queue.
func (r *Runner) Events() <-chan Event { return r.events }

// Run starts every periodic check (each runs once at once, then every Interval) and
// returns when ctx is done. It may be called once.
func (r *Runner) Run(ctx context.Context) error {
	if r.err != nil {
		return fmt.Errorf("checks: %w", r.err)
	}
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("checks: runner already started")
	}
	var wg sync.WaitGroup
	for _, c := range r.checks[1:] {
		wg.Go(func() { r.loop(ctx, c) })
		if w, ok := c.spec.Probe.(Watcher); ok {
			wg.Go(func() { r.watch(ctx, c, w) })
		}
	}
	wg.Go(func() { r.dispatch(ctx) })
	wg.Wait()
	close(r.events)
	return nil
}

func (r *Runner) watch(ctx context.Context, c *check, w Watcher) {
	err := w.Watch(ctx, func() {
		select {
		case c.trigger <- struct{}{}:
		default: // a probe is already due
		}
	})
	if err != nil && ctx.Err() == nil {
		r.log.Warn("check watch failed, polling only", "check", c.spec.Name, "err", err)
	}
}

// loop runs one check: at once, then every Interval (start to start; a run longer
// than the interval delays the next one), or sooner when its Watcher signals.
func (r *Runner) loop(ctx context.Context, c *check) {
	if r.gate != nil {
		select {
		case <-ctx.Done():
			return
		case <-r.gate:
		}
	}
	var abandoned chan Result // a timed-out probe that has not returned yet
	for {
		start := time.Now()
		res := r.probeOnce(ctx, c, &abandoned)
		if ctx.Err() != nil {
			return // a result cut short by shutdown says nothing about the check
		}
		r.record(c, res)

		t := time.NewTimer(max(c.spec.Interval-time.Since(start), 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-c.trigger:
			t.Stop()
		}
	}
}

// errProbeTimeout is the cancellation cause of a probe that ran out of time. It
// wraps context.DeadlineExceeded so probes need test only for that.
var errProbeTimeout = fmt.Errorf("probe timeout: %w", context.DeadlineExceeded)

// probeOnce runs the probe in its own goroutine so that a probe that ignores its
// context cannot stall the check: after Timeout plus a grace period it is
// abandoned and counted as failed, and the check is not probed again until the
// abandoned run has returned.
func (r *Runner) probeOnce(ctx context.Context, c *check, abandoned *chan Result) Result {
	start := time.Now()
	if *abandoned != nil {
		select {
		case <-*abandoned:
			*abandoned = nil
		default:
			return Result{Output: "previous probe still running after its timeout", At: start}
		}
	}

	pctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	deadline := time.AfterFunc(c.spec.Timeout, func() { cancel(errProbeTimeout) })
	defer deadline.Stop()

	done := make(chan Result, 1)
	go func() { done <- r.safeProbe(pctx, c) }()

	finish := func(res Result) Result {
		res.At = start
		res.Duration = time.Since(start)
		return res
	}
	select {
	case res := <-done:
		return finish(res)
	case <-pctx.Done():
	}
	grace := time.NewTimer(probeGrace)
	defer grace.Stop()
	select {
	case res := <-done:
		return finish(res)
	case <-grace.C:
		*abandoned = done
		return finish(Result{Output: fmt.Sprintf("timed out after %s (probe did not return)", c.spec.Timeout)})
	}
}

// safeProbe turns a panicking probe into a failed result: one broken probe must not
// take VRRP down with it.
func (r *Runner) safeProbe(ctx context.Context, c *check) (res Result) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("check probe panicked", "check", c.spec.Name, "panic", p)
			res = Result{Output: fmt.Sprintf("probe panicked: %v", p)}
		}
	}()
	return c.spec.Probe.Probe(ctx)
}

// record applies one result: fall/rise, event, log line, reporter.
func (r *Runner) record(c *check, res Result) {
	r.mu.Lock()
	c.last = res
	if r.heldLocked(c, res) {
		r.mu.Unlock()
		r.log.Info(heldMessage(c.spec.Name, res))
		if r.rep != nil {
			r.rep.CheckResult(c.spec.Name, res.OK, res.Duration)
		}
		return
	}
	var changed bool
	c.tr, changed = c.tr.step(res.OK)
	if changed {
		c.since = res.At
		r.queue = append(r.queue, Event{Name: c.spec.Name, Up: c.tr.up, Result: res})
	}
	r.mu.Unlock()

	if changed {
		select {
		case r.wake <- struct{}{}:
		default:
		}
		// keepalived's words, which operators already grep for.
		if res.OK {
			r.log.Info(fmt.Sprintf("VRRP_Script(%s) succeeded", c.spec.Name), "output", res.Output)
		} else {
			r.log.Warn(fmt.Sprintf("VRRP_Script(%s) failed", c.spec.Name), "output", res.Output)
		}
	}
	if r.rep != nil {
		r.rep.CheckResult(c.spec.Name, res.OK, res.Duration)
	}
}

// dispatch hands queued events to the consumer in order.
func (r *Runner) dispatch(ctx context.Context) {
	for {
		r.mu.Lock()
		q := r.queue
		r.queue = nil
		r.mu.Unlock()
		for _, ev := range q {
			select {
			case r.events <- ev:
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-r.wake:
		case <-ctx.Done():
			return
		}
	}
}

// Status returns every check, "haproxy" first, then in Spec order.
func (r *Runner) Status() []CheckStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]CheckStatus, 0, len(r.checks))
	for _, c := range r.checks {
		out = append(out, CheckStatus{
			Name:     c.spec.Name,
			Up:       c.tr.up,
			Pending:  !c.tr.started,
			Weight:   c.spec.Weight,
			Interval: c.spec.Interval,
			Timeout:  c.spec.Timeout,
			Fall:     c.tr.fall,
			Rise:     c.tr.rise,
			Since:    c.since,
			OKRun:    c.tr.okRun,
			FailRun:  c.tr.failRun,
			Last:     c.last,
		})
	}
	return out
}

// Inherit gives every check of r that prev runs too (by name) prev's tracked state: its
// verdict, its runs of successes and failures, its last result. A reload replaces the runner,
// and a check with no result yet counts as nothing: without this, a failing check would count
// as passing until its first probe in r (a MASTER held at 100 advertising 110 for a moment, a
// FAULT instance leaving FAULT and coming back), and HAProxy back within its rise hold would be
// up at once. Call it before Run, with prev no longer running.
func (r *Runner) Inherit(prev *Runner) {
	prev.mu.Lock()
	old := make(map[string]check, len(prev.checks))
	for _, c := range prev.checks {
		old[c.spec.Name] = *c
	}
	prev.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.checks {
		o, ok := old[c.spec.Name]
		if !ok || !o.tr.started {
			continue
		}
		fall, rise := c.tr.fall, c.tr.rise // r's settings, which the reload may have changed
		c.tr = o.tr
		c.tr.fall, c.tr.rise = fall, rise
		c.last, c.since = o.last, o.since
	}
}

// Up returns the tracked status of every check that has a result, in the form
// EffectivePriority takes. A pending check is left out: it has not failed, so it
// does not lower the priority (see Pending for holding an instance back until
// there are results).
func (r *Runner) Up() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	up := make(map[string]bool, len(r.checks))
	for _, c := range r.checks {
		if c.tr.started {
			up[c.spec.Name] = c.tr.up
		}
	}
	return up
}

// Pending lists the checks that have no result yet.
func (r *Runner) Pending() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, c := range r.checks {
		if !c.tr.started {
			out = append(out, c.spec.Name)
		}
	}
	return out
}
