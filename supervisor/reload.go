package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrNotRunning is returned by Reload when there is no HAProxy to reload.
var ErrNotRunning = errors.New("haproxy is not running")

// Validate runs `haproxy -c -f configFile`. Exit 0 is valid; exit 2 (valid, but no listener)
// is accepted too. Otherwise the error carries HAProxy's own words.
func Validate(ctx context.Context, command, configFile string) (string, error) {
	if _, err := exec.LookPath(command); err != nil {
		return "", fmt.Errorf("haproxy binary %s: %w", command, err)
	}
	if _, err := os.Stat(configFile); err != nil {
		return "", fmt.Errorf("haproxy configuration: %w", err)
	}
	out, err := exec.CommandContext(ctx, command, "-c", "-f", configFile).CombinedOutput()
	text := strings.TrimSpace(string(out))
	var exit *exec.ExitError
	switch {
	case err == nil:
		return text, nil
	case errors.As(err, &exit) && exit.ExitCode() == 2:
		return text, nil
	case errors.As(err, &exit):
		return text, fmt.Errorf("haproxy -c -f %s rejects it (exit %d): %s", configFile, exit.ExitCode(), text)
	default:
		return text, fmt.Errorf("haproxy -c -f %s: %w", configFile, err)
	}
}

// Reload validates the configuration, then asks the master to reload (SIGUSR2) and waits until
// `show proc` shows the outcome: a new worker (ok) or a higher failed count (failed: the old
// workers keep serving). HAProxy 2.6 reloads asynchronously, hence the polling.
func (s *Supervisor) Reload(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if out, err := Validate(ctx, s.cfg.Command, s.cfg.ConfigFile); err != nil {
		s.reloaded("refused", err)
		s.log.Error(fmt.Sprintf("HAProxy reload refused, the running HAProxy keeps serving: %v", err))
		return err
	} else if out != "" {
		s.log.Info("haproxy -c: " + out)
	}
	s.mu.Lock()
	pid := s.status.PID
	s.mu.Unlock()
	if pid == 0 {
		s.reloaded("failed", ErrNotRunning)
		return ErrNotRunning
	}
	before, err := s.showProc()
	if err != nil {
		s.reloaded("failed", err)
		return fmt.Errorf("haproxy reload: %w", err)
	}
	if err := syscall.Kill(pid, syscall.SIGUSR2); err != nil {
		s.reloaded("failed", err)
		return fmt.Errorf("haproxy reload: signal master %d: %w", pid, err)
	}
	s.log.Info(fmt.Sprintf("Reloading HAProxy (master %d)", pid))
	deadline := time.Now().Add(reloadTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			s.reloaded("failed", ctx.Err())
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		after, err := s.showProc()
		if err != nil || after.reloads <= before.reloads {
			continue // the master is re-executing itself; its socket comes back
		}
		if after.failed > before.failed {
			err := errors.New("haproxy master reports the reload failed; the old workers keep serving")
			s.reloaded("failed", err)
			return err
		}
		if w := after.newWorker(before); w != 0 {
			s.reloaded("ok", nil)
			s.log.Info(fmt.Sprintf("HAProxy reloaded: new worker %d", w))
			return nil
		}
	}
	err = fmt.Errorf("haproxy reload: no new worker after %s", reloadTimeout)
	s.reloaded("failed", err)
	return err
}

func (s *Supervisor) reloaded(result string, err error) {
	st := ReloadStatus{At: time.Now(), Result: result}
	if err != nil {
		st.Error = err.Error()
	}
	s.mu.Lock()
	s.status.LastReload = st
	s.mu.Unlock()
	s.rep.HAProxyReload(result)
}

// procList is what the master CLI's `show proc` says.
type procList struct {
	reloads, failed int
	workers         []proc // current workers
}

type proc struct{ pid, reloads int }

func (p procList) newWorker(before procList) int {
	for _, w := range p.workers {
		if !slices.ContainsFunc(before.workers, func(o proc) bool { return o.pid == w.pid }) {
			return w.pid
		}
	}
	return 0
}

// showProc asks the master CLI. Without a prompt the CLI answers one command per connection and
// closes once our side has shut its write half.
func (s *Supervisor) showProc() (procList, error) {
	conn, err := net.DialTimeout("unix", s.SocketPath(), time.Second)
	if err != nil {
		return procList{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(conn, "show proc\n"); err != nil {
		return procList{}, err
	}
	_ = conn.(*net.UnixConn).CloseWrite()
	data, err := io.ReadAll(io.LimitReader(conn, 1<<20))
	if err != nil {
		return procList{}, err
	}
	return parseShowProc(string(data))
}

// parseShowProc reads HAProxy 2.6's `show proc`:
//
//	#<PID>          <type>          <reloads>       <uptime>        <version>
//	6038            master          1 [failed: 0]   0d00h49m29s     2.6.12-1+deb12u4
//	# workers
//	1094            worker          0               0d00h00m01s     2.6.12-1+deb12u4
//	# old workers
//	...
func parseShowProc(text string) (procList, error) {
	var p procList
	section := ""
	sawMaster := false
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "#") {
			section = strings.TrimSpace(strings.TrimPrefix(line, "#"))
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		pid, err := strconv.Atoi(f[0])
		if err != nil {
			continue
		}
		reloads, _ := strconv.Atoi(f[2])
		switch {
		case f[1] == "master":
			sawMaster = true
			p.reloads = reloads
			if i := strings.Index(line, "[failed:"); i >= 0 {
				rest := strings.TrimSpace(line[i+len("[failed:"):])
				if j := strings.Index(rest, "]"); j >= 0 {
					p.failed, _ = strconv.Atoi(strings.TrimSpace(rest[:j]))
				}
			}
		case section == "workers" && f[1] == "worker":
			p.workers = append(p.workers, proc{pid: pid, reloads: reloads})
		}
	}
	if !sawMaster {
		return p, fmt.Errorf("unexpected show proc answer: %.200q", text)
	}
	return p, nil
}
