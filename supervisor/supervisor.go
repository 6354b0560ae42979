// Package supervisor runs HAProxy as a direct child in master-worker mode and watches it: it sees
// an exit the moment it happens (the child's wait returns, nothing is polled), restarts it with a
// jittered exponential backoff, reloads it after `haproxy -c` has accepted the new configuration
// and verifies the reload through the master CLI, and stops it softly.
//
// HAProxy is started as `haproxy -W -db -S <runtime_dir>/master.sock,mode,600 -f <config>`: never
// -Ws, whose master would talk to systemd itself, and without NOTIFY_SOCKET or WATCHDOG_* in its
// environment, since hapair is the service systemd knows.
package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults for the zero values of Config.
const (
	DefaultStopGrace         = 10 * time.Second
	DefaultBackoffInitial    = 500 * time.Millisecond
	DefaultBackoffMax        = 30 * time.Second
	DefaultBackoffResetAfter = 30 * time.Second
	// readyTimeout bounds how long a fresh master may take to show a worker in `show proc`.
	readyTimeout = 15 * time.Second
	// reloadTimeout bounds how long a reload may take to show its new worker.
	reloadTimeout = 15 * time.Second
)

// Config is how HAProxy is run.
type Config struct {
	Command    string // the haproxy binary
	ConfigFile string
	RuntimeDir string // holds master.sock; created 0700
	StopGrace  time.Duration
	// Restart backoff: BackoffInitial doubling up to BackoffMax, ±20% jitter, back to
	// BackoffInitial once a child has run for BackoffResetAfter.
	BackoffInitial, BackoffMax, BackoffResetAfter time.Duration
	Env                                           []string // added to the environment
}

// Event tells that HAProxy came up (its master shows a worker) or went down (it exited).
type Event struct {
	Up         bool
	PID        int
	ExitStatus int // when down: the exit status, or 128+signal
	Reason     string
	At         time.Time
}

// Reporter receives what an operator watches (package metrics implements it).
type Reporter interface {
	HAProxyUp(bool)
	HAProxyRestart()
	HAProxyReload(result string) // ok, refused, failed
	HAProxyExit(status int)
}

// ReloadStatus is the outcome of the last reload.
type ReloadStatus struct {
	At     time.Time
	Result string // ok, refused, failed
	Error  string
}

// Status is a snapshot for /status.
type Status struct {
	PID        int
	Up         bool
	Restarts   int
	LastExit   *int
	LastReload ReloadStatus
	Backoff    time.Duration // wait before the next start, while one is pending
}

// Supervisor owns one HAProxy master process.
type Supervisor struct {
	cfg    Config
	rep    Reporter
	log    *slog.Logger
	events chan Event

	reloadMu sync.Mutex // one reload at a time

	mu     sync.Mutex
	status Status
	child  *os.Process
	// exited is closed when the current child has been reaped.
	exited chan struct{}
}

// New returns a supervisor; Run starts HAProxy.
func New(cfg Config, rep Reporter, log *slog.Logger) *Supervisor {
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = DefaultStopGrace
	}
	if cfg.BackoffInitial <= 0 {
		cfg.BackoffInitial = DefaultBackoffInitial
	}
	if cfg.BackoffMax < cfg.BackoffInitial {
		cfg.BackoffMax = max(DefaultBackoffMax, cfg.BackoffInitial)
	}
	if cfg.BackoffResetAfter <= 0 {
		cfg.BackoffResetAfter = DefaultBackoffResetAfter
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Supervisor{cfg: cfg, rep: rep, log: log, events: make(chan Event, 64)}
}

// Events delivers Up and Down events in order. The buffer is large; a reader that falls far
// behind loses the oldest (logged), never blocks the supervisor.
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

// SocketPath is the master CLI socket.
func (s *Supervisor) SocketPath() string { return filepath.Join(s.cfg.RuntimeDir, "master.sock") }

// Run starts HAProxy and keeps it running until ctx is done, then stops it (soft stop, SIGTERM
// after the grace period, SIGKILL last) and returns once it is gone.
func (s *Supervisor) Run(ctx context.Context) error {
	if err := s.prepareRuntimeDir(); err != nil {
		return err
	}
	backoff := s.cfg.BackoffInitial
	for {
		started := time.Now()
		exit, err := s.runOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			s.log.Error(fmt.Sprintf("Starting HAProxy: %v", err))
		}
		if time.Since(started) >= s.cfg.BackoffResetAfter {
			backoff = s.cfg.BackoffInitial
		}
		s.log.Debug(fmt.Sprintf("HAProxy exit status %d", exit))
		wait := jitter(backoff)
		s.setBackoff(wait)
		s.log.Warn(fmt.Sprintf("Restarting HAProxy in %s", wait.Round(time.Millisecond)))
		select {
		case <-ctx.Done():
			s.setBackoff(0)
			return nil
		case <-time.After(wait):
		}
		s.setBackoff(0)
		s.mu.Lock()
		s.status.Restarts++
		s.mu.Unlock()
		s.rep.HAProxyRestart()
		backoff = min(2*backoff, s.cfg.BackoffMax)
	}
}

// jitter spreads a wait by ±20% so that two nodes restarting after one event do not march in step.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

func (s *Supervisor) setBackoff(d time.Duration) {
	s.mu.Lock()
	s.status.Backoff = d
	s.mu.Unlock()
}

func (s *Supervisor) prepareRuntimeDir() error {
	if err := os.MkdirAll(s.cfg.RuntimeDir, 0o700); err != nil {
		return fmt.Errorf("haproxy runtime dir: %w", err)
	}
	if err := os.Chmod(s.cfg.RuntimeDir, 0o700); err != nil {
		return fmt.Errorf("haproxy runtime dir: %w", err)
	}
	// A socket left by a hapair that was killed would make HAProxy's bind fail.
	if err := os.Remove(s.SocketPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove stale master socket: %w", err)
	}
	return nil
}

// childEnv is the parent's environment without systemd's notify and watchdog variables.
func (s *Supervisor) childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "NOTIFY_SOCKET=") || strings.HasPrefix(kv, "WATCHDOG_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, s.cfg.Env...)
}

// runOnce starts one HAProxy master and returns when it has exited (or been stopped because ctx
// ended). It returns the exit status.
func (s *Supervisor) runOnce(ctx context.Context) (int, error) {
	cmd := exec.Command(s.cfg.Command, "-W", "-db", "-S", s.SocketPath()+",mode,600", "-f", s.cfg.ConfigFile)
	cmd.Env = s.childEnv()
	// Pdeathsig: if hapair dies, even by SIGKILL, the kernel kills HAProxy's master, whose workers
	// follow. Setpgid: a Ctrl-C in hapair's terminal does not hit HAProxy behind hapair's back.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	cmd.Stderr = cmd.Stdout

	startErr := make(chan error, 1)
	waited := make(chan waitResult, 1)
	// Pdeathsig fires when the thread that forked the child exits, not the process: fork from a
	// locked thread that lives exactly as long as the child.
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			startErr <- err
			runtime.UnlockOSThread()
			return
		}
		startErr <- nil
		st, err := cmd.Process.Wait()
		waited <- waitResult{st, err}
		// Returning while locked ends the thread too; nothing else ever runs on it.
	}()
	if err := <-startErr; err != nil {
		s.down(0, -1, fmt.Sprintf("cannot start: %v", err))
		return -1, fmt.Errorf("start %s: %w", s.cfg.Command, err)
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	s.mu.Lock()
	s.child, s.exited = cmd.Process, exited
	s.status.PID = pid
	s.mu.Unlock()
	s.log.Info(fmt.Sprintf("Started HAProxy master (pid %d)", pid))

	linesDone := make(chan struct{})
	go func() {
		defer close(linesDone)
		s.copyLines(out)
	}()
	readyCtx, cancelReady := context.WithCancel(ctx)
	defer cancelReady()
	go s.announceReady(readyCtx, pid)

	select {
	case r := <-waited:
		cancelReady()
		close(exited)
		<-linesDone
		status := exitStatus(r.state)
		s.down(pid, status, describeExit(r.state))
		return status, nil
	case <-ctx.Done():
		cancelReady()
		s.stop(pid, waited, exited)
		<-linesDone
		return 0, nil
	}
}

// announceReady waits for the master to show a worker, then reports HAProxy up.
func (s *Supervisor) announceReady(ctx context.Context, pid int) {
	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return
		}
		if p, err := s.showProc(); err == nil && len(p.workers) > 0 {
			s.mu.Lock()
			current := s.status.PID == pid
			if current {
				s.status.Up = true
			}
			s.mu.Unlock()
			if !current || ctx.Err() != nil {
				return
			}
			s.rep.HAProxyUp(true)
			s.log.Info(fmt.Sprintf("HAProxy is up (master %d, worker %d)", pid, p.workers[0].pid))
			s.emit(Event{Up: true, PID: pid, Reason: "worker running", At: time.Now()})
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.log.Warn(fmt.Sprintf("HAProxy master %d shows no worker after %s", pid, readyTimeout))
}

// down records an exit and tells the checks at once.
func (s *Supervisor) down(pid, status int, reason string) {
	s.mu.Lock()
	s.status.Up = false
	s.status.PID = 0
	if pid != 0 {
		v := status
		s.status.LastExit = &v
	}
	s.child = nil
	s.mu.Unlock()
	s.rep.HAProxyUp(false)
	if pid != 0 {
		s.rep.HAProxyExit(status)
		s.log.Error(fmt.Sprintf("HAProxy master (pid %d) %s", pid, reason))
	}
	s.emit(Event{Up: false, PID: pid, ExitStatus: status, Reason: reason, At: time.Now()})
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
			s.log.Warn(fmt.Sprintf("HAProxy event dropped, nobody read it: up=%t", old.Up))
		default:
		}
	}
}

type waitResult struct {
	state *os.ProcessState
	err   error
}

// stop soft-stops HAProxy (SIGUSR1: stop listening, finish what is in flight), then SIGTERM after
// the grace period, SIGKILL to the whole process group last.
func (s *Supervisor) stop(pid int, waited <-chan waitResult, exited chan struct{}) {
	s.log.Info(fmt.Sprintf("Stopping HAProxy (soft stop, pid %d)", pid))
	_ = syscall.Kill(pid, syscall.SIGUSR1)
	r, ok := waitFor(waited, s.cfg.StopGrace)
	if !ok {
		s.log.Warn(fmt.Sprintf("HAProxy did not stop within %s, sending SIGTERM", s.cfg.StopGrace))
		_ = syscall.Kill(pid, syscall.SIGTERM)
		if r, ok = waitFor(waited, 5*time.Second); !ok {
			s.log.Warn("HAProxy ignored SIGTERM, killing its process group")
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			r = <-waited
		}
	}
	close(exited)
	status := exitStatus(r.state)
	// 0 and 143 are normal ends; 2.6.12 was seen to end a soft stop with a request in flight in a
	// worker segfault (139): the stop still happened.
	switch status {
	case 0, 143, 139:
		s.log.Info(fmt.Sprintf("HAProxy stopped (%s)", describeExit(r.state)))
	default:
		s.log.Warn(fmt.Sprintf("HAProxy stopped: %s", describeExit(r.state)))
	}
	s.mu.Lock()
	s.status.Up, s.status.PID, s.child = false, 0, nil
	s.status.LastExit = &status
	s.mu.Unlock()
	s.rep.HAProxyUp(false)
	s.emit(Event{Up: false, PID: pid, ExitStatus: status, Reason: "stopped", At: time.Now()})
}

func waitFor(ch <-chan waitResult, d time.Duration) (waitResult, bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case r := <-ch:
		return r, true
	case <-t.C:
		return waitResult{}, false
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

// copyLines puts HAProxy's output into hapair's log, one record per line.
func (s *Supervisor) copyLines(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if line := strings.TrimRight(sc.Text(), "\r"); line != "" {
			s.log.Info("haproxy: " + line)
		}
	}
}
