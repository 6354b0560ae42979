package bgp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
)

// Loopback puts service addresses on an interface (lo by default) so that the kernel delivers
// the traffic routed to them to HAProxy, and takes them off again.
type Loopback struct {
	link netlink.Link
}

// OpenLoopback finds the interface.
func OpenLoopback(name string) (*Loopback, error) {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("loopback interface %s: %w", name, err)
	}
	return &Loopback{link: link}, nil
}

func hostAddr(p netip.Prefix) *netlink.Addr {
	a := p.Addr()
	return &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}}
}

// Add puts p's address on the interface as a host address; present already is fine.
func (l *Loopback) Add(p netip.Prefix) error {
	if err := netlink.AddrReplace(l.link, hostAddr(p)); err != nil {
		return fmt.Errorf("add %s to %s: %w", p.Addr(), l.link.Attrs().Name, err)
	}
	return nil
}

// Remove takes p's address off the interface; absent already is fine.
func (l *Loopback) Remove(p netip.Prefix) error {
	err := netlink.AddrDel(l.link, hostAddr(p))
	if err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("remove %s from %s: %w", p.Addr(), l.link.Attrs().Name, err)
	}
	return nil
}

// Has reports whether p's address is on the interface.
func (l *Loopback) Has(p netip.Prefix) (bool, error) {
	family := netlink.FAMILY_V4
	if p.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	addrs, err := netlink.AddrList(l.link, family)
	if err != nil {
		return false, fmt.Errorf("list addresses of %s: %w", l.link.Attrs().Name, err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == p.Addr() {
			return true, nil
		}
	}
	return false, nil
}

// RouterIDToward returns the IPv4 address this host would use toward peer: the default BGP
// identifier. For an IPv6 peer it is the first IPv4 address of the interface the route leaves by.
func RouterIDToward(peer netip.Addr) (netip.Addr, error) {
	routes, err := netlink.RouteGet(peer.AsSlice())
	if err != nil || len(routes) == 0 {
		return netip.Addr{}, fmt.Errorf("no route toward BGP peer %s to take a router id from (set bgp.router_id): %v", peer, err)
	}
	if src, ok := netip.AddrFromSlice(routes[0].Src); ok && src.Unmap().Is4() {
		return src.Unmap(), nil
	}
	link, err := netlink.LinkByIndex(routes[0].LinkIndex)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("interface toward BGP peer %s: %w", peer, err)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil || len(addrs) == 0 {
		return netip.Addr{}, fmt.Errorf("no IPv4 address on %s toward BGP peer %s to use as router id (set bgp.router_id)", link.Attrs().Name, peer)
	}
	a, _ := netip.AddrFromSlice(addrs[0].IP)
	return a.Unmap(), nil
}
