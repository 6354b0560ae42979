package vrrp

import (
	"crypto/subtle"
	"fmt"
	"net/netip"
	"time"
)

// Filter holds what one instance accepts; Check validates an already parsed advert in context
// (RFC 3768 and RFC 5798 section 7.1, after the checks Parse does).
type Filter struct {
	VRID    uint8
	Version int

	// AuthType and AuthPass: v2 only. A PASS password is compared in constant time over the
	// 8 bytes of the field; a longer password is cut to 8 bytes, as keepalived does.
	AuthType uint8
	AuthPass string

	// Interval is our advert interval: a v2 advert must carry the same one (DropInterval).
	// v3 has no such check: a backup learns the master's interval instead.
	Interval time.Duration

	// Peers are the unicast peers: when not empty, only adverts from them are accepted. When
	// empty the instance is multicast, and only adverts sent to the VRRP group are accepted
	// (DropDestination).
	Peers []netip.Addr

	// Addrs, when not empty, are the virtual addresses we advertise ourselves. An advert whose
	// list is malformed (empty, an address twice) or shares none of them is dropped
	// (DropAddrs): it comes from another virtual router that uses our VRID by mistake, or is
	// forged, and must not demote our MASTER. RFC 3768 section 7.1 exempts the address owner
	// (priority 255); a list with none of our addresses cannot come from their owner, so
	// hapair exempts nobody. A list that overlaps ours but differs is accepted (see Differs):
	// one host of the pair reloaded a changed VIP list before the other, and dropping its
	// adverts, as keepalived 2.2.7 does, would give both hosts the VIPs until both reloaded.
	Addrs []netip.Addr
}

// Check validates an advert that Parse accepted, given the IPv4 TTL or IPv6 hop limit it
// arrived with, its source and its destination. Checks run in the order of RFC 5798 section 7.1
// (TTL first), except that the VRID is checked before the version so that another virtual
// router on the link counts as "vrid", not as a version error. The addressing (a unicast peer's
// source, or a multicast instance's group as destination) is checked after the version. Every
// error is a *DropError. Check does not allocate when the advert is accepted.
func (f *Filter) Check(ttl int, src, dst netip.Addr, a *Advert) error {
	if ttl != 255 {
		return drop(DropTTL, fmt.Sprintf("TTL %d from %v, want 255", ttl, src))
	}
	if a.VRID != f.VRID {
		return drop(DropVRID, fmt.Sprintf("VRID %d, want %d", a.VRID, f.VRID))
	}
	if a.Version != f.Version {
		return drop(DropVersion, fmt.Sprintf("version %d from %v, want %d", a.Version, src, f.Version))
	}
	if len(f.Peers) > 0 && !f.isPeer(src) {
		return drop(DropPeer, fmt.Sprintf("source %v is not a unicast peer", src))
	}
	if len(f.Peers) == 0 {
		// A multicast instance's socket is handed, besides the group, the VRRP packets sent by
		// unicast to any address of the host. keepalived drops them ("Expected multicast packet
		// but received unicast packet"), and so does hapair: an instance without unicast peers
		// listens to the group only.
		if group := Group(familyOf(src)); dst.Unmap().WithZone("") != group {
			return drop(DropDestination, fmt.Sprintf("%v sent to %v, not to %v: this instance has no unicast peers", src, dst, group))
		}
	}
	if a.Version == 2 {
		if err := f.checkAuth(a); err != nil {
			return err
		}
		if a.Interval != f.Interval {
			return drop(DropInterval, fmt.Sprintf("advert interval %v from %v, ours is %v", a.Interval, src, f.Interval))
		}
	}
	if len(f.Addrs) > 0 {
		return f.checkAddrs(src, a)
	}
	return nil
}

// Differs reports whether an advert that Check accepted lists other addresses than ours (a
// rolling VIP change): the caller counts and logs it, and uses the advert all the same.
func (f *Filter) Differs(a *Advert) bool {
	return len(f.Addrs) > 0 && !sameAddrs(f.Addrs, a.Addrs)
}

func (f *Filter) checkAddrs(src netip.Addr, a *Advert) error {
	if len(a.Addrs) == 0 {
		return drop(DropAddrs, fmt.Sprintf("%v advertises no addresses, ours are %v", src, f.Addrs))
	}
	shared := false
	for i, g := range a.Addrs {
		g = g.Unmap()
		for _, h := range a.Addrs[:i] {
			if h.Unmap() == g {
				return drop(DropAddrs, fmt.Sprintf("%v lists %v twice in %v", src, g, a.Addrs))
			}
		}
		if !shared && containsAddr(f.Addrs, g) {
			shared = true
		}
	}
	if !shared {
		return drop(DropAddrs, fmt.Sprintf("%v advertises %v, none of ours %v", src, a.Addrs, f.Addrs))
	}
	return nil
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, l := range list {
		if l.Unmap() == a {
			return true
		}
	}
	return false
}

// Group is VRRP's multicast group for address family 4 or 6: 224.0.0.18 or ff02::12 (RFC 5798
// sections 5.1.1.2 and 5.1.2.2).
func Group(family int) netip.Addr {
	if family == 6 {
		return netip.AddrFrom16([16]byte{0: 0xff, 1: 0x02, 15: 0x12})
	}
	return netip.AddrFrom4([4]byte{224, 0, 0, 18})
}

// familyOf is 4 or 6, the family of a (an IPv4-mapped address is IPv4).
func familyOf(a netip.Addr) int {
	if a.Unmap().Is4() {
		return 4
	}
	return 6
}

func (f *Filter) isPeer(src netip.Addr) bool {
	// Zones differ between a configured link-local peer and a received source, and a socket
	// may hand over an IPv4 source in IPv6 form: compare the bare addresses.
	src = src.Unmap().WithZone("")
	for _, p := range f.Peers {
		if p.Unmap().WithZone("") == src {
			return true
		}
	}
	return false
}

func (f *Filter) checkAuth(a *Advert) error {
	if a.AuthType != f.AuthType {
		return drop(DropAuth, fmt.Sprintf("authentication type %d, want %d", a.AuthType, f.AuthType))
	}
	switch a.AuthType {
	case AuthNone:
		// RFC 3768 5.3.6.1: the data is ignored on reception.
		return nil
	case AuthSimple:
		var want [authLen]byte
		copy(want[:], f.AuthPass)
		if subtle.ConstantTimeCompare(a.AuthData[:], want[:]) != 1 {
			return drop(DropAuth, "wrong password")
		}
		return nil
	case AuthAH:
		// AH adverts arrive as IP protocol 51 and need the IP header to verify: not supported.
		return drop(DropAuth, "IPsec AH authentication is not supported")
	}
	return drop(DropAuth, fmt.Sprintf("unknown authentication type %d", a.AuthType))
}

// sameAddrs reports whether got holds exactly the addresses of want, in any order (keepalived
// checks the count and that each of its own addresses is present). Check has refused
// duplicates in got, so equal counts and every wanted address present mean equal sets.
func sameAddrs(want, got []netip.Addr) bool {
	if len(want) != len(got) {
		return false
	}
	for _, w := range want {
		if !containsAddr(got, w.Unmap()) {
			return false
		}
	}
	return true
}

// maxListNotes bounds ListNotes: forged adverts can come from any number of sources, each
// with any number of lists.
const (
	maxListNotes      = 64 // senders
	maxListsPerSender = 8
)

// ListNotes remembers, per sender, the address-list findings already logged, so that a
// misconfigured or rolling peer is logged once per sender and change, not once per advert
// (its adverts keep coming every interval, and a forger may alternate between lists). Not
// safe for concurrent use; the zero value is ready. Past its bounds it forgets: at worst a
// line is logged again.
type ListNotes struct {
	last map[netip.Addr][]uint64
}

// Note reports whether finding (a short word such as "drop" or "mismatch") about list from
// src is news, i.e. not noted for src since it was last in line, and notes it. An empty
// finding says src is back in line: what was noted about it is forgotten and Note reports
// false. Note does not allocate for a finding it already holds.
func (n *ListNotes) Note(src netip.Addr, finding string, list []netip.Addr) bool {
	if finding == "" {
		// Every advert in line comes here: with nothing noted (the usual case) not even a map
		// lookup (1.3 % of a BACKUP's CPU samples at 20 ms).
		if len(n.last) > 0 && len(n.last[src]) > 0 {
			delete(n.last, src)
		}
		return false
	}
	sum := listSum(finding, list)
	seen := n.last[src]
	for _, s := range seen {
		if s == sum {
			return false
		}
	}
	if n.last == nil || (seen == nil && len(n.last) >= maxListNotes) {
		n.last = make(map[netip.Addr][]uint64)
	}
	if len(seen) >= maxListsPerSender {
		seen = seen[:0]
	}
	n.last[src] = append(seen, sum)
	return true
}

// listSum is an FNV-1a hash of a finding and an address list, in order: a list that changes
// only its order is a change worth one more line.
func listSum(finding string, list []netip.Addr) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	for i := range len(finding) {
		h = (h ^ uint64(finding[i])) * prime
	}
	for _, a := range list {
		b := a.As16()
		for _, c := range b {
			h = (h ^ uint64(c)) * prime
		}
	}
	return h
}
