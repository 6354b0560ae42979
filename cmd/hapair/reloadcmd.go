package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/hapair/hapair/metrics/status"

	"github.com/hapair/hapair/supervisor"
)

// reloadPoll is how often `hapair reload` asks for the outcome.
const reloadPoll = 100 * time.Millisecond

// cmdReload is `hapair reload`: SIGHUP to the running hapair, then wait for the outcome of the
// attempt that answers it, so that `systemctl reload hapair` (ExecReload) fails when the reload
// was refused, where /bin/kill -HUP returned before hapair had even read the file.
func cmdReload(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("reload", stderr)
	parse := statusFlags(fs, stderr)
	timeout := fs.Duration("timeout", 90*time.Second, "how long to wait for the outcome")
	ep, code := parse(args)
	if code != 0 {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	r, err := requestReload(ctx, ep, signalPID)
	if err != nil {
		fmt.Fprintf(stderr, "hapair: reload: %v\n", err)
		return 1
	}
	if r.Result != supervisor.ReloadOK {
		fmt.Fprintf(stderr, "hapair: reload %s, the running configuration stays:\n%s\n", r.Result, r.Error)
		return 1
	}
	fmt.Fprintf(stdout, "hapair: configuration reloaded (%s)\n", time.Duration(r.Duration).Round(time.Millisecond))
	return 0
}

// signalPID sends SIGHUP to the hapair its status named. Whatever answers on the status port
// could name any pid, and SIGHUP ends most programs: the process must run the same program as
// this command (its name in /proc/PID/comm, which survives an upgrade of the binary on disk).
func signalPID(pid int) error {
	self, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		return fmt.Errorf("read own process name: %w", err)
	}
	other, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return fmt.Errorf("hapair's status names pid %d: %w", pid, err)
	}
	if a, b := strings.TrimSpace(string(self)), strings.TrimSpace(string(other)); a != b {
		return fmt.Errorf("hapair's status names pid %d, which runs %q, not %s: is hapair the one answering there?", pid, b, a)
	}
	return syscall.Kill(pid, syscall.SIGHUP)
}

// requestReload signals the hapair answering at ep and returns the reload attempt that
// answers the signal: the first whose request count is past the one seen before signalling.
func requestReload(ctx context.Context, ep daemonEndpoint, hup func(pid int) error) (*status.ConfigReload, error) {
	before, err := fetchStatus(ctx, ep)
	if err != nil {
		return nil, err
	}
	if before.Config == nil || before.PID <= 1 {
		return nil, errors.New("the running hapair does not report its reloads (older than this command): use kill -HUP")
	}
	if err := hup(before.PID); err != nil {
		return nil, fmt.Errorf("signal hapair (pid %d): %w", before.PID, err)
	}
	t := time.NewTicker(reloadPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no outcome from hapair (pid %d): %w", before.PID, ctx.Err())
		case <-t.C:
		}
		st, err := fetchStatus(ctx, ep)
		switch {
		case err != nil:
			continue // a slow answer or a moment without the listener; the deadline decides
		case st.PID != before.PID:
			return nil, fmt.Errorf("hapair restarted (pid %d, was %d) before answering", st.PID, before.PID)
		case st.Config != nil && st.Config.LastReload != nil && st.Config.LastReload.Request > before.Config.ReloadRequests:
			return st.Config.LastReload, nil
		}
	}
}
