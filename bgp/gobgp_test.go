package bgp

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	gobgp "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"

	"github.com/hapair/hapair/internal/testenv"
)

// These tests run the Server against plain GoBGP servers standing in for routers, on loopback
// addresses and unprivileged ports: no root, no namespace. The lab's end-to-end test does the
// same against FRR.

// router is a GoBGP server that accepts the Server's session and records what it receives.
type router struct {
	t    *testing.T
	bgp  *server.BgpServer
	addr netip.Addr
	port int
}

func freePort(t *testing.T, addr netip.Addr) int {
	t.Helper()
	l, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		testenv.SkipOrFail(t, "cannot listen on %s: %v", addr, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startRouter(t *testing.T, addr netip.Addr) *router {
	t.Helper()
	return startRouterWithPassword(t, addr, "")
}

// startRouterWithPassword is startRouter with a TCP MD5 password on the node's session.
func startRouterWithPassword(t *testing.T, addr netip.Addr, password string) *router {
	t.Helper()
	port := freePort(t, addr)
	s := server.NewBgpServer(server.LoggerOption(quiet, new(slog.LevelVar)))
	go s.Serve()
	t.Cleanup(s.Stop)
	if err := s.StartBgp(context.Background(), &api.StartBgpRequest{Global: &api.Global{
		Asn: 65000, RouterId: "10.255.0.1", ListenPort: int32(port), ListenAddresses: []string{addr.String()},
	}}); err != nil {
		t.Fatal(err)
	}
	family := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	if addr.Is6() {
		family = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
	}
	// The node's session comes from the loopback's first address (127.0.0.1 also toward
	// 127.0.0.2): a passive peer for it.
	node := "127.0.0.1"
	if addr.Is6() {
		node = "::1"
	}
	if err := s.AddPeer(context.Background(), &api.AddPeerRequest{Peer: &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: node, PeerAsn: 65010, AuthPassword: password},
		Transport: &api.Transport{PassiveMode: true},
		AfiSafis:  []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: family, Enabled: true}}},
	}}); err != nil {
		t.Fatal(err)
	}
	return &router{t: t, bgp: s, addr: addr, port: port}
}

// received is what the router has for prefix: present, its next hop and communities.
type received struct {
	present     bool
	nextHop     netip.Addr
	communities []uint32
}

func (r *router) lookup(prefix netip.Prefix) received {
	r.t.Helper()
	family := gobgp.RF_IPv4_UC
	if prefix.Addr().Is6() {
		family = gobgp.RF_IPv6_UC
	}
	var out received
	err := r.bgp.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: family},
		func(nlri gobgp.NLRI, paths []*apiutil.Path) {
			if nlri.String() != prefix.String() {
				return
			}
			for _, p := range paths {
				out.present = true
				for _, a := range p.Attrs {
					switch a := a.(type) {
					case *gobgp.PathAttributeNextHop:
						out.nextHop = a.Value
					case *gobgp.PathAttributeMpReachNLRI:
						out.nextHop = a.Nexthop
					case *gobgp.PathAttributeCommunities:
						out.communities = a.Value
					}
				}
			}
		})
	if err != nil {
		r.t.Fatal(err)
	}
	return out
}

func (r *router) waitFor(prefix netip.Prefix, cond func(received) bool, what string) received {
	r.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		got := r.lookup(prefix)
		if cond(got) {
			return got
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("router %s: %s never seen for %s (last %+v)", r.addr, what, prefix, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (r *router) peer() Peer {
	return Peer{Address: r.addr, ASN: 65000, HoldTime: 3 * time.Second, Port: r.port}
}

type peerEvents struct {
	mu sync.Mutex
	up map[netip.Addr][]bool
}

func (p *peerEvents) PeerUp(peer netip.Addr, up bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up[peer] = append(p.up[peer], up)
}

func (p *peerEvents) history(peer netip.Addr) []bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.up[peer])
}

func waitEstablished(t *testing.T, s *Server, peer netip.Addr) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		for _, p := range s.Peers() {
			if p.Address == peer.String() && p.Up {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("session to %s not established: %+v", peer, s.Peers())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServerAnnouncesWithdrawsAndTagsGracefulShutdown(t *testing.T) {
	r4 := startRouter(t, netip.MustParseAddr("127.0.0.1"))
	r6 := startRouter(t, netip.MustParseAddr("::1"))
	ev := &peerEvents{up: map[netip.Addr][]bool{}}
	s, err := Start(context.Background(), ServerConfig{
		LocalASN: 65010, RouterID: netip.MustParseAddr("10.0.0.11"), Peers: []Peer{r4.peer(), r6.peer()},
	}, ev, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	waitEstablished(t, s, r4.addr)
	waitEstablished(t, s, r6.addr)

	if err := s.Announce(svc, false); err != nil {
		t.Fatal(err)
	}
	if err := s.Announce(svc6, false); err != nil {
		t.Fatal(err)
	}
	got := r4.waitFor(svc, func(r received) bool { return r.present }, "the announcement")
	if got.nextHop != r4.addr || len(got.communities) != 0 {
		t.Errorf("IPv4 route: next hop %s, communities %v; want the node's own address %s toward the router, none", got.nextHop, got.communities, r4.addr)
	}
	got = r6.waitFor(svc6, func(r received) bool { return r.present }, "the IPv6 announcement")
	if got.nextHop != r6.addr {
		t.Errorf("IPv6 route: next hop %s, want %s", got.nextHop, r6.addr)
	}
	if r6.lookup(svc).present || r4.lookup(svc6).present {
		t.Error("a prefix went to a peer of the other family")
	}

	if err := s.Announce(svc, true); err != nil {
		t.Fatal(err)
	}
	r4.waitFor(svc, func(r received) bool { return slices.Contains(r.communities, GracefulShutdown) }, "GRACEFUL_SHUTDOWN (65535:0)")

	if err := s.Withdraw(svc); err != nil {
		t.Fatal(err)
	}
	if err := s.Withdraw(svc6); err != nil {
		t.Fatal(err)
	}
	r4.waitFor(svc, func(r received) bool { return !r.present }, "the withdrawal")
	r6.waitFor(svc6, func(r received) bool { return !r.present }, "the IPv6 withdrawal")
	if h := ev.history(r4.addr); len(h) == 0 || !h[len(h)-1] {
		t.Errorf("peer up reports for %s: %v, want ending up", r4.addr, h)
	}
	if st := s.Peers(); len(st) != 2 || st[0].State != "ESTABLISHED" || st[0].ASN != 65000 {
		t.Errorf("Peers() = %+v", st)
	}
}

// TestSetPeersLeavesTheOtherSessionsUp is SIGHUP's promise: a peer removed or changed does not
// reset the others.
func TestSetPeersLeavesTheOtherSessionsUp(t *testing.T) {
	r1 := startRouter(t, netip.MustParseAddr("127.0.0.1"))
	r2 := startRouter(t, netip.MustParseAddr("127.0.0.2"))
	ev := &peerEvents{up: map[netip.Addr][]bool{}}
	s, err := Start(context.Background(), ServerConfig{
		LocalASN: 65010, RouterID: netip.MustParseAddr("10.0.0.11"), Peers: []Peer{r1.peer()},
	}, ev, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	waitEstablished(t, s, r1.addr)
	if err := s.Announce(svc, false); err != nil {
		t.Fatal(err)
	}
	r1.waitFor(svc, func(r received) bool { return r.present }, "the announcement")

	// A peer added gets what is announced; the first session stays.
	if err := s.SetPeers(context.Background(), []Peer{r1.peer(), r2.peer()}); err != nil {
		t.Fatal(err)
	}
	waitEstablished(t, s, r2.addr)
	r2.waitFor(svc, func(r received) bool { return r.present }, "the announcement to the added peer")

	// The added peer changes (its hold time): its session is reset, r1's is not.
	changed := r2.peer()
	changed.HoldTime = 6 * time.Second
	before := len(ev.history(r2.addr))
	if err := s.SetPeers(context.Background(), []Peer{r1.peer(), changed}); err != nil {
		t.Fatal(err)
	}
	// The reset shows as a down, then an up, after the change: the session already up before
	// it would satisfy a wait for Established by itself.
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if h := ev.history(r2.addr)[before:]; len(h) >= 2 && slices.Contains(h, false) && h[len(h)-1] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("session to %s after its hold time changed went %v, want reset (down, then up)", r2.addr, ev.history(r2.addr)[before:])
		}
	}
	waitEstablished(t, s, r2.addr)
	// Then it is removed; r1 keeps its session and its route.
	if err := s.SetPeers(context.Background(), []Peer{r1.peer()}); err != nil {
		t.Fatal(err)
	}
	if st := s.Peers(); len(st) != 1 || st[0].Address != r1.addr.String() {
		t.Errorf("Peers() after removing %s = %+v", r2.addr, st)
	}
	if h := ev.history(r1.addr); !slices.Equal(h, []bool{false, true}) {
		t.Errorf("session to %s went %v, want [down(added) up] and never down again", r1.addr, h)
	}
	if !r1.lookup(svc).present {
		t.Error("r1 lost the route when another peer was changed and removed")
	}
	if h := ev.history(r2.addr); len(h) == 0 || h[len(h)-1] {
		t.Errorf("removed peer %s last reported %v, want down", r2.addr, h)
	}
}

// TestPassivePeerIsAccepted: with a passive peer the Server listens (listen_port) and the router
// opens the session.
func TestPassivePeerIsAccepted(t *testing.T) {
	node := netip.MustParseAddr("127.0.0.1")
	routerAddr := netip.MustParseAddr("127.0.0.3")
	listen := freePort(t, node)
	r := server.NewBgpServer(server.LoggerOption(quiet, new(slog.LevelVar)))
	go r.Serve()
	t.Cleanup(r.Stop)
	if err := r.StartBgp(context.Background(), &api.StartBgpRequest{Global: &api.Global{
		Asn: 65000, RouterId: "10.255.0.3", ListenPort: -1,
	}}); err != nil {
		t.Fatal(err)
	}
	if err := r.AddPeer(context.Background(), &api.AddPeerRequest{Peer: &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: node.String(), PeerAsn: 65010},
		Transport: &api.Transport{RemotePort: uint32(listen), LocalAddress: routerAddr.String()},
		Timers:    &api.Timers{Config: &api.TimersConfig{ConnectRetry: 1}},
	}}); err != nil {
		t.Fatal(err)
	}
	s, err := Start(context.Background(), ServerConfig{
		LocalASN: 65010, RouterID: netip.MustParseAddr("10.0.0.11"), ListenPort: listen,
		Peers: []Peer{{Address: routerAddr, ASN: 65000, HoldTime: 3 * time.Second, Passive: true}},
	}, &peerEvents{up: map[netip.Addr][]bool{}}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	waitEstablished(t, s, routerAddr)
	if err := s.Announce(svc, false); err != nil {
		t.Fatal(err)
	}
	rt := &router{t: t, bgp: r, addr: routerAddr}
	rt.waitFor(svc, func(got received) bool { return got.present }, "the announcement over the passive session")
}

// TestPasswordSignsTheSession: with the router's password the session comes up; with another
// one the kernel drops every segment (RFC 2385) and it never does.
func TestPasswordSignsTheSession(t *testing.T) {
	for _, tc := range []struct {
		name     string
		password string
		up       bool
	}{
		{"same password", "s3cret", true},
		{"other password", "wrong", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := startRouterWithPassword(t, netip.MustParseAddr("127.0.0.1"), "s3cret")
			peer := r.peer()
			peer.Password = tc.password
			ev := &peerEvents{up: map[netip.Addr][]bool{}}
			s, err := Start(context.Background(), ServerConfig{LocalASN: 65010, RouterID: netip.MustParseAddr("10.0.0.11"), Peers: []Peer{peer}}, ev, quiet)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Stop)
			if tc.up {
				waitEstablished(t, s, r.addr)
				return
			}
			// The router's kernel drops every unsigned SYN: the connect times out
			// (connectRetry) without the session ever coming up.
			st := waitPeer(t, s, r.addr, func(p PeerStatus) bool { return p.Reason != "" }, "given a reason")
			if st.Up || slices.Contains(ev.history(r.addr), true) || !strings.Contains(st.Reason, "timeout") {
				t.Errorf("with the wrong password: %+v, reports %v; want never up, the connect timed out", st, ev.history(r.addr))
			}
		})
	}
}
