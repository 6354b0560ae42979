package vrrp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// IPProtocol is the IP protocol number of VRRP (IPv4 protocol, IPv6 next header).
const IPProtocol = 112

// Authentication types of VRRPv2 (RFC 3768 section 5.3.6). VRRPv3 has no authentication.
const (
	AuthNone   uint8 = 0 // no authentication
	AuthSimple uint8 = 1 // simple text password, keepalived's auth_type PASS
	AuthAH     uint8 = 2 // IPsec AH, carried as IP protocol 51: not implemented by hapair
)

const (
	typeAdvertisement = 1
	headerLen         = 8 // fixed VRRP header, both versions
	authLen           = 8 // VRRPv2 authentication data
	maxAddrs          = 255
	centisecond       = v3TimerUnit
)

// Advert is one VRRP advertisement, version-independent.
type Advert struct {
	Version  int           // 2 or 3
	VRID     uint8         // virtual router identifier
	Priority uint8         // 0 = master releases, 255 = address owner
	Interval time.Duration // v2: whole seconds on the wire; v3: centiseconds (12 bits)
	AuthType uint8         // v2 only: 0 none, 1 simple text (PASS), 2 AH
	AuthData [8]byte       // v2 only: the password zero-padded to 8 bytes for AuthSimple
	Addrs    []netip.Addr  // all IPv4, or (v3 only) all IPv6
}

// ChecksumMode says whether a VRRPv3 checksum over IPv4 covers the IPv4 pseudo-header.
// VRRPv2 never has one and VRRPv3 over IPv6 always has one, whatever the mode.
type ChecksumMode int

const (
	// ChecksumWithPseudoHeader is RFC 5798 as keepalived implements it by default for v3/IPv4.
	ChecksumWithPseudoHeader ChecksumMode = iota
	// ChecksumWithoutPseudoHeader is RFC 9568, Cisco, Juniper and the v3_checksum_as_v2 of
	// keepalived releases after 2.2.7.
	ChecksumWithoutPseudoHeader
)

// String returns the mode as a config or log word.
func (m ChecksumMode) String() string {
	switch m {
	case ChecksumWithPseudoHeader:
		return "with-pseudo-header"
	case ChecksumWithoutPseudoHeader:
		return "without-pseudo-header"
	}
	return fmt.Sprintf("ChecksumMode(%d)", int(m))
}

// DropReason says why a received packet was dropped. The values are the reason label of
// hapair_vrrp_packets_dropped_total: dashboards and alert rules depend on them.
type DropReason string

// Every reason a received packet can be dropped for.
const (
	DropLength      DropReason = "length"      // shorter than the header, or not the length its address count says
	DropVersion     DropReason = "version"     // neither 2 nor 3, or not the version configured
	DropType        DropReason = "type"        // not an advertisement
	DropChecksum    DropReason = "checksum"    // bad checksum (every accepted form tried)
	DropTTL         DropReason = "ttl"         // IPv4 TTL or IPv6 hop limit not 255: sent from off-link
	DropVRID        DropReason = "vrid"        // another virtual router
	DropAuth        DropReason = "auth"        // v2 authentication type or password mismatch
	DropInterval    DropReason = "interval"    // zero interval, or v2 interval not ours
	DropPeer        DropReason = "peer"        // unicast: source is not a configured peer
	DropFamily      DropReason = "family"      // address family of the packet and its addresses disagree
	DropAddrs       DropReason = "addresses"   // advertised addresses are not ours (and not from the owner)
	DropDestination DropReason = "destination" // multicast instance: sent to another address than the VRRP group
	// DropOther is for an advert the instance could not take (its queue was full) or an error
	// that names no reason. It is not in DropReasons: it should never happen, so its series
	// appears only when it does.
	DropOther DropReason = "other"
)

// DropError is the error Parse and Filter.Check return for a packet that must be dropped.
type DropError struct {
	Reason DropReason
	Detail string // for the log: what was received and what was expected
}

func (e *DropError) Error() string {
	if e.Detail == "" {
		return "drop VRRP packet: " + string(e.Reason)
	}
	return "drop VRRP packet: " + string(e.Reason) + ": " + e.Detail
}

// ReasonOf returns the DropReason of err, or "" if err is not (or does not wrap) a *DropError.
func ReasonOf(err error) DropReason {
	var de *DropError
	if errors.As(err, &de) {
		return de.Reason
	}
	return ""
}

// DropReasons lists every DropReason, so that a counter can start every label at zero.
func DropReasons() []DropReason {
	return []DropReason{DropLength, DropVersion, DropType, DropChecksum, DropTTL, DropVRID,
		DropAuth, DropInterval, DropPeer, DropFamily, DropAddrs, DropDestination}
}

func drop(reason DropReason, detail string) error {
	return &DropError{Reason: reason, Detail: detail}
}

// Marshal builds the VRRP payload (no IP header). src/dst are the IP source and destination
// the payload will be sent with: the v3 checksum covers them. For v2 they are not used.
func (a *Advert) Marshal(src, dst netip.Addr, mode ChecksumMode) ([]byte, error) {
	return a.Append(nil, src, dst, mode)
}

// Append is Marshal appending to b, so that a sender can reuse one buffer for every advert.
func (a *Advert) Append(b []byte, src, dst netip.Addr, mode ChecksumMode) ([]byte, error) {
	if len(a.Addrs) > maxAddrs {
		return b, fmt.Errorf("marshal VRRP advert: %d addresses, at most %d fit", len(a.Addrs), maxAddrs)
	}
	switch a.Version {
	case 2:
		return a.appendV2(b)
	case 3:
		return a.appendV3(b, src.Unmap(), dst.Unmap(), mode)
	}
	return b, fmt.Errorf("marshal VRRP advert: version %d, want 2 or 3", a.Version)
}

func (a *Advert) appendV2(b []byte) ([]byte, error) {
	if err := CheckAdvertInterval(2, a.Interval); err != nil {
		return b, fmt.Errorf("marshal VRRPv2 advert: interval %w", err)
	}
	for _, ip := range a.Addrs {
		if !ip.Is4() {
			return b, fmt.Errorf("marshal VRRPv2 advert: address %v is not IPv4", ip)
		}
	}
	start := len(b)
	b = append(b,
		2<<4|typeAdvertisement, a.VRID, a.Priority, uint8(len(a.Addrs)),
		a.AuthType, uint8(a.Interval/time.Second), 0, 0)
	for _, ip := range a.Addrs {
		v4 := ip.As4()
		b = append(b, v4[:]...)
	}
	b = append(b, a.AuthData[:]...)
	msg := b[start:]
	binary.BigEndian.PutUint16(msg[6:], ^fold(sum(msg, 0)))
	return b, nil
}

func (a *Advert) appendV3(b []byte, src, dst netip.Addr, mode ChecksumMode) ([]byte, error) {
	if !src.IsValid() || !dst.IsValid() || src.Is4() != dst.Is4() {
		return b, fmt.Errorf("marshal VRRPv3 advert: source %v and destination %v must be addresses of one family", src, dst)
	}
	if err := CheckAdvertInterval(3, a.Interval); err != nil {
		return b, fmt.Errorf("marshal VRRPv3 advert: interval %w", err)
	}
	if mode != ChecksumWithPseudoHeader && mode != ChecksumWithoutPseudoHeader {
		return b, fmt.Errorf("marshal VRRPv3 advert: unknown %v", mode)
	}
	for _, ip := range a.Addrs {
		if !ip.IsValid() || ip.Is4() != src.Is4() {
			return b, fmt.Errorf("marshal VRRPv3 advert: address %v is not of the family of source %v", ip, src)
		}
	}
	cs := uint16(a.Interval / centisecond)
	start := len(b)
	b = append(b,
		3<<4|typeAdvertisement, a.VRID, a.Priority, uint8(len(a.Addrs)),
		uint8(cs>>8), uint8(cs), 0, 0)
	for _, ip := range a.Addrs {
		if src.Is4() {
			v4 := ip.As4()
			b = append(b, v4[:]...)
		} else {
			v6 := ip.As16()
			b = append(b, v6[:]...)
		}
	}
	msg := b[start:]
	var acc uint32
	if src.Is6() || mode == ChecksumWithPseudoHeader {
		acc = pseudoHeaderSum(src, dst, len(msg))
	}
	binary.BigEndian.PutUint16(msg[6:], ^fold(sum(msg, acc)))
	return b, nil
}

// Parse decodes and validates a VRRP payload (no IP header) received from src for dst:
// length, version, type, address family, address count against length, checksum (a v3/IPv4
// checksum may have either form) and a non-zero interval. Every error is a *DropError.
// Parse never panics and does not keep b.
func Parse(b []byte, src, dst netip.Addr) (Advert, error) {
	var a Advert
	err := a.Unmarshal(b, src, dst)
	return a, err
}

// Unmarshal is Parse into a, reusing the storage of a.Addrs: the allocation-free form for
// a receive loop. On error a is left unchanged.
func (a *Advert) Unmarshal(b []byte, src, dst netip.Addr) error {
	if len(b) < headerLen {
		return drop(DropLength, fmt.Sprintf("%d bytes, shorter than the %d-byte header", len(b), headerLen))
	}
	version := int(b[0] >> 4)
	if version != 2 && version != 3 {
		return drop(DropVersion, fmt.Sprintf("version %d", version))
	}
	if t := b[0] & 0x0f; t != typeAdvertisement {
		return drop(DropType, fmt.Sprintf("type %d, want %d (advertisement)", t, typeAdvertisement))
	}
	src, dst = src.Unmap(), dst.Unmap()
	if !src.IsValid() {
		return drop(DropFamily, "no source address")
	}
	if dst.IsValid() && dst.Is4() != src.Is4() {
		return drop(DropFamily, fmt.Sprintf("source %v and destination %v of different families", src, dst))
	}
	count := int(b[3])
	if version == 2 {
		return a.unmarshalV2(b, src, count)
	}
	return a.unmarshalV3(b, src, dst, count)
}

func (a *Advert) unmarshalV2(b []byte, src netip.Addr, count int) error {
	if !src.Is4() {
		return drop(DropFamily, fmt.Sprintf("VRRPv2 from IPv6 source %v", src))
	}
	if want := headerLen + 4*count + authLen; len(b) != want {
		return drop(DropLength, fmt.Sprintf("%d bytes, %d addresses need %d", len(b), count, want))
	}
	if fold(sum(b, 0)) != 0xffff {
		return drop(DropChecksum, "VRRPv2 checksum")
	}
	if b[5] == 0 {
		return drop(DropInterval, "advert interval 0")
	}
	a.Version = 2
	a.VRID, a.Priority = b[1], b[2]
	a.AuthType = b[4]
	a.Interval = time.Duration(b[5]) * time.Second
	copy(a.AuthData[:], b[headerLen+4*count:])
	a.Addrs = reuse(a.Addrs, count)
	for i := range count {
		a.Addrs = append(a.Addrs, netip.AddrFrom4([4]byte(b[headerLen+4*i:])))
	}
	return nil
}

func (a *Advert) unmarshalV3(b []byte, src, dst netip.Addr, count int) error {
	if !dst.IsValid() {
		return drop(DropFamily, "no destination address for the VRRPv3 pseudo-header")
	}
	alen, other := 4, 16
	if src.Is6() {
		alen, other = 16, 4
	}
	if want := headerLen + alen*count; len(b) != want {
		if count > 0 && len(b) == headerLen+other*count {
			return drop(DropFamily, fmt.Sprintf("%d-byte addresses from source %v", other, src))
		}
		return drop(DropLength, fmt.Sprintf("%d bytes, %d addresses need %d", len(b), count, want))
	}
	if !v3ChecksumOK(b, src, dst) {
		return drop(DropChecksum, "VRRPv3 checksum")
	}
	cs := binary.BigEndian.Uint16(b[4:]) & 0x0fff // the top 4 bits are reserved
	if cs == 0 {
		return drop(DropInterval, "max advert interval 0")
	}
	a.Version = 3
	a.VRID, a.Priority = b[1], b[2]
	a.AuthType, a.AuthData = 0, [8]byte{}
	a.Interval = time.Duration(cs) * centisecond
	a.Addrs = reuse(a.Addrs, count)
	for i := range count {
		off := headerLen + alen*i
		if alen == 4 {
			a.Addrs = append(a.Addrs, netip.AddrFrom4([4]byte(b[off:])))
		} else {
			a.Addrs = append(a.Addrs, netip.AddrFrom16([16]byte(b[off:])))
		}
	}
	return nil
}

// reuse empties s for n addresses, allocating once if it is too small.
func reuse(s []netip.Addr, n int) []netip.Addr {
	if cap(s) < n {
		return make([]netip.Addr, 0, n)
	}
	return s[:0]
}

// v3ChecksumOK accepts, for IPv4, the checksum with the pseudo-header (RFC 5798, keepalived's
// default), without it (RFC 9568, v3_checksum_as_v2) and with 224.0.0.18 as the pseudo-header
// destination of a unicast advert (keepalived up to 1.3.6, later ones' old_unicast_checksum). IPv6
// always has the pseudo-header.
func v3ChecksumOK(b []byte, src, dst netip.Addr) bool {
	msg := sum(b, 0)
	if fold(msg+pseudoHeaderSum(src, dst, len(b))) == 0xffff {
		return true
	}
	if src.Is6() {
		return false
	}
	if fold(msg) == 0xffff {
		return true
	}
	group := netip.AddrFrom4([4]byte{224, 0, 0, 18})
	return dst != group && fold(msg+pseudoHeaderSum(src, group, len(b))) == 0xffff
}

// sum adds b as big-endian 16-bit words to acc (the Internet checksum, RFC 1071, before folding).
// VRRP messages are at most a few kilobytes, so a uint32 cannot overflow.
func sum(b []byte, acc uint32) uint32 {
	for len(b) >= 2 {
		acc += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint32(b[0]) << 8
	}
	return acc
}

// fold adds the carries back into the low 16 bits.
func fold(acc uint32) uint16 {
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return uint16(acc)
}

// pseudoHeaderSum is the sum of the IPv4 pseudo-header (src, dst, zero, protocol, length;
// RFC 768 style) or the IPv6 one (src, dst, 32-bit length, zeros, next header; RFC 2460 8.1).
// Both hold the same words apart from the width of the length, which is below 64 KiB here.
func pseudoHeaderSum(src, dst netip.Addr, length int) uint32 {
	var acc uint32
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		acc = sum(s[:], acc)
		acc = sum(d[:], acc)
	} else {
		s, d := src.As16(), dst.As16()
		acc = sum(s[:], acc)
		acc = sum(d[:], acc)
	}
	return acc + IPProtocol + uint32(length)
}
