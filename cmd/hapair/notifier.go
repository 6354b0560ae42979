package main

import (
	"log/slog"
	"time"

	"github.com/hapair/hapair/cmd/internal/config"
	"github.com/hapair/hapair/cmd/internal/notify"
	"github.com/hapair/hapair/vrrp"
)

// hookNotifier adapts the notify hooks to the VRRP instance's Notifier.
type hookNotifier struct{ r *notify.Runner }

// newNotifier returns nil when the instance has no hooks, so no goroutine waits for nothing.
func newNotifier(global config.Notify, hooks config.InstanceNotify, log *slog.Logger) *hookNotifier {
	h := notify.Hooks{Master: hooks.Master, Backup: hooks.Backup, Fault: hooks.Fault, Stop: hooks.Stop, All: hooks.All}
	if h.Empty() {
		return nil
	}
	return &hookNotifier{r: notify.New(h, notify.Options{
		User: global.User, Timeout: global.Timeout, ScriptSecurity: global.ScriptSecurity,
	}, log)}
}

// Close ends the hooks' goroutine once the hooks queued have run.
func (n *hookNotifier) Close() {
	if n != nil {
		n.r.Close()
	}
}

// Wait waits, after Close, for the hooks queued to run, for at most timeout; false if some did
// not finish in time.
func (n *hookNotifier) Wait(timeout time.Duration) bool {
	if n == nil {
		return true
	}
	return n.r.Wait(timeout)
}

// Notify names the states as keepalived's notify scripts receive them; INIT (stopped) is STOP.
func (n *hookNotifier) Notify(instance string, state vrrp.State, priority uint8) {
	if n == nil {
		return
	}
	word := state.String()
	if state == vrrp.Init {
		word = "STOP"
	}
	n.r.Notify(instance, word, priority)
}
