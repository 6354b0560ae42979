package config

import (
	"reflect"
	"strings"
	"testing"
)

func TestReloadable(t *testing.T) {
	tests := []struct {
		name        string
		edit        func(string) string
		changes     []string
		needRestart []string
	}{
		{name: "nothing", edit: func(s string) string { return s }},
		{name: "priority",
			edit:    func(s string) string { return strings.Replace(s, "priority: 110", "priority: 120", 1) },
			changes: []string{"vrrp_instances[VI_LOGS].priority: 110 -> 120"}},
		{name: "real-time priority set",
			edit:    func(s string) string { return "vrrp_rt_priority: 10\n" + s },
			changes: []string{"vrrp_rt_priority: 0 -> 10"}},
		{name: "VIPs and track weight",
			edit: func(s string) string {
				s = strings.Replace(s, "[10.0.0.10/24, 10.0.0.20]", "[10.0.0.10/24]", 1)
				return strings.Replace(s, "custom: 10", "custom: 20", 1)
			},
			changes: []string{
				"vrrp_instances[VI_LOGS].virtual_ipaddress: [10.0.0.10/24 10.0.0.20/32] -> [10.0.0.10/24]",
				"vrrp_instances[VI_LOGS].track: {custom: 10, haproxy: -20, haproxy_stats: -30, port: -5} -> {custom: 20, haproxy: -20, haproxy_stats: -30, port: -5}",
			}},
		{name: "a check changed",
			edit:    func(s string) string { return strings.Replace(s, "rise: 4", "rise: 5", 1) },
			changes: []string{"checks[haproxy_stats]: changed"}},
		{name: "a check removed",
			edit: func(s string) string {
				s = strings.Replace(s, "  - name: port\n    tcp: {address: \"127.0.0.1:5044\"}\n", "", 1)
				return strings.Replace(s, ", port: -5", "", 1)
			},
			changes: []string{"checks[port]: removed", "vrrp_instances[VI_LOGS].track: {custom: 10, haproxy: -20, haproxy_stats: -30, port: -5} -> {custom: 10, haproxy: -20, haproxy_stats: -30}"}},
		{name: "vrid and interface",
			edit: func(s string) string {
				s = strings.Replace(s, "virtual_router_id: 51", "virtual_router_id: 52", 1)
				return strings.Replace(s, "    interface: eth0", "    interface: eth1", 1)
			},
			needRestart: []string{"vrrp_instances[VI_LOGS].interface: eth0 -> eth1", "vrrp_instances[VI_LOGS].virtual_router_id: 51 -> 52"}},
		{name: "password change never shows the password",
			edit:        func(s string) string { return strings.Replace(s, "auth_pass: 12345678", "auth_pass: 87654321", 1) },
			needRestart: []string{"vrrp_instances[VI_LOGS].authentication: PASS (password not shown) -> PASS (password not shown)"}},
		{name: "unicast and version",
			edit: func(s string) string {
				s = strings.Replace(s, "unicast_peer: [10.0.0.12, 10.0.0.13]", "unicast_peer: [10.0.0.12]", 1)
				return strings.Replace(s, "unicast_src_ip: 10.0.0.11", "unicast_src_ip: 10.0.0.14", 1)
			},
			needRestart: []string{
				"vrrp_instances[VI_LOGS].unicast_src_ip: 10.0.0.11 -> 10.0.0.14",
				"vrrp_instances[VI_LOGS].unicast_peer: [10.0.0.12 10.0.0.13] -> [10.0.0.12]",
			}},
		{name: "instance renamed",
			edit:        func(s string) string { return strings.Replace(s, "name: VI_LOGS", "name: VI_BEATS", 1) },
			needRestart: []string{"vrrp_instances[VI_BEATS]: added", "vrrp_instances[VI_LOGS]: removed"}},
		{name: "haproxy binary and grace",
			edit: func(s string) string {
				s = strings.Replace(s, "command: /opt/haproxy/sbin/haproxy", "command: /usr/sbin/haproxy", 1)
				return strings.Replace(s, "stop_grace: 20s", "stop_grace: 5s", 1)
			},
			changes:     []string{"haproxy.stop_grace: 20s -> 5s"},
			needRestart: []string{"haproxy.command: /opt/haproxy/sbin/haproxy -> /usr/sbin/haproxy"}},
		{name: "status listener",
			edit: func(s string) string {
				return strings.Replace(s, `listen: "[::1]:9479"`, `listen: "127.0.0.1:9480"`, 1)
			},
			needRestart: []string{"status.listen: [::1]:9479 -> 127.0.0.1:9480"}},
	}
	old, err := Parse([]byte(full), "full.yaml", fakeInterfaces())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text := tt.edit(full)
			if text == full && tt.name != "nothing" {
				t.Fatal("the edit changed nothing")
			}
			new, err := Parse([]byte(text), "full.yaml", fakeInterfaces())
			if err != nil {
				t.Fatal(err)
			}
			wantReloadable(t, old, new, tt.changes, tt.needRestart, "87654321", "12345678")
		})
	}
}

// wantReloadable fails t unless Reloadable(old, next) returns changes and needRestart, and none
// of them shows any of secrets (passwords).
func wantReloadable(t *testing.T, old, next *Config, changes, needRestart []string, secrets ...string) {
	t.Helper()
	gotChanges, gotRestart := Reloadable(old, next)
	if !reflect.DeepEqual(gotChanges, changes) {
		t.Errorf("changes = %q\nwant %q", gotChanges, changes)
	}
	if !reflect.DeepEqual(gotRestart, needRestart) {
		t.Errorf("needRestart = %q\nwant %q", gotRestart, needRestart)
	}
	for _, c := range append(gotChanges, gotRestart...) {
		for _, secret := range secrets {
			if strings.Contains(c, secret) {
				t.Errorf("a password leaked into %q", c)
			}
		}
	}
}
