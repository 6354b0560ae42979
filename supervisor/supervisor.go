// Package supervisor runs HAProxy as a direct child in master-worker mode and watches it: it sees
// an exit the moment it happens (the child's wait returns, nothing is polled), restarts it with a
// jittered exponential backoff, reloads it after `haproxy -c` has accepted the new configuration
// and verifies the reload through the master CLI, and stops it softly.
//
// HAProxy is started as `haproxy -W -db -S <runtime_dir>/master.sock,mode,600 -f <config>`: never
// -Ws, whose master would talk to systemd itself, and without NOTIFY_SOCKET or WATCHDOG_* in its
// environment, since hapair is the service systemd knows.
//
// HAProxy outlives a hapair that dies without a stop (SIGKILL, a panic, a watchdog abort): its
// master keeps serving, and the next supervisor on the same runtime dir adopts it (Run) after
// checking it is the one this configuration starts: it answers on the master socket, it is the
// pid in the pid file, its command line is ours. An adopted master is watched through a pidfd
// (it may not be our child), reloaded and stopped like one we started. A master that fails the
// check is stopped and a fresh one started; a socket nobody answers on is removed.
package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hapair/hapair/internal/rtprio"
	"github.com/hapair/hapair/internal/spawn"
)

// Defaults for the zero values of Config.
const (
	DefaultStopGrace      = 10 * time.Second
	DefaultBackoffInitial = 500 * time.Millisecond
	DefaultBackoffMax     = 30 * time.Second
	// DefaultBackoffResetAfter: a master that ran as long as the longest wait counts as healthy,
	// and its next failure is restarted after BackoffInitial again. Shorter would let a config
	// that dies after a few seconds restart at full speed for ever.
	DefaultBackoffResetAfter = 30 * time.Second
	// readyTimeout: after this long without a worker in `show proc` a warning is logged; the
	// supervisor keeps asking, more slowly, until the master shows one or exits.
	readyTimeout = 15 * time.Second
	// reloadTimeout bounds how long a reload may take to show its new worker.
	reloadTimeout = 15 * time.Second
	// killGrace is how long SIGTERM gets before SIGKILL.
	killGrace = 5 * time.Second
	// pollInterval paces master CLI polls (readiness, reload verification).
	pollInterval = 20 * time.Millisecond
)

// Config is how HAProxy is run.
type Config struct {
	Command    string // the haproxy binary
	ConfigFile string
	RuntimeDir string // holds master.sock; created 0700 when missing, never chmodded
	// StopGrace is how long a soft stop (SIGUSR1: finish what is in flight) may take before
	// SIGTERM; SIGKILL follows 5 s later. SetTimings changes it.
	StopGrace time.Duration
	// Restart backoff: BackoffInitial doubling up to BackoffMax, ±20% jitter, back to
	// BackoffInitial once a child has run for BackoffResetAfter. SetTimings changes it.
	BackoffInitial, BackoffMax, BackoffResetAfter time.Duration
	Env                                           []string // added to the environment
}

// Event tells that HAProxy came up (its master shows a worker) or went down (it exited, or could
// not be started).
type Event struct {
	Up         bool
	PID        int // the master; 0 if it could not be started
	ExitStatus int // when down: the exit status, 128+signal if killed, -1 if it never started
	Reason     string
	At         time.Time // for an exit: when the master was reaped
}

// Reporter receives what an operator watches (package metrics implements it).
type Reporter interface {
	HAProxyUp(bool)
	HAProxyRestart()
	HAProxyReload(result ReloadResult)
	HAProxyExit(status int)
}

// ReloadResult is how a reload ended. The values are the result label of
// hapair_haproxy_reloads_total and hapair_config_reloads_total, and the words of `hapair status`:
// dashboards and scripts depend on them. A reload of hapair's own configuration ends the same
// three ways.
type ReloadResult string

// The outcomes of a reload.
const (
	ReloadOK      ReloadResult = "ok"      // the new configuration runs
	ReloadRefused ReloadResult = "refused" // validation rejected it; the running one was not touched
	ReloadFailed  ReloadResult = "failed"  // the reload itself failed (master in wait mode, timeout, ...)
)

// ReloadResults lists every outcome, so that a counter can start every label at zero.
func ReloadResults() []ReloadResult { return []ReloadResult{ReloadOK, ReloadRefused, ReloadFailed} }

// ReloadStatus is the outcome of the last reload.
type ReloadStatus struct {
	At     time.Time
	Result ReloadResult
	Error  string
}

// Status is a snapshot for /status.
type Status struct {
	PID      int
	Up       bool
	Restarts int // starts after the first
	// Failures counts the masters in a row that lived less than BackoffResetAfter: above 1, HAProxy
	// is in a crash loop.
	Failures       int
	LastExit       *int   // nil before the first exit
	LastExitReason string // "killed by signal 9 (killed)", "exited with status 1", "stopped"
	LastStartError string // why the last start failed (binary missing, ...); "" once one succeeds
	LastReload     ReloadStatus
	Backoff        time.Duration // wait before the next start, while one is pending
}

// Supervisor owns one HAProxy master process.
type Supervisor struct {
	cfg    Config
	rep    Reporter
	log    *slog.Logger
	events chan Event
	output *lineRing
	now    func() time.Time
	rand   func() float64

	reloadMu sync.Mutex // one reload at a time

	mu     sync.Mutex
	status Status
	child  *child   // the running master, nil when none
	outR   *os.File // read end of the running master's output pipe, nil when none
	// timings are the stop grace and the restart backoff in force: cfg's until SetTimings
	// (a reload) changes them. cfg's own copies are not read after New.
	timings timings

	inherited *os.File // output pipe handed over by the previous image (InheritOutput)
}

// child is one started master.
type child struct {
	proc *os.Process
	pid  int
	done chan struct{} // closed once it has been reaped
	// set before done is closed
	state *os.ProcessState
	at    time.Time

	// An adopted master (started by an earlier hapair): no ProcessState, and its exit status
	// only when it is our child after all (an in-place upgrade).
	adopted     bool
	status      int
	statusKnown bool
}

// exitStatus is the exit status, 128+signal if killed, -1 when unknown.
func (c *child) exitStatus() int {
	if c.adopted {
		return c.status
	}
	return exitStatus(c.state)
}

// describeExit says how it ended, as the log and status show it.
func (c *child) describeExit() string {
	if c.adopted && !c.statusKnown {
		return "exited (adopted, exit status unknown)"
	}
	if c.adopted {
		if c.status > 128 {
			sig := syscall.Signal(c.status - 128)
			return fmt.Sprintf("killed by signal %d (%s)", int(sig), sig)
		}
		return fmt.Sprintf("exited with status %d", c.status)
	}
	return describeExit(c.state)
}

// timings is what a reload may change of how HAProxy is stopped and restarted.
type timings struct {
	stopGrace time.Duration
	backoff   backoffLimits
}

// timingsOf reads c's stop grace and restart backoff, with the defaults for zero values.
func timingsOf(c Config) timings {
	t := timings{stopGrace: c.StopGrace, backoff: backoffLimits{initial: c.BackoffInitial, max: c.BackoffMax, resetAfter: c.BackoffResetAfter}}
	if t.stopGrace <= 0 {
		t.stopGrace = DefaultStopGrace
	}
	if t.backoff.initial <= 0 {
		t.backoff.initial = DefaultBackoffInitial
	}
	if t.backoff.max < t.backoff.initial {
		t.backoff.max = max(DefaultBackoffMax, t.backoff.initial)
	}
	if t.backoff.resetAfter <= 0 {
		t.backoff.resetAfter = DefaultBackoffResetAfter
	}
	return t
}

// New returns a supervisor; Run starts HAProxy. rep and log may be nil.
func New(cfg Config, rep Reporter, log *slog.Logger) *Supervisor {
	if rep == nil {
		rep = nopReporter{}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Supervisor{
		cfg: cfg, rep: rep, log: log, events: make(chan Event, 64),
		output: &lineRing{max: 200}, now: time.Now, rand: rand.Float64,
		timings: timingsOf(cfg),
	}
}

// SetTimings applies c's StopGrace and Backoff* (a reload of haproxy.stop_grace and
// haproxy.restart_backoff; c's other fields are fixed at New, and zero values take the defaults,
// as in New). The next stop waits the new grace; the next restart waits by the new backoff, after
// the failures counted so far, and a restart already waiting keeps its wait. Safe while Run runs.
func (s *Supervisor) SetTimings(c Config) {
	t := timingsOf(c)
	s.mu.Lock()
	s.timings = t
	s.mu.Unlock()
}

func (s *Supervisor) currentTimings() timings {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.timings
}

type nopReporter struct{}

func (nopReporter) HAProxyUp(bool)             {}
func (nopReporter) HAProxyRestart()            {}
func (nopReporter) HAProxyReload(ReloadResult) {}
func (nopReporter) HAProxyExit(int)            {}

// Events delivers Up and Down events in order. The buffer is large; a reader that falls far
// behind loses the oldest (logged), never blocks the supervisor. It is never closed.
func (s *Supervisor) Events() <-chan Event { return s.events }

// Status returns a snapshot.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	if st.LastExit != nil {
		v := *st.LastExit
		st.LastExit = &v
	}
	return st
}

// SocketName is the master CLI socket's name in the runtime directory.
const SocketName = "master.sock"

// SocketPath is the master CLI socket.
func (s *Supervisor) SocketPath() string { return filepath.Join(s.cfg.RuntimeDir, SocketName) }

// Run starts HAProxy, or adopts the master an earlier hapair left running, and keeps it running
// until ctx is done, then stops it (soft stop, SIGTERM after the grace period, SIGKILL last) and
// returns nil once it is gone. It returns an error only when supervision cannot begin: the
// runtime directory is unusable, or a master that is not ours answers on its socket and does not
// stop. Run is called once.
func (s *Supervisor) Run(ctx context.Context) error {
	if err := s.prepareRuntimeDir(ctx); err != nil {
		return err
	}
	adopted, err := s.findMaster(ctx)
	if err != nil {
		if s.inherited != nil {
			s.inherited.Close()
		}
		return err
	}
	if adopted == nil && s.inherited != nil {
		s.inherited.Close() // its master is gone
		s.inherited = nil
	}
	bo := &backoff{rand: s.rand}
	for {
		ran, stopped := s.runOnce(ctx, adopted)
		adopted = nil
		if stopped || ctx.Err() != nil {
			return nil
		}
		bo.setLimits(s.currentTimings().backoff) // read at each exit: a reload may have changed them
		wait := bo.next(ran)
		s.mu.Lock()
		s.status.Backoff, s.status.Failures = wait, bo.failures
		s.mu.Unlock()
		s.log.Warn("Restarting HAProxy", "in", wait.Round(time.Millisecond), "failures", bo.failures)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			s.setBackoff(0)
			return nil
		case <-t.C:
		}
		s.setBackoff(0)
		s.mu.Lock()
		s.status.Restarts++
		s.mu.Unlock()
		s.rep.HAProxyRestart()
	}
}

func (s *Supervisor) setBackoff(d time.Duration) {
	s.mu.Lock()
	s.status.Backoff = d
	s.mu.Unlock()
}

// prepareRuntimeDir makes a missing runtime dir (private). An existing directory keeps its mode:
// whether it is fit (hapair's own, writable by nobody else) is for the caller to decide before
// Run, and a chmod would override systemd's RuntimeDirectoryMode, or tighten a shared directory
// such as /tmp behind its owner's back.
func (s *Supervisor) prepareRuntimeDir(context.Context) error {
	if err := os.MkdirAll(s.cfg.RuntimeDir, 0o700); err != nil {
		return fmt.Errorf("haproxy runtime dir: %w", err)
	}
	return nil
}

// runOnce starts one HAProxy master (or watches the adopted one) and returns when it has exited
// (stopped false) or has been stopped because ctx ended (stopped true); ran is how long it lived.
func (s *Supervisor) runOnce(ctx context.Context, adopted *child) (ran time.Duration, stopped bool) {
	if ctx.Err() != nil && adopted == nil {
		return 0, true
	}
	started := s.now()
	var c *child
	var linesDone <-chan struct{}
	if adopted != nil {
		c = adopted
		done := make(chan struct{})
		linesDone = done
		r := s.inherited
		if r != nil { // an upgrade: the pipe came along
			s.inherited = nil
			go func() {
				defer close(done)
				defer r.Close()
				copyLines(r, s.log, s.output)
			}()
		} else {
			close(done) // its output went to the hapair that started it
		}
		s.mu.Lock()
		// The pipe is this master's output as much as one start made: the next upgrade hands
		// it on (KeepOutputAcrossExec), or its execve closes it and HAProxy writes to nobody.
		s.outR = r
		s.child = c
		s.status.PID, s.status.LastStartError = c.pid, ""
		s.mu.Unlock()
	} else {
		// A master killed with its socket in place (kill -9) leaves it behind.
		if err := s.prepareRuntimeDir(ctx); err != nil {
			s.down(nil, -1, fmt.Sprintf("cannot start: %v", err), s.now())
			return 0, false
		}
		if _, err := s.findMaster(ctx); err != nil {
			s.down(nil, -1, fmt.Sprintf("cannot start: %v", err), s.now())
			return 0, false
		}
		var err error
		c, linesDone, err = s.start()
		if err != nil {
			s.down(nil, -1, fmt.Sprintf("cannot start: %v", err), s.now())
			return 0, false
		}
		s.log.Info("Started HAProxy master", "pid", c.pid)
	}

	readyCtx, cancelReady := context.WithCancel(ctx)
	defer cancelReady()
	go s.announceReady(readyCtx, c)

	select {
	case <-c.done:
		cancelReady()
		// Told before the output is drained: a worker still holding the pipe must not delay it.
		s.removePIDFile()
		s.down(c, c.exitStatus(), c.describeExit(), c.at)
		// The restart does not wait for the output to end: a straggler holding the pipe
		// (a check script HAProxy ran) must not hold HAProxy down. The copier ends at EOF.
		return c.at.Sub(started), false
	case <-ctx.Done():
		cancelReady()
		s.stop(c)
		// HAProxy's last words reach the log before Run returns, unless a straggler keeps
		// the pipe open.
		waitFor(linesDone, time.Second)
		return c.at.Sub(started), true
	}
}

// start forks the master. Its output goes through a pipe of our own rather than cmd.StdoutPipe,
// so the wait returns the moment the master is reaped, whoever still holds the pipe.
func (s *Supervisor) start() (*child, <-chan struct{}, error) {
	args := s.args()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = spawn.Env(os.Environ(), s.cfg.Env...)
	cmd.Dir = "/"
	// No Pdeathsig: HAProxy must keep serving when hapair dies without a stop; the next hapair
	// adopts it. Setpgid: a Ctrl-C in hapair's terminal does not hit HAProxy behind hapair's back.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("output pipe: %w", err)
	}
	cmd.Stdout, cmd.Stderr = w, w

	c := &child{done: make(chan struct{})}
	err = rtprio.Start(cmd) // at normal priority even when hapair runs real-time
	w.Close()
	if err != nil {
		r.Close()
		return nil, nil, fmt.Errorf("start %s: %w", s.cfg.Command, err)
	}
	c.proc, c.pid = cmd.Process, cmd.Process.Pid
	go func() {
		c.state, _ = cmd.Process.Wait()
		c.at = s.now()
		close(c.done)
	}()
	s.writePIDFile(c.pid)
	s.mu.Lock()
	s.outR = r
	s.mu.Unlock()
	linesDone := make(chan struct{})
	go func() {
		defer close(linesDone)
		defer r.Close()
		copyLines(r, s.log, s.output)
	}()
	s.mu.Lock()
	s.child = c
	s.status.PID, s.status.LastStartError = c.pid, ""
	s.mu.Unlock()
	return c, linesDone, nil
}

// announceReady asks the master CLI until it shows a worker of this master, then reports HAProxy
// up. It is readiness only: the exit is seen through the wait.
func (s *Supervisor) announceReady(ctx context.Context, c *child) {
	warnAt := s.now().Add(readyTimeout)
	interval := pollInterval
	for {
		p, err := showProc(ctx, s.SocketPath(), pollTimeout)
		if err == nil && p.master == c.pid && len(p.workers) > 0 {
			s.mu.Lock()
			current := s.child == c
			if current {
				s.status.Up = true
			}
			s.mu.Unlock()
			if !current || ctx.Err() != nil {
				return
			}
			s.rep.HAProxyUp(true)
			s.log.Info("HAProxy is up", "master", c.pid, "worker", p.workers[0].pid)
			s.emit(Event{Up: true, PID: c.pid, Reason: "worker running", At: s.now()})
			return
		}
		if interval == pollInterval && s.now().After(warnAt) {
			s.log.Warn("HAProxy master shows no worker yet", "master", c.pid, "after", readyTimeout, "err", err)
			interval = time.Second
		}
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-c.done:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// down records an exit (c nil: a start that failed) and tells the checks at once.
func (s *Supervisor) down(c *child, status int, reason string, at time.Time) {
	pid := 0
	if c != nil {
		pid = c.pid
	}
	s.mu.Lock()
	s.status.Up, s.status.PID, s.child = false, 0, nil
	if c != nil {
		v := status
		s.status.LastExit, s.status.LastExitReason = &v, reason
	} else {
		s.status.LastStartError = reason
	}
	s.mu.Unlock()
	s.rep.HAProxyUp(false)
	if c != nil {
		s.rep.HAProxyExit(status)
		s.log.Error("HAProxy master exited", "pid", pid, "how", reason)
	} else {
		s.log.Error("Starting HAProxy failed", "err", strings.TrimPrefix(reason, "cannot start: "))
	}
	s.emit(Event{Up: false, PID: pid, ExitStatus: status, Reason: reason, At: at})
}

func (s *Supervisor) emit(ev Event) {
	for {
		select {
		case s.events <- ev:
			return
		default:
		}
		select { // full: drop the oldest so the newest state always gets through
		case old := <-s.events:
			s.log.Warn("HAProxy event dropped, nobody read it", "up", old.Up)
		default:
		}
	}
}

// stop soft-stops HAProxy (SIGUSR1: stop listening, finish what is in flight), then SIGTERM after
// the grace period, SIGKILL to the whole process group last. Signals go through the os.Process
// (a pidfd), so none can reach another process that reused the pid.
func (s *Supervisor) stop(c *child) {
	s.log.Info("Stopping HAProxy (soft stop)", "pid", c.pid)
	_ = c.proc.Signal(syscall.SIGUSR1)
	grace := s.currentTimings().stopGrace
	if !waitFor(c.done, grace) {
		s.log.Warn("HAProxy did not stop in time, sending SIGTERM", "stop_grace", grace)
		_ = c.proc.Signal(syscall.SIGTERM)
		if !waitFor(c.done, killGrace) {
			s.log.Warn("HAProxy ignored SIGTERM, killing its process group")
			// The master is not reaped yet, so its pid still names its own process group.
			_ = syscall.Kill(-c.pid, syscall.SIGKILL)
			<-c.done
		}
	}
	s.removePIDFile()
	status := c.exitStatus()
	// 0 and 143 are normal ends; 2.6.12 was seen to end a soft stop with a request in flight in a
	// worker segfault (139): the stop still happened.
	reason := "stopped"
	switch status {
	case 0, 143, 139:
		s.log.Info("HAProxy stopped", "how", c.describeExit())
	case -1:
		if c.adopted {
			s.log.Info("HAProxy stopped", "how", c.describeExit())
			break
		}
		fallthrough
	default:
		reason = "stopped: " + c.describeExit()
		s.log.Warn("HAProxy stopped", "how", c.describeExit())
	}
	s.mu.Lock()
	s.status.Up, s.status.PID, s.child = false, 0, nil
	s.status.LastExit, s.status.LastExitReason = &status, reason
	s.mu.Unlock()
	s.rep.HAProxyUp(false)
	s.rep.HAProxyExit(status)
	s.emit(Event{Up: false, PID: c.pid, ExitStatus: status, Reason: reason, At: c.at})
}

// waitFor reports whether done closed within d.
func waitFor(done <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

func exitStatus(st *os.ProcessState) int {
	if st == nil {
		return -1
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return st.ExitCode()
}

func describeExit(st *os.ProcessState) string {
	if st == nil {
		return "exited"
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Sprintf("killed by signal %d (%s)", int(ws.Signal()), ws.Signal())
	}
	return fmt.Sprintf("exited with status %d", st.ExitCode())
}

// current returns the running master, or nil.
func (s *Supervisor) current() *child {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.child
}
