package transport

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hapair/hapair/vrrp/internal/nstest"
)

// advertV2 is keepalived 2.2.7's VRRPv2 advert for VRID 51, priority 200, VIP 192.168.77.100,
// as captured on the wire. The transport does not look inside: any bytes would do, but real
// ones show that nothing is added, stripped or checksummed on the way.
var advertV2 = []byte{
	0x21, 0x33, 0xc8, 0x01, 0x00, 0x01, 0x08, 0xbd, 0xc0, 0xa8, 0x4d, 0x64,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
}

// advertV3 is keepalived's VRRPv3/IPv6 advert for VRID 52, priority 200, VIP fd77::100.
var advertV3 = []byte{
	0x31, 0x34, 0xc8, 0x01, 0x00, 0x64, 0x5d, 0x93,
	0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00,
}

type received struct {
	payload  []byte
	src, dst netip.Addr
	ttl      int
	err      error
}

// readWithin reads one advert or fails the test after d. The reading goroutine ends when the
// Conn is closed at the end of the test.
func readWithin(t *testing.T, c Conn, d time.Duration) received {
	t.Helper()
	ch := make(chan received, 1)
	go func() {
		buf := make([]byte, 4096)
		p, src, dst, ttl, err := c.ReadAdvert(buf)
		ch <- received{append([]byte(nil), p...), src, dst, ttl, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("ReadAdvert: %v", r.err)
		}
		return r
	case <-time.After(d):
		t.Fatalf("no advert within %v", d)
		return received{}
	}
}

// listenIn opens a Conn inside ns and closes it at the end of the test.
func listenIn(t *testing.T, ns *nstest.NS, opts Options) Conn {
	t.Helper()
	var c Conn
	ns.MustDo(t, func() error {
		var err error
		c, err = Listen(opts)
		return err
	})
	t.Cleanup(func() { c.Close() })
	return c
}

func checkReceived(t *testing.T, r received, payload []byte, src, dst netip.Addr) {
	t.Helper()
	if !bytes.Equal(r.payload, payload) {
		t.Errorf("payload = % x, want % x", r.payload, payload)
	}
	if r.src != src {
		t.Errorf("src = %v, want %v", r.src, src)
	}
	if r.dst != dst {
		t.Errorf("dst = %v, want %v", r.dst, dst)
	}
	if r.ttl != TTL {
		t.Errorf("ttl = %d, want %d", r.ttl, TTL)
	}
}

func TestMulticast(t *testing.T) {
	p := nstest.NewPair(t)
	for _, tc := range []struct {
		name       string
		family     int
		payload    []byte
		srcA       netip.Addr
		wantSrcOfA netip.Addr
	}{
		{name: "IPv4 primary address", family: 4, payload: advertV2, wantSrcOfA: p.A4.Addr()},
		{name: "IPv6 link-local", family: 6, payload: advertV3, wantSrcOfA: p.ALinkLocal},
		{name: "IPv4 explicit source", family: 4, payload: advertV2, srcA: netip.MustParseAddr("10.201.0.7"),
			wantSrcOfA: netip.MustParseAddr("10.201.0.7")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.srcA.IsValid() {
				p.A.IP(t, "addr", "add", tc.srcA.String()+"/24", "dev", p.AIf)
				t.Cleanup(func() { p.A.IP(t, "addr", "del", tc.srcA.String()+"/24", "dev", p.AIf) })
			}
			a := listenIn(t, p.A, Options{Interface: p.AIf, Family: tc.family, SourceAddr: tc.srcA})
			b := listenIn(t, p.B, Options{Interface: p.BIf, Family: tc.family})
			if err := a.WriteAdvert(tc.payload); err != nil {
				t.Fatal(err)
			}
			checkReceived(t, readWithin(t, b, 5*time.Second), tc.payload, tc.wantSrcOfA, Group(tc.family))

			// Loopback is off: A's first read is B's advert, not its own.
			reply := append([]byte(nil), tc.payload...)
			reply[2] = 100 // priority, to tell the two apart
			if err := b.WriteAdvert(reply); err != nil {
				t.Fatal(err)
			}
			wantB := p.B4.Addr()
			if tc.family == 6 {
				wantB = p.BLinkLocal
			}
			checkReceived(t, readWithin(t, a, 5*time.Second), reply, wantB, Group(tc.family))
		})
	}
}

func TestUnicast(t *testing.T) {
	p := nstest.NewPair(t)
	for _, tc := range []struct {
		name    string
		family  int
		payload []byte
		a, b    netip.Addr
		other   netip.Prefix // a second address of A that is not B's peer
	}{
		{"IPv4", 4, advertV2, p.A4.Addr(), p.B4.Addr(), netip.MustParsePrefix("10.201.0.9/24")},
		{"IPv6", 6, advertV3, p.A6.Addr(), p.B6.Addr(), netip.MustParsePrefix("fd00:201::9/64")},
		{"IPv6 link-local", 6, advertV3, p.ALinkLocal, p.BLinkLocal, netip.MustParsePrefix("fd00:201::9/64")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := listenIn(t, p.A, Options{Interface: p.AIf, Family: tc.family, SourceAddr: tc.a, Peers: []netip.Addr{tc.b}})
			b := listenIn(t, p.B, Options{Interface: p.BIf, Family: tc.family, SourceAddr: tc.b, Peers: []netip.Addr{tc.a}})
			if err := a.WriteAdvert(tc.payload); err != nil {
				t.Fatal(err)
			}
			checkReceived(t, readWithin(t, b, 5*time.Second), tc.payload, tc.a, tc.b)
			if err := b.WriteAdvert(tc.payload); err != nil {
				t.Fatal(err)
			}
			checkReceived(t, readWithin(t, a, 5*time.Second), tc.payload, tc.b, tc.a)

			// A sender that is not B's peer still reaches B's ReadAdvert, with its source, so
			// that the caller can count it as a drop (vrrp.DropPeer).
			args := []string{"addr", "add", tc.other.String(), "dev", p.AIf}
			if tc.family == 6 {
				args = append(args, "nodad")
			}
			p.A.IP(t, args...)
			t.Cleanup(func() { p.A.IP(t, "addr", "del", tc.other.String(), "dev", p.AIf) })
			stranger := listenIn(t, p.A, Options{Interface: p.AIf, Family: tc.family,
				SourceAddr: tc.other.Addr(), Peers: []netip.Addr{tc.b}})
			if err := stranger.WriteAdvert(tc.payload); err != nil {
				t.Fatal(err)
			}
			checkReceived(t, readWithin(t, b, 5*time.Second), tc.payload, tc.other.Addr(), tc.b)
		})
	}
}

// TestUnicastPerPeerPayload sends one payload per peer, as VRRPv3 checksums need, and checks
// that each peer address gets its own.
func TestUnicastPerPeerPayload(t *testing.T) {
	p := nstest.NewPair(t)
	b2 := netip.MustParsePrefix("10.201.0.3/24")
	p.B.IP(t, "addr", "add", b2.String(), "dev", p.BIf)
	peers := []netip.Addr{p.B4.Addr(), b2.Addr()}
	a := listenIn(t, p.A, Options{Interface: p.AIf, Family: 4, SourceAddr: p.A4.Addr(), Peers: peers})
	b := listenIn(t, p.B, Options{Interface: p.BIf, Family: 4, SourceAddr: p.B4.Addr(), Peers: []netip.Addr{p.A4.Addr()}})

	ep, ok := a.(Endpoints)
	if !ok {
		t.Fatalf("%T does not implement Endpoints", a)
	}
	if got := ep.Source(); got != p.A4.Addr() {
		t.Errorf("Source() = %v, want %v", got, p.A4.Addr())
	}
	if got := ep.Destinations(); len(got) != 2 || got[0] != peers[0] || got[1] != peers[1] {
		t.Errorf("Destinations() = %v, want %v", got, peers)
	}
	for i, dst := range ep.Destinations() {
		payload := append([]byte(nil), advertV2...)
		payload[2] = byte(10 + i)
		if err := ep.WriteAdvertTo(payload, dst); err != nil {
			t.Fatal(err)
		}
		checkReceived(t, readWithin(t, b, 5*time.Second), payload, p.A4.Addr(), dst)
	}
	if err := ep.WriteAdvertTo(advertV2, netip.MustParseAddr("10.201.0.99")); err == nil {
		t.Error("WriteAdvertTo a non-peer: no error")
	}
}

// TestMulticastOtherInterfaceNotDelivered joins the group on two interfaces of B and sends on
// each link in turn: each Conn sees only its own interface's adverts.
func TestMulticastOtherInterfaceNotDelivered(t *testing.T) {
	p := nstest.NewPair(t)
	p.A.IP(t, "link", "add", "va2", "type", "veth", "peer", "name", "vb2", "netns", p.B.Name)
	p.A.IP(t, "addr", "add", "10.202.0.1/24", "dev", "va2")
	p.B.IP(t, "addr", "add", "10.202.0.2/24", "dev", "vb2")
	p.A.IP(t, "link", "set", "va2", "up")
	p.B.IP(t, "link", "set", "vb2", "up")
	waitOperUp(t, p.A, "va2")
	waitOperUp(t, p.B, "vb2")

	a1 := listenIn(t, p.A, Options{Interface: p.AIf, Family: 4})
	a2 := listenIn(t, p.A, Options{Interface: "va2", Family: 4})
	b1 := listenIn(t, p.B, Options{Interface: p.BIf, Family: 4})
	b2 := listenIn(t, p.B, Options{Interface: "vb2", Family: 4})

	first := append([]byte(nil), advertV2...)
	first[2] = 1
	if err := a1.WriteAdvert(first); err != nil {
		t.Fatal(err)
	}
	// Once b1 has it, the kernel has delivered it to every raw socket that would get it: had b2
	// received it too, it would be queued ahead of the second advert.
	checkReceived(t, readWithin(t, b1, 5*time.Second), first, p.A4.Addr(), Group(4))
	second := append([]byte(nil), advertV2...)
	second[2] = 2
	if err := a2.WriteAdvert(second); err != nil {
		t.Fatal(err)
	}
	checkReceived(t, readWithin(t, b2, 5*time.Second), second, netip.MustParseAddr("10.202.0.1"), Group(4))

	// A unicast Conn sees no multicast, even with a multicast Conn on the same interface.
	u := listenIn(t, p.B, Options{Interface: p.BIf, Family: 4, SourceAddr: p.B4.Addr(), Peers: []netip.Addr{p.A4.Addr()}})
	if err := a1.WriteAdvert(first); err != nil {
		t.Fatal(err)
	}
	checkReceived(t, readWithin(t, b1, 5*time.Second), first, p.A4.Addr(), Group(4))
	ua := listenIn(t, p.A, Options{Interface: p.AIf, Family: 4, SourceAddr: p.A4.Addr(), Peers: []netip.Addr{p.B4.Addr()}})
	if err := ua.WriteAdvert(second); err != nil {
		t.Fatal(err)
	}
	checkReceived(t, readWithin(t, u, 5*time.Second), second, p.A4.Addr(), p.B4.Addr())
}

func waitOperUp(t *testing.T, ns *nstest.NS, ifname string) {
	t.Helper()
	h := ns.Netlink(t)
	nstest.Eventually(t, 5*time.Second, func() error {
		l, err := h.LinkByName(ifname)
		if err != nil {
			return err
		}
		if s := l.Attrs().OperState.String(); s != "up" {
			return errors.New(ifname + " is " + s)
		}
		return nil
	})
}

func TestCloseUnblocksRead(t *testing.T) {
	p := nstest.NewPair(t)
	for _, family := range []int{4, 6} {
		c := listenIn(t, p.A, Options{Interface: p.AIf, Family: family})
		done := make(chan error, 1)
		go func() {
			_, _, _, _, err := c.ReadAdvert(make([]byte, 1500))
			done <- err
		}()
		// Give the reader a chance to block; the assertion below holds either way.
		time.Sleep(20 * time.Millisecond)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("IPv%d: ReadAdvert after Close: %v, want net.ErrClosed", family, err)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("IPv%d: ReadAdvert still blocked 2s after Close", family)
		}
	}
}

func TestPrimaryAddr(t *testing.T) {
	p := nstest.NewPair(t)
	// A secondary address in the same subnet must not be chosen; a tentative link-local is
	// chosen only when nothing better exists.
	p.A.IP(t, "addr", "add", "10.201.0.50/24", "dev", p.AIf)
	p.A.IP(t, "link", "add", "empty0", "type", "veth", "peer", "name", "empty1")
	var got4, got6 netip.Addr
	var errEmpty error
	p.A.MustDo(t, func() error {
		var err error
		if got4, err = PrimaryAddr(p.AIf, 4); err != nil {
			return err
		}
		if got6, err = PrimaryAddr(p.AIf, 6); err != nil {
			return err
		}
		_, errEmpty = PrimaryAddr("empty0", 4)
		return nil
	})
	if got4 != p.A4.Addr() {
		t.Errorf("PrimaryAddr(4) = %v, want %v", got4, p.A4.Addr())
	}
	if got6 != p.ALinkLocal {
		t.Errorf("PrimaryAddr(6) = %v, want %v", got6, p.ALinkLocal)
	}
	if !errors.Is(errEmpty, ErrNoAddress) {
		t.Errorf("PrimaryAddr of an interface without address: %v, want ErrNoAddress", errEmpty)
	}
}

// TestResolve checks option validation; it needs no root (lo exists everywhere).
func TestResolve(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"family", Options{Interface: "lo", Family: 5, SourceAddr: netip.MustParseAddr("127.0.0.1")}, "address family 5"},
		{"no interface", Options{Interface: "hapair-none0", Family: 4, SourceAddr: netip.MustParseAddr("127.0.0.1")}, "hapair-none0"},
		{"peer family", Options{Interface: "lo", Family: 4, SourceAddr: netip.MustParseAddr("127.0.0.1"),
			Peers: []netip.Addr{netip.MustParseAddr("::1")}}, "peer ::1 is not IPv4"},
		{"source family", Options{Interface: "lo", Family: 6, SourceAddr: netip.MustParseAddr("127.0.0.1")}, "source 127.0.0.1 is not IPv6"},
		{"v6 multicast needs link-local", Options{Interface: "lo", Family: 6, SourceAddr: netip.MustParseAddr("fd00::1")}, "must be link-local"},
		{"v6 unicast any source", Options{Interface: "lo", Family: 6, SourceAddr: netip.MustParseAddr("fd00::1"),
			Peers: []netip.Addr{netip.MustParseAddr("fd00::2")}}, ""},
		{"v4 mapped source", Options{Interface: "lo", Family: 4, SourceAddr: netip.MustParseAddr("::ffff:127.0.0.1")}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, src, err := resolve(tc.opts)
			if err == nil && src != tc.opts.SourceAddr.Unmap() {
				t.Errorf("source = %v, want %v", src, tc.opts.SourceAddr.Unmap())
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("resolve: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("resolve: %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestGroup(t *testing.T) {
	if g := Group(4); g != netip.MustParseAddr("224.0.0.18") {
		t.Errorf("Group(4) = %v", g)
	}
	if g := Group(6); g != netip.MustParseAddr("ff02::12") {
		t.Errorf("Group(6) = %v", g)
	}
}

// BenchmarkAdvertOneWay measures one advert from A's WriteAdvert to B's ReadAdvert across the
// veth pair, multicast IPv4.
func BenchmarkAdvertOneWay(b *testing.B) {
	p := nstest.NewPair(b)
	var a, r Conn
	p.A.MustDo(b, func() (err error) { a, err = Listen(Options{Interface: p.AIf, Family: 4}); return })
	defer a.Close()
	p.B.MustDo(b, func() (err error) { r, err = Listen(Options{Interface: p.BIf, Family: 4}); return })
	defer r.Close()
	buf := make([]byte, 1500)
	for b.Loop() {
		if err := a.WriteAdvert(advertV2); err != nil {
			b.Fatal(err)
		}
		if _, _, _, _, err := r.ReadAdvert(buf); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/advert")
}
