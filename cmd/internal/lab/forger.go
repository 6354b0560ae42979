package lab

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/ipv4"
)

// vrrpGroup4 is VRRP's IPv4 multicast group (RFC 5798 section 5.1.1.2).
var vrrpGroup4 = net.IPv4(224, 0, 0, 18)

// maxHeard bounds what a Forger keeps of the adverts it hears.
const maxHeard = 64

// Forger is the hostile or misconfigured neighbour of the tests and of the chaos suite: a raw
// IPv4 VRRP socket (IP protocol 112) in one host, which sends hand-made payloads to 224.0.0.18
// (or by unicast to a host) with any TTL, and records the adverts it hears so that they can be
// replayed. It never builds packets itself: callers marshal them with package vrrp, so that a
// forgery is exactly as well-formed (or as broken) as the test wants.
type Forger struct {
	host *Host
	ifi  *net.Interface
	raw  net.PacketConn
	pc   *ipv4.PacketConn

	sendMu sync.Mutex

	mu    sync.Mutex
	heard [][]byte
	done  chan struct{}
}

// NewForger opens the socket in the host's namespace, joins the VRRP group on eth0 and starts
// recording what it hears. Close it when done (Lab.Close does not know it).
func (h *Host) NewForger() (*Forger, error) {
	f := &Forger{host: h, done: make(chan struct{})}
	err := h.Do(func() error {
		ifi, err := net.InterfaceByName(HostInterface)
		if err != nil {
			return err
		}
		raw, err := net.ListenPacket("ip4:112", "0.0.0.0")
		if err != nil {
			return err
		}
		pc := ipv4.NewPacketConn(raw)
		for _, step := range []error{
			pc.JoinGroup(ifi, &net.IPAddr{IP: vrrpGroup4}),
			pc.SetMulticastInterface(ifi),
			pc.SetMulticastLoopback(false),
		} {
			if step != nil {
				raw.Close()
				return step
			}
		}
		f.ifi, f.raw, f.pc = ifi, raw, pc
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: forger: %w", h.Name, err)
	}
	go f.record()
	return f, nil
}

// Send sends one VRRP payload (no IP header) to 224.0.0.18 from the host's address with the
// given TTL: 255 as on the link, anything else as if routed.
func (f *Forger) Send(payload []byte, ttl int) error {
	// The TTL is a socket option: setting it and sending must not interleave with another
	// Send (a replay meant for TTL 64 would leave with 255 and be accepted).
	f.sendMu.Lock()
	defer f.sendMu.Unlock()
	if err := f.pc.SetMulticastTTL(ttl); err != nil {
		return fmt.Errorf("%s: forger: TTL %d: %w", f.host.Name, ttl, err)
	}
	if _, err := f.pc.WriteTo(payload, nil, &net.IPAddr{IP: vrrpGroup4}); err != nil {
		return fmt.Errorf("%s: forger: send: %w", f.host.Name, err)
	}
	return nil
}

// SendTo sends one VRRP payload (no IP header) by unicast to dst, a host's address on the link,
// from the host's address with the given TTL: what a multicast instance, which listens to
// 224.0.0.18 only, must drop.
func (f *Forger) SendTo(payload []byte, dst netip.Addr, ttl int) error {
	f.sendMu.Lock() // the TTL is a socket option, as in Send
	defer f.sendMu.Unlock()
	if err := f.pc.SetTTL(ttl); err != nil {
		return fmt.Errorf("%s: forger: TTL %d: %w", f.host.Name, ttl, err)
	}
	if _, err := f.pc.WriteTo(payload, nil, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return fmt.Errorf("%s: forger: send to %s: %w", f.host.Name, dst, err)
	}
	return nil
}

// Heard returns copies of the last adverts (payloads, without IP header) the forger heard,
// oldest first.
func (f *Forger) Heard() [][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([][]byte, len(f.heard))
	copy(out, f.heard)
	return out
}

// Close closes the socket and waits for the recorder to end.
func (f *Forger) Close() error {
	err := f.raw.Close()
	<-f.done
	return err
}

func (f *Forger) record() {
	defer close(f.done)
	buf := make([]byte, 1500)
	for {
		// An "ip4" socket hands over the payload without the IPv4 header.
		n, _, err := f.raw.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // a persistent error must not spin a core
			continue
		}
		p := append([]byte(nil), buf[:n]...)
		f.mu.Lock()
		if len(f.heard) == maxHeard {
			f.heard = append(f.heard[:0], f.heard[1:]...)
		}
		f.heard = append(f.heard, p)
		f.mu.Unlock()
	}
}
