// Package notify runs keepalived-style notify hooks on VRRP transitions: notify_master,
// notify_backup, notify_fault and notify_stop as given, and notify with the arguments
// INSTANCE <name> <state> <priority>.
//
// Hooks run one at a time per instance, in the order of the transitions, on a goroutine of their
// own: a slow or hung script never delays the VRRP loop. A hook is run as package spawn runs every
// program: its process group is killed at its timeout, and it dies with hapair, even when hapair
// is SIGKILLed.
package notify

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/hapair/hapair/internal/spawn"
)

// Hooks are the commands of one instance. Empty strings run nothing.
type Hooks struct {
	Master, Backup, Fault, Stop string
	All                         string // notify: gets INSTANCE <name> <state> <priority>
}

// DefaultTimeout is how long a hook may run when Options.Timeout is 0.
const DefaultTimeout = 10 * time.Second

// Options are the global settings.
type Options struct {
	User           string        // run as this user; "" = hapair's own user
	Timeout        time.Duration // kill a hook that runs longer; 0 = DefaultTimeout
	ScriptSecurity bool          // as root, refuse a script that someone other than root could modify
}

// Runner runs the hooks of one instance.
type Runner struct {
	hooks Hooks
	opts  Options
	log   *slog.Logger
	queue chan job

	mu     sync.Mutex // guards closed against a Notify racing Close
	closed bool
	done   chan struct{} // closed when the hooks queued before Close have run

	// ran is called after every hook finishes (tests).
	ran func(cmd string, err error)
}

type job struct {
	name, state string
	priority    uint8
}

// New starts the runner's goroutine; it lives until Close (a reload that replaces the hooks, the
// stop).
func New(hooks Hooks, opts Options, log *slog.Logger) *Runner {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Runner{hooks: hooks, opts: opts, log: log, queue: make(chan job, 32), done: make(chan struct{})}
	go r.loop()
	return r
}

// Empty reports whether there is no hook to run at all.
func (h Hooks) Empty() bool { return h == Hooks{} }

// Notify queues the hooks for a transition of instance name to state ("MASTER", "BACKUP",
// "FAULT", "STOP"). When the queue is full the oldest hooks are still running and this one is
// dropped with a log line rather than blocking the caller.
func (r *Runner) Notify(name, state string, priority uint8) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		r.log.Warn("("+name+") notify hooks replaced or stopped, hooks not run", "state", state)
		return
	}
	select {
	case r.queue <- job{name: name, state: state, priority: priority}:
	default:
		r.log.Warn("("+name+") notify queue full, hooks not run", "state", state)
	}
}

// Close ends the runner's goroutine once the hooks already queued have run.
func (r *Runner) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		close(r.queue)
	}
}

// Wait waits, after Close, until the hooks queued before it have run, or until timeout has
// passed; it reports whether they all ran. hapair waits so at its stop: a hook still running
// when hapair exits is killed (package spawn gives every program a parent-death signal), and
// notify_stop is queued last.
func (r *Runner) Wait(timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-r.done:
		return true
	case <-t.C:
		return false
	}
}

func (r *Runner) loop() {
	defer close(r.done)
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
		r.log.Warn("("+j.name+") notify script failed", "script", command, "state", j.state, "err", err)
	}
	if r.ran != nil {
		r.ran(command, err)
	}
}

func (r *Runner) exec(command string, extra []string) error {
	prog, err := spawn.Parse(command, r.opts.User)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.Timeout)
	defer cancel()
	res := prog.Run(ctx, spawn.Options{Args: extra, ScriptSecurity: r.opts.ScriptSecurity})
	switch {
	case res.Err != nil:
		return res.Err
	case res.TimedOut:
		return fmt.Errorf("timed out after %s, process group killed", r.opts.Timeout)
	case !res.Success():
		return fmt.Errorf("%s: %s", res.State, res.Output)
	}
	return nil
}
