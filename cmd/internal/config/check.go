package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/hapair/hapair/internal/spawn"
	"github.com/hapair/hapair/supervisor"
)

// CheckTimeout bounds `haproxy -c` in Check.
const CheckTimeout = time.Minute

// Check validates a configuration file the way `hapair check` reports it, like `keepalived -t`:
// every problem of Load, plus what only this host can tell: HAProxy's own verdict on its
// configuration (`<haproxy.command> -c -f <haproxy.config>`, when the haproxy section is there) and
// whether script checks can be executed. Warnings are doubtful but accepted settings, such as a
// file holding an auth_pass that group or others can read. problems is nil or a Problems value.
func Check(path string, opts ...LoadOption) (warnings []string, problems error) {
	ctx, cancel := context.WithTimeout(context.Background(), CheckTimeout)
	defer cancel()
	return CheckContext(ctx, path, opts...)
}

// CheckContext is Check with a context bounding the HAProxy run.
func CheckContext(ctx context.Context, path string, opts ...LoadOption) (warnings []string, problems error) {
	cfg, probs := load(path, opts)
	if cfg == nil {
		return nil, probs
	}
	warns := cfg.Warnings
	h := hostCheck{cfg: cfg}
	h.permissions(path)
	if cfg.HAProxy != nil {
		h.haproxy(ctx)
	}
	h.scripts()
	probs = append(probs, h.probs...)
	warns = append(warns, h.warns...)
	d := decoder{probs: probs, warns: warns}
	d.sort()
	if len(d.probs) > 0 {
		return d.warns.Strings(), d.probs
	}
	return d.warns.Strings(), nil
}

// hostCheck holds what Check finds beyond Load.
type hostCheck struct {
	cfg   *Config
	probs Problems
	warns Problems
}

func (h *hostCheck) add(key, format string, args ...any) {
	h.probs = append(h.probs, Problem{File: h.cfg.File, Line: h.cfg.Line(key), Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (h *hostCheck) warn(key, format string, args ...any) {
	h.warns = append(h.warns, Problem{File: h.cfg.File, Line: h.cfg.Line(key), Key: key, Msg: fmt.Sprintf(format, args...)})
}

// permissions warns when the file holds a VRRP password that others can read (the seed's
// `chmod 600 keepalived.conf`).
func (h *hostCheck) permissions(path string) {
	key, what := "", "a VRRP password"
	for i, in := range h.cfg.Instances {
		if in.Authentication != nil && in.Authentication.Pass != "" {
			key = index("vrrp_instances", i) + ".authentication.auth_pass"
			break
		}
	}
	if b := h.cfg.BGP; key == "" && b != nil {
		for i, p := range b.Peers {
			if p.Password != "" {
				key, what = index("bgp.peers", i)+".password", "a BGP session password"
				break
			}
		}
	}
	if key == "" {
		return
	}
	fi, err := os.Stat(path)
	if err != nil {
		return
	}
	if perm := fi.Mode().Perm(); perm&0o044 != 0 {
		h.warn(key, "the file holds %s and is readable by group or others (mode %04o): chmod 600 %s", what, perm, path)
	}
}

// haproxy runs HAProxy's configuration check. Exit 0 is valid, 1 has fatal errors, 2 is valid
// but declares no listener (seen on HAProxy 2.6).
func (h *hostCheck) haproxy(ctx context.Context) {
	hp := h.cfg.HAProxy
	prog, err := exec.LookPath(hp.Command)
	if err != nil {
		h.add("haproxy.command", "%s: %v (install haproxy, or set haproxy.command)", hp.Command, unwrapExecError(err))
	}
	if fi, serr := os.Stat(hp.Config); serr != nil {
		h.add("haproxy.config", "%s: %v", hp.Config, unwrapPathError(serr))
		return
	} else if !fi.Mode().IsRegular() {
		// HAProxy would wait on a FIFO for ever, and read a device without end.
		h.add("haproxy.config", "%s %s, not a regular file", hp.Config, fileKind(fi.Mode()))
		return
	}
	if err != nil {
		return
	}
	verdict, err := supervisor.Validate(ctx, prog, hp.Config)
	var rejected *supervisor.RejectedError
	switch {
	case errors.As(err, &rejected):
		h.add("haproxy.config", "%s -c -f %s refused the configuration (exit status %d):\n%s", hp.Command, hp.Config, rejected.ExitCode, indent(rejected.Output))
	case ctx.Err() != nil:
		h.add("haproxy.config", "%s -c -f %s did not finish: %v", hp.Command, hp.Config, ctx.Err())
	case err != nil:
		h.add("haproxy.command", "run %s -c -f %s: %v", hp.Command, hp.Config, err)
	case verdict.NoListener:
		h.warn("haproxy.config", "%s -c -f %s: valid, but declares no listener:\n%s", hp.Command, hp.Config, indent(verdict.Output))
	}
}

// scripts checks that script checks can be executed (hapair counts a script it cannot execute as
// a failure, for ever), and warns about notify commands that cannot be, and about commands that
// script security would refuse. It asks package spawn, which runs them, so that check and run
// judge alike.
func (h *hostCheck) scripts() {
	for i, c := range h.cfg.Checks {
		if c.Script == nil {
			continue
		}
		key := index("checks", i) + ".script.command"
		switch msg, refused := h.program(c.Script.Command, c.Script.User); {
		case msg == "":
		case refused:
			h.warn(key, "%s", msg)
		default:
			h.add(key, "%s: the check would always fail", msg)
		}
	}
	for i, in := range h.cfg.Instances {
		for _, n := range []struct{ key, cmd string }{
			{"notify_master", in.Notify.Master}, {"notify_backup", in.Notify.Backup},
			{"notify_fault", in.Notify.Fault}, {"notify_stop", in.Notify.Stop}, {"notify", in.Notify.All},
		} {
			if n.cmd == "" {
				continue
			}
			if msg, _ := h.program(n.cmd, h.cfg.Notify.User); msg != "" {
				h.warn(index("vrrp_instances", i)+"."+n.key, "%s", msg)
			}
		}
	}
}

// program returns "" when the command's program can be run as user; otherwise why not, with
// refused set when it exists but script security would refuse it. `hapair run` runs as root, so
// that is what is judged here, whoever runs `hapair check`.
func (h *hostCheck) program(command, user string) (msg string, refused bool) {
	prog, err := spawn.Parse(command, user)
	if err != nil {
		return err.Error(), false
	}
	if _, err := prog.Resolve(); err != nil {
		return err.Error(), false
	}
	if h.cfg.Notify.ScriptSecurity {
		if err := prog.CheckSecure(true); errors.Is(err, spawn.ErrInsecure) {
			return fmt.Sprintf("%s: %v, so hapair will refuse to run it (notify.script_security)", prog.Args[0], err), true
		} else if err != nil {
			return err.Error(), false
		}
	}
	return "", false
}

func unwrapExecError(err error) error {
	var ee *exec.Error
	if errors.As(err, &ee) {
		err = ee.Err
	}
	return unwrapPathError(err)
}

func indent(s string) string {
	if s == "" {
		return "    (no output)"
	}
	var b bytes.Buffer
	for i, line := range strings.Split(s, "\n") {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString("    ")
		b.WriteString(line)
	}
	return b.String()
}
