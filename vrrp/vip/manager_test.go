package vip

import (
	"bytes"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/hapair/hapair/vrrp/internal/nstest"
)

// addrLines returns `ip -o addr show dev ifname` as a map from "inet 10.0.0.1/24" (or inet6)
// to the whole line, read with ip(8) so that the check does not share code with Manager.
func addrLines(t *testing.T, ns *nstest.NS, ifname string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, line := range strings.Split(ns.IP(t, "-o", "addr", "show", "dev", ifname), "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" || f[i] == "inet6" {
				m[f[i]+" "+f[i+1]] = line
			}
		}
	}
	return m
}

func key(p netip.Prefix) string {
	if p.Addr().Is4() {
		return "inet " + p.String()
	}
	return "inet6 " + p.String()
}

// inNS runs f with the Manager inside ns: Manager's netlink calls work in the calling
// thread's namespace.
func inNS[T any](t *testing.T, ns *nstest.NS, f func() (T, error)) (T, error) {
	t.Helper()
	var v T
	err := ns.Do(func() error {
		var err error
		v, err = f()
		return err
	})
	return v, err
}

var testVIPs = []netip.Prefix{
	netip.MustParsePrefix("10.201.0.100/24"),
	netip.MustParsePrefix("10.201.0.101/32"),
	netip.MustParsePrefix("192.0.2.10/24"), // not in the interface's subnet: a primary address to the kernel
	netip.MustParsePrefix("fd00:201::100/64"),
}

func TestManagerAttachDetach(t *testing.T) {
	p := nstest.NewPair(t)
	m, err := NewManager(p.AIf, testVIPs, nil)
	if err != nil {
		t.Fatal(err)
	}

	if err := p.A.Do(m.Attach); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	got := addrLines(t, p.A, p.AIf)
	for _, v := range testVIPs {
		line, ok := got[key(v)]
		if !ok {
			t.Errorf("after Attach, %s missing from: %v", v, got)
			continue
		}
		if v.Addr().Is6() && (!strings.Contains(line, "nodad") || strings.Contains(line, "tentative")) {
			t.Errorf("IPv6 VIP not usable at once: %s", line)
		}
	}
	if _, ok := got[key(p.A4)]; !ok {
		t.Errorf("the interface's own address is gone: %v", got)
	}
	// Attaching again is a no-op, not an error.
	if err := p.A.Do(m.Attach); err != nil {
		t.Fatalf("second Attach: %v", err)
	}
	if missing, err := inNS(t, p.A, m.Missing); err != nil || len(missing) != 0 {
		t.Fatalf("Missing after Attach = %v, %v", missing, err)
	}

	// A VIP deleted by hand shows in Missing and comes back with Attach.
	p.A.IP(t, "addr", "del", "10.201.0.101/32", "dev", p.AIf)
	p.A.IP(t, "addr", "del", "fd00:201::100/64", "dev", p.AIf)
	missing, err := inNS(t, p.A, m.Missing)
	if err != nil {
		t.Fatal(err)
	}
	if want := []netip.Prefix{testVIPs[1], testVIPs[3]}; !slices.Equal(missing, want) {
		t.Errorf("Missing = %v, want %v", missing, want)
	}
	if err := p.A.Do(m.Attach); err != nil {
		t.Fatalf("Attach after manual delete: %v", err)
	}
	if missing, err := inNS(t, p.A, m.Missing); err != nil || len(missing) != 0 {
		t.Fatalf("Missing after reconcile = %v, %v", missing, err)
	}

	if err := p.A.Do(m.Detach); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	got = addrLines(t, p.A, p.AIf)
	for _, v := range testVIPs {
		if _, ok := got[key(v)]; ok {
			t.Errorf("after Detach, %s still there", v)
		}
	}
	if _, ok := got[key(p.A4)]; !ok {
		t.Errorf("Detach removed the interface's own address: %v", got)
	}
	if err := p.A.Do(m.Detach); err != nil {
		t.Fatalf("second Detach: %v", err)
	}
	if missing, err := inNS(t, p.A, m.Missing); err != nil || !slices.Equal(missing, testVIPs) {
		t.Fatalf("Missing after Detach = %v, %v; want all", missing, err)
	}
}

// TestAttachReadsAddressesOnce: Attach dumps the link's addresses once, to verify, whether the
// VIPs were missing or there already. Each dump reads every address on the link: at the start
// of 255 instances sharing one, two dumps an Attach made 73 MB of garbage.
func TestAttachReadsAddressesOnce(t *testing.T) {
	p := nstest.NewPair(t)
	m, err := NewManager(p.AIf, testVIPs, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, when := range []string{"VIPs missing", "VIPs there already"} {
		before := m.dumps
		if err := p.A.Do(m.Attach); err != nil {
			t.Fatalf("Attach, %s: %v", when, err)
		}
		if n := m.dumps - before; n != 1 {
			t.Errorf("Attach, %s: %d address dumps, want 1", when, n)
		}
	}
	if missing, err := inNS(t, p.A, m.Missing); err != nil || len(missing) != 0 {
		t.Fatalf("Missing after Attach = %v, %v", missing, err)
	}
}

// TestManagerPrefixIsPartOfIdentity: the same address with another prefix length is not our
// VIP: not counted as present, and not removed.
func TestManagerPrefixIsPartOfIdentity(t *testing.T) {
	p := nstest.NewPair(t)
	p.A.IP(t, "addr", "add", "10.201.0.100/32", "dev", p.AIf)
	m, err := NewManager(p.AIf, []netip.Prefix{netip.MustParsePrefix("10.201.0.100/24")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	missing, err := inNS(t, p.A, m.Missing)
	if err != nil || len(missing) != 1 {
		t.Fatalf("Missing = %v, %v; want the /24", missing, err)
	}
	if err := p.A.Do(m.Attach); err != nil {
		t.Fatal(err)
	}
	if err := p.A.Do(m.Detach); err != nil {
		t.Fatal(err)
	}
	got := addrLines(t, p.A, p.AIf)
	if _, ok := got["inet 10.201.0.100/32"]; !ok {
		t.Errorf("Detach removed an address that is not ours: %v", got)
	}
	if _, ok := got["inet 10.201.0.100/24"]; ok {
		t.Errorf("Detach left our VIP: %v", got)
	}
}

func TestManagerRemoveStale(t *testing.T) {
	p := nstest.NewPair(t)
	// What a crashed run leaves behind.
	p.A.IP(t, "addr", "add", "10.201.0.100/24", "dev", p.AIf)
	p.A.IP(t, "addr", "add", "fd00:201::100/64", "dev", p.AIf, "nodad")
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	m, err := NewManager(p.AIf, testVIPs, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.A.Do(m.RemoveStale); err != nil {
		t.Fatalf("RemoveStale: %v", err)
	}
	got := addrLines(t, p.A, p.AIf)
	for _, v := range testVIPs {
		if _, ok := got[key(v)]; ok {
			t.Errorf("stale %s still there", v)
		}
	}
	for _, want := range []string{"removed stale VIP", "vip=10.201.0.100/24", "vip=fd00:201::100/64"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	if strings.Contains(logs.String(), "10.201.0.101") {
		t.Errorf("logged a VIP that was not there:\n%s", logs.String())
	}
}

func TestManagerErrors(t *testing.T) {
	p := nstest.NewPair(t)

	// No such interface: Attach fails with the operation in the message; Detach and
	// RemoveStale have nothing to do.
	gone, err := NewManager("nope0", testVIPs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.A.Do(gone.Attach); err == nil || !strings.Contains(err.Error(), "attach VIPs to nope0") {
		t.Errorf("Attach on a missing link: %v", err)
	}
	if err := p.A.Do(gone.Detach); err != nil {
		t.Errorf("Detach on a missing link: %v", err)
	}
	if err := p.A.Do(gone.RemoveStale); err != nil {
		t.Errorf("RemoveStale on a missing link: %v", err)
	}

	// IPv6 disabled on the link: the IPv6 VIP fails, with its own error, and the IPv4 VIPs
	// are attached all the same.
	p.A.IP(t, "link", "add", "v6off", "type", "veth", "peer", "name", "v6off-peer")
	p.A.Sysctl(t, "net.ipv6.conf.v6off.disable_ipv6", "1")
	p.A.IP(t, "link", "set", "v6off", "up")
	m, err := NewManager("v6off", testVIPs, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = p.A.Do(m.Attach)
	if err == nil || !strings.Contains(err.Error(), "attach fd00:201::100/64 to v6off") {
		t.Errorf("Attach with IPv6 disabled: %v", err)
	}
	if errors.Is(err, ErrNotVerified) {
		t.Errorf("a failed add is reported again as not verified: %v", err)
	}
	missing, err := inNS(t, p.A, m.Missing)
	if err != nil {
		t.Fatal(err)
	}
	if want := []netip.Prefix{testVIPs[3]}; !slices.Equal(missing, want) {
		t.Errorf("Missing = %v, want %v", missing, want)
	}
}

func TestNewManager(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ifname  string
		vips    []string
		wantErr string
		want    []string
	}{
		{name: "dedup and unmap", ifname: "eth0", vips: []string{"10.0.0.1/24", "::ffff:10.0.0.1/120", "10.0.0.1/24"}, want: []string{"10.0.0.1/24"}},
		{name: "order kept", ifname: "eth0", vips: []string{"2001:db8::1/64", "10.0.0.1/32"}, want: []string{"2001:db8::1/64", "10.0.0.1/32"}},
		{name: "no interface", ifname: "", vips: []string{"10.0.0.1/24"}, wantErr: "empty interface name"},
		{name: "mapped too short", ifname: "eth0", vips: []string{"::ffff:10.0.0.1/64"}, wantErr: "invalid VIP"},
		{name: "multicast", ifname: "eth0", vips: []string{"224.0.0.18/32"}, wantErr: "cannot be a VIP"},
		{name: "loopback", ifname: "eth0", vips: []string{"127.0.0.2/8"}, wantErr: "cannot be a VIP"},
		{name: "unspecified", ifname: "eth0", vips: []string{"::/0"}, wantErr: "cannot be a VIP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var vips []netip.Prefix
			for _, v := range tc.vips {
				vips = append(vips, netip.MustParsePrefix(v))
			}
			m, err := NewManager(tc.ifname, vips, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("NewManager: %v, want error containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, v := range m.VIPs() {
				got = append(got, v.String())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("VIPs = %v, want %v", got, tc.want)
			}
		})
	}
	if _, err := NewManager("eth0", []netip.Prefix{{}}, nil); err == nil {
		t.Error("NewManager accepted an invalid prefix")
	}
}
