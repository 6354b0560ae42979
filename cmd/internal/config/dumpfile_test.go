package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDumpFileMayNotBeAFileHapairReads: SIGUSR1 replaces status.dump_file; pointed at the
// configuration itself, HAProxy's file or a script, it destroyed it. Refused, by path, through a
// symbolic link and through a hard link.
func TestDumpFileMayNotBeAFileHapairReads(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "hapair.yaml")
	haproxyCfg := filepath.Join(dir, "haproxy.cfg")
	script := filepath.Join(dir, "check.sh")
	notifyScript := filepath.Join(dir, "notify.sh")
	for _, f := range []string{haproxyCfg, script, notifyScript} {
		if err := os.WriteFile(f, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink(cfgPath, link); err != nil {
		t.Fatal(err)
	}
	hard := filepath.Join(dir, "hard.cfg")
	if err := os.Link(haproxyCfg, hard); err != nil {
		t.Fatal(err)
	}
	text := func(dump string) string {
		return "haproxy:\n  config: " + haproxyCfg + "\n  runtime_dir: " + filepath.Join(dir, "run") + "\n" +
			"notify:\n  script_security: false\n" +
			"checks:\n  - name: chk\n    script: {command: \"" + script + " --quiet\"}\n" +
			strings.Replace(minimal, "    virtual_ipaddress:", "    notify_master: \""+notifyScript+" master\"\n    virtual_ipaddress:", 1) +
			"status:\n  dump_file: " + dump + "\n"
	}
	for _, tt := range []struct{ name, dump, want string }{
		{"the configuration itself", cfgPath, "is the configuration file"},
		{"the configuration through a symlink", link, "is the configuration file"},
		{"the configuration, spelled another way", dir + "/./run/../hapair.yaml", "is the configuration file"},
		{"hapair's lock", filepath.Join(dir, "run", "hapair.lock"), "is hapair's lock file"},
		{"HAProxy's configuration", haproxyCfg, "is haproxy.config"},
		{"HAProxy's configuration through a hard link", hard, "is haproxy.config"},
		{"a check script", script, "is the program of checks[0].script.command"},
		{"a notify script", notifyScript, "is the program of vrrp_instances[0].notify_master"},
		{"HAProxy's master socket", filepath.Join(dir, "run", "master.sock"), "is HAProxy's master CLI socket"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(cfgPath, []byte(text(tt.dump)), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(cfgPath, fakeInterfaces(), fakeHost())
			if err == nil || !strings.Contains(err.Error(), "status.dump_file: ") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("dump_file %s: Load = %v, want %q", tt.dump, err, tt.want)
			}
			if line := lineOfKey(t, err, "status.dump_file"); line != strings.Count(text(tt.dump), "\n") {
				t.Errorf("reported on line %d, want the dump_file line", line)
			}
		})
	}
	// A file of its own is fine.
	if err := os.WriteFile(cfgPath, []byte(text(filepath.Join(dir, "hapair.data"))), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(cfgPath, fakeInterfaces(), fakeHost()); err != nil {
		t.Fatalf("a dump file of its own: %v", err)
	}
}

// lineOfKey returns the line of the first problem about key in a Problems error.
func lineOfKey(t *testing.T, err error, key string) int {
	t.Helper()
	ps, ok := err.(Problems)
	if !ok {
		t.Fatalf("error is %T, not Problems", err)
	}
	for _, p := range ps {
		if p.Key == key {
			return p.Line
		}
	}
	t.Fatalf("no problem about %s in %v", key, err)
	return 0
}
