// Package transport sends and receives VRRP advertisements (IP protocol 112) on raw IPv4 and
// IPv6 sockets: multicast to 224.0.0.18 / ff02::12 on one interface (RFC 5798 section 5.1), or
// unicast to configured peers (keepalived's unicast_peer).
//
// It deals in VRRP payloads only (no IP header); the codec in package vrrp builds and parses
// them. What a received packet carried besides its payload (source, destination, TTL or hop
// limit) comes from the kernel's control messages, so that the caller can apply RFC 5798's
// receive checks (TTL 255, peer list) and count every drop.
//
// Choices, and why:
//   - ReadAdvert returns every VRRP packet that reached this socket, also from sources that are
//     not configured peers: the caller's vrrp.Filter rejects those as DropPeer and counts them,
//     which a silent filter here would hide.
//   - Multicast: packets that arrived on another interface are skipped, because they belong to
//     another instance. Unicast: the interface is not checked, because the route back to a peer
//     may use another interface than the one holding the VIPs (as keepalived allows).
//   - The socket sets IP_MULTICAST_ALL / IPV6_MULTICAST_ALL off, so it sees only the group it
//     joined itself, on its own interface, and a unicast socket sees no multicast at all
//     (Linux would otherwise deliver 224.0.0.18 joined by any other socket on the host).
//   - Every advert carries its source address in a control message, so it leaves from exactly
//     the address the VRRPv3 pseudo-header checksum was computed with.
//   - TTL / hop limit 255 (RFC 5798 section 5.1.1.3), multicast loopback off, TOS / traffic
//     class 0xc0 (internetwork control), as keepalived sends.
//   - The kernel computes no checksum: raw IPv4 sockets never do for protocol 112, and the IPv6
//     socket has IPV6_CHECKSUM explicitly off.
package transport

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Protocol is the IP protocol number of VRRP.
const Protocol = 112

// TTL is the only TTL / hop limit VRRP sends and accepts.
const TTL = 255

// tosInternetControl is the TOS byte keepalived puts on adverts (precedence 6, "internetwork
// control"), so that QoS treats them like other routing protocol traffic.
const tosInternetControl = 0xc0

// Conn sends and receives VRRP advertisements for one instance.
type Conn interface {
	// ReadAdvert blocks for the next VRRP packet; payload excludes the IP header and aliases buf.
	// ttl is the received TTL (IPv4) or hop limit (IPv6), or -1 if the kernel did not report it.
	// After Close it returns an error promptly (errors.Is(err, net.ErrClosed)).
	ReadAdvert(buf []byte) (payload []byte, src, dst netip.Addr, ttl int, err error)
	// WriteAdvert sends payload to 224.0.0.18 / ff02::12 or to every unicast peer, TTL 255.
	// With several peers and VRRPv3 the checksum depends on the destination: see Endpoints.
	WriteAdvert(payload []byte) error
	Close() error
}

// Endpoints is implemented by every Conn that Listen returns. It is apart from Conn so that a
// test fake of Conn stays three methods long.
//
// A VRRPv3 checksum covers an IP pseudo-header that includes the destination (always for IPv6,
// by default for IPv4), so a unicast instance with several peers must build one payload per
// peer and send each with WriteAdvertTo. VRRPv2 and multicast need no such care.
type Endpoints interface {
	// Source is the address every advert leaves from (Options.SourceAddr or the primary address).
	Source() netip.Addr
	// Destinations is the multicast group, or the unicast peers in configured order.
	Destinations() []netip.Addr
	// WriteAdvertTo sends payload to one of Destinations.
	WriteAdvertTo(payload []byte, dst netip.Addr) error
}

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
func Group(family int) netip.Addr {
	if family == 6 {
		return netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 15: 0x12})
	}
	return netip.AddrFrom4([4]byte{224, 0, 0, 18})
}

// ErrNoAddress is returned by PrimaryAddr when the interface has no usable address.
var ErrNoAddress = errors.New("no usable address")

// Listen opens the raw socket for one instance: multicast on opts.Interface, or unicast to
// opts.Peers. It must run in the network namespace of the interface.
func Listen(opts Options) (Conn, error) {
	ifi, src, err := resolve(opts)
	if err != nil {
		return nil, err
	}
	if opts.Family == 6 {
		c, err := listen6(ifi, src, opts.Peers)
		if err != nil {
			return nil, fmt.Errorf("listen for VRRP on %s (IPv6): %w", ifi.Name, err)
		}
		return c, nil
	}
	c, err := listen4(ifi, src, opts.Peers)
	if err != nil {
		return nil, fmt.Errorf("listen for VRRP on %s (IPv4): %w", ifi.Name, err)
	}
	return c, nil
}

// resolve checks opts and finds the interface and the source address.
func resolve(opts Options) (*net.Interface, netip.Addr, error) {
	if opts.Family != 4 && opts.Family != 6 {
		return nil, netip.Addr{}, fmt.Errorf("listen for VRRP: address family %d, want 4 or 6", opts.Family)
	}
	ifi, err := net.InterfaceByName(opts.Interface)
	if err != nil {
		return nil, netip.Addr{}, fmt.Errorf("listen for VRRP on %q: %w", opts.Interface, err)
	}
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

func familyIs(a netip.Addr, family int) bool {
	a = a.Unmap()
	return (family == 4 && a.Is4()) || (family == 6 && a.Is6())
}

// PrimaryAddr returns the address an instance sends from by default: the interface's first
// primary (not secondary) IPv4 address, or its IPv6 link-local address, preferring one whose
// duplicate address detection is over. Call it after removing stale VIPs: a VIP in another
// subnet than the interface's own address is itself a primary address to the kernel.
func PrimaryAddr(ifname string, family int) (netip.Addr, error) {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("primary address of %s: %w", ifname, err)
	}
	nlFamily := netlink.FAMILY_V4
	if family == 6 {
		nlFamily = netlink.FAMILY_V6
	}
	var addrs []netlink.Addr
	for range 3 { // a dump interrupted by a concurrent change is retried
		addrs, err = netlink.AddrList(link, nlFamily)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return netip.Addr{}, fmt.Errorf("primary address of %s: list addresses: %w", ifname, err)
	}
	var tentative netip.Addr
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		switch {
		case family == 4 && ip.Is4() && a.Flags&unix.IFA_F_SECONDARY == 0:
			return ip, nil
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
	what := "IPv4 address"
	if family == 6 {
		what = "IPv6 link-local address"
	}
	return netip.Addr{}, fmt.Errorf("primary address of %s: %w (%s)", ifname, ErrNoAddress, what)
}

// setMulticastAll turns IP_MULTICAST_ALL / IPV6_MULTICAST_ALL on or off for a socket.
func setMulticastAll(sc syscall.Conn, family int, on bool) error {
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	level, opt := unix.IPPROTO_IP, unix.IP_MULTICAST_ALL
	if family == 6 {
		level, opt = unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_ALL
	}
	v := 0
	if on {
		v = 1
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), level, opt, v)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("setsockopt multicast_all: %w", serr)
	}
	return nil
}

// addrOf turns a net.Addr from ReadFrom into a netip.Addr without zone or v4-in-v6 mapping.
func addrOf(a net.Addr) netip.Addr {
	ipa, ok := a.(*net.IPAddr)
	if !ok {
		return netip.Addr{}
	}
	ip, _ := netip.AddrFromSlice(ipa.IP)
	return ip.Unmap()
}

func ipOf(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

// destinations returns the group, or the peers, as the list to send to.
func destinations(family int, peers []netip.Addr) []netip.Addr {
	if len(peers) == 0 {
		return []netip.Addr{Group(family)}
	}
	d := make([]netip.Addr, len(peers))
	for i, p := range peers {
		d[i] = p.Unmap().WithZone("")
	}
	return d
}

func errUnknownDestination(dst netip.Addr) error {
	return fmt.Errorf("%s is not a destination of this connection", dst)
}
