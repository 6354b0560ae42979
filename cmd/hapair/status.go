package main

import (
	"os"
	"path/filepath"
	"time"

	"github.com/hapair/hapair/metrics/status"
)

// Status implements status.Source: the document behind GET /status, `hapair status` and
// the SIGUSR1 dump.
func (d *daemon) Status() status.Status {
	d.mu.Lock()
	routerID := d.cfg.RouterID
	instances := d.instances
	runner := d.checks
	d.mu.Unlock()

	now := time.Now()
	st := status.Status{RouterID: routerID, Version: version, GeneratedAt: now, PID: os.Getpid(), Drained: d.drained.Load()}
	if d.reloads != nil {
		st.Config = d.reloads.status()
	}
	for _, vi := range instances {
		s := vi.run.Status()
		is := status.InstanceStatus{
			Name: s.Name, Interface: s.Interface, VRID: s.VRID, Version: s.Version,
			State: s.State.String(), BasePriority: int(s.BasePriority), EffectivePriority: int(s.Priority),
			Since: s.Since, InState: status.Duration(now.Sub(s.Since)),
		}
		if s.MasterAddr.IsValid() {
			is.MasterAddress = s.MasterAddr.String()
		}
		for _, p := range s.VIPs {
			is.VIPs = append(is.VIPs, p.String())
		}
		if !s.LastTransition.At.IsZero() {
			is.LastTransition = &status.Transition{
				From: s.LastTransition.From.String(), To: s.LastTransition.To.String(),
				Reason: s.LastTransition.Reason, At: s.LastTransition.At,
			}
		}
		st.Instances = append(st.Instances, is)
	}
	if d.sup != nil {
		hs := d.sup.Status()
		st.HAProxy = status.HAProxyStatus{
			PID: hs.PID, Up: hs.Up, Restarts: hs.Restarts, Backoff: status.Duration(hs.Backoff),
		}
		if hs.LastExit != nil {
			status := *hs.LastExit
			st.HAProxy.LastExit = &status
		}
		if !hs.LastReload.At.IsZero() {
			st.HAProxy.LastReload = &status.ReloadStatus{At: hs.LastReload.At, Result: hs.LastReload.Result, Error: hs.LastReload.Error}
		}
	}
	for _, c := range runner.Status() {
		st.Checks = append(st.Checks, status.CheckStatus{
			Name: c.Name, Up: c.Up, LastOK: c.Last.OK, Output: c.Last.Output,
			Duration: status.Duration(c.Last.Duration), At: c.Last.At,
		})
	}
	if d.bgp != nil {
		st.BGP = d.bgp.status()
	}
	return st
}

// dump writes the human state dump on SIGUSR1 (keepalived's /tmp/keepalived.data habit).
func (d *daemon) dump() {
	d.mu.Lock()
	path := d.cfg.Status.DumpFile
	d.mu.Unlock()
	// /run/hapair exists under the unit (RuntimeDirectory); elsewhere make it, private.
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		d.log.Error("State dump failed", "err", err)
		return
	}
	if err := status.WriteDump(path, d.Status()); err != nil {
		d.log.Error("State dump failed", "err", err)
		return
	}
	d.log.Info("State dump written", "file", path)
}
