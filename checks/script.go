package checks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultScriptOutput bounds how much of a script's output is kept in a Result.
const DefaultScriptOutput = 4096

// scriptWaitDelay is how long Wait waits for the output pipe after the script's
// process ended (a child it left behind may still hold the pipe).
const scriptWaitDelay = time.Second

// ScriptProbe runs a command with keepalived's vrrp_script semantics: exit status 0
// is a success, anything else a failure. Unlike keepalived, a script that is
// missing, not executable, cannot be started as its user, or runs past its
// timeout is a failure too.
//
// Like keepalived 2.x, the command is split into words (quotes and backslash
// escapes honoured, see SplitCommand) and executed directly, without a shell; use
// "/bin/sh -c '...'" for shell syntax. A name without a slash is looked up in PATH.
//
// The script runs in its own process group, with stdin from /dev/null, in "/",
// with hapair's environment minus systemd's notification variables. On timeout the
// whole group is killed with SIGKILL; when the script exits, whatever it left in
// its group is killed too, so that checks never accumulate stray processes.
type ScriptProbe struct {
	args      []string
	user      string
	cred      *syscall.Credential
	maxOutput int
}

// NewScriptProbe parses command and, when username is not empty, looks the user
// up (its primary group and supplementary groups are used too).
func NewScriptProbe(command, username string) (*ScriptProbe, error) {
	args, err := SplitCommand(command)
	if err != nil {
		return nil, fmt.Errorf("script %q: %w", command, err)
	}
	p := &ScriptProbe{args: args, user: username, maxOutput: DefaultScriptOutput}
	if username != "" {
		cred, err := lookupCredential(username)
		if err != nil {
			return nil, fmt.Errorf("script %q: %w", command, err)
		}
		p.cred = cred
	}
	return p, nil
}

func lookupCredential(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("look up user: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s: gid %q: %w", name, u.Gid, err)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if g, err := strconv.ParseUint(id, 10, 32); err == nil {
				cred.Groups = append(cred.Groups, uint32(g))
			}
		}
	}
	return cred, nil
}

// Probe runs the script once; the context carries the check's timeout.
func (p *ScriptProbe) Probe(ctx context.Context) Result {
	start := time.Now()
	res := p.run(ctx, start)
	res.At, res.Duration = start, time.Since(start)
	return res
}

func (p *ScriptProbe) run(ctx context.Context, start time.Time) Result {
	path, err := p.resolve()
	if err != nil {
		return Result{Output: err.Error()}
	}
	out := &limitedBuffer{max: p.maxOutput}
	cmd := exec.CommandContext(ctx, path, p.args[1:]...)
	cmd.Args[0] = p.args[0]
	cmd.Dir = "/"
	cmd.Env = scriptEnv(os.Environ())
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: p.cred}
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	cmd.WaitDelay = scriptWaitDelay

	if err := cmd.Start(); err != nil {
		as := ""
		if p.user != "" {
			as = " as " + p.user
		}
		return Result{Output: fmt.Sprintf("start %s%s: %v", p.args[0], as, err)}
	}
	err = cmd.Wait()
	// The leader is gone; the group id stays reserved while any member lives.
	_ = killGroup(cmd.Process.Pid)

	output := out.String()
	switch {
	case timedOut(ctx, nil):
		return Result{Output: joinOutput(fmt.Sprintf("timed out after %s, process group killed",
			time.Since(start).Round(time.Millisecond)), output)}
	case err == nil:
		if output == "" {
			output = "exit status 0"
		}
		return Result{OK: true, Output: output}
	case errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Success():
		// It exited 0 but left something holding its output open (now killed).
		return Result{OK: true, Output: joinOutput("exit status 0", output)}
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return Result{Output: joinOutput(exitErr.ProcessState.String(), output)}
	}
	return Result{Output: joinOutput(fmt.Sprintf("run %s: %v", p.args[0], err), output)}
}

// resolve finds the executable and says clearly why it cannot run.
func (p *ScriptProbe) resolve() (string, error) {
	path := p.args[0]
	if !strings.Contains(path, "/") {
		found, err := exec.LookPath(path)
		if err != nil {
			return "", fmt.Errorf("script %s: not found in PATH", path)
		}
		path = found
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("script %s: no such file", path)
	case err != nil:
		return "", fmt.Errorf("script %s: %w", path, err)
	case fi.IsDir():
		return "", fmt.Errorf("script %s: is a directory", path)
	case fi.Mode().Perm()&0o111 == 0:
		return "", fmt.Errorf("script %s: not executable (mode %s)", path, fi.Mode().Perm())
	}
	return path, nil
}

func killGroup(pgid int) error {
	err := syscall.Kill(-pgid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// scriptEnv drops the variables through which systemd talks to hapair itself.
func scriptEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if name == "NOTIFY_SOCKET" || strings.HasPrefix(name, "WATCHDOG_") || strings.HasPrefix(name, "LISTEN_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func joinOutput(reason, output string) string {
	if output == "" {
		return reason
	}
	return reason + ": " + output
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

// SplitCommand splits a script line into words the way keepalived 2.x does for
// vrrp_script: words are separated by blanks; '...' keeps everything literally;
// "..." and bare words honour backslash escapes. There is no shell: no variables,
// globbing, pipes or redirections.
func SplitCommand(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				return nil, errors.New("unterminated single quote")
			}
			cur.WriteString(s[i+1 : i+1+end])
			i += end + 1
			inWord = true
		case c == '"':
			inWord = true
			closed := false
			for i++; i < len(s); i++ {
				if s[i] == '"' {
					closed = true
					break
				}
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				cur.WriteByte(s[i])
			}
			if !closed {
				return nil, errors.New("unterminated double quote")
			}
		case c == '\\':
			if i+1 == len(s) {
				return nil, errors.New("trailing backslash")
			}
			i++
			cur.WriteByte(s[i])
			inWord = true
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	if len(words) == 0 {
		return nil, errors.New("empty command")
	}
	return words, nil
}
