package transport

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/net/ipv6"
)

// conn6 is a Conn over a raw IPv6 socket for protocol 112 (VRRPv3 only).
type conn6 struct {
	pc        *ipv6.PacketConn
	ifi       *net.Interface
	src       netip.Addr
	dsts      []netip.Addr
	multicast bool
	// Control messages for writes, read-only after listen6. scoped pins the interface: it is
	// used for the multicast group and link-local peers, routed for other unicast peers.
	scoped, routed *ipv6.ControlMessage
}

var (
	_ Conn      = (*conn6)(nil)
	_ Endpoints = (*conn6)(nil)
)

func listen6(ifi *net.Interface, src netip.Addr, peers []netip.Addr) (c *conn6, err error) {
	lc, err := net.ListenPacket(fmt.Sprintf("ip6:%d", Protocol), "::")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lc.Close()
		}
	}()
	pc := ipv6.NewPacketConn(lc)
	c = &conn6{
		pc:        pc,
		ifi:       ifi,
		src:       src,
		dsts:      destinations(6, peers),
		multicast: len(peers) == 0,
		scoped: &ipv6.ControlMessage{
			TrafficClass: tosInternetControl, HopLimit: TTL, Src: src.AsSlice(), IfIndex: ifi.Index,
		},
		routed: &ipv6.ControlMessage{
			TrafficClass: tosInternetControl, HopLimit: TTL, Src: src.AsSlice(),
		},
	}
	if err := setMulticastAll(lc.(*net.IPConn), 6, false); err != nil {
		return nil, err
	}
	// Off by default for protocols other than ICMPv6; made explicit because a kernel-computed
	// checksum at some offset would corrupt the VRRP payload the codec already checksummed.
	if err := pc.SetChecksum(false, 0); err != nil {
		return nil, fmt.Errorf("disable IPV6_CHECKSUM: %w", err)
	}
	if err := pc.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst|ipv6.FlagInterface, true); err != nil {
		return nil, fmt.Errorf("enable control messages: %w", err)
	}
	if err := pc.SetTrafficClass(tosInternetControl); err != nil {
		return nil, fmt.Errorf("set traffic class: %w", err)
	}
	if err := pc.SetHopLimit(TTL); err != nil {
		return nil, fmt.Errorf("set hop limit: %w", err)
	}
	if !c.multicast {
		return c, nil
	}
	group := &net.IPAddr{IP: Group(6).AsSlice()}
	if err := pc.JoinGroup(ifi, group); err != nil {
		return nil, fmt.Errorf("join %s: %w", group, err)
	}
	if err := pc.SetMulticastInterface(ifi); err != nil {
		return nil, fmt.Errorf("set multicast interface: %w", err)
	}
	if err := pc.SetMulticastHopLimit(TTL); err != nil {
		return nil, fmt.Errorf("set multicast hop limit: %w", err)
	}
	if err := pc.SetMulticastLoopback(false); err != nil {
		return nil, fmt.Errorf("disable multicast loopback: %w", err)
	}
	return c, nil
}

// ReadAdvert implements Conn. IPv6 raw sockets never deliver the IPv6 header.
func (c *conn6) ReadAdvert(buf []byte) ([]byte, netip.Addr, netip.Addr, int, error) {
	for {
		n, cm, from, err := c.pc.ReadFrom(buf)
		if err != nil {
			return nil, netip.Addr{}, netip.Addr{}, 0, fmt.Errorf("read VRRP advert on %s: %w", c.ifi.Name, err)
		}
		hop := -1
		var dst netip.Addr
		if cm != nil {
			if c.multicast && cm.IfIndex != c.ifi.Index {
				continue // another interface's instance
			}
			hop, dst = cm.HopLimit, ipOf(cm.Dst)
		}
		return buf[:n], addrOf(from), dst, hop, nil
	}
}

// WriteAdvert implements Conn.
func (c *conn6) WriteAdvert(payload []byte) error {
	var errs []error
	for _, d := range c.dsts {
		if err := c.write(payload, d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// WriteAdvertTo implements Endpoints.
func (c *conn6) WriteAdvertTo(payload []byte, dst netip.Addr) error {
	dst = dst.WithZone("")
	for _, d := range c.dsts {
		if d == dst {
			return c.write(payload, d)
		}
	}
	return fmt.Errorf("send VRRP advert on %s: %w", c.ifi.Name, errUnknownDestination(dst))
}

func (c *conn6) write(payload []byte, dst netip.Addr) error {
	cm, to := c.routed, &net.IPAddr{IP: dst.AsSlice()}
	if dst.IsMulticast() || dst.IsLinkLocalUnicast() {
		cm, to.Zone = c.scoped, c.ifi.Name
	}
	if _, err := c.pc.WriteTo(payload, cm, to); err != nil {
		return fmt.Errorf("send VRRP advert from %s to %s on %s: %w", c.src, dst, c.ifi.Name, err)
	}
	return nil
}

// Source implements Endpoints.
func (c *conn6) Source() netip.Addr { return c.src }

// Destinations implements Endpoints.
func (c *conn6) Destinations() []netip.Addr { return append([]netip.Addr(nil), c.dsts...) }

// Close implements Conn; it unblocks a pending ReadAdvert.
func (c *conn6) Close() error { return c.pc.Close() }
