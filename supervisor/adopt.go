package supervisor

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// PIDFile is the file in the runtime dir that names the master this supervisor started. With
// the master socket it lets the next hapair (after a crash, or the new image after an in-place
// upgrade) find the master and tell it from a stranger.
const PIDFile = "haproxy.pid"

// pidFilePath is the pid file of the master.
func (s *Supervisor) pidFilePath() string { return filepath.Join(s.cfg.RuntimeDir, PIDFile) }

// args is the command line the supervisor starts HAProxy with; an adopted master must show it.
func (s *Supervisor) args() []string {
	return []string{s.cfg.Command, "-W", "-db", "-S", s.SocketPath() + ",mode,600", "-f", s.cfg.ConfigFile}
}

// findMaster looks for a master left running by an earlier hapair in the runtime dir: one that
// answers on the master socket. It returns (nil, nil) when there is none (the socket is missing
// or stale, and then removed). A master that answers but is not the one this configuration
// starts (another command, config or socket, or not the pid recorded in the pid file) is stopped,
// and (nil, nil) returned, so that a fresh one is started.
func (s *Supervisor) findMaster(ctx context.Context) (*child, error) {
	sock := s.SocketPath()
	if _, err := os.Lstat(sock); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	p, err := showProc(ctx, sock, cliTimeout)
	if err != nil {
		if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("remove stale master socket: %w", err)
		}
		s.log.Info("Removed stale HAProxy master socket", "socket", sock)
		return nil, nil
	}
	why := s.notOurs(p.master)
	if why == "" {
		c, err := adopt(p.master, s.now)
		if err == nil {
			s.log.Info("Adopted the running HAProxy master", "pid", p.master, "workers", len(p.workers), "reloads", p.reloads)
			return c, nil
		}
		why = err.Error()
	}
	s.log.Warn("HAProxy master answers on the socket but is not the one to adopt: stopping it", "pid", p.master, "socket", sock, "reason", why)
	if err := stopStranger(p.master); err != nil {
		return nil, fmt.Errorf("haproxy master socket %s is in use by a master (pid %d) that is not ours (%s) and would not stop: %w", sock, p.master, why, err)
	}
	_ = os.Remove(sock)
	return nil, nil
}

// notOurs says why pid is not the master this supervisor would have started ("" when it is):
// it must be the pid in the pid file, and its command line must begin with ours (a master adds
// -sf/-x arguments when it re-executes itself for a reload).
func (s *Supervisor) notOurs(pid int) string {
	b, err := os.ReadFile(s.pidFilePath())
	if err != nil {
		return fmt.Sprintf("no pid file: %v", err)
	}
	if recorded, err := strconv.Atoi(strings.TrimSpace(string(b))); err != nil || recorded != pid {
		return fmt.Sprintf("the pid file names %q", strings.TrimSpace(string(b)))
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return fmt.Sprintf("its command line: %v", err)
	}
	got := strings.Split(string(bytes.TrimRight(raw, "\x00")), "\x00")
	want := s.args()
	if len(got) < len(want) {
		return fmt.Sprintf("command line %q", got)
	}
	for i := range want {
		if got[i] != want[i] {
			return fmt.Sprintf("command line %q, want %q", got, want)
		}
	}
	return ""
}

// adopt watches a running master through a pidfd: the pidfd turns readable when it exits,
// whether or not it is our child. After an in-place upgrade it still is (execve keeps children),
// and it is then reaped here too, with its real exit status.
func adopt(pid int, now func() time.Time) (*child, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	proc, err := os.FindProcess(pid) // pidfd-backed: a signal never reaches a reused pid
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	c := &child{proc: proc, pid: pid, done: make(chan struct{}), adopted: true, status: -1}
	go func() {
		defer close(c.done)
		defer unix.Close(fd)
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(fds, -1)
			if n > 0 || (err != nil && !errors.Is(err, unix.EINTR)) {
				break
			}
		}
		c.at = now()
		var info unix.Siginfo
		if err := unix.Waitid(unix.P_PIDFD, fd, &info, unix.WEXITED, nil); err == nil {
			c.status, c.statusKnown = siginfoStatus(&info)
		}
	}()
	return c, nil
}

// siginfoStatus turns waitid's answer into an exit status (128+signal when killed).
func siginfoStatus(info *unix.Siginfo) (int, bool) {
	// Linux's siginfo for SIGCHLD: si_pid at 16, si_uid at 20, si_status at 24.
	raw := (*[128]byte)(unsafe.Pointer(info))
	status := int(int32(binary.NativeEndian.Uint32(raw[24:28])))
	switch info.Code {
	case 1: // CLD_EXITED
		return status, true
	case 2, 3: // CLD_KILLED, CLD_DUMPED
		return 128 + status, true
	}
	return -1, false
}

// stopStranger ends a master that is not ours: SIGTERM, then SIGKILL to its process group.
func stopStranger(pid int) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	gone := func(d time.Duration) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, _ := unix.Poll(fds, int(d/time.Millisecond))
		return n > 0
	}
	_ = unix.PidfdSendSignal(fd, unix.SIGTERM, nil, 0)
	if gone(killGrace) {
		reapIfChild(fd)
		return nil
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
	if !gone(killGrace) {
		return fmt.Errorf("pid %d still running after SIGKILL", pid)
	}
	reapIfChild(fd)
	return nil
}

func reapIfChild(fd int) {
	var info unix.Siginfo
	_ = unix.Waitid(unix.P_PIDFD, fd, &info, unix.WEXITED|unix.WNOHANG, nil)
}

// writePIDFile records the master this supervisor started.
func (s *Supervisor) writePIDFile(pid int) {
	if err := os.WriteFile(s.pidFilePath(), []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
		s.log.Warn("HAProxy pid file not written: a hapair restarted after a crash will not adopt this master", "err", err)
	}
}

func (s *Supervisor) removePIDFile() { _ = os.Remove(s.pidFilePath()) }

// OutputFDEnv carries the read end of HAProxy's output pipe across an in-place upgrade, so that
// the new image keeps logging what the master it adopts writes.
const OutputFDEnv = "HAPAIR_HAPROXY_OUTPUT_FD"

// KeepOutputAcrossExec clears close-on-exec on the read end of the running master's output pipe
// and returns the OutputFDEnv entry for the new image's environment ("" when there is none).
func (s *Supervisor) KeepOutputAcrossExec() string {
	s.mu.Lock()
	r := s.outR
	s.mu.Unlock()
	if r == nil {
		return ""
	}
	raw, err := r.SyscallConn() // not Fd(): that would switch the pipe to blocking under its reader
	if err != nil {
		return ""
	}
	var fd uintptr
	var ferr error
	if err := raw.Control(func(f uintptr) {
		fd = f
		_, ferr = unix.FcntlInt(f, unix.F_SETFD, 0)
	}); err != nil || ferr != nil {
		return ""
	}
	return fmt.Sprintf("%s=%d", OutputFDEnv, fd)
}

// InheritOutput hands the supervisor the output pipe of the master the previous image started
// (from OutputFDEnv); it is read once that master is adopted, and closed otherwise. Call it
// before Run.
func (s *Supervisor) InheritOutput(f *os.File) { s.inherited = f }

// InheritedOutput returns the pipe named by OutputFDEnv, nil without one, and removes the
// variable so that no child inherits it.
func InheritedOutput() *os.File {
	v, ok := os.LookupEnv(OutputFDEnv)
	if !ok {
		return nil
	}
	os.Unsetenv(OutputFDEnv)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil
	}
	unix.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), "haproxy-output")
}
