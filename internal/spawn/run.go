package spawn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hapair/hapair/internal/rtprio"
)

// DefaultMaxOutput is how much of a program's output Run keeps when Options.MaxOutput is 0.
const DefaultMaxOutput = 4096

// outputGrace is how long Run still reads the output after the program exited, for a process it
// left behind that holds the pipe open. It is then abandoned.
const outputGrace = time.Second

// Program is a command line ready to run: its words, and the user it runs as.
type Program struct {
	Args []string            // as Split returned them; Args[0] is the program as written
	User string              // "" runs it as hapair's own user
	Cred *syscall.Credential // User's ids and groups; nil when User is ""
}

// Parse splits command (see Split) and, when user is not empty, looks the user up (see
// LookupUser).
func Parse(command, user string) (*Program, error) {
	args, err := Split(command)
	if err != nil {
		return nil, err
	}
	p := &Program{Args: args, User: user}
	if user != "" {
		if p.Cred, err = LookupUser(user); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Resolve finds the program's file and says plainly why it cannot be run: a name without a slash
// is looked up in PATH; the file must exist, be a regular file and have an execute bit.
func (p *Program) Resolve() (string, error) {
	path := p.Args[0]
	if !strings.Contains(path, "/") {
		found, err := exec.LookPath(path)
		if err != nil {
			return "", fmt.Errorf("%s: not found in PATH", path)
		}
		path = found
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("%s: no such file or directory", path)
	case err != nil:
		return "", err
	case fi.IsDir():
		return "", fmt.Errorf("%s: is a directory", path)
	case !fi.Mode().IsRegular():
		return "", fmt.Errorf("%s: not a regular file", path)
	case fi.Mode().Perm()&0o111 == 0:
		return "", fmt.Errorf("%s: not executable (mode %s)", path, fi.Mode().Perm())
	}
	return path, nil
}

// RunsAsRoot reports whether the program runs with root's user or group: when it has a user of
// its own, that user's uid or primary gid is 0; otherwise it runs as hapair, which is root when
// hapairIsRoot. keepalived applies script_security in exactly these cases.
func (p *Program) RunsAsRoot(hapairIsRoot bool) bool {
	if p.Cred == nil {
		return hapairIsRoot
	}
	return p.Cred.Uid == 0 || p.Cred.Gid == 0
}

// CheckSecure is keepalived's script_security for this program (see CheckSecure): nil when it
// does not run as root or nobody but root can change it. It resolves the program first.
func (p *Program) CheckSecure(hapairIsRoot bool) error {
	if !p.RunsAsRoot(hapairIsRoot) {
		return nil
	}
	path, err := p.Resolve()
	if err != nil {
		return err
	}
	return CheckSecure(path)
}

// Options bound one run.
type Options struct {
	Args      []string // appended to the program's own arguments
	Env       []string // added to hapair's environment (see Env)
	Dir       string   // working directory; "" is "/", where keepalived runs its scripts
	MaxOutput int      // bytes of output kept; 0 means DefaultMaxOutput
	// ScriptSecurity refuses to run, as root, a program that CheckSecure refuses.
	ScriptSecurity bool
	// KillLeftovers kills what the program left running in its process group when it exits,
	// so that a program run again and again never accumulates stray processes.
	KillLeftovers bool
}

// Result is how a run ended.
type Result struct {
	// Output is stdout and stderr together, trimmed, cut at MaxOutput bytes with the number of
	// bytes dropped said at the end.
	Output string
	// State is how the process ended; nil when it did not start.
	State *os.ProcessState
	// TimedOut is set when the context ended first and the process group was killed.
	TimedOut bool
	// Err says why the program did not run (not found, not executable, refused by script
	// security, cannot be started as its user) or could not be waited for.
	Err error
}

// Success reports whether the program ran and exited 0 before the context ended.
func (r Result) Success() bool {
	return r.Err == nil && !r.TimedOut && r.State != nil && r.State.Success()
}

// Run runs the program once and waits for it. It runs in "/" (or Options.Dir), with stdin from /dev/null, with
// hapair's environment as Env leaves it, in a process group of its own, as its user with all the
// user's groups. When ctx ends the whole process group is killed with SIGKILL. When hapair dies,
// even by SIGKILL, the kernel kills the program (a parent-death signal; what the program itself
// started in the meantime is reached only by the group kill, or by systemd's cgroup kill).
func (p *Program) Run(ctx context.Context, opts Options) Result {
	path, err := p.Resolve()
	if err != nil {
		return Result{Err: err}
	}
	if opts.ScriptSecurity {
		if err := p.CheckSecure(os.Geteuid() == 0); err != nil {
			return Result{Err: err}
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		return Result{Err: fmt.Errorf("output pipe: %w", err)}
	}
	defer r.Close()
	cmd := exec.Command(path, slices.Concat(p.Args[1:], opts.Args)...)
	cmd.Args[0] = p.Args[0]
	cmd.Dir = opts.Dir
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	cmd.Env = Env(os.Environ(), opts.Env...)
	// An *os.File, not a Writer: Wait returns when the process ends, not when the last holder of
	// the pipe lets go of it.
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: p.Cred}

	// The parent-death signal fires when the thread that forked the child exits, not the process:
	// keep this goroutine on its thread until the child is gone, so that no other goroutine
	// locks that thread and ends it while the child runs. (When hapair runs real-time, rtprio.Start
	// forks from a normal-priority thread of its own instead, which lives as long as hapair.)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	err = rtprio.Start(cmd)
	w.Close()
	if err != nil {
		as := ""
		if p.User != "" {
			as = " as " + p.User
		}
		return Result{Err: fmt.Errorf("start %s%s: %w", p.Args[0], as, err)}
	}
	out := &limitedBuffer{max: opts.MaxOutput}
	if out.max <= 0 {
		out.max = DefaultMaxOutput
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(out, r)
	}()
	pgid := cmd.Process.Pid
	stopKill := context.AfterFunc(ctx, func() { _ = killGroup(pgid) })
	err = cmd.Wait()
	res := Result{State: cmd.ProcessState, TimedOut: !stopKill()}
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		res.Err = fmt.Errorf("wait for %s: %w", p.Args[0], err)
	}
	// The leader is gone; its group id stays reserved while any member lives.
	if res.TimedOut || opts.KillLeftovers {
		_ = killGroup(pgid)
	}
	_ = r.SetReadDeadline(time.Now().Add(outputGrace))
	<-copied
	res.Output = out.String()
	return res
}

func killGroup(pgid int) error {
	err := syscall.Kill(-pgid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// limitedBuffer keeps the first max bytes written and counts the rest.
type limitedBuffer struct {
	buf     []byte
	max     int
	dropped int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	n := min(len(p), b.max-len(b.buf))
	b.buf = append(b.buf, p[:n]...)
	b.dropped += len(p) - n
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	s := strings.TrimSpace(string(b.buf))
	if b.dropped > 0 {
		s += fmt.Sprintf(" [%d more bytes truncated]", b.dropped)
	}
	return s
}
