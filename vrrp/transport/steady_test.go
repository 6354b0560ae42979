package transport

import (
	"net/netip"
	"testing"
	"time"

	"github.com/hapair/hapair/vrrp/internal/nstest"
	"golang.org/x/sys/unix"
)

// TestSteadySocket: the socket a steady sender writes to is connected to the member's one
// destination and sends from its source with TTL 255, for multicast over IPv4 and IPv6 and for
// one unicast peer, from a caller in another namespace than the member's socket; with several
// peers, or once the member is closed, there is none.
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
			fd, err := a.SteadySocket() // from the test's own namespace
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			payload := advertV2
			if tc.family == 6 {
				payload = append([]byte{0x31}, advertV2[1:8]...) // VRRPv3 header, no addresses
			}
			if _, err := unix.Write(fd, payload); err != nil {
				t.Fatalf("write on the steady socket: %v", err)
			}
			r := readWithin(t, b, 5*time.Second)
			checkReceived(t, r, payload, tc.src, tc.dst)
		})
	}
	t.Run("several peers", func(t *testing.T) {
		a := joinIn(t, p.A, NewHub(HubOptions{}), Options{Interface: p.AIf, Family: 4,
			Peers: []netip.Addr{p.B4.Addr(), netip.MustParseAddr("10.201.0.9")}}, 52)
		if fd, err := a.SteadySocket(); err == nil {
			unix.Close(fd)
			t.Fatal("a steady socket for two peers, want an error")
		}
	})
	t.Run("closed", func(t *testing.T) {
		a := joinIn(t, p.A, NewHub(HubOptions{}), Options{Interface: p.AIf, Family: 4}, 53)
		a.Close()
		if fd, err := a.SteadySocket(); err == nil {
			unix.Close(fd)
			t.Fatal("a steady socket for a closed member, want an error")
		}
	})
}
