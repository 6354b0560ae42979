package main

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"strings"

	"github.com/hapair/hapair/checks"
	"github.com/hapair/hapair/cmd/internal/config"
	"github.com/hapair/hapair/vrrp/instance"
	vipnet "github.com/hapair/hapair/vrrp/vip"
)

// reload is SIGHUP: read and validate the file, refuse it whole when it is broken or changes what
// only a restart can change, else apply it in place and reload HAProxy (which validates first).
// The running configuration stays whenever anything is refused.
func (d *daemon) reload(ctx context.Context, path string) {
	d.log.Info(fmt.Sprintf("Reloading configuration %s", path))
	next, err := config.Load(path)
	if err != nil {
		d.log.Error(fmt.Sprintf("Reload refused, the running configuration stays: %s is not valid:\n%v", path, err))
		return
	}
	d.mu.Lock()
	cur := d.cfg
	d.mu.Unlock()
	changes, needRestart := config.Reloadable(cur, next)
	if len(needRestart) > 0 {
		d.log.Error(fmt.Sprintf("Reload refused, the running configuration stays: these changes need a restart of hapair: %s",
			strings.Join(needRestart, "; ")))
		return
	}
	if len(changes) > 0 {
		d.log.Info(fmt.Sprintf("Applying: %s", strings.Join(changes, "; ")))
	}
	if !reflect.DeepEqual(cur.Checks, next.Checks) {
		if err := d.replaceChecks(ctx, next); err != nil {
			d.log.Error(fmt.Sprintf("Reload refused, the running configuration stays: %v", err))
			return
		}
	}
	d.mu.Lock()
	d.cfg = next
	d.mu.Unlock()
	for i, vi := range d.instances {
		d.updateInstance(next, vi, next.Instances[i])
	}
	d.mu.Lock()
	runner := d.checks
	d.mu.Unlock()
	d.updatePriorities(runner.Up())
	if d.sup != nil {
		if err := d.sup.Reload(ctx); err != nil {
			d.log.Error(fmt.Sprintf("HAProxy reload: %v", err))
		}
	}
	d.log.Info("Configuration reloaded")
}

// replaceChecks swaps the checks runner for one built from the new configuration; the built-in
// liveness check keeps what the supervisor last said.
func (d *daemon) replaceChecks(ctx context.Context, next *config.Config) error {
	specs, err := checkSpecs(next, d.log)
	if err != nil {
		return err
	}
	for _, s := range specs {
		d.metrics.DeclareCheck(s.Name)
	}
	r := checks.NewRunner(specs, d.metrics, d.log.With("source", "checks"))
	if d.sup != nil {
		st := d.sup.Status()
		r.Liveness().Set(st.Up, "state before reload")
	}
	d.stopChecks()
	d.startChecks(ctx, r)
	return nil
}

// updateInstance applies an instance's reloadable settings. Instances are matched by position:
// Reloadable refused any added, removed or renamed one.
func (d *daemon) updateInstance(cfg *config.Config, vi *vrrpInstance, ic config.Instance) {
	mgr := vi.vips
	if !reflect.DeepEqual(vi.cfg.VIPs, ic.VIPs) {
		m, err := vipnet.NewManager(ic.Interface, ic.VIPs, d.log)
		if err != nil {
			d.log.Error(fmt.Sprintf("(%s) VIPs not changed: %v", ic.Name, err))
			ic.VIPs = vi.cfg.VIPs
		} else {
			mgr = m
		}
	}
	removed := subtract(vi.cfg.VIPs, ic.VIPs)
	u := &instance.Update{
		BasePriority: ic.Priority, VIPs: ic.VIPs, Manager: mgr,
		GARPRepeat: ic.GARPMasterRepeat, GARPDelay: ic.GARPMasterDelay,
		Notifier: newNotifier(cfg.Notify, ic.Notify, d.log),
	}
	if !vi.run.Apply(u) {
		d.log.Warn(fmt.Sprintf("(%s) stopped, reload not applied", ic.Name))
		return
	}
	if len(removed) > 0 {
		if old, err := vipnet.NewManager(ic.Interface, removed, d.log); err == nil {
			if err := old.Detach(); err != nil {
				d.log.Error(fmt.Sprintf("(%s) detaching removed VIPs: %v", ic.Name, err))
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
