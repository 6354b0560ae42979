package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"
	"unsafe"

	"github.com/hapair/hapair/vrrp/transport/steady"
	"golang.org/x/sys/unix"
)

// A BACKUP hears the same advert from its MASTER every interval, and each one woke the process
// (the reader's thread, out of epoll) only to push the master-down timer back: at one instance
// and 20 ms, 50 wake-ups a second, which cost hapair more than keepalived's whole BACKUP (its
// wake-ups are cheaper; make bench-scale). Nothing in those adverts needs an answer before the
// master-down deadline.
//
// So a member can expect an advert (Expect): the exact bytes its MASTER keeps sending, from that
// source, with TTL 255, and on a multicast socket to the group. Two classic BPF filters, rebuilt
// at every change, keep the expected adverts away from the reader: the receiving socket's drops
// them, and the sending socket (which is in no poller and dropped everything) queues them
// instead, with their arrival time. The instance reads them there when it wakes (Quiet: just
// after the last advert due before its master-down deadline), and pushes the deadline back from
// the latest one: it wakes once every three intervals instead of once per advert. Any other
// packet (another priority, another sender, a priority-0 advert, a copy sent by unicast to a
// multicast member, a malformed one) reaches the reader as before, at once.
//
// IPv4 only: a raw IPv6 socket's filter does not see the source address in the packet.

// maxQuietPayload is the longest VRRP payload that can be expected: 16 words, the v3 header
// and 14 IPv4 addresses (the filter compares word by word, and a BPF program is at most
// 4096 instructions long for every member of the socket).
const maxQuietPayload = 64

// quietBatch is how many queued adverts one recvmmsg of the sending socket reads.
const quietBatch = 8

// maxExpected is how many members of one socket may expect adverts at once; the others' adverts
// reach the reader as before. The filters compare a packet with each expectation in turn, in
// the softirq that delivers it (charged to whatever runs there: on a veth, the sender), and are
// rebuilt whole at every change: at 255 instances on a link (make bench-scale, 2026-12-04),
// every expectation in the filters made hapair's MASTER 23 % dearer at 20 ms and the rebuilds'
// garbage grew the BACKUP's heap by 2.5 MiB. That filter compared the length, the interface and
// the source before the VRID, eight instructions for each expectation an advert is not for;
// since it compares the VRID first, two. At 32, the cap before, the BACKUP of 100 instances at
// 1 s read 68 of them on the loop, one Go pass per advert: 66 ms/min, keepalived's level; at 128
// it reads all 100 from the queue once every three intervals, 33 ms/min, and the MASTER's
// sender, which pays for the filters on the lab's veth, is where it was (2026-12-05, 13:12 UTC,
// docs/performance.md).
const maxExpected = 128

// quietBuffer is the sending socket's receive buffer, where the expected adverts queue between
// two reads (about three intervals): maxExpected instances' adverts over four intervals at the
// 4 KiB a packet from a NIC's driver may be charged (rxBuffer), halved as the kernel doubles it.
// A queue that overflows loses the newest adverts, and the MASTER then counts as heard at the
// read (Quiet). A limit, not an allocation.
const quietBuffer = maxExpected * 4 * 4096 / 2

// errNotQuiet: the member's adverts cannot be expected (IPv6, a payload too long or not whole
// words, maxExpected members expecting already); they reach the reader as every packet does.
var errNotQuiet = errors.New("adverts cannot be expected on this socket")

// expectation is one member's expected advert. Guarded by socket.qmu.
type expectation struct {
	ifindex int // the member's interface: only adverts that came in by it are expected
	src     netip.Addr
	payload []byte    // the VRRP payload, whole 32-bit words
	since   time.Time // when it was set: earlier arrivals are not its
	latest  int64     // the latest arrival read since the last Quiet (CLOCK_REALTIME ns); 0: none
	count   int       // arrivals read since the last Quiet
	// floor is when the queue was last read before the read that found latest: it arrived
	// after that, whatever the wall clock says.
	floor time.Time
	// overflowed: the queue dropped adverts since the last Quiet (see readQuiet).
	overflowed bool
}

// quietRx is where the sending socket's queued adverts are read into. Guarded by socket.qmu.
type quietRx struct {
	mmsg [quietBatch]mmsghdr
	slot [quietBatch]struct {
		buf  [20 + maxQuietPayload]byte
		oob  [64]byte
		from unix.RawSockaddrAny
		iov  unix.Iovec
	}
	lastRead time.Time // when the queue was last read empty
	drops    uint32    // the socket's drop count at the last read (SK_MEMINFO_DROPS)
}

// Expect takes adverts from src whose VRRP payload is payload, with TTL 255, off the reader's
// path: they queue for Quiet. Setting the same expectation again does nothing; a different one
// replaces it. It fails, and nothing changes, when the socket cannot expect adverts (see
// errNotQuiet) or the kernel refuses the filters.
func (m *Member) Expect(src netip.Addr, payload []byte) error {
	s := m.sock
	if s.key.family != 4 || !src.Is4() || len(payload) == 0 || len(payload) > maxQuietPayload || len(payload)%4 != 0 {
		return errNotQuiet
	}
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if m.closed.Load() {
		return errNotQuiet
	}
	if e := m.expect; e != nil && e.src == src && slices.Equal(e.payload, payload) {
		return nil
	}
	s.endVigil(true) // its filters change
	if m.expect == nil && len(s.expectations()) >= maxExpected {
		return errNotQuiet
	}
	old := m.expect
	m.expect = &expectation{ifindex: m.ifi.Index, src: src, payload: slices.Clone(payload), since: time.Now()}
	// The sending socket takes the advert before the reader's lets it go: at every moment one of
	// them has it.
	err := s.attachQuiet()
	if err == nil {
		err = s.attachReceive()
	}
	if err != nil {
		m.expect = old
		s.attachReceive()
		s.attachQuiet()
		return err
	}
	return nil
}

// Unexpect gives the member's adverts back to the reader (see Expect).
func (m *Member) Unexpect() {
	s := m.sock
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if m.expect == nil {
		return
	}
	s.endVigil(true)
	m.expect = nil
	// The reader's socket lets the advert through before the sending socket stops taking it.
	s.attachReceive()
	s.attachQuiet()
}

// Quiet reads the expected adverts queued for every member of the socket and returns, for this
// member, how many came since the last call and when the latest of them arrived. at is on Go's
// clock, never later than now and never earlier than the read of the queue before the one that
// found the advert: a step of the wall clock, on which the kernel stamps arrivals, cannot make
// a live MASTER look silent.
func (m *Member) Quiet() (at time.Time, n int) {
	s := m.sock
	s.qmu.Lock()
	defer s.qmu.Unlock()
	s.readQuiet()
	e := m.expect
	if e == nil {
		return time.Time{}, 0
	}
	if e.overflowed {
		// Adverts were dropped, the newest ones among them: the MASTER may have spoken up to
		// now, and the queue cannot tell. Taken as an advert now, as the reader's path takes a
		// queued advert when it reads it, rather than a silence that never was.
		n = max(e.count, 1)
		e.count, e.latest, e.floor, e.overflowed = 0, 0, time.Time{}, false
		return time.Now(), n
	}
	if e.count == 0 {
		return time.Time{}, 0
	}
	at = arrival(time.Now(), e.latest, e.floor, e.since)
	n = e.count
	e.count, e.latest, e.floor = 0, 0, time.Time{}
	return at, n
}

// arrival is when an advert stamped stamp (CLOCK_REALTIME ns) arrived, on Go's clock at now:
// never later than now (the wall clock stepped back) and never earlier than floor or since (it
// stepped forward: the advert was read after floor, and kept for an expectation set at since).
func arrival(now time.Time, stamp int64, floor, since time.Time) time.Time {
	if floor.Before(since) {
		floor = since
	}
	age := max(time.Duration(now.UnixNano()-stamp), 0)
	if limit := now.Sub(floor); age > limit {
		age = max(limit, 0)
	}
	return now.Add(-age)
}

// readQuiet reads the sending socket's queue empty and credits each advert to its member.
// Called with qmu held.
//
// A queue that filled up (the process stalled, or the machine did, longer than the queue
// lasts: quietBuffer, four intervals of maxExpected instances' adverts) drops the newest
// adverts and keeps the oldest, whose times would make a live MASTER look silent. So after a
// read that found adverts the socket's drop count is read too, and when it rose, every
// expectation is marked overflowed (see Quiet).
func (s *socket) readQuiet() {
	s.endVigil(true) // the queue is read here from now on
	q := &s.quiet
	before := q.lastRead
	read := 0
	defer func() {
		if read > 0 {
			s.checkQuietDrops()
		}
	}()
	for {
		for i := range q.mmsg {
			slot, h := &q.slot[i], &q.mmsg[i]
			slot.iov.Base = &slot.buf[0]
			slot.iov.SetLen(len(slot.buf))
			h.hdr.Iov = &slot.iov
			h.hdr.SetIovlen(1)
			h.hdr.Name = (*byte)(unsafe.Pointer(&slot.from))
			h.hdr.Namelen = uint32(unsafe.Sizeof(slot.from))
			h.hdr.Control = &slot.oob[0]
			h.hdr.SetControllen(len(slot.oob))
			h.hdr.Flags = 0
			h.len = 0
		}
		n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(s.sender), uintptr(unsafe.Pointer(&q.mmsg[0])), quietBatch, unix.MSG_DONTWAIT, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 { // EAGAIN: read empty (or the socket is closed)
			q.lastRead = time.Now()
			return
		}
		read += int(n)
		for i := range int(n) {
			s.creditQuiet(i, before)
		}
		if int(n) < quietBatch {
			q.lastRead = time.Now()
			return
		}
	}
}

// checkQuietDrops marks every expectation overflowed when the sending socket has dropped
// packets since the last look. Called with qmu held.
func (s *socket) checkQuietDrops() {
	drops, err := socketDrops(s.sender)
	if err != nil || drops == s.quiet.drops {
		return
	}
	s.quiet.drops = drops
	for _, e := range s.expectations() {
		e.overflowed = true
	}
}

// socketDrops is how many packets socket fd has dropped for want of room (SO_MEMINFO; a filter's
// rejections are not counted). A raw syscall: it never blocks, and does not wake sysmon.
func socketDrops(fd int) (uint32, error) {
	var info [unix.SK_MEMINFO_VARS]uint32
	size := uint32(unsafe.Sizeof(info))
	_, _, errno := unix.RawSyscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_MEMINFO,
		uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&size)), 0)
	if errno != 0 {
		return 0, errno
	}
	return info[unix.SK_MEMINFO_DROPS], nil
}

// creditQuiet counts queued advert i of the last read for the member that expects it; before is
// when the queue was read empty before.
func (s *socket) creditQuiet(i int, before time.Time) {
	q := &s.quiet
	slot, h := &q.slot[i], &q.mmsg[i]
	pkt := slot.buf[:min(int(h.len), len(slot.buf))]
	if len(pkt) < 22 || pkt[0] != 0x45 {
		return
	}
	src := netip.AddrFrom4([4]byte(pkt[12:16]))
	var stamp int64
	oob := slot.oob[:min(int(h.hdr.Controllen), len(slot.oob))]
	for level, typ, data, rest, ok := nextCmsg(oob); ok; level, typ, data, rest, ok = nextCmsg(rest) {
		if level == unix.SOL_SOCKET && typ == unix.SCM_TIMESTAMPNS && len(data) >= 16 {
			sec, nsec := int64(binary.NativeEndian.Uint64(data)), int64(binary.NativeEndian.Uint64(data[8:]))
			stamp = sec*1e9 + nsec
		}
	}
	if stamp == 0 {
		stamp = time.Now().UnixNano()
	}
	// The filter let it through for an expectation on the interface it came in by; the
	// member's own check below (source, since) is what counts.
	m := s.table.Load().pick(pkt[21], src, 0)
	if m == nil {
		return
	}
	e := m.expect
	if e == nil || e.src != src || stamp < e.since.UnixNano() {
		return // queued for an expectation that has changed since
	}
	e.count++
	if stamp > e.latest {
		e.latest, e.floor = stamp, before
	}
}

// attachQuiet points the sending socket's filter at the members' expected adverts (drop-all
// when none). Called with qmu held.
func (s *socket) attachQuiet() error {
	s.prog = quietProgram(s.prog[:0], s.expectations(), s.expectedDst(), quietKeep, 0)
	return attachFilter(s.sender, s.prog)
}

// attachReceive makes the receiving socket's filter drop the members' expected adverts (and
// keep everything when none). Called with qmu held.
func (s *socket) attachReceive() error {
	s.prog = quietProgram(s.prog[:0], s.expectations(), s.expectedDst(), 0, quietKeep)
	var err error
	if cerr := s.rc.Control(func(fd uintptr) { err = attachFilter(int(fd), s.prog) }); cerr != nil {
		return cerr
	}
	return err
}

// expectedDst is the destination of every expected advert: the group on a multicast socket, whose
// members drop anything else (vrrp.DropDestination), so a copy sent by unicast to the host must
// reach the reader to be dropped and counted there, not be taken for the MASTER's. Invalid on a
// unicast socket: its members' peers send to the host's address, and its sockets see no multicast.
func (s *socket) expectedDst() netip.Addr {
	if s.key.unicast {
		return netip.Addr{}
	}
	return s.group
}

// expectations lists the members' expectations, in a slice reused from call to call. Called
// with qmu held.
func (s *socket) expectations() []*expectation {
	s.exps = s.exps[:0]
	for _, ms := range s.table.Load() {
		for _, m := range ms {
			if m.expect != nil {
				s.exps = append(s.exps, m.expect)
			}
		}
	}
	return s.exps
}

func attachFilter(fd int, prog []unix.SockFilter) error {
	return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
}

// quietKeep is the filter's "keep the packet" (its length, capped: any VRRP packet fits).
const quietKeep = 0xffff

// maxFilterLen is the kernel's limit on a classic BPF program (BPF_MAXINSNS).
const maxFilterLen = 4096

// skfIfindex is classic BPF's ancillary load of the interface a packet came in by
// (SKF_AD_OFF + SKF_AD_IFINDEX in linux/filter.h).
const skfIfindex = 0xfffff000 + 8

// quietProgram appends to p a classic BPF program over an IPv4 packet (a raw socket's filter
// sees the IP header) that returns match for an expected advert and otherwise for anything
// else. An expected advert came in by the expectation's interface (the sending socket is bound
// to none and gets every unicast VRRP packet to the host, from any link), has a 20-byte header
// (no options), TTL 255, destination dst when dst is valid, the expectation's source and, after
// the header, exactly its payload. Expectations that do not fit in maxFilterLen are left out:
// their adverts reach the reader.
//
// The expectations are grouped by what they share (the payload's length, the interface, the
// source: one group for a BACKUP's instances of one MASTER). A group checks those once, then
// loads the payload's words into the scratch memory, and each expectation compares them there,
// its first word (which holds the VRID) first: an advert passes each expectation but its own
// after two instructions. Loading the packet is what makes a classic program big once the
// kernel has translated it (a call for each load), and the kernel charges the program to the
// socket's option memory (net.core.optmem_max, twice over while a filter replaces another): with
// a load of every word in each expectation, 82 VRRPv2 instances' filters took all of it.
func quietProgram(p []unix.SockFilter, exps []*expectation, dst netip.Addr, match, otherwise uint32) []unix.SockFilter {
	const jeq = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
	ld := func(size uint16, off uint32) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_LD | size | unix.BPF_ABS, K: off}
	}
	ret := func(k uint32) unix.SockFilter { return unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: k} }
	if len(exps) == 0 {
		return append(p, ret(otherwise))
	}
	// What every expected advert has, each a load and a compare: a false compare goes to the
	// jump to otherwise, the last true one past it.
	type compare struct {
		load unix.SockFilter
		want uint32
	}
	common := [...]compare{
		{ld(unix.BPF_B, 0), 0x45}, // version 4, no options
		{ld(unix.BPF_B, 8), 255},  // TTL
		{ld(unix.BPF_W, 16), 0},   // destination, when dst is valid
	}
	n := len(common) - 1
	if dst.IsValid() {
		common[n].want = binary.BigEndian.Uint32(dst.AsSlice())
		n++
	}
	for i, c := range common[:n] {
		if i == n-1 {
			p = append(p, c.load, unix.SockFilter{Code: jeq, K: c.want, Jt: 1})
			break
		}
		toJump := uint8(2 * (n - 1 - i)) // past the loads and compares left
		p = append(p, c.load, unix.SockFilter{Code: jeq, K: c.want, Jf: toJump})
	}
	p = append(p, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JA}) // to otherwise; K set below
	jumpAt := len(p) - 1

	type key struct {
		words, ifindex int
		src            netip.Addr
	}
	keyOf := func(e *expectation) key { return key{len(e.payload) / 4, e.ifindex, e.src} }
	var groups []key
	for _, e := range exps {
		if k := keyOf(e); !slices.Contains(groups, k) {
			groups = append(groups, k)
		}
	}
	full := false
	for _, g := range groups {
		// The group's checks, each false one a jump (of any length) to the next group; then
		// the payload into M[0..words-1].
		header := 3*3 + 2*g.words
		if full || len(p)+header+1 > maxFilterLen {
			break
		}
		var toNext []int
		check := func(load unix.SockFilter, want uint32) {
			p = append(p, load, unix.SockFilter{Code: jeq, K: want, Jt: 1}, unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JA})
			toNext = append(toNext, len(p)-1)
		}
		check(unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_LEN}, uint32(20+4*g.words))
		check(ld(unix.BPF_W, skfIfindex), uint32(g.ifindex))
		check(ld(unix.BPF_W, 12), binary.BigEndian.Uint32(g.src.AsSlice()))
		for w := range g.words {
			p = append(p, ld(unix.BPF_W, uint32(20+4*w)), unix.SockFilter{Code: unix.BPF_ST, K: uint32(w)})
		}
		for _, e := range exps {
			if keyOf(e) != g {
				continue
			}
			// Each false compare skips to the next expectation: past the rest of this block.
			size := 2*g.words + 1
			if len(p)+size+1 > maxFilterLen {
				full = true
				break
			}
			start := len(p)
			for w := range g.words {
				next := uint8(start + size - len(p) - 2)
				p = append(p, unix.SockFilter{Code: unix.BPF_LD | unix.BPF_MEM, K: uint32(w)},
					unix.SockFilter{Code: jeq, K: binary.BigEndian.Uint32(e.payload[4*w:]), Jf: next})
			}
			p = append(p, ret(match))
		}
		for _, at := range toNext {
			p[at].K = uint32(len(p) - at - 1)
		}
	}
	p = append(p, ret(otherwise))
	p[jumpAt].K = uint32(len(p) - 1 - jumpAt - 1)
	return p
}

// A lone BACKUP's expected adverts can be read by a thread outside the Go runtime (package
// steady's Watch) rather than by the loop when it wakes: the thread wakes just after the last
// advert due before the master-down deadline, as the loop would have, but for a few system
// calls instead of a pass through the Go scheduler, and calls the loop only when a wake-up
// finds no new advert. Only while the member is the one on its socket expecting adverts: the
// thread counts every advert queued, and cannot tell whose it is.

// errNotAlone: another member of the socket expects adverts too.
var errNotAlone = errors.New("another instance expects adverts on this socket")

// errWatched: the member's adverts are being watched already.
var errWatched = errors.New("the adverts are watched already")

// vigil is a watcher reading a member's expected adverts. Guarded by socket.qmu.
type vigil struct {
	w      *steady.Watch
	m      *Member
	silent func()
	// floor is when the queue was last read before the watcher started: what it reads arrived
	// after that (see expectation.floor).
	floor time.Time
}

// Watch hands the reading of the member's expected adverts to a watcher (package steady), in
// a process of its own unless thread: it wakes at first, then after past the newest advert it
// read, and calls silent when a wake-up finds none (or it must stop: the wall clock was set,
// its process was killed). It fails when the member
// expects nothing, another member of the socket expects adverts, or the thread cannot be had.
// The watcher stops at Unwatch, and at any member's Quiet, Expect or Unexpect and at Close,
// which call silent too; what it read then counts in the member's next Quiet. received counts its adverts while it runs.
func (m *Member) Watch(first time.Time, after time.Duration, thread bool, silent func()) (received func() uint64, err error) {
	s := m.sock
	s.qmu.Lock()
	defer s.qmu.Unlock()
	switch {
	case m.closed.Load() || m.expect == nil:
		return nil, errNotQuiet
	case s.vigil != nil:
		return nil, errWatched
	case len(s.expectations()) != 1:
		return nil, errNotAlone
	}
	w, err := steady.StartWatch(steady.WatchConfig{Socket: s.sender, First: first, After: after, Silent: silent, Thread: thread})
	if err != nil {
		return nil, err
	}
	s.vigil = &vigil{w: w, m: m, silent: silent, floor: s.quiet.lastRead}
	return w.Received, nil
}

// Unwatch stops the member's watcher, if it runs, and returns how many adverts its watchers
// read since the last call. Its Quiet counts them too: whoever counts adverts as they are
// read (the watcher's received) counts these no more. err says that a watcher stopped because
// it could not do its work (a system call failed, an advert came without its arrival time, its
// process was killed):
// one started again would stop alike.
func (m *Member) Unwatch() (received uint64, err error) {
	s := m.sock
	s.qmu.Lock()
	defer s.qmu.Unlock()
	s.endVigil(false)
	received, err = m.watched, m.watchErr
	m.watched, m.watchErr = 0, nil
	return received, err
}

// endVigil stops the watcher, if one runs, and credits what it read to its member's
// expectation. notify: the member did not ask for it (another member's Expect or Quiet, the
// close), and is told as when the adverts stop (silent), since it relies on the watcher to
// wake it. Called with qmu held.
func (s *socket) endVigil(notify bool) {
	v := s.vigil
	if v == nil {
		return
	}
	s.vigil = nil
	res := v.w.Stop()
	if notify {
		v.silent()
	}
	v.m.watched += res.Received
	switch res.Why {
	case steady.Failed:
		v.m.watchErr = fmt.Errorf("watcher: %w", res.Failed)
	case steady.NoStamp:
		v.m.watchErr = errors.New("watcher: an advert came without its arrival time")
	case steady.Killed:
		v.m.watchErr = errors.New("watcher: its process was killed")
	}
	e := v.m.expect
	if e == nil || res.Received == 0 {
		return
	}
	e.count += int(res.Received)
	switch {
	case res.Why == steady.ClockSet || res.Latest == 0:
		// The arrival times are not comparable with the clock now, or missing: taken as an
		// advert now, as after an overflow, rather than a silence that never was.
		e.overflowed = true
	case res.Latest > e.latest:
		e.latest, e.floor = res.Latest, v.floor
	}
	s.checkQuietDrops()
}
