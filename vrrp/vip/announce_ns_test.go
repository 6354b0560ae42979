package vip

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/hapair/hapair/vrrp/internal/nstest"
	"github.com/vishvananda/netlink"
)

const fakeOldMaster = "02:00:00:00:00:99"

// pointNeighbours makes B believe the VIPs live at another MAC, as after a failover: Linux
// neighbours (arp_accept=0, accept_untracked_na=0) only update entries they already have.
func pointNeighbours(t testing.TB, p *nstest.Pair, vips []netip.Prefix) {
	t.Helper()
	for _, v := range vips {
		p.B.IP(t, "neigh", "replace", v.Addr().String(), "lladdr", fakeOldMaster, "dev", p.BIf, "nud", "stale")
	}
}

// neighbour returns B's neighbour entry for ip on its veth end.
func neighbour(h *netlink.Handle, ifname string, ip netip.Addr) (netlink.Neigh, error) {
	l, err := h.LinkByName(ifname)
	if err != nil {
		return netlink.Neigh{}, err
	}
	family := netlink.FAMILY_V4
	if ip.Is6() {
		family = netlink.FAMILY_V6
	}
	list, err := h.NeighList(l.Attrs().Index, family)
	if err != nil {
		return netlink.Neigh{}, err
	}
	for _, n := range list {
		if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == ip {
			return n, nil
		}
	}
	return netlink.Neigh{}, fmt.Errorf("no neighbour entry for %s", ip)
}

func pointsAt(h *netlink.Handle, ifname string, ip netip.Addr, mac net.HardwareAddr) error {
	n, err := neighbour(h, ifname, ip)
	if err != nil {
		return err
	}
	if !bytes.Equal(n.HardwareAddr, mac) {
		return fmt.Errorf("%s is at %s, want %s", ip, n.HardwareAddr, mac)
	}
	return nil
}

// attachAndAnnouncer attaches vips in A and opens an Announcer there.
func attachAndAnnouncer(t testing.TB, p *nstest.Pair, vips []netip.Prefix) (*Manager, *Announcer) {
	t.Helper()
	m, err := NewManager(p.AIf, vips, nil)
	if err != nil {
		t.Fatal(err)
	}
	var a *Announcer
	p.A.MustDo(t, func() error {
		if err := m.Attach(); err != nil {
			return err
		}
		a, err = NewAnnouncer(p.AIf)
		return err
	})
	t.Cleanup(func() { a.Close() })
	return m, a
}

func TestAnnounceUpdatesNeighbours(t *testing.T) {
	p := nstest.NewPair(t)
	vips := []netip.Prefix{netip.MustParsePrefix("10.201.0.100/24"), netip.MustParsePrefix("fd00:201::100/64")}
	pointNeighbours(t, p, vips)
	_, a := attachAndAnnouncer(t, p, vips)
	h := p.B.Netlink(t)
	for _, v := range vips {
		if err := pointsAt(h, p.BIf, v.Addr(), p.AMAC); err == nil {
			t.Fatalf("B already points %s at A before any announcement", v)
		}
	}

	n, err := a.Announce(vips)
	if err != nil || n != 2 {
		t.Fatalf("Announce = %d, %v; want 2, nil", n, err)
	}
	for _, v := range vips {
		nstest.Eventually(t, 5*time.Second, func() error { return pointsAt(h, p.BIf, v.Addr(), p.AMAC) })
	}

	// The NA's Router flag follows IPv6 forwarding on A's interface, read at each Announce.
	v6 := vips[1].Addr()
	for _, forwarding := range []bool{true, false} {
		value := "0"
		if forwarding {
			value = "1"
		}
		p.A.Sysctl(t, "net.ipv6.conf."+p.AIf+".forwarding", value)
		if _, err := a.Announce(vips[1:]); err != nil {
			t.Fatal(err)
		}
		nstest.Eventually(t, 5*time.Second, func() error {
			n, err := neighbour(h, p.BIf, v6)
			if err != nil {
				return err
			}
			if isRouter := n.Flags&netlink.NTF_ROUTER != 0; isRouter != forwarding {
				return fmt.Errorf("forwarding %v: B's entry for %s has router flag %v", forwarding, v6, isRouter)
			}
			return nil
		})
	}
}

// BenchmarkTakeover measures the takeover path in this package: Attach (netlink add and read
// back) then one Announce round, with the VIPs detached again between iterations (untimed).
// It reports the two parts apart as well.
func BenchmarkTakeover(b *testing.B) {
	for _, bc := range []struct {
		name string
		vips []netip.Prefix
	}{
		{"1xIPv4", []netip.Prefix{netip.MustParsePrefix("10.201.0.100/24")}},
		{"IPv4+IPv6", []netip.Prefix{netip.MustParsePrefix("10.201.0.100/24"), netip.MustParsePrefix("fd00:201::100/64")}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := nstest.NewPair(b)
			m, a := attachAndAnnouncer(b, p, bc.vips)
			var attach, announce time.Duration
			p.A.MustDo(b, func() error {
				for range b.N {
					b.StopTimer()
					if err := m.Detach(); err != nil {
						return err
					}
					b.StartTimer()
					t0 := time.Now()
					if err := m.Attach(); err != nil {
						return err
					}
					t1 := time.Now()
					if _, err := a.Announce(bc.vips); err != nil {
						return err
					}
					attach += t1.Sub(t0)
					announce += time.Since(t1)
				}
				return nil
			})
			b.ReportMetric(float64(attach.Microseconds())/float64(b.N), "attach-µs/op")
			b.ReportMetric(float64(announce.Microseconds())/float64(b.N), "announce-µs/op")
			b.ReportMetric(float64((attach+announce).Microseconds())/float64(b.N), "takeover-µs/op")
		})
	}
}

// BenchmarkTakeoverSeenByPeer measures from the start of Attach until the neighbour's table
// points the VIP at us (busy polling its neighbour table over netlink, so the figure includes
// up to one dump of polling delay).
func BenchmarkTakeoverSeenByPeer(b *testing.B) {
	p := nstest.NewPair(b)
	vips := []netip.Prefix{netip.MustParsePrefix("10.201.0.100/24")}
	m, a := attachAndAnnouncer(b, p, vips)
	h := p.B.Netlink(b)
	link, err := h.LinkByName(p.BIf)
	if err != nil {
		b.Fatal(err)
	}
	oldMAC, err := net.ParseMAC(fakeOldMaster)
	if err != nil {
		b.Fatal(err)
	}
	stale := &netlink.Neigh{
		LinkIndex: link.Attrs().Index, IP: vips[0].Addr().AsSlice(),
		HardwareAddr: oldMAC, State: netlink.NUD_STALE,
	}
	var total time.Duration
	p.A.MustDo(b, func() error {
		for range b.N {
			b.StopTimer()
			if err := m.Detach(); err != nil {
				return err
			}
			if err := h.NeighSet(stale); err != nil {
				return err
			}
			b.StartTimer()
			t0 := time.Now()
			if err := m.Attach(); err != nil {
				return err
			}
			if _, err := a.Announce(vips); err != nil {
				return err
			}
			deadline := t0.Add(5 * time.Second)
			for pointsAt(h, p.BIf, vips[0].Addr(), p.AMAC) != nil {
				if time.Now().After(deadline) {
					return fmt.Errorf("neighbour not updated within 5s")
				}
			}
			total += time.Since(t0)
		}
		return nil
	})
	b.ReportMetric(float64(total.Microseconds())/float64(b.N), "seen-by-peer-µs/op")
}
