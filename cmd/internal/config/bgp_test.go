package config

import (
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// anycast is the smallest valid anycast node: HAProxy, no VRRP instance, one peer, one prefix.
const anycast = `haproxy: {}
bgp:
  local_asn: 65010
  peers:
    - {address: 10.77.0.1, asn: 65000}
  announce:
    - {prefix: 10.77.9.10/32, checks: [haproxy]}
`

func TestBGPParseRejects(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown key", anycast + "  graceful_restart: true\n",
			[]string{"t.yaml:8: bgp.graceful_restart: unknown key"}},
		{"unknown peer key", strings.Replace(anycast, "asn: 65000}", "asn: 65000, holdtime: 3s}", 1),
			[]string{"t.yaml:5: bgp.peers[0].holdtime: unknown key (did you mean hold_time?)"}},
		{"local_asn missing", strings.Replace(anycast, "  local_asn: 65010\n", "", 1),
			[]string{"t.yaml:2: bgp: local_asn is required"}},
		{"local_asn zero", strings.Replace(anycast, "local_asn: 65010", "local_asn: 0", 1),
			[]string{"t.yaml:3: bgp.local_asn: 0 is outside 1..4294967295"}},
		{"local_asn above 32 bits", strings.Replace(anycast, "local_asn: 65010", "local_asn: 4294967296", 1),
			[]string{"t.yaml:3: bgp.local_asn: 4294967296 is outside 1..4294967295"}},
		{"router_id IPv6", anycast + "  router_id: 2001:db8::1\n",
			[]string{`t.yaml:8: bgp.router_id: "2001:db8::1" is not an IPv4 address`}},
		{"router_id a name", anycast + "  router_id: lb1\n",
			[]string{`t.yaml:8: bgp.router_id: "lb1" is not an IPv4 address`}},
		{"loopback missing on this host", anycast + "  loopback: dummy0\n",
			[]string{`t.yaml:8: bgp.loopback: interface "dummy0" does not exist`}},
		{"no peers", strings.Replace(anycast, "  peers:\n    - {address: 10.77.0.1, asn: 65000}\n", "  peers: []\n", 1),
			[]string{"t.yaml:4: bgp.peers: at least one peer is required"}},
		{"peer address missing", strings.Replace(anycast, "{address: 10.77.0.1, asn: 65000}", "{asn: 65000}", 1),
			[]string{"t.yaml:5: bgp.peers[0]: address is required"}},
		{"peer asn missing", strings.Replace(anycast, "{address: 10.77.0.1, asn: 65000}", "{address: 10.77.0.1}", 1),
			[]string{"t.yaml:5: bgp.peers[0]: asn is required"}},
		{"peer address not an address", strings.Replace(anycast, "10.77.0.1,", "router1,", 1),
			[]string{`t.yaml:5: bgp.peers[0].address: "router1" is not an IP address`}},
		{"peer listed twice", strings.Replace(anycast, "    - {address: 10.77.0.1, asn: 65000}\n", "    - {address: 10.77.0.1, asn: 65000}\n    - {address: 10.77.0.1, asn: 65001}\n", 1),
			[]string{"t.yaml:6: bgp.peers[1].address: 10.77.0.1 is already the peer at line 5"}},
		{"hold time below 3s", strings.Replace(anycast, "asn: 65000}", "asn: 65000, hold_time: 2s}", 1),
			[]string{"t.yaml:5: bgp.peers[0].hold_time: 2s: BGP carries whole seconds, 0 or 3..65535"}},
		{"hold time fraction", strings.Replace(anycast, "asn: 65000}", "asn: 65000, hold_time: 3.5s}", 1),
			[]string{"t.yaml:5: bgp.peers[0].hold_time: 3.5s: BGP carries whole seconds"}},
		{"port out of range", strings.Replace(anycast, "asn: 65000}", "asn: 65000, port: 70000}", 1),
			[]string{"t.yaml:5: bgp.peers[0].port: 70000 is outside 1..65535"}},
		{"multihop out of range", strings.Replace(anycast, "asn: 65000}", "asn: 65000, multihop: 256}", 1),
			[]string{"t.yaml:5: bgp.peers[0].multihop: 256 is outside 0..255"}},
		{"passive not a bool", strings.Replace(anycast, "asn: 65000}", "asn: 65000, passive: sometimes}", 1),
			[]string{`t.yaml:5: bgp.peers[0].passive: "sometimes" is not true or false`}},
		{"no announcements", strings.Replace(anycast, "  announce:\n    - {prefix: 10.77.9.10/32, checks: [haproxy]}\n", "", 1),
			[]string{"t.yaml:2: bgp.announce: at least one prefix to announce is required"}},
		{"prefix not a host route", strings.Replace(anycast, "10.77.9.10/32", "10.77.9.0/24", 1),
			[]string{"t.yaml:7: bgp.announce[0].prefix: 10.77.9.0/24: announce a host route (/32)"}},
		{"prefix not an address", strings.Replace(anycast, "10.77.9.10/32", "logs.example", 1),
			[]string{`t.yaml:7: bgp.announce[0].prefix: "logs.example" is not an address or address/prefix`}},
		{"prefix IPv4-mapped, shorter than /96", strings.Replace(anycast, "10.77.9.10/32", `"::ffff:10.77.9.10/64"`, 1),
			[]string{`t.yaml:7: bgp.announce[0].prefix: "::ffff:10.77.9.10/64": an IPv4-mapped address needs a prefix of /96 or longer`}},
		{"prefix loopback", strings.Replace(anycast, "10.77.9.10/32", "127.0.0.5", 1),
			[]string{"t.yaml:7: bgp.announce[0].prefix: 127.0.0.5 cannot be a service address"}},
		{"prefix missing", strings.Replace(anycast, "{prefix: 10.77.9.10/32, checks: [haproxy]}", "{checks: [haproxy]}", 1),
			[]string{"t.yaml:7: bgp.announce[0]: prefix is required"}},
		{"prefix twice", anycast + "    - {prefix: 10.77.9.10, checks: [haproxy]}\n",
			[]string{"t.yaml:8: bgp.announce[1].prefix: 10.77.9.10/32 is already announced at line 7"}},
		{"IPv6 prefix without an IPv6 peer", strings.Replace(anycast, "10.77.9.10/32", "2001:db8:9::10/128", 1),
			[]string{"t.yaml:7: bgp.announce[0].prefix: 2001:db8:9::10/128 is IPv6 but no peer is"}},
		{"neither checks nor instance", strings.Replace(anycast, ", checks: [haproxy]}", "}", 1),
			[]string{"t.yaml:7: bgp.announce[0]: needs checks (announced while they pass) or vrrp_instance"}},
		{"both checks and instance", minimal + strings.Replace(anycast, "checks: [haproxy]}", "checks: [haproxy], vrrp_instance: VI_1}", 1),
			[]string{"t.yaml:12: bgp.announce[0]: has checks and vrrp_instance"}},
		{"unknown check", strings.Replace(anycast, "[haproxy]", "[haproxy, haproxy_stats]", 1),
			[]string{`t.yaml:7: bgp.announce[0].checks: no check is named "haproxy_stats" (known: haproxy)`}},
		{"haproxy check without haproxy", strings.Replace(anycast, "haproxy: {}\n", "", 1),
			[]string{"t.yaml:6: bgp.announce[0].checks: the built-in haproxy check needs the haproxy section"}},
		{"check listed twice", strings.Replace(anycast, "[haproxy]", "[haproxy, haproxy]", 1),
			[]string{`t.yaml:7: bgp.announce[0].checks: "haproxy" is listed twice`}},
		{"unknown instance", strings.Replace(anycast, "checks: [haproxy]}", "vrrp_instance: VI_9}", 1),
			[]string{`t.yaml:7: bgp.announce[0].vrrp_instance: no VRRP instance is named "VI_9"`}},
		{"announce entry not a mapping", anycast + "    - 10.77.9.11/32\n",
			[]string{"t.yaml:8: bgp.announce[1]: must be a mapping with prefix and checks or vrrp_instance"}},
		{"no bgp and no instances", "haproxy: {}\n",
			[]string{"vrrp_instances: at least one VRRP instance is required (or a bgp section, for an anycast node)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "t.yaml", fakeInterfaces(), fakeHost(), withLoopback())
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.yaml)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// withLoopback is fakeInterfaces plus lo.
func withLoopback() LoadOption {
	return WithInterfaceLookup(func(name string) error {
		switch name {
		case "eth0", "eth1", "lo":
			return nil
		}
		return fmt.Errorf("no such network interface")
	})
}

func TestBGPDefaultsAndAnycastNode(t *testing.T) {
	cfg, err := Parse([]byte(anycast), "t.yaml", withLoopback(), fakeHost())
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Instances) != 0 {
		t.Errorf("instances = %v, want none", cfg.Instances)
	}
	want := &BGP{
		LocalASN: 65010, ListenPort: 179, Loopback: "lo", DrainTime: 2 * time.Second,
		Peers: []BGPPeer{{Address: netip.MustParseAddr("10.77.0.1"), ASN: 65000, HoldTime: 9 * time.Second, Port: 179}},
		Announce: []BGPAnnounce{{
			Prefix: netip.MustParsePrefix("10.77.9.10/32"), Checks: []string{"haproxy"},
		}},
	}
	if !reflect.DeepEqual(cfg.BGP, want) {
		t.Errorf("bgp =\n%+v\nwant\n%+v", cfg.BGP, want)
	}
}

const bgpFull = `haproxy: {}
checks:
  - name: haproxy_stats
    http: {url: "http://127.0.0.1:8404/stats;csv"}
vrrp_instances:
  - name: VI_LOGS
    interface: eth0
    virtual_router_id: 51
    virtual_ipaddress: [10.0.0.10/24]
bgp:
  local_asn: 65010
  router_id: 10.77.0.11
  listen_port: 1179
  loopback: eth1
  drain_time: 5s
  peers:
    - {address: 10.77.0.1, asn: 65000, hold_time: 3s}
    - address: 2001:db8::1
      asn: 65010
      hold_time: 0
      port: 1790
      password: s3cret
      passive: true
      multihop: 4
  announce:
    - {prefix: 10.77.9.10/32, checks: [haproxy, haproxy_stats]}
    - {prefix: 10.77.9.20, vrrp_instance: VI_LOGS}
    - {prefix: 2001:db8:9::10, checks: haproxy}
`

func TestBGPParseFull(t *testing.T) {
	cfg, err := Parse([]byte(bgpFull), "t.yaml", withLoopback(), fakeHost())
	if err != nil {
		t.Fatal(err)
	}
	want := &BGP{
		LocalASN: 65010, RouterID: netip.MustParseAddr("10.77.0.11"), ListenPort: 1179, Loopback: "eth1",
		DrainTime: 5 * time.Second,
		Peers: []BGPPeer{
			{Address: netip.MustParseAddr("10.77.0.1"), ASN: 65000, HoldTime: 3 * time.Second, Port: 179},
			{Address: netip.MustParseAddr("2001:db8::1"), ASN: 65010, HoldTime: 0, Port: 1790,
				Password: "s3cret", Passive: true, Multihop: 4},
		},
		Announce: []BGPAnnounce{
			{Prefix: netip.MustParsePrefix("10.77.9.10/32"), Checks: []string{"haproxy", "haproxy_stats"}},
			{Prefix: netip.MustParsePrefix("10.77.9.20/32"), VRRPInstance: "VI_LOGS"},
			{Prefix: netip.MustParsePrefix("2001:db8:9::10/128"), Checks: []string{"haproxy"}},
		},
	}
	if !reflect.DeepEqual(cfg.BGP, want) {
		t.Errorf("bgp =\n%+v\nwant\n%+v", cfg.BGP, want)
	}
	if l := cfg.Line("bgp.peers[1].password"); l != 22 {
		t.Errorf("line of bgp.peers[1].password = %d, want 22", l)
	}
}

func TestBGPReloadable(t *testing.T) {
	parse := func(s string) *Config {
		t.Helper()
		cfg, err := Parse([]byte(s), "t.yaml", withLoopback(), fakeHost())
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	old := parse(bgpFull)
	tests := []struct {
		name                 string
		next                 string
		changes, needRestart []string
	}{
		{"unchanged", bgpFull, nil, nil},
		{"peer added, one changed, prefix withdrawn, drain time",
			strings.NewReplacer(
				"    - {address: 10.77.0.1, asn: 65000, hold_time: 3s}\n", "    - {address: 10.77.0.1, asn: 65000, hold_time: 6s}\n    - {address: 10.77.0.2, asn: 65000}\n",
				"    - {prefix: 10.77.9.20, vrrp_instance: VI_LOGS}\n", "",
				"drain_time: 5s", "drain_time: 1s",
			).Replace(bgpFull),
			[]string{"bgp.drain_time: 5s -> 1s", "bgp.peers[10.77.0.1]: changed (session reset)", "bgp.peers[10.77.0.2]: added", "bgp.announce[10.77.9.20/32]: withdrawn"},
			nil},
		{"password changed is not shown", strings.Replace(bgpFull, "s3cret", "other", 1),
			[]string{"bgp.peers[2001:db8::1]: changed (session reset)"}, nil},
		{"identity needs a restart", strings.Replace(strings.Replace(bgpFull, "local_asn: 65010", "local_asn: 65011", 1), "loopback: eth1", "loopback: lo", 1),
			nil, []string{"bgp.local_asn: 65010 -> 65011", "bgp.loopback: eth1 -> lo"}},
		{"section removed", bgpFull[:strings.Index(bgpFull, "bgp:")], nil, []string{"bgp: section removed"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantReloadable(t, old, parse(tc.next), tc.changes, tc.needRestart, "s3cret", "other")
		})
	}
}

// TestBGPDocumented keeps docs/configuration.md's bgp rows in step with the keys and defaults.
func TestBGPDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	for key, def := range map[string]any{
		"bgp.listen_port":       DefaultBGPListenPort,
		"bgp.loopback":          DefaultBGPLoopback,
		"bgp.drain_time":        DefaultBGPDrainTime,
		"bgp.peers[].hold_time": DefaultBGPHoldTime,
		"bgp.peers[].port":      DefaultBGPPeerPort,
	} {
		if row := fmt.Sprintf("| `%s` | `%v` |", key, def); !strings.Contains(string(doc), row) {
			t.Errorf("docs/configuration.md lacks the row %q", row)
		}
	}
	cfg, err := Parse([]byte(bgpFull), "t.yaml", withLoopback(), fakeHost())
	if err != nil {
		t.Fatal(err)
	}
	for key := range cfg.lines {
		if !strings.HasPrefix(key, "bgp.") {
			continue
		}
		key = strings.NewReplacer("[0]", "[]", "[1]", "[]", "[2]", "[]").Replace(key)
		if strings.HasSuffix(key, "[]") {
			continue
		}
		if !strings.Contains(string(doc), "| `"+key+"` |") {
			t.Errorf("docs/configuration.md has no row for %s", key)
		}
	}
}

func TestCheckWarnsOfAReadableBGPPassword(t *testing.T) {
	text := minimal + "bgp:\n  local_asn: 65010\n  peers:\n    - {address: 10.77.0.1, asn: 65000, password: s3cret}\n" +
		"  announce:\n    - {prefix: 10.77.9.20/32, vrrp_instance: VI_1}\n"
	for _, mode := range []os.FileMode{0o644, 0o600} {
		path := writeFile(t, "h.yaml", text, mode)
		warns, err := Check(path, withLoopback())
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("%s:9: bgp.peers[0].password: the file holds a BGP session password and is readable by group or others (mode %04o): chmod 600 %s", path, mode, path)
		got := strings.Join(warns, "\n")
		switch {
		case mode == 0o644 && got != want:
			t.Errorf("mode %04o: warnings = %q, want %q", mode, got, want)
		case mode == 0o600 && len(warns) > 0:
			t.Errorf("mode %04o: unexpected warnings %q", mode, warns)
		}
	}
}
