package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// maxPacket holds the largest VRRP packet: an IPv6 advert with 255 addresses is 4088 bytes,
// plus an IPv4 header with options. A longer packet is truncated and then fails the codec's
// length check.
const maxPacket = 8192

// socket is one raw socket shared by the members with the same sockKey, with a second one that
// only sends (see openSender). Both families use the same code; they differ in how the sockets
// are set up (setup4, setup6, openSender), where the source, TTL and destination of a received
// packet come from (decode) and the socket address and control message an advert is sent with
// (newDest).
type socket struct {
	hub    *Hub
	key    sockKey
	ifname string // multicast: the interface; unicast: ""
	group  netip.Addr
	pc     net.PacketConn
	rc     syscall.RawConn
	done   chan struct{} // closed when serve returns

	members int                   // guarded by hub.mu
	table   atomic.Pointer[table] // replaced under hub.mu, read by serve
	closing atomic.Bool

	// rxMu makes one reader of the receiving socket at a time, with what it reads into: serve,
	// or a member's ReadPending on its instance's loop.
	rxMu   sync.Mutex
	rx     [readBatch]rxSlot
	mmsg   [readBatch]mmsghdr
	rerr   error // serve's
	readFn func(fd uintptr) bool
	strays map[int]Counter // by interface index
	// reads counts the receive syscalls made, EAGAIN included: what a wake-up of the reader
	// costs beyond the packets themselves (tests).
	reads atomic.Int64

	// sender is the send-only socket (openSender), outside the netpoller. Guarded by wmu, with
	// the message it sends: one advert at a time per socket. It also queues the members'
	// expected adverts (see Expect), read under qmu.
	sender int
	wmu    sync.Mutex
	wmsg   unix.Msghdr
	wiov   unix.Iovec

	qmu   sync.Mutex // guards the members' expectations, the filters and what follows
	quiet quietRx
	prog  []unix.SockFilter // the filter being built, reused
	exps  []*expectation    // the expectations being filtered, reused
	vigil *vigil            // the thread reading the expected adverts (Watch); nil: none
}

// readBatch is how many packets one recvmmsg reads. Instances whose timers share a slot of the
// timer grid send their adverts in a burst, and a reader woken by the first packet finds the
// next ones queued: they cost one system call, not one each and one more to find the queue
// empty (a BACKUP of 50 instances at 20 ms: 2.3 packets per wake-up). Each slot holds a
// maxPacket buffer, of which a small advert touches one page: 4 slots keep that small.
const readBatch = 4

// rxBuffer is the receive buffer asked of the kernel, which doubles it for its own accounting.
// Every Master of a host advertises in the same moment (vrrp's advert phase), so the peer's
// socket takes a burst of as many adverts as the link has instances, all queued at once when
// the reader runs late. The kernel charges a packet's whole buffer: 832 bytes on a veth
// (measured), typically 2 to 4 KiB from a real NIC's driver. The default (net.core.rmem_default, 208 KiB) holds 255
// adverts on a veth but not 100 from a NIC; 1 MiB holds 255 at 4 KiB. It is a limit, not an
// allocation: the memory is taken only while packets queue.
const rxBuffer = 512 << 10

// rxSlot is where recvmmsg puts one packet.
type rxSlot struct {
	oob  [128]byte
	from unix.RawSockaddrAny
	iov  unix.Iovec
	buf  [maxPacket]byte
}

// mmsghdr is struct mmsghdr (x/sys/unix has no type for it): a msghdr and the length received.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// dest is one place a member sends to, with what sendmsg needs built once.
type dest struct {
	addr  netip.Addr
	name  unix.RawSockaddrInet6 // or, for IPv4, a RawSockaddrInet4 at its start
	nlen  uint32
	cmsgs []byte // IP_PKTINFO / IPV6_PKTINFO: source address and, where it matters, interface
	// failed is the last advert to addr that the kernel refused, reused while it refuses them
	// for the same reason (Member.write). Only the member's writer touches it.
	failed *SendError
}

// newSocket is a socket before its kernel socket is opened. Its table is empty, not nil: the
// reader starts before Join adds the first member, and a packet already queued is a stray.
func newSocket(h *Hub, key sockKey, pc net.PacketConn) *socket {
	s := &socket{hub: h, key: key, group: Group(key.family), pc: pc, done: make(chan struct{}), strays: map[int]Counter{}, sender: -1}
	s.table.Store(new(table))
	return s
}

// openSocket opens the socket of key. On an error nothing stays open. (The cleanup reads s, not
// a named result: a failing return sets that to nil before the deferred calls run.)
func openSocket(h *Hub, key sockKey, ifi *net.Interface) (_ *socket, err error) {
	network := fmt.Sprintf("ip4:%d", Protocol)
	laddr := "0.0.0.0"
	if key.family == 6 {
		network, laddr = fmt.Sprintf("ip6:%d", Protocol), "::"
	}
	pc, err := net.ListenPacket(network, laddr)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			pc.Close()
		}
	}()
	s := newSocket(h, key, pc)
	defer func() {
		if err != nil && s.sender >= 0 {
			unix.Close(s.sender)
		}
	}()
	if s.rc, err = pc.(*net.IPConn).SyscallConn(); err != nil {
		return nil, err
	}
	if err := s.setsockopt(ipLevel(key.family), multicastAllOpt(key.family), 0); err != nil {
		return nil, fmt.Errorf("setsockopt multicast_all: %w", err)
	}
	if err := s.setsockopt(unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rxBuffer); err != nil {
		// Without CAP_NET_ADMIN: as much as net.core.rmem_max allows.
		if err := s.setsockopt(unix.SOL_SOCKET, unix.SO_RCVBUF, rxBuffer); err != nil {
			return nil, fmt.Errorf("setsockopt SO_RCVBUF: %w", err)
		}
	}
	var mcIf *net.Interface
	if !key.unicast {
		mcIf, s.ifname = ifi, ifi.Name
	}
	if key.family == 6 {
		err = setup6(ipv6.NewPacketConn(pc), mcIf)
	} else {
		err = setup4(ipv4.NewPacketConn(pc), mcIf)
	}
	if err != nil {
		return nil, err
	}
	if s.sender, err = openSender(key.family, mcIf); err != nil {
		return nil, fmt.Errorf("sending socket: %w", err)
	}
	for i := range s.rx {
		slot, h := &s.rx[i], &s.mmsg[i].hdr
		slot.iov.Base = &slot.buf[0]
		slot.iov.SetLen(len(slot.buf))
		h.Name = (*byte)(unsafe.Pointer(&slot.from))
		h.Iov = &slot.iov
		h.SetIovlen(1)
		h.Control = &slot.oob[0]
	}
	s.wmsg.Iov = &s.wiov
	s.wmsg.SetIovlen(1)
	s.readFn = s.recvmmsg // bound once: a method value per call allocates
	return s, nil
}

// setup4 sets the IPv4 receiving socket's options; ifi is the multicast interface, nil for
// unicast.
func setup4(pc *ipv4.PacketConn, ifi *net.Interface) error {
	// IP_PKTINFO: the interface a packet came in by. Source, destination and TTL come from the
	// IPv4 header, which raw IPv4 sockets deliver.
	if err := pc.SetControlMessage(ipv4.FlagInterface, true); err != nil {
		return fmt.Errorf("enable control messages: %w", err)
	}
	if ifi == nil {
		return nil
	}
	group := &net.IPAddr{IP: Group(4).AsSlice()}
	if err := pc.JoinGroup(ifi, group); err != nil {
		return fmt.Errorf("join %s: %w", group, err)
	}
	return nil
}

// setup6 sets the IPv6 receiving socket's options; ifi is the multicast interface, nil for
// unicast.
func setup6(pc *ipv6.PacketConn, ifi *net.Interface) error {
	// Off by default for protocols other than ICMPv6; made explicit because a kernel-computed
	// checksum at some offset would corrupt the VRRP payload the codec already checksummed.
	if err := pc.SetChecksum(false, 0); err != nil {
		return fmt.Errorf("disable IPV6_CHECKSUM: %w", err)
	}
	if err := pc.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst|ipv6.FlagInterface, true); err != nil {
		return fmt.Errorf("enable control messages: %w", err)
	}
	if ifi == nil {
		return nil
	}
	group := &net.IPAddr{IP: Group(6).AsSlice()}
	if err := pc.JoinGroup(ifi, group); err != nil {
		return fmt.Errorf("join %s: %w", group, err)
	}
	return nil
}

// openSender opens the socket adverts are sent on: a raw socket of its own, blocking, that Go's
// netpoller never sees, written with sendmsg(MSG_DONTWAIT).
//
// Why not the receiving socket: the netpoller registers every socket for readability and
// writability, edge-triggered, and every skb a send frees is a writability edge it reports. A
// MASTER's every advert then cost its reader's epoll a ready event for nobody (one more event
// scanned and handed to the runtime per advert; about 4 % of one MASTER's CPU at 20 ms).
//
// A send that finds the buffer full returns an error at once (a raw socket answers ENOBUFS, or
// EAGAIN), and the instance logs that the advert was not sent; VRRP sends again at the next
// interval, as keepalived does after a failed send. Nothing waits for room: the instances' loop
// sends for all of them.
//
// It receives nothing: a drop-all filter keeps any packet of its protocol off its queue, and
// with IP_MULTICAST_ALL off, a socket that joined no group is not even handed the multicast
// adverts (raw_v4_input, ipv6_raw_deliver). Unicast adverts are handed to it and dropped.
func openSender(family int, mcIf *net.Interface) (fd int, err error) {
	af, level := unix.AF_INET, unix.IPPROTO_IP
	if family == 6 {
		af, level = unix.AF_INET6, unix.IPPROTO_IPV6
	}
	fd, err = unix.Socket(af, unix.SOCK_RAW|unix.SOCK_CLOEXEC, Protocol)
	if err != nil {
		return -1, err
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
			fd = -1
		}
	}()
	dropAll := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: 1, Filter: &dropAll[0]}); err != nil {
		return -1, fmt.Errorf("attach drop-all filter: %w", err)
	}
	type option struct {
		name, value int
		what        string
	}
	opts := []option{
		{unix.IP_MULTICAST_ALL, 0, "IP_MULTICAST_ALL"},
		{unix.IP_TOS, tosInternetControl, "IP_TOS"},
		{unix.IP_TTL, TTL, "IP_TTL"},
		{unix.IP_MULTICAST_TTL, TTL, "IP_MULTICAST_TTL"},
		{unix.IP_MULTICAST_LOOP, 0, "IP_MULTICAST_LOOP"},
	}
	if family == 6 {
		opts = []option{
			{unix.IPV6_MULTICAST_ALL, 0, "IPV6_MULTICAST_ALL"},
			// Off by default for protocols other than ICMPv6; made explicit because a
			// kernel-computed checksum at some offset would corrupt the VRRP payload the codec
			// already checksummed.
			{unix.IPV6_CHECKSUM, -1, "IPV6_CHECKSUM"},
			{unix.IPV6_TCLASS, tosInternetControl, "IPV6_TCLASS"},
			{unix.IPV6_UNICAST_HOPS, TTL, "IPV6_UNICAST_HOPS"},
			{unix.IPV6_MULTICAST_HOPS, TTL, "IPV6_MULTICAST_HOPS"},
			{unix.IPV6_MULTICAST_LOOP, 0, "IPV6_MULTICAST_LOOP"},
		}
	}
	if mcIf != nil {
		if family == 6 {
			opts = append(opts, option{unix.IPV6_MULTICAST_IF, mcIf.Index, "IPV6_MULTICAST_IF"})
		} else if err := unix.SetsockoptIPMreqn(fd, level, unix.IP_MULTICAST_IF, &unix.IPMreqn{Ifindex: int32(mcIf.Index)}); err != nil {
			return -1, fmt.Errorf("setsockopt IP_MULTICAST_IF: %w", err)
		} else if err := unix.SetsockoptIPMreqn(fd, level, unix.IP_ADD_MEMBERSHIP, &unix.IPMreqn{Multiaddr: Group(4).As4(), Ifindex: int32(mcIf.Index)}); err != nil {
			// A member of the group, for the adverts its filter queues (Expect); until then it
			// drops them all.
			return -1, fmt.Errorf("join %s: %w", Group(4), err)
		}
	}
	if family == 4 {
		// The arrival time of an expected advert (Quiet).
		opts = append(opts, option{unix.SO_TIMESTAMPNS, 1, "SO_TIMESTAMPNS"})
		// Room for the expected adverts between two reads (quietBuffer).
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, quietBuffer) != nil {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, quietBuffer)
		}
	}
	for _, o := range opts {
		lvl := level
		if o.name == unix.SO_TIMESTAMPNS {
			lvl = unix.SOL_SOCKET
		}
		if err := unix.SetsockoptInt(fd, lvl, o.name, o.value); err != nil {
			return -1, fmt.Errorf("setsockopt %s: %w", o.what, err)
		}
	}
	return fd, nil
}

func ipLevel(family int) int {
	if family == 6 {
		return unix.IPPROTO_IPV6
	}
	return unix.IPPROTO_IP
}

func multicastAllOpt(family int) int {
	if family == 6 {
		return unix.IPV6_MULTICAST_ALL
	}
	return unix.IP_MULTICAST_ALL
}

func (s *socket) setsockopt(level, opt, v int) error {
	var serr error
	if err := s.rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, v) }); err != nil {
		return err
	}
	return serr
}

// serve reads packets and hands each to the member of its VRID until the socket is closed.
func (s *socket) serve() {
	defer close(s.done)
	for {
		// Returns only for an error: the packets are delivered within the read callback.
		err := s.rc.Read(s.readFn)
		if err == nil {
			err = s.rerr
		}
		if err == nil {
			continue
		}
		if s.closing.Load() || errors.Is(err, net.ErrClosed) {
			return
		}
		where := s.ifname
		if where == "" {
			where = "unicast"
		}
		s.hub.opts.Log.Warn(fmt.Sprintf("reading VRRP adverts (%s, IPv%d): %v", where, s.key.family, err))
		time.Sleep(100 * time.Millisecond) // a persistent socket error must not spin a core
	}
}

// recvmmsg is the RawConn read callback: it reads up to readBatch packets at a time without
// blocking and delivers them, until the queue is empty; then it returns false and the netpoller
// waits. It delivers within the callback because rawConn.Read forgets, when it starts, a
// readiness the poller reported before: fewer than readBatch packets means the queue was empty,
// and returning false then, within the same Read, waits without the system call that would
// only say EAGAIN; a packet that arrived meanwhile is an edge the poller has reported or will,
// and the call after the wait reads it. It returns true, with rerr, only for an error.
func (s *socket) recvmmsg(fd uintptr) bool {
	s.rerr = s.readQueued(fd, -1)
	return s.rerr != nil
}

// pendingBatches bounds a ReadPending: 512 packets, more than the receive buffer holds of
// adverts from a veth. Under a flood the queue never empties, and the loop, which runs every
// instance's turns, must not read it for ever in one of them; what arrives while it reads came
// after the deadline anyway.
const pendingBatches = 128

// readQueued reads and delivers the packets queued on the receiving socket until it finds the
// queue empty (nil), or fails, or (batches >= 0) has read that many full batches. It holds rxMu
// for one batch at a time: under a flood serve's read never ends, and a ReadPending waits for
// one batch, not for the flood.
func (s *socket) readQueued(fd uintptr, batches int) error {
	for ; batches != 0; batches-- {
		s.rxMu.Lock()
		n, errno := s.readBatch(fd)
		s.rxMu.Unlock()
		switch errno {
		case 0:
			if n < readBatch {
				return nil
			}
			// A full batch: more may wait. A flood would keep this loop, and the Read it runs
			// in, going for ever, and Close waits for that Read: stop when closing.
			if s.closing.Load() {
				return net.ErrClosed
			}
		case unix.EINTR:
		case unix.EAGAIN:
			return nil
		default:
			return errno
		}
	}
	return nil
}

// readBatch reads up to readBatch packets without blocking and delivers them. Under rxMu.
func (s *socket) readBatch(fd uintptr) (int, syscall.Errno) {
	for i := range s.mmsg {
		h := &s.mmsg[i].hdr
		h.Namelen = uint32(unsafe.Sizeof(s.rx[i].from))
		h.SetControllen(len(s.rx[i].oob))
		h.Flags = 0
		s.mmsg[i].len = 0
	}
	// Raw: MSG_DONTWAIT never blocks, and unlike unix.Syscall a raw syscall does not wake the
	// Go runtime's sysmon thread, a wake-up that costs more than the recvmmsg itself (see
	// package vrrp/alarm).
	s.reads.Add(1)
	n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.mmsg[0])), readBatch, unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	for i := range int(n) {
		s.dispatch(i)
	}
	return int(n), 0
}

// readPending reads and delivers, on the caller's goroutine, what the receiving socket holds
// now (see Member.ReadPending).
func (s *socket) readPending() {
	if s.closing.Load() {
		return
	}
	// Control, not Read: it does not wait for serve's Read, which holds the descriptor's
	// read lock while it waits for the poller.
	_ = s.rc.Control(func(fd uintptr) {
		_ = s.readQueued(fd, pendingBatches) // an error is serve's to report: it meets it at its next read
	})
}

// dispatch decodes packet i of the last recvmmsg and delivers it.
func (s *socket) dispatch(i int) {
	payload, src, dst, ttl, ifindex := s.decode(i)
	if s.key.ifindex != 0 && ifindex != s.key.ifindex {
		return // joined on another interface by another socket: that socket counts it
	}
	if len(payload) < 2 {
		s.stray(ifindex)
		return
	}
	m := s.table.Load().pick(payload[1], src, ifindex)
	if m == nil {
		s.stray(ifindex)
		return
	}
	m.deliver(payload, src, dst, ttl)
}

// decode returns packet i of the last recvmmsg: the VRRP payload and the packet's source,
// destination, TTL or hop limit (-1 if unknown) and incoming interface (0 if unknown).
func (s *socket) decode(i int) (payload []byte, src, dst netip.Addr, ttl, ifindex int) {
	ttl = -1
	slot, h := &s.rx[i], &s.mmsg[i]
	pkt := slot.buf[:min(int(h.len), len(slot.buf))]
	oob := slot.oob[:min(int(h.hdr.Controllen), len(slot.oob))]
	for level, typ, data, rest, ok := nextCmsg(oob); ok; level, typ, data, rest, ok = nextCmsg(rest) {
		switch {
		case level == unix.IPPROTO_IP && typ == unix.IP_PKTINFO && len(data) >= 12:
			// struct in_pktinfo: ifindex, spec_dst, addr
			ifindex = int(binary.NativeEndian.Uint32(data))
		case level == unix.IPPROTO_IPV6 && typ == unix.IPV6_PKTINFO && len(data) >= 20:
			// struct in6_pktinfo: addr, ifindex
			dst = netip.AddrFrom16([16]byte(data[:16]))
			ifindex = int(binary.NativeEndian.Uint32(data[16:]))
		case level == unix.IPPROTO_IPV6 && typ == unix.IPV6_HOPLIMIT && len(data) >= 4:
			ttl = int(int32(binary.NativeEndian.Uint32(data)))
		}
	}
	if s.key.family == 6 {
		// Raw IPv6 sockets never deliver the IPv6 header: the source is the socket address.
		if slot.from.Addr.Family == unix.AF_INET6 {
			sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(&slot.from))
			src = netip.AddrFrom16(sa.Addr)
		}
		return pkt, src, dst, ttl, ifindex
	}
	// Raw IPv4 sockets deliver the header: it has the source, destination and TTL.
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return nil, src, dst, ttl, ifindex
	}
	ihl := int(pkt[0]&0x0f) * 4
	if ihl < 20 || ihl > len(pkt) {
		return nil, src, dst, ttl, ifindex
	}
	src = netip.AddrFrom4([4]byte(pkt[12:16]))
	dst = netip.AddrFrom4([4]byte(pkt[16:20]))
	return pkt[ihl:], src, dst, int(pkt[8]), ifindex
}

// nextCmsg splits the first control message off oob: its level, type and data, and the rest;
// ok is false when none is left or it is malformed. A last message cut short by the buffer
// (MSG_CTRUNC) has no padding after it: the rest is then empty, not out of range.
func nextCmsg(oob []byte) (level, typ int32, data, rest []byte, ok bool) {
	if len(oob) < unix.SizeofCmsghdr {
		return 0, 0, nil, nil, false
	}
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	l := int(h.Len)
	if l < unix.SizeofCmsghdr || l > len(oob) {
		return 0, 0, nil, nil, false
	}
	return h.Level, h.Type, oob[unix.SizeofCmsghdr:l], oob[min(cmsgAlign(l), len(oob)):], true
}

func cmsgAlign(n int) int {
	const a = int(unsafe.Sizeof(uintptr(0)))
	return (n + a - 1) &^ (a - 1)
}

// stray counts a packet no member takes, against the interface it came in by.
func (s *socket) stray(ifindex int) {
	c, ok := s.strays[ifindex]
	if !ok {
		// Once per interface: the name is looked up and the counter made off the hot path.
		name := s.ifname
		if ifindex != s.key.ifindex || name == "" {
			name = fmt.Sprintf("if%d", ifindex)
			if ifi, err := net.InterfaceByIndex(ifindex); err == nil {
				name = ifi.Name
			}
		}
		if s.hub.opts.Strays != nil {
			c = s.hub.opts.Strays(name)
		}
		s.strays[ifindex] = c
	}
	if c != nil {
		c.Inc()
	}
}

// send writes one advert to d. Members of a socket send one at a time.
func (s *socket) send(payload []byte, d *dest) error {
	if len(payload) == 0 {
		return errors.New("empty advert")
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.wmsg.Name = (*byte)(unsafe.Pointer(&d.name))
	s.wmsg.Namelen = d.nlen
	s.wmsg.Control = &d.cmsgs[0]
	s.wmsg.SetControllen(len(d.cmsgs))
	s.wiov.Base = &payload[0]
	s.wiov.SetLen(len(payload))
	err := s.sendmsg()
	s.wiov.Base, s.wmsg.Name, s.wmsg.Control = nil, nil, nil // keep nothing of the caller's alive
	return err
}

// sendmsg sends wmsg on the sending socket, without waiting. Called with wmu held.
func (s *socket) sendmsg() error {
	for {
		// Raw, as recvmmsg: MSG_DONTWAIT never blocks, and a raw syscall does not wake the Go
		// runtime's sysmon thread.
		_, _, errno := unix.RawSyscall(unix.SYS_SENDMSG, uintptr(s.sender), uintptr(unsafe.Pointer(&s.wmsg)), unix.MSG_DONTWAIT)
		switch errno {
		case 0:
			return nil
		case unix.EINTR:
			continue
		}
		return errno
	}
}

// close closes the socket and waits for serve to return.
func (s *socket) close() {
	s.closing.Store(true)
	s.pc.Close()
	<-s.done
	s.qmu.Lock()
	s.endVigil(true) // the watcher reads the sender's descriptor (its members' Unexpect ended it already)
	s.qmu.Unlock()
	s.wmu.Lock() // a send in progress finishes with the descriptor it started with
	unix.Close(s.sender)
	s.sender = -1
	s.wmu.Unlock()
}

// newDest builds the socket address and control message to send from src to dst. The
// interface (ifindex) is pinned for multicast and IPv6 link-local destinations, so that the
// advert leaves where the instance runs even if the routing table would send it elsewhere.
func newDest(family int, src, dst netip.Addr, ifindex int) dest {
	d := dest{addr: dst}
	pinned := dst.IsMulticast() || dst.IsLinkLocalUnicast()
	if family == 6 {
		sa := &d.name
		sa.Family = unix.AF_INET6
		sa.Addr = dst.As16()
		info := unix.Inet6Pktinfo{Addr: src.As16()}
		if pinned {
			sa.Scope_id = uint32(ifindex)
			info.Ifindex = uint32(ifindex)
		}
		d.nlen = unix.SizeofSockaddrInet6
		d.cmsgs = cmsg(unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, unsafe.Slice((*byte)(unsafe.Pointer(&info)), unix.SizeofInet6Pktinfo))
		return d
	}
	sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(&d.name))
	sa.Family = unix.AF_INET
	sa.Addr = dst.As4()
	info := unix.Inet4Pktinfo{Spec_dst: src.As4()}
	if pinned {
		info.Ifindex = int32(ifindex)
	}
	d.nlen = unix.SizeofSockaddrInet4
	d.cmsgs = cmsg(unix.IPPROTO_IP, unix.IP_PKTINFO, unsafe.Slice((*byte)(unsafe.Pointer(&info)), unix.SizeofInet4Pktinfo))
	return d
}

// cmsg builds one control message.
func cmsg(level, typ int, data []byte) []byte {
	b := make([]byte, unix.CmsgSpace(len(data)))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = int32(level), int32(typ)
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[unix.CmsgLen(0):], data)
	return b
}
