package transport

import (
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/hapair/hapair/vrrp/internal/nstest"
)

// TestExpectedAdvertsQueueForQuiet: once a member expects its MASTER's advert, the identical
// adverts no longer reach its handler (no wake-up of the reader) but are counted by Quiet, with
// their arrival time; any other advert (another priority, another VRID on the same socket) still
// reaches its handler at once; Unexpect gives them back to the handler.
func TestExpectedAdvertsQueueForQuiet(t *testing.T) {
	p := nstest.NewPair(t)
	hb := NewHub(HubOptions{})
	b51 := joinIn(t, p.B, hb, Options{Interface: p.BIf, Family: 4}, 51)
	b61 := joinIn(t, p.B, hb, Options{Interface: p.BIf, Family: 4}, 61)
	a := joinIn(t, p.A, NewHub(HubOptions{}), Options{Interface: p.AIf, Family: 4}, 51)
	a61 := joinIn(t, p.A, NewHub(HubOptions{}), Options{Interface: p.AIf, Family: 4}, 61)
	with := func(vrid, prio byte) []byte {
		b := append([]byte(nil), advertV2...)
		b[1], b[2] = vrid, prio
		return b
	}
	steady := with(51, 200)
	send := func(c *testConn, payload []byte) {
		t.Helper()
		if err := c.WriteAdvert(payload); err != nil {
			t.Fatal(err)
		}
	}
	noneWithin := func(c *testConn, d time.Duration) {
		t.Helper()
		select {
		case r := <-c.ch:
			t.Fatalf("VRID %d handler got % x, want it queued for Quiet", c.vrid, r.payload)
		case <-time.After(d):
		}
	}

	send(a, steady)
	checkReceived(t, readWithin(t, b51, 5*time.Second), steady, p.A4.Addr(), Group(4))
	if err := b51.Expect(p.A4.Addr(), steady); err != nil {
		t.Fatal(err)
	}
	if _, n := b51.Quiet(); n != 0 {
		t.Fatalf("Quiet = %d before any expected advert", n)
	}
	began := time.Now()
	for range 3 {
		send(a, steady)
	}
	noneWithin(b51, 200*time.Millisecond)
	at, n := b51.Quiet()
	if n != 3 {
		t.Fatalf("Quiet counted %d adverts, want 3", n)
	}
	if at.Before(began) || at.After(time.Now()) {
		t.Errorf("latest arrival %v, want between %v and now", at, began)
	}
	if _, n := b51.Quiet(); n != 0 {
		t.Errorf("Quiet counted %d again", n)
	}

	// Anything else still reaches a handler at once: another priority, another VRID.
	other := with(51, 0)
	send(a, other)
	checkReceived(t, readWithin(t, b51, 5*time.Second), other, p.A4.Addr(), Group(4))
	send(a61, with(61, 200))
	checkReceived(t, readWithin(t, b61, 5*time.Second), with(61, 200), p.A4.Addr(), Group(4))
	// A packet too short for the filter's first compare (the payload's first word): the filter
	// must let it through to be counted malformed, not end on a load past its end, which drops.
	short := []byte{0x21, 51, 200}
	send(a, short)
	checkReceived(t, readWithin(t, b51, 5*time.Second), short, p.A4.Addr(), Group(4))

	// Two members expecting at once, each credited with its own.
	if err := b61.Expect(p.A4.Addr(), with(61, 200)); err != nil {
		t.Fatal(err)
	}
	send(a61, with(61, 200))
	send(a, steady)
	send(a61, with(61, 200))
	noneWithin(b51, 200*time.Millisecond)
	noneWithin(b61, 0)
	if _, n := b61.Quiet(); n != 2 {
		t.Errorf("VRID 61: Quiet = %d, want 2", n)
	}
	if _, n := b51.Quiet(); n != 1 {
		t.Errorf("VRID 51: Quiet = %d, want 1", n)
	}

	// Given back.
	b51.Unexpect()
	send(a, steady)
	checkReceived(t, readWithin(t, b51, 5*time.Second), steady, p.A4.Addr(), Group(4))
	if _, n := b51.Quiet(); n != 0 {
		t.Errorf("Quiet = %d after Unexpect", n)
	}
	send(a61, with(61, 200))
	noneWithin(b61, 200*time.Millisecond)
	if _, n := b61.Quiet(); n != 1 {
		t.Errorf("VRID 61 after VRID 51's Unexpect: Quiet = %d, want 1", n)
	}
}

// TestExpectRefusesWhatItCannotFilter: IPv6, and payloads that are not whole words or too long
// for the filter, are refused; their adverts reach the reader as before.
func TestExpectRefusesWhatItCannotFilter(t *testing.T) {
	p := nstest.NewPair(t)
	hb := NewHub(HubOptions{})
	b4 := joinIn(t, p.B, hb, Options{Interface: p.BIf, Family: 4}, 51)
	b6 := joinIn(t, p.B, hb, Options{Interface: p.BIf, Family: 6}, 52)
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"IPv6", b6.Expect(p.ALinkLocal, advertV3)},
		{"odd length", b4.Expect(p.A4.Addr(), advertV2[:18])},
		{"too long", b4.Expect(p.A4.Addr(), make([]byte, maxQuietPayload+4))},
	} {
		if !errors.Is(tc.err, errNotQuiet) {
			t.Errorf("%s: Expect = %v, want errNotQuiet", tc.name, tc.err)
		}
	}
	// maxExpected members of a socket expect; the next is refused until one stops.
	var first *testConn
	for i := range maxExpected + 1 {
		c := joinIn(t, p.B, hb, Options{Interface: p.BIf, Family: 4}, uint8(100+i))
		payload := append([]byte(nil), advertV2...)
		payload[1] = uint8(100 + i)
		err := c.Expect(p.A4.Addr(), payload)
		switch {
		case i == 0:
			first = c
			fallthrough
		case i < maxExpected:
			if err != nil {
				t.Fatalf("member %d: Expect = %v", i+1, err)
			}
		case !errors.Is(err, errNotQuiet):
			t.Fatalf("member %d past maxExpected: Expect = %v, want errNotQuiet", i+1, err)
		default:
			first.Unexpect()
			if err := c.Expect(p.A4.Addr(), payload); err != nil {
				t.Errorf("after one stopped expecting: Expect = %v", err)
			}
		}
	}
}

// TestQuietProgramFitsTheKernelsLimit: 255 members with long payloads fit in BPF_MAXINSNS (the
// rest are left out), and every jump stays within the program.
func TestQuietProgramFitsTheKernelsLimit(t *testing.T) {
	var exps []*expectation
	for range 255 {
		exps = append(exps, &expectation{src: netip.MustParseAddr("192.0.2.1"), payload: make([]byte, maxQuietPayload)})
	}
	for _, dst := range []netip.Addr{{}, Group(4)} { // unicast, multicast
		prog := quietProgram(nil, exps, dst, quietKeep, 0)
		if len(prog) > maxFilterLen {
			t.Fatalf("dst %v: program of %d instructions, limit %d", dst, len(prog), maxFilterLen)
		}
		for i, ins := range prog {
			if ins.Code&0x07 == 0x05 { // BPF_JMP
				if ins.Code == 0x05 { // BPF_JA
					if i+1+int(ins.K) >= len(prog) {
						t.Fatalf("dst %v: ja at %d jumps past the end", dst, i)
					}
					continue
				}
				if i+1+int(ins.Jt) >= len(prog) || i+1+int(ins.Jf) >= len(prog) {
					t.Fatalf("dst %v: jump at %d (%+v) past the end", dst, i, ins)
				}
			}
		}
	}
}

// TestArrivalSurvivesWallClockSteps: the kernel stamps arrivals on the wall clock; a step of it
// between the arrival and the read must not make a live MASTER look silent (an arrival taken
// earlier than it was could end a BACKUP's wait too soon), nor put an arrival in the future.
func TestArrivalSurvivesWallClockSteps(t *testing.T) {
	now := time.Now()
	since := now.Add(-10 * time.Second)
	floor := now.Add(-60 * time.Millisecond) // the read before the one that found it
	stamp := func(ago time.Duration) int64 { return now.Add(-ago).UnixNano() }
	for _, tc := range []struct {
		name  string
		stamp int64
		floor time.Time
		want  time.Time
	}{
		{"as stamped", stamp(20 * time.Millisecond), floor, now.Add(-20 * time.Millisecond)},
		{"wall clock stepped forward an hour", stamp(time.Hour), floor, floor},
		{"wall clock stepped back an hour", stamp(-time.Hour), floor, now},
		{"no read before: since", stamp(time.Hour), time.Time{}, since},
	} {
		if got := arrival(now, tc.stamp, tc.floor, since); !got.Equal(tc.want) {
			t.Errorf("%s: arrival %v before now, want %v", tc.name, now.Sub(got), now.Sub(tc.want))
		}
	}
}

// TestAFullQueueIsNotASilence: when the queue of expected adverts fills up (the process stalled),
// the kernel drops the newest adverts and keeps the oldest; Quiet must then take the MASTER as
// heard now, not at the oldest advert's time, or a BACKUP would take over from a live MASTER.
func TestAFullQueueIsNotASilence(t *testing.T) {
	p := nstest.NewPair(t)
	b := joinIn(t, p.B, NewHub(HubOptions{}), Options{Interface: p.BIf, Family: 4}, 51)
	a := joinIn(t, p.A, NewHub(HubOptions{}), Options{Interface: p.AIf, Family: 4}, 51)
	steady := append([]byte(nil), advertV2...)
	if err := b.Expect(p.A4.Addr(), steady); err != nil {
		t.Fatal(err)
	}
	// A queue of a few adverts (the kernel's minimum receive buffer), for the test.
	if err := unix.SetsockoptInt(b.sock.sender, unix.SOL_SOCKET, unix.SO_RCVBUF, 1); err != nil {
		t.Fatal(err)
	}
	for range 20 { // more than the queue holds
		if err := a.WriteAdvert(steady); err != nil {
			t.Fatal(err)
		}
	}
	// The queued adverts age: what Quiet must not report as the MASTER's latest.
	time.Sleep(300 * time.Millisecond)
	for range 50 { // the queue is full: dropped, the newest adverts
		if err := a.WriteAdvert(steady); err != nil {
			t.Fatal(err)
		}
	}
	// The queue's drop count says when the kernel has turned adverts away.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		drops, err := socketDrops(b.sock.sender)
		if err != nil {
			t.Fatal(err)
		}
		if drops > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the queue of expected adverts never dropped one: the test tests nothing")
		}
	}
	at, n := b.Quiet()
	if n == 0 {
		t.Fatal("Quiet counted no advert")
	}
	if age := time.Since(at); age > 100*time.Millisecond {
		t.Errorf("after adverts were dropped, Quiet says the latest came %s ago, want now", age.Round(time.Millisecond))
	}
}

// TestNextCmsgStopsAtTheBuffersEnd: control messages as the kernel writes them are walked in
// order; a last message without its padding (a truncated buffer) ends the walk instead of
// slicing past the end, and a malformed length stops it.
func TestNextCmsgStopsAtTheBuffersEnd(t *testing.T) {
	one := func(level, typ int32, data []byte) []byte {
		b := make([]byte, cmsgAlign(unix.SizeofCmsghdr+len(data)))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		h.Level, h.Type = level, typ
		h.SetLen(unix.SizeofCmsghdr + len(data))
		copy(b[unix.SizeofCmsghdr:], data)
		return b
	}
	first := one(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, make([]byte, 16))
	last := one(unix.IPPROTO_IP, unix.IP_PKTINFO, make([]byte, 12))
	oob := append(append([]byte(nil), first...), last[:unix.SizeofCmsghdr+12]...) // no padding after the last
	var seen []int32
	for _, typ, _, rest, ok := nextCmsg(oob); ok; _, typ, _, rest, ok = nextCmsg(rest) {
		seen = append(seen, typ)
	}
	if len(seen) != 2 || seen[0] != unix.SCM_TIMESTAMPNS || seen[1] != unix.IP_PKTINFO {
		t.Errorf("types %v, want [%d %d]", seen, unix.SCM_TIMESTAMPNS, unix.IP_PKTINFO)
	}
	bad := append([]byte(nil), first...)
	(*unix.Cmsghdr)(unsafe.Pointer(&bad[0])).SetLen(len(bad) + 8)
	if _, _, _, _, ok := nextCmsg(bad); ok {
		t.Error("a length past the buffer was taken")
	}
}

// TestQuietTakesOnlyItsInterfacesAdverts: the expected advert, sent by unicast to this host on
// another of its links with the MASTER's source (a host there forging it; rp_filter off), is not
// counted as the MASTER's. The sending socket, where expected adverts queue, is bound to no
// interface and gets every unicast VRRP packet to the host: before, its filter took the forgery,
// and a BACKUP kept pushing its master-down deadline back for a MASTER that could be dead.
// Unicast members: a multicast member expects adverts to the group only
// (TestQuietTakesOnlyTheGroupsAdverts), and the group reaches its sockets by its own link only.
func TestQuietTakesOnlyItsInterfacesAdverts(t *testing.T) {
	p := nstest.NewPair(t)
	secondLink(t, p)
	rpFilterOff(t, p.B, "vb2")

	b := joinIn(t, p.B, NewHub(HubOptions{}), Options{Interface: p.BIf, Family: 4, Peers: []netip.Addr{p.A4.Addr()}}, 51)
	a := joinIn(t, p.A, NewHub(HubOptions{}), Options{Interface: p.AIf, Family: 4, Peers: []netip.Addr{p.B4.Addr()}}, 51)
	steady := append([]byte(nil), advertV2...)
	steady[1], steady[2] = 51, 200
	if err := a.WriteAdvert(steady); err != nil {
		t.Fatal(err)
	}
	checkReceived(t, readWithin(t, b, 5*time.Second), steady, p.A4.Addr(), p.B4.Addr())
	if err := b.Expect(p.A4.Addr(), steady); err != nil {
		t.Fatal(err)
	}

	// The same bytes sent raw to B's address on the MASTER's own link count (on that link anyone
	// could send them): so the forgery below does reach the sending socket's filter.
	sendRaw(t, p.A, p.A4.Addr(), p.B4.Addr(), steady)
	if n := quietWithin(b, 1, 5*time.Second); n != 1 {
		t.Fatalf("Quiet counted %d of the raw adverts on the MASTER's link, want 1", n)
	}
	// The forgery: by unicast to B's address on the other link, out of va2.
	sendRaw(t, p.A, p.A4.Addr(), netip.MustParseAddr("10.202.0.2"), steady)
	time.Sleep(200 * time.Millisecond)
	if _, n := b.Quiet(); n != 0 {
		t.Errorf("Quiet counted %d adverts from another link as the MASTER's, want 0", n)
	}
	// The real one still counts.
	if err := a.WriteAdvert(steady); err != nil {
		t.Fatal(err)
	}
	if n := quietWithin(b, 1, 5*time.Second); n != 1 {
		t.Errorf("Quiet counted %d of the MASTER's adverts on its own link, want 1", n)
	}
}

// TestQuietTakesOnlyTheGroupsAdverts: a multicast member's expected advert, sent by unicast to
// this host on the MASTER's link with the MASTER's source and the same bytes (VRRPv2: no
// pseudo-header in its checksum), is not the MASTER's advert: a multicast instance drops any
// advert not sent to the group (vrrp.DropDestination). It must reach the reader with its
// destination, for the instance to drop and count it; before, the sending socket's filter took
// it for the MASTER's and nobody saw it.
func TestQuietTakesOnlyTheGroupsAdverts(t *testing.T) {
	p := nstest.NewPair(t)
	b := joinIn(t, p.B, NewHub(HubOptions{}), Options{Interface: p.BIf, Family: 4}, 51)
	a := joinIn(t, p.A, NewHub(HubOptions{}), Options{Interface: p.AIf, Family: 4}, 51)
	steady := append([]byte(nil), advertV2...)
	steady[1], steady[2] = 51, 200
	if err := a.WriteAdvert(steady); err != nil {
		t.Fatal(err)
	}
	checkReceived(t, readWithin(t, b, 5*time.Second), steady, p.A4.Addr(), Group(4))
	if err := b.Expect(p.A4.Addr(), steady); err != nil {
		t.Fatal(err)
	}

	sendRaw(t, p.A, p.A4.Addr(), p.B4.Addr(), steady)
	select {
	case r := <-b.ch:
		checkReceived(t, r, steady, p.A4.Addr(), p.B4.Addr())
	case <-time.After(time.Second):
		_, n := b.Quiet()
		t.Fatalf("the unicast copy of the expected advert did not reach the handler within 1s (Quiet counted %d), want it there with its destination", n)
	}
	if _, n := b.Quiet(); n != 0 {
		t.Errorf("Quiet counted %d unicast copies as the MASTER's adverts, want 0", n)
	}
	// The MASTER's own, to the group, still queue for Quiet.
	if err := a.WriteAdvert(steady); err != nil {
		t.Fatal(err)
	}
	if n := quietWithin(b, 1, 5*time.Second); n != 1 {
		t.Errorf("Quiet counted %d of the MASTER's adverts to the group, want 1", n)
	}
}

// rpFilterOff lets ns accept packets whose source it would not route back by the link they came
// in by (a forger on another link).
func rpFilterOff(t *testing.T, ns *nstest.NS, ifname string) {
	t.Helper()
	ns.MustDo(t, func() error {
		for _, conf := range []string{"all", "default", ifname} {
			if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+conf+"/rp_filter", []byte("0"), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
}

// sendRaw sends a VRRP payload from inside ns with an IPv4 header of its own (IP_HDRINCL): from
// src, whichever link it leaves by, to dst, TTL 255.
func sendRaw(t *testing.T, ns *nstest.NS, src, dst netip.Addr, payload []byte) {
	t.Helper()
	ns.MustDo(t, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		ip := []byte{0x45, 0, 0, byte(20 + len(payload)), 0, 0, 0, 0, 255, Protocol, 0, 0}
		ip = append(ip, src.AsSlice()...)
		ip = append(ip, dst.AsSlice()...)
		return unix.Sendto(fd, append(ip, payload...), 0, &unix.SockaddrInet4{Addr: dst.As4()})
	})
}

// quietWithin adds up m's Quiet counts until they reach want or d has passed, and returns the
// sum: an advert is kept a moment after it was sent, not at once.
func quietWithin(m *testConn, want int, d time.Duration) int {
	sum := 0
	for deadline := time.Now().Add(d); ; time.Sleep(5 * time.Millisecond) {
		_, n := m.Quiet()
		sum += n
		if sum >= want || time.Now().After(deadline) {
			return sum
		}
	}
}
