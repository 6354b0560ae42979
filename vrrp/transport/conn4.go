package transport

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/net/ipv4"
)

// conn4 is a Conn over a raw IPv4 socket for protocol 112.
type conn4 struct {
	pc        *ipv4.PacketConn
	ifi       *net.Interface
	src       netip.Addr
	dsts      []netip.Addr
	multicast bool
	wcm       *ipv4.ControlMessage // read-only after listen4: shared by concurrent writers
}

var (
	_ Conn      = (*conn4)(nil)
	_ Endpoints = (*conn4)(nil)
)

func listen4(ifi *net.Interface, src netip.Addr, peers []netip.Addr) (c *conn4, err error) {
	lc, err := net.ListenPacket(fmt.Sprintf("ip4:%d", Protocol), "0.0.0.0")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lc.Close()
		}
	}()
	pc := ipv4.NewPacketConn(lc)
	c = &conn4{
		pc:        pc,
		ifi:       ifi,
		src:       src,
		dsts:      destinations(4, peers),
		multicast: len(peers) == 0,
		wcm:       &ipv4.ControlMessage{Src: src.AsSlice()},
	}
	if err := setMulticastAll(lc.(*net.IPConn), 4, false); err != nil {
		return nil, err
	}
	if err := pc.SetControlMessage(ipv4.FlagTTL|ipv4.FlagDst|ipv4.FlagInterface, true); err != nil {
		return nil, fmt.Errorf("enable control messages: %w", err)
	}
	if err := pc.SetTOS(tosInternetControl); err != nil {
		return nil, fmt.Errorf("set TOS: %w", err)
	}
	if !c.multicast {
		if err := pc.SetTTL(TTL); err != nil {
			return nil, fmt.Errorf("set TTL: %w", err)
		}
		return c, nil
	}
	// The interface index in IP_PKTINFO pins multicast adverts to our interface even if the
	// routing table would send 224.0.0.0/4 elsewhere.
	c.wcm.IfIndex = ifi.Index
	group := &net.IPAddr{IP: Group(4).AsSlice()}
	if err := pc.JoinGroup(ifi, group); err != nil {
		return nil, fmt.Errorf("join %s: %w", group, err)
	}
	if err := pc.SetMulticastInterface(ifi); err != nil {
		return nil, fmt.Errorf("set multicast interface: %w", err)
	}
	if err := pc.SetMulticastTTL(TTL); err != nil {
		return nil, fmt.Errorf("set multicast TTL: %w", err)
	}
	if err := pc.SetMulticastLoopback(false); err != nil {
		return nil, fmt.Errorf("disable multicast loopback: %w", err)
	}
	return c, nil
}

// ReadAdvert implements Conn. x/net/ipv4 reads the IP header into a buffer of its own, so the
// payload starts at buf[0] (verified by TestMulticast4).
func (c *conn4) ReadAdvert(buf []byte) ([]byte, netip.Addr, netip.Addr, int, error) {
	for {
		n, cm, from, err := c.pc.ReadFrom(buf)
		if err != nil {
			return nil, netip.Addr{}, netip.Addr{}, 0, fmt.Errorf("read VRRP advert on %s: %w", c.ifi.Name, err)
		}
		ttl := -1
		var dst netip.Addr
		if cm != nil {
			if c.multicast && cm.IfIndex != c.ifi.Index {
				continue // another interface's instance
			}
			ttl, dst = cm.TTL, ipOf(cm.Dst)
		}
		return buf[:n], addrOf(from), dst, ttl, nil
	}
}

// WriteAdvert implements Conn.
func (c *conn4) WriteAdvert(payload []byte) error {
	var errs []error
	for _, d := range c.dsts {
		if err := c.write(payload, d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// WriteAdvertTo implements Endpoints.
func (c *conn4) WriteAdvertTo(payload []byte, dst netip.Addr) error {
	dst = dst.Unmap()
	for _, d := range c.dsts {
		if d == dst {
			return c.write(payload, d)
		}
	}
	return fmt.Errorf("send VRRP advert on %s: %w", c.ifi.Name, errUnknownDestination(dst))
}

func (c *conn4) write(payload []byte, dst netip.Addr) error {
	if _, err := c.pc.WriteTo(payload, c.wcm, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return fmt.Errorf("send VRRP advert from %s to %s on %s: %w", c.src, dst, c.ifi.Name, err)
	}
	return nil
}

// Source implements Endpoints.
func (c *conn4) Source() netip.Addr { return c.src }

// Destinations implements Endpoints.
func (c *conn4) Destinations() []netip.Addr { return append([]netip.Addr(nil), c.dsts...) }

// Close implements Conn; it unblocks a pending ReadAdvert.
func (c *conn4) Close() error { return c.pc.Close() }
