package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hapair/hapair/checks"
	"github.com/hapair/hapair/cmd/internal/config"
	"github.com/hapair/hapair/cmd/internal/notify"
	"github.com/hapair/hapair/metrics"
	"github.com/hapair/hapair/supervisor"
	"github.com/hapair/hapair/vrrp"
	"github.com/hapair/hapair/vrrp/instance"
	"github.com/hapair/hapair/vrrp/record"
	"github.com/hapair/hapair/vrrp/transport/steady"
)

// Compile-time checks that metrics speaks the interfaces the other packages own.
var (
	_ instance.Reporter   = (*metrics.InstanceMetrics)(nil)
	_ supervisor.Reporter = (*metrics.Metrics)(nil)
	_ checks.Reporter     = (*metrics.Metrics)(nil)
)

// daemon is `hapair run`: the composition of supervisor, checks, VRRP instances and metrics.
type daemon struct {
	log     *slog.Logger
	metrics *metrics.Metrics

	mu        sync.Mutex // guards cfg and the instances' base priorities and tracks on reload
	cfg       *config.Config
	sup       haproxy     // nil without a haproxy section
	host      hostNetwork // sockets, VIPs and links
	instances []*vrrpInstance
	vrrpLoop  *instance.Loop // runs every instance's turns on one goroutine
	bgp       *bgpSpeaker    // nil without a bgp section

	checks       *checks.Runner
	links        links // the links instances track (their own, track_interface)
	checksCancel context.CancelFunc
	checksDone   chan struct{}

	// onSettled, when set, runs once every instance has settled (after an upgrade: report it).
	onSettled func()
	// notify tells systemd a state (sdNotify; tests record it).
	notify func(state string) error
	// watchdogEvery is how often to ping systemd's watchdog: half its timeout; 0: there is none.
	watchdogEvery time.Duration
	// handingOver: serve ends for an in-place upgrade (beginHandover), not a stop.
	handingOver atomic.Bool

	// haproxyStarted is closed at HAProxy's first up or down event (or after haproxyStartWait):
	// the periodic checks' start gate. nil without a haproxy section.
	haproxyStarted     chan struct{}
	haproxyStartedOnce sync.Once

	reloads *reloadLog // SIGHUPs and their outcomes

	drained atomic.Bool // hapair drain in force (drain.go); new instances start drained
	drainMu sync.Mutex  // one drain or undrain at a time

	// Instances whose interface was created again (recreated.go); guarded by mu.
	rebindTimer     *time.Timer                  // a retry of rebindRecreated; nil: none pending
	sources         atomic.Pointer[[]netip.Addr] // the addresses the instances send from, for addrGone
	instancesClosed bool                         // closeInstances ran: nothing is moved any more
}

// vrrpInstance is one running instance with what its priority is computed from.
type vrrpInstance struct {
	// name and advertInt never change (a reload that would change them is refused): read them
	// anywhere. cfg, track and hooks are replaced by a reload, under daemon.mu.
	name      string
	advertInt time.Duration
	cfg       config.Instance
	run       *instance.Instance
	vips      instance.VIPs
	ann       announcer
	conn      instance.Conn
	track     map[string]int // check name -> weight, after the check's own weight was applied
	hooks     *hookNotifier  // its notify hooks (nil: none), closed when replaced or stopped
	// resuming: its state record says MASTER a moment ago; it starts at once, without waiting
	// for its checks (vrrp.Machine.Resume decides).
	resuming bool
	// The interface its socket listens on, and the source its adverts leave from (recreated.go).
	// ifindex 0: unknown (the fakes), never moved. Guarded by daemon.mu, with conn and ann.
	ifindex   int
	source    netip.Addr
	rebindWhy string // not "": its interface was created again and it does not listen there yet
	rebindErr string // the last error opening it there, logged once
	// rebindSince is when its interface was seen created again;
	// rebindWarned, that the rebind has failed for rebindWarnAfter and was logged as a warning.
	rebindSince  time.Time
	rebindWarned bool
	rebindIndex  int  // the new index it is moving to, once logged
	sourceGone   bool // its source address left its interface: look for the address now
}

func newDaemon(cfg *config.Config, log *slog.Logger) (*daemon, error) {
	return newDaemonOn(cfg, log, func(m *metrics.Metrics) hostNetwork { return newNetlinkHost(m, log) },
		func(c supervisor.Config, rep supervisor.Reporter, log *slog.Logger) haproxy {
			return supervisor.New(c, rep, log)
		})
}

// newDaemonOn builds the daemon on a host network (made once the metrics exist) and a way to
// make the HAProxy supervisor: tests hand in fakes of both.
func newDaemonOn(cfg *config.Config, log *slog.Logger, host func(*metrics.Metrics) hostNetwork,
	newSupervisor func(supervisor.Config, supervisor.Reporter, *slog.Logger) haproxy) (*daemon, error) {
	d := &daemon{cfg: cfg, log: log, notify: sdNotify, watchdogEvery: watchdogEvery(os.Getenv, os.Getpid())}
	d.metrics = metrics.New(metrics.BuildInfo{Version: version, Commit: commit, GoVersion: runtime.Version()})
	d.host = host(d.metrics)
	d.reloads = newReloadLog(cfg.File, time.Now(), d.metrics)
	if cfg.Status.KeepalivedCompat {
		d.metrics.EnableKeepalivedCompat()
	}
	if drainedOnDisk(cfg.RuntimeDir) {
		d.drained.Store(true)
		log.Info("Starting drained: the VIPs are left to the peers until hapair undrain",
			"file", filepath.Join(cfg.RuntimeDir, drainedFileName))
	}
	d.metrics.SetDrained(d.drained.Load())
	specs, err := checkSpecs(cfg, log)
	if err != nil {
		return nil, err
	}
	for _, s := range specs {
		d.metrics.DeclareCheck(s.Name)
	}
	var gate []checks.Option
	if cfg.HAProxy != nil {
		d.haproxyStarted = make(chan struct{})
		gate = append(gate, checks.WithStartGate(d.haproxyStarted))
	}
	d.checks = checks.NewRunner(specs, d.metrics, log.With("source", "checks"), gate...)
	if d.links, err = d.host.Links(); err != nil {
		return nil, err
	}
	if cfg.HAProxy == nil {
		d.metrics.WithoutHAProxy()
	} else {
		d.metrics.DeclareCheck(config.BuiltinHAProxyCheck)
		d.sup = newSupervisor(supervisorConfig(cfg.HAProxy), d.metrics, log.With("source", "haproxy"))
	}
	if cfg.BGP != nil {
		d.bgp = newBGPSpeaker(cfg.BGP, d.metrics, log)
	}
	d.vrrpLoop = instance.NewLoop()
	for _, ic := range cfg.Instances {
		vi, err := d.newInstance(cfg, ic)
		if err != nil {
			d.closeInstances()
			return nil, err
		}
		d.instances = append(d.instances, vi)
	}
	d.noteSources()
	d.host.OnVIPGone(d.addrGone)
	return d, nil
}

// vipGone wakes the MASTERs that own p, which the kernel says left its interface (someone ran
// `ip addr del`): each checks its VIPs in its next turn (instance.CheckVIPs) instead of at its
// next once-a-second check. It runs on the address watch's goroutine: nothing here blocks (not
// even d.mu, held while priorities are handed to the loops). The instance's own status says
// which VIPs it has now: a reload that drops a VIP detaches it after the loop took the new list.
func (d *daemon) vipGone(p netip.Prefix) {
	for _, vi := range d.instances { // fixed once the daemon is built
		st := vi.run.Status()
		if st.State != vrrp.Master || !slices.Contains(st.VIPs, p) {
			continue // a BACKUP's own Detach, a VIP a reload removed, or not ours
		}
		d.log.Info("("+st.Name+") VIP removed from the interface while MASTER, checking the VIPs now", "vip", p)
		vi.run.CheckVIPs()
	}
}

// steadyEnv, set to 0, keeps every advert on the VRRP loop: no MASTER hands its steady adverts
// to a sender thread (instance.Config.Steady, package vrrp/transport/steady), nor does a lone
// BACKUP hand the reading of them to a watcher thread. Set to "thread", the sender sends from
// its thread rather than from the small process it makes (instance.Config.SteadyThread): the
// cost of the two can be compared.
const steadyEnv = "HAPAIR_STEADY"

func steadyAllowed() bool { return steady.Supported() && os.Getenv(steadyEnv) != "0" }

func steadyThread() bool { return os.Getenv(steadyEnv) == "thread" }

// recordFailed is an instance's state record's OnError: said once, as a restart after it will
// not resume the instance as MASTER.
func recordFailed(log *slog.Logger, name string) func(error) {
	return func(err error) {
		log.Warn("("+name+") Writing the state record failed: a restart will not resume as MASTER", "err", err)
	}
}

func supervisorConfig(h *config.HAProxy) supervisor.Config {
	return supervisor.Config{
		Command:           h.Command,
		ConfigFile:        h.Config,
		RuntimeDir:        h.RuntimeDir,
		StopGrace:         h.StopGrace,
		BackoffInitial:    h.RestartBackoff.Initial,
		BackoffMax:        h.RestartBackoff.Max,
		BackoffResetAfter: h.RestartBackoff.ResetAfter,
	}
}

func (d *daemon) newInstance(cfg *config.Config, ic config.Instance) (*vrrpInstance, error) {
	family := ic.Family()
	// A MASTER a moment ago (crash, upgrade) may resume and keep its VIPs; the instance decides
	// at its start (vrrp.Machine.Resume) and removes them then if it may not.
	nio, err := d.host.Open(ic, d.mayResume(cfg.RuntimeDir, ic))
	if err != nil {
		return nil, fmt.Errorf("instance %s: %w", ic.Name, err)
	}
	source, mayResume := nio.source, nio.mayResume
	dest := ic.UnicastPeers
	if len(dest) == 0 {
		dest = []netip.Addr{vrrp.Group(family)}
	}
	var authType uint8
	var authPass string
	if ic.Authentication != nil && ic.Version == 2 {
		authType, authPass = 1, ic.Authentication.Pass
	}
	checksum := vrrp.ChecksumWithPseudoHeader
	if ic.Checksum == config.ChecksumRFC9568 {
		checksum = vrrp.ChecksumWithoutPseudoHeader
	}
	rep := d.metrics.Instance(ic.Name, ic.Interface, ic.VRID, ic.VIPs...)
	icfg := instance.Config{
		Name:      ic.Name,
		Interface: ic.Interface,
		Machine: vrrp.Config{
			Name: ic.Name, Version: ic.Version, VRID: ic.VRID, Priority: ic.Priority,
			AdvertInterval: ic.AdvertInt, Preempt: ic.Preempt, PreemptDelay: ic.PreemptDelay,
			PrimaryAddr: source, FastFailover: ic.FastFailover,
			// Two hosts started together: the higher priority wins the first time.
			ClaimFirst: true,
		},
		Filter: vrrp.Filter{
			VRID: ic.VRID, Version: ic.Version, AuthType: authType, AuthPass: authPass,
			Interval: ic.AdvertInt, Peers: ic.UnicastPeers,
			// Adverts that share none of our VIPs (another router on our VRID, a forgery)
			// must not demote our MASTER; the instance keeps this list in step on reload.
			Addrs: prefixAddrs(ic.VIPs),
		},
		VIPs: ic.VIPs, Source: source, Destination: dest, Checksum: checksum,
		AuthType: authType, AuthPass: authPass,
		GARPRepeat: ic.GARPMasterRepeat, GARPDelay: ic.GARPMasterDelay,
		Drained: d.drained.Load(),
		Timers:  nio.timers,
		Loop:    d.vrrpLoop,
		Steady:  steadyAllowed(),

		SteadyThread: steadyThread(),
	}
	rec, err := record.Create(cfg.RuntimeDir, ic.Name, ic.VRID, nil)
	if err != nil {
		d.log.Warn("("+ic.Name+") No state record: a restart will not resume as MASTER", "err", err)
	} else {
		rec.OnError = recordFailed(d.log, ic.Name)
		icfg.Record = rec
	}
	if mayResume {
		icfg.Previous = func(now time.Time) *vrrp.Previous { return d.previous(cfg.RuntimeDir, ic, now) }
	}
	notifier := newNotifier(cfg.Notify, ic.Notify, d.log)
	run, err := instance.New(icfg, nio.conn, nio.vips, nio.ann, rep, d.withBGP(notifier), d.log)
	if err != nil {
		nio.conn.Close()
		nio.ann.Close()
		return nil, err
	}
	return &vrrpInstance{name: ic.Name, advertInt: ic.AdvertInt, cfg: ic, run: run, vips: nio.vips, ann: nio.ann, conn: nio.conn, track: trackWeights(ic), resuming: mayResume, hooks: notifier,
		ifindex: nio.ifindex, source: source}, nil
}

func prefixAddrs(ps []netip.Prefix) []netip.Addr {
	out := make([]netip.Addr, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Addr())
	}
	return out
}

// trackWeights is an instance's track list (config already resolved each weight: the
// instance's own, else the check's). Tracked links are not checks: see trackedLinks.
func trackWeights(ic config.Instance) map[string]int {
	out := make(map[string]int, len(ic.Track))
	for name, w := range ic.Track {
		out[name] = w
	}
	return out
}

// mayResume says whether the instance's state record says MASTER, recently: then the stale VIPs
// are left for the instance to judge at its start.
func (d *daemon) mayResume(dir string, ic config.Instance) bool {
	e, err := record.Read(dir, ic.Name, ic.VRID, nil)
	if err != nil {
		d.log.Info("("+ic.Name+") Nothing to resume: starting as usual", "why", err)
		return false
	}
	return e != nil && e.State == vrrp.Master && e.Age < 3*ic.AdvertInt
}

// previous is the instance's state record on the instance's clock, for vrrp.Machine.Resume.
func (d *daemon) previous(dir string, ic config.Instance, now time.Time) *vrrp.Previous {
	e, err := record.Read(dir, ic.Name, ic.VRID, nil)
	if err != nil || e == nil {
		return nil
	}
	return &vrrp.Previous{State: e.State, Priority: e.Priority, LastAdvert: now.Add(-e.Age)}
}

func (d *daemon) closeInstances() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.instancesClosed = true
	if d.rebindTimer != nil {
		d.rebindTimer.Stop()
	}
	for _, vi := range d.instances {
		vi.conn.Close()
		vi.ann.Close()
		vi.hooks.Close()
	}
}

// updatePriorities recomputes every instance's effective priority from the tracked checks and
// links. It holds d.mu throughout, which an instance's start waits for (holdUntilChecksReport):
// what it calls must never wait on an instance, and SetFault and SetPriority do not (each keeps
// only the newest value for the instance's next turn, even before it has started).
//
// The checks' state is read under d.mu too, not passed in: the check follower and the link
// watcher both call this, and a snapshot taken before the lock could be applied after a newer
// one, leaving an instance at a priority the checks no longer say (a failed HAProxy's -20 undone
// by a link event's older snapshot, until the next check event; seen once as a flake of
// TestSupervisorStartErrorIsHeard).
func (d *daemon) updatePriorities() {
	d.mu.Lock()
	defer d.mu.Unlock()
	up := d.checks.Up()
	for _, vi := range d.instances {
		prio, fault, by := checks.EffectivePriority(vi.cfg.Priority, vi.track, up)
		if fault {
			vi.run.SetFault(true, by+" failed")
			continue
		}
		if down, why := d.links.Down(trackedLinks(vi.cfg)); down {
			vi.run.SetFault(true, why)
			continue
		}
		if vi.rebindWhy != "" {
			vi.run.SetFault(true, vi.rebindWhy)
			continue
		}
		vi.run.SetFault(false, "")
		vi.run.SetPriority(prio)
	}
}

// serve runs everything until ctx is done, then stops in the order that keeps traffic flowing:
// first the VIPs go (priority-0 adverts), then HAProxy.
func (d *daemon) serve(ctx context.Context) error {
	supCtx, stopSup := context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		if !d.handingOver.Load() { // an upgrade leaves HAProxy running for the next image
			stopSup()
		}
	}()
	vrrpCtx, stopVRRP := context.WithCancel(ctx)
	defer stopVRRP()

	if d.bgp != nil { // before HAProxy: its service addresses go on the loopback first
		defer func() { d.bgp.close(d.handingOver.Load()) }() // after HAProxy has stopped (deferred calls run last)
		if err := d.bgp.start(ctx, d.drained.Load); err != nil {
			return fmt.Errorf("bgp: %w", err)
		}
	}
	var supDone chan error
	if d.sup != nil {
		supDone = make(chan error, 1)
		go func() {
			err := d.sup.Run(supCtx)
			if supCtx.Err() == nil {
				d.haproxyGone(err)
				err = nil // said already
			}
			supDone <- err
		}()
		go d.forwardHAProxyEvents(supCtx)
		startWait := time.AfterFunc(haproxyStartWait, d.openCheckGate)
		defer startWait.Stop()
	}
	d.startChecks(ctx, d.checks, false)
	defer d.stopChecks()
	linksDone := make(chan struct{})
	go func() { defer close(linksDone); d.followLinks(ctx) }()
	defer func() { <-linksDone }()

	// Each instance starts on a goroutine of its own, which ends once it has started: from then
	// on its turns run on the daemon's one instance.Loop.
	var starting sync.WaitGroup
	for _, vi := range d.instances {
		starting.Add(1)
		go func() {
			defer starting.Done()
			if !vi.resuming {
				d.holdUntilChecksReport(vrrpCtx, vi)
			}
			vi.run.Start(vrrpCtx)
		}()
	}
	wait := func() {
		starting.Wait()
		for _, vi := range d.instances {
			<-vi.run.Done()
		}
	}
	go d.notifySystemd(vrrpCtx)

	<-ctx.Done()
	if d.handingOver.Load() {
		// An in-place upgrade: each instance sent its last advert and kept its VIPs; HAProxy
		// stays running, a child of this process across the execve.
		wait()
		d.closeInstances()
		d.stopChecks()
		return errHandover
	}
	d.withdrawBGP() // meanwhile the instances release their VIPs
	// Make-before-break: every instance has sent priority 0 and kept its VIPs until the new
	// MASTER advertised (or LongestMasterDown passed), then detached them. Only now does HAProxy
	// soft-stop, so that no client is ever sent to a node that no longer serves.
	wait()
	d.closeInstances()
	d.stopChecks()
	if d.sup != nil {
		stopSup()
		if err := <-supDone; err != nil && !errors.Is(err, context.Canceled) {
			d.log.Warn("HAProxy supervisor failed", "err", err)
		}
	}
	d.waitHooks()
	return nil
}

// waitHooks waits, at the stop, for the notify hooks still queued or running (notify_stop is
// queued as each instance stops, and ran meanwhile with HAProxy's stop), for at most
// notify.timeout in all: once hapair exits a hook still running is killed, and one not started
// never runs.
func (d *daemon) waitHooks() {
	d.mu.Lock()
	timeout := d.cfg.Notify.Timeout
	hooks := make([]*hookNotifier, 0, len(d.instances))
	for _, vi := range d.instances {
		hooks = append(hooks, vi.hooks)
	}
	d.mu.Unlock()
	if timeout <= 0 {
		timeout = notify.DefaultTimeout
	}
	deadline := time.Now().Add(timeout)
	for _, h := range hooks {
		if !h.Wait(time.Until(deadline)) {
			d.log.Warn("Notify commands still running at the stop are killed", "waited", timeout)
			return
		}
	}
}

// haproxyGone is the supervisor returning on its own, before the stop: it could not start HAProxy
// (say, a live master it may not adopt owns the master socket). The node then runs without
// HAProxy: say so at once, and fail the liveness check so that the priority says so too.
func (d *daemon) haproxyGone(err error) {
	reason := "HAProxy supervisor stopped"
	if err != nil {
		reason = fmt.Sprintf("HAProxy supervisor stopped: %v", err)
	}
	d.log.Error(reason + "; running without HAProxy until hapair is restarted")
	d.openCheckGate()
	d.mu.Lock()
	live := d.checks.Liveness()
	d.mu.Unlock()
	live.Set(false, reason)
}

// beginHandover makes serve, once its context ends, hand every instance over to the next image
// (vrrp/instance HandOver) and leave HAProxy running, instead of stopping.
func (d *daemon) beginHandover() {
	d.handingOver.Store(true)
	for _, vi := range d.instances {
		vi.run.HandOver()
	}
}

// haproxyStartWait bounds how long the periodic checks wait for HAProxy's first up or down event
// before they start anyway (their failures then count). HAProxy is up in well under a second; a
// huge configuration may take longer.
const haproxyStartWait = 10 * time.Second

// contendHold bounds how long an instance waits for first results of the checks it tracks
// before contending for MASTER anyway, pending checks then counting as neither up nor down:
// haproxyStartWait plus a check timeout and some.
const contendHold = 15 * time.Second

// openCheckGate lets the periodic checks run: HAProxy has started (or failed to).
func (d *daemon) openCheckGate() {
	if d.haproxyStarted != nil {
		d.haproxyStartedOnce.Do(func() { close(d.haproxyStarted) })
	}
}

// holdUntilChecksReport keeps an instance from contending for MASTER (its machine stays in Init:
// no advert, no VIP, no Master_Down_Timer) until every check it tracks has a first real result,
// or contendHold has passed. Two hosts started together then both contend with their real
// priorities, and the higher one wins the first time instead of the one whose checks
// happened to report first; a lone host becomes MASTER once its checks have reported.
func (d *daemon) holdUntilChecksReport(ctx context.Context, vi *vrrpInstance) {
	deadline := time.Now().Add(contendHold)
	logged := false
	for {
		var waiting []string
		d.mu.Lock()
		for _, name := range d.checks.Pending() {
			if _, tracked := vi.track[name]; tracked {
				waiting = append(waiting, name)
			}
		}
		d.mu.Unlock()
		if len(waiting) == 0 {
			if logged {
				d.log.Info("(" + vi.name + ") Tracked checks have reported, contending")
			}
			return
		}
		if time.Now().After(deadline) {
			d.log.Warn("("+vi.name+") Checks have not reported in time, contending without them", "checks", fmt.Sprint(waiting), "after", contendHold)
			return
		}
		if !logged {
			d.log.Info("("+vi.name+") Waiting for first results before contending", "checks", fmt.Sprint(waiting))
			logged = true
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// haproxyRiseHold is how long a restarted HAProxy must stay up before the liveness check counts
// it healthy again. A crash is believed at once (the priority drops and the BACKUP takes over
// within its skew time); a recovery is believed only once it holds, so that a node whose HAProxy
// crashes and comes back every second does not pull the VIP to and fro (keepalived's rise).
const haproxyRiseHold = 2 * time.Second

// forwardHAProxyEvents feeds the supervisor's exit and start events into the built-in liveness
// check, so a dead HAProxy lowers the priority at once rather than at the next poll.
func (d *daemon) forwardHAProxyEvents(ctx context.Context) {
	var hold <-chan time.Time // armed while a restarted HAProxy proves itself
	var pending supervisor.Event
	// Set under d.mu (it never blocks): a reload's new runner inherits the old one's liveness
	// under d.mu too, so a change lands either before the inheritance or in the new runner.
	setLive := func(up bool, reason string) {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.checks.Liveness().Set(up, reason)
	}
	everDown := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-hold:
			hold = nil
			setLive(true, pending.Reason+fmt.Sprintf(", stable for %s", haproxyRiseHold))
		case ev := <-d.sup.Events():
			d.openCheckGate()
			switch {
			case !ev.Up:
				everDown = true
				hold = nil
				setLive(false, ev.Reason)
			case everDown:
				pending = ev
				hold = time.After(haproxyRiseHold)
			default: // first start: nothing to distrust yet
				setLive(true, ev.Reason)
			}
		}
	}
}

// startChecks runs a checks runner and follows its events until stopChecks. A reload replaces the
// runner this way when the checks changed: then (inherit) r takes over the tracked state of the
// runner it replaces, which stopChecks has stopped.
func (d *daemon) startChecks(parent context.Context, r *checks.Runner, inherit bool) {
	ctx, cancel := context.WithCancel(parent)
	done := make(chan struct{})
	d.mu.Lock()
	if inherit && d.checks != nil {
		r.Inherit(d.checks)
	}
	d.checks, d.checksCancel, d.checksDone = r, cancel, done
	d.mu.Unlock()
	followed := make(chan struct{})
	go func() {
		defer close(followed)
		d.followChecks(ctx, r)
	}()
	go func() {
		defer close(done)
		if err := r.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			d.log.Error("Checks runner failed", "err", err)
		}
		// Once stopChecks returns, nothing acts on this runner's results any more: the next
		// runner's must not be overwritten by a follower that is late.
		<-followed
	}()
}

func (d *daemon) stopChecks() {
	d.mu.Lock()
	cancel, done := d.checksCancel, d.checksDone
	d.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// followChecks applies r's events until ctx is done or r has stopped (its Events closed).
func (d *daemon) followChecks(ctx context.Context, r *checks.Runner) {
	for name, up := range r.Up() { // inherited from the runner r replaced, if any
		d.metrics.CheckUp(name, up)
	}
	d.updatePriorities()
	d.updateBGP(r)
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-r.Events():
			if !ok || ctx.Err() != nil {
				return // a closed channel yields zero events: no check named ""
			}
			d.metrics.CheckUp(ev.Name, ev.Up)
			d.updatePriorities()
			d.updateBGP(r)
		}
	}
}

// notifySystemd tells systemd READY once every instance has settled, and pings the watchdog, if
// systemd runs one for us, from the start, as long as every VRRP loop keeps turning.
func (d *daemon) notifySystemd(ctx context.Context) {
	if d.watchdogEvery > 0 {
		go d.pingWatchdog(ctx)
	}
	for _, vi := range d.instances {
		select {
		case <-ctx.Done():
			return
		case <-vi.run.Settled():
		}
	}
	if err := d.notify("READY=1\nSTATUS=VRRP instances settled"); err != nil {
		d.log.Warn("systemd notification failed", "err", err)
	}
	if d.onSettled != nil {
		d.onSettled()
	}
	d.trimExecutable()
}

// pingWatchdog pings systemd's watchdog at once, then every watchdogEvery while every VRRP loop
// keeps turning. At once and before the instances settle: after an in-place upgrade this image
// runs under the watchdog of the one before, whose last ping may be half a timeout old, and
// settling may take seconds (a BACKUP waits for its checks, then a MASTER's advert).
func (d *daemon) pingWatchdog(ctx context.Context) {
	_ = d.notify("WATCHDOG=1")
	t := time.NewTicker(d.watchdogEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			stuck := false
			for _, vi := range d.instances {
				if late := vi.run.Overdue(now); late > 5*time.Second {
					stuck = true
					d.log.Error("("+vi.name+") VRRP loop has not turned", "overdue", late.Round(time.Second))
				}
			}
			if !stuck {
				_ = d.notify("WATCHDOG=1")
			}
		}
	}
}
