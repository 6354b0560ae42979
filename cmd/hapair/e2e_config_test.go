package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunRefusesTheHostsOwnAddressAsVIP: a VIP equal to the host's own address used to be
// removed at start as a "stale VIP", and hapair then exited for want of a primary address,
// leaving the host without IPv4. Now check and run refuse it, and the host keeps its address.
func TestRunRefusesTheHostsOwnAddressAsVIP(t *testing.T) {
	p := newPair(t)
	own := p.lb1.Addr // 10.0.0.11/24
	n := labNode{RouterID: "lb1", Priority: 110, VIPs: []string{own.String()}}
	cfg := filepath.Join(p.lb1.Dir(), "hapair.yaml")
	if err := os.MkdirAll(p.lb1.Dir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(n.YAML()), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want := fmt.Sprintf("%s is this host's own address on eth0", own.Addr())
	for _, cmd := range []string{"check", "run"} {
		out, err := p.lb1.Command(ctx, hapairBin, cmd, "--config", cfg).CombinedOutput()
		if err == nil || !strings.Contains(string(out), want) || !strings.Contains(string(out), "hapair.yaml:") {
			t.Errorf("hapair %s with the host's own address as VIP: %v, want refused with %q and the line:\n%s", cmd, err, want, out)
		}
		if has, err := p.lb1.HasAddr(own.Addr()); err != nil || !has {
			t.Fatalf("after hapair %s the host lost its own address %s (%v)", cmd, own, err)
		}
	}
}

// TestCheckRefusesVIPsThatDoNotFitAnAdvert: 256 VIPs passed `hapair check`, then every advert
// failed to build and both hosts became MASTER.
func TestCheckRefusesVIPsThatDoNotFitAnAdvert(t *testing.T) {
	dir := t.TempDir()
	var vips []string
	for i := range 256 {
		vips = append(vips, netip.AddrFrom4([4]byte{10, 9, byte(i / 250), byte(i%250 + 1)}).String()+"/16")
	}
	for _, tt := range []struct {
		n    int
		want string
	}{{255, ""}, {256, "256 addresses: one VRRP advert carries at most 255"}} {
		p := filepath.Join(dir, fmt.Sprintf("vips%d.yaml", tt.n))
		text := labNode{RouterID: "lb1", Priority: 110, Interface: "lo", VIPs: vips[:tt.n]}.YAML()
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		out, code := runHapair(t, "check", "--config", p)
		switch {
		case tt.want == "" && code != 0:
			t.Errorf("check with %d VIPs: exit %d\n%s", tt.n, code, out)
		case tt.want != "" && (code == 0 || !strings.Contains(out, tt.want)):
			t.Errorf("check with %d VIPs: exit %d, want %q\n%s", tt.n, code, tt.want, out)
		}
	}
}

// TestReloadRefusesTheHostsOwnAddressAsVIP: the same refusal on reload, while the MASTER holds its
// VIP (which is not taken for the host's own address), and nothing is touched.
func TestReloadRefusesTheHostsOwnAddressAsVIP(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	d := startDaemon(t, p.lb1, labNode{Priority: 110})
	d.waitState(0, "MASTER", 10*time.Second)
	good, err := os.ReadFile(d.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	own := p.lb1.Addr
	bad := strings.Replace(string(good), "virtual_ipaddress: [10.0.0.10/24]", "virtual_ipaddress: [10.0.0.10/24, "+own.String()+"]", 1)
	if err := os.WriteFile(d.cfgPath, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, code := d.runIn(ctx, "reload", "--config", d.cfgPath)
	if code == 0 || !strings.Contains(out, fmt.Sprintf("%s is this host's own address on eth0", own.Addr())) {
		t.Fatalf("reload adding the host's own address as a VIP: exit %d:\n%s", code, out)
	}
	if strings.Contains(out, "10.0.0.10 is this host's own address") {
		t.Errorf("the VIP the MASTER holds was taken for the host's own address:\n%s", out)
	}
	for _, a := range []netip.Addr{own.Addr(), vip} {
		if has, err := p.lb1.HasAddr(a); err != nil || !has {
			t.Errorf("after the refused reload lb1 lacks %s (%v)", a, err)
		}
	}
}

// TestCheckRefusesAdvertsLargerThanTheMTU: adverts are never fragmented; more VIPs than fit in
// the interface's MTU could never be announced.
func TestCheckRefusesAdvertsLargerThanTheMTU(t *testing.T) {
	p := newPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// 68 bytes, IPv4's least: a VRRPv2 advert (20 + 8 + 8 + 4 per address) carries 8 addresses.
	if _, err := p.lb1.Run(ctx, "ip", "link", "set", "dev", "eth0", "mtu", "68"); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(p.lb1.Dir(), "hapair.yaml")
	if err := os.MkdirAll(p.lb1.Dir(), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		n    int
		want string
	}{{8, ""}, {9, "9 addresses make a 72-byte advert, larger than the MTU of eth0 (68)"}} {
		var vips []string
		for i := range tt.n {
			vips = append(vips, fmt.Sprintf("10.0.0.%d/24", 100+i))
		}
		if err := os.WriteFile(cfg, []byte(labNode{RouterID: "lb1", Priority: 110, VIPs: vips}.YAML()), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := p.lb1.Command(ctx, hapairBin, "check", "--config", cfg).CombinedOutput()
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("check with %d VIPs at MTU 68: %v\n%s", tt.n, err, out)
		case tt.want != "" && (err == nil || !strings.Contains(string(out), tt.want)):
			t.Errorf("check with %d VIPs at MTU 68: %v, want %q\n%s", tt.n, err, tt.want, out)
		}
	}
}
