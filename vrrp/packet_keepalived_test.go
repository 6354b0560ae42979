package vrrp

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// captured is one VRRP packet read from a pcap file: the IP payload and what the IP header said.
type captured struct {
	payload  []byte
	src, dst netip.Addr
	ttl      int
}

// readPcap reads the VRRP packets of a classic pcap file with Ethernet framing, as tcpdump -w
// writes it. It knows just enough of IPv4 and IPv6 for keepalived's adverts (no IPv6
// extension headers).
func readPcap(path string) ([]captured, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(data) < 24 {
		return nil, fmt.Errorf("read %s: %d bytes, no pcap header", path, len(data))
	}
	var bo binary.ByteOrder
	switch binary.LittleEndian.Uint32(data) {
	case 0xa1b2c3d4, 0xa1b23c4d: // microsecond, nanosecond timestamps
		bo = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		bo = binary.BigEndian
	default:
		return nil, fmt.Errorf("read %s: not a pcap file", path)
	}
	if link := bo.Uint32(data[20:]); link != 1 {
		return nil, fmt.Errorf("read %s: link type %d, want 1 (Ethernet)", path, link)
	}
	var out []captured
	for rest := data[24:]; len(rest) > 0; {
		if len(rest) < 16 {
			return nil, fmt.Errorf("read %s: truncated record header", path)
		}
		n := int(bo.Uint32(rest[8:]))
		if len(rest) < 16+n {
			return nil, fmt.Errorf("read %s: truncated record", path)
		}
		frame := rest[16 : 16+n]
		rest = rest[16+n:]
		c, err := decodeFrame(frame)
		if err != nil {
			return nil, fmt.Errorf("read %s: packet %d: %w", path, len(out)+1, err)
		}
		out = append(out, c)
	}
	return out, nil
}

func decodeFrame(f []byte) (captured, error) {
	if len(f) < 14 {
		return captured{}, fmt.Errorf("short frame")
	}
	ip := f[14:]
	switch binary.BigEndian.Uint16(f[12:]) {
	case 0x0800:
		if len(ip) < 20 || ip[0]>>4 != 4 {
			return captured{}, fmt.Errorf("bad IPv4 header")
		}
		hl, total := int(ip[0]&0x0f)*4, int(binary.BigEndian.Uint16(ip[2:]))
		if ip[9] != IPProtocol || total > len(ip) || hl > total {
			return captured{}, fmt.Errorf("not a whole VRRP packet")
		}
		return captured{
			payload: ip[hl:total],
			src:     netip.AddrFrom4([4]byte(ip[12:])),
			dst:     netip.AddrFrom4([4]byte(ip[16:])),
			ttl:     int(ip[8]),
		}, nil
	case 0x86dd:
		if len(ip) < 40 || ip[6] != IPProtocol {
			return captured{}, fmt.Errorf("not a VRRP IPv6 packet")
		}
		n := int(binary.BigEndian.Uint16(ip[4:]))
		if 40+n > len(ip) {
			return captured{}, fmt.Errorf("truncated IPv6 payload")
		}
		return captured{
			payload: ip[40 : 40+n],
			src:     netip.AddrFrom16([16]byte(ip[8:])),
			dst:     netip.AddrFrom16([16]byte(ip[24:])),
			ttl:     int(ip[7]),
		}, nil
	}
	return captured{}, fmt.Errorf("ethertype %#04x", binary.BigEndian.Uint16(f[12:]))
}

// checksumForm says which of the forms Parse accepts a v3/IPv4 packet's checksum has.
func checksumForm(c captured) string {
	n := len(c.payload)
	switch {
	case c.payload[0]>>4 == 2 && fold(sum(c.payload, 0)) == 0xffff:
		return "v2"
	case fold(sum(c.payload, pseudoHeaderSum(c.src, c.dst, n))) == 0xffff:
		return "pseudo-header"
	case fold(sum(c.payload, 0)) == 0xffff:
		return "message only"
	case fold(sum(c.payload, pseudoHeaderSum(c.src, group4, n))) == 0xffff:
		return "pseudo-header to 224.0.0.18"
	}
	return "invalid"
}

// TestKeepalivedCaptures parses adverts that keepalived 2.2.7 sent (testdata/capture.sh),
// checks every field, checks that an instance configured like keepalived's peer accepts them,
// and that Marshal gives back keepalived's bytes exactly.
func TestKeepalivedCaptures(t *testing.T) {
	v2pass := func(p string) Advert {
		return Advert{Version: 2, VRID: 51, Priority: 110, Interval: time.Second, AuthType: AuthSimple, AuthData: pass(p), Addrs: addrs("10.0.0.10")}
	}
	tests := []struct {
		file     string
		count    int
		want     Advert
		dst      netip.Addr
		form     string // checksum form found on the wire
		filter   Filter // the receiving instance (keepalived's peer)
		marshal  netip.Addr
		wantMode ChecksumMode
	}{
		{
			file: "v2-pass", count: 3, want: v2pass("1a2b3c4d"), dst: group4, form: "v2",
			filter: Filter{VRID: 51, Version: 2, AuthType: AuthSimple, AuthPass: "1a2b3c4d", Interval: time.Second, Addrs: addrs("10.0.0.10")},
		},
		{
			file: "v2-pass-release", count: 1, want: func() Advert { a := v2pass("1a2b3c4d"); a.Priority = 0; return a }(), dst: group4, form: "v2",
			filter: Filter{VRID: 51, Version: 2, AuthType: AuthSimple, AuthPass: "1a2b3c4d", Interval: time.Second},
		},
		{
			file: "v2-unicast", count: 3, dst: peer4, form: "v2",
			want:   Advert{Version: 2, VRID: 55, Priority: 110, Interval: time.Second, AuthType: AuthSimple, AuthData: pass("secret"), Addrs: addrs("10.0.0.50")},
			filter: Filter{VRID: 55, Version: 2, AuthType: AuthSimple, AuthPass: "secret", Interval: time.Second, Peers: addrs("10.99.0.11")},
		},
		{
			file: "v3-fast", count: 3, dst: group4, form: "pseudo-header",
			want:   Advert{Version: 3, VRID: 52, Priority: 100, Interval: 100 * time.Millisecond, Addrs: addrs("10.0.0.20")},
			filter: Filter{VRID: 52, Version: 3, Interval: time.Second},
		},
		{
			file: "v3-fast-release", count: 1, dst: group4, form: "pseudo-header",
			want:   Advert{Version: 3, VRID: 52, Priority: 0, Interval: 100 * time.Millisecond, Addrs: addrs("10.0.0.20")},
			filter: Filter{VRID: 52, Version: 3, Interval: time.Second},
		},
		{
			// keepalived 2.2.7 rejects v3_checksum_as_v2 as an unknown keyword (see the .log):
			// it still sends the pseudo-header form.
			file: "v3-checksum-as-v2", count: 3, dst: group4, form: "pseudo-header",
			want:   Advert{Version: 3, VRID: 54, Priority: 100, Interval: 100 * time.Millisecond, Addrs: addrs("10.0.0.40")},
			filter: Filter{VRID: 54, Version: 3},
		},
		{
			file: "v3-unicast", count: 3, dst: peer4, form: "pseudo-header",
			want:   Advert{Version: 3, VRID: 56, Priority: 120, Interval: 500 * time.Millisecond, Addrs: addrs("10.0.0.60", "10.0.0.61")},
			filter: Filter{VRID: 56, Version: 3, Peers: addrs("10.99.0.11"), Addrs: addrs("10.0.0.61", "10.0.0.60")},
		},
		{
			file: "v3-unicast-old-checksum", count: 3, dst: peer4, form: "pseudo-header to 224.0.0.18", marshal: group4,
			want:   Advert{Version: 3, VRID: 57, Priority: 120, Interval: time.Second, Addrs: addrs("10.0.0.70")},
			filter: Filter{VRID: 57, Version: 3, Peers: addrs("10.99.0.11")},
		},
		{
			file: "v3-ipv6", count: 3, dst: group6, form: "pseudo-header",
			want:   Advert{Version: 3, VRID: 53, Priority: 100, Interval: time.Second, Addrs: addrs("fd00::10")},
			filter: Filter{VRID: 53, Version: 3, Addrs: addrs("fd00::10")},
		},
		{
			file: "v3-ipv6-release", count: 1, dst: group6, form: "pseudo-header",
			want:   Advert{Version: 3, VRID: 53, Priority: 0, Interval: time.Second, Addrs: addrs("fd00::10")},
			filter: Filter{VRID: 53, Version: 3},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			pkts, err := readPcap(filepath.Join("testdata", "keepalived", tt.file+".pcap"))
			if err != nil {
				t.Fatal(err)
			}
			if len(pkts) != tt.count {
				t.Fatalf("%d packets, want %d", len(pkts), tt.count)
			}
			for i, c := range pkts {
				if c.dst != tt.dst || c.ttl != 255 {
					t.Errorf("packet %d: to %v TTL %d, want to %v TTL 255", i, c.dst, c.ttl, tt.dst)
				}
				if tt.dst.Is4() && c.src != src4 || tt.dst.Is6() && !c.src.IsLinkLocalUnicast() {
					t.Errorf("packet %d: from %v", i, c.src)
				}
				if got := checksumForm(c); got != tt.form {
					t.Errorf("packet %d: checksum form %q, want %q", i, got, tt.form)
				}
				a, err := Parse(c.payload, c.src, c.dst)
				if err != nil {
					t.Fatalf("packet %d: Parse(% x): %v", i, c.payload, err)
				}
				if !reflect.DeepEqual(a, tt.want) {
					t.Errorf("packet %d:\n got %+v\nwant %+v", i, a, tt.want)
				}
				if err := tt.filter.Check(c.ttl, c.src, c.dst, &a); err != nil {
					t.Errorf("packet %d: Check: %v", i, err)
				}
				// hapair must put the same bytes on the wire as keepalived.
				pseudoDst := c.dst
				if tt.marshal.IsValid() {
					pseudoDst = tt.marshal
				}
				b, err := a.Marshal(c.src, pseudoDst, ChecksumWithPseudoHeader)
				if err != nil {
					t.Fatalf("packet %d: Marshal: %v", i, err)
				}
				if !bytes.Equal(b, c.payload) {
					t.Errorf("packet %d: Marshal\n got % x\nwant % x (keepalived)", i, b, c.payload)
				}
			}
		})
	}
}

func TestReadPcapRejectsGarbage(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"empty":     nil,
		"not pcap":  bytes.Repeat([]byte{0x42}, 40),
		"truncated": append(binary.LittleEndian.AppendUint32(nil, 0xa1b2c3d4), make([]byte, 20+10)...),
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := readPcap(p); err == nil {
			t.Errorf("readPcap(%s) accepted it", name)
		}
	}
}
