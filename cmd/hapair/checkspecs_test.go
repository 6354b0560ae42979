package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hapair/hapair/cmd/internal/config"
)

// TestScriptChecksHonourScriptSecurity: as root, a script check that others could modify fails
// with the reason, a safe one runs.
func TestScriptChecksHonourScriptSecurity(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("script security applies when running as root")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil { // world-writable, not sticky: anyone may replace the script
		t.Fatal(err)
	}
	unsafe := filepath.Join(dir, "check.sh")
	if err := os.WriteFile(unsafe, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	yaml := `checks:
  - {name: unsafe, script: {command: "` + unsafe + `"}, weight: -10}
  - {name: safe, script: {command: "/bin/true"}, weight: -10}
vrrp_instances:
  - {name: VI_1, interface: lo, virtual_router_id: 1, virtual_ipaddress: [10.0.0.10/24], track: {unsafe: -10, safe: -10}}
`
	cfg, err := config.Parse([]byte(yaml), "t.yaml", config.SkipInterfaceCheck())
	if err != nil {
		t.Fatal(err)
	}
	specs, err := checkSpecs(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	results := map[string]bool{}
	outputs := map[string]string{}
	for _, s := range specs {
		r := s.Probe.Probe(context.Background())
		results[s.Name], outputs[s.Name] = r.OK, r.Output
	}
	if results["unsafe"] || !strings.Contains(outputs["unsafe"], "script_security") {
		t.Errorf("unsafe script: ok=%v output %q, want a refusal", results["unsafe"], outputs["unsafe"])
	}
	if !results["safe"] {
		t.Errorf("/bin/true failed: %q", outputs["safe"])
	}
}

// TestTrackedLinks: an instance tracks its own interface unless dont_track_primary says
// otherwise (keepalived's default), plus its track_interface entries, each once.
func TestTrackedLinks(t *testing.T) {
	tests := []struct {
		ic   config.Instance
		want []string
	}{
		{config.Instance{Interface: "eth0"}, []string{"eth0"}},
		{config.Instance{Interface: "eth0", TrackInterfaces: []string{"eth1"}}, []string{"eth1", "eth0"}},
		{config.Instance{Interface: "eth0", TrackInterfaces: []string{"eth0", "eth1"}}, []string{"eth0", "eth1"}},
		{config.Instance{Interface: "eth0", DontTrackPrimary: true}, nil},
		{config.Instance{Interface: "eth0", DontTrackPrimary: true, TrackInterfaces: []string{"eth1"}}, []string{"eth1"}},
	}
	for _, tt := range tests {
		if got := trackedLinks(tt.ic); !slices.Equal(got, tt.want) {
			t.Errorf("trackedLinks(%+v) = %v, want %v", tt.ic, got, tt.want)
		}
	}
}
