// Package transport sends and receives VRRP advertisements (IP protocol 112) on raw IPv4 and
// IPv6 sockets: multicast to 224.0.0.18 / ff02::12 on one interface (RFC 5798 section 5.1), or
// unicast to configured peers (keepalived's unicast_peer).
//
// A Hub owns the sockets of one network namespace and shares them between the instances that
// Join it: one socket per interface and family for multicast, one per family for unicast. Its one
// reader goroutine per socket hands each packet to the instance of the VRID it carries (byte 1 of
// every VRRP version), so that n instances on a link cost one socket, one goroutine and one
// wake-up per packet instead of n of each (keepalived, too, keeps one socket per interface and
// family). Packets for a VRID that no instance here runs are counted per interface and
// otherwise ignored: they are other routers on the segment.
//
// It deals in VRRP payloads only (no IP header); the codec in package vrrp builds and parses
// them. What a received packet carried besides its payload (source, destination, TTL or hop
// limit) is handed over with it, so that the caller can apply RFC 5798's receive checks (TTL
// 255, peer list) and count every drop.
//
// Choices, and why:
//   - Every packet of a member's VRID is delivered, also from sources that are not configured
//     peers, and to a multicast member also those sent by unicast to the host (a raw socket is
//     handed both): the caller's vrrp.Filter rejects those as DropPeer and DropDestination and
//     counts them, which a silent filter here would hide.
//   - Multicast: packets that arrived on another interface are skipped, because they belong to
//     that interface's socket. Unicast has one socket per family, not per interface (each packet
//     reaches it exactly once, whichever interface it came in by), and a packet goes only to a
//     member on the interface it came in by, as keepalived's read socket, bound to the instance's
//     interface, sees it: a link-local peer address is only unique on its link. Instances
//     sharing a VRID on different interfaces are told apart by the interface, then by their
//     peers; a packet for none of them is a stray of its interface.
//   - The sockets set IP_MULTICAST_ALL / IPV6_MULTICAST_ALL off, so a multicast socket sees only
//     the group it joined itself, on its own interface, and a unicast socket sees no multicast at
//     all (Linux would otherwise deliver 224.0.0.18 joined by any other socket on the host).
//   - Every advert carries its source address (and for multicast and link-local destinations
//     the interface) in a control message, so that it leaves from exactly the address the
//     VRRPv3 pseudo-header checksum was computed with, whichever member of a socket sends it.
//   - TTL / hop limit 255 (RFC 5798 section 5.1.1.3), multicast loopback off, TOS / traffic
//     class 0xc0 (internetwork control), as keepalived sends.
//   - The kernel computes no checksum: raw IPv4 sockets never do for protocol 112, and the IPv6
//     socket has IPV6_CHECKSUM explicitly off.
//   - The hot path (receive, dispatch, send) allocates nothing: recvmsg and sendmsg run on the
//     socket's file descriptor through syscall.RawConn (so the Go netpoller still does the
//     waiting and Close still unblocks a read), into buffers, control messages and socket
//     addresses built once per socket or per member. TestNoAllocations holds it to that.
package transport

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"

	"github.com/hapair/hapair/internal/nldump"
	"github.com/hapair/hapair/vrrp"
	"golang.org/x/sys/unix"
)

// Protocol is the IP protocol number of VRRP.
const Protocol = 112

// TTL is the only TTL / hop limit VRRP sends and accepts.
const TTL = 255

// tosInternetControl is the TOS byte keepalived puts on adverts (precedence 6, "internetwork
// control"), so that QoS treats them like other routing protocol traffic.
const tosInternetControl = 0xc0

// Options says where an instance's adverts go.
type Options struct {
	Interface string // the interface the instance runs on (multicast group joined there)
	Family    int    // 4 or 6
	// SourceAddr is unicast_src_ip, or zero for the interface's primary address (PrimaryAddr:
	// first primary IPv4 address, or the IPv6 link-local address that RFC 5798 requires).
	SourceAddr netip.Addr
	Peers      []netip.Addr // unicast when non-empty
}

// Group returns the VRRP multicast group of an address family: 224.0.0.18 or ff02::12.
func Group(family int) netip.Addr { return vrrp.Group(family) }

// ErrNoAddress is returned by PrimaryAddr when the interface has no usable address.
var ErrNoAddress = errors.New("no usable address")

// resolve checks opts and finds the interface and the source address.
func resolve(opts Options) (*net.Interface, netip.Addr, error) {
	if opts.Family != 4 && opts.Family != 6 {
		return nil, netip.Addr{}, fmt.Errorf("listen for VRRP: address family %d, want 4 or 6", opts.Family)
	}
	ifi, err := net.InterfaceByName(opts.Interface)
	if err != nil {
		return nil, netip.Addr{}, fmt.Errorf("listen for VRRP on %q: %w", opts.Interface, err)
	}
	// net.InterfaceByName's HardwareAddr points into the whole netlink dump it parsed (about
	// 10 KiB): an instance that kept ifi kept the dump.
	ifi.HardwareAddr = slices.Clone(ifi.HardwareAddr)
	for _, p := range opts.Peers {
		if !familyIs(p, opts.Family) {
			return nil, netip.Addr{}, fmt.Errorf("listen for VRRP on %s: peer %s is not IPv%d", ifi.Name, p, opts.Family)
		}
	}
	src := opts.SourceAddr.Unmap().WithZone("")
	if !src.IsValid() {
		src, err = PrimaryAddr(ifi.Name, opts.Family)
		if err != nil {
			return nil, netip.Addr{}, fmt.Errorf("listen for VRRP on %s: %w", ifi.Name, err)
		}
	}
	if !familyIs(src, opts.Family) {
		return nil, netip.Addr{}, fmt.Errorf("listen for VRRP on %s: source %s is not IPv%d", ifi.Name, src, opts.Family)
	}
	if opts.Family == 6 && len(opts.Peers) == 0 && !src.IsLinkLocalUnicast() {
		// RFC 5798 section 5.1.2.1; receivers such as keepalived check it.
		return nil, netip.Addr{}, fmt.Errorf("listen for VRRP on %s: IPv6 multicast source %s must be link-local", ifi.Name, src)
	}
	return ifi, src, nil
}

// HostHas says whether a is a usable address of one of the host's interfaces (unicast_src_ip
// must be); an error wrapping ErrNoAddress when it is not.
func HostHas(a netip.Addr) error {
	a = a.Unmap()
	nlFamily := netlink.FAMILY_V4
	if a.Is6() {
		nlFamily = netlink.FAMILY_V6
	}
	addrs, err := nldump.Retry(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, nlFamily) })
	if err != nil {
		return fmt.Errorf("addresses of the host: %w", err)
	}
	for _, x := range addrs {
		if ip, ok := netip.AddrFromSlice(x.IP); ok && ip.Unmap() == a && x.Flags&unix.IFA_F_DADFAILED == 0 {
			return nil
		}
	}
	return fmt.Errorf("%s is not an address of this host: %w", a, ErrNoAddress)
}

func familyIs(a netip.Addr, family int) bool {
	a = a.Unmap()
	return (family == 4 && a.Is4()) || (family == 6 && a.Is6())
}

// PrimaryAddr returns the address an instance sends from by default: the interface's first
// primary (not secondary) IPv4 address, or its IPv6 link-local address, preferring one whose
// duplicate address detection is over. Call it after removing stale VIPs: a VIP in another
// subnet than the interface's own address is itself a primary address to the kernel.
//
// exclude are addresses that are not the host's own (the VIPs) and never chosen. When every
// primary IPv4 address is excluded, a secondary one is: after the subnet's own address was
// deleted (which takes its secondaries with it) and a VIP put back became the subnet's
// primary, an address added later is a secondary of that VIP.
func PrimaryAddr(ifname string, family int, exclude ...netip.Addr) (netip.Addr, error) {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("primary address of %s: %w", ifname, err)
	}
	nlFamily := netlink.FAMILY_V4
	if family == 6 {
		nlFamily = netlink.FAMILY_V6
	}
	addrs, err := nldump.Retry(func() ([]netlink.Addr, error) { return netlink.AddrList(link, nlFamily) })
	if err != nil {
		return netip.Addr{}, fmt.Errorf("primary address of %s: list addresses: %w", ifname, err)
	}
	var tentative, secondary netip.Addr
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if slices.Contains(exclude, ip) {
			continue
		}
		switch {
		case family == 4 && ip.Is4() && a.Flags&unix.IFA_F_SECONDARY == 0:
			return ip, nil
		case family == 4 && ip.Is4():
			if !secondary.IsValid() {
				secondary = ip
			}
		case family == 6 && ip.Is6() && ip.IsLinkLocalUnicast():
			if a.Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0 {
				return ip, nil
			}
			if !tentative.IsValid() && a.Flags&unix.IFA_F_DADFAILED == 0 {
				tentative = ip
			}
		}
	}
	if tentative.IsValid() {
		// Sending fails until DAD ends (about a second); the caller retries at its next advert.
		return tentative, nil
	}
	if secondary.IsValid() {
		return secondary, nil
	}
	what := "IPv4 address"
	if family == 6 {
		what = "IPv6 link-local address"
	}
	return netip.Addr{}, fmt.Errorf("primary address of %s: %w (%s)", ifname, ErrNoAddress, what)
}
