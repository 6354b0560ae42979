package vip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
)

// ErrNotEthernet is returned by NewAnnouncer for an interface without a 6-byte hardware
// address, where neither ARP nor neighbour discovery applies.
var ErrNotEthernet = errors.New("not an Ethernet interface")

const (
	etherTypeARP  = 0x0806
	etherTypeIPv6 = 0x86dd
	ethHeaderLen  = 14
	ipv6HeaderLen = 40
)

// Announcer tells the link that the VIPs now live at this interface's MAC address. The frames
// are the ones keepalived 2.2.7 sends, byte for byte (see TestFramesMatchKeepalived):
//
//   - IPv4: a gratuitous ARP request, broadcast, sender and target IP both the VIP, target
//     hardware address ff:ff:ff:ff:ff:ff. A request (rather than a reply) is what RFC 5227
//     calls an ARP announcement, and Linux neighbours update an existing entry from it even
//     with arp_accept=0.
//   - IPv6: an unsolicited neighbour advertisement from the VIP to ff02::1, hop limit 255,
//     Override set, Solicited clear, Router set only while IPv6 forwarding is on for the
//     interface (as the kernel and keepalived do), with a target link-layer address option.
//
// Both go out through one AF_PACKET socket that is opened once (Announce is on the takeover
// path) and bound to no protocol, so the kernel never queues received frames on it. Building
// the IPv6 frame ourselves, rather than sending through an ICMPv6 socket, lets the NA leave
// from the VIP as source whatever the state of the interface's other addresses.
//
// The MAC address is read once, by NewAnnouncer: make a new Announcer if it changes.
type Announcer struct {
	ifname     string
	hw         net.HardwareAddr
	conn       net.PacketConn
	forwarding func() bool // IPv6 forwarding on the interface, for the NA Router flag
	closeExtra *os.File    // the forwarding sysctl, kept open
}

// NewAnnouncer opens the raw socket on ifname. It must run in the interface's network
// namespace. Close it when done.
func NewAnnouncer(ifname string) (*Announcer, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("new announcer on %s: %w", ifname, err)
	}
	// net.InterfaceByName's HardwareAddr points into the whole netlink dump it parsed (about
	// 10 KiB): the announcer and its packet socket keep ifi, so they kept the dump.
	ifi.HardwareAddr = slices.Clone(ifi.HardwareAddr)
	if len(ifi.HardwareAddr) != 6 {
		return nil, fmt.Errorf("new announcer on %s: %w", ifname, ErrNotEthernet)
	}
	// Protocol 0: a socket that sends only. Its frames carry their own EtherType.
	c, err := packet.Listen(ifi, packet.Raw, 0, nil)
	if err != nil {
		return nil, fmt.Errorf("new announcer on %s: open packet socket: %w", ifname, err)
	}
	// /proc/sys/net follows the reading thread's namespace: open the file now, in ours.
	sysctl := filepath.Join("/proc/sys/net/ipv6/conf", ifname, "forwarding")
	f, err := os.Open(sysctl)
	if err != nil {
		f = nil // IPv6 disabled: no NA will be sent anyway, Router stays clear
	}
	a := newAnnouncer(ifi, c, func() bool { return readFlag(f) })
	a.closeExtra = f
	return a, nil
}

func newAnnouncer(ifi *net.Interface, c net.PacketConn, forwarding func() bool) *Announcer {
	return &Announcer{ifname: ifi.Name, hw: ifi.HardwareAddr, conn: c, forwarding: forwarding}
}

// readFlag reads a 0/1 sysctl from an open file, from its start.
func readFlag(f *os.File) bool {
	if f == nil {
		return false
	}
	b := make([]byte, 8)
	n, _ := f.ReadAt(b, 0)
	return strings.TrimSpace(string(b[:n])) == "1"
}

// Announce sends one round: one gratuitous ARP per IPv4 VIP and one unsolicited NA per IPv6
// VIP. It returns how many frames went out; a failure for one VIP does not stop the others.
// Repeats (keepalived's garp_master_repeat) are the caller's to schedule.
func (a *Announcer) Announce(vips []netip.Prefix) (int, error) {
	sent := 0
	var errs []error
	router := false
	for _, p := range vips {
		if p.Addr().Unmap().Is6() {
			router = a.forwarding()
			break
		}
	}
	for _, p := range vips {
		frame, dst, err := a.frame(p.Addr(), router)
		if err == nil {
			_, err = a.conn.WriteTo(frame, &packet.Addr{HardwareAddr: dst})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("announce %s on %s: %w", p.Addr(), a.ifname, err))
			continue
		}
		sent++
	}
	return sent, errors.Join(errs...)
}

// frame builds the Ethernet frame announcing ip, and returns it with its destination MAC.
func (a *Announcer) frame(ip netip.Addr, router bool) ([]byte, net.HardwareAddr, error) {
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		broadcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
		p, err := arp.NewPacket(arp.OperationRequest, a.hw, ip, broadcast, ip)
		if err != nil {
			return nil, nil, err
		}
		body, err := p.MarshalBinary()
		if err != nil {
			return nil, nil, err
		}
		return ethernet(broadcast, a.hw, etherTypeARP, body), broadcast, nil
	}
	allNodes := netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 15: 0x01})
	na := &ndp.NeighborAdvertisement{
		Router:        router,
		Override:      true,
		TargetAddress: ip,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: a.hw}},
	}
	icmp, err := ndp.MarshalMessageChecksum(na, ip, allNodes)
	if err != nil {
		return nil, nil, err
	}
	pkt := make([]byte, ipv6HeaderLen, ipv6HeaderLen+len(icmp))
	pkt[0] = 6 << 4 // version 6, traffic class 0, flow label 0
	binary.BigEndian.PutUint16(pkt[4:], uint16(len(icmp)))
	pkt[6] = 58           // next header: ICMPv6
	pkt[7] = ndp.HopLimit // 255, or receivers drop it (RFC 4861 section 7.1.2)
	src, dst := ip.As16(), allNodes.As16()
	copy(pkt[8:], src[:])
	copy(pkt[24:], dst[:])
	pkt = append(pkt, icmp...)
	mac := net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1} // RFC 2464 section 7 mapping of ff02::1
	return ethernet(mac, a.hw, etherTypeIPv6, pkt), mac, nil
}

// ethernet prepends an Ethernet header. The frame is not padded to 60 bytes: the driver pads
// on the wire, and keepalived sends the same short frames.
func ethernet(dst, src net.HardwareAddr, etherType uint16, payload []byte) []byte {
	f := make([]byte, ethHeaderLen, ethHeaderLen+len(payload))
	copy(f[0:6], dst)
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:], etherType)
	return append(f, payload...)
}

// Close closes the socket.
func (a *Announcer) Close() error {
	err := a.conn.Close()
	if a.closeExtra != nil {
		a.closeExtra.Close()
	}
	if err != nil {
		return fmt.Errorf("close announcer on %s: %w", a.ifname, err)
	}
	return nil
}
