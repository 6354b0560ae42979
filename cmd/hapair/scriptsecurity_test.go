package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hapair/hapair/cmd/internal/config"
)

// TestCheckAndRunAgreeOnScriptSecurity (issue 9 item 11): `hapair check` and `hapair run` apply
// one script_security rule, keepalived's: the script and every directory above it owned by root
// and not writable by others, where a directory whose group is root may be group-writable and a
// sticky directory (/tmp) may be world-writable. Each case builds a directory with an owner and a
// mode, puts a root-owned script in it, and compares what `check` predicts with what the running
// check does.
func TestCheckAndRunAgreeOnScriptSecurity(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("script security applies when running as root, and the cases need chown")
	}
	// A base whose ancestors are all safe: /run is root's 0755 (t.TempDir lives under /tmp,
	// which is fine by the rule too, but this keeps the cases independent of it).
	base, err := os.MkdirTemp("/run", "hapair-scriptsec-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	const nobody, nogroup = 65534, 65534
	tests := []struct {
		name       string
		uid, gid   int
		mode       os.FileMode
		wantRefuse bool
	}{
		{"root 0755", 0, 0, 0o755, false},
		{"root:root 0775 (group root may write)", 0, 0, 0o775, false},
		{"root:nogroup 0775", 0, nogroup, 0o775, true},
		{"root 0777", 0, 0, 0o777, true},
		{"root 1777 (sticky, like /tmp)", 0, 0, 0o777 | os.ModeSticky, false},
		{"owned by nobody 0755", nobody, 0, 0o755, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(base, fmt.Sprint(i))
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(dir, tt.uid, tt.gid); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, tt.mode); err != nil {
				t.Fatal(err)
			}
			script := filepath.Join(dir, "check.sh")
			if err := os.WriteFile(script, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			yaml := `checks:
  - {name: s, script: {command: "` + script + `"}, weight: -10}
vrrp_instances:
  - {name: VI_1, interface: lo, virtual_router_id: 1, virtual_ipaddress: [10.0.0.10/24], track: {s: -10}}
`
			path := filepath.Join(base, fmt.Sprintf("h%d.yaml", i))
			if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			warns, probs := config.Check(path, config.SkipInterfaceCheck())
			if probs != nil {
				t.Fatalf("check: %v", probs)
			}
			checkRefuses := strings.Contains(strings.Join(warns, "\n"), "refuse")

			cfg, err := config.Load(path, config.SkipInterfaceCheck())
			if err != nil {
				t.Fatal(err)
			}
			specs, err := checkSpecs(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			res := specs[0].Probe.Probe(context.Background())
			runRefuses := !res.OK && strings.Contains(res.Output, "script_security")
			if !res.OK && !runRefuses {
				t.Fatalf("the script failed for another reason: %q", res.Output)
			}

			if checkRefuses != runRefuses {
				t.Errorf("check refuses: %v (warnings %q); run refuses: %v (%q)", checkRefuses, warns, runRefuses, res.Output)
			}
			if runRefuses != tt.wantRefuse {
				t.Errorf("refused = %v, want %v (keepalived's rule); output %q", runRefuses, tt.wantRefuse, res.Output)
			}
		})
	}
}
