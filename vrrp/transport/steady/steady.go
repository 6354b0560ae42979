//go:build linux

// Package steady sends a VRRP MASTER's steady adverts from a thread of its own that the Go
// runtime does not know.
//
// Why: a MASTER's work is one small datagram every interval (20 ms .. 1 s), and in Go the
// wake-up costs more than the advert: the timer's expiry goes through the scheduler (netpoller
// or sysmon, a parked M woken, a goroutine run), which made hapair's MASTER 30-50 % dearer than
// keepalived's C loop on the lab machine. A thread created with a raw clone(2), which only
// blocks in read(2) of a periodic timerfd and then calls sendmsg(2), costs keepalived's loop
// minus two system calls (keepalived waits in epoll_wait for a one-shot timerfd it re-arms with
// timerfd_settime at each pass; a periodic one re-arms itself): measured 12-29 % cheaper than
// keepalived. Its loop is a few lines of assembly (steady_amd64.s); elsewhere Supported is
// false and the caller sends itself.
//
// The caller starts a Sender while it is MASTER and nothing changes (the same datagram, to the
// same address, on the same grid of due times), and stops it before anything changes.
//
// Invariants:
//   - Every signal is blocked on the thread from its first instruction (it is created with the
//     mask blocked around clone), so none of Go's signal handlers, which need a goroutine, ever
//     runs on it; process-wide signals go to Go's threads. A fault on it (a bug) kills the
//     process, as a blocked synchronous signal does.
//   - Nothing it touches is Go heap memory: its control block, the msghdr and everything that
//     points to, the record line and its stack are anonymous mappings of their own, unmapped by
//     Stop only after the thread has exited. The garbage collector neither sees nor moves them.
//   - Stop returns only once the thread has exited (the kernel clears its CLONE_CHILD_CLEARTID
//     word and wakes the futex on it), and the thread checks for Stop between its wake-up and
//     its send: no datagram leaves after Stop returns.
//   - The thread is one of the process's: exit, execve or SIGKILL of the process ends it too.
//     It shares the descriptor table, so the socket must stay open (and the same socket) until
//     Stop returns.
//
// The Go runtime's process-wide operations do not reach it: syscall.Setuid and the like
// (AllThreadsSyscall) change the credentials of the threads the runtime knows, not this one,
// which keeps the ones it was created with (it needs none to send on an open socket).
package steady

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrUnsupported: this architecture has no sender thread; the caller sends itself.
var ErrUnsupported = errors.New("steady: no sender thread on this architecture")

// Config is what a Sender sends, where, and when.
type Config struct {
	// Datagrams are sent at every due time, one after the other; at least one, at most
	// MaxDatagrams.
	Datagrams []Datagram
	// First is when the first datagrams are due: CLOCK_BOOTTIME, absolute, > 0. A time in the
	// past is fine: the thread sends at once, the latest due time of the grid.
	First time.Duration
	// Period is the interval between due times, > 0. The due times are First + k*Period.
	Period time.Duration
	// Ended, if not nil, is called (on a goroutine of its own) should the sender stop on its
	// own, before Stop: its process was killed, or a read of its timer failed. Nothing is sent
	// from then on; the caller takes the datagrams back (Stop).
	Ended func()
	// Thread sends from a thread of this process, as the watcher reads; otherwise from a process
	// of its own that the thread makes (process.go), which costs less a wake-up.
	Thread bool
}

// Datagram is one datagram of a Sender's, and the record it rewrites after each one sent.
type Datagram struct {
	// Socket is the descriptor the datagram is sent on, with sendmsg(MSG_DONTWAIT|MSG_NOSIGNAL).
	// The caller keeps it open until Stop returns.
	Socket int
	// Name is the destination socket address as the kernel takes it (e.g. the bytes of a
	// unix.RawSockaddrInet4/6), copied; empty: the socket's connected peer.
	Name []byte
	// Control is the ancillary data (e.g. IP_PKTINFO), copied; may be empty.
	Control []byte
	// Payload is the datagram, copied; 1..65535 bytes.
	Payload []byte
	// Record, when >= 0, is a file descriptor rewritten after each datagram sent: RecordLine with
	// the datagram's due time (CLOCK_BOOTTIME in nanoseconds, 20 decimal digits, zero padded) at
	// RecordLine[StampAt:StampAt+20], written with pwrite(Record, line, len(line), 0). -1: none.
	// The caller keeps it open until Stop returns.
	Record     int
	RecordLine []byte // copied
	StampAt    int
}

// MaxDatagrams is the most datagrams a Sender sends at each due time: a MASTER's adverts for
// as many VRRP instances.
const MaxDatagrams = 255

// BootTime is CLOCK_BOOTTIME now: the clock of Config.First and of the due times.
func BootTime() time.Duration {
	var ts unix.Timespec
	// It cannot fail: the clock exists since Linux 2.6.39, and ts is valid memory.
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	return time.Duration(ts.Nano())
}

// stampLen is the length of a due time in the record line.
const stampLen = 20

// maxName is the longest destination address: a struct sockaddr_storage.
const maxName = 128

func (cfg *Config) check() error {
	switch {
	case len(cfg.Datagrams) == 0 || len(cfg.Datagrams) > MaxDatagrams:
		return fmt.Errorf("steady: %d datagrams, not 1..%d", len(cfg.Datagrams), MaxDatagrams)
	case cfg.First <= 0:
		// A zero it_value would disarm the timerfd instead.
		return fmt.Errorf("steady: First is %v, not after boot", cfg.First)
	case cfg.Period <= 0:
		return fmt.Errorf("steady: Period is %v, not > 0", cfg.Period)
	}
	for i, d := range cfg.Datagrams {
		if err := d.check(); err != nil {
			return fmt.Errorf("steady: datagram %d: %w", i, err)
		}
	}
	return nil
}

func (d *Datagram) check() error {
	switch {
	case d.Socket < 0:
		return fmt.Errorf("its Socket %d is no descriptor", d.Socket)
	case len(d.Name) > maxName:
		return fmt.Errorf("its Name is %d bytes, longer than a socket address (%d)", len(d.Name), maxName)
	case len(d.Payload) == 0 || len(d.Payload) > 65535:
		return fmt.Errorf("its Payload is %d bytes, not 1..65535", len(d.Payload))
	case d.Record < -1:
		return fmt.Errorf("its Record %d is no descriptor (-1: none)", d.Record)
	case d.Record >= 0 && (d.StampAt < 0 || d.StampAt+stampLen > len(d.RecordLine)):
		return fmt.Errorf("its StampAt %d: the %d digits do not fit in the %d-byte RecordLine",
			d.StampAt, stampLen, len(d.RecordLine))
	}
	return nil
}

// ctl is the thread's control block, at the start of its block. This struct is the layout's
// only definition: steady_amd64.s reaches the fields by the offsets the compiler writes to
// go_asm.h (ctl_<field>).
type ctl struct {
	thr thread // first: startThread reaches it at the block's start

	// Set before the thread starts; it only reads them. thr.eventfd is written when the sender
	// stops on its own (Config.Ended), thr.failed is the errno of a failed read of the timer.
	timerfd  int64
	entries  uintptr // [nentries]entry, in the block
	nentries int64
	first    int64 // First, ns
	period   int64 // Period, ns

	// Written by the thread only.
	expirations uint64 // read(2)'s buffer: timer expirations since the last read
}

// entry is one datagram in the control block (steady_amd64.s: entry_<field>, entry__size).
type entry struct {
	// Set before the thread starts.
	sock     int64
	msg      uintptr // *unix.Msghdr, in the block
	recfd    int64   // Record
	line     uintptr // the record line, in the block
	lineLen  int64
	stampEnd uintptr // one past the stamp's last digit in the line

	// Written by the thread only.
	sent    uint64
	errs    uint64 // failed sendmsg calls
	lastErr uint64 // errno of the last failed sendmsg
	last    int64  // due time of the last datagram sent (ns)
	recErrs uint64 // failed pwrite calls
}

// Sender is a running sender thread. Stop it.
type Sender struct {
	mu      sync.Mutex
	c       *ctl    // in block; nil once stopped
	entries []entry // in block
	mem     threadMem
	events  *os.File // the eventfd of Config.Ended
	res     Result   // once stopped
}

// Result is what a Sender did, as of Stop.
type Result struct {
	// Each is what was sent of each datagram, in Config.Datagrams' order.
	Each []Counts
	// Failed is the errno of a read of the timerfd that failed (it should not): the thread
	// exited then, and sent nothing more. 0 if none.
	Failed unix.Errno
	// Killed: the sender process was killed (by another than Stop); nothing was sent after.
	Killed bool
}

// Counts are what a Sender did with one datagram.
type Counts struct {
	Sent, Errors uint64
	LastErr      unix.Errno    // of the last failed sendmsg, 0 if none
	Last         time.Duration // CLOCK_BOOTTIME due time of the last one sent; 0 if none
	RecordErrors uint64        // failed pwrites
}

// Start creates the timerfd (CLOCK_BOOTTIME, absolute: it keeps the grid First + k*Period
// whatever the thread's delays) and the thread, which sends one datagram per wake-up, however
// many due times passed meanwhile (no burst after a stall). The due time of a datagram is the
// latest one passed when the thread woke: never later than the real send.
func Start(cfg Config) (*Sender, error) {
	if !Supported() {
		return nil, ErrUnsupported
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	s := &Sender{mem: threadMem{timerfd: -1}}
	ok := false
	defer func() {
		if !ok {
			s.free()
		}
	}()
	var err error
	if s.mem.block, s.entries, err = newBlock(&cfg); err != nil {
		return nil, fmt.Errorf("steady: mmap: %w", err)
	}
	if err := s.mem.mapStack(unix.CLOCK_BOOTTIME); err != nil {
		return nil, err
	}
	grid := unix.ItimerSpec{
		Value:    unix.NsecToTimespec(int64(cfg.First)),
		Interval: unix.NsecToTimespec(int64(cfg.Period)),
	}
	if err := unix.TimerfdSettime(s.mem.timerfd, unix.TFD_TIMER_ABSTIME, &grid, nil); err != nil {
		return nil, fmt.Errorf("steady: timerfd_settime: %w", err)
	}
	c := (*ctl)(unsafe.Pointer(&s.mem.block[0]))
	c.timerfd = int64(s.mem.timerfd)
	c.thr.one = 1
	ended, err := s.listen(cfg.Ended)
	if err != nil {
		return nil, err
	}
	c.thr.eventfd = ended
	entry := entrySender
	if !cfg.Thread {
		entry = entryProcess
	}
	if err := c.thr.run(&s.mem, entry, "sender"); err != nil {
		return nil, err
	}
	s.c = c
	ok = true
	return s, nil
}

// listen makes the eventfd the thread writes when the sender stops on its own, and the
// goroutine that calls ended then; -1 (none) if ended is nil.
func (s *Sender) listen(ended func()) (int64, error) {
	if ended == nil {
		return -1, nil
	}
	var efd int
	var err error
	if s.events, efd, err = listenEventfd("sender", ended); err != nil {
		return -1, err
	}
	return int64(efd), nil
}

// listenEventfd makes an eventfd in Go's netpoller, and a goroutine that calls fn once should
// the eventfd be written (by a thread of this package), and returns once it has been closed.
// It returns the eventfd's descriptor apart: the File's Fd would make it blocking.
func listenEventfd(name string, fn func()) (*os.File, int, error) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, -1, fmt.Errorf("steady: eventfd: %w", err)
	}
	f := os.NewFile(uintptr(efd), name) // non-blocking: in the netpoller
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, -1, fmt.Errorf("steady: eventfd: %w", err)
	}
	go func() {
		// Returns with an error once the eventfd is closed.
		var got [8]byte
		err := rc.Read(func(fd uintptr) bool {
			_, err := unix.Read(int(fd), got[:])
			return err != unix.EAGAIN
		})
		if err == nil {
			fn()
		}
	}()
	return f, efd, nil
}

// free releases what Start made; the thread is not running.
func (s *Sender) free() {
	if s.events != nil {
		s.events.Close() // the goroutine's Read returns
		s.events = nil
	}
	s.mem.free()
}

// newBlock maps the thread's control block and copies after it the entries, and for each
// datagram its msghdr, its iovec and what they point to, and its record line. Each part starts
// 8-byte aligned (a cmsghdr must).
func newBlock(cfg *Config) ([]byte, []entry, error) {
	n := align8(int(unsafe.Sizeof(ctl{}))) + align8(len(cfg.Datagrams)*int(unsafe.Sizeof(entry{}))) +
		align8(maxUnmap*int(unsafe.Sizeof(span{})))
	for _, d := range cfg.Datagrams {
		for _, size := range []int{unix.SizeofMsghdr, unix.SizeofIovec, len(d.Name), len(d.Control), len(d.Payload), len(d.RecordLine)} {
			n += align8(size)
		}
	}
	// Shared: the sender process writes its counters into the same pages as Go reads.
	block, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, nil, err
	}
	rest := block
	take := func(size int) []byte {
		p := rest[:size:size]
		rest = rest[align8(size):]
		return p
	}
	c := (*ctl)(unsafe.Pointer(&take(int(unsafe.Sizeof(ctl{})))[0]))
	entries := unsafe.Slice((*entry)(unsafe.Pointer(&take(len(cfg.Datagrams) * int(unsafe.Sizeof(entry{})))[0])), len(cfg.Datagrams))
	unmap := take(maxUnmap * int(unsafe.Sizeof(span{})))
	c.thr.unmap = uintptr(unsafe.Pointer(&unmap[0]))
	c.entries = uintptr(unsafe.Pointer(&entries[0]))
	c.nentries = int64(len(entries))
	c.first = int64(cfg.First)
	c.period = int64(cfg.Period)

	for i, d := range cfg.Datagrams {
		e := &entries[i]
		msg := (*unix.Msghdr)(unsafe.Pointer(&take(unix.SizeofMsghdr)[0]))
		iov := (*unix.Iovec)(unsafe.Pointer(&take(unix.SizeofIovec)[0]))
		name := take(len(d.Name))
		control := take(len(d.Control))
		payload := take(len(d.Payload))
		line := take(len(d.RecordLine))
		if copy(name, d.Name) > 0 {
			msg.Name = &name[0]
			msg.Namelen = uint32(len(name))
		}
		if copy(control, d.Control) > 0 {
			msg.Control = &control[0]
			msg.SetControllen(len(control))
		}
		copy(payload, d.Payload)
		iov.Base = &payload[0]
		iov.SetLen(len(payload))
		msg.Iov = iov
		msg.SetIovlen(1)

		e.sock = int64(d.Socket)
		e.msg = uintptr(unsafe.Pointer(msg))
		e.recfd = int64(d.Record)
		if d.Record >= 0 {
			copy(line, d.RecordLine)
			e.line = uintptr(unsafe.Pointer(&line[0]))
			e.lineLen = int64(len(line))
			e.stampEnd = e.line + uintptr(d.StampAt+stampLen)
		}
	}
	return block, entries, nil
}

func align8(n int) int { return (n + 7) &^ 7 }

// Sent is the number of datagram i (of Config.Datagrams) sent so far.
func (s *Sender) Sent(i int) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c == nil {
		return s.res.Each[i].Sent
	}
	return atomic.LoadUint64(&s.entries[i].sent)
}

// Errors is the number of sendmsg failures of datagram i so far.
func (s *Sender) Errors(i int) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c == nil {
		return s.res.Each[i].Errors
	}
	return atomic.LoadUint64(&s.entries[i].errs)
}

// Stop ends the thread and returns once it has exited: no datagram is sent after it returns.
// It frees the thread's memory and closes the timerfd (never the sockets or Records). Calling it
// again returns the same Result.
func (s *Sender) Stop() Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.c
	if c == nil {
		return s.res
	}
	c.thr.stopAndJoin(s.mem.timerfd)
	// The thread has exited: its counters are final.
	s.res = Result{
		Each:   make([]Counts, len(s.entries)),
		Failed: unix.Errno(c.thr.failed),
		Killed: c.thr.killed != 0,
	}
	for i, e := range s.entries {
		s.res.Each[i] = Counts{
			Sent:         e.sent,
			Errors:       e.errs,
			LastErr:      unix.Errno(e.lastErr),
			Last:         time.Duration(e.last),
			RecordErrors: e.recErrs,
		}
	}
	s.c = nil
	s.entries = nil
	s.free()
	return s.res
}
