package vip

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
)

// fakeConn records what is written to it.
type fakeConn struct {
	net.PacketConn // nil: only WriteTo and Close are used
	frames         [][]byte
	dsts           []net.HardwareAddr
	fail           bool
	closed         bool
}

func (f *fakeConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if f.fail {
		return 0, errors.New("link is down")
	}
	f.frames = append(f.frames, append([]byte(nil), b...))
	f.dsts = append(f.dsts, addr.(*packet.Addr).HardwareAddr)
	return len(b), nil
}

func (f *fakeConn) Close() error { f.closed = true; return nil }

// keepalivedFrames reads the frames of a tcpdump -XX capture: each frame's hex lines are
// indented by one tab (option sub-dumps by more).
func keepalivedFrames(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var frames [][]byte
	var cur []byte
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "\t0x"):
			hexPart := strings.ReplaceAll(strings.TrimSpace(line[10:min(49, len(line))]), " ", "")
			b, err := hex.DecodeString(hexPart)
			if err != nil {
				t.Fatalf("%s: %q: %v", path, line, err)
			}
			cur = append(cur, b...)
		case line != "" && line[0] >= '0' && line[0] <= '9': // a new frame's summary line
			if cur != nil {
				frames = append(frames, cur)
			}
			cur = []byte{}
		}
	}
	if cur != nil {
		frames = append(frames, cur)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return frames
}

// TestFramesMatchKeepalived: for the same MAC and VIPs, our GARP and NA are byte for byte the
// frames keepalived 2.2.7 put on the wire.
func TestFramesMatchKeepalived(t *testing.T) {
	want := keepalivedFrames(t, "testdata/keepalived-2.2.7-garp-na.txt")
	if len(want) != 2 {
		t.Fatalf("capture holds %d frames, want 2", len(want))
	}
	ifi := &net.Interface{Name: "va", HardwareAddr: net.HardwareAddr{0xce, 0xdb, 0xd4, 0xf1, 0x0b, 0x6f}}
	c := &fakeConn{}
	a := newAnnouncer(ifi, c, func() bool { return false })
	n, err := a.Announce([]netip.Prefix{
		netip.MustParsePrefix("192.168.77.100/24"),
		netip.MustParsePrefix("fd77::100/64"),
	})
	if err != nil || n != 2 {
		t.Fatalf("Announce = %d, %v; want 2, nil", n, err)
	}
	for i, name := range []string{"gratuitous ARP", "unsolicited NA"} {
		if !bytes.Equal(c.frames[i], want[i]) {
			t.Errorf("%s:\n got % x\nwant % x", name, c.frames[i], want[i])
		}
	}
	if got := c.dsts[0].String(); got != "ff:ff:ff:ff:ff:ff" {
		t.Errorf("ARP sent to %s, want broadcast", got)
	}
	if got := c.dsts[1].String(); got != "33:33:00:00:00:01" {
		t.Errorf("NA sent to %s, want 33:33:00:00:00:01", got)
	}
}

func TestAnnounceRouterFlag(t *testing.T) {
	ifi := &net.Interface{Name: "eth0", HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}}
	for _, forwarding := range []bool{false, true} {
		c := &fakeConn{}
		a := newAnnouncer(ifi, c, func() bool { return forwarding })
		if _, err := a.Announce([]netip.Prefix{netip.MustParsePrefix("2001:db8::10/64")}); err != nil {
			t.Fatal(err)
		}
		m, err := ndp.ParseMessage(c.frames[0][ethHeaderLen+ipv6HeaderLen:])
		if err != nil {
			t.Fatal(err)
		}
		na, ok := m.(*ndp.NeighborAdvertisement)
		if !ok {
			t.Fatalf("sent %T, want a neighbour advertisement", m)
		}
		if na.Router != forwarding || !na.Override || na.Solicited {
			t.Errorf("forwarding %v: flags router=%v override=%v solicited=%v", forwarding, na.Router, na.Override, na.Solicited)
		}
		if na.TargetAddress != netip.MustParseAddr("2001:db8::10") {
			t.Errorf("target %v", na.TargetAddress)
		}
	}
}

func TestAnnounceErrors(t *testing.T) {
	ifi := &net.Interface{Name: "eth0", HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}}
	c := &fakeConn{fail: true}
	a := newAnnouncer(ifi, c, func() bool { return false })
	n, err := a.Announce([]netip.Prefix{netip.MustParsePrefix("10.0.0.10/24"), netip.MustParsePrefix("10.0.0.11/24")})
	if n != 0 || err == nil {
		t.Fatalf("Announce on a failing socket = %d, %v; want 0 and an error", n, err)
	}
	for _, want := range []string{"announce 10.0.0.10 on eth0: link is down", "announce 10.0.0.11 on eth0"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if err := a.Close(); err != nil || !c.closed {
		t.Errorf("Close = %v, closed %v", err, c.closed)
	}
}

func TestNewAnnouncerNotEthernet(t *testing.T) {
	if _, err := NewAnnouncer("lo"); !errors.Is(err, ErrNotEthernet) {
		t.Errorf("NewAnnouncer(lo) = %v, want ErrNotEthernet", err)
	}
}

// BenchmarkFrames measures building one GARP and one NA.
func BenchmarkFrames(b *testing.B) {
	a := newAnnouncer(&net.Interface{Name: "eth0", HardwareAddr: net.HardwareAddr{2, 0, 0, 0, 0, 1}},
		&fakeConn{}, func() bool { return false })
	v4, v6 := netip.MustParseAddr("10.0.0.10"), netip.MustParseAddr("2001:db8::10")
	for b.Loop() {
		if _, _, err := a.frame(v4, false); err != nil {
			b.Fatal(err)
		}
		if _, _, err := a.frame(v6, false); err != nil {
			b.Fatal(err)
		}
	}
}
