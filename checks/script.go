package checks

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hapair/hapair/internal/spawn"
)

// ScriptProbe runs a command with keepalived's vrrp_script semantics: exit status 0
// is a success, anything else a failure. Unlike keepalived, a script that is
// missing, not executable, cannot be started as its user, is refused by script
// security, or runs past its timeout is a failure too (keepalived disables a refused
// script; here the refusal shows in status, metrics and the priority).
//
// The command is split and run as package spawn does for every program hapair starts:
// keepalived's word splitting without a shell, its own process group killed at the
// timeout, a scrubbed environment, its user's groups, a capped output. Whatever the
// script leaves in its group when it exits is killed too, so that checks never
// accumulate stray processes.
type ScriptProbe struct {
	prog     *spawn.Program
	security bool
}

// NewScriptProbe parses command and, when username is not empty, looks the user up (its
// primary group and supplementary groups are used too). With scriptSecurity, each run
// first applies keepalived's script_security (spawn.CheckSecure) when the script would
// run as root.
func NewScriptProbe(command, username string, scriptSecurity bool) (*ScriptProbe, error) {
	prog, err := spawn.Parse(command, username)
	if err != nil {
		return nil, fmt.Errorf("script %q: %w", command, err)
	}
	return &ScriptProbe{prog: prog, security: scriptSecurity}, nil
}

// Probe runs the script once; the context carries the check's timeout.
func (p *ScriptProbe) Probe(ctx context.Context) Result {
	start := time.Now()
	run := p.prog.Run(ctx, spawn.Options{ScriptSecurity: p.security, KillLeftovers: true})
	res := Result{At: start, Duration: time.Since(start)}
	switch {
	case errors.Is(run.Err, spawn.ErrInsecure):
		res.Output = "refused by script_security: " + run.Err.Error()
	case run.Err != nil:
		res.Output = joinOutput(run.Err.Error(), run.Output)
	case run.TimedOut:
		res.Output = joinOutput(fmt.Sprintf("timed out after %s, process group killed",
			res.Duration.Round(time.Millisecond)), run.Output)
	case run.Success():
		res.OK, res.Output = true, run.Output
		if res.Output == "" {
			res.Output = "exit status 0"
		}
	default:
		res.Output = joinOutput(run.State.String(), run.Output)
	}
	return res
}

func joinOutput(reason, output string) string {
	if output == "" {
		return reason
	}
	return reason + ": " + output
}
