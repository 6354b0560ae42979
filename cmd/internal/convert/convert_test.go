package convert

import (
	"errors"
	"flag"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hapair/hapair/cmd/internal/config"
	"github.com/hapair/hapair/internal/spawn"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func convertString(t *testing.T, in string) (string, []Note) {
	t.Helper()
	out, notes, err := Convert(strings.NewReader(in), "keepalived.conf")
	if err != nil {
		t.Fatalf("Convert: %v\ninput:\n%s\noutput:\n%s", err, in, out)
	}
	return string(out), notes
}

func parseConverted(t *testing.T, out string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(out), "converted.yaml", config.SkipInterfaceCheck())
	if err != nil {
		t.Fatalf("config.Parse refused the converted file: %v\n%s", err, out)
	}
	return cfg
}

// TestSeed converts the seed guide's two keepalived.conf files and checks the result against
// golden files and, key by key, against the seed's meaning.
func TestSeed(t *testing.T) {
	for _, host := range []struct {
		name     string
		state    config.State
		priority uint8
	}{{"loglb01", config.StateMaster, 110}, {"loglb02", config.StateBackup, 100}} {
		t.Run(host.name, func(t *testing.T) {
			src := filepath.Join("testdata", host.name+".conf")
			f, err := os.Open(src)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			out, notes, err := Convert(f, host.name+".conf")
			if err != nil {
				t.Fatalf("Convert: %v\n%s", err, out)
			}
			golden := filepath.Join("testdata", host.name+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != string(want) {
				t.Errorf("output differs from %s (go test -update rewrites it):\n%s", golden, out)
			}

			// The only note: pgrep became the built-in check.
			if len(notes) != 1 || notes[0].Line != 10 || notes[0].Keyword != "vrrp_script chk_haproxy" ||
				!strings.Contains(notes[0].Why, "built-in haproxy check") {
				t.Errorf("notes = %v, want one about chk_haproxy at line 10", notes)
			}

			cfg := parseConverted(t, string(out))
			if cfg.RouterID != host.name {
				t.Errorf("router_id = %q", cfg.RouterID)
			}
			if cfg.HAProxy == nil || cfg.HAProxy.Command != "/usr/sbin/haproxy" || cfg.HAProxy.Config != "/etc/haproxy/haproxy.cfg" {
				t.Errorf("haproxy = %+v, want the default section", cfg.HAProxy)
			}
			if len(cfg.Checks) != 0 {
				t.Errorf("checks = %+v, want none (pgrep is the built-in check)", cfg.Checks)
			}
			if cfg.Notify.User != "root" || !cfg.Notify.ScriptSecurity {
				t.Errorf("notify = %+v, want user root, script_security true", cfg.Notify)
			}
			in := cfg.Instances[0]
			want1 := config.Instance{
				Name: "VI_LOGS", Interface: "eth0", State: host.state, VRID: 51, Priority: host.priority,
				AdvertInt: time.Second, Version: 2, Preempt: true,
				Authentication:   &config.Authentication{Type: "PASS", Pass: "1a2b3c4d"},
				VIPs:             []netip.Prefix{netip.MustParsePrefix("10.0.0.10/24")},
				Track:            map[string]int{"haproxy": -20},
				GARPMasterRepeat: 5, GARPMasterDelay: 5 * time.Second,
				Checksum: config.ChecksumKeepalived, FastFailover: true,
			}
			if !reflect.DeepEqual(in, want1) {
				t.Errorf("instance =\n%+v\nwant\n%+v", in, want1)
			}
		})
	}
}

func TestConvert(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		want      []string // substrings of the YAML
		notWant   []string
		wantNotes []string // "line: keyword" of each note, in order
	}{
		{
			name: "comments of both kinds, inline and whole-line",
			in: `# a comment
! another
vrrp_instance VI_1 {   # trailing
    interface eth0     ! trailing bang
    virtual_router_id 7
    virtual_ipaddress {
        10.0.0.7/24    # the VIP
    }
}
`,
			want: []string{"- name: VI_1", "interface: eth0", "virtual_router_id: 7", "virtual_ipaddress: [10.0.0.7/24]"},
		},
		{
			name: "a block on one line and a brace on the next line",
			in: `vrrp_instance VI_1
{
    interface eth0
    virtual_router_id 7
    virtual_ipaddress { 10.0.0.7/24 10.0.0.8 }
    unicast_peer { 10.0.0.12 }
}
`,
			// keepalived reads one address per line: the second word is an option it would refuse.
			want:      []string{"virtual_ipaddress: [10.0.0.7/24]", "unicast_peer: [10.0.0.12]"},
			wantNotes: []string{"5: vrrp_instance VI_1: virtual_ipaddress 10.0.0.7/24 10.0.0.8"},
		},
		{
			name: "quoted strings keep their blanks",
			in: `vrrp_script chk_web {
    script "/usr/local/bin/check web \"front end\""
    interval 3
    timeout 2
    weight 10
    fall 3
    rise 4
    user nobody
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 7
    virtual_ipaddress {
        10.0.0.7/24
    }
    track_script {
        chk_web
    }
    notify_master "/etc/keepalived/notify.sh master VI_1"
}
global_defs {
    enable_script_security
}
`,
			want: []string{
				`command: /usr/local/bin/check web "front end"`,
				"user: nobody", "interval: 3s", "timeout: 2s", "fall: 3", "rise: 4", "weight: 10",
				"track: {chk_web: 10}",
				"notify_master: /etc/keepalived/notify.sh master VI_1",
				"script_security: true",
			},
		},
		{
			name: "keepalived's script defaults are written out",
			in: `vrrp_script chk {
    script /bin/true
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 7
    virtual_ipaddress {
        10.0.0.7
    }
    track_script {
        chk weight -30
    }
}
`,
			want:      []string{"interval: 1s", "timeout: 1s", "fall: 1", "rise: 1", "weight: 0", "track: {chk: -30}"},
			wantNotes: []string{"0: enable_script_security"},
		},
		{
			name: "include is noted",
			in: `include /etc/keepalived/conf.d/*.conf
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 7
    virtual_ipaddress {
        10.0.0.7
    }
}
`,
			wantNotes: []string{"1: include /etc/keepalived/conf.d/*.conf"},
		},
		{
			name: "VIP suffixes: the address is carried, the rest noted",
			in: `vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 7
    virtual_ipaddress {
        10.0.0.7/24 dev eth1 label eth1:vip
        10.0.0.8/24 brd 10.0.0.255 scope global
        10.0.0.7/24
    }
}
`,
			want: []string{"virtual_ipaddress: [10.0.0.7/24, 10.0.0.8/24]"},
			wantNotes: []string{
				"5: vrrp_instance VI_1: virtual_ipaddress 10.0.0.7/24 dev eth1",
				"5: vrrp_instance VI_1: virtual_ipaddress 10.0.0.7/24 label eth1:vip",
				"6: vrrp_instance VI_1: virtual_ipaddress 10.0.0.8/24 brd 10.0.0.255",
				"6: vrrp_instance VI_1: virtual_ipaddress 10.0.0.8/24 scope global",
				"7: vrrp_instance VI_1: virtual_ipaddress 10.0.0.7/24",
			},
		},
		{
			name: "nopreempt, preempt_delay, garp settings, global garp defaults",
			in: `global_defs {
    vrrp_garp_master_delay 10
    vrrp_garp_master_repeat 2
}
vrrp_instance VI_1 {
    state BACKUP
    interface eth0
    virtual_router_id 7
    priority 90
    nopreempt
    preempt_delay 30.5
    garp_master_repeat 3
    virtual_ipaddress {
        10.0.0.7
    }
}
`,
			want: []string{"state: BACKUP", "priority: 90", "preempt: false", "preempt_delay: 30.5s", "garp_master_repeat: 3", "garp_master_delay: 10s"},
		},
		{
			name: "global vrrp_version 3 and a sub-second interval",
			in: `global_defs {
    vrrp_version 3
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 7
    advert_int 0.05
    virtual_ipaddress {
        10.0.0.7
    }
}
`,
			want: []string{"advert_int: 50ms", "version: 3"},
		},
		{
			name: "VRRPv2 sub-second interval is rounded as keepalived does",
			in: `vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 7
    advert_int 0.5
    virtual_ipaddress {
        10.0.0.7
    }
}
`,
			want:      []string{"advert_int: 1s", "version: 2"},
			wantNotes: []string{"4: vrrp_instance VI_1: advert_int"},
		},
		{
			name: "IPv6 addresses make version 3, and authentication is dropped with v3",
			in: `vrrp_instance VI_6 {
    interface eth0
    virtual_router_id 7
    version 2
    authentication {
        auth_type PASS
        auth_pass secret
    }
    virtual_ipaddress {
        2001:db8::7/64
    }
}
`,
			want:      []string{"version: 3", "virtual_ipaddress: ['2001:db8::7/64']"},
			notWant:   []string{"auth_pass"},
			wantNotes: []string{"4: vrrp_instance VI_6: version 2", "5: vrrp_instance VI_6: authentication"},
		},
		{
			name: "long password truncated to keepalived's 8, numeric password quoted",
			in: `vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 7
    authentication {
        auth_type PASS
        auth_pass 1234567890
    }
    virtual_ipaddress {
        10.0.0.7
    }
}
`,
			want:      []string{`auth_pass: "12345678"`},
			wantNotes: []string{"4: vrrp_instance VI_1: authentication auth_pass"},
		},
		{
			name: "AH is not carried",
			in: `vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 7
    authentication {
        auth_type AH
        auth_pass secret
    }
    virtual_ipaddress {
        10.0.0.7
    }
}
`,
			notWant:   []string{"authentication"},
			wantNotes: []string{"4: vrrp_instance VI_1: authentication auth_type AH"},
		},
		{
			name: "unicast, TTL limits, mcast_src_ip",
			in: `vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 7
    mcast_src_ip 10.0.0.11
    unicast_peer {
        10.0.0.12 min_ttl 250
        10.0.0.13
    }
    virtual_ipaddress {
        10.0.0.7
    }
}
`,
			want: []string{"unicast_src_ip: 10.0.0.11", "unicast_peer: [10.0.0.12, 10.0.0.13]"},
			wantNotes: []string{
				"4: vrrp_instance VI_1: mcast_src_ip 10.0.0.11",
				"6: vrrp_instance VI_1: unicast_peer 10.0.0.12 min_ttl 250",
			},
		},
		{
			name: "notify commands with a user",
			in: `global_defs {
    enable_script_security
    script_user keepalived_script users
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 7
    virtual_ipaddress {
        10.0.0.7
    }
    notify_backup /etc/keepalived/backup.sh
    notify_fault "/etc/keepalived/fault.sh now" nobody
    notify_stop /etc/keepalived/stop.sh
    notify /etc/keepalived/all.sh
}
`,
			want: []string{
				"user: keepalived_script", "notify_backup: /etc/keepalived/backup.sh", "notify_fault: /etc/keepalived/fault.sh now",
				"notify_stop: /etc/keepalived/stop.sh", "notify: /etc/keepalived/all.sh",
			},
			wantNotes: []string{"3: script_user keepalived_script users", `12: vrrp_instance VI_1: notify_fault /etc/keepalived/fault.sh now nobody`},
		},
		{
			name: "track_interface: plain ones FAULT, weighted ones become interface checks shared across instances",
			in: `vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 7
    virtual_ipaddress {
        10.0.0.7
    }
    track_interface {
        eth1
        eth2 weight -10
        eth3 weight 5 reverse
    }
}
vrrp_instance VI_2 {
    interface eth0
    virtual_router_id 8
    virtual_ipaddress {
        10.0.0.8
    }
    track_interface {
        eth2 weight -20
    }
}
`,
			want: []string{
				"- name: if_eth2\n    interface: {name: eth2}\n    weight: -10",
				"- name: if_eth3\n    interface: {name: eth3}\n    weight: 5",
				"track: {if_eth2: -10, if_eth3: 5}", "track_interface: [eth1]", "track: {if_eth2: -20}",
			},
			notWant:   []string{"if_eth2_2"},
			wantNotes: []string{"10: vrrp_instance VI_1: track_interface eth3 weight 5 reverse"},
		},
		{
			name: "untracked and unknown scripts",
			in: `global_defs {
    enable_script_security
}
vrrp_script unused {
    script /bin/true
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 7
    virtual_ipaddress {
        10.0.0.7
    }
    track_script {
        missing
    }
}
`,
			notWant:   []string{"checks:", "track:"},
			wantNotes: []string{"4: vrrp_script unused", "14: vrrp_instance VI_1: track_script missing"},
		},
		{
			name: "script names made valid and kept clear of the built-in check",
			in: `global_defs {
    enable_script_security
}
vrrp_script haproxy {
    script "/usr/local/bin/haproxy-health --deep"
}
vrrp_script chk:web {
    script /bin/true
}
vrrp_script chk_web {
    script /bin/false
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 7
    virtual_ipaddress {
        10.0.0.7
    }
    track_script {
        haproxy
        chk:web
        chk_web
    }
}
`,
			want:      []string{"name: haproxy_script", "name: chk_web_2\n    script: {command: /bin/true}", "name: chk_web\n    script: {command: /bin/false}", "track: {haproxy_script: 0, chk_web_2: 0, chk_web: 0}"},
			wantNotes: []string{"4: vrrp_script haproxy", "7: vrrp_script chk:web"},
		},
		{
			name: "a track script the built-in check replaces, with a weight override",
			in: `vrrp_script chk_haproxy {
    script "killall -0 haproxy"
    interval 2
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 7
    virtual_ipaddress {
        10.0.0.7
    }
    track_script {
        chk_haproxy weight -50
    }
}
`,
			want:      []string{"haproxy:\n  command: /usr/sbin/haproxy", "track: {haproxy: -50}"},
			notWant:   []string{"checks:", "killall"},
			wantNotes: []string{"1: vrrp_script chk_haproxy"},
		},
		{
			name: "shell syntax is wrapped in /bin/sh -c",
			in: `global_defs {
    enable_script_security
}
vrrp_script chk_port {
    script "</dev/tcp/127.0.0.1/80"
}
vrrp_script chk_bash {
    script "bash -c '</dev/tcp/127.0.0.1/80'"
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 7
    virtual_ipaddress {
        10.0.0.7
    }
    track_script {
        chk_port
        chk_bash
    }
}
`,
			want:      []string{`command: /bin/sh -c "</dev/tcp/127.0.0.1/80"`, `command: bash -c "</dev/tcp/127.0.0.1/80"`},
			wantNotes: []string{"5: vrrp_script chk_port: script"},
		},
		{
			name: "blocks hapair has no use for",
			in: `global_defs {
    router_id lb1
    notification_email {
        ops@example.com
    }
    vrrp_strict
}
vrrp_sync_group G1 {
    group {
        VI_1
    }
}
virtual_server 10.0.0.7 80 {
    real_server 10.0.1.1 80 {
        weight 1
    }
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 7
    use_vmac
    dont_track_primary
    virtual_ipaddress {
        10.0.0.7
    }
    virtual_ipaddress_excluded {
        10.0.0.99
    }
    virtual_routes {
        10.1.0.0/16 via 10.0.0.1
    }
}
static_routes {
    10.2.0.0/16 via 10.0.0.1
}
`,
			want:    []string{"router_id: lb1", "dont_track_primary: true"},
			notWant: []string{"10.0.0.99", "10.1.0.0"},
			wantNotes: []string{
				"3: global_defs: notification_email", "6: global_defs: vrrp_strict", "8: vrrp_sync_group G1",
				"13: virtual_server 10.0.0.7 80", "21: vrrp_instance VI_1: use_vmac",
				"26: vrrp_instance VI_1: virtual_ipaddress_excluded", "29: vrrp_instance VI_1: virtual_routes", "33: static_routes",
			},
		},
		{
			name: "a keyword written twice: the last one wins, as in keepalived",
			in: `vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 7
    priority 100
    priority 120
    virtual_ipaddress {
        10.0.0.7
    }
}
`,
			want:      []string{"priority: 120"},
			notWant:   []string{"priority: 100"},
			wantNotes: []string{"5: vrrp_instance VI_1: priority: written twice"},
		},
		{
			name: "conditional lines are skipped",
			in: `vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 7
@high priority 150
@^high priority 100
    virtual_ipaddress {
        10.0.0.7
    }
}
`,
			notWant:   []string{"priority"},
			wantNotes: []string{"4: @high priority 150", "5: @^high priority 100"},
		},
		{
			name: "a backslash continues a line",
			in: `vrrp_script chk {
    script "/bin/check" \
        --fast
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 7
    virtual_ipaddress {
        10.0.0.7
    }
    track_script {
        chk
    }
}
global_defs {
    enable_script_security
}
`,
			want: []string{"command: /bin/check --fast"},
		},
		{
			name: "comment characters inside quotes and a YAML comment marker in a command",
			in: `global_defs {
    enable_script_security
}
vrrp_script chk {
    script "/bin/check #1 !two"
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 7
    virtual_ipaddress {
        10.0.0.7
    }
    track_script {
        chk
    }
}
`,
			want: []string{`/bin/check "#1" !two`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, notes := convertString(t, tt.in)
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			body := out[strings.Index(out, "\n"+firstKey(out)):] // past the header, which repeats the notes
			for _, w := range tt.notWant {
				if strings.Contains(body, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
			var got []string
			for _, n := range notes {
				got = append(got, n.String())
			}
			if len(got) != len(tt.wantNotes) {
				t.Errorf("%d notes, want %d:\n%s", len(got), len(tt.wantNotes), strings.Join(got, "\n"))
			}
			for i, w := range tt.wantNotes {
				if i < len(got) && !strings.HasPrefix(got[i], "keepalived.conf:"+w) && !strings.HasPrefix(got[i], "keepalived.conf: "+strings.TrimPrefix(w, "0: ")) {
					t.Errorf("note %d = %q, want it to start with %q", i, got[i], w)
				}
			}
			for _, n := range notes {
				if !strings.Contains(out, n.Why) {
					t.Errorf("the YAML header does not repeat the note %q", n.Why)
				}
			}
			parseConverted(t, out)
		})
	}
}

// firstKey returns the first top-level key of the YAML, past the comment header.
func firstKey(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, " ") {
			return l
		}
	}
	return ""
}

func TestConvertSyntaxErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"unterminated quote", "vrrp_script x {\n    script \"/bin/true\n}\n", "k.conf:2: unterminated double quote"},
		{"stray closing brace", "vrrp_instance VI_1 {\n}\n}\n", "k.conf:3: '}' without a matching '{'"},
		{"block never closed", "global_defs {\n    router_id x\nvrrp_instance VI_1 {\n    interface eth0\n}\n", "k.conf:1: the block of global_defs opened here is never closed"},
		{"brace without keyword", "{\n}\n", "k.conf:1: '{' without a keyword before it"},
		{"not UTF-8", "global_defs {\n    router_id lb\xf8\n}\n", "k.conf:2: not UTF-8 text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, notes, err := Convert(strings.NewReader(tt.in), "k.conf")
			var se *SyntaxError
			if !errors.As(err, &se) || err.Error() != tt.want {
				t.Errorf("err = %v, want SyntaxError %q", err, tt.want)
			}
			if out != nil || notes != nil {
				t.Errorf("output with a syntax error: %q %v", out, notes)
			}
		})
	}
}

func TestConvertInvalidResult(t *testing.T) {
	// keepalived -t refuses a VRID of 300 too; the YAML still comes back, with config's problems.
	in := "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 300\n    virtual_ipaddress {\n        10.0.0.7\n    }\n}\n"
	out, notes, err := Convert(strings.NewReader(in), "k.conf")
	var probs config.Problems
	if !errors.As(err, &probs) {
		t.Fatalf("err = %v, want wrapped config.Problems", err)
	}
	if !strings.Contains(err.Error(), "virtual_router_id is required") || out == nil {
		t.Errorf("err = %v, out = %q", err, out)
	}
	if len(notes) != 1 || notes[0].Line != 3 || !strings.Contains(notes[0].Why, "1..255") {
		t.Errorf("notes = %v, want the skipped virtual_router_id 300", notes)
	}
}

func TestIsHAProxyLiveness(t *testing.T) {
	tests := []struct {
		cmd  string
		want bool
	}{
		{"pgrep haproxy", true},
		{"/usr/bin/pgrep -x haproxy", true},
		{"pgrep -f ^haproxy$", true},
		{"killall -0 haproxy", true},
		{"/usr/bin/killall -q -0 haproxy", true},
		{"pkill -0 haproxy", true},
		{"killall -s 0 haproxy", true},
		{"pidof haproxy", true},
		{"/bin/pidof -s haproxy", true},
		{"systemctl is-active haproxy", true},
		{"systemctl is-active --quiet haproxy.service", true},
		{"killall haproxy", false}, // sends SIGTERM: a stop, not a check
		{"pkill haproxy", false},
		{"pgrep nginx", false},
		{"pgrep -u haproxy nginx", false},
		{"pgrep haproxy nginx", false},
		{"/usr/local/bin/check_haproxy.sh", false},
		{"systemctl restart haproxy", false},
		{"curl -sf http://127.0.0.1:8404/haproxy", false},
		{"haproxy", false},
	}
	for _, tt := range tests {
		argv, err := spawn.Split(tt.cmd)
		if err != nil {
			t.Fatal(err)
		}
		if got := isHAProxyLiveness(argv); got != tt.want {
			t.Errorf("isHAProxyLiveness(%q) = %v, want %v", tt.cmd, got, tt.want)
		}
	}
}

// TestKeepalivedSamples converts every sample Debian's keepalived package ships: none may be a
// syntax error, and those with VRRP instances must convert to a valid hapair file.
func TestKeepalivedSamples(t *testing.T) {
	samples, _ := filepath.Glob("/usr/share/doc/keepalived/samples/keepalived.conf.*")
	if len(samples) == 0 {
		t.Skip("keepalived's samples are not installed")
	}
	converted := 0
	for _, s := range samples {
		text, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		out, notes, err := Convert(strings.NewReader(string(text)), filepath.Base(s))
		var se *SyntaxError
		if errors.As(err, &se) {
			t.Errorf("%s: %v", s, err)
			continue
		}
		if !strings.Contains(string(text), "vrrp_instance") {
			continue
		}
		if err != nil {
			t.Errorf("%s: %v\n%s", s, err, out)
			continue
		}
		for _, n := range notes {
			if n.Why == "" || n.Keyword == "" {
				t.Errorf("%s: empty note %+v", s, n)
			}
		}
		converted++
	}
	if converted < 5 {
		t.Errorf("only %d samples with instances converted", converted)
	}
}

func FuzzConvert(f *testing.F) {
	for _, name := range []string{"loglb01.conf", "loglb02.conf"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("vrrp_instance x { virtual_ipaddress { 1.2.3.4 dev } track_script { a weight } }")
	f.Add("vrrp_script \"a\\\" { script \"\\\" }\n@x {\n}")
	f.Fuzz(func(t *testing.T, in string) {
		out, _, err := Convert(strings.NewReader(in), "fuzz.conf")
		var se *SyntaxError
		if errors.As(err, &se) {
			return
		}
		if out == nil {
			t.Fatalf("no output and err %v", err)
		}
		if err == nil {
			if _, perr := config.Parse(out, "fuzz.yaml", config.SkipInterfaceCheck()); perr != nil {
				t.Fatalf("Convert passed a file config.Parse refuses: %v\n%s", perr, out)
			}
		}
	})
}

// TestSeedIsValidKeepalived has keepalived itself check the seed files kept in testdata, in a
// network namespace of its own (unshare -n: it vanishes with the process) holding an eth0.
func TestSeedIsValidKeepalived(t *testing.T) {
	keepalived, err := exec.LookPath("keepalived")
	if err != nil {
		t.Skip("keepalived is not installed")
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("needs root for a network namespace")
		}
		t.Skip("needs root for a network namespace")
	}
	for _, name := range []string{"loglb01.conf", "loglb02.conf"} {
		abs, err := filepath.Abs(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		script := `ip link add eth0 type veth peer name eth0p && ip link set eth0 up && exec "$0" -t --log-console -D -f "$1"`
		cmd := exec.Command("unshare", "-n", "sh", "-c", script, keepalived, abs)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("keepalived -t %s: %v\n%s", name, err, out)
		}
	}
}
