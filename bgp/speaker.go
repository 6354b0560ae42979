package bgp

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"syscall"
	"time"
	"unsafe"

	wire "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"golang.org/x/sys/unix"
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
	// Reason is why the session last went down or, while it has not come up, why the last
	// attempt failed.
	Reason string `json:"reason,omitempty"`
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

const (
	// connectRetry paces the attempts to (re)open a session: a failed or lost session is tried
	// again connectRetry after the previous attempt began. RFC 4271 suggests 120s; a node that
	// lost its router for a moment should not stay out of the ECMP set that long.
	connectRetry = 5 * time.Second
	// openHold bounds the OPEN exchange (RFC 4271 8.2.2 suggests a "large value", 4 minutes,
	// for a peer that accepted the connection but does not answer).
	openHold = 30 * time.Second
	// writeTimeout bounds a write to a peer whose receive window stays shut (with no hold time
	// negotiated nothing else would notice).
	writeTimeout = 10 * time.Second
	// notifyTimeout bounds the NOTIFICATION sent when a session is closed on purpose.
	notifyTimeout = time.Second
	// asTrans stands in for a 4-octet AS number in 2-octet fields (RFC 6793).
	asTrans = 23456
)

// Server is hapair's BGP speaker: one session per peer, over which it announces this host's
// service addresses (host routes) with itself as next hop, and withdraws them. It implements
// Speaker.
//
// Why its own and not an embedded routing daemon: hapair only ever originates a handful of host
// routes and never learns any, so it needs the session (RFC 4271's OPEN, KEEPALIVE, hold timer,
// NOTIFICATION), UPDATE encoding and nothing of a RIB or a policy engine. GoBGP's server brought
// gRPC, protobuf and their registries into every hapair process, with BGP configured or not:
// about 1 MiB of resident memory (make bench-scale, 2026-12-03) where hapair must stay within
// keepalived's. Messages are still encoded and decoded by GoBGP's packet package, which is plain
// code with no dependency.
//
// What it does not do: learn routes (the peer's UPDATEs are read and dropped), Graceful Restart
// (a dead node's routes must go with its session), route refresh, add-path, extended messages,
// collision detection (a passive peer is only accepted, an active one only dialled).
type Server struct {
	cfg ServerConfig
	log *slog.Logger
	rep PeerReporter
	ln  net.Listener // nil: no passive peer at start
	wg  sync.WaitGroup

	mu      sync.Mutex
	routes  map[netip.Prefix]bool // announced, with gshut
	peers   map[netip.Addr]*session
	stopped bool
}

var _ Speaker = (*Server)(nil)

// Start opens a session to every peer (or waits for a passive peer's) and returns; the sessions
// come up in the background, and come back after a failure, every connectRetry. It fails only
// when it cannot listen for a passive peer.
func Start(ctx context.Context, cfg ServerConfig, rep PeerReporter, log *slog.Logger) (*Server, error) {
	s := &Server{cfg: cfg, log: log, rep: rep, routes: map[netip.Prefix]bool{}, peers: map[netip.Addr]*session{}}
	for _, p := range cfg.Peers {
		if !p.Passive {
			continue
		}
		var lc net.ListenConfig
		ln, err := lc.Listen(ctx, "tcp", fmt.Sprintf(":%d", cfg.ListenPort))
		if err != nil {
			return nil, fmt.Errorf("listen for BGP peers on port %d: %w", cfg.ListenPort, err)
		}
		s.ln = ln
		s.wg.Add(1)
		go s.accept()
		break
	}
	if err := s.SetPeers(ctx, cfg.Peers); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// SetPeers makes the sessions match peers: a new peer is added, a removed one deleted, a changed
// one deleted and added again; the sessions of the others are left alone.
func (s *Server) SetPeers(_ context.Context, peers []Peer) error {
	want := map[netip.Addr]Peer{}
	for _, p := range peers {
		want[p.Address] = p
	}
	s.mu.Lock()
	var gone []*session
	for addr, ss := range s.peers {
		if p, ok := want[addr]; ok && p == ss.peer {
			continue
		}
		delete(s.peers, addr)
		gone = append(gone, ss)
	}
	s.mu.Unlock()
	var errs []error
	for _, ss := range gone {
		ss.end(wire.BGP_ERROR_SUB_PEER_DECONFIGURED)
		if ss.peer.Passive && ss.peer.Password != "" {
			if err := s.setListenerKey(ss.peer.Address, ""); err != nil {
				errs = append(errs, err)
			}
		}
		s.rep.PeerUp(ss.peer.Address, false)
		s.log.Info(fmt.Sprintf("BGP peer %s removed", ss.peer.Address))
	}
	for _, p := range peers {
		s.mu.Lock()
		_, ok := s.peers[p.Address]
		s.mu.Unlock()
		if ok {
			continue
		}
		if p.Passive && s.ln == nil {
			s.log.Warn(fmt.Sprintf("BGP peer %s is passive but hapair started without a passive peer and does not listen: restart hapair to listen", p.Address))
		}
		if p.Passive && p.Password != "" {
			if err := s.setListenerKey(p.Address, p.Password); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		ss := s.newSession(p)
		s.mu.Lock()
		if s.stopped {
			s.mu.Unlock()
			return errors.New("BGP speaker stopped")
		}
		s.peers[p.Address] = ss
		s.mu.Unlock()
		s.rep.PeerUp(p.Address, false)
		s.log.Info(fmt.Sprintf("BGP peer %s (AS %d) added", p.Address, p.ASN))
		s.wg.Add(1)
		go ss.run()
	}
	return errors.Join(errs...)
}

// Peers lists the neighbours by address.
func (s *Server) Peers() []PeerStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]PeerStatus, 0, len(s.peers))
	for _, ss := range s.peers {
		out = append(out, ss.status)
	}
	sort.Slice(out, func(i, j int) bool {
		return netip.MustParseAddr(out[i].Address).Less(netip.MustParseAddr(out[j].Address))
	})
	return out
}

// Announce implements Speaker. The next hop is the session's own address toward each peer.
// Peers of the prefix's family only; a session that comes up later gets it then.
func (s *Server) Announce(prefix netip.Prefix, gshut bool) error {
	if !prefix.IsValid() {
		return fmt.Errorf("announce %s: not a prefix", prefix)
	}
	prefix = prefix.Masked()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.routes[prefix] = gshut
	for _, ss := range s.peers {
		ss.queueLocked(prefix, gshut, false)
	}
	return nil
}

// Withdraw implements Speaker.
func (s *Server) Withdraw(prefix netip.Prefix) error {
	if !prefix.IsValid() {
		return fmt.Errorf("withdraw %s: not a prefix", prefix)
	}
	prefix = prefix.Masked()
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.routes, prefix)
	for _, ss := range s.peers {
		ss.queueLocked(prefix, false, true)
	}
	return nil
}

// Stop closes every session (a NOTIFICATION Cease, administrative shutdown, to each peer) and
// the listener, and returns when nothing of the server runs.
func (s *Server) Stop() {
	s.mu.Lock()
	s.stopped = true
	all := make([]*session, 0, len(s.peers))
	for _, ss := range s.peers {
		all = append(all, ss)
	}
	s.mu.Unlock()
	if s.ln != nil {
		s.ln.Close()
	}
	var wg sync.WaitGroup
	for _, ss := range all {
		wg.Add(1)
		go func() { defer wg.Done(); ss.end(wire.BGP_ERROR_SUB_ADMINISTRATIVE_SHUTDOWN) }()
	}
	wg.Wait()
	s.wg.Wait()
}

// accept hands each connection from a passive peer to its session; any other is closed.
func (s *Server) accept() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("BGP listener", "err", err)
			time.Sleep(100 * time.Millisecond) // e.g. out of file descriptors: do not spin
			continue
		}
		from := conn.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
		s.mu.Lock()
		ss := s.peers[from]
		take := ss != nil && ss.peer.Passive && ss.conn == nil
		s.mu.Unlock()
		if !take {
			// Not a passive peer, or its session is already open: keep the one there is.
			conn.Close()
			continue
		}
		select {
		case ss.accepted <- conn:
		default:
			conn.Close() // one is already waiting
		}
	}
}

// setListenerKey sets (or, with "", removes) a passive peer's TCP MD5 key on the listener.
func (s *Server) setListenerKey(peer netip.Addr, password string) error {
	if s.ln == nil {
		return nil
	}
	rc, err := s.ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = setMD5(int(fd), peer, password) }); err != nil {
		return err
	}
	return serr
}

// session is the one session of the server with a peer, opened and reopened by run until end.
type session struct {
	srv      *Server
	peer     Peer
	ctx      context.Context // ends with end
	cancel   context.CancelFunc
	done     chan struct{} // closed when run has returned
	accepted chan net.Conn // a passive peer's connections, from Server.accept

	wsem chan struct{} // held (a value sent) while a message is written on conn: one at a time
	kick chan struct{} // the sender has queued UPDATEs to write
	// Guarded by srv.mu:
	status      PeerStatus
	conn        net.Conn                // the connection of the session being opened or open; nil between
	established bool                    // conn has completed the OPEN exchange and carries the routes
	local       netip.Addr              // this host's address on conn: the routes' next hop
	as4         bool                    // the peer speaks 4-octet AS numbers (RFC 6793)
	failure     string                  // why a write failed, for the status (the reader only sees conn closed)
	ending      string                  // why end was called: the session's last reason
	queued      []netip.Prefix          // prefixes with an UPDATE to write, in the order asked
	pending     map[netip.Prefix]update // each one's latest announcement or withdrawal
}

// update is an UPDATE waiting to be written: the prefix's latest state for the peer.
type update struct{ gshut, withdraw bool }

func (s *Server) newSession(p Peer) *session {
	ctx, cancel := context.WithCancel(context.Background())
	return &session{
		srv: s, peer: p, ctx: ctx, cancel: cancel, done: make(chan struct{}), accepted: make(chan net.Conn, 1),
		wsem: make(chan struct{}, 1), kick: make(chan struct{}, 1),
		status: PeerStatus{Address: p.Address.String(), ASN: p.ASN, State: "IDLE", Since: time.Now()},
	}
}

// ebgp: the peer is in another AS.
func (ss *session) ebgp() bool { return ss.peer.ASN != ss.srv.cfg.LocalASN }

// run opens the session, keeps it until it fails, and opens it again, until end.
func (ss *session) run() {
	defer ss.srv.wg.Done()
	defer close(ss.done)
	defer func() {
		select {
		case conn := <-ss.accepted: // accepted as the session ended
			conn.Close()
		default:
		}
	}()
	for {
		began := time.Now()
		conn, err := ss.connect()
		if ss.ctx.Err() != nil {
			if conn != nil {
				conn.Close()
			}
			return
		}
		if err == nil {
			err = ss.open(conn)
			conn.Close()
		}
		ss.down(err)
		if ss.ctx.Err() != nil {
			return
		}
		if ss.peer.Passive {
			continue // the router paces its own attempts
		}
		select {
		case <-time.After(time.Until(began.Add(connectRetry))):
		case <-ss.ctx.Done():
			return
		}
	}
}

// connect dials the peer, or waits for a passive peer's connection, and makes it the session's.
func (ss *session) connect() (net.Conn, error) {
	var conn net.Conn
	if ss.peer.Passive {
		ss.setState("ACTIVE")
		select {
		case conn = <-ss.accepted:
		case <-ss.ctx.Done():
			return nil, ss.ctx.Err()
		}
		if err := ss.acceptedOptions(conn.(*net.TCPConn)); err != nil {
			conn.Close()
			return nil, err
		}
	} else {
		ss.setState("CONNECT")
		port := ss.peer.Port
		if port == 0 {
			port = 179
		}
		d := net.Dialer{Timeout: connectRetry, Control: func(_, _ string, rc syscall.RawConn) error {
			var err error
			if cerr := rc.Control(func(fd uintptr) { err = ss.setOptions(int(fd), true) }); cerr != nil {
				return cerr
			}
			return err
		}}
		var err error
		conn, err = d.DialContext(ss.ctx, "tcp", netip.AddrPortFrom(ss.peer.Address, uint16(port)).String())
		if err != nil {
			return nil, fmt.Errorf("connect: %w", unwrapOp(err))
		}
	}
	ss.srv.mu.Lock()
	defer ss.srv.mu.Unlock()
	if ss.ctx.Err() != nil {
		return conn, ss.ctx.Err() // end saw no conn to close: run closes it
	}
	ss.conn = conn
	ss.failure = ""
	ss.local = conn.LocalAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
	return conn, nil
}

// acceptedOptions sets an accepted connection's TTL (its MD5 key is the listener's).
func (ss *session) acceptedOptions(c *net.TCPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = ss.setOptions(int(fd), false) }); err != nil {
		return err
	}
	return serr
}

// setOptions sets the TCP MD5 key (RFC 2385) and, toward an eBGP peer, the TTL: 1 for a
// directly connected one (as routers do), multihop otherwise.
func (ss *session) setOptions(fd int, md5 bool) error {
	if md5 && ss.peer.Password != "" {
		if err := setMD5(fd, ss.peer.Address, ss.peer.Password); err != nil {
			return err
		}
	}
	if !ss.ebgp() {
		return nil
	}
	ttl := 1
	if ss.peer.Multihop > 0 {
		ttl = ss.peer.Multihop
	}
	var err error
	if ss.peer.Address.Is4() {
		err = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_TTL, ttl)
	} else {
		err = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, ttl)
	}
	if err != nil {
		return fmt.Errorf("BGP peer %s: TTL %d: %w", ss.peer.Address, ttl, err)
	}
	return nil
}

// setMD5 sets peer's TCP MD5 key on a socket, or removes it with "". On an IPv6 socket an IPv4
// peer's key is given as its IPv4-mapped address, which the kernel takes as the IPv4 one.
func setMD5(fd int, peer netip.Addr, password string) error {
	if len(password) > unix.TCP_MD5SIG_MAXKEYLEN {
		return fmt.Errorf("BGP peer %s: password longer than %d bytes", peer, unix.TCP_MD5SIG_MAXKEYLEN)
	}
	sig := unix.TCPMD5Sig{Keylen: uint16(len(password))}
	copy(sig.Key[:], password)
	domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return err
	}
	if domain == unix.AF_INET6 {
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&sig.Addr))
		sa.Family = unix.AF_INET6
		sa.Addr = peer.As16()
	} else {
		if !peer.Is4() {
			return fmt.Errorf("BGP peer %s: IPv6 peer on an IPv4 socket", peer)
		}
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&sig.Addr))
		sa.Family = unix.AF_INET
		sa.Addr = peer.As4()
	}
	if err := unix.SetsockoptTCPMD5Sig(fd, unix.IPPROTO_TCP, unix.TCP_MD5SIG, &sig); err != nil {
		return fmt.Errorf("BGP peer %s: TCP MD5 signature: %w", peer, err)
	}
	return nil
}

// open runs the session on conn: the OPEN exchange, then ESTABLISHED until it fails or ends.
func (ss *session) open(conn net.Conn) error {
	r := bufio.NewReaderSize(conn, wire.BGP_MAX_MESSAGE_LENGTH)
	ourHold := uint16(ss.peer.HoldTime / time.Second)
	myAS := uint16(asTrans)
	if ss.srv.cfg.LocalASN <= 0xffff {
		myAS = uint16(ss.srv.cfg.LocalASN)
	}
	family := wire.RF_IPv4_UC
	if ss.peer.Address.Is6() {
		family = wire.RF_IPv6_UC
	}
	open, err := wire.NewBGPOpenMessage(myAS, ourHold, ss.srv.cfg.RouterID, []wire.OptionParameterInterface{
		wire.NewOptionParameterCapability([]wire.ParameterCapabilityInterface{
			wire.NewCapMultiProtocol(family),
			wire.NewCapFourOctetASNumber(ss.srv.cfg.LocalASN),
		}),
	})
	if err != nil {
		return fmt.Errorf("OPEN: %w", err)
	}
	if err := ss.write(conn, open, nil); err != nil {
		return err
	}
	ss.setState("OPENSENT")

	conn.SetReadDeadline(time.Now().Add(openHold))
	msg, err := readMessage(r)
	if err != nil {
		return ss.readFailed(conn, err, "waiting for the peer's OPEN")
	}
	theirs, ok := msg.Body.(*wire.BGPOpen)
	if !ok {
		return ss.unexpected(conn, msg, "OPEN")
	}
	hold, as4, err := ss.checkOpen(theirs)
	if err != nil {
		var me *wire.MessageError
		if errors.As(err, &me) {
			ss.notify(conn, me.TypeCode, me.SubTypeCode)
		}
		return err
	}
	if err := ss.write(conn, wire.NewBGPKeepAliveMessage(), nil); err != nil {
		return err
	}
	ss.setState("OPENCONFIRM")
	waiting := "waiting for the peer's KEEPALIVE after OPEN"
	if hold > 0 { // from here the negotiated hold time (RFC 4271 8.2.2)
		conn.SetReadDeadline(time.Now().Add(hold))
		waiting = ""
	}
	msg, err = readMessage(r)
	if err != nil {
		return ss.readFailed(conn, err, waiting)
	}
	if msg.Header.Type != wire.BGP_MSG_KEEPALIVE {
		return ss.unexpected(conn, msg, "KEEPALIVE")
	}
	conn.SetReadDeadline(time.Time{})

	stopKeepalives := ss.establish(conn, as4, hold)
	defer stopKeepalives()
	for {
		if hold > 0 {
			conn.SetReadDeadline(time.Now().Add(hold))
		}
		msg, err := readMessage(r)
		if err != nil {
			return ss.readFailed(conn, err, "")
		}
		switch msg.Header.Type {
		case wire.BGP_MSG_KEEPALIVE, wire.BGP_MSG_UPDATE, wire.BGP_MSG_ROUTE_REFRESH:
			// The hold timer restarts; hapair learns no routes.
		default:
			return ss.unexpected(conn, msg, "KEEPALIVE or UPDATE")
		}
	}
}

// checkOpen checks the peer's OPEN (RFC 4271 6.2, RFC 6793) and returns the hold time in force
// and whether the peer speaks 4-octet AS numbers.
func (ss *session) checkOpen(o *wire.BGPOpen) (time.Duration, bool, error) {
	bad := func(sub uint8, format string, args ...any) error {
		return wire.NewMessageError(wire.BGP_ERROR_OPEN_MESSAGE_ERROR, sub, nil, "peer's OPEN: "+fmt.Sprintf(format, args...))
	}
	if o.Version != 4 {
		return 0, false, bad(wire.BGP_ERROR_SUB_UNSUPPORTED_VERSION_NUMBER, "BGP version %d, want 4", o.Version)
	}
	asn, as4 := uint32(o.MyAS), false
	for _, p := range o.OptParams {
		if caps, ok := p.(*wire.OptionParameterCapability); ok {
			for _, c := range caps.Capability {
				if c4, ok := c.(*wire.CapFourOctetASNumber); ok {
					asn, as4 = c4.CapValue, true
				}
			}
		}
	}
	if asn != ss.peer.ASN {
		return 0, false, bad(wire.BGP_ERROR_SUB_BAD_PEER_AS, "AS %d, configured %d", asn, ss.peer.ASN)
	}
	if o.HoldTime == 1 || o.HoldTime == 2 {
		return 0, false, bad(wire.BGP_ERROR_SUB_UNACCEPTABLE_HOLD_TIME, "hold time %ds (0 or at least 3)", o.HoldTime)
	}
	if !o.ID.Is4() || o.ID.IsUnspecified() || (!ss.ebgp() && o.ID == ss.srv.cfg.RouterID) {
		return 0, false, bad(wire.BGP_ERROR_SUB_BAD_BGP_IDENTIFIER, "BGP identifier %s", o.ID)
	}
	hold := min(time.Duration(o.HoldTime)*time.Second, ss.peer.HoldTime.Truncate(time.Second))
	return hold, as4, nil
}

// establish makes the session ESTABLISHED: the routes announced so far go out, later ones as
// they come (Announce, Withdraw), and keepalives every third of the hold time, all written by
// one goroutine (send). It returns what stops that goroutine.
func (ss *session) establish(conn net.Conn, as4 bool, hold time.Duration) func() {
	srv := ss.srv
	srv.mu.Lock()
	ss.established, ss.as4 = true, as4
	ss.status.State, ss.status.Up, ss.status.Since, ss.status.Reason = "ESTABLISHED", true, time.Now(), ""
	for p, gshut := range srv.routes {
		ss.queueLocked(p, gshut, false)
	}
	srv.mu.Unlock()
	srv.rep.PeerUp(ss.peer.Address, true)
	srv.log.Info(fmt.Sprintf("BGP peer %s Entering ESTABLISHED STATE", ss.peer.Address))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		ss.send(conn, hold, stop)
	}()
	return func() {
		close(stop)
		conn.SetWriteDeadline(time.Now()) // a write blocked on a shut window returns at once
		<-done
	}
}

// send writes the session's UPDATEs as they are queued, and its keepalives, until stop or a
// write fails (which closes the connection: the session is opened again and gets every route
// then).
//
// Why a goroutine of its own, and not the writes in Announce and Withdraw: a router whose
// receive window stays shut (hung, overloaded) blocks a write for up to writeTimeout, and a write
// made under the server's lock held up the UPDATEs to every other router, and the status, for
// as long. Here only this session waits; what is announced and withdrawn meanwhile waits in its
// queue, one entry per prefix whatever the flaps.
func (ss *session) send(conn net.Conn, hold time.Duration, stop <-chan struct{}) {
	var keepalive <-chan time.Time
	if hold > 0 {
		t := time.NewTicker(hold / 3)
		defer t.Stop()
		keepalive = t.C
	}
	for {
		var err error
		select {
		case <-stop:
			return
		case <-keepalive:
			err = ss.write(conn, wire.NewBGPKeepAliveMessage(), nil)
		case <-ss.kick:
			err = ss.flush(conn)
		}
		if err != nil {
			select {
			case <-stop: // the session is ending: its write was cut short, for the reason that ends it
			default:
				ss.fail(conn, err)
			}
			return
		}
	}
}

// flush writes the queued UPDATEs, until none is left.
func (ss *session) flush(conn net.Conn) error {
	var opt *wire.MarshallingOption
	if !ss.as4 { // set before send started, for the life of conn
		opt = &wire.MarshallingOption{Use2ByteAS: true}
	}
	for {
		ss.srv.mu.Lock()
		queued, pending := ss.queued, ss.pending
		ss.queued, ss.pending = nil, nil
		ss.srv.mu.Unlock()
		if len(queued) == 0 {
			return nil
		}
		for _, p := range queued {
			u := pending[p]
			msg, err := ss.update(p, u.gshut, u.withdraw)
			if err == nil {
				err = ss.write(conn, msg, opt)
			}
			if err != nil {
				return fmt.Errorf("send UPDATE for %s: %w", p, err)
			}
		}
	}
}

// queueLocked queues prefix's announcement (or withdrawal) for the peer if the session is
// ESTABLISHED and of the prefix's family; a prefix already queued keeps its place and takes the
// new state. It never blocks. Called with srv.mu held.
func (ss *session) queueLocked(prefix netip.Prefix, gshut, withdraw bool) {
	if !ss.established || prefix.Addr().Is4() != ss.peer.Address.Is4() {
		return
	}
	if ss.pending == nil {
		ss.pending = map[netip.Prefix]update{}
	}
	if _, ok := ss.pending[prefix]; !ok {
		ss.queued = append(ss.queued, prefix)
	}
	ss.pending[prefix] = update{gshut: gshut, withdraw: withdraw}
	select {
	case ss.kick <- struct{}{}:
	default: // send has been told already
	}
}

// update is the UPDATE that announces prefix from this host (or withdraws it).
func (ss *session) update(prefix netip.Prefix, gshut, withdraw bool) (*wire.BGPMessage, error) {
	nlri, err := wire.NewIPAddrPrefix(prefix)
	if err != nil {
		return nil, err
	}
	nlris := []wire.PathNLRI{{NLRI: nlri}}
	v4 := prefix.Addr().Is4()
	switch {
	case withdraw && v4:
		return wire.NewBGPUpdateMessage(nlris, nil, nil), nil
	case withdraw:
		unreach, err := wire.NewPathAttributeMpUnreachNLRI(wire.RF_IPv6_UC, nlris)
		if err != nil {
			return nil, err
		}
		return wire.NewBGPUpdateMessage(nil, []wire.PathAttributeInterface{unreach}, nil), nil
	}
	// In the order of their type codes, as RFC 4271 5 asks.
	attrs := []wire.PathAttributeInterface{wire.NewPathAttributeOrigin(wire.BGP_ORIGIN_ATTR_TYPE_IGP), ss.asPath()}
	if v4 {
		nh, err := wire.NewPathAttributeNextHop(ss.local)
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, nh)
	}
	if !ss.ebgp() {
		attrs = append(attrs, wire.NewPathAttributeLocalPref(100))
	}
	if gshut {
		attrs = append(attrs, wire.NewPathAttributeCommunities([]uint32{GracefulShutdown}))
	}
	if !v4 {
		reach, err := wire.NewPathAttributeMpReachNLRI(wire.RF_IPv6_UC, nlris, ss.local)
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, reach)
		return wire.NewBGPUpdateMessage(nil, attrs, nil), nil
	}
	if !ss.as4 && ss.ebgp() && ss.srv.cfg.LocalASN > 0xffff {
		attrs = append(attrs, wire.NewPathAttributeAs4Path([]*wire.As4PathParam{
			wire.NewAs4PathParam(wire.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{ss.srv.cfg.LocalASN}),
		}))
	}
	return wire.NewBGPUpdateMessage(nil, attrs, nlris), nil
}

// asPath is this host's AS toward an eBGP peer, nothing toward an iBGP one; in 2-octet numbers
// (AS_TRANS for a 4-octet one, with AS4_PATH beside it) to a peer that has only those.
func (ss *session) asPath() *wire.PathAttributeAsPath {
	if !ss.ebgp() {
		return wire.NewPathAttributeAsPath(nil)
	}
	asn := ss.srv.cfg.LocalASN
	if ss.as4 {
		return wire.NewPathAttributeAsPath([]wire.AsPathParamInterface{wire.NewAs4PathParam(wire.BGP_ASPATH_ATTR_TYPE_SEQ, []uint32{asn})})
	}
	two := uint16(asTrans)
	if asn <= 0xffff {
		two = uint16(asn)
	}
	return wire.NewPathAttributeAsPath([]wire.AsPathParamInterface{wire.NewAsPathParam(wire.BGP_ASPATH_ATTR_TYPE_SEQ, []uint16{two})})
}

// write sends one message on conn, at most writeTimeout.
func (ss *session) write(conn net.Conn, msg *wire.BGPMessage, opt *wire.MarshallingOption) error {
	var b []byte
	var err error
	if opt != nil {
		b, err = msg.Serialize(opt)
	} else {
		b, err = msg.Serialize()
	}
	if err != nil {
		return fmt.Errorf("encode %s: %w", msgName(msg.Header.Type), err)
	}
	ss.wsem <- struct{}{}
	defer func() { <-ss.wsem }()
	conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	if _, err := conn.Write(b); err != nil {
		return fmt.Errorf("send %s: %w", msgName(msg.Header.Type), unwrapOp(err))
	}
	return nil
}

// notify sends a NOTIFICATION, best effort: the connection is closed after it either way. When
// another message's write does not end within notifyTimeout (the router does not read), it
// sends nothing: the router would not read it either.
func (ss *session) notify(conn net.Conn, code, sub uint8) {
	b, _ := wire.NewBGPNotificationMessage(code, sub, nil).Serialize()
	t := time.NewTimer(notifyTimeout)
	defer t.Stop()
	select {
	case ss.wsem <- struct{}{}:
	case <-t.C:
		return
	}
	defer func() { <-ss.wsem }()
	conn.SetWriteDeadline(time.Now().Add(notifyTimeout))
	conn.Write(b)
}

// fail closes conn after a failed write, keeping why for the status.
func (ss *session) fail(conn net.Conn, err error) {
	ss.srv.mu.Lock()
	defer ss.srv.mu.Unlock()
	ss.failLocked(conn, err)
}

func (ss *session) failLocked(conn net.Conn, err error) {
	if ss.conn == conn && ss.failure == "" {
		ss.failure = err.Error()
	}
	conn.Close()
}

// readFailed turns a failed read into the session's end: a hold timer that ran out is
// notified to the peer (RFC 4271 6.5), a malformed message too (6.1).
func (ss *session) readFailed(conn net.Conn, err error, waiting string) error {
	var me *wire.MessageError
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		ss.notify(conn, wire.BGP_ERROR_HOLD_TIMER_EXPIRED, 0)
		if waiting != "" {
			return fmt.Errorf("no answer %s within %s", waiting, openHold)
		}
		return errors.New("hold timer expired")
	case errors.As(err, &me):
		ss.notify(conn, me.TypeCode, me.SubTypeCode)
		return fmt.Errorf("malformed message from the peer: %w", err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("connection closed by the peer")
	}
	return unwrapOp(err)
}

// unexpected answers a message that has no place in the session's state: a NOTIFICATION from the
// peer ends the session with its reason; anything else is a Finite State Machine Error.
func (ss *session) unexpected(conn net.Conn, msg *wire.BGPMessage, want string) error {
	if n, ok := msg.Body.(*wire.BGPNotification); ok {
		return fmt.Errorf("NOTIFICATION from the peer: %s", wire.NewNotificationErrorCode(n.ErrorCode, n.ErrorSubcode))
	}
	ss.notify(conn, wire.BGP_ERROR_FSM_ERROR, 0)
	return fmt.Errorf("peer sent %s, want %s", msgName(msg.Header.Type), want)
}

// down records the end of a session attempt: why, and if it was ESTABLISHED, that it no longer is.
func (ss *session) down(err error) {
	srv := ss.srv
	srv.mu.Lock()
	was := ss.established
	reason := ""
	if err != nil {
		reason = err.Error()
	}
	if ss.failure != "" {
		reason = ss.failure
	}
	if ss.ending != "" {
		reason = ss.ending
	}
	ss.conn, ss.established = nil, false
	ss.queued, ss.pending = nil, nil // the next session gets every route anew
	repeated := reason == ss.status.Reason
	ss.status.State, ss.status.Up, ss.status.Since, ss.status.Reason = "IDLE", false, time.Now(), reason
	ending := ss.ending != ""
	srv.mu.Unlock()
	switch {
	case was && ending:
		srv.rep.PeerUp(ss.peer.Address, false)
		srv.log.Info(fmt.Sprintf("BGP peer %s Leaving ESTABLISHED STATE (%s)", ss.peer.Address, reason))
	case was:
		srv.rep.PeerUp(ss.peer.Address, false)
		srv.log.Warn(fmt.Sprintf("BGP peer %s Leaving ESTABLISHED STATE (%s)", ss.peer.Address, reason))
	case !ending && !repeated:
		srv.log.Warn(fmt.Sprintf("BGP peer %s: session not established (%s)", ss.peer.Address, reason))
	}
}

func (ss *session) setState(state string) {
	ss.srv.mu.Lock()
	defer ss.srv.mu.Unlock()
	if ss.status.State != state {
		ss.status.State, ss.status.Since = state, time.Now()
	}
}

// end closes the session for good, with a NOTIFICATION Cease of subcode sub if it is open, and
// returns once run has.
func (ss *session) end(sub uint8) {
	ss.srv.mu.Lock()
	ss.ending = "hapair stopped"
	if sub == wire.BGP_ERROR_SUB_PEER_DECONFIGURED {
		ss.ending = "peer removed from the configuration"
	}
	ss.cancel()
	conn := ss.conn
	ss.srv.mu.Unlock()
	if conn != nil {
		ss.notify(conn, wire.BGP_ERROR_CEASE, sub)
		conn.Close()
	}
	<-ss.done
}

// readMessage reads one BGP message. An UPDATE's body is not decoded (hapair learns no
// routes); the others are.
func readMessage(r *bufio.Reader) (*wire.BGPMessage, error) {
	head, err := r.Peek(wire.BGP_HEADER_LENGTH)
	if err != nil {
		return nil, err
	}
	var h wire.BGPHeader
	if err := h.DecodeFromBytes(head); err != nil {
		return nil, err
	}
	if h.Len > wire.BGP_MAX_MESSAGE_LENGTH || (h.Type == wire.BGP_MSG_KEEPALIVE && h.Len != wire.BGP_HEADER_LENGTH) {
		var length [2]byte
		binary.BigEndian.PutUint16(length[:], h.Len)
		return nil, wire.NewMessageError(wire.BGP_ERROR_MESSAGE_HEADER_ERROR, wire.BGP_ERROR_SUB_BAD_MESSAGE_LENGTH, length[:], fmt.Sprintf("%s of %d bytes", msgName(h.Type), h.Len))
	}
	if _, err := r.Discard(wire.BGP_HEADER_LENGTH); err != nil {
		return nil, err
	}
	body := int(h.Len) - wire.BGP_HEADER_LENGTH
	if h.Type == wire.BGP_MSG_UPDATE {
		if _, err := r.Discard(body); err != nil {
			return nil, err
		}
		return &wire.BGPMessage{Header: h}, nil
	}
	data := make([]byte, body)
	if _, err := io.ReadFull(r, data); err != nil {
		return nil, err
	}
	return wire.ParseBGPBody(&h, data)
}

func msgName(t uint8) string {
	switch t {
	case wire.BGP_MSG_OPEN:
		return "OPEN"
	case wire.BGP_MSG_UPDATE:
		return "UPDATE"
	case wire.BGP_MSG_NOTIFICATION:
		return "NOTIFICATION"
	case wire.BGP_MSG_KEEPALIVE:
		return "KEEPALIVE"
	case wire.BGP_MSG_ROUTE_REFRESH:
		return "ROUTE-REFRESH"
	}
	return fmt.Sprintf("message type %d", t)
}

// unwrapOp drops net.OpError's addresses, which the log line already names.
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}
