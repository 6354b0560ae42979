package config

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

// manyVIPs renders an instance's virtual_ipaddress as a block list of n IPv4 addresses.
func manyVIPs(n int) string {
	var b strings.Builder
	b.WriteString("    virtual_ipaddress:\n")
	for i := range n {
		fmt.Fprintf(&b, "      - 10.1.%d.%d/16\n", i/250, i%250+1)
	}
	return b.String()
}

// TestVIPsRefused: what would make every advert fail to build, or attach what can never be a
// VIP, is refused with the line.
func TestVIPsRefused(t *testing.T) {
	second := `  - name: VI_2
    interface: eth1
    virtual_router_id: 52
    virtual_ipaddress: [10.0.0.10/24]
`
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"the limited broadcast address", strings.Replace(minimal, "10.0.0.10/24", "255.255.255.255", 1),
			"t.yaml:5: vrrp_instances[0].virtual_ipaddress: 255.255.255.255 is the broadcast address"},
		{"a /0 prefix", strings.Replace(minimal, "10.0.0.10/24", "10.0.0.10/0", 1),
			"t.yaml:5: vrrp_instances[0].virtual_ipaddress: 10.0.0.10/0: a prefix of length 0"},
		{"an IPv6 /0 prefix", strings.Replace(strings.Replace(minimal, "10.0.0.10/24", "2001:db8::10/0", 1), "    virtual_ipaddress", "    version: 3\n    virtual_ipaddress", 1),
			"vrrp_instances[0].virtual_ipaddress: 2001:db8::10/0: a prefix of length 0"},
		{"256 addresses", strings.Replace(minimal, "    virtual_ipaddress: [10.0.0.10/24]\n", manyVIPs(256), 1),
			"t.yaml:261: vrrp_instances[0].virtual_ipaddress: 256 addresses: one VRRP advert carries at most 255"},
		{"the same VIP in two instances", minimal + second,
			"t.yaml:9: vrrp_instances[1].virtual_ipaddress: 10.0.0.10 is already a virtual address of instance VI_1 (line 5)"},
		// The mapped address is read as IPv4 and its prefix less the 96 bits of ::ffff:0:0/96:
		// /64 has no IPv4 prefix, and used to pass check with an invalid prefix that run refused.
		{"an IPv4-mapped address shorter than /96", strings.Replace(minimal, "10.0.0.10/24", `"::ffff:10.0.0.10/64"`, 1),
			`t.yaml:5: vrrp_instances[0].virtual_ipaddress: "::ffff:10.0.0.10/64": an IPv4-mapped address needs a prefix of /96 or longer`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "t.yaml", fakeInterfaces(), fakeHost())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v\nwant %q", err, tt.want)
			}
		})
	}
	if _, err := Parse([]byte(strings.Replace(minimal, "    virtual_ipaddress: [10.0.0.10/24]\n", manyVIPs(255), 1)), "t.yaml", fakeInterfaces(), fakeHost()); err != nil {
		t.Errorf("255 addresses refused: %v", err)
	}
	cfg, err := Parse([]byte(strings.Replace(minimal, "10.0.0.10/24", `"::ffff:10.0.0.10/120"`, 1)), "t.yaml", fakeInterfaces(), fakeHost())
	if err != nil {
		t.Fatalf("::ffff:10.0.0.10/120 refused: %v", err)
	}
	if got := cfg.Instances[0].VIPs[0]; got != pfx("10.0.0.10/24") {
		t.Errorf("::ffff:10.0.0.10/120 read as %s, want 10.0.0.10/24", got)
	}
}

// fakeNet is a host's links and addresses.
type fakeNet struct {
	mtu   map[string]int
	addrs []HostAddr
}

func (f fakeNet) MTU(ifname string) (int, error) {
	if m, ok := f.mtu[ifname]; ok {
		return m, nil
	}
	return 0, errors.New("no such network interface")
}

func (f fakeNet) Addrs() ([]HostAddr, error) { return f.addrs, nil }

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// TestVIPsAgainstTheHost: what only the live host can tell. A VIP that is the host's own address
// used to be deleted at start (the "stale VIP" clean-up), leaving the host without IPv4; adverts
// larger than the MTU could never be sent.
func TestVIPsAgainstTheHost(t *testing.T) {
	host := fakeNet{
		mtu: map[string]int{"eth0": 1500, "eth1": 1500},
		addrs: []HostAddr{
			{Interface: "eth0", Prefix: pfx("10.0.0.11/24")},
			{Interface: "eth0", Prefix: pfx("10.0.0.10/24"), Secondary: true}, // our VIP, held (or left by a crash)
			{Interface: "eth0", Prefix: pfx("fe80::1/64")},
			{Interface: "eth0", Prefix: pfx("2001:db8::11/64")},
			{Interface: "eth0", Prefix: pfx("2001:db8::10/64"), NoDAD: true}, // our IPv6 VIP
			{Interface: "eth1", Prefix: pfx("192.168.1.1/24")},
		},
	}
	v6 := func(vip string) string {
		return strings.Replace(strings.Replace(minimal, "10.0.0.10/24", vip, 1), "    virtual_ipaddress", "    version: 3\n    virtual_ipaddress", 1)
	}
	tests := []struct {
		name string
		yaml string
		host fakeNet
		want string // "" = accepted
	}{
		{"a VIP held already (ours) is fine", minimal, host, ""},
		{"an IPv6 VIP held already (ours) is fine", v6("2001:db8::10/64"), host, ""},
		{"the host's own address", strings.Replace(minimal, "10.0.0.10/24", "10.0.0.11/24", 1), host,
			"t.yaml:5: vrrp_instances[0].virtual_ipaddress: 10.0.0.11 is this host's own address on eth0 (10.0.0.11/24)"},
		{"the host's own address with another prefix", strings.Replace(minimal, "10.0.0.10/24", "10.0.0.11/32", 1), host,
			"10.0.0.11 is this host's own address on eth0 (10.0.0.11/24)"},
		{"an address of another interface", strings.Replace(minimal, "10.0.0.10/24", "192.168.1.1/24", 1), host,
			"192.168.1.1 is this host's own address on eth1 (192.168.1.1/24)"},
		{"the host's own IPv6 address", v6("2001:db8::11/64"), host,
			"2001:db8::11 is this host's own address on eth0 (2001:db8::11/64)"},
		{"adverts larger than the MTU", strings.Replace(v6("2001:db8::10/64"), "    virtual_ipaddress: [2001:db8::10/64]\n",
			"    virtual_ipaddress:\n"+strings.Repeat("", 0)+v6List(91), 1), host,
			"91 addresses make a 1504-byte advert, larger than the MTU of eth0 (1500)"},
		{"90 IPv6 addresses fit in 1500", strings.Replace(v6("2001:db8::10/64"), "    virtual_ipaddress: [2001:db8::10/64]\n",
			"    virtual_ipaddress:\n"+v6List(90), 1), host, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "t.yaml", fakeInterfaces(), fakeHost(), WithHostNetwork(tt.host))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got %v\nwant %q", err, tt.want)
			}
		})
	}
	// Checking a file for another host skips the host's network too.
	if _, err := Parse([]byte(strings.Replace(minimal, "10.0.0.10/24", "10.0.0.11/24", 1)), "t.yaml", fakeHost(), SkipInterfaceCheck()); err != nil {
		t.Errorf("with the interface check skipped: %v", err)
	}
}

func v6List(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "      - 2001:db8:1::%x/64\n", i+1)
	}
	return b.String()
}
