package vrrp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

var (
	src4   = netip.MustParseAddr("10.99.0.11")
	peer4  = netip.MustParseAddr("10.99.0.12")
	group4 = netip.MustParseAddr("224.0.0.18")
	src6   = netip.MustParseAddr("fe80::1")
	group6 = netip.MustParseAddr("ff02::12")
)

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

func pass(s string) (d [8]byte) {
	copy(d[:], s)
	return d
}

// resum rewrites the checksum of a hand-edited packet: without a pseudo-header when src is
// not valid, with the pseudo-header of src and dst otherwise.
func resum(b []byte, src, dst netip.Addr) []byte {
	b = bytes.Clone(b)
	if len(b) < headerLen {
		return b
	}
	b[6], b[7] = 0, 0
	var acc uint32
	if src.IsValid() {
		acc = pseudoHeaderSum(src, dst, len(b))
	}
	binary.BigEndian.PutUint16(b[6:], ^fold(sum(b, acc)))
	return b
}

func mustMarshal(t testing.TB, a Advert, src, dst netip.Addr, mode ChecksumMode) []byte {
	t.Helper()
	b, err := a.Marshal(src, dst, mode)
	if err != nil {
		t.Fatalf("Marshal(%+v): %v", a, err)
	}
	return b
}

func TestPacketRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		advert   Advert
		src, dst netip.Addr
		mode     ChecksumMode
		wantLen  int
	}{
		{
			name:    "v2 PASS one address",
			advert:  Advert{Version: 2, VRID: 51, Priority: 110, Interval: time.Second, AuthType: AuthSimple, AuthData: pass("1a2b3c4d"), Addrs: addrs("10.0.0.10")},
			src:     src4,
			dst:     group4,
			wantLen: 20,
		},
		{
			name:    "v2 no authentication, priority 0 release",
			advert:  Advert{Version: 2, VRID: 1, Priority: 0, Interval: 3 * time.Second, Addrs: addrs("10.0.0.10")},
			src:     src4,
			dst:     group4,
			wantLen: 20,
		},
		{
			name:    "v2 unicast three addresses longest interval",
			advert:  Advert{Version: 2, VRID: 255, Priority: 255, Interval: 255 * time.Second, AuthType: AuthSimple, AuthData: pass("pw"), Addrs: addrs("10.0.0.10", "10.0.0.11", "192.0.2.1")},
			src:     src4,
			dst:     peer4,
			wantLen: 28,
		},
		{
			name:    "v2 no addresses",
			advert:  Advert{Version: 2, VRID: 7, Priority: 100, Interval: time.Second},
			src:     src4,
			dst:     group4,
			wantLen: 16,
		},
		{
			name:    "v3 IPv4 with pseudo-header",
			advert:  Advert{Version: 3, VRID: 52, Priority: 100, Interval: 100 * time.Millisecond, Addrs: addrs("10.0.0.20")},
			src:     src4,
			dst:     group4,
			mode:    ChecksumWithPseudoHeader,
			wantLen: 12,
		},
		{
			name:    "v3 IPv4 without pseudo-header",
			advert:  Advert{Version: 3, VRID: 52, Priority: 100, Interval: 100 * time.Millisecond, Addrs: addrs("10.0.0.20")},
			src:     src4,
			dst:     group4,
			mode:    ChecksumWithoutPseudoHeader,
			wantLen: 12,
		},
		{
			name:    "v3 IPv4 unicast extreme intervals",
			advert:  Advert{Version: 3, VRID: 1, Priority: 254, Interval: 40950 * time.Millisecond, Addrs: addrs("10.0.0.20", "10.0.0.21")},
			src:     src4,
			dst:     peer4,
			wantLen: 16,
		},
		{
			name:    "v3 IPv4 10ms",
			advert:  Advert{Version: 3, VRID: 1, Priority: 1, Interval: 10 * time.Millisecond, Addrs: addrs("10.0.0.20")},
			src:     src4,
			dst:     group4,
			mode:    ChecksumWithoutPseudoHeader,
			wantLen: 12,
		},
		{
			name:    "v3 IPv6",
			advert:  Advert{Version: 3, VRID: 53, Priority: 200, Interval: time.Second, Addrs: addrs("fd00::10")},
			src:     src6,
			dst:     group6,
			wantLen: 24,
		},
		{
			name:    "v3 IPv6 mode ignored, several addresses",
			advert:  Advert{Version: 3, VRID: 53, Priority: 200, Interval: 1500 * time.Millisecond, Addrs: addrs("fd00::10", "fd00::11", "2001:db8::1")},
			src:     src6,
			dst:     group6,
			mode:    ChecksumWithoutPseudoHeader,
			wantLen: 56,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustMarshal(t, tt.advert, tt.src, tt.dst, tt.mode)
			if len(b) != tt.wantLen {
				t.Fatalf("Marshal: %d bytes, want %d: % x", len(b), tt.wantLen, b)
			}
			if got := int(b[0] >> 4); got != tt.advert.Version {
				t.Errorf("version nibble %d, want %d", got, tt.advert.Version)
			}
			got, err := Parse(b, tt.src, tt.dst)
			if err != nil {
				t.Fatalf("Parse(% x): %v", b, err)
			}
			if !reflect.DeepEqual(got, tt.advert) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, tt.advert)
			}
			// The checksum is a property of the bytes: marshalling again gives the same packet.
			again := mustMarshal(t, got, tt.src, tt.dst, tt.mode)
			if !bytes.Equal(again, b) {
				t.Errorf("second Marshal differs:\n% x\n% x", again, b)
			}
		})
	}
}

// TestPacketWireLayout pins each field to its offset (RFC 3768 5.1, RFC 5798 5.1).
func TestPacketWireLayout(t *testing.T) {
	v2 := Advert{Version: 2, VRID: 51, Priority: 110, Interval: 2 * time.Second, AuthType: AuthSimple, AuthData: pass("secret"), Addrs: addrs("10.0.0.10", "10.0.0.11")}
	b := mustMarshal(t, v2, src4, group4, ChecksumWithPseudoHeader)
	wantV2 := []byte{0x21, 51, 110, 2, 1, 2, 0, 0, 10, 0, 0, 10, 10, 0, 0, 11, 's', 'e', 'c', 'r', 'e', 't', 0, 0}
	checkLayout(t, b, wantV2)

	v3 := Advert{Version: 3, VRID: 52, Priority: 100, Interval: 1234 * 10 * time.Millisecond, Addrs: addrs("fd00::10")}
	b = mustMarshal(t, v3, src6, group6, ChecksumWithPseudoHeader)
	wantV3 := append([]byte{0x31, 52, 100, 1, 0x04, 0xd2, 0, 0}, netip.MustParseAddr("fd00::10").AsSlice()...)
	checkLayout(t, b, wantV3)
}

func checkLayout(t *testing.T, got, want []byte) {
	t.Helper()
	masked := bytes.Clone(got)
	if len(masked) >= headerLen {
		masked[6], masked[7] = 0, 0
	}
	if !bytes.Equal(masked, want) {
		t.Errorf("layout (checksum masked):\n got % x\nwant % x", masked, want)
	}
}

// TestChecksumRFC1071 checks the sum against the worked example of RFC 1071 section 3.
func TestChecksumRFC1071(t *testing.T) {
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got := fold(sum(b, 0)); got != 0xddf2 {
		t.Errorf("fold(sum) = %#04x, want 0xddf2", got)
	}
	if got := fold(sum([]byte{0xab}, 0)); got != 0xab00 {
		t.Errorf("odd length: %#04x, want 0xab00 (padded with a zero byte)", got)
	}
}

func TestPacketChecksumForms(t *testing.T) {
	a := Advert{Version: 3, VRID: 52, Priority: 100, Interval: time.Second, Addrs: addrs("10.0.0.20")}
	with := mustMarshal(t, a, src4, group4, ChecksumWithPseudoHeader)
	without := mustMarshal(t, a, src4, group4, ChecksumWithoutPseudoHeader)
	if bytes.Equal(with, without) {
		t.Fatal("both checksum modes produced the same bytes")
	}
	// The v3 pseudo-header holds the addresses: the checksum of a unicast advert depends on them.
	unicastWith := mustMarshal(t, a, src4, peer4, ChecksumWithPseudoHeader)
	oldUnicast := resum(unicastWith, src4, group4) // keepalived < 2.0 unicast
	otherSrc := mustMarshal(t, a, peer4, group4, ChecksumWithPseudoHeader)
	v6 := mustMarshal(t, Advert{Version: 3, VRID: 1, Priority: 1, Interval: time.Second, Addrs: addrs("fd00::1")}, src6, group6, ChecksumWithPseudoHeader)
	v6NoPseudo := resum(v6, netip.Addr{}, netip.Addr{})

	tests := []struct {
		name     string
		b        []byte
		src, dst netip.Addr
		ok       bool
	}{
		{"with pseudo-header", with, src4, group4, true},
		{"without pseudo-header", without, src4, group4, true},
		{"unicast with pseudo-header", unicastWith, src4, peer4, true},
		{"unicast, old keepalived multicast pseudo-header", oldUnicast, src4, peer4, true},
		{"pseudo-header of another source", otherSrc, src4, group4, false},
		{"unicast packet claimed as multicast", unicastWith, src4, group4, false},
		{"IPv6 with pseudo-header", v6, src6, group6, true},
		{"IPv6 without pseudo-header", v6NoPseudo, src6, group6, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.b, tt.src, tt.dst)
			if tt.ok && err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !tt.ok && ReasonOf(err) != DropChecksum {
				t.Fatalf("Parse: err %v, want reason %q", err, DropChecksum)
			}
		})
	}
}

func TestMarshalErrors(t *testing.T) {
	ok2 := Advert{Version: 2, VRID: 1, Priority: 100, Interval: time.Second, Addrs: addrs("10.0.0.1")}
	ok3 := Advert{Version: 3, VRID: 1, Priority: 100, Interval: time.Second, Addrs: addrs("10.0.0.1")}
	with := func(a Advert, f func(*Advert)) Advert {
		a.Addrs = append([]netip.Addr(nil), a.Addrs...)
		f(&a)
		return a
	}
	many := make([]netip.Addr, 256)
	for i := range many {
		many[i] = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
	}
	tests := []struct {
		name     string
		advert   Advert
		src, dst netip.Addr
		mode     ChecksumMode
		want     string
	}{
		{"version 1", with(ok2, func(a *Advert) { a.Version = 1 }), src4, group4, 0, "version 1"},
		{"v2 sub-second interval", with(ok2, func(a *Advert) { a.Interval = 1500 * time.Millisecond }), src4, group4, 0, "whole seconds"},
		{"v2 zero interval", with(ok2, func(a *Advert) { a.Interval = 0 }), src4, group4, 0, "whole seconds"},
		{"v2 interval too long", with(ok2, func(a *Advert) { a.Interval = 256 * time.Second }), src4, group4, 0, "whole seconds"},
		{"v2 IPv6 address", with(ok2, func(a *Advert) { a.Addrs = addrs("fd00::1") }), src4, group4, 0, "not IPv4"},
		{"v2 invalid address", with(ok2, func(a *Advert) { a.Addrs = []netip.Addr{{}} }), src4, group4, 0, "not IPv4"},
		{"too many addresses", with(ok2, func(a *Advert) { a.Addrs = many }), src4, group4, 0, "256 addresses"},
		{"v3 no source", ok3, netip.Addr{}, group4, 0, "one family"},
		{"v3 no destination", ok3, src4, netip.Addr{}, 0, "one family"},
		{"v3 mixed families", ok3, src4, group6, 0, "one family"},
		{"v3 5ms interval", with(ok3, func(a *Advert) { a.Interval = 5 * time.Millisecond }), src4, group4, 0, "10ms steps"},
		{"v3 interval not in 10ms steps", with(ok3, func(a *Advert) { a.Interval = 1005 * time.Millisecond }), src4, group4, 0, "10ms steps"},
		{"v3 interval too long", with(ok3, func(a *Advert) { a.Interval = 41 * time.Second }), src4, group4, 0, "10ms steps"},
		{"v3 IPv6 address from IPv4 source", with(ok3, func(a *Advert) { a.Addrs = addrs("fd00::1") }), src4, group4, 0, "family"},
		{"v3 IPv4 address from IPv6 source", ok3, src6, group6, 0, "family"},
		{"v3 invalid address", with(ok3, func(a *Advert) { a.Addrs = []netip.Addr{{}} }), src6, group6, 0, "family"},
		{"v3 unknown checksum mode", ok3, src4, group4, 7, "ChecksumMode(7)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.advert.Marshal(tt.src, tt.dst, tt.mode)
			if err == nil {
				t.Fatalf("Marshal = % x, want error containing %q", b, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "marshal VRRP") {
				t.Errorf("Marshal error %q, want it to start with the operation and contain %q", err, tt.want)
			}
		})
	}
}

// TestParseDrops has a case for every way Parse refuses a packet.
func TestParseDrops(t *testing.T) {
	v2 := mustMarshal(t, Advert{Version: 2, VRID: 51, Priority: 110, Interval: time.Second, AuthType: AuthSimple, AuthData: pass("pw"), Addrs: addrs("10.0.0.10")}, src4, group4, 0)
	v3 := mustMarshal(t, Advert{Version: 3, VRID: 52, Priority: 100, Interval: time.Second, Addrs: addrs("10.0.0.20")}, src4, group4, ChecksumWithPseudoHeader)
	v6 := mustMarshal(t, Advert{Version: 3, VRID: 53, Priority: 100, Interval: time.Second, Addrs: addrs("fd00::10")}, src6, group6, 0)
	edit := func(b []byte, f func([]byte)) []byte {
		b = bytes.Clone(b)
		f(b)
		return b
	}
	none := netip.Addr{}
	tests := []struct {
		name     string
		b        []byte
		src, dst netip.Addr
		want     DropReason
	}{
		{"empty", nil, src4, group4, DropLength},
		{"header cut", v2[:7], src4, group4, DropLength},
		{"v2 without its auth data", resum(v2[:12], none, none), src4, group4, DropLength},
		{"v2 trailing byte", resum(append(bytes.Clone(v2), 0), none, none), src4, group4, DropLength},
		{"v2 count larger than the packet", resum(edit(v2, func(b []byte) { b[3] = 2 }), none, none), src4, group4, DropLength},
		{"v2 count 255 in a short packet", edit(v2, func(b []byte) { b[3] = 255 }), src4, group4, DropLength},
		{"v3 count smaller than the packet", resum(edit(v3, func(b []byte) { b[3] = 0 }), src4, group4), src4, group4, DropLength},
		{"v3 IPv6 cut in the address", v6[:20], src6, group6, DropLength},
		{"version 0", edit(v2, func(b []byte) { b[0] = 0x01 }), src4, group4, DropVersion},
		{"version 1", edit(v2, func(b []byte) { b[0] = 0x11 }), src4, group4, DropVersion},
		{"version 4", edit(v3, func(b []byte) { b[0] = 0x41 }), src4, group4, DropVersion},
		{"version 15 in a short packet", []byte{0xf1, 0, 0, 0, 0, 0, 0, 0}, src4, group4, DropVersion},
		{"type 0", edit(v2, func(b []byte) { b[0] = 0x20 }), src4, group4, DropType},
		{"type 2", edit(v3, func(b []byte) { b[0] = 0x32 }), src4, group4, DropType},
		{"v2 bit flipped in priority", edit(v2, func(b []byte) { b[2] ^= 0x01 }), src4, group4, DropChecksum},
		{"v2 bit flipped in password", edit(v2, func(b []byte) { b[len(b)-1] ^= 0x80 }), src4, group4, DropChecksum},
		{"v3 bit flipped in address", edit(v3, func(b []byte) { b[11] ^= 0x01 }), src4, group4, DropChecksum},
		{"v3 IPv6 bit flipped", edit(v6, func(b []byte) { b[23] ^= 0x01 }), src6, group6, DropChecksum},
		{"v3 IPv6 other source", v6, netip.MustParseAddr("fe80::2"), group6, DropChecksum},
		{"no source", v2, none, group4, DropFamily},
		{"source and destination of two families", v3, src4, group6, DropFamily},
		{"v2 from an IPv6 source", v2, src6, group6, DropFamily},
		{"v3 without destination", v3, src4, none, DropFamily},
		{"v3 IPv6 addresses from an IPv4 source", resum(v6, src4, group4), src4, group4, DropFamily},
		{"v3 IPv4 addresses from an IPv6 source", resum(edit(v3, func(b []byte) { b[3] = 0 }), none, none)[:8], src6, group6, DropChecksum},
		{"v2 interval 0", resum(edit(v2, func(b []byte) { b[5] = 0 }), none, none), src4, group4, DropInterval},
		{"v3 interval 0", resum(edit(v3, func(b []byte) { b[4], b[5] = 0, 0 }), src4, group4), src4, group4, DropInterval},
		{"v3 interval 0 under reserved bits", resum(edit(v3, func(b []byte) { b[4], b[5] = 0xf0, 0 }), src4, group4), src4, group4, DropInterval},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := Parse(tt.b, tt.src, tt.dst)
			if got := ReasonOf(err); got != tt.want {
				t.Fatalf("Parse(% x) = %+v, %v; want reason %q", tt.b, a, err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "drop VRRP packet: "+string(tt.want)) {
				t.Errorf("error text %q", err)
			}
		})
	}
}

func TestParseIgnoresReservedBits(t *testing.T) {
	a := Advert{Version: 3, VRID: 52, Priority: 100, Interval: 4095 * centisecond, Addrs: addrs("10.0.0.20")}
	b := mustMarshal(t, a, src4, group4, ChecksumWithPseudoHeader)
	b[4] |= 0xf0 // RFC 5798 5.2.5: set to zero on transmission, ignored on reception
	got, err := Parse(resum(b, src4, group4), src4, group4)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, a) {
		t.Errorf("got %+v, want %+v", got, a)
	}
}

func TestParseMappedAddresses(t *testing.T) {
	// A dual-stack socket may report IPv4 addresses in their IPv6-mapped form.
	a := Advert{Version: 3, VRID: 52, Priority: 100, Interval: time.Second, Addrs: addrs("10.0.0.20")}
	b := mustMarshal(t, a, src4, group4, ChecksumWithPseudoHeader)
	got, err := Parse(b, netip.AddrFrom16(src4.As16()), netip.AddrFrom16(group4.As16()))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, a) {
		t.Errorf("got %+v, want %+v", got, a)
	}
}

func TestUnmarshalReusesAndKeepsOnError(t *testing.T) {
	b := mustMarshal(t, Advert{Version: 2, VRID: 51, Priority: 110, Interval: time.Second, AuthType: AuthSimple, AuthData: pass("pw"), Addrs: addrs("10.0.0.10", "10.0.0.11")}, src4, group4, 0)
	a := Advert{Addrs: make([]netip.Addr, 0, 4)}
	backing := &a.Addrs[:1][0]
	if err := a.Unmarshal(b, src4, group4); err != nil {
		t.Fatal(err)
	}
	if &a.Addrs[0] != backing {
		t.Error("Unmarshal did not reuse the address slice")
	}
	// Parse copies out of b: the caller may reuse its receive buffer.
	clear(b)
	if want := addrs("10.0.0.10", "10.0.0.11"); !reflect.DeepEqual(a.Addrs, want) || a.AuthData != pass("pw") {
		t.Errorf("advert changed with the buffer: %+v", a)
	}
	before := a
	before.Addrs = bytesClone(a.Addrs)
	if err := a.Unmarshal(b, src4, group4); ReasonOf(err) == "" {
		t.Fatalf("Unmarshal of zeros: %v, want a drop", err)
	}
	if !reflect.DeepEqual(a, before) {
		t.Errorf("advert changed by a failed Unmarshal: %+v, was %+v", a, before)
	}
	// A v3 advert clears the v2-only fields left from a previous v2 one.
	v3 := mustMarshal(t, Advert{Version: 3, VRID: 52, Priority: 100, Interval: time.Second, Addrs: addrs("10.0.0.20")}, src4, group4, 0)
	if err := a.Unmarshal(v3, src4, group4); err != nil {
		t.Fatal(err)
	}
	if a.AuthType != 0 || a.AuthData != ([8]byte{}) || len(a.Addrs) != 1 {
		t.Errorf("v3 after v2: %+v", a)
	}
}

func bytesClone(a []netip.Addr) []netip.Addr { return append([]netip.Addr(nil), a...) }

func TestParseAllocations(t *testing.T) {
	v2 := mustMarshal(t, Advert{Version: 2, VRID: 51, Priority: 110, Interval: time.Second, AuthType: AuthSimple, AuthData: pass("pw"), Addrs: addrs("10.0.0.10", "10.0.0.11")}, src4, group4, 0)
	v6 := mustMarshal(t, Advert{Version: 3, VRID: 53, Priority: 100, Interval: time.Second, Addrs: addrs("fd00::10")}, src6, group6, 0)
	f := Filter{VRID: 51, Version: 2, AuthType: AuthSimple, AuthPass: "pw", Interval: time.Second, Peers: addrs("10.0.0.1", "10.99.0.11")}
	var a Advert
	tests := []struct {
		name string
		max  float64
		run  func()
	}{
		{"Parse", 1, func() { _, _ = Parse(v2, src4, group4) }}, // the address slice
		{"Unmarshal v2", 0, func() { _ = a.Unmarshal(v2, src4, group4) }},
		{"Unmarshal v3 IPv6", 0, func() { _ = a.Unmarshal(v6, src6, group6) }},
		{"Unmarshal and Check", 0, func() {
			if a.Unmarshal(v2, src4, group4) != nil || f.Check(255, src4, group4, &a) != nil {
				panic("advert refused")
			}
		}},
	}
	_ = a.Unmarshal(v2, src4, group4) // grow a.Addrs once
	for _, tt := range tests {
		if got := testing.AllocsPerRun(100, tt.run); got > tt.max {
			t.Errorf("%s: %v allocations per run, want at most %v", tt.name, got, tt.max)
		}
	}
}

func TestDropError(t *testing.T) {
	err := fmt.Errorf("read on eth0: %w", &DropError{Reason: DropTTL, Detail: "TTL 64"})
	if got := ReasonOf(err); got != DropTTL {
		t.Errorf("ReasonOf(wrapped) = %q, want %q", got, DropTTL)
	}
	if got := err.Error(); got != "read on eth0: drop VRRP packet: ttl: TTL 64" {
		t.Errorf("Error() = %q", got)
	}
	if got := (&DropError{Reason: DropVRID}).Error(); got != "drop VRRP packet: vrid" {
		t.Errorf("Error() without detail = %q", got)
	}
	for _, err := range []error{nil, errors.New("socket closed")} {
		if got := ReasonOf(err); got != "" {
			t.Errorf("ReasonOf(%v) = %q, want empty", err, got)
		}
	}
}

func TestDropReasonsAreTheMetricLabels(t *testing.T) {
	want := []string{"length", "version", "type", "checksum", "ttl", "vrid", "auth", "interval", "peer", "family", "addresses", "destination"}
	got := DropReasons()
	if len(got) != len(want) {
		t.Fatalf("DropReasons() = %v, want %v", got, want)
	}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Errorf("DropReasons()[%d] = %q, want %q", i, got[i], want[i])
		}
	}
}

func TestChecksumModeString(t *testing.T) {
	for m, want := range map[ChecksumMode]string{
		ChecksumWithPseudoHeader:    "with-pseudo-header",
		ChecksumWithoutPseudoHeader: "without-pseudo-header",
		9:                           "ChecksumMode(9)",
	} {
		if got := m.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(m), got, want)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	cases := []struct {
		name     string
		advert   Advert
		src, dst netip.Addr
		mode     ChecksumMode
	}{
		{"v2", Advert{Version: 2, VRID: 51, Priority: 110, Interval: time.Second, AuthType: AuthSimple, AuthData: pass("1a2b3c4d"), Addrs: addrs("10.0.0.10")}, src4, group4, 0},
		{"v3-ipv4-pseudo", Advert{Version: 3, VRID: 52, Priority: 100, Interval: 100 * time.Millisecond, Addrs: addrs("10.0.0.20")}, src4, group4, ChecksumWithPseudoHeader},
		// The last form Parse tries: the slowest accepted v3/IPv4 packet.
		{"v3-ipv4-nopseudo", Advert{Version: 3, VRID: 52, Priority: 100, Interval: 100 * time.Millisecond, Addrs: addrs("10.0.0.20")}, src4, group4, ChecksumWithoutPseudoHeader},
		{"v3-ipv6", Advert{Version: 3, VRID: 53, Priority: 100, Interval: time.Second, Addrs: addrs("fd00::10")}, src6, group6, 0},
	}
	for _, c := range cases {
		pkt := mustMarshal(b, c.advert, c.src, c.dst, c.mode)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse(pkt, c.src, c.dst); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"-unmarshal+check", func(b *testing.B) {
			f := Filter{VRID: c.advert.VRID, Version: c.advert.Version, AuthType: c.advert.AuthType, AuthPass: "1a2b3c4d", Interval: c.advert.Interval}
			var a Advert
			b.ReportAllocs()
			for b.Loop() {
				if err := a.Unmarshal(pkt, c.src, c.dst); err != nil {
					b.Fatal(err)
				}
				if err := f.Check(255, c.src, c.dst, &a); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("drop-checksum", func(b *testing.B) {
		pkt := mustMarshal(b, cases[0].advert, src4, group4, 0)
		pkt[2] ^= 1
		var a Advert
		b.ReportAllocs()
		for b.Loop() {
			if a.Unmarshal(pkt, src4, group4) == nil {
				b.Fatal("accepted a bad checksum")
			}
		}
	})
}

func BenchmarkMarshal(b *testing.B) {
	a := Advert{Version: 3, VRID: 52, Priority: 100, Interval: 100 * time.Millisecond, Addrs: addrs("10.0.0.20")}
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if buf, err = a.Append(buf[:0], src4, group4, ChecksumWithPseudoHeader); err != nil {
			b.Fatal(err)
		}
	}
}
