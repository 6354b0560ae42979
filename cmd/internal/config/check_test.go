package config

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hapair/hapair/internal/testenv"
)

// fakeHAProxy writes a stand-in for haproxy that prints output and exits with status when run as
// `haproxy -c -f FILE`, and fails the test's expectation otherwise.
func fakeHAProxy(t *testing.T, status int, output string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "haproxy")
	script := fmt.Sprintf("#!/bin/sh\n[ \"$1 $2\" = \"-c -f\" ] || { echo \"unexpected arguments: $*\"; exit 99; }\nprintf '%%s\\n' %q\nexit %d\n", output, status)
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func writeFile(t *testing.T, name, text string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return p
}

func haproxyConfig(command, cfgFile string) string {
	return fmt.Sprintf("haproxy:\n  command: %s\n  config: %s\n", command, cfgFile) + minimal
}

func TestCheckHAProxy(t *testing.T) {
	haCfg := writeFile(t, "haproxy.cfg", "global\n", 0o644)
	tests := []struct {
		name      string
		command   string
		config    string
		wantProb  string // "" for none
		wantWarn  string // "" for none
		wantLines int    // number of problems
	}{
		{name: "valid", command: fakeHAProxy(t, 0, "Configuration file is valid"), config: haCfg},
		{name: "refused", command: fakeHAProxy(t, 1, "[ALERT] (1) : config : parsing [haproxy.cfg:3] : unknown keyword 'bogus'"), config: haCfg,
			wantProb: "h.yaml:3: haproxy.config: ", wantLines: 1},
		{name: "no listener", command: fakeHAProxy(t, 2, "[WARNING] no listener"), config: haCfg,
			wantWarn: "h.yaml:3: haproxy.config: "},
		{name: "missing program", command: "/nonexistent/sbin/haproxy", config: haCfg,
			wantProb: "h.yaml:2: haproxy.command: /nonexistent/sbin/haproxy: no such file or directory (install haproxy, or set haproxy.command)", wantLines: 1},
		{name: "missing config", command: fakeHAProxy(t, 0, ""), config: "/nonexistent/haproxy.cfg",
			wantProb: "h.yaml:3: haproxy.config: /nonexistent/haproxy.cfg: no such file or directory", wantLines: 1},
		{name: "missing both", command: "/nonexistent/sbin/haproxy", config: "/nonexistent/haproxy.cfg",
			wantProb: "haproxy.command", wantLines: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "h.yaml", haproxyConfig(tt.command, tt.config), 0o600)
			warns, err := Check(path, fakeInterfaces())
			if tt.wantProb == "" && err != nil {
				t.Fatalf("Check: %v", err)
			}
			if tt.wantProb != "" {
				var probs Problems
				if !errors.As(err, &probs) {
					t.Fatalf("err = %v, want Problems", err)
				}
				if !strings.Contains(err.Error(), strings.ReplaceAll(tt.wantProb, "h.yaml", path)) {
					t.Errorf("problems lack %q:\n%v", tt.wantProb, err)
				}
				if len(probs) != tt.wantLines {
					t.Errorf("%d problems, want %d:\n%v", len(probs), tt.wantLines, err)
				}
			}
			if tt.name == "refused" {
				for _, want := range []string{"refused the configuration (exit status 1)", "    [ALERT] (1) : config : parsing [haproxy.cfg:3] : unknown keyword 'bogus'"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("problem lacks HAProxy's words %q:\n%v", want, err)
					}
				}
			}
			joined := strings.Join(warns, "\n")
			if tt.wantWarn == "" && len(warns) > 0 {
				t.Errorf("unexpected warnings: %v", warns)
			}
			if tt.wantWarn != "" && !strings.Contains(joined, strings.ReplaceAll(tt.wantWarn, "h.yaml", path)) {
				t.Errorf("warnings lack %q: %v", tt.wantWarn, warns)
			}
		})
	}
}

func TestCheckReportsLoadAndHostProblemsTogether(t *testing.T) {
	text := haproxyConfig("/nonexistent/sbin/haproxy", "/nonexistent/haproxy.cfg") + "    priority: 0\n"
	path := writeFile(t, "h.yaml", text, 0o600)
	_, err := Check(path, fakeInterfaces())
	var probs Problems
	if !errors.As(err, &probs) || len(probs) != 3 {
		t.Fatalf("want 3 problems (command, config, priority), got:\n%v", err)
	}
	if probs[0].Key != "haproxy.command" || probs[2].Key != "vrrp_instances[0].priority" {
		t.Errorf("problems out of line order:\n%v", err)
	}
}

func TestCheckPermissions(t *testing.T) {
	withPass := minimal + "    authentication: {auth_type: PASS, auth_pass: 1a2b3c4d}\n"
	tests := []struct {
		name string
		text string
		mode os.FileMode
		warn bool
	}{
		{"password readable by others", withPass, 0o644, true},
		{"password readable by group", withPass, 0o640, true},
		{"password private", withPass, 0o600, false},
		{"no password", minimal, 0o644, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "h.yaml", tt.text, tt.mode)
			warns, err := Check(path, fakeInterfaces())
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("%s:6: vrrp_instances[0].authentication.auth_pass: the file holds a VRRP password and is readable by group or others (mode %04o): chmod 600 %s", path, tt.mode, path)
			got := strings.Join(warns, "\n")
			if tt.warn && got != want {
				t.Errorf("warnings = %q, want %q", got, want)
			}
			if !tt.warn && len(warns) > 0 {
				t.Errorf("unexpected warnings %q", warns)
			}
		})
	}
}

func TestCheckScripts(t *testing.T) {
	// A directory anyone can write to: script security must refuse what is inside.
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(open, "check.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// As root the script is root's and the open directory is what others can change; as anyone
	// else the script itself already belongs to a user other than root.
	culprit := open + " is writable by others (mode -rwxrwxrwx)"
	if os.Geteuid() != 0 {
		culprit = fmt.Sprintf("%s is owned by uid %d", script, os.Geteuid())
	}
	checks := func(security bool, command string) string {
		return fmt.Sprintf("checks:\n  - name: s\n    script: {command: %q}\nnotify: {script_security: %t}\n", command, security) +
			minimal + "    track: [s]\n    notify_master: /nonexistent/notify.sh master\n"
	}
	tests := []struct {
		name     string
		text     string
		wantProb string
		wantWarn []string
	}{
		{"missing script", checks(false, "/nonexistent/check.sh arg"),
			"h.yaml:3: checks[0].script.command: /nonexistent/check.sh: no such file or directory: the check would always fail",
			[]string{"h.yaml:11: vrrp_instances[0].notify_master: /nonexistent/notify.sh: no such file or directory"}},
		{"insecure script with security", checks(true, script+" arg"), "",
			[]string{"h.yaml:3: checks[0].script.command: " + script + ": a user other than root can change the script: " + culprit + ", so hapair will refuse to run it", "notify_master"}},
		{"insecure script without security", checks(false, script), "", []string{"notify_master"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "h.yaml", tt.text, 0o600)
			warns, err := Check(path, fakeInterfaces())
			if tt.wantProb == "" && err != nil {
				t.Fatalf("Check: %v", err)
			}
			if tt.wantProb != "" && (err == nil || !strings.Contains(err.Error(), strings.ReplaceAll(tt.wantProb, "h.yaml", path))) {
				t.Errorf("problems lack %q:\n%v", tt.wantProb, err)
			}
			got := strings.Join(warns, "\n")
			for _, w := range tt.wantWarn {
				if !strings.Contains(got, strings.ReplaceAll(w, "h.yaml", path)) {
					t.Errorf("warnings lack %q:\n%s", w, got)
				}
			}
			if len(warns) != len(tt.wantWarn) {
				t.Errorf("%d warnings, want %d:\n%s", len(warns), len(tt.wantWarn), got)
			}
		})
	}
}

// TestCheckRealHAProxy runs Debian's HAProxy on a good and a bad configuration.
func TestCheckRealHAProxy(t *testing.T) {
	haproxy, err := exec.LookPath("haproxy")
	if err != nil {
		haproxy = "/usr/sbin/haproxy"
		if _, err := os.Stat(haproxy); err != nil {
			testenv.SkipOrFail(t, "haproxy is not installed")
		}
	}
	good := writeFile(t, "good.cfg", "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 1s\n  timeout server 1s\nlisten l\n  bind 127.0.0.1:18404\n  server s 127.0.0.1:1\n", 0o644)
	bad := writeFile(t, "bad.cfg", "defaults\n  mode tcp\nlisten l\n  bind 127.0.0.1:0\n  bogus_keyword on\n", 0o644)

	path := writeFile(t, "h.yaml", haproxyConfig(haproxy, good), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), CheckTimeout)
	defer cancel()
	if warns, err := CheckContext(ctx, path, fakeInterfaces()); err != nil || len(warns) > 0 {
		t.Errorf("good HAProxy configuration: warnings %v, problems %v", warns, err)
	}

	path = writeFile(t, "h.yaml", haproxyConfig(haproxy, bad), 0o600)
	_, err = CheckContext(ctx, path, fakeInterfaces())
	if err == nil || !strings.Contains(err.Error(), "refused the configuration (exit status 1)") || !strings.Contains(err.Error(), "bogus_keyword") {
		t.Errorf("bad HAProxy configuration: want a problem quoting HAProxy about bogus_keyword, got:\n%v", err)
	}
}

func TestCheckMissingFile(t *testing.T) {
	warns, err := Check("/nonexistent/hapair.yaml")
	if err == nil || len(warns) != 0 || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Check(missing) = %v, %v", warns, err)
	}
}
