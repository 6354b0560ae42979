package vrrp

import (
	"bytes"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

// FuzzParse feeds Parse arbitrary payloads and addresses. It must never panic, and whatever
// it accepts must be a consistent advert that marshals back to the same advert and the
// same bytes (apart from the checksum and v3's reserved bits), and that a Filter made from
// it accepts.
func FuzzParse(f *testing.F) {
	v2 := Advert{Version: 2, VRID: 51, Priority: 110, Interval: time.Second, AuthType: AuthSimple, AuthData: pass("1a2b3c4d"), Addrs: addrs("10.0.0.10", "10.0.0.11")}
	v3 := Advert{Version: 3, VRID: 52, Priority: 100, Interval: 100 * time.Millisecond, Addrs: addrs("10.0.0.20")}
	v6 := Advert{Version: 3, VRID: 53, Priority: 255, Interval: 40950 * time.Millisecond, Addrs: addrs("fd00::10", "fd00::11")}
	s4, g4, p4 := src4.AsSlice(), group4.AsSlice(), peer4.AsSlice()
	s6, g6 := src6.AsSlice(), group6.AsSlice()
	type seed struct {
		b        []byte
		src, dst []byte
	}
	var seeds []seed
	for _, s := range []struct {
		a        Advert
		src, dst []byte
		mode     ChecksumMode
	}{
		{v2, s4, g4, 0},
		{v2, s4, p4, 0},
		{v3, s4, g4, ChecksumWithPseudoHeader},
		{v3, s4, p4, ChecksumWithoutPseudoHeader},
		{v6, s6, g6, 0},
		{Advert{Version: 3, VRID: 1, Priority: 0, Interval: 10 * time.Millisecond}, s6, g6, 0},
	} {
		src, _ := netip.AddrFromSlice(s.src)
		dst, _ := netip.AddrFromSlice(s.dst)
		b := mustMarshal(f, s.a, src, dst, s.mode)
		seeds = append(seeds,
			seed{b, s.src, s.dst},
			seed{b[:len(b)-1], s.src, s.dst},                 // cut by one byte
			seed{append(bytes.Clone(b), 0, 0), s.src, s.dst}, // trailing bytes
			seed{b, s.dst, s.src},                            // addresses swapped
		)
		big := bytes.Clone(b)
		big[3] = 255 // count far beyond the packet
		seeds = append(seeds, seed{big, s.src, s.dst})
	}
	seeds = append(seeds,
		seed{nil, s4, g4},
		seed{[]byte{0x21}, s4, g4},
		seed{[]byte{0x31, 1, 1, 0, 0, 100, 0, 0}, s4, g4}, // v3 without addresses
		seed{[]byte{0x21, 1, 1, 0, 0, 1, 0, 0}, s4, g4},   // v2 without auth data
		seed{mustMarshal(f, v2, src4, group4, 0), nil, nil},
		seed{mustMarshal(f, v6, src6, group6, 0), s4, g4},
		seed{mustMarshal(f, v3, src4, group4, 0), s6, g6},
	)
	for _, s := range seeds {
		f.Add(s.b, s.src, s.dst)
	}

	f.Fuzz(func(t *testing.T, b, srcB, dstB []byte) {
		src, _ := netip.AddrFromSlice(srcB)
		dst, _ := netip.AddrFromSlice(dstB)
		in := bytes.Clone(b)
		a, err := Parse(b, src, dst)
		if !bytes.Equal(in, b) {
			t.Fatal("Parse modified its input")
		}
		if err != nil {
			if ReasonOf(err) == "" {
				t.Fatalf("Parse error %v is not a *DropError", err)
			}
			return
		}
		checkAccepted(t, b, src.Unmap(), dst.Unmap(), a)
	})
}

func checkAccepted(t *testing.T, b []byte, src, dst netip.Addr, a Advert) {
	t.Helper()
	if a.Version != int(b[0]>>4) || len(a.Addrs) != int(b[3]) || a.VRID != b[1] || a.Priority != b[2] {
		t.Fatalf("advert %+v does not match the header % x", a, b[:headerLen])
	}
	if a.Interval <= 0 {
		t.Fatalf("accepted interval %v", a.Interval)
	}
	for _, ip := range a.Addrs {
		if ip.Is4() != src.Is4() || (a.Version == 2 && !ip.Is4()) {
			t.Fatalf("address %v from source %v in a v%d advert", ip, src, a.Version)
		}
	}

	// Whichever checksum form the packet had, marshalling in our default form must give a
	// packet that parses to the same advert.
	out, err := a.Marshal(src, dst, ChecksumWithPseudoHeader)
	if err != nil {
		t.Fatalf("Marshal of accepted advert %+v: %v", a, err)
	}
	again, err := Parse(out, src, dst)
	if err != nil {
		t.Fatalf("Parse(Marshal(%+v)) = %v", a, err)
	}
	if !reflect.DeepEqual(again, a) {
		t.Fatalf("re-marshalled advert differs:\n got %+v\nwant %+v", again, a)
	}
	masked, maskedOut := bytes.Clone(b), bytes.Clone(out)
	masked[6], masked[7], maskedOut[6], maskedOut[7] = 0, 0, 0, 0
	if a.Version == 3 {
		masked[4] &= 0x0f // reserved bits, ignored on reception
	}
	if !bytes.Equal(masked, maskedOut) {
		t.Fatalf("re-marshalled bytes differ:\n got % x\nwant % x", maskedOut, masked)
	}

	// An instance configured like the sender accepts it.
	f := Filter{VRID: a.VRID, Version: a.Version, AuthType: a.AuthType, AuthPass: string(a.AuthData[:]),
		Interval: a.Interval, Peers: []netip.Addr{src}, Addrs: a.Addrs}
	if a.AuthType == AuthAH || a.AuthType > AuthAH {
		f.AuthType = a.AuthType
		if err := f.Check(255, src, dst, &a); a.Version == 2 && ReasonOf(err) != DropAuth {
			t.Fatalf("Check of auth type %d = %v, want an auth drop", a.AuthType, err)
		}
		return
	}
	if err := f.Check(255, src, dst, &a); err != nil {
		t.Fatalf("Check by a matching filter: %v", err)
	}
}
