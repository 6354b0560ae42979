// Package notify runs keepalived-style notify hooks on VRRP transitions: notify_master,
// notify_backup, notify_fault and notify_stop as given, and notify with the arguments
// INSTANCE <name> <state> <priority>.
//
// Hooks run one at a time per instance, in the order of the transitions, on a goroutine of their
// own: a slow or hung script never delays the VRRP loop, and it is killed at its timeout.
package notify

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hapair/hapair/checks"
)

// Hooks are the commands of one instance. Empty strings run nothing.
type Hooks struct {
	Master, Backup, Fault, Stop string
	All                         string // notify: gets INSTANCE <name> <state> <priority>
}

// Options are the global settings.
type Options struct {
	User           string        // run as this user; "" = hapair's own user
	Timeout        time.Duration // kill a hook that runs longer; 0 = 10s
	ScriptSecurity bool          // as root, refuse a script that someone other than root could modify
}

// ErrInsecure is returned (and logged) for a script that others can write while hapair runs as root.
var ErrInsecure = errors.New("script is writable by a user other than root")

// Runner runs the hooks of one instance.
type Runner struct {
	hooks Hooks
	opts  Options
	log   *slog.Logger
	queue chan job
	// ran is called after every hook finishes (tests).
	ran func(cmd string, err error)
}

type job struct {
	name, state string
	priority    uint8
}

// New starts the runner's goroutine; it lives as long as the process (hooks are few and small).
func New(hooks Hooks, opts Options, log *slog.Logger) *Runner {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Runner{hooks: hooks, opts: opts, log: log, queue: make(chan job, 32)}
	go r.loop()
	return r
}

// Empty reports whether there is no hook to run at all.
func (h Hooks) Empty() bool { return h == Hooks{} }

// Notify queues the hooks for a transition of instance name to state ("MASTER", "BACKUP",
// "FAULT", "STOP"). When the queue is full the oldest hooks are still running and this one is
// dropped with a log line rather than blocking the caller.
func (r *Runner) Notify(name, state string, priority uint8) {
	select {
	case r.queue <- job{name: name, state: state, priority: priority}:
	default:
		r.log.Warn(fmt.Sprintf("(%s) notify queue full, hooks for %s not run", name, state))
	}
}

func (r *Runner) loop() {
	for j := range r.queue {
		var specific string
		switch j.state {
		case "MASTER":
			specific = r.hooks.Master
		case "BACKUP":
			specific = r.hooks.Backup
		case "FAULT":
			specific = r.hooks.Fault
		case "STOP":
			specific = r.hooks.Stop
		}
		if specific != "" {
			r.run(j, specific)
		}
		if r.hooks.All != "" {
			r.run(j, r.hooks.All, "INSTANCE", j.name, j.state, strconv.Itoa(int(j.priority)))
		}
	}
}

func (r *Runner) run(j job, command string, extra ...string) {
	err := r.exec(command, extra)
	if err != nil {
		r.log.Warn(fmt.Sprintf("(%s) notify script %q for %s: %v", j.name, command, j.state, err))
	}
	if r.ran != nil {
		r.ran(command, err)
	}
}

func (r *Runner) exec(command string, extra []string) error {
	argv, err := Split(command)
	if err != nil {
		return err
	}
	if len(argv) == 0 {
		return errors.New("empty command")
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("find %s: %w", argv[0], err)
	}
	if r.opts.ScriptSecurity && os.Geteuid() == 0 {
		if err := CheckSecure(path); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, append(argv[1:], extra...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	if r.opts.User != "" {
		cred, err := credential(r.opts.User)
		if err != nil {
			return err
		}
		cmd.SysProcAttr.Credential = cred
	}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return fmt.Errorf("timed out after %s", r.opts.Timeout)
	}
	if err != nil {
		return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}

func credential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("notify user: %w", err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// CheckSecure refuses a script that a user other than root could change: the file or any directory
// above it owned by someone else, or writable by group or others (keepalived's
// enable_script_security). Sticky world-writable directories such as /tmp still count as unsafe.
func CheckSecure(path string) error {
	p, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	if resolved, err := filepath.EvalSymlinks(p); err == nil {
		p = resolved
	}
	for {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if err := ownedByRoot(p, fi); err != nil {
			return err
		}
		parent := filepath.Dir(p)
		if parent == p {
			return nil
		}
		p = parent
	}
}

func ownedByRoot(p string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if ok && st.Uid != 0 {
		return fmt.Errorf("%w: %s is owned by uid %d", ErrInsecure, p, st.Uid)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%w: %s has mode %s", ErrInsecure, p, fi.Mode().Perm())
	}
	return nil
}

// Split splits a command line the way keepalived does: on blanks, quotes grouping words, a
// backslash escaping the next character, no shell (checks.SplitCommand).
func Split(s string) ([]string, error) { return checks.SplitCommand(s) }
