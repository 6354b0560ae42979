package transport

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Handler receives one packet for a member's VRID. It runs on the socket's reader goroutine,
// so it must be quick and must not block: every other instance on the socket waits for it.
// payload (the VRRP payload, no IP header) is only valid during the call. ttl is the received
// TTL (IPv4) or hop limit (IPv6), or -1 if the kernel did not report it.
type Handler = func(payload []byte, src, dst netip.Addr, ttl int)

// Counter is a monotonic counter, such as a prometheus.Counter.
type Counter interface{ Inc() }

// HubOptions are the Hub's collaborators; every field may be left zero.
type HubOptions struct {
	// Strays returns the counter of packets on an interface that no member takes: a VRID that
	// no instance here runs, or too short to carry a VRID. Called once per interface.
	Strays func(ifname string) Counter
	// Log receives the errors of a socket's reader (a failing socket, not a bad packet).
	Log *slog.Logger
}

// Hub shares raw VRRP sockets between the instances of one network namespace. The zero value
// is not usable: call NewHub.
type Hub struct {
	opts HubOptions

	mu    sync.Mutex
	socks map[sockKey]*socket
}

// sockKey says which socket a member shares: one per interface and family for multicast,
// one per family for unicast (ifindex 0).
type sockKey struct {
	ifindex int
	family  int
	unicast bool
}

// NewHub returns a Hub without sockets; Join opens them as needed.
func NewHub(opts HubOptions) *Hub {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Hub{opts: opts, socks: map[sockKey]*socket{}}
}

// Sockets returns how many sockets the hub holds open.
func (h *Hub) Sockets() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.socks)
}

// Join adds one instance with VRID vrid: multicast on opts.Interface, or unicast to
// opts.Peers. It opens the socket the instance shares, if it is the first on it; that must
// happen in the network namespace of the interface (the Hub does not check). Nothing is
// delivered until the Member's Receive.
func (h *Hub) Join(opts Options, vrid uint8) (*Member, error) {
	ifi, src, err := resolve(opts)
	if err != nil {
		return nil, err
	}
	key := sockKey{family: opts.Family, unicast: len(opts.Peers) > 0}
	if !key.unicast {
		key.ifindex = ifi.Index
	}
	m := &Member{
		vrid:  vrid,
		ifi:   ifi,
		src:   src,
		peers: make([]netip.Addr, 0, len(opts.Peers)),
	}
	for _, p := range opts.Peers {
		m.peers = append(m.peers, p.Unmap().WithZone(""))
	}
	for _, d := range destinations(opts.Family, m.peers) {
		m.dsts = append(m.dsts, newDest(opts.Family, src, d, ifi.Index))
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.socks[key]
	if s == nil {
		if s, err = openSocket(h, key, ifi); err != nil {
			mode := "multicast"
			if key.unicast {
				mode = "unicast"
			}
			return nil, fmt.Errorf("listen for VRRP on %s (IPv%d %s): %w", ifi.Name, opts.Family, mode, err)
		}
		h.socks[key] = s
		go s.serve()
	} else if !key.unicast && len(s.table.Load()[vrid]) > 0 {
		return nil, fmt.Errorf("listen for VRRP on %s (IPv%d): VRID %d is already taken by another instance", ifi.Name, opts.Family, vrid)
	}
	m.sock = s
	s.add(m)
	return m, nil
}

// leave takes m off its socket and closes the socket if m was the last one on it.
func (h *Hub) leave(m *Member) {
	h.mu.Lock()
	s := m.sock
	last := s.remove(m)
	if last {
		delete(h.socks, s.key)
	}
	h.mu.Unlock()
	if last {
		s.close()
	}
}

// Member is one instance's share of a socket: it sends that instance's adverts and delivers
// the packets of its VRID to the Handler given to Receive.
type Member struct {
	sock  *socket
	vrid  uint8
	ifi   *net.Interface
	src   netip.Addr
	peers []netip.Addr // unicast peers, unmapped and without zone; nil for multicast
	dsts  []dest       // the group, or the peers in configured order

	mu      sync.Mutex // held while the handler runs, so that Close waits for it
	handler Handler
	closed  atomic.Bool

	expect   *expectation // the advert taken off the reader's path (Expect); guarded by sock.qmu
	watched  uint64       // adverts read by its watchers since the last Unwatch; guarded by sock.qmu
	watchErr error        // why a watcher could not do its work, since the last Unwatch; sock.qmu
}

// SetSource makes the member send from src from now on: its interface was renumbered. Call it
// from where WriteAdvert is called, never at the same time.
func (m *Member) SetSource(src netip.Addr) {
	src = src.Unmap().WithZone("")
	m.src = src
	for i := range m.dsts {
		m.dsts[i] = newDest(m.sock.key.family, src, m.dsts[i].addr, m.ifi.Index)
	}
}

// Receive starts delivering the packets of the member's VRID to h (nil stops).
func (m *Member) Receive(h Handler) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.closed.Load() {
		m.handler = h
	}
}

func (m *Member) deliver(payload []byte, src, dst netip.Addr, ttl int) {
	m.mu.Lock()
	if m.handler != nil {
		m.handler(payload, src, dst, ttl)
	}
	m.mu.Unlock()
}

// ReadPending reads the packets queued on the member's receiving socket, on the caller's
// goroutine, and delivers each to its member's handler as the reader does (for any member of
// the socket); it returns once it found the queue empty, or after 512 packets (a flood never
// lets it empty). A BACKUP's instance calls it before
// its master-down deadline takes effect: when the whole process ran late (a stall, a busy
// core), the Go scheduler may run the loop, woken by its timer, before the reader woken by the
// same poll, while the MASTER's adverts that would have pushed the deadline back are still
// queued. keepalived reads its socket before it looks at the timeouts, for the same reason.
func (m *Member) ReadPending() {
	if !m.closed.Load() {
		m.sock.readPending()
	}
}

// isPeer reports whether src is one of a unicast member's peers.
func (m *Member) isPeer(src netip.Addr) bool {
	for _, p := range m.peers {
		if p == src {
			return true
		}
	}
	return false
}

// WriteAdvert sends payload to 224.0.0.18 / ff02::12 or to every unicast peer, TTL 255.
// With several peers and VRRPv3 the checksum depends on the destination: use WriteAdvertTo.
func (m *Member) WriteAdvert(payload []byte) error {
	if len(m.dsts) == 1 { // multicast, or one peer: no list of errors to build
		return m.write(payload, &m.dsts[0])
	}
	var errs []error
	for i := range m.dsts {
		if err := m.write(payload, &m.dsts[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// WriteAdvertTo sends payload to one of Destinations. A VRRPv3 checksum covers an IP
// pseudo-header that includes the destination (always for IPv6, by default for IPv4), so a
// unicast instance with several peers builds one payload per peer.
func (m *Member) WriteAdvertTo(payload []byte, dst netip.Addr) error {
	dst = dst.Unmap().WithZone("")
	for i := range m.dsts {
		if m.dsts[i].addr == dst {
			return m.write(payload, &m.dsts[i])
		}
	}
	return fmt.Errorf("send VRRP advert on %s: %s is not a destination of this connection", m.ifi.Name, dst)
}

func (m *Member) write(payload []byte, d *dest) error {
	if m.closed.Load() {
		return fmt.Errorf("send VRRP advert on %s: %w", m.ifi.Name, net.ErrClosed)
	}
	err := m.sock.send(payload, d)
	if err == nil {
		return nil
	}
	errno, ok := err.(unix.Errno)
	if !ok {
		return fmt.Errorf("send VRRP advert from %s to %s on %s: %w", m.src, d.addr, m.ifi.Name, err)
	}
	// A link whose queue stays full, or that is down, refuses every advert for the same reason:
	// 50 a second at 20 ms, for each instance on it. The error of the last refusal is returned
	// again (it is never changed once made), so a failing send allocates nothing either, and the
	// garbage collector does not run more often while the link is in trouble.
	if f := d.failed; f != nil && f.Errno == errno && f.Src == m.src {
		return f
	}
	d.failed = &SendError{Src: m.src, Dst: d.addr, Interface: m.ifi.Name, Errno: errno}
	return d.failed
}

// SendError is an advert the kernel refused to send. errors.Is(err, unix.ENOBUFS) and the like
// see through it to Errno.
type SendError struct {
	Src, Dst  netip.Addr
	Interface string
	Errno     unix.Errno
}

func (e *SendError) Error() string {
	return fmt.Sprintf("send VRRP advert from %s to %s on %s: %v", e.Src, e.Dst, e.Interface, e.Errno)
}

func (e *SendError) Unwrap() error { return e.Errno }

// Index is the index of the interface the member was joined on. An interface deleted and created
// again under the same name has a new one, and a member on the old one hears nothing: join again.
func (m *Member) Index() int { return m.ifi.Index }

// Source is the address every advert leaves from (Options.SourceAddr or the primary address).
func (m *Member) Source() netip.Addr { return m.src }

// Destinations is the multicast group, or the unicast peers in configured order.
func (m *Member) Destinations() []netip.Addr {
	out := make([]netip.Addr, len(m.dsts))
	for i, d := range m.dsts {
		out[i] = d.addr
	}
	return out
}

// SteadySocket opens a socket of the member's own for a sender of its adverts that bypasses
// WriteAdvert (package vrrp/transport/steady), which the caller closes, and says what each
// datagram written to it starts with. It is the kind WriteAdvert sends on (see openSender),
// bound to the member's source and connected to its one destination (the group, or the one
// unicast peer): a send is then a write with no address or control message to parse, on a route
// the socket keeps. The shared socket's sendmsg looks the route up at every advert, and
// allocates one for the group, which the host has joined; a lone MASTER's sender thread cost
// about a tenth less with a connected socket in the lab (2026-12-05).
//
// Over IPv4 the socket also takes the IP header from the datagram (IP_HDRINCL, as keepalived
// sends), and header is that header, to put before each advert: the kernel then copies it
// rather than build one through its corking path (ip_append_data), which at 100 ms cost a C
// sender 145 µs a wake-up against 130 with the header given (2026-12-05, side by side). The
// header is what the kernel built: TOS 0xc0, DF, TTL 255, protocol 112, the member's source
// and destination; the kernel fills in the length, the identification and the checksum. Over
// IPv6 header is empty. It fails with several destinations, and once the member is closed.
func (m *Member) SteadySocket() (fd int, header []byte, err error) {
	if len(m.dsts) != 1 {
		return -1, nil, fmt.Errorf("steady socket on %s: %d destinations, not one", m.ifi.Name, len(m.dsts))
	}
	if m.closed.Load() {
		return -1, nil, fmt.Errorf("steady socket on %s: %w", m.ifi.Name, net.ErrClosed)
	}
	family, dst := m.sock.key.family, m.dsts[0].addr
	var mcIf *net.Interface
	if dst.IsMulticast() {
		mcIf = m.ifi
	}
	open := func() (int, error) {
		fd, err := openSender(family, mcIf)
		if err != nil {
			return -1, err
		}
		if family == 4 {
			err = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_HDRINCL, 1)
		}
		if err == nil {
			err = unix.Bind(fd, sockaddr(m.src, m.ifi.Index))
		}
		if err == nil {
			err = unix.Connect(fd, sockaddr(dst, m.ifi.Index))
		}
		if err != nil {
			unix.Close(fd)
			return -1, err
		}
		return fd, nil
	}
	if fd, err = m.sock.inItsNamespace(open); err != nil {
		return -1, nil, fmt.Errorf("steady socket from %s to %s on %s: %w", m.src, dst, m.ifi.Name, err)
	}
	if family == 4 {
		header = ipv4Header(m.src, dst)
	}
	return fd, header, nil
}

// ipv4Header is the IPv4 header of an advert from src to dst as the kernel builds it on the
// sending socket (openSender's options, the default path MTU discovery): version 4, 20 bytes,
// TOS 0xc0, don't fragment, TTL 255, protocol 112. Length, identification and checksum are
// zero: on an IP_HDRINCL socket the kernel fills them in (raw(7)).
func ipv4Header(src, dst netip.Addr) []byte {
	h := []byte{0x45, tosInternetControl, 0, 0, 0, 0, 0x40, 0, TTL, Protocol, 0, 0}
	s, d := src.As4(), dst.As4()
	return append(append(h, s[:]...), d[:]...)
}

// inItsNamespace runs open in the network namespace of the socket's sending socket. hapair
// runs in one namespace, where this is the calling thread's and open runs as it is (the unit's
// RestrictNamespaces forbids setns); a caller in another namespace than the socket (a test that
// made the socket inside a namespace of its own) has open run on a thread of its own that enters
// the socket's, and dies with its goroutine.
func (s *socket) inItsNamespace(open func() (int, error)) (int, error) {
	s.wmu.Lock()
	nsfd, err := unix.IoctlRetInt(s.sender, unix.SIOCGSKNS)
	s.wmu.Unlock()
	if err != nil {
		return -1, fmt.Errorf("the socket's namespace: %w", err)
	}
	defer unix.Close(nsfd)
	var theirs, ours unix.Stat_t
	if err := unix.Fstat(nsfd, &theirs); err != nil {
		return -1, fmt.Errorf("the socket's namespace: %w", err)
	}
	if err := unix.Stat("/proc/thread-self/ns/net", &ours); err == nil && ours.Dev == theirs.Dev && ours.Ino == theirs.Ino {
		return open()
	}
	type result struct {
		fd  int
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread leaves the namespace it was made in
		if err := unix.Setns(nsfd, unix.CLONE_NEWNET); err != nil {
			done <- result{-1, fmt.Errorf("enter the socket's namespace: %w", err)}
			return
		}
		fd, err := open()
		done <- result{fd, err}
	}()
	r := <-done
	return r.fd, r.err
}

// sockaddr is a's socket address; an IPv6 link-local or multicast one is scoped to ifindex.
func sockaddr(a netip.Addr, ifindex int) unix.Sockaddr {
	if a.Is4() || a.Is4In6() {
		return &unix.SockaddrInet4{Addr: a.Unmap().As4()}
	}
	sa := &unix.SockaddrInet6{Addr: a.As16()}
	if a.IsLinkLocalUnicast() || a.IsMulticast() {
		sa.ZoneId = uint32(ifindex)
	}
	return sa
}

// Close leaves the socket: once it returns, the handler is not running and will not be called
// again. The last member of a socket closes it. Close is idempotent.
func (m *Member) Close() error {
	if m.closed.Swap(true) {
		return nil
	}
	m.Unexpect()
	m.sock.hub.leave(m)
	m.mu.Lock()
	m.handler = nil
	m.mu.Unlock()
	return nil
}

// table maps a VRID to the members that take it: at most one for multicast; for unicast one
// per interface the VRID is used on. It is copied on every change and read without a lock.
type table [256][]*Member

func (s *socket) add(m *Member) {
	t := new(table)
	*t = *s.table.Load()
	t[m.vrid] = append(slices.Clip(t[m.vrid]), m)
	s.table.Store(t)
	s.members++
}

// remove reports whether the socket has no member left.
func (s *socket) remove(m *Member) bool {
	t := new(table)
	*t = *s.table.Load()
	t[m.vrid] = slices.DeleteFunc(slices.Clone(t[m.vrid]), func(o *Member) bool { return o == m })
	s.table.Store(t)
	s.members--
	return s.members == 0
}

// pick returns the member that takes a packet of vrid from src that came in by interface
// ifindex (0: unknown), or nil. A multicast socket's members are all on its interface; a
// unicast socket serves every interface, and a packet goes only to a member on the interface it
// came in by: keepalived binds its read socket to the instance's interface, and a link-local
// peer address is only unique on its link.
func (t *table) pick(vrid uint8, src netip.Addr, ifindex int) *Member {
	var first *Member
	for _, m := range t[vrid] {
		if ifindex != 0 && m.ifi.Index != ifindex {
			continue
		}
		if m.isPeer(src) {
			return m
		}
		if first == nil {
			first = m
		}
	}
	// From none of the peers: the first one's filter counts it as DropPeer.
	return first
}

// destinations returns the group, or the peers, as the list to send to.
func destinations(family int, peers []netip.Addr) []netip.Addr {
	if len(peers) == 0 {
		return []netip.Addr{Group(family)}
	}
	return peers
}
