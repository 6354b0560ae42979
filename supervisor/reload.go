package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/hapair/hapair/internal/rtprio"
	"github.com/hapair/hapair/internal/spawn"
)

// ErrNotRunning is returned by Reload when there is no HAProxy to reload.
var ErrNotRunning = errors.New("haproxy is not running")

// ErrRefused is matched (errors.Is) by Reload's error when `haproxy -c` rejected the file: the
// running HAProxy was not touched.
var ErrRefused = errors.New("haproxy -c refused the configuration")

// refusedError keeps HAProxy's own words as the message and matches ErrRefused.
type refusedError struct{ err error }

func (e refusedError) Error() string   { return e.err.Error() }
func (e refusedError) Unwrap() []error { return []error{ErrRefused, e.err} }

// Verdict is HAProxy's own judgement of a configuration file that it accepted.
type Verdict struct {
	Output     string // what `haproxy -c` said, trimmed
	NoListener bool   // exit status 2: valid, but the file declares no listener
}

// RejectedError is Validate's error when HAProxy refused the file (`haproxy -c` exited with a
// status other than 0 and 2).
type RejectedError struct {
	ConfigFile string
	ExitCode   int
	Output     string // HAProxy's own words, trimmed
}

func (e *RejectedError) Error() string {
	return fmt.Sprintf("haproxy -c -f %s rejects it (exit %d): %s", e.ConfigFile, e.ExitCode, e.Output)
}

// Validate runs `haproxy -c -f configFile` with env added to the environment. Exit 0 is valid;
// exit 2 (valid, but no listener) is accepted too, since a master-worker HAProxy runs with it.
// A refusal is a *RejectedError carrying HAProxy's own words. A missing binary or a file that is
// missing or not a regular file (HAProxy would wait on a FIFO for ever) is said so plainly, before
// HAProxy is run. The supervisor's reload, `hapair run`'s start and `hapair check` all judge a
// file with it.
func Validate(ctx context.Context, command, configFile string, env ...string) (Verdict, error) {
	if _, err := exec.LookPath(command); err != nil {
		return Verdict{}, fmt.Errorf("haproxy binary %s: %w", command, err)
	}
	if fi, err := os.Stat(configFile); err != nil {
		return Verdict{}, fmt.Errorf("haproxy configuration: %w", err)
	} else if !fi.Mode().IsRegular() {
		return Verdict{}, fmt.Errorf("haproxy configuration: %s is not a regular file (%s)", configFile, fi.Mode().Type())
	}
	cmd := exec.CommandContext(ctx, command, "-c", "-f", configFile)
	cmd.Env = spawn.Env(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := rtprio.Start(cmd)
	if err == nil {
		err = cmd.Wait()
	}
	v := Verdict{Output: strings.TrimSpace(out.String())}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return v, nil
	case errors.As(err, &exit) && exit.ExitCode() == 2:
		v.NoListener = true
		return v, nil
	case errors.As(err, &exit) && ctx.Err() == nil:
		return v, &RejectedError{ConfigFile: configFile, ExitCode: exit.ExitCode(), Output: v.Output}
	default:
		return v, fmt.Errorf("haproxy -c -f %s: %w", configFile, errors.Join(err, ctx.Err()))
	}
}

// Reload validates the configuration, then asks the master to reload (SIGUSR2) and waits until
// `show proc` shows the outcome: a new worker (ok) or a higher failed count (failed: the master
// stays, the old workers keep serving, and the error quotes HAProxy's alerts). HAProxy 2.6
// reloads asynchronously, hence the polling. A file that `haproxy -c` rejects is refused and the
// running HAProxy is not touched. The wait is bounded by ctx and by 15 s.
func (s *Supervisor) Reload(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	began := s.now()
	verdict, err := Validate(ctx, s.cfg.Command, s.cfg.ConfigFile, s.cfg.Env...)
	switch {
	case err != nil:
		s.reloaded(ReloadRefused, err)
		s.log.Error("HAProxy reload refused, the running HAProxy keeps serving", "err", err)
		return refusedError{err}
	case verdict.NoListener:
		s.log.Warn("haproxy -c: valid, but no listener", "output", verdict.Output)
	case verdict.Output != "":
		s.log.Info("haproxy -c", "output", verdict.Output)
	}
	c := s.current()
	if c == nil {
		s.reloaded(ReloadFailed, ErrNotRunning)
		return ErrNotRunning
	}
	ctx, cancel := context.WithTimeout(ctx, reloadTimeout)
	defer cancel()
	fail := func(err error) error {
		err = fmt.Errorf("haproxy reload: %w", err)
		s.reloaded(ReloadFailed, err)
		s.log.Error("HAProxy reload failed, the old workers keep serving", "err", err)
		return err
	}

	// What the master shows now, to tell its next generation from this one. Asked until it
	// answers: right after a start or an earlier reload the socket may not be there yet.
	var before procList
	for {
		p, err := showProc(ctx, s.SocketPath(), pollTimeout)
		if err == nil && p.master == c.pid {
			before = p
			break
		}
		if !sleepCtx(ctx, c.done, pollInterval) {
			return fail(s.whyNot(ctx, c, err))
		}
	}
	mark := s.output.mark()
	if err := c.proc.Signal(syscall.SIGUSR2); err != nil {
		return fail(fmt.Errorf("signal master %d: %w", c.pid, err))
	}
	s.log.Info("Reloading HAProxy", "master", c.pid)
	var lastErr error
	for {
		if !sleepCtx(ctx, c.done, pollInterval) {
			return fail(s.whyNot(ctx, c, lastErr))
		}
		after, err := showProc(ctx, s.SocketPath(), pollTimeout)
		if err != nil || after.master != c.pid || after.reloads <= before.reloads {
			lastErr = err // the master is re-executing itself; its socket comes back
			continue
		}
		if after.failed > before.failed {
			return fail(fmt.Errorf("the master reports the new configuration failed to load, the old workers keep serving: %s",
				s.alertsSince(ctx, mark)))
		}
		if w := after.newWorker(before); w != 0 {
			s.reloaded(ReloadOK, nil)
			s.log.Info("HAProxy reloaded", "worker", w, "took", s.now().Sub(began).Round(time.Millisecond))
			return nil
		}
	}
}

// whyNot says why waiting on the master ended early.
func (s *Supervisor) whyNot(ctx context.Context, c *child, last error) error {
	select {
	case <-c.done:
		return fmt.Errorf("the master (pid %d) exited during the reload", c.pid)
	default:
	}
	if last != nil {
		return fmt.Errorf("no new worker: %w (%w)", ctx.Err(), last)
	}
	return fmt.Errorf("no new worker: %w", ctx.Err())
}

// alertsSince returns HAProxy's [ALERT] lines written since mark. The master writes them before
// `show proc` can report the failure, but our reader may still be a moment behind: it is given
// 200 ms to catch up.
func (s *Supervisor) alertsSince(ctx context.Context, mark uint64) string {
	deadline := s.now().Add(200 * time.Millisecond)
	for {
		if alerts := s.output.since(mark, "[ALERT]"); len(alerts) > 0 {
			return strings.Join(alerts, "; ")
		}
		if s.now().After(deadline) || !sleepCtx(ctx, nil, 10*time.Millisecond) {
			return "HAProxy logged no alert"
		}
	}
}

// sleepCtx waits d; false if ctx ended or done closed first.
func sleepCtx(ctx context.Context, done <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-done:
		return false
	case <-t.C:
		return true
	}
}

func (s *Supervisor) reloaded(result ReloadResult, err error) {
	st := ReloadStatus{At: s.now(), Result: result}
	if err != nil {
		st.Error = err.Error()
	}
	s.mu.Lock()
	s.status.LastReload = st
	s.mu.Unlock()
	s.rep.HAProxyReload(result)
}
