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

	// Peers are the unicast peers: when not empty, only adverts from them are accepted.
	Peers []netip.Addr

	// Addrs, when not empty, are the addresses we advertise ourselves. An advert listing
	// others is a misconfiguration and is dropped (DropAddrs), unless it comes from the
	// address owner (priority 255), which RFC 3768 section 7.1 lets through.
	Addrs []netip.Addr
}

// Check validates an advert that Parse accepted, given the IPv4 TTL or IPv6 hop limit it
// arrived with and its source. Checks run in the order of RFC 5798 section 7.1 (TTL first),
// except that the VRID is checked before the version so that another virtual router on the
// link counts as "vrid", not as a version error. Every error is a *DropError. Check does not
// allocate when the advert is accepted.
func (f *Filter) Check(ttl int, src netip.Addr, a *Advert) error {
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
	if a.Version == 2 {
		if err := f.checkAuth(a); err != nil {
			return err
		}
		if a.Interval != f.Interval {
			return drop(DropInterval, fmt.Sprintf("advert interval %v from %v, ours is %v", a.Interval, src, f.Interval))
		}
	}
	if len(f.Addrs) > 0 && a.Priority != 255 && !sameAddrs(f.Addrs, a.Addrs) {
		return drop(DropAddrs, fmt.Sprintf("%v advertises %v, ours are %v", src, a.Addrs, f.Addrs))
	}
	return nil
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
// checks the count and that each of its own addresses is present).
func sameAddrs(want, got []netip.Addr) bool {
	if len(want) != len(got) {
		return false
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			if g == w {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
