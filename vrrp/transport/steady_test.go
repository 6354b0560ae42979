package transport

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/hapair/hapair/vrrp/internal/nstest"
	"golang.org/x/sys/unix"
)

// TestSteadySocket: the socket a steady sender writes to is connected to the member's one
// destination and sends from its source with TTL 255, for multicast over IPv4 and IPv6 and for
// one unicast peer, from a caller in another namespace than the member's socket; over IPv4 it
// takes the IP header from the datagram, and the packet on the wire carries the header the
// kernel built before (TOS 0xc0, don't fragment, TTL 255) with the length, identification and
// checksum filled in; with several peers, or once the member is closed, there is none.
func TestSteadySocket(t *testing.T) {
	p := nstest.NewPair(t)
	for _, tc := range []struct {
		name   string
		a, b   Options
		src    netip.Addr
		dst    netip.Addr
		family int
	}{
		{"multicast v4", Options{Interface: p.AIf, Family: 4}, Options{Interface: p.BIf, Family: 4}, p.A4.Addr(), Group(4), 4},
		{"multicast v6", Options{Interface: p.AIf, Family: 6}, Options{Interface: p.BIf, Family: 6}, p.ALinkLocal, Group(6), 6},
		{"unicast v4", Options{Interface: p.AIf, Family: 4, Peers: []netip.Addr{p.B4.Addr()}},
			Options{Interface: p.BIf, Family: 4, Peers: []netip.Addr{p.A4.Addr()}}, p.A4.Addr(), p.B4.Addr(), 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := joinIn(t, p.A, NewHub(HubOptions{}), tc.a, 51)
			b := joinIn(t, p.B, NewHub(HubOptions{}), tc.b, 51)
			var wire int // a raw socket in b's namespace, which reads the IPv4 header too
			if tc.family == 4 {
				p.B.MustDo(t, func() (err error) {
					wire, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, Protocol)
					return err
				})
				defer unix.Close(wire)
				tv := unix.NsecToTimeval(int64(5 * time.Second))
				if err := unix.SetsockoptTimeval(wire, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
					t.Fatal(err)
				}
			}
			fd, header, err := a.SteadySocket() // from the test's own namespace
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			payload := advertV2
			if tc.family == 6 {
				payload = append([]byte{0x31}, advertV2[1:8]...) // VRRPv3 header, no addresses
			}
			if got := len(header); (tc.family == 4) != (got == 20) || (tc.family == 6 && got != 0) {
				t.Fatalf("header of %d bytes over IPv%d", got, tc.family)
			}
			if _, err := unix.Write(fd, append(header, payload...)); err != nil {
				t.Fatalf("write on the steady socket: %v", err)
			}
			r := readWithin(t, b, 5*time.Second)
			checkReceived(t, r, payload, tc.src, tc.dst)
			if tc.family == 4 {
				checkWireHeader(t, wire, payload, tc.src, tc.dst)
			}
		})
	}
	t.Run("several peers", func(t *testing.T) {
		a := joinIn(t, p.A, NewHub(HubOptions{}), Options{Interface: p.AIf, Family: 4,
			Peers: []netip.Addr{p.B4.Addr(), netip.MustParseAddr("10.201.0.9")}}, 52)
		if fd, _, err := a.SteadySocket(); err == nil {
			unix.Close(fd)
			t.Fatal("a steady socket for two peers, want an error")
		}
	})
	t.Run("closed", func(t *testing.T) {
		a := joinIn(t, p.A, NewHub(HubOptions{}), Options{Interface: p.AIf, Family: 4}, 53)
		a.Close()
		if fd, _, err := a.SteadySocket(); err == nil {
			unix.Close(fd)
			t.Fatal("a steady socket for a closed member, want an error")
		}
	})
}

// checkWireHeader reads, from a raw socket, the packet carrying payload and checks its IPv4
// header field by field.
func checkWireHeader(t *testing.T, wire int, payload []byte, src, dst netip.Addr) {
	t.Helper()
	buf := make([]byte, 1500)
	for {
		n, _, err := unix.Recvfrom(wire, buf, 0)
		if err != nil {
			t.Fatalf("no packet on the wire: %v", err)
		}
		pkt := buf[:n]
		if n < 20 || !bytes.Equal(pkt[20:], payload) {
			continue // another advert on the link
		}
		h := pkt[:20]
		want := []struct {
			what      string
			got, want uint64
		}{
			{"version and header length", uint64(h[0]), 0x45},
			{"TOS", uint64(h[1]), 0xc0},
			{"total length", uint64(binary.BigEndian.Uint16(h[2:])), uint64(n)},
			{"flags and fragment offset", uint64(binary.BigEndian.Uint16(h[6:])), 0x4000},
			{"TTL", uint64(h[8]), TTL},
			{"protocol", uint64(h[9]), Protocol},
		}
		for _, w := range want {
			if w.got != w.want {
				t.Errorf("%s %#x on the wire, want %#x", w.what, w.got, w.want)
			}
		}
		if got := netip.AddrFrom4([4]byte(h[12:16])); got != src {
			t.Errorf("source %v on the wire, want %v", got, src)
		}
		if got := netip.AddrFrom4([4]byte(h[16:20])); got != dst {
			t.Errorf("destination %v on the wire, want %v", got, dst)
		}
		var sum uint32
		for i := 0; i < 20; i += 2 {
			sum += uint32(binary.BigEndian.Uint16(h[i:]))
		}
		for sum > 0xffff {
			sum = sum&0xffff + sum>>16
		}
		if sum != 0xffff {
			t.Errorf("header checksum %#04x does not add up (sum %#x)", binary.BigEndian.Uint16(h[10:]), sum)
		}
		return
	}
}
