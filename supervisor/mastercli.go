package supervisor

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The master answers `show proc` in well under a millisecond, except while it re-executes itself
// for a reload: then a connection sits unanswered until the new image has loaded (measured: about
// 2 s when a bind of the new configuration fails, HAProxy retrying it meanwhile). A poll gives up
// soon and asks again; a question whose answer matters (is this socket alive?) waits longer.
const (
	pollTimeout = 250 * time.Millisecond
	cliTimeout  = 3 * time.Second
)

// masterCommand sends one command to HAProxy's master CLI (the -S socket) and returns the answer.
//
// Without a prompt the CLI takes one command per connection, and the master closes the connection
// only once our side has shut its write half (measured on 2.6.12: without CloseWrite the answer
// comes but EOF never does). During a reload the socket briefly refuses or resets connections
// while the master re-executes itself; callers that poll simply try again.
func masterCommand(ctx context.Context, socket, command string, timeout time.Duration) (string, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return "", fmt.Errorf("master CLI %q: %w", command, err)
	}
	defer conn.Close()
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = conn.SetDeadline(deadline)
	if _, err := io.WriteString(conn, command+"\n"); err != nil {
		return "", fmt.Errorf("master CLI %q: write: %w", command, err)
	}
	if err := conn.(*net.UnixConn).CloseWrite(); err != nil {
		return "", fmt.Errorf("master CLI %q: close write: %w", command, err)
	}
	// Capped: whatever listens on the socket cannot make hapair buffer without limit.
	data, err := io.ReadAll(io.LimitReader(conn, 1<<20))
	if err != nil {
		return "", fmt.Errorf("master CLI %q: read: %w", command, err)
	}
	return string(data), nil
}

// showProc asks the master for its processes, waiting up to timeout for the answer.
func showProc(ctx context.Context, socket string, timeout time.Duration) (procList, error) {
	text, err := masterCommand(ctx, socket, "show proc", timeout)
	if err != nil {
		return procList{}, err
	}
	return parseShowProc(text)
}

// procList is what the master CLI's `show proc` says.
type procList struct {
	master  int // the master's pid
	reloads int // how often the master re-executed itself
	// failed is the master's "[failed: N]": failed reloads in a row, reset by a good one.
	failed     int
	workers    []proc // the current generation
	oldWorkers []proc // still finishing their requests after a reload
}

// proc is a worker: its pid and how many reloads it has lived through (0 = the newest).
type proc struct{ pid, reloads int }

// newWorker returns a current worker that before did not list at all, or 0.
func (p procList) newWorker(before procList) int {
	known := func(pid int) bool {
		is := func(o proc) bool { return o.pid == pid }
		return slices.ContainsFunc(before.workers, is) || slices.ContainsFunc(before.oldWorkers, is)
	}
	for _, w := range p.workers {
		if !known(w.pid) {
			return w.pid
		}
	}
	return 0
}

// parseShowProc reads HAProxy 2.6's `show proc`:
//
//	#<PID>          <type>          <reloads>       <uptime>        <version>
//	6038            master          1 [failed: 0]   0d00h49m29s     2.6.12-1+deb12u4
//	# workers
//	1094            worker          0               0d00h00m01s     2.6.12-1+deb12u4
//	# old workers
//	6041            worker          1               0d00h49m28s     2.6.12-1+deb12u4
//	# programs
//
// Lines it does not understand are skipped; an answer without a master line is an error.
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
		if err != nil || pid <= 0 {
			continue
		}
		reloads, err := strconv.Atoi(f[2])
		if err != nil || reloads < 0 {
			continue
		}
		switch {
		case f[1] == "master" && !sawMaster:
			sawMaster = true
			p.master, p.reloads = pid, reloads
			if i := strings.Index(line, "[failed:"); i >= 0 {
				rest := strings.TrimSpace(line[i+len("[failed:"):])
				if j := strings.Index(rest, "]"); j >= 0 {
					p.failed, _ = strconv.Atoi(strings.TrimSpace(rest[:j]))
				}
			}
		case f[1] == "worker" && section == "workers":
			p.workers = append(p.workers, proc{pid: pid, reloads: reloads})
		case f[1] == "worker" && section == "old workers":
			p.oldWorkers = append(p.oldWorkers, proc{pid: pid, reloads: reloads})
		}
	}
	if !sawMaster {
		return p, fmt.Errorf("unexpected show proc answer: %.200q", text)
	}
	return p, nil
}
