package vrrp

import (
	"net/netip"
	"testing"
)

// TestAdvertPacketLen: the length the config check bounds by the MTU is the length Marshal makes.
func TestAdvertPacketLen(t *testing.T) {
	for _, tt := range []struct {
		version int
		ipv6    bool
		n       int
	}{{2, false, 1}, {2, false, 255}, {3, false, 7}, {3, true, 1}, {3, true, 90}} {
		a := Advert{Version: tt.version, VRID: 51, Priority: 100, Interval: 1e9}
		if tt.version == 2 {
			a.AuthType = AuthSimple
		}
		for i := range tt.n {
			if tt.ipv6 {
				a.Addrs = append(a.Addrs, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)}))
			} else {
				a.Addrs = append(a.Addrs, netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}))
			}
		}
		src, dst := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("224.0.0.18")
		ipHeader := 20
		if tt.ipv6 {
			src, dst, ipHeader = netip.MustParseAddr("fe80::1"), netip.MustParseAddr("ff02::12"), 40
		}
		b, err := a.Marshal(src, dst, ChecksumWithPseudoHeader)
		if err != nil {
			t.Fatalf("%+v: %v", tt, err)
		}
		if got, want := AdvertPacketLen(tt.version, tt.ipv6, tt.n), ipHeader+len(b); got != want {
			t.Errorf("AdvertPacketLen(%d, %v, %d) = %d, Marshal made %d+%d", tt.version, tt.ipv6, tt.n, got, ipHeader, len(b))
		}
	}
}
