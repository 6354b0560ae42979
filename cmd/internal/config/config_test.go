package config

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// fakeInterfaces stands in for net.InterfaceByName: eth0 and eth1 exist. The host's addresses and
// MTUs are left out (WithHostNetwork after it adds a fake host).
func fakeInterfaces() LoadOption {
	lookup := WithInterfaceLookup(func(name string) error {
		if name == "eth0" || name == "eth1" {
			return nil
		}
		return errors.New("no such network interface")
	})
	return func(o *options) {
		lookup(o)
		o.hostNetwork = nil
	}
}

func fakeHost() LoadOption {
	return WithHostname(func() (string, error) { return "testhost", nil })
}

// minimal is the smallest valid file; cases below change one thing in it or next to it.
const minimal = `vrrp_instances:
  - name: VI_1
    interface: eth0
    virtual_router_id: 51
    virtual_ipaddress: [10.0.0.10/24]
`

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string // substrings of the error, "t.yaml:LINE: key: message"
	}{
		{"unknown top-level key", "bogus: 1\n" + minimal,
			[]string{"t.yaml:1: bogus: unknown key"}},
		{"keepalived word gets a hint", minimal + "    nopreempt: true\n",
			[]string{"t.yaml:6: vrrp_instances[0].nopreempt: unknown key (hapair spells it preempt: false)"}},
		{"typo gets a suggestion", minimal + "    priorty: 100\n",
			[]string{"t.yaml:6: vrrp_instances[0].priorty: unknown key (did you mean priority?)"}},
		{"key written twice", minimal + "    interface: eth1\n",
			[]string{"t.yaml:6: vrrp_instances[0].interface: written twice (first at line 3)"}},
		{"vrid above 255", strings.Replace(minimal, "virtual_router_id: 51", "virtual_router_id: 300", 1),
			[]string{"t.yaml:4: vrrp_instances[0].virtual_router_id: 300 is outside 1..255"}},
		{"vrid zero", strings.Replace(minimal, "virtual_router_id: 51", "virtual_router_id: 0", 1),
			[]string{"t.yaml:4: vrrp_instances[0].virtual_router_id: 0 is outside 1..255"}},
		{"vrid missing", strings.Replace(minimal, "    virtual_router_id: 51\n", "", 1),
			[]string{"t.yaml:2: vrrp_instances[0]: virtual_router_id is required"}},
		{"vrid not a number", strings.Replace(minimal, "virtual_router_id: 51", "virtual_router_id: fifty", 1),
			[]string{`t.yaml:4: vrrp_instances[0].virtual_router_id: "fifty" is not a whole number`}},
		{"vrid empty", strings.Replace(minimal, "virtual_router_id: 51", "virtual_router_id:", 1),
			[]string{"t.yaml:4: vrrp_instances[0].virtual_router_id: needs a value"}},
		{"priority zero", minimal + "    priority: 0\n",
			[]string{"t.yaml:6: vrrp_instances[0].priority: 0 is outside 1..255"}},
		{"priority 256", minimal + "    priority: 256\n",
			[]string{"t.yaml:6: vrrp_instances[0].priority: 256 is outside 1..255"}},
		{"priority fraction", minimal + "    priority: 100.5\n",
			[]string{`t.yaml:6: vrrp_instances[0].priority: "100.5" is not a whole number`}},
		{"v2 sub-second advert_int", minimal + "    advert_int: 0.5\n",
			[]string{"t.yaml:6: vrrp_instances[0].advert_int: 500ms: VRRPv2 carries whole seconds 1..255"}},
		{"v2 advert_int above 255s", minimal + "    advert_int: 256s\n",
			[]string{"t.yaml:6: vrrp_instances[0].advert_int: 4m16s: VRRPv2 carries whole seconds 1..255"}},
		{"v3 advert_int below 10ms", minimal + "    version: 3\n    advert_int: 5ms\n",
			[]string{"t.yaml:7: vrrp_instances[0].advert_int: 5ms: VRRPv3 carries 10ms steps from 10ms to 40.95s"}},
		{"v3 advert_int not a 10ms step", minimal + "    version: 3\n    advert_int: 15ms\n",
			[]string{"t.yaml:7: vrrp_instances[0].advert_int: 15ms: VRRPv3 carries 10ms steps"}},
		{"v3 advert_int above 40.95s", minimal + "    version: 3\n    advert_int: 41s\n",
			[]string{"t.yaml:7: vrrp_instances[0].advert_int: 41s: VRRPv3 carries 10ms steps"}},
		{"advert_int zero", minimal + "    advert_int: 0\n",
			[]string{"t.yaml:6: vrrp_instances[0].advert_int: 0s: VRRPv2 carries whole seconds"}},
		{"version 4", minimal + "    version: 4\n",
			[]string{"t.yaml:6: vrrp_instances[0].version: 4 is outside 2..3"}},
		{"password over 8 characters", minimal + "    authentication: {auth_type: PASS, auth_pass: 1a2b3c4d5e}\n",
			[]string{"t.yaml:6: vrrp_instances[0].authentication.auth_pass: is 10 characters long: VRRPv2 carries at most 8"}},
		{"empty password", minimal + "    authentication: {auth_type: PASS, auth_pass: \"\"}\n",
			[]string{"t.yaml:6: vrrp_instances[0].authentication.auth_pass: is empty"}},
		{"password missing", minimal + "    authentication:\n      auth_type: PASS\n",
			[]string{"t.yaml:6: vrrp_instances[0].authentication: auth_pass is required"}},
		{"AH refused", minimal + "    authentication:\n      auth_type: AH\n      auth_pass: secret\n",
			[]string{"t.yaml:7: vrrp_instances[0].authentication.auth_type: AH is not supported by hapair"}},
		{"unknown auth type", minimal + "    authentication:\n      auth_type: MD5\n      auth_pass: secret\n",
			[]string{`t.yaml:7: vrrp_instances[0].authentication.auth_type: "MD5" is not PASS`}},
		{"authentication with v3", minimal + "    version: 3\n    authentication: {auth_pass: secret}\n",
			[]string{"t.yaml:7: vrrp_instances[0].authentication: VRRPv3 (RFC 5798) has no authentication"}},
		{"unknown interface", strings.Replace(minimal, "interface: eth0", "interface: eth9", 1),
			[]string{`t.yaml:3: vrrp_instances[0].interface: interface "eth9" does not exist on this host`}},
		{"interface missing", strings.Replace(minimal, "    interface: eth0\n", "", 1),
			[]string{"t.yaml:2: vrrp_instances[0]: interface is required"}},
		{"unknown track_interface", minimal + "    track_interface: [eth1, wlan7]\n",
			[]string{`t.yaml:6: vrrp_instances[0].track_interface: interface "wlan7" does not exist`}},
		{"VIP not an address", strings.Replace(minimal, "[10.0.0.10/24]", "[10.0.0.10/24, vip.example]", 1),
			[]string{`t.yaml:5: vrrp_instances[0].virtual_ipaddress: "vip.example" is not an address or address/prefix`}},
		{"VIP bad prefix", strings.Replace(minimal, "[10.0.0.10/24]", "[10.0.0.10/33]", 1),
			[]string{`"10.0.0.10/33" is not an address or address/prefix`}},
		{"VIP families mixed", minimal[:len(minimal)-len("[10.0.0.10/24]\n")] + "\n      - 10.0.0.10/24\n      - 2001:db8::10/64\n" + "    version: 3\n",
			[]string{"t.yaml:7: vrrp_instances[0].virtual_ipaddress: 10.0.0.10 and 2001:db8::10: the addresses of one instance are all IPv4 or all IPv6"}},
		{"IPv6 VIP needs v3", strings.Replace(minimal, "[10.0.0.10/24]", "[2001:db8::10/64]", 1),
			[]string{"t.yaml:5: vrrp_instances[0].virtual_ipaddress: 2001:db8::10: IPv6 needs version: 3"}},
		{"VIP listed twice", strings.Replace(minimal, "[10.0.0.10/24]", "[10.0.0.10/24, 10.0.0.10/32]", 1),
			[]string{"10.0.0.10 is listed twice"}},
		{"multicast VIP", strings.Replace(minimal, "[10.0.0.10/24]", "[224.0.0.18]", 1),
			[]string{"224.0.0.18 cannot be a virtual address"}},
		{"no VIP", strings.Replace(minimal, "[10.0.0.10/24]", "[]", 1),
			[]string{"t.yaml:5: vrrp_instances[0].virtual_ipaddress: at least one virtual address is required"}},
		{"VIP key missing", strings.Replace(minimal, "    virtual_ipaddress: [10.0.0.10/24]\n", "", 1),
			[]string{"t.yaml:2: vrrp_instances[0].virtual_ipaddress: at least one virtual address is required"}},
		{"duplicate instance names", minimal + strings.Replace(minimal[len("vrrp_instances:\n"):], "51", "52", 1),
			[]string{`t.yaml:6: vrrp_instances[1].name: "VI_1" is already the name of the instance at line 2`}},
		{"duplicate VRID on an interface", minimal + strings.NewReplacer("VI_1", "VI_2", "10.0.0.10/24", "10.0.0.20/24").Replace(minimal[len("vrrp_instances:\n"):]),
			[]string{"t.yaml:8: vrrp_instances[1].virtual_router_id: 51 is already used by instance VI_1 on eth0 (IPv4)"}},
		{"unicast_src_ip family", minimal + "    unicast_src_ip: 2001:db8::11\n",
			[]string{"t.yaml:6: vrrp_instances[0].unicast_src_ip: 2001:db8::11 is IPv6 but the virtual addresses are IPv4"}},
		{"unicast_src_ip not an address", minimal + "    unicast_src_ip: lb1\n",
			[]string{`t.yaml:6: vrrp_instances[0].unicast_src_ip: "lb1" is not an IP address`}},
		{"unicast peer problems", minimal + "    unicast_src_ip: 10.0.0.11\n    unicast_peer:\n      - 10.0.0.12\n      - 10.0.0.12\n      - 10.0.0.11\n      - peer\n      - 2001:db8::1\n",
			[]string{
				"t.yaml:9: vrrp_instances[0].unicast_peer: 10.0.0.12 is listed twice",
				"t.yaml:10: vrrp_instances[0].unicast_peer: 10.0.0.11 is this router's own unicast_src_ip",
				`t.yaml:11: vrrp_instances[0].unicast_peer: "peer" is not an IP address`,
				"t.yaml:12: vrrp_instances[0].unicast_peer: 2001:db8::1 is IPv6 but the virtual addresses are IPv4",
			}},
		{"track names a missing check", minimal + "    track: {haproxy_stats: -20}\n",
			[]string{`t.yaml:6: vrrp_instances[0].track.haproxy_stats: no check is named "haproxy_stats" (no checks are defined)`}},
		{"track haproxy without the haproxy section", minimal + "    track: [haproxy]\n",
			[]string{"t.yaml:6: vrrp_instances[0].track.haproxy: the built-in haproxy check needs the haproxy section"}},
		{"track weight out of range", "haproxy: {}\n" + minimal + "    track: {haproxy: -300}\n",
			[]string{"t.yaml:7: vrrp_instances[0].track.haproxy: -300 is outside -253..253"}},
		{"state neither", minimal + "    state: ACTIVE\n",
			[]string{`t.yaml:6: vrrp_instances[0].state: "ACTIVE" is neither MASTER nor BACKUP`}},
		{"preempt not a bool", minimal + "    preempt: maybe\n",
			[]string{`t.yaml:6: vrrp_instances[0].preempt: "maybe" is not true or false`}},
		{"preempt_delay above 1000s", minimal + "    preempt_delay: 1001\n",
			[]string{"t.yaml:6: vrrp_instances[0].preempt_delay: 16m41s is outside 0..1000s"}},
		{"negative duration", minimal + "    garp_master_delay: -5s\n",
			[]string{`t.yaml:6: vrrp_instances[0].garp_master_delay: "-5s": is negative`}},
		{"duration garbage", minimal + "    garp_master_delay: soon\n",
			[]string{`t.yaml:6: vrrp_instances[0].garp_master_delay: "soon": not a duration`}},
		{"garp_master_repeat zero", minimal + "    garp_master_repeat: 0\n",
			[]string{"t.yaml:6: vrrp_instances[0].garp_master_repeat: 0 is outside 1..255"}},
		{"checksum unknown", minimal + "    checksum: cisco\n",
			[]string{`t.yaml:6: vrrp_instances[0].checksum: "cisco" is neither keepalived nor rfc9568`}},
		{"no instances", "router_id: lb\n",
			[]string{"t.yaml: vrrp_instances: at least one VRRP instance is required"}},
		{"empty file", "",
			[]string{"t.yaml: vrrp_instances: at least one VRRP instance is required"}},
		{"instances not a list", "vrrp_instances:\n  VI_1: {}\n",
			[]string{"t.yaml:1: vrrp_instances: must be a list (entries starting with -), not a mapping"}},
		{"YAML syntax error", minimal + "    priority: [100\n",
			[]string{"t.yaml:6: YAML syntax: did not find expected ',' or ']'"}},
		{"tab indentation", "vrrp_instances:\n\t- name: x\n",
			[]string{"t.yaml:2: YAML syntax: found character that cannot start any token"}},
		{"two documents", minimal + "---\n" + minimal,
			[]string{"t.yaml:6: a second YAML document"}},
		{"anchors on an unknown key still name the key", "x: &a 1\n" + minimal,
			[]string{"t.yaml:1: x: unknown key"}},
		{"alias value refused", minimal + "    priority: &p 100\n    garp_master_repeat: *p\n",
			[]string{"t.yaml:7: vrrp_instances[0].garp_master_repeat: YAML aliases (*p) are not supported"}},
		{"check without probe", "checks:\n  - name: c1\n" + minimal,
			[]string{"t.yaml:2: checks[0]: needs one probe: http, script, tcp or interface"}},
		{"check with two probes", "checks:\n  - name: c1\n    tcp: {address: \"127.0.0.1:80\"}\n    script: {command: /bin/true}\n" + minimal,
			[]string{"t.yaml:4: checks[0]: has script and tcp: a check has exactly one probe"}},
		{"check named haproxy", "checks:\n  - name: haproxy\n    tcp: {address: \"127.0.0.1:80\"}\n" + minimal,
			[]string{`t.yaml:2: checks[0].name: "haproxy" is the built-in HAProxy liveness check`}},
		{"check name characters", "checks:\n  - name: my check\n    tcp: {address: \"127.0.0.1:80\"}\n" + minimal,
			[]string{`t.yaml:2: checks[0].name: "my check" may hold only letters, digits, _ . and -`}},
		{"check without name", "checks:\n  - tcp: {address: \"127.0.0.1:80\"}\n" + minimal,
			[]string{"t.yaml:2: checks[0]: name is required"}},
		{"duplicate check names", "checks:\n  - name: c\n    tcp: {address: \"127.0.0.1:80\"}\n  - name: c\n    tcp: {address: \"127.0.0.1:81\"}\n" + minimal,
			[]string{`t.yaml:4: checks[1].name: "c" is already the name of the check at line 2`}},
		{"check weight out of range", "checks:\n  - name: c\n    weight: 254\n    tcp: {address: \"127.0.0.1:80\"}\n" + minimal,
			[]string{"t.yaml:3: checks[0].weight: 254 is outside -253..253"}},
		{"check fall zero", "checks:\n  - name: c\n    fall: 0\n    tcp: {address: \"127.0.0.1:80\"}\n" + minimal,
			[]string{"t.yaml:3: checks[0].fall: 0 is outside 1..1000"}},
		{"check interval zero", "checks:\n  - name: c\n    interval: 0s\n    tcp: {address: \"127.0.0.1:80\"}\n" + minimal,
			[]string{"t.yaml:3: checks[0].interval: 0s is shorter than 10ms"}},
		{"check timeout zero", "checks:\n  - name: c\n    timeout: 0\n    tcp: {address: \"127.0.0.1:80\"}\n" + minimal,
			[]string{"t.yaml:3: checks[0].timeout: must be longer than 0"}},
		{"http URL scheme", "checks:\n  - name: c\n    http: {url: \"ftp://127.0.0.1/\"}\n" + minimal,
			[]string{`t.yaml:3: checks[0].http.url: "ftp://127.0.0.1/": only http and https URLs can be checked`}},
		{"http URL missing", "checks:\n  - name: c\n    http: {expect_status: 200}\n" + minimal,
			[]string{"t.yaml:3: checks[0].http.url: needs the URL to get"}},
		{"http status out of range", "checks:\n  - name: c\n    http: {url: \"http://127.0.0.1/\", expect_status: 700}\n" + minimal,
			[]string{"t.yaml:3: checks[0].http.expect_status: 700 is outside 100..599"}},
		{"http backend count", "checks:\n  - name: c\n    http:\n      url: \"http://127.0.0.1/\"\n      backends: {be: 0}\n" + minimal,
			[]string{"t.yaml:5: checks[0].http.backends.be: 0 is outside 1..100000"}},
		{"http unknown key", "checks:\n  - name: c\n    http:\n      url: \"http://127.0.0.1/\"\n      frontend: [fe]\n" + minimal,
			[]string{"t.yaml:5: checks[0].http.frontend: unknown key (did you mean frontends?)"}},
		{"tcp address without port", "checks:\n  - name: c\n    tcp: {address: 127.0.0.1}\n" + minimal,
			[]string{`t.yaml:3: checks[0].tcp.address: "127.0.0.1": not host:port`}},
		{"script unterminated quote", "checks:\n  - name: c\n    script: {command: '/bin/check \"arg'}\n" + minimal,
			[]string{"t.yaml:3: checks[0].script.command: unterminated double quote"}},
		{"script without command", "checks:\n  - name: c\n    script: {user: nobody}\n" + minimal,
			[]string{"t.yaml:3: checks[0].script.command: needs the command to run"}},
		{"interface check on a missing link", "checks:\n  - name: c\n    interface: {name: eth7}\n" + minimal,
			[]string{`t.yaml:3: checks[0].interface.name: interface "eth7" does not exist`}},
		{"haproxy backoff max below initial", "haproxy:\n  restart_backoff: {initial: 5s, max: 1s}\n" + minimal,
			[]string{"t.yaml:2: haproxy.restart_backoff.max: 1s is shorter than initial (5s)"}},
		{"haproxy relative runtime_dir", "haproxy:\n  runtime_dir: run/hapair\n" + minimal,
			[]string{`t.yaml:2: haproxy.runtime_dir: "run/hapair" is not an absolute path`}},
		{"vrrp_rt_priority above 99", "vrrp_rt_priority: 100\n" + minimal,
			[]string{"t.yaml:1: vrrp_rt_priority: 100 is outside 0..99"}},
		{"relative runtime_dir", "runtime_dir: run/hapair\n" + minimal,
			[]string{`t.yaml:1: runtime_dir: "run/hapair" is not an absolute path`}},
		{"haproxy section not a mapping", "haproxy: /usr/sbin/haproxy\n" + minimal,
			[]string{`t.yaml:1: haproxy: must be a mapping (key: value), not "/usr/sbin/haproxy"`}},
		{"status listen without port", "status: {listen: localhost}\n" + minimal,
			[]string{`t.yaml:1: status.listen: "localhost": not host:port`}},
		{"notify timeout zero", "notify: {timeout: 0}\n" + minimal,
			[]string{"t.yaml:1: notify.timeout: must be longer than 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.yaml), "t.yaml", fakeInterfaces(), fakeHost())
			if err == nil {
				t.Fatalf("Parse accepted:\n%s\ngot %+v", tt.yaml, cfg)
			}
			if cfg != nil {
				t.Errorf("Parse returned a configuration with its error")
			}
			var probs Problems
			if !errors.As(err, &probs) {
				t.Fatalf("error is %T, want Problems", err)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not contain %q:\n%v", want, err)
				}
			}
		})
	}
}

func TestParseReportsEveryProblemInLineOrder(t *testing.T) {
	in := `router_id: lb
vrrp_instances:
  - name: VI_1
    interface: eth0
    virtual_router_id: 300
    priority: 0
    virtual_ipaddress: [10.0.0.10/24]
    track: [nothing]
bogus: true
`
	_, err := Parse([]byte(in), "t.yaml", fakeInterfaces())
	var probs Problems
	if !errors.As(err, &probs) {
		t.Fatalf("err = %v, want Problems", err)
	}
	var got []string
	for _, p := range probs {
		got = append(got, fmt.Sprintf("%d %s", p.Line, p.Key))
	}
	want := []string{
		"5 vrrp_instances[0].virtual_router_id",
		"6 vrrp_instances[0].priority",
		"8 vrrp_instances[0].track.nothing",
		"9 bogus",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems at %q, want %q\n%v", got, want, err)
	}
	if lines := strings.Count(err.Error(), "\n") + 1; lines != len(want) {
		t.Errorf("Error() has %d lines, want one per problem:\n%v", lines, err)
	}
}

func TestDefaults(t *testing.T) {
	cfg, err := Parse([]byte("haproxy:\n"+minimal), "t.yaml", fakeInterfaces(), fakeHost())
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RouterID != "testhost" {
		t.Errorf("RouterID = %q, want the hostname", cfg.RouterID)
	}
	wantHAProxy := &HAProxy{
		Command: "/usr/sbin/haproxy", Config: "/etc/haproxy/haproxy.cfg", RuntimeDir: "/run/hapair",
		StopGrace:      10 * time.Second,
		RestartBackoff: Backoff{Initial: 500 * time.Millisecond, Max: 30 * time.Second, ResetAfter: 30 * time.Second},
	}
	if !reflect.DeepEqual(cfg.HAProxy, wantHAProxy) {
		t.Errorf("HAProxy = %+v, want %+v", cfg.HAProxy, wantHAProxy)
	}
	want := Instance{
		Name: "VI_1", Interface: "eth0", State: StateBackup, VRID: 51, Priority: 100,
		AdvertInt: time.Second, Version: 2, Preempt: true,
		VIPs:             []netip.Prefix{netip.MustParsePrefix("10.0.0.10/24")},
		Track:            map[string]int{},
		GARPMasterRepeat: 5, GARPMasterDelay: 5 * time.Second,
		Checksum: ChecksumKeepalived, FastFailover: true,
	}
	if !reflect.DeepEqual(cfg.Instances[0], want) {
		t.Errorf("instance =\n%+v, want\n%+v", cfg.Instances[0], want)
	}
	if want := (Notify{Timeout: 10 * time.Second, ScriptSecurity: true}); cfg.Notify != want {
		t.Errorf("Notify = %+v, want %+v", cfg.Notify, want)
	}
	if want := (Status{Listen: "127.0.0.1:9479", DumpFile: "/run/hapair/hapair.data"}); cfg.Status != want {
		t.Errorf("Status = %+v, want %+v", cfg.Status, want)
	}
	if len(cfg.Warnings) != 0 {
		t.Errorf("warnings on the minimal file: %v", cfg.Warnings)
	}

	noHAProxy, err := Parse([]byte(minimal), "t.yaml", fakeInterfaces())
	if err != nil {
		t.Fatal(err)
	}
	if noHAProxy.HAProxy != nil {
		t.Errorf("without a haproxy section HAProxy = %+v, want nil (VRRP alone)", noHAProxy.HAProxy)
	}
	if noHAProxy.RuntimeDir != "/run/hapair" {
		t.Errorf("RuntimeDir = %q, want /run/hapair", noHAProxy.RuntimeDir)
	}
}

// TestRuntimeDirs: hapair's own runtime_dir and HAProxy's follow each other when only one is given.
func TestRuntimeDirs(t *testing.T) {
	for _, tc := range []struct {
		name, yaml      string
		own, haproxyDir string
	}{
		{"neither", "haproxy:\n", "/run/hapair", "/run/hapair"},
		{"top level only", "runtime_dir: /run/a\nhaproxy:\n", "/run/a", "/run/a"},
		{"haproxy only", "haproxy:\n  runtime_dir: /run/b\n", "/run/b", "/run/b"},
		{"both", "runtime_dir: /run/a\nhaproxy:\n  runtime_dir: /run/b\n", "/run/a", "/run/b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tc.yaml+minimal), "t.yaml", fakeInterfaces())
			if err != nil {
				t.Fatal(err)
			}
			if cfg.RuntimeDir != tc.own || cfg.HAProxy.RuntimeDir != tc.haproxyDir {
				t.Errorf("runtime_dir %q, haproxy.runtime_dir %q; want %q, %q", cfg.RuntimeDir, cfg.HAProxy.RuntimeDir, tc.own, tc.haproxyDir)
			}
		})
	}
}

func TestCheckDefaults(t *testing.T) {
	in := `checks:
  - name: fast
    interval: 200ms
    tcp: {address: "127.0.0.1:80"}
  - name: plain
    script: {command: /bin/true}
notify: {user: nobody}
` + minimal + "    track: [fast, plain]\n"
	cfg, err := Parse([]byte(in), "t.yaml", fakeInterfaces())
	if err != nil {
		t.Fatal(err)
	}
	fast, plain := cfg.Checks[0], cfg.Checks[1]
	if fast.Timeout != 200*time.Millisecond {
		t.Errorf("timeout with a 200ms interval = %v, want the interval", fast.Timeout)
	}
	if plain.Interval != 2*time.Second || plain.Timeout != time.Second || plain.Fall != 1 || plain.Rise != 1 || plain.Weight != 0 {
		t.Errorf("plain check = %+v, want interval 2s, timeout 1s, fall 1, rise 1, weight 0", plain)
	}
	if plain.Script.User != "nobody" {
		t.Errorf("script user = %q, want notify.user", plain.Script.User)
	}
	if plain.Kind() != "script" || fast.Kind() != "tcp" {
		t.Errorf("kinds = %s, %s", plain.Kind(), fast.Kind())
	}
	if want := map[string]int{"fast": 0, "plain": 0}; !reflect.DeepEqual(cfg.Instances[0].Track, want) {
		t.Errorf("track = %v, want %v (listed checks keep their own weight)", cfg.Instances[0].Track, want)
	}
}

func TestDurationForms(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"1s", time.Second},
		{"250ms", 250 * time.Millisecond},
		{"1", time.Second},
		{"0.1", 100 * time.Millisecond},
		{`"0.05"`, 50 * time.Millisecond},
		{"1.5s", 1500 * time.Millisecond},
		{"2m", 2 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			in := minimal + "    version: 3\n    garp_master_delay: " + tt.in + "\n"
			cfg, err := Parse([]byte(in), "t.yaml", fakeInterfaces())
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Instances[0].GARPMasterDelay; got != tt.want {
				t.Errorf("%s = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestVersion3AcceptsShortIntervalsAndIPv6(t *testing.T) {
	in := `vrrp_instances:
  - name: VI_6
    interface: eth0
    version: 3
    advert_int: 0.05
    virtual_router_id: 7
    virtual_ipaddress: ["fe80::7", 2001:db8::7/64]
    unicast_peer: ["2001:db8::12"]
  - name: VI_4
    interface: eth0
    version: 3
    advert_int: 40.95
    virtual_router_id: 7
    virtual_ipaddress: 10.0.0.7
    checksum: rfc9568
`
	cfg, err := Parse([]byte(in), "t.yaml", fakeInterfaces())
	if err != nil {
		t.Fatal(err)
	}
	v6, v4 := cfg.Instances[0], cfg.Instances[1]
	if v6.AdvertInt != 50*time.Millisecond || v6.Family() != 6 || len(v6.VIPs) != 2 || v6.VIPs[0].Bits() != 128 {
		t.Errorf("VI_6 = %+v", v6)
	}
	if v4.Family() != 4 || v4.VIPs[0] != netip.MustParsePrefix("10.0.0.7/32") || v4.Checksum != ChecksumRFC9568 {
		t.Errorf("VI_4 = %+v (a bare address is a /32)", v4)
	}
}

func TestWarnings(t *testing.T) {
	in := `checks:
  - name: slow
    interval: 1s
    timeout: 3s
    tcp: {address: "127.0.0.1:80"}
` + minimal + `    state: MASTER
    preempt: false
    checksum: rfc9568
    track: {slow: -10}
`
	cfg, err := Parse([]byte(in), "t.yaml", fakeInterfaces())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"t.yaml:4: checks[0].timeout: 3s is longer than the interval (1s)",
		"t.yaml:12: vrrp_instances[0].preempt: false with state MASTER",
		"t.yaml:13: vrrp_instances[0].checksum: rfc9568 only changes VRRPv3",
	}
	got := cfg.Warnings.Error()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("warnings lack %q:\n%s", w, got)
		}
	}
	if cfg.Instances[0].Track["slow"] != -10 {
		t.Errorf("track weight = %d, want the override -10", cfg.Instances[0].Track["slow"])
	}
}

// full uses every key of the schema.
const full = `router_id: lb-full
haproxy:
  command: /opt/haproxy/sbin/haproxy
  config: /etc/haproxy/logs.cfg
  runtime_dir: /run/hapair-logs
  stop_grace: 20s
  restart_backoff: {initial: 1s, max: 1m, reset_after: 2m}
checks:
  - name: haproxy_stats
    interval: 3s
    timeout: 2s
    fall: 3
    rise: 4
    weight: -30
    http:
      url: "http://127.0.0.1:8404/stats;csv"
      expect_status: 200
      frontends: [fe_logs, fe_beats]
      backends: {be_logs: 2}
  - name: custom
    weight: 5
    script: {command: "/usr/local/bin/check.sh 'two words'", user: nobody}
  - name: port
    tcp: {address: "127.0.0.1:5044"}
  - name: uplink
    interface: {name: eth1}
vrrp_instances:
  - name: VI_LOGS
    interface: eth0
    state: master
    virtual_router_id: 51
    priority: 110
    advert_int: 2
    version: 2
    preempt: true
    preempt_delay: 30s
    authentication: {auth_type: pass, auth_pass: 12345678}
    virtual_ipaddress: [10.0.0.10/24, 10.0.0.20]
    unicast_src_ip: 10.0.0.11
    unicast_peer: [10.0.0.12, 10.0.0.13]
    track: {haproxy: -20, haproxy_stats: null, custom: 10, port: -5}
    track_interface: [eth1]
    dont_track_primary: false
    garp_master_repeat: 3
    garp_master_delay: 0
    checksum: keepalived
    fast_failover: false
    notify_master: /etc/hapair/notify.sh master
    notify_backup: /etc/hapair/notify.sh backup
    notify_fault: /etc/hapair/notify.sh fault
    notify_stop: /etc/hapair/notify.sh stop
    notify: /etc/hapair/notify.sh
notify:
  user: hapair
  timeout: 5s
  script_security: false
status:
  listen: "[::1]:9479"
  keepalived_compat: true
  dump_file: /run/hapair/state.txt
`

func TestParseFull(t *testing.T) {
	cfg, err := Parse([]byte(full), "full.yaml", fakeInterfaces())
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		File:       "full.yaml",
		RouterID:   "lb-full",
		RuntimeDir: "/run/hapair-logs", // follows haproxy.runtime_dir
		HAProxy: &HAProxy{
			Command: "/opt/haproxy/sbin/haproxy", Config: "/etc/haproxy/logs.cfg", RuntimeDir: "/run/hapair-logs",
			StopGrace:      20 * time.Second,
			RestartBackoff: Backoff{Initial: time.Second, Max: time.Minute, ResetAfter: 2 * time.Minute},
		},
		Checks: []CheckConfig{
			{Name: "haproxy_stats", Interval: 3 * time.Second, Timeout: 2 * time.Second, Fall: 3, Rise: 4, Weight: -30,
				HTTP: &HTTPCheck{URL: "http://127.0.0.1:8404/stats;csv", ExpectStatus: 200,
					Frontends: []string{"fe_logs", "fe_beats"}, Backends: map[string]int{"be_logs": 2}}},
			{Name: "custom", Interval: 2 * time.Second, Timeout: time.Second, Fall: 1, Rise: 1, Weight: 5,
				Script: &ScriptCheck{Command: "/usr/local/bin/check.sh 'two words'", User: "nobody"}},
			{Name: "port", Interval: 2 * time.Second, Timeout: time.Second, Fall: 1, Rise: 1,
				TCP: &TCPCheck{Address: "127.0.0.1:5044"}},
			{Name: "uplink", Interval: 2 * time.Second, Timeout: time.Second, Fall: 1, Rise: 1,
				Interface: &InterfaceCheck{Name: "eth1"}},
		},
		Instances: []Instance{{
			Name: "VI_LOGS", Interface: "eth0", State: StateMaster, VRID: 51, Priority: 110,
			AdvertInt: 2 * time.Second, Version: 2, Preempt: true, PreemptDelay: 30 * time.Second,
			Authentication:  &Authentication{Type: "PASS", Pass: "12345678"},
			VIPs:            []netip.Prefix{netip.MustParsePrefix("10.0.0.10/24"), netip.MustParsePrefix("10.0.0.20/32")},
			UnicastSrcIP:    netip.MustParseAddr("10.0.0.11"),
			UnicastPeers:    []netip.Addr{netip.MustParseAddr("10.0.0.12"), netip.MustParseAddr("10.0.0.13")},
			Track:           map[string]int{"haproxy": -20, "haproxy_stats": -30, "custom": 10, "port": -5},
			TrackInterfaces: []string{"eth1"}, GARPMasterRepeat: 3, GARPMasterDelay: 0,
			Checksum: ChecksumKeepalived, FastFailover: false,
			Notify: InstanceNotify{
				Master: "/etc/hapair/notify.sh master", Backup: "/etc/hapair/notify.sh backup",
				Fault: "/etc/hapair/notify.sh fault", Stop: "/etc/hapair/notify.sh stop", All: "/etc/hapair/notify.sh",
			},
		}},
		Notify: Notify{User: "hapair", Timeout: 5 * time.Second, ScriptSecurity: false},
		Status: Status{Listen: "[::1]:9479", KeepalivedCompat: true, DumpFile: "/run/hapair/state.txt"},
	}
	cfg.lines = nil
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Parse(full) =\n%+v\nwant\n%+v", cfg, want)
		for i := range min(len(cfg.Checks), len(want.Checks)) {
			if !reflect.DeepEqual(cfg.Checks[i], want.Checks[i]) {
				t.Errorf("check %d: %+v, want %+v", i, cfg.Checks[i], want.Checks[i])
			}
		}
		if len(cfg.Instances) == 1 && !reflect.DeepEqual(cfg.Instances[0], want.Instances[0]) {
			t.Errorf("instance: %+v\nwant %+v", cfg.Instances[0], want.Instances[0])
		}
	}
}

func TestConfigLine(t *testing.T) {
	cfg, err := Parse([]byte(full), "full.yaml", fakeInterfaces())
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]int{
		"router_id":                           1,
		"haproxy.stop_grace":                  6,
		"vrrp_instances[0].priority":          32,
		"vrrp_instances[0].virtual_router_id": 31,
		"vrrp_instances[0].checksum":          46,
		"checks[1]":                           20,
		"status.dump_file":                    60,
		"vrrp_instances[0].notify_never_set":  28, // unwritten: the instance's line
	} {
		if got := cfg.Line(key); got != want {
			t.Errorf("Line(%q) = %d, want %d", key, got, want)
		}
	}
}

func TestExamplesLoad(t *testing.T) {
	for _, ex := range []struct {
		file     string
		routerID string
		state    State
		priority uint8
	}{
		{"../../../deploy/examples/loglb01.yaml", "loglb01", StateMaster, 110},
		{"../../../deploy/examples/loglb02.yaml", "loglb02", StateBackup, 100},
	} {
		t.Run(ex.routerID, func(t *testing.T) {
			cfg, err := Load(ex.file, SkipInterfaceCheck())
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.Warnings) > 0 {
				t.Errorf("warnings: %v", cfg.Warnings)
			}
			in := cfg.Instances[0]
			if cfg.RouterID != ex.routerID || in.State != ex.state || in.Priority != ex.priority {
				t.Errorf("router_id %s state %s priority %d, want %s %s %d", cfg.RouterID, in.State, in.Priority, ex.routerID, ex.state, ex.priority)
			}
			if in.Name != "VI_LOGS" || in.Interface != "eth0" || in.VRID != 51 || in.AdvertInt != time.Second || in.Version != 2 {
				t.Errorf("instance = %+v, want the seed's VI_LOGS on eth0, VRID 51, advert_int 1, v2", in)
			}
			if !reflect.DeepEqual(in.VIPs, []netip.Prefix{netip.MustParsePrefix("10.0.0.10/24")}) {
				t.Errorf("VIPs = %v, want 10.0.0.10/24", in.VIPs)
			}
			if in.Authentication == nil || *in.Authentication != (Authentication{Type: "PASS", Pass: "1a2b3c4d"}) {
				t.Errorf("authentication = %+v, want PASS 1a2b3c4d", in.Authentication)
			}
			if cfg.HAProxy == nil {
				t.Fatal("no haproxy section")
			}
			if want := map[string]int{"haproxy": -20, "haproxy_stats": -20}; !reflect.DeepEqual(in.Track, want) {
				t.Errorf("track = %v, want %v", in.Track, want)
			}
			if len(cfg.Checks) != 1 || cfg.Checks[0].HTTP == nil || cfg.Checks[0].Name != "haproxy_stats" {
				t.Errorf("checks = %+v, want the haproxy_stats HTTP check", cfg.Checks)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load("/nonexistent/hapair.yaml")
	if err == nil || err.Error() != "/nonexistent/hapair.yaml: read configuration: no such file or directory" {
		t.Errorf("err = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte(full))
	f.Add([]byte("vrrp_instances: [{name: x, virtual_ipaddress: [::1/200]}]"))
	f.Add([]byte("a: &a [*a, *a]\nb: *a"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "fuzz.yaml", SkipInterfaceCheck(), fakeHost())
		if err != nil {
			var probs Problems
			if !errors.As(err, &probs) || len(probs) == 0 {
				t.Fatalf("error %T %v is not a non-empty Problems", err, err)
			}
			return
		}
		if len(cfg.Instances) == 0 {
			t.Fatal("accepted a file without instances")
		}
		for _, in := range cfg.Instances {
			if in.VRID == 0 || in.Priority == 0 || len(in.VIPs) == 0 {
				t.Fatalf("accepted an invalid instance %+v", in)
			}
		}
	})
}
