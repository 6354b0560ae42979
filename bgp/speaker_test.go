package bgp

import (
	"bufio"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	wire "github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/hapair/hapair/internal/testenv"
)

// These tests play the router by hand, message by message, on loopback: what a misbehaving or
// hostile router does, and what exactly the speaker puts on the wire. gobgp_test.go runs the
// speaker against real GoBGP routers, the lab's tests against FRR.

// scripted is a router that accepts the speaker's connection and does what the test says.
type scripted struct {
	t    *testing.T
	ln   net.Listener
	addr netip.Addr
	port int
}

func listenScripted(t *testing.T) *scripted {
	t.Helper()
	return listenScriptedOn(t, netip.MustParseAddr("127.0.0.1"))
}

// listenScriptedOn is a scripted router on another loopback address: the speaker has one
// session per address.
func listenScriptedOn(t *testing.T, addr netip.Addr) *scripted {
	t.Helper()
	return listenScriptedWith(t, addr, net.ListenConfig{})
}

func listenScriptedWith(t *testing.T, addr netip.Addr, lc net.ListenConfig) *scripted {
	t.Helper()
	ln, err := lc.Listen(context.Background(), "tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		testenv.SkipOrFail(t, "cannot listen on loopback: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	return &scripted{t: t, ln: ln, addr: addr, port: ln.Addr().(*net.TCPAddr).Port}
}

// peer is the speaker's configuration of this router (AS 65000, hold time 3s).
func (s *scripted) peer() Peer {
	return Peer{Address: s.addr, ASN: 65000, HoldTime: 3 * time.Second, Port: s.port}
}

type routerConn struct {
	t   *testing.T
	two bool // decode with 2-octet AS numbers
	c   net.Conn
	r   *bufio.Reader
}

func (s *scripted) accept() *routerConn {
	s.t.Helper()
	s.ln.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	c, err := s.ln.Accept()
	if err != nil {
		s.t.Fatalf("the speaker did not connect: %v", err)
	}
	s.t.Cleanup(func() { c.Close() })
	return &routerConn{t: s.t, c: c, r: bufio.NewReader(c)}
}

// read returns the next message from the speaker, decoded whole (UPDATEs too).
func (rc *routerConn) read() *wire.BGPMessage {
	rc.t.Helper()
	msg, err := rc.next(10 * time.Second)
	if err != nil {
		rc.t.Fatalf("reading from the speaker: %v", err)
	}
	return msg
}

func (rc *routerConn) next(within time.Duration) (*wire.BGPMessage, error) {
	rc.c.SetReadDeadline(time.Now().Add(within))
	head := make([]byte, wire.BGP_HEADER_LENGTH)
	if _, err := io.ReadFull(rc.r, head); err != nil {
		return nil, err
	}
	msg := make([]byte, binary.BigEndian.Uint16(head[16:18]))
	copy(msg, head)
	if _, err := io.ReadFull(rc.r, msg[wire.BGP_HEADER_LENGTH:]); err != nil {
		return nil, err
	}
	if rc.two {
		return wire.ParseBGPMessage(msg, &wire.MarshallingOption{Use2ByteAS: true})
	}
	return wire.ParseBGPMessage(msg)
}

// readNotification reads until a NOTIFICATION (keepalives may come first) and returns it.
func (rc *routerConn) readNotification() *wire.BGPNotification {
	rc.t.Helper()
	for {
		msg := rc.read()
		if n, ok := msg.Body.(*wire.BGPNotification); ok {
			return n
		}
	}
}

func (rc *routerConn) send(msg *wire.BGPMessage) {
	rc.t.Helper()
	b, err := msg.Serialize()
	if err != nil {
		rc.t.Fatal(err)
	}
	rc.sendRaw(b)
}

func (rc *routerConn) sendRaw(b []byte) {
	rc.t.Helper()
	if _, err := rc.c.Write(b); err != nil {
		rc.t.Fatalf("writing to the speaker: %v", err)
	}
}

// handshake answers the speaker's OPEN with one of AS asn (a 4-octet capability unless two) and
// hold time hold, and completes the exchange; it returns the speaker's OPEN.
func (rc *routerConn) handshake(asn uint32, hold uint16, two bool) *wire.BGPOpen {
	rc.t.Helper()
	theirs, ok := rc.read().Body.(*wire.BGPOpen)
	if !ok {
		rc.t.Fatal("the speaker's first message is not an OPEN")
	}
	rc.send(routerOpen(rc.t, asn, hold, two))
	if msg := rc.read(); msg.Header.Type != wire.BGP_MSG_KEEPALIVE {
		rc.t.Fatalf("after the OPENs the speaker sent type %d, want KEEPALIVE", msg.Header.Type)
	}
	rc.send(wire.NewBGPKeepAliveMessage())
	return theirs
}

func routerOpen(t *testing.T, asn uint32, hold uint16, two bool) *wire.BGPMessage {
	t.Helper()
	caps := []wire.ParameterCapabilityInterface{wire.NewCapMultiProtocol(wire.RF_IPv4_UC)}
	my := uint16(asn)
	if !two {
		caps = append(caps, wire.NewCapFourOctetASNumber(asn))
		if asn > 0xffff {
			my = asTrans
		}
	}
	open, err := wire.NewBGPOpenMessage(my, hold, netip.MustParseAddr("10.255.0.1"),
		[]wire.OptionParameterInterface{wire.NewOptionParameterCapability(caps)})
	if err != nil {
		t.Fatal(err)
	}
	return open
}

func startSpeaker(t *testing.T, localASN uint32, peers ...Peer) (*Server, *peerEvents) {
	t.Helper()
	ev := &peerEvents{up: map[netip.Addr][]bool{}}
	s, err := Start(context.Background(), ServerConfig{LocalASN: localASN, RouterID: netip.MustParseAddr("10.0.0.11"), Peers: peers}, ev, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s, ev
}

// established starts a speaker of AS 65010 toward r, completes the session as AS 65000 with hold
// time 3s, and waits until the speaker has it up.
func established(t *testing.T, r *scripted) (*Server, *peerEvents, *routerConn) {
	t.Helper()
	s, ev := startSpeaker(t, 65010, r.peer())
	c := r.accept()
	c.handshake(65000, 3, false)
	waitPeer(t, s, r.peer().Address, isUp, "up")
	return s, ev, c
}

// waitPeer waits until the speaker's status of peer satisfies cond.
func waitPeer(t *testing.T, s *Server, peer netip.Addr, cond func(PeerStatus) bool, what string) PeerStatus {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, p := range s.Peers() {
			if p.Address == peer.String() && cond(p) {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("peer %s never %s: %+v", peer, what, s.Peers())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func isUp(p PeerStatus) bool { return p.Up }

func TestOpenCarriesTheSpeakersIdentity(t *testing.T) {
	r := listenScripted(t)
	startSpeaker(t, 4200000001, r.peer())
	c := r.accept()
	open := c.handshake(65000, 90, false)
	if open.Version != 4 || open.MyAS != asTrans || open.HoldTime != 3 || open.ID != netip.MustParseAddr("10.0.0.11") {
		t.Errorf("OPEN: version %d, AS %d, hold %d, id %s; want 4, AS_TRANS (23456) for AS 4200000001, 3, 10.0.0.11",
			open.Version, open.MyAS, open.HoldTime, open.ID)
	}
	var as4 uint32
	var mp []wire.Family
	for _, p := range open.OptParams {
		for _, c := range p.(*wire.OptionParameterCapability).Capability {
			switch c := c.(type) {
			case *wire.CapFourOctetASNumber:
				as4 = c.CapValue
			case *wire.CapMultiProtocol:
				mp = append(mp, c.CapValue)
			}
		}
	}
	if as4 != 4200000001 || !slices.Equal(mp, []wire.Family{wire.RF_IPv4_UC}) {
		t.Errorf("capabilities: 4-octet AS %d, multiprotocol %v; want 4200000001, [IPv4 unicast]", as4, mp)
	}
}

// attrsOf returns an UPDATE's announced prefixes and attributes by type.
func attrsOf(t *testing.T, msg *wire.BGPMessage) ([]string, map[wire.BGPAttrType]wire.PathAttributeInterface) {
	t.Helper()
	u, ok := msg.Body.(*wire.BGPUpdate)
	if !ok {
		t.Fatalf("message type %d, want UPDATE", msg.Header.Type)
	}
	var nlri []string
	for _, n := range u.NLRI {
		nlri = append(nlri, n.NLRI.String())
	}
	attrs := map[wire.BGPAttrType]wire.PathAttributeInterface{}
	for _, a := range u.PathAttributes {
		attrs[a.GetType()] = a
	}
	return nlri, attrs
}

// nextUpdate skips keepalives to the next UPDATE, decoded with 2-octet AS numbers if two.
func nextUpdate(c *routerConn, two bool) *wire.BGPMessage {
	c.t.Helper()
	c.two = two
	for {
		msg := c.read()
		if msg.Header.Type == wire.BGP_MSG_UPDATE {
			return msg
		}
	}
}

// sequence is an AS_PATH's numbers, segment after segment.
func sequence(segs []wire.AsPathParamInterface) []uint32 {
	var out []uint32
	for _, s := range segs {
		out = append(out, s.GetAS()...)
	}
	return out
}

func TestUpdatesOnTheWire(t *testing.T) {
	for _, tc := range []struct {
		name      string
		localASN  uint32
		routerASN uint32
		two       bool     // the router has no 4-octet AS capability
		path      []uint32 // AS_PATH, one AS_SEQUENCE
		as4Path   []uint32 // AS4_PATH, nil = none
		localPref bool
	}{
		{name: "eBGP", localASN: 65010, routerASN: 65000, path: []uint32{65010}},
		{name: "iBGP", localASN: 65000, routerASN: 65000, localPref: true},
		{name: "eBGP, 4-octet AS to a 2-octet router", localASN: 4200000001, routerASN: 65000, two: true, path: []uint32{asTrans}, as4Path: []uint32{4200000001}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := listenScripted(t)
			p := r.peer()
			p.ASN = tc.routerASN
			s, _ := startSpeaker(t, tc.localASN, p)
			c := r.accept()
			c.handshake(tc.routerASN, 3, tc.two)
			waitPeer(t, s, p.Address, isUp, "up")
			if err := s.Announce(svc, true); err != nil {
				t.Fatal(err)
			}
			nlri, attrs := attrsOf(t, nextUpdate(c, tc.two))
			if !slices.Equal(nlri, []string{svc.String()}) {
				t.Errorf("NLRI %v, want [%s]", nlri, svc)
			}
			if o, ok := attrs[wire.BGP_ATTR_TYPE_ORIGIN].(*wire.PathAttributeOrigin); !ok || o.Value != wire.BGP_ORIGIN_ATTR_TYPE_IGP {
				t.Errorf("ORIGIN %v, want IGP", attrs[wire.BGP_ATTR_TYPE_ORIGIN])
			}
			if a, ok := attrs[wire.BGP_ATTR_TYPE_AS_PATH].(*wire.PathAttributeAsPath); !ok || !slices.Equal(sequence(a.Value), tc.path) {
				t.Errorf("AS_PATH %v, want %v", attrs[wire.BGP_ATTR_TYPE_AS_PATH], tc.path)
			}
			var as4 []uint32
			if a4, ok := attrs[wire.BGP_ATTR_TYPE_AS4_PATH].(*wire.PathAttributeAs4Path); ok {
				for _, seg := range a4.Value {
					as4 = append(as4, seg.GetAS()...)
				}
			}
			if !slices.Equal(as4, tc.as4Path) {
				t.Errorf("AS4_PATH %v, want %v", as4, tc.as4Path)
			}
			if nh, ok := attrs[wire.BGP_ATTR_TYPE_NEXT_HOP].(*wire.PathAttributeNextHop); !ok || nh.Value != netip.MustParseAddr("127.0.0.1") {
				t.Errorf("NEXT_HOP %v, want the speaker's own address on the session, 127.0.0.1", attrs[wire.BGP_ATTR_TYPE_NEXT_HOP])
			}
			lp, ok := attrs[wire.BGP_ATTR_TYPE_LOCAL_PREF].(*wire.PathAttributeLocalPref)
			if tc.localPref != ok || (ok && lp.Value != 100) {
				t.Errorf("LOCAL_PREF %v, want it (100) only toward an iBGP peer", attrs[wire.BGP_ATTR_TYPE_LOCAL_PREF])
			}
			if cm, ok := attrs[wire.BGP_ATTR_TYPE_COMMUNITIES].(*wire.PathAttributeCommunities); !ok || !slices.Equal(cm.Value, []uint32{GracefulShutdown}) {
				t.Errorf("COMMUNITIES %v, want GRACEFUL_SHUTDOWN", attrs[wire.BGP_ATTR_TYPE_COMMUNITIES])
			}

			if err := s.Withdraw(svc); err != nil {
				t.Fatal(err)
			}
			u := nextUpdate(c, tc.two).Body.(*wire.BGPUpdate)
			if len(u.WithdrawnRoutes) != 1 || u.WithdrawnRoutes[0].NLRI.String() != svc.String() || len(u.NLRI) != 0 {
				t.Errorf("withdrawal: withdrawn %v, NLRI %v; want [%s], none", u.WithdrawnRoutes, u.NLRI, svc)
			}
		})
	}
}

// TestRoutesAnnouncedBeforeTheSessionGoOutWhenItOpens: the Gate announces as checks pass,
// whether a session is up or not.
func TestRoutesAnnouncedBeforeTheSessionGoOutWhenItOpens(t *testing.T) {
	r := listenScripted(t)
	s, _ := startSpeaker(t, 65010, r.peer())
	if err := s.Announce(svc, false); err != nil {
		t.Fatal(err)
	}
	if err := s.Announce(svc6, false); err != nil { // another family: not to this peer
		t.Fatal(err)
	}
	c := r.accept()
	c.handshake(65000, 3, false)
	if nlri, _ := attrsOf(t, nextUpdate(c, false)); !slices.Equal(nlri, []string{svc.String()}) {
		t.Errorf("first UPDATE announces %v, want [%s]", nlri, svc)
	}
}

func TestHoldTimerExpiresWhenTheRouterFallsSilent(t *testing.T) {
	r := listenScripted(t)
	s, ev, c := established(t, r)
	up := waitPeer(t, s, r.peer().Address, isUp, "up")
	// The router says nothing more (it still reads, so the speaker's writes do not block).
	n := c.readNotification()
	down := waitPeer(t, s, r.peer().Address, func(p PeerStatus) bool { return !p.Up }, "down")
	if n.ErrorCode != wire.BGP_ERROR_HOLD_TIMER_EXPIRED {
		t.Errorf("NOTIFICATION %d/%d, want Hold Timer Expired (4)", n.ErrorCode, n.ErrorSubcode)
	}
	if d := down.Since.Sub(up.Since); d < 2900*time.Millisecond || d > 6*time.Second {
		t.Errorf("session went down %s after it came up, want the hold time, 3s", d)
	}
	if down.Reason != "hold timer expired" {
		t.Errorf("reason %q, want \"hold timer expired\"", down.Reason)
	}
	if h := ev.history(r.peer().Address); !slices.Equal(h, []bool{false, true, false}) {
		t.Errorf("reports %v, want [down up down]", h)
	}
	// And it opens the session again.
	r.accept().handshake(65000, 3, false)
	waitPeer(t, s, r.peer().Address, isUp, "up again")
}

func TestKeepalivesKeepTheSessionAndGoOutAtAThirdOfTheHoldTime(t *testing.T) {
	r := listenScripted(t)
	s, _, c := established(t, r)
	start := time.Now()
	var at []time.Time
	for time.Since(start) < 4*time.Second {
		msg := c.read()
		if msg.Header.Type != wire.BGP_MSG_KEEPALIVE {
			t.Fatalf("message type %d, want only KEEPALIVEs", msg.Header.Type)
		}
		at = append(at, time.Now())
		c.send(wire.NewBGPKeepAliveMessage())
	}
	// One a third of the hold time (1 s), jittered down to no less than three quarters of it
	// (RFC 4271 10): neither too few to keep the session, nor a flood. Generous bounds: the
	// machine may be busy.
	if n := len(at); n < 3 || n > 6 {
		t.Errorf("%d KEEPALIVEs in %s, want about one a second (hold time 3s)", n, time.Since(start).Round(time.Millisecond))
	}
	for i := 1; i < len(at); i++ {
		if gap := at[i].Sub(at[i-1]); gap < 500*time.Millisecond || gap > 1500*time.Millisecond {
			t.Errorf("KEEPALIVE %d came %s after the one before, want about 1s", i, gap.Round(time.Millisecond))
		}
	}
	if p := waitPeer(t, s, r.peer().Address, func(PeerStatus) bool { return true }, "listed"); !p.Up {
		t.Errorf("session went down though the router kept it alive: %+v", p)
	}
}

func TestOpenRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		open   func(t *testing.T) *wire.BGPMessage
		sub    uint8
		reason string
	}{
		{name: "another AS", open: func(t *testing.T) *wire.BGPMessage { return routerOpen(t, 65001, 3, false) },
			sub: wire.BGP_ERROR_SUB_BAD_PEER_AS, reason: "AS 65001, configured 65000"},
		{name: "hold time 2s", open: func(t *testing.T) *wire.BGPMessage { return routerOpen(t, 65000, 2, false) },
			sub: wire.BGP_ERROR_SUB_UNACCEPTABLE_HOLD_TIME, reason: "hold time 2s"},
		{name: "another AS in the 2-octet field", open: func(t *testing.T) *wire.BGPMessage { return routerOpen(t, 64999, 3, true) },
			sub: wire.BGP_ERROR_SUB_BAD_PEER_AS, reason: "AS 64999"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := listenScripted(t)
			s, ev := startSpeaker(t, 65010, r.peer())
			c := r.accept()
			c.read() // the speaker's OPEN
			c.send(tc.open(t))
			n := c.readNotification()
			if n.ErrorCode != wire.BGP_ERROR_OPEN_MESSAGE_ERROR || n.ErrorSubcode != tc.sub {
				t.Errorf("NOTIFICATION %d/%d, want 2/%d", n.ErrorCode, n.ErrorSubcode, tc.sub)
			}
			p := waitPeer(t, s, r.peer().Address, func(p PeerStatus) bool { return p.Reason != "" }, "given a reason")
			if !strings.Contains(p.Reason, tc.reason) || p.Up {
				t.Errorf("status %+v, want down with a reason naming %q", p, tc.reason)
			}
			if h := ev.history(r.peer().Address); slices.Contains(h, true) {
				t.Errorf("reported up: %v", h)
			}
		})
	}
}

// TestMalformedMessagesEndTheSessionOnly: whatever the router sends, the speaker answers with
// the NOTIFICATION RFC 4271 6 names, closes the session and tries again; nothing panics.
func TestMalformedMessagesEndTheSessionOnly(t *testing.T) {
	header := func(length uint16, typ byte) []byte {
		b := make([]byte, 19)
		for i := range 16 {
			b[i] = 0xff
		}
		binary.BigEndian.PutUint16(b[16:], length)
		b[18] = typ
		return b
	}
	badMarker := header(19, wire.BGP_MSG_KEEPALIVE)
	badMarker[3] = 0
	for _, tc := range []struct {
		name      string
		raw       []byte
		code, sub uint8
	}{
		{"marker not all ones", badMarker, wire.BGP_ERROR_MESSAGE_HEADER_ERROR, wire.BGP_ERROR_SUB_CONNECTION_NOT_SYNCHRONIZED},
		{"length below the header", header(10, wire.BGP_MSG_KEEPALIVE), wire.BGP_ERROR_MESSAGE_HEADER_ERROR, wire.BGP_ERROR_SUB_BAD_MESSAGE_LENGTH},
		{"length above 4096", header(5000, wire.BGP_MSG_UPDATE), wire.BGP_ERROR_MESSAGE_HEADER_ERROR, wire.BGP_ERROR_SUB_BAD_MESSAGE_LENGTH},
		{"KEEPALIVE with a body", append(header(21, wire.BGP_MSG_KEEPALIVE), 0, 0), wire.BGP_ERROR_MESSAGE_HEADER_ERROR, wire.BGP_ERROR_SUB_BAD_MESSAGE_LENGTH},
		{"unknown type", header(19, 9), wire.BGP_ERROR_MESSAGE_HEADER_ERROR, wire.BGP_ERROR_SUB_BAD_MESSAGE_TYPE},
		{"NOTIFICATION cut short", append(header(20, wire.BGP_MSG_NOTIFICATION), wire.BGP_ERROR_CEASE), wire.BGP_ERROR_MESSAGE_HEADER_ERROR, wire.BGP_ERROR_SUB_BAD_MESSAGE_LENGTH},
		{"OPEN once established", nil, wire.BGP_ERROR_FSM_ERROR, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := listenScripted(t)
			s, _, c := established(t, r)
			if tc.raw == nil {
				c.send(routerOpen(t, 65000, 3, false))
			} else {
				c.sendRaw(tc.raw)
			}
			n := c.readNotification()
			if n.ErrorCode != tc.code || n.ErrorSubcode != tc.sub {
				t.Errorf("NOTIFICATION %d/%d, want %d/%d", n.ErrorCode, n.ErrorSubcode, tc.code, tc.sub)
			}
			p := waitPeer(t, s, r.peer().Address, func(p PeerStatus) bool { return !p.Up }, "down")
			if p.Reason == "" {
				t.Error("down without a reason")
			}
			if _, err := c.next(2 * time.Second); err == nil {
				t.Error("the speaker kept the connection open after its NOTIFICATION")
			}
		})
	}
}

// TestUpdatesFromTheRouterAreIgnored: a router sends its own routes (FRR does to an eBGP peer);
// the speaker reads and drops them and the session stays.
func TestUpdatesFromTheRouterAreIgnored(t *testing.T) {
	r := listenScripted(t)
	s, _, c := established(t, r)
	nlri, _ := wire.NewIPAddrPrefix(netip.MustParsePrefix("192.0.2.0/24"))
	nh, _ := wire.NewPathAttributeNextHop(netip.MustParseAddr("127.0.0.1"))
	for range 100 {
		c.send(wire.NewBGPUpdateMessage(nil, []wire.PathAttributeInterface{
			wire.NewPathAttributeOrigin(0),
			wire.NewPathAttributeAsPath([]wire.AsPathParamInterface{wire.NewAs4PathParam(wire.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{65000})}),
			nh,
		}, []wire.PathNLRI{{NLRI: nlri}}))
	}
	if err := s.Announce(svc, false); err != nil {
		t.Fatal(err)
	}
	nextUpdate(c, false) // the session still carries the speaker's routes
	if p := waitPeer(t, s, r.peer().Address, func(PeerStatus) bool { return true }, "listed"); !p.Up {
		t.Errorf("session went down on the router's UPDATEs: %+v", p)
	}
}

func TestCeaseOnStopAndOnRemoval(t *testing.T) {
	r1, r2 := listenScripted(t), listenScripted(t)
	p1, p2 := r1.peer(), r2.peer()
	p2.Address = netip.MustParseAddr("127.0.0.1")
	s, ev := startSpeaker(t, 65010, p1)
	c1 := r1.accept()
	c1.handshake(65000, 3, false)
	waitPeer(t, s, p1.Address, isUp, "up")

	// Changing the peer (its port) removes the session and opens another.
	if err := s.SetPeers(context.Background(), []Peer{p2}); err != nil {
		t.Fatal(err)
	}
	if n := c1.readNotification(); n.ErrorCode != wire.BGP_ERROR_CEASE || n.ErrorSubcode != wire.BGP_ERROR_SUB_PEER_DECONFIGURED {
		t.Errorf("removed peer got NOTIFICATION %d/%d, want Cease/Peer De-configured (6/3)", n.ErrorCode, n.ErrorSubcode)
	}
	c2 := r2.accept()
	c2.handshake(65000, 3, false)
	waitPeer(t, s, p2.Address, isUp, "up on the new port")

	s.Stop()
	if n := c2.readNotification(); n.ErrorCode != wire.BGP_ERROR_CEASE || n.ErrorSubcode != wire.BGP_ERROR_SUB_ADMINISTRATIVE_SHUTDOWN {
		t.Errorf("at stop NOTIFICATION %d/%d, want Cease/Administrative Shutdown (6/2)", n.ErrorCode, n.ErrorSubcode)
	}
	if h := ev.history(p1.Address); len(h) == 0 || h[len(h)-1] {
		t.Errorf("reports %v, want ending down", h)
	}
}

// TestDialRetriesEveryConnectRetry: a router that is not there yet is tried again, and the
// status says why the session is not up.
func TestDialRetriesEveryConnectRetry(t *testing.T) {
	r := listenScripted(t)
	p := r.peer()
	r.ln.Close() // nobody listens: connection refused
	s, _ := startSpeaker(t, 65010, p)
	st := waitPeer(t, s, p.Address, func(p PeerStatus) bool { return p.Reason != "" }, "given a reason")
	if !strings.Contains(st.Reason, "refused") {
		t.Errorf("reason %q, want connection refused", st.Reason)
	}
	ln, err := net.Listen("tcp", netip.AddrPortFrom(p.Address, uint16(p.Port)).String())
	if err != nil {
		t.Skipf("port %d taken meanwhile: %v", p.Port, err)
	}
	r.ln = ln
	t.Cleanup(func() { ln.Close() })
	began := time.Now()
	r.accept().handshake(65000, 3, false)
	if d := time.Since(began); d > connectRetry+2*time.Second {
		t.Errorf("retried after %s, want within connect retry (%s)", d, connectRetry)
	}
	waitPeer(t, s, p.Address, isUp, "up")
}

// TestOpenConfirmWaitsTheHoldTime: a router that answers the OPEN but never confirms it with a
// KEEPALIVE is given the negotiated hold time (RFC 4271 8.2.2), not the OPEN's 30 s.
func TestOpenConfirmWaitsTheHoldTime(t *testing.T) {
	r := listenScripted(t)
	s, _ := startSpeaker(t, 65010, r.peer())
	c := r.accept()
	c.read() // the speaker's OPEN
	c.send(routerOpen(t, 65000, 3, false))
	began := time.Now()
	n := c.readNotification()
	if n.ErrorCode != wire.BGP_ERROR_HOLD_TIMER_EXPIRED {
		t.Errorf("NOTIFICATION %d/%d, want Hold Timer Expired (4)", n.ErrorCode, n.ErrorSubcode)
	}
	if d := time.Since(began); d > 6*time.Second {
		t.Errorf("gave up after %s, want the hold time, 3s", d.Round(time.Millisecond))
	}
	if p := waitPeer(t, s, r.peer().Address, func(p PeerStatus) bool { return p.Reason != "" }, "given a reason"); p.Reason != "hold timer expired" || p.Up {
		t.Errorf("status %+v, want down, hold timer expired", p)
	}
}

// TestARouterThatStopsReadingHoldsUpNoOtherPeer: a router whose receive window stays shut (hung,
// or overloaded) must not hold up the UPDATEs to the other routers, nor Announce, Withdraw and
// the status: the withdrawal that takes a failed node out of the healthy routers' ECMP set must
// not wait on it. The speaker used to write every UPDATE under its lock, so a write blocked on
// the stuck router (up to writeTimeout, 10 s) held up everything else.
func TestARouterThatStopsReadingHoldsUpNoOtherPeer(t *testing.T) {
	// A small receive buffer, inherited by the accepted connection, keeps the window small.
	stuck := listenScriptedWith(t, netip.MustParseAddr("127.0.0.1"), net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}})
	healthy := listenScriptedOn(t, netip.MustParseAddr("127.0.0.2"))
	s, _ := startSpeaker(t, 65010, stuck.peer(), healthy.peer())
	// Hold time 0 on both sessions: no keepalives, so no hold timer ends the stuck one early.
	sc := stuck.accept()
	sc.handshake(65000, 0, false)
	hc := healthy.accept()
	hc.handshake(65000, 0, false)
	waitPeer(t, s, stuck.addr, isUp, "up")
	waitPeer(t, s, healthy.addr, isUp, "up")

	// The healthy router reads everything, and tells when svc is withdrawn. It decodes only the
	// UPDATEs that withdraw something: the others are many.
	withdrawn := make(chan time.Time, 1)
	go func() {
		head := make([]byte, wire.BGP_HEADER_LENGTH)
		for {
			hc.c.SetReadDeadline(time.Now().Add(time.Minute))
			if _, err := io.ReadFull(hc.r, head); err != nil {
				return
			}
			msg := make([]byte, binary.BigEndian.Uint16(head[16:18]))
			copy(msg, head)
			if _, err := io.ReadFull(hc.r, msg[wire.BGP_HEADER_LENGTH:]); err != nil {
				return
			}
			if head[18] != wire.BGP_MSG_UPDATE || binary.BigEndian.Uint16(msg[19:21]) == 0 {
				continue
			}
			m, err := wire.ParseBGPMessage(msg)
			if err != nil {
				return
			}
			for _, w := range m.Body.(*wire.BGPUpdate).WithdrawnRoutes {
				if w.NLRI.String() == svc.String() {
					withdrawn <- time.Now()
					return
				}
			}
		}
	}()
	if err := s.Announce(svc, false); err != nil {
		t.Fatal(err)
	}
	// The stuck router reads nothing from here on: UPDATEs fill its receive window and then the
	// speaker's send buffer (it grows to 4 MB at most, net.ipv4.tcp_wmem), until the write to it
	// blocks and its queue keeps what is announced after.
	for i := 0; ; i++ {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
		began := time.Now()
		if err := s.Announce(p, false); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(began); d > time.Second {
			t.Fatalf("Announce %d took %s: it waited on the router that does not read", i, d.Round(time.Millisecond))
		}
		if i%5000 == 4999 && writeBlocked(s, stuck.addr) {
			t.Logf("the write to the stuck router blocked after %d announcements", i+1)
			break
		}
		if i > 1e6 {
			t.Fatalf("the write to the router that does not read never blocked: %+v", s.Peers())
		}
	}
	began := time.Now()
	if err := s.Withdraw(svc); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d > time.Second {
		t.Fatalf("Withdraw took %s behind the router that does not read", d.Round(time.Millisecond))
	}
	select {
	case at := <-withdrawn:
		t.Logf("the healthy router had the withdrawal %s after Withdraw", at.Sub(began).Round(time.Millisecond))
	case <-time.After(time.Second):
		t.Fatal("the healthy router did not get the withdrawal within 1 s while another router does not read")
	}
	statusBegan := time.Now()
	if p := waitPeer(t, s, stuck.addr, func(PeerStatus) bool { return true }, "listed"); !p.Up {
		t.Errorf("stuck session down already: %+v", p)
	}
	if d := time.Since(statusBegan); d > time.Second {
		t.Errorf("Peers took %s", d.Round(time.Millisecond))
	}
	// All of the above happened with the write to the stuck router blocked, not just slow.
	if !writeBlocked(s, stuck.addr) {
		t.Fatal("the write to the router that does not read is no longer blocked: the test tested nothing")
	}
	// Stop gives up the stuck router's NOTIFICATION after notifyTimeout rather than wait out
	// the blocked write.
	stopBegan := time.Now()
	s.Stop()
	if d := time.Since(stopBegan); d > notifyTimeout+time.Second {
		t.Errorf("Stop took %s with a router that does not read", d.Round(time.Millisecond))
	}
}

// writeBlocked says whether the session to peer has UPDATEs queued that its writer has not
// taken for 300 ms, nothing being announced meanwhile: its write is blocked, not just slow (the
// race detector slows it down a lot).
func writeBlocked(s *Server, peer netip.Addr) bool {
	queued := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.peers[peer].queued) > 0
	}
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if !queued() {
			return false
		}
	}
	return true
}
