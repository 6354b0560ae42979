package lab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultWait bounds WaitForLine when the caller's context has no deadline.
const DefaultWait = 30 * time.Second

// Line is one line a process wrote to stdout or stderr.
type Line struct {
	N    int       // index, counting from 0
	At   time.Time // when the lab read it
	Text string    // without the newline
}

// ProcOptions configure Host.StartWith.
type ProcOptions struct {
	// LogPath receives stdout and stderr, interleaved; default
	// <host dir>/<program>.log. Relative paths are relative to the host dir.
	LogPath string
	// OnLine, if set, is called for every line, in order, from one goroutine.
	OnLine func(Line)
	// Env is added to the environment Command sets up.
	Env []string
	// Dir is the working directory; default the host dir.
	Dir string
}

// Proc is a background process in a host namespace whose output the lab reads
// line by line.
type Proc struct {
	Cmd     *exec.Cmd
	Host    *Host
	LogPath string

	done    chan struct{} // closed when the process has exited and was reaped
	waitErr error
	readerr chan struct{} // closed when the output pipe reached EOF

	mu      sync.Mutex
	lines   []Line
	changed chan struct{} // closed and replaced on every new line and at EOF
	eof     bool
}

// Start runs name with args in the background inside the host's namespace,
// writing its output to logPath (see ProcOptions.LogPath).
func (h *Host) Start(ctx context.Context, logPath, name string, args ...string) (*Proc, error) {
	return h.StartWith(ctx, ProcOptions{LogPath: logPath}, name, args...)
}

// StartWith is Start with all options. The process ends with ctx (SIGKILL to
// its process group), with Stop or Kill, or with Lab.Close.
func (h *Host) StartWith(ctx context.Context, opts ProcOptions, name string, args ...string) (*Proc, error) {
	dir := opts.Dir
	if dir == "" {
		dir = h.Dir()
	}
	if err := os.MkdirAll(h.Dir(), 0o755); err != nil {
		return nil, fmt.Errorf("%s: %w", h.Name, err)
	}
	logPath := opts.LogPath
	if logPath == "" {
		logPath = filepath.Base(name) + ".log"
	}
	if !filepath.IsAbs(logPath) {
		logPath = filepath.Join(h.Dir(), logPath)
	}
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: open log: %w", h.Name, err)
	}
	// Our own pipe rather than exec's: Wait then returns when the process
	// exits, even while children that inherited the pipe keep it open.
	pr, pw, err := os.Pipe()
	if err != nil {
		logFile.Close()
		return nil, fmt.Errorf("%s: pipe: %w", h.Name, err)
	}
	cmd := h.Command(ctx, name, args...)
	cmd.Env = append(cmd.Env, opts.Env...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = pw, pw
	p := &Proc{
		Cmd: cmd, Host: h, LogPath: logPath,
		done: make(chan struct{}), readerr: make(chan struct{}), changed: make(chan struct{}),
	}
	if err := cmd.Start(); err != nil {
		pw.Close()
		pr.Close()
		logFile.Close()
		return nil, fmt.Errorf("%s: start %s: %w", h.Name, name, err)
	}
	pw.Close()
	if err := h.lab.track(p); err != nil {
		p.killGroup()
	}
	go p.read(pr, logFile, opts.OnLine)
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *Proc) String() string {
	return fmt.Sprintf("%s:%s[%d]", p.Host.Name, filepath.Base(p.Cmd.Args[4]), p.PID())
}

// PID is the process id; `ip netns exec` executes the program in place, so
// it is the program's own.
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Signal sends sig to the process (not its group).
func (p *Proc) Signal(sig syscall.Signal) error {
	if err := p.Cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s: %w", p, err)
	}
	return nil
}

// Kill sends SIGKILL to the process group and waits for the process.
func (p *Proc) Kill() error {
	if err := p.killGroup(); err != nil {
		return fmt.Errorf("kill %s: %w", p, err)
	}
	<-p.done
	return nil
}

func (p *Proc) killGroup() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	return killGroup(p.PID())
}

// Stop sends SIGTERM and waits up to grace for the process to exit, then kills
// its group. It returns the process's exit error (nil for exit status 0).
func (p *Proc) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		return p.waitErr
	default:
	}
	if err := p.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.done:
	case <-time.After(grace):
		p.killGroup()
		<-p.done
	}
	return p.waitErr
}

// Wait waits for the process to exit and returns what exec.Cmd.Wait did.
// Any number of callers may wait.
func (p *Proc) Wait() error {
	<-p.done
	return p.waitErr
}

// Done is closed once the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited tells whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Lines returns a copy of the lines read so far.
func (p *Proc) Lines() []Line {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Line(nil), p.lines...)
}

// LineCount is the number of lines read so far: pass it to WaitForLineAfter
// to wait only for what comes after an action.
func (p *Proc) LineCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lines)
}

// Output is everything read so far, one line per line.
func (p *Proc) Output() string {
	var b strings.Builder
	for _, l := range p.Lines() {
		b.WriteString(l.Text)
		b.WriteByte('\n')
	}
	return b.String()
}

// WaitForLine waits for a line matching re, the first line included.
func (p *Proc) WaitForLine(ctx context.Context, re *regexp.Regexp) (Line, error) {
	return p.WaitForLineAfter(ctx, 0, re)
}

// WaitForLineAfter waits for a line with index from or later that matches re.
// It gives up when ctx ends (after DefaultWait if ctx has no deadline) or the
// output ends, and then says so with the last lines of output.
func (p *Proc) WaitForLineAfter(ctx context.Context, from int, re *regexp.Regexp) (Line, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultWait)
		defer cancel()
	}
	for {
		p.mu.Lock()
		for i := max(from, 0); i < len(p.lines); i++ {
			if re.MatchString(p.lines[i].Text) {
				l := p.lines[i]
				p.mu.Unlock()
				return l, nil
			}
		}
		from = len(p.lines)
		eof, changed := p.eof, p.changed
		p.mu.Unlock()
		if eof {
			return Line{}, fmt.Errorf("%s: output ended without a line matching %q (%s); last lines:\n%s",
				p, re, p.exitStatus(), p.tail(15))
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return Line{}, fmt.Errorf("%s: no line matching %q: %w; last lines:\n%s", p, re, ctx.Err(), p.tail(15))
		}
	}
}

func (p *Proc) exitStatus() string {
	select {
	case <-p.done:
		if p.waitErr == nil {
			return "exit status 0"
		}
		return p.waitErr.Error()
	case <-time.After(100 * time.Millisecond):
		return "still running"
	}
}

func (p *Proc) tail(n int) string {
	lines := p.Lines()
	var b strings.Builder
	for _, l := range lines[max(0, len(lines)-n):] {
		b.WriteString("  ")
		b.WriteString(l.Text)
		b.WriteByte('\n')
	}
	return b.String()
}

func (p *Proc) read(r io.ReadCloser, logFile *os.File, onLine func(Line)) {
	defer close(p.readerr)
	defer r.Close()
	defer logFile.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		text := sc.Text()
		_, _ = logFile.WriteString(text + "\n") // the log file is a copy for people; the lines here are what tests use
		p.mu.Lock()
		l := Line{N: len(p.lines), At: time.Now(), Text: text}
		p.lines = append(p.lines, l)
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
		if onLine != nil {
			onLine(l)
		}
	}
	// A too long line or a read error ends following; drain the rest so
	// that the writer never blocks on a full pipe.
	_, _ = io.Copy(logFile, r)
	p.mu.Lock()
	p.eof = true
	close(p.changed)
	p.changed = make(chan struct{})
	p.mu.Unlock()
}
