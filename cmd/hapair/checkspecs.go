package main

import (
	"fmt"
	"log/slog"

	"github.com/hapair/hapair/checks"
	"github.com/hapair/hapair/cmd/internal/config"
)

// checkSpecs turns the configured checks into the checks runner's specs. The built-in haproxy
// check is the runner's own; the links instances track are followed by checks.Links.
func checkSpecs(cfg *config.Config, log *slog.Logger) ([]checks.Spec, error) {
	var specs []checks.Spec
	for _, c := range cfg.Checks {
		probe, err := newProbe(cfg, c)
		if err != nil {
			return nil, fmt.Errorf("check %s: %w", c.Name, err)
		}
		specs = append(specs, checks.Spec{
			Name: c.Name, Interval: c.Interval, Timeout: c.Timeout, Fall: c.Fall, Rise: c.Rise,
			Weight: c.Weight, Probe: probe,
		})
	}
	return specs, nil
}

func newProbe(cfg *config.Config, c config.CheckConfig) (checks.Probe, error) {
	switch {
	case c.HTTP != nil:
		var stats *checks.StatsConditions
		if len(c.HTTP.Frontends) > 0 || len(c.HTTP.Backends) > 0 {
			stats = &checks.StatsConditions{Frontends: c.HTTP.Frontends, Backends: c.HTTP.Backends}
		}
		return checks.NewHTTPProbe(c.HTTP.URL, c.HTTP.ExpectStatus, stats)
	case c.Script != nil:
		user := c.Script.User
		if user == "" {
			user = cfg.Notify.User
		}
		return checks.NewScriptProbe(c.Script.Command, user, cfg.Notify.ScriptSecurity)
	case c.TCP != nil:
		return checks.NewTCPProbe(c.TCP.Address), nil
	case c.Interface != nil:
		return checks.NewInterfaceProbe(c.Interface.Name), nil
	}
	return nil, fmt.Errorf("no probe configured")
}
