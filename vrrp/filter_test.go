package vrrp

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// receive is the receive path of an instance: Parse, then Check.
func receive(f *Filter, b []byte, src, dst netip.Addr, ttl int) (Advert, error) {
	a, err := Parse(b, src, dst)
	if err != nil {
		return a, err
	}
	return a, f.Check(ttl, src, dst, &a)
}

// TestReceiveDropsEveryReason runs packets through Parse and Filter.Check and has at least
// one case for every DropReason (checked at the end), each also named in the metric docs.
func TestReceiveDropsEveryReason(t *testing.T) {
	v2f := Filter{VRID: 51, Version: 2, AuthType: AuthSimple, AuthPass: "1a2b3c4d", Interval: time.Second}
	v2a := Advert{Version: 2, VRID: 51, Priority: 100, Interval: time.Second, AuthType: AuthSimple, AuthData: pass("1a2b3c4d"), Addrs: addrs("10.0.0.10")}
	v3f := Filter{VRID: 52, Version: 3, Interval: time.Second}
	v3a := Advert{Version: 3, VRID: 52, Priority: 100, Interval: 100 * time.Millisecond, Addrs: addrs("10.0.0.20")}
	v6f := Filter{VRID: 53, Version: 3, Interval: time.Second, Peers: addrs("fe80::2%d0", "fe80::1%eth0")}
	v6a := Advert{Version: 3, VRID: 53, Priority: 100, Interval: time.Second, Addrs: addrs("fd00::10")}
	uni := Filter{VRID: 51, Version: 2, Interval: time.Second, Peers: addrs("10.99.0.12", "10.99.0.13")}
	vips := Filter{VRID: 52, Version: 3, Addrs: addrs("10.0.0.21", "10.0.0.20")}
	peer6 := netip.MustParseAddr("fe80::2")
	allHosts := netip.MustParseAddr("224.0.0.1")

	with := func(a Advert, f func(*Advert)) Advert {
		a.Addrs = append([]netip.Addr(nil), a.Addrs...)
		f(&a)
		return a
	}
	pkt := func(a Advert, src, dst netip.Addr) []byte {
		return mustMarshal(t, a, src, dst, ChecksumWithPseudoHeader)
	}
	v2 := pkt(v2a, src4, group4)
	v3 := pkt(v3a, src4, group4)

	tests := []struct {
		name     string
		f        Filter
		b        []byte
		src, dst netip.Addr
		ttl      int
		want     DropReason // "" = accepted
	}{
		{"v2 PASS accepted", v2f, v2, src4, group4, 255, ""},
		{"v2 none accepted, data ignored", Filter{VRID: 51, Version: 2, Interval: time.Second}, pkt(with(v2a, func(a *Advert) { a.AuthType = AuthNone; a.AuthData = pass("junk") }), src4, group4), src4, group4, 255, ""},
		{"v3 any interval, auth ignored", Filter{VRID: 52, Version: 3, Interval: time.Second, AuthType: AuthSimple, AuthPass: "x"}, v3, src4, group4, 255, ""},
		{"v3 IPv6 from a peer with another zone", v6f, pkt(v6a, src6, group6), src6, group6, 255, ""},
		{"unicast from a peer", uni, pkt(with(v2a, func(a *Advert) { a.AuthType = AuthNone; a.AuthData = [8]byte{} }), peer4, src4), peer4, src4, 255, ""},
		{"password longer than 8 cut to 8", Filter{VRID: 51, Version: 2, AuthType: AuthSimple, AuthPass: "1a2b3c4d-and-more", Interval: time.Second}, v2, src4, group4, 255, ""},
		{"short password zero-padded", Filter{VRID: 51, Version: 2, AuthType: AuthSimple, AuthPass: "ab", Interval: time.Second}, pkt(with(v2a, func(a *Advert) { a.AuthData = pass("ab") }), src4, group4), src4, group4, 255, ""},
		{"own addresses in another order", vips, pkt(with(v3a, func(a *Advert) { a.Addrs = addrs("10.0.0.20", "10.0.0.21") }), src4, group4), src4, group4, 255, ""},
		{"other addresses from the owner", vips, pkt(with(v3a, func(a *Advert) { a.Priority = 255 }), src4, group4), src4, group4, 255, ""},

		{"length: truncated", v2f, v2[:10], src4, group4, 255, DropLength},
		{"version: garbage nibble", v2f, append([]byte{0x71}, v2[1:]...), src4, group4, 255, DropVersion},
		{"version: v3 for a v2 instance", Filter{VRID: 52, Version: 2, Interval: time.Second}, v3, src4, group4, 255, DropVersion},
		{"type: 2", v2f, resum(append([]byte{0x22}, v2[1:]...), netip.Addr{}, netip.Addr{}), src4, group4, 255, DropType},
		{"checksum: corrupted", v2f, append(bytes.Clone(v2[:19]), v2[19]^0xff), src4, group4, 255, DropChecksum},
		{"ttl: routed (254)", v2f, v2, src4, group4, 254, DropTTL},
		{"ttl: 64 on unicast", uni, v2, peer4, src4, 64, DropTTL},
		{"ttl: unknown (-1)", v3f, v3, src4, group4, -1, DropTTL},
		{"vrid: another router", v2f, pkt(with(v2a, func(a *Advert) { a.VRID = 50 }), src4, group4), src4, group4, 255, DropVRID},
		{"auth: none for PASS", v2f, pkt(with(v2a, func(a *Advert) { a.AuthType = AuthNone }), src4, group4), src4, group4, 255, DropAuth},
		{"auth: PASS for none", Filter{VRID: 51, Version: 2, Interval: time.Second}, v2, src4, group4, 255, DropAuth},
		{"auth: wrong password", v2f, pkt(with(v2a, func(a *Advert) { a.AuthData = pass("1a2b3c4e") }), src4, group4), src4, group4, 255, DropAuth},
		{"auth: prefix of the password", v2f, pkt(with(v2a, func(a *Advert) { a.AuthData = pass("1a2b3c4") }), src4, group4), src4, group4, 255, DropAuth},
		{"auth: AH", Filter{VRID: 51, Version: 2, AuthType: AuthAH, Interval: time.Second}, pkt(with(v2a, func(a *Advert) { a.AuthType = AuthAH }), src4, group4), src4, group4, 255, DropAuth},
		{"auth: unknown type", Filter{VRID: 51, Version: 2, AuthType: 9, Interval: time.Second}, pkt(with(v2a, func(a *Advert) { a.AuthType = 9 }), src4, group4), src4, group4, 255, DropAuth},
		{"interval: v2 differs from ours", v2f, pkt(with(v2a, func(a *Advert) { a.Interval = 2 * time.Second }), src4, group4), src4, group4, 255, DropInterval},
		{"interval: v3 zero", v3f, resum(append(bytes.Clone(v3[:4]), append([]byte{0, 0, 0, 0}, v3[8:]...)...), src4, group4), src4, group4, 255, DropInterval},
		{"peer: not a unicast peer", uni, v2, src4, group4, 255, DropPeer},
		{"peer: IPv6 stranger", v6f, pkt(v6a, netip.MustParseAddr("fe80::3"), group6), netip.MustParseAddr("fe80::3"), group6, 255, DropPeer},
		{"family: v2 from IPv6", v2f, v2, src6, group6, 255, DropFamily},
		{"destination: v2 unicast to a multicast instance", v2f, v2, src4, peer4, 255, DropDestination},
		{"destination: v3 unicast to a multicast instance", v3f, pkt(v3a, src4, peer4), src4, peer4, 255, DropDestination},
		{"destination: IPv6 unicast to a multicast instance", Filter{VRID: 53, Version: 3}, pkt(v6a, src6, peer6), src6, peer6, 255, DropDestination},
		{"destination: another multicast group", v3f, pkt(v3a, src4, allHosts), src4, allHosts, 255, DropDestination},
		{"one of ours missing: accepted (a rolling VIP change)", vips, v3, src4, group4, 255, ""},
		{"addresses: none of ours", vips, pkt(with(v3a, func(a *Advert) { a.Addrs = addrs("10.0.0.30", "10.0.0.31") }), src4, group4), src4, group4, 255, DropAddrs},
		{"addresses: one of ours twice", vips, pkt(with(v3a, func(a *Advert) { a.Addrs = addrs("10.0.0.20", "10.0.0.20") }), src4, group4), src4, group4, 255, DropAddrs},
		{"addresses: priority 0 release still checked", vips, pkt(with(v3a, func(a *Advert) { a.Priority = 0; a.Addrs = addrs("10.0.0.30") }), src4, group4), src4, group4, 255, DropAddrs},
	}
	seen := map[DropReason]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := receive(&tt.f, tt.b, tt.src, tt.dst, tt.ttl)
			if got := ReasonOf(err); got != tt.want || (tt.want == "") != (err == nil) {
				t.Fatalf("receive = %+v, %v; want reason %q", a, err, tt.want)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "drop VRRP packet: "+string(tt.want)+": ") {
				t.Errorf("error %q does not name the reason and a detail", err)
			}
			seen[tt.want] = true
		})
	}
	for _, r := range DropReasons() {
		if !seen[r] {
			t.Errorf("no case drops a packet for %q", r)
		}
	}
}

// TestFilterPasswordNotLogged: the detail of an auth drop goes to logs, so it must not carry
// the received or the configured password.
func TestFilterPasswordNotLogged(t *testing.T) {
	f := Filter{VRID: 51, Version: 2, AuthType: AuthSimple, AuthPass: "s3cr3t!!", Interval: time.Second}
	a := Advert{Version: 2, VRID: 51, Priority: 100, Interval: time.Second, AuthType: AuthSimple, AuthData: pass("guess123")}
	err := f.Check(255, src4, group4, &a)
	if ReasonOf(err) != DropAuth {
		t.Fatalf("Check = %v, want an auth drop", err)
	}
	for _, secret := range []string{"s3cr3t", "guess123"} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q carries a password", err)
		}
	}
}

func TestFilterCheckAllocations(t *testing.T) {
	unicast := Filter{VRID: 53, Version: 3, Peers: addrs("fe80::9", "fe80::1%eth0"), Addrs: addrs("fd00::10", "fd00::11")}
	multicast := Filter{VRID: 53, Version: 3, Addrs: addrs("fd00::10", "fd00::11")}
	a := Advert{Version: 3, VRID: 53, Priority: 100, Interval: time.Second, Addrs: addrs("fd00::11", "fd00::10")}
	src := netip.MustParseAddr("fe80::1%d0")
	for _, tc := range []struct {
		name string
		f    Filter
		dst  netip.Addr
	}{
		{"unicast", unicast, netip.MustParseAddr("fe80::2")},
		{"multicast", multicast, group6},
	} {
		got := testing.AllocsPerRun(100, func() {
			if err := tc.f.Check(255, src, tc.dst, &a); err != nil {
				panic(err)
			}
		})
		if got != 0 {
			t.Errorf("%s: Check allocates %v times per accepted advert, want 0", tc.name, got)
		}
	}
}

func BenchmarkFilterCheck(b *testing.B) {
	f := Filter{VRID: 51, Version: 2, AuthType: AuthSimple, AuthPass: "1a2b3c4d", Interval: time.Second, Peers: addrs("10.99.0.12", "10.99.0.11"), Addrs: addrs("10.0.0.10")}
	a := Advert{Version: 2, VRID: 51, Priority: 100, Interval: time.Second, AuthType: AuthSimple, AuthData: pass("1a2b3c4d"), Addrs: addrs("10.0.0.10")}
	b.ReportAllocs()
	for b.Loop() {
		if err := f.Check(255, src4, peer4, &a); err != nil {
			b.Fatal(err)
		}
	}
}

// TestFilterAddressList: what an advert's address list does to it (RFC 3768 section 7.1 lets a
// router check it; keepalived 2.2.7 drops any difference). hapair drops a list that is malformed
// or shares none of our addresses (another router on our VRID, or a forgery: it must not demote
// our MASTER), and accepts one that overlaps ours but differs (one host reloaded a changed VIP
// list before the other) so that a rolling VIP change never splits the pair; Differs tells the
// caller to count and log that.
func TestFilterAddressList(t *testing.T) {
	ours := addrs("10.0.0.10", "10.0.0.11")
	tests := []struct {
		name     string
		ours     []netip.Addr
		prio     uint8
		got      []netip.Addr
		drop     bool
		differs  bool
		inDetail string
	}{
		{"same list", ours, 100, addrs("10.0.0.10", "10.0.0.11"), false, false, ""},
		{"same list, other order", ours, 100, addrs("10.0.0.11", "10.0.0.10"), false, false, ""},
		{"one removed on the peer first", ours, 100, addrs("10.0.0.10"), false, true, ""},
		{"one added on the peer first", ours, 100, addrs("10.0.0.10", "10.0.0.11", "10.0.0.12"), false, true, ""},
		{"one replaced on the peer first", ours, 100, addrs("10.0.0.12", "10.0.0.11"), false, true, ""},
		{"none of ours", ours, 100, addrs("10.0.0.20"), true, false, "none of ours"},
		{"none of ours, same count", ours, 100, addrs("10.0.0.20", "10.0.0.21"), true, false, "none of ours"},
		{"none of ours from an address owner", ours, 255, addrs("10.0.0.20"), true, false, "none of ours"},
		{"none of ours in a priority-0 release", ours, 0, addrs("10.0.0.20"), true, false, "none of ours"},
		{"empty list", ours, 100, nil, true, false, "no addresses"},
		{"duplicate", ours, 100, addrs("10.0.0.10", "10.0.0.10"), true, false, "twice"},
		{"duplicate among ours", ours, 100, addrs("10.0.0.10", "10.0.0.11", "10.0.0.10"), true, false, "twice"},
		{"IPv4-mapped form of ours", ours, 100, addrs("::ffff:10.0.0.10", "10.0.0.11"), false, false, ""},
		{"no list configured: anything goes", nil, 100, addrs("10.0.0.20", "10.0.0.20"), false, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := Filter{VRID: 52, Version: 3, Addrs: tt.ours}
			a := Advert{Version: 3, VRID: 52, Priority: tt.prio, Interval: time.Second, Addrs: tt.got}
			err := f.Check(255, src4, group4, &a)
			if tt.drop {
				if ReasonOf(err) != DropAddrs {
					t.Fatalf("Check = %v, want an %q drop", err, DropAddrs)
				}
				if !strings.Contains(err.Error(), tt.inDetail) {
					t.Errorf("error %q does not say %q", err, tt.inDetail)
				}
				return
			}
			if err != nil {
				t.Fatalf("Check = %v, want accepted", err)
			}
			if got := f.Differs(&a); got != tt.differs {
				t.Errorf("Differs = %v, want %v", got, tt.differs)
			}
		})
	}
}

// TestListNotesOncePerSenderAndChange: a peer that keeps sending the same wrong list is logged
// once, a new list (or another sender) is logged again, a sender alternating between lists
// is not logged per packet, and a sender back in line is forgotten so that its next wrong
// list is news again.
func TestListNotesOncePerSenderAndChange(t *testing.T) {
	var n ListNotes
	a, b := netip.MustParseAddr("10.0.0.11"), netip.MustParseAddr("10.0.0.12")
	l1, l2 := addrs("10.0.0.20"), addrs("10.0.0.20", "10.0.0.21")
	steps := []struct {
		src     netip.Addr
		finding string
		list    []netip.Addr
		want    bool
	}{
		{a, "drop", l1, true},
		{a, "drop", l1, false},
		{a, "drop", l1, false},
		{b, "drop", l1, true},
		{a, "drop", l2, true},
		{a, "drop", l2, false},
		{a, "drop", l1, false}, // alternating between two lists: each logged once
		{a, "drop", l2, false},
		{a, "mismatch", l2, true},
		{a, "", nil, false}, // back in line
		{a, "mismatch", l2, true},
	}
	for i, s := range steps {
		if got := n.Note(s.src, s.finding, s.list); got != s.want {
			t.Fatalf("step %d: Note(%v, %q, %v) = %v, want %v", i, s.src, s.finding, s.list, got, s.want)
		}
	}
	// A flood of forged sources cannot grow it without bound.
	src := netip.MustParseAddr("10.1.0.0")
	for range 10 * maxListNotes {
		src = src.Next()
		n.Note(src, "drop", l1)
	}
	if len(n.last) > maxListNotes {
		t.Errorf("ListNotes holds %d senders, want at most %d", len(n.last), maxListNotes)
	}
	got := testing.AllocsPerRun(100, func() { n.Note(a, "mismatch", l2) })
	if got != 0 {
		t.Errorf("Note of a known finding allocates %v times, want 0", got)
	}
}
