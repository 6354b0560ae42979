//go:build linux

//lint:file-ignore U1000 the constants are read by steady_amd64.s (go_asm.h's const_<name>), which staticcheck does not see

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

// A BACKUP's MASTER sends the same advert every interval, and the BACKUP must notice within
// its master-down interval when they stop. Its transport keeps those adverts off the reader's
// path, in a queue of their own with their arrival times (package vrrp/transport, Expect), and
// the Go side used to read it once every three intervals: one wake-up of the Go scheduler,
// five system calls and a few dozen functions of the runtime and the loop, 130 to 150 µs on
// the lab machine at one instance, about what keepalived's BACKUP spends on three adverts.
//
// A Watch reads that queue from a thread of its own instead: it sleeps until After past the
// newest advert's arrival (the due time of the last advert that can come before the deadline,
// and a little), reads what came (one recvmmsg), and sleeps again until After past the newest
// of those. Only when a wake-up finds nothing does it wake the Go side (an eventfd in the
// netpoller) and exit: the adverts have stopped, or come late, and the loop decides as it did
// before. Its wake-up is the kernel's alone: three system calls and a few instructions.
//
// The same invariants as the Sender's (package doc), and: the thread only reads the socket
// (it never sends); Stop returns once it has exited, so the caller may read the queue itself
// from then on; and its timer counts CLOCK_REALTIME, on which the kernel stamps arrivals, with
// TFD_TIMER_CANCEL_ON_SET: should the wall clock be set, the thread hands back at once rather
// than sleep on a deadline the step moved.

// watchBatch is how many datagrams one recvmmsg reads; watchOob the control buffer of each.
const (
	watchBatch = 8
	watchOob   = 64
)

// The layout and values the watcher's loop uses (go_asm.h's const_<name>).
const (
	mmsgSize         = unsafe.Sizeof(mmsghdr{})
	offControl       = unsafe.Offsetof(unix.Msghdr{}.Control)
	offControllen    = unsafe.Offsetof(unix.Msghdr{}.Controllen)
	offFlags         = unsafe.Offsetof(unix.Msghdr{}.Flags)
	stampCmsgLen     = unix.SizeofCmsghdr + unsafe.Sizeof(unix.Timespec{}) // CMSG_LEN(timespec)
	solSocket        = unix.SOL_SOCKET
	scmTimestampns   = unix.SCM_TIMESTAMPNS
	recvFlags        = unix.MSG_DONTWAIT
	armFlags         = unix.TFD_TIMER_ABSTIME | unix.TFD_TIMER_CANCEL_ON_SET
	backStopped      = 0
	backSilent       = 1
	backClock        = 2
	backNoStamp      = 3
	backFailed       = 4
	backKilled       = 5
	maxWatchAfterSec = 3600
)

type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// HandBack is why a watcher stopped.
type HandBack int

const (
	// Stopped: Stop stopped it.
	Stopped HandBack = backStopped
	// Silent: a wake-up found no datagram (the adverts stopped, or came late).
	Silent HandBack = backSilent
	// ClockSet: the wall clock was set; the arrival times read before it are not comparable
	// with the clock now.
	ClockSet HandBack = backClock
	// NoStamp: a datagram came without its arrival time (the socket does not ask for it).
	NoStamp HandBack = backNoStamp
	// Failed: a system call of the thread failed (WatchResult.Failed); it should not.
	Failed HandBack = backFailed
	// Killed: the watcher's process was killed (by another than Stop).
	Killed HandBack = backKilled
)

func (h HandBack) String() string {
	switch h {
	case Stopped:
		return "stopped"
	case Silent:
		return "silent"
	case ClockSet:
		return "clock set"
	case NoStamp:
		return "no arrival time"
	case Failed:
		return "failed"
	case Killed:
		return "killed"
	}
	return fmt.Sprintf("HandBack(%d)", int(h))
}

// WatchConfig is what a watcher reads, and when.
type WatchConfig struct {
	// Socket is the descriptor read, with recvmmsg(MSG_DONTWAIT); every datagram queued on it
	// counts, and must carry its arrival time (SO_TIMESTAMPNS, and no other control message).
	// The caller keeps it open until Stop returns, and reads nothing from it meanwhile.
	Socket int
	// First is the first wake-up, CLOCK_REALTIME (time.Time's wall clock).
	First time.Time
	// After is how long after the newest datagram's arrival each later wake-up comes.
	After time.Duration
	// Silent is called, on a goroutine of the watcher's, when the thread has handed back
	// (Silent, ClockSet, NoStamp, Failed) or its process was killed: the caller then stops it
	// and reads the socket itself. A call may come just after Stop has returned: the caller
	// must bear it.
	Silent func()
	// Thread reads from a thread of this process; otherwise from a process of its own that the
	// thread makes, as a Sender's (process.go), which costs less a wake-up.
	Thread bool
}

// wctl is the watcher thread's control block: the only definition of its layout (steady_amd64.s
// reaches the fields by go_asm.h's wctl_<field>).
type wctl struct {
	thr thread // first: startThread reaches it at the block's start

	// Set before the thread starts; it only reads them. thr.eventfd is written at a hand-back,
	// thr.failed is the errno with Failed.
	timerfd int64
	sock    int64
	mmsg    uintptr // [watchBatch]mmsghdr, in the block
	after   int64   // ns

	// Written by the thread only.
	expirations uint64   // read(2)'s buffer
	armInterval [2]int64 // with armSec and armNsec, the itimerspec of the next wake-up
	armSec      int64
	armNsec     int64
	received    uint64 // datagrams read
	latest      int64  // CLOCK_REALTIME ns of the newest datagram read; 0: none
	reason      uint64 // HandBack
}

// Watch is a running watcher. Stop it.
type Watch struct {
	mu     sync.Mutex
	c      *wctl // in mem.block, with the batch it reads into; nil once stopped
	mem    threadMem
	events *os.File // the eventfd the thread writes when it hands back
	res    WatchResult
}

// WatchResult is what a watcher read, as of Stop.
type WatchResult struct {
	Received uint64
	// Latest is the newest arrival time read (CLOCK_REALTIME ns), 0 if none.
	Latest int64
	Why    HandBack
	Failed unix.Errno // with Failed
}

// StartWatch starts a watcher on cfg.Socket: a thread, and unless cfg.Thread the process it
// makes.
func StartWatch(cfg WatchConfig) (*Watch, error) {
	if !Supported() {
		return nil, ErrUnsupported
	}
	switch {
	case cfg.Socket < 0:
		return nil, fmt.Errorf("steady: Socket %d is no descriptor", cfg.Socket)
	case cfg.First.UnixNano() <= 0:
		return nil, fmt.Errorf("steady: First %v is not after 1970", cfg.First)
	case cfg.After <= 0 || cfg.After > maxWatchAfterSec*time.Second:
		return nil, fmt.Errorf("steady: After is %v, not in (0, %ds]", cfg.After, maxWatchAfterSec)
	case cfg.Silent == nil:
		return nil, errors.New("steady: no Silent")
	}
	w := &Watch{mem: threadMem{timerfd: -1}}
	ok := false
	defer func() {
		if !ok {
			w.free()
		}
	}()
	var err error
	// The control block, the batch it reads into, and the spans its process unmaps. Shared: the
	// process writes its counters into the same pages as Go reads.
	head := align8(int(unsafe.Sizeof(wctl{})))
	batchSize := align8(watchBatch * (int(mmsgSize) + watchOob))
	size := head + batchSize + maxUnmap*int(unsafe.Sizeof(span{}))
	if w.mem.block, err = unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS); err != nil {
		return nil, fmt.Errorf("steady: mmap: %w", err)
	}
	if err := w.mem.mapStack(unix.CLOCK_REALTIME); err != nil {
		return nil, err
	}
	first := unix.ItimerSpec{Value: unix.NsecToTimespec(cfg.First.UnixNano())}
	if err := unix.TimerfdSettime(w.mem.timerfd, armFlags, &first, nil); err != nil {
		return nil, fmt.Errorf("steady: timerfd_settime: %w", err)
	}
	// The eventfd is listened to from now: the thread, not started yet, is what writes it.
	var efd int
	if w.events, efd, err = listenEventfd("watch", cfg.Silent); err != nil {
		return nil, err
	}

	c := (*wctl)(unsafe.Pointer(&w.mem.block[0]))
	batch := w.mem.block[head : head+batchSize]
	msgs := unsafe.Slice((*mmsghdr)(unsafe.Pointer(&batch[0])), watchBatch)
	oobs := batch[watchBatch*int(mmsgSize):]
	for i := range msgs {
		// No iovec: the datagram's bytes are not read (MSG_TRUNC), only its arrival time.
		msgs[i].hdr.Control = &oobs[i*watchOob]
		msgs[i].hdr.SetControllen(watchOob)
	}
	c.timerfd = int64(w.mem.timerfd)
	c.sock = int64(cfg.Socket)
	c.mmsg = uintptr(unsafe.Pointer(&msgs[0]))
	c.after = int64(cfg.After)
	c.thr.eventfd = int64(efd)
	c.thr.one = 1
	c.thr.unmap = uintptr(unsafe.Pointer(&w.mem.block[head+batchSize]))
	entry := entryWatcherProcess
	if cfg.Thread {
		entry = entryWatcher
	}
	if err := c.thr.run(&w.mem, entry, "watcher"); err != nil {
		return nil, err
	}
	w.c = c
	ok = true
	return w, nil
}

// Received is the number of datagrams read so far.
func (w *Watch) Received() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.c == nil {
		return w.res.Received
	}
	return atomic.LoadUint64(&w.c.received)
}

// Stop ends the thread, if it has not handed back already, and returns once it has exited:
// the socket is the caller's to read again. Calling it again returns the same result.
func (w *Watch) Stop() WatchResult {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.c
	if c == nil {
		return w.res
	}
	c.thr.stopAndJoin(w.mem.timerfd)
	w.res = WatchResult{Received: c.received, Latest: c.latest, Why: HandBack(c.reason), Failed: unix.Errno(c.thr.failed)}
	if c.thr.killed != 0 {
		w.res.Why = Killed
	}
	w.c = nil
	w.free()
	return w.res
}

// Child is the pid of the watcher's process, 0 for a thread (WatchConfig.Thread) or once
// stopped.
func (w *Watch) Child() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.c == nil {
		return 0
	}
	return int(atomic.LoadInt64(&w.c.thr.child))
}

// free releases what StartWatch made; the thread is not running.
func (w *Watch) free() {
	if w.events != nil {
		w.events.Close() // the goroutine's Read returns
		w.events = nil
	}
	w.mem.free()
}
