package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	"github.com/hapair/hapair/checks"
	"github.com/hapair/hapair/cmd/internal/config"
	"github.com/hapair/hapair/internal/rtprio"
	"github.com/hapair/hapair/supervisor"
	"github.com/hapair/hapair/vrrp/instance"
)

// reload is SIGHUP: read and validate the file, refuse it whole when it is broken or changes what
// only a restart can change, reload HAProxy (which checks its file with `haproxy -c` first), and
// only when HAProxy took its new file apply hapair's own settings in place. Whatever goes wrong,
// the running configuration stays whole: result is supervisor.ReloadOK, ReloadRefused (a file was
// invalid: nothing was touched) or ReloadFailed (HAProxy's reload failed, its old workers keep
// serving, and hapair's settings were left as they were); err says why.
func (d *daemon) reload(ctx context.Context, path string) (result supervisor.ReloadResult, err error) {
	d.log.Info("Reloading configuration", "file", path)
	refuse := func(err error) (supervisor.ReloadResult, error) {
		d.log.Error("Reload refused, the running configuration stays", "err", err)
		return supervisor.ReloadRefused, err
	}
	next, err := config.Load(path)
	if err != nil {
		return refuse(fmt.Errorf("%s is not valid:\n%w", path, err))
	}
	d.mu.Lock()
	cur := d.cfg
	d.mu.Unlock()
	changes, needRestart := config.Reloadable(cur, next)
	if len(needRestart) > 0 {
		return refuse(fmt.Errorf("these changes need a restart of hapair: %s", strings.Join(needRestart, "; ")))
	}
	// The new checks are built (script security, commands) before anything is touched.
	var specs []checks.Spec
	checksChanged := !reflect.DeepEqual(cur.Checks, next.Checks)
	if checksChanged {
		if specs, err = checkSpecs(next, d.log); err != nil {
			return refuse(err)
		}
	}
	if d.sup != nil {
		// HAProxy pauses its listeners while a new worker starts: the checks' failures meanwhile
		// are the reload's, not HAProxy's health, and must not move the VIP.
		d.mu.Lock()
		endHold := d.checks.HoldFailures()
		d.mu.Unlock()
		err := d.sup.Reload(ctx)
		endHold()
		switch {
		case err == nil:
		case errors.Is(err, supervisor.ErrRefused):
			return refuse(err)
		case errors.Is(err, supervisor.ErrNotRunning):
			// Not a failure of this reload: the supervisor's next start reads the new file.
			d.log.Warn("HAProxy is not running: it will read its configuration when it is restarted")
		default:
			d.log.Error("Reload failed, the running configuration stays (HAProxy's old workers keep serving)", "err", err)
			return supervisor.ReloadFailed, err
		}
	}
	if err := ctx.Err(); err != nil {
		return refuse(fmt.Errorf("stopping: %w", err))
	}
	if len(changes) > 0 {
		d.log.Info("Applying the changes", "changes", strings.Join(changes, "; "))
	}
	if checksChanged {
		d.replaceChecks(ctx, specs)
		for _, c := range cur.Checks {
			if !slices.ContainsFunc(next.Checks, func(n config.CheckConfig) bool { return n.Name == c.Name }) {
				d.metrics.RemoveCheck(c.Name)
			}
		}
	}
	if next.VRRPRTPriority != cur.VRRPRTPriority {
		setRTPriority(next.VRRPRTPriority, d.log)
	}
	if d.sup != nil && next.HAProxy != nil {
		// The supervisor copied them when it was made; the next stop and restart use these.
		d.sup.SetTimings(supervisorConfig(next.HAProxy))
	}
	d.mu.Lock()
	d.cfg = next
	d.mu.Unlock()
	if d.bgp != nil {
		d.bgp.reload(ctx, next.BGP)
	}
	// Reloadable paired the instances by name and refused any added, removed or renamed one, so
	// every running instance has its namesake in next, wherever the file lists it now.
	byName := make(map[string]config.Instance, len(next.Instances))
	for _, ic := range next.Instances {
		byName[ic.Name] = ic
	}
	for _, vi := range d.instances {
		d.updateInstance(next, vi, byName[vi.name])
	}
	d.updatePriorities()
	d.log.Info("Configuration reloaded")
	return supervisor.ReloadOK, nil
}

// replaceChecks swaps the checks runner for one running specs. Every check the old runner had
// keeps its tracked state in the new one (Runner.Inherit), the built-in liveness check too: what
// the supervisor last said, and a rise hold in progress.
func (d *daemon) replaceChecks(ctx context.Context, specs []checks.Spec) {
	for _, s := range specs {
		d.metrics.DeclareCheck(s.Name)
	}
	r := checks.NewRunner(specs, d.metrics, d.log.With("source", "checks"))
	d.stopChecks()
	d.startChecks(ctx, r, true)
}

// updateInstance applies an instance's reloadable settings: ic is the new configuration of the
// instance of vi's name.
func (d *daemon) updateInstance(cfg *config.Config, vi *vrrpInstance, ic config.Instance) {
	mgr := vi.vips
	if !reflect.DeepEqual(vi.cfg.VIPs, ic.VIPs) {
		m, err := d.host.VIPs(ic.Interface, ic.VIPs)
		if err != nil {
			d.log.Error("("+ic.Name+") VIPs not changed", "err", err)
			ic.VIPs = vi.cfg.VIPs
		} else {
			mgr = m
		}
	}
	removed := subtract(vi.cfg.VIPs, ic.VIPs)
	hooks := newNotifier(cfg.Notify, ic.Notify, d.log)
	u := &instance.Update{
		BasePriority: ic.Priority, VIPs: ic.VIPs, Manager: mgr,
		GARPRepeat: ic.GARPMasterRepeat, GARPDelay: ic.GARPMasterDelay,
		Notifier: d.withBGP(hooks),
	}
	if !vi.run.Apply(u) {
		hooks.Close()
		d.log.Warn("(" + ic.Name + ") stopped, reload not applied")
		return
	}
	d.mu.Lock()
	old := vi.hooks
	vi.hooks = hooks
	d.mu.Unlock()
	old.Close() // the loop uses the new hooks from now on
	if len(removed) > 0 {
		if old, err := d.host.VIPs(ic.Interface, removed); err == nil {
			if err := old.Detach(); err != nil {
				d.log.Error("("+ic.Name+") Detaching removed VIPs failed", "err", err)
			}
		}
	}
	d.mu.Lock()
	vi.cfg, vi.vips, vi.track = ic, mgr, trackWeights(ic)
	d.mu.Unlock()
}

func subtract(a, b []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range a {
		found := false
		for _, q := range b {
			if p == q {
				found = true
				break
			}
		}
		if !found {
			out = append(out, p)
		}
	}
	return out
}

// setRTPriority applies vrrp_rt_priority (0: back to normal priority). A host that refuses it (no
// CAP_SYS_NICE, a real-time cgroup without budget) still runs hapair, at the policy it had: VRRP
// keeps working, only less punctually on a busy host.
func setRTPriority(priority int, log *slog.Logger) {
	if err := rtprio.Set(priority); err != nil {
		log.Warn("Real-time priority not set, hapair keeps its scheduling policy", "vrrp_rt_priority", priority, "err", err)
		return
	}
	if priority > 0 {
		log.Info("Running at real-time priority, children at normal priority", "policy", "SCHED_RR", "vrrp_rt_priority", priority)
	} else {
		log.Info("Running at normal priority", "policy", "SCHED_OTHER")
	}
}
