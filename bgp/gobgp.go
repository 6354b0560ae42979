package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	gobgp "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// Peer is one BGP neighbour.
type Peer struct {
	Address  netip.Addr
	ASN      uint32
	HoldTime time.Duration // whole seconds; 0 = no keepalives
	Port     int           // 0 = 179
	Password string        // TCP MD5 signature; "" = none
	Passive  bool
	Multihop int // eBGP TTL; 0 = directly connected
}

// PeerReporter receives session state changes (package metrics implements it).
type PeerReporter interface {
	PeerUp(peer netip.Addr, up bool)
}

// PeerStatus is one neighbour as /status shows it.
type PeerStatus struct {
	Address string    `json:"address"`
	ASN     uint32    `json:"asn"`
	State   string    `json:"state"` // IDLE, CONNECT, ACTIVE, OPENSENT, OPENCONFIRM, ESTABLISHED
	Up      bool      `json:"up"`
	Since   time.Time `json:"since"`
	Reason  string    `json:"reason,omitempty"` // why the session last went down
}

// ServerConfig is what the speaker is started with.
type ServerConfig struct {
	LocalASN uint32
	RouterID netip.Addr
	// ListenPort is where passive peers' routers connect; the server listens only when a peer
	// is passive at start.
	ListenPort int
	Peers      []Peer
}

// connectRetry is how soon a failed or lost session is tried again. GoBGP's default is 120s;
// a node that lost its router for a moment should not stay out of the ECMP set that long.
const connectRetry = 5 * time.Second

// Server is the embedded GoBGP speaker. It implements Speaker.
type Server struct {
	bgp    *server.BgpServer
	log    *slog.Logger
	rep    PeerReporter
	cancel context.CancelFunc
	listen bool

	mu    sync.Mutex
	peers map[netip.Addr]Peer
	state map[netip.Addr]*PeerStatus
}

var _ Speaker = (*Server)(nil)

// Start runs a GoBGP server with cfg's identity and opens a session to every peer. GoBGP's own
// log goes to log at warning level and above.
func Start(ctx context.Context, cfg ServerConfig, rep PeerReporter, log *slog.Logger) (*Server, error) {
	lvl := &slog.LevelVar{}
	lvl.Set(slog.LevelWarn)
	s := &Server{
		bgp: server.NewBgpServer(server.LoggerOption(log.With("source", "gobgp"), lvl)),
		log: log, rep: rep,
		peers: map[netip.Addr]Peer{}, state: map[netip.Addr]*PeerStatus{},
	}
	go s.bgp.Serve()
	listenPort := int32(-1) // GoBGP's word for "do not listen"
	for _, p := range cfg.Peers {
		if p.Passive {
			listenPort = int32(cfg.ListenPort)
			s.listen = true
		}
	}
	if err := s.bgp.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: cfg.LocalASN, RouterId: cfg.RouterID.String(), ListenPort: listenPort,
	}}); err != nil {
		s.bgp.Stop()
		return nil, fmt.Errorf("start BGP (AS %d, router id %s): %w", cfg.LocalASN, cfg.RouterID, err)
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	if err := s.bgp.WatchEvent(wctx, server.WatchEventMessageCallbacks{OnPeerUpdate: s.peerEvent}, server.WatchPeer()); err != nil {
		s.Stop()
		return nil, fmt.Errorf("watch BGP peers: %w", err)
	}
	if err := s.SetPeers(ctx, cfg.Peers); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// SetPeers makes the sessions match peers: a new peer is added, a removed one deleted, a changed
// one deleted and added again; the sessions of the others are left alone.
func (s *Server) SetPeers(ctx context.Context, peers []Peer) error {
	want := map[netip.Addr]Peer{}
	for _, p := range peers {
		want[p.Address] = p
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for addr, old := range s.peers {
		if p, ok := want[addr]; ok && p == old {
			continue
		}
		if err := s.bgp.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr.String()}); err != nil {
			errs = append(errs, fmt.Errorf("delete BGP peer %s: %w", addr, err))
			continue
		}
		delete(s.peers, addr)
		delete(s.state, addr)
		s.rep.PeerUp(addr, false)
		s.log.Info(fmt.Sprintf("BGP peer %s removed", addr))
	}
	for addr, p := range want {
		if _, ok := s.peers[addr]; ok {
			continue
		}
		if p.Passive && !s.listen {
			s.log.Warn(fmt.Sprintf("BGP peer %s is passive but hapair started without a passive peer and does not listen: restart hapair to listen", addr))
		}
		if err := s.bgp.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(p)}); err != nil {
			errs = append(errs, fmt.Errorf("add BGP peer %s (AS %d): %w", addr, p.ASN, err))
			continue
		}
		s.peers[addr] = p
		s.state[addr] = &PeerStatus{Address: addr.String(), ASN: p.ASN, State: "IDLE"}
		s.rep.PeerUp(addr, false)
		s.log.Info(fmt.Sprintf("BGP peer %s (AS %d) added", addr, p.ASN))
	}
	return errors.Join(errs...)
}

func apiPeer(p Peer) *api.Peer {
	port := p.Port
	if port == 0 {
		port = 179
	}
	hold := uint64(p.HoldTime / time.Second)
	family := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	if p.Address.Is6() {
		family = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
	}
	peer := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: p.Address.String(), PeerAsn: p.ASN, AuthPassword: p.Password},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime: hold, KeepaliveInterval: hold / 3, ConnectRetry: uint64(connectRetry / time.Second),
		}},
		Transport: &api.Transport{PassiveMode: p.Passive, RemotePort: uint32(port)},
		AfiSafis:  []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: family, Enabled: true}}},
		// No Graceful Restart: a dead node's routes must go with its session, not linger.
	}
	if p.Multihop > 0 {
		peer.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(p.Multihop)}
	}
	return peer
}

func (s *Server) peerEvent(ev *apiutil.WatchEventMessage_PeerEvent, at time.Time) {
	if ev.Type != apiutil.PEER_EVENT_STATE {
		return
	}
	addr := ev.Peer.State.NeighborAddress.Unmap()
	fsm := ev.Peer.State.SessionState
	s.mu.Lock()
	st, ok := s.state[addr]
	if !ok { // a peer deleted meanwhile
		s.mu.Unlock()
		return
	}
	name := fsmName(fsm)
	up := fsm == gobgp.BGP_FSM_ESTABLISHED
	was := st.Up
	if name == st.State {
		s.mu.Unlock()
		return
	}
	st.State, st.Up, st.Since = name, up, at
	if !up && was {
		st.Reason = ev.Peer.State.DisconnectMessage
	}
	s.mu.Unlock()
	if up != was {
		s.rep.PeerUp(addr, up)
	}
	switch {
	case up:
		s.log.Info(fmt.Sprintf("BGP peer %s Entering ESTABLISHED STATE", addr))
	case was:
		s.log.Warn(fmt.Sprintf("BGP peer %s Leaving ESTABLISHED STATE (%s)", addr, ev.Peer.State.DisconnectMessage))
	}
}

func fsmName(s gobgp.FSMState) string {
	switch s {
	case gobgp.BGP_FSM_IDLE:
		return "IDLE"
	case gobgp.BGP_FSM_CONNECT:
		return "CONNECT"
	case gobgp.BGP_FSM_ACTIVE:
		return "ACTIVE"
	case gobgp.BGP_FSM_OPENSENT:
		return "OPENSENT"
	case gobgp.BGP_FSM_OPENCONFIRM:
		return "OPENCONFIRM"
	case gobgp.BGP_FSM_ESTABLISHED:
		return "ESTABLISHED"
	}
	return s.String()
}

// Peers lists the neighbours by address.
func (s *Server) Peers() []PeerStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]PeerStatus, 0, len(s.state))
	for _, st := range s.state {
		out = append(out, *st)
	}
	sort.Slice(out, func(i, j int) bool {
		return netip.MustParseAddr(out[i].Address).Less(netip.MustParseAddr(out[j].Address))
	})
	return out
}

// Announce implements Speaker. The next hop is left unspecified, which GoBGP replaces with the
// session's local address: this host's own address toward each peer.
func (s *Server) Announce(prefix netip.Prefix, gshut bool) error {
	path, err := localPath(prefix, gshut)
	if err != nil {
		return err
	}
	if _, err := s.bgp.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{path}}); err != nil {
		return fmt.Errorf("announce %s: %w", prefix, err)
	}
	return nil
}

// Withdraw implements Speaker.
func (s *Server) Withdraw(prefix netip.Prefix) error {
	path, err := localPath(prefix, false)
	if err != nil {
		return err
	}
	path.Withdrawal = true
	if err := s.bgp.DeletePath(apiutil.DeletePathRequest{Paths: []*apiutil.Path{path}}); err != nil {
		return fmt.Errorf("withdraw %s: %w", prefix, err)
	}
	return nil
}

func localPath(prefix netip.Prefix, gshut bool) (*apiutil.Path, error) {
	nlri, err := gobgp.NewIPAddrPrefix(prefix.Masked())
	if err != nil {
		return nil, fmt.Errorf("prefix %s: %w", prefix, err)
	}
	family := gobgp.RF_IPv4_UC
	var nextHop gobgp.PathAttributeInterface
	if prefix.Addr().Is4() {
		nextHop, err = gobgp.NewPathAttributeNextHop(netip.IPv4Unspecified())
	} else {
		family = gobgp.RF_IPv6_UC
		nextHop, err = gobgp.NewPathAttributeMpReachNLRI(family, []gobgp.PathNLRI{{NLRI: nlri}}, netip.IPv6Unspecified())
	}
	if err != nil {
		return nil, fmt.Errorf("next hop for %s: %w", prefix, err)
	}
	attrs := []gobgp.PathAttributeInterface{gobgp.NewPathAttributeOrigin(gobgp.BGP_ORIGIN_ATTR_TYPE_IGP), nextHop}
	if gshut {
		attrs = append(attrs, gobgp.NewPathAttributeCommunities([]uint32{GracefulShutdown}))
	}
	return &apiutil.Path{Family: family, Nlri: nlri, Attrs: slices.Clip(attrs)}, nil
}

// Stop closes every session (a NOTIFICATION Cease to each peer) and the server.
func (s *Server) Stop() {
	if s.cancel != nil {
		s.cancel()
	}
	_ = s.bgp.StopBgp(context.Background(), &api.StopBgpRequest{})
	s.bgp.Stop()
}
