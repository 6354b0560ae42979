//go:build linux

package steady

import (
	"fmt"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// thread is what every thread of this package keeps at the start of its control block:
// startThread (steady_amd64.s) reaches it there, whichever loop the thread runs.
type thread struct {
	mask    uint64 // every signal: the thread's mask
	oldMask uint64 // the creating thread's mask, restored after clone (written by the asm)
	ctid    uint32 // nonzero until the thread has exited (CLONE_CHILD_CLEARTID)
	stop    uint32 // set by Stop

	// Set before the thread starts; it only reads them.
	eventfd int64  // written when the loop ends on its own (-1: none)
	one     uint64 // what is written

	// Written by the loop, thread or process: the errno of a system call that failed, after
	// which it ended.
	failed uint64

	// The process a thread makes to run its loop in (process.go). Set before the thread starts:
	ppid   int64   // this process's pid, which the process's parent must be
	unmap  uintptr // [maxUnmap]span, in the block: what the process unmaps
	nunmap int64
	// Written by the thread and the process:
	child  int64  // the process's pid (the process itself, before ready; the thread, after its clone)
	status uint64 // its wait status (wait4's int)
	killed uint64 // nonzero: it was killed by a signal, not by Stop (the thread)
	ready  uint32 // 0 until it runs its loop (readyRunning) or could not (readyFailed); futex
}

// The loops a thread can run (startThread's entry).
const (
	entrySender         = 0 // Sender: a datagram at every due time
	entryWatcher        = 1 // Watch: the adverts queued, until they stop
	entryProcess        = 2 // Sender, from a process the thread makes (process.go)
	entryWatcherProcess = 3 // Watch, from a process the thread makes
)

// stackSize is the thread's stack. Its loop pushes nothing and calls nothing, and every signal
// is blocked (no signal frame): the stack is there only so that the thread's stack pointer
// is its own.
const stackSize = 16 << 10

// futexWait is FUTEX_WAIT, not FUTEX_WAIT_PRIVATE: the kernel's wake at the thread's exit is
// a shared one, which a private wait does not hear.
const futexWait = 0

// start creates the thread on t, the first field of its control block, with stack as its
// stack, to run loop entry.
func (t *thread) start(stack []byte, entry int) error {
	t.ctid = 1
	t.mask = ^uint64(0) // the kernel leaves SIGKILL and SIGSTOP out
	// The block and the stack are not Go memory: their addresses stay valid as uintptrs.
	stackTop := uintptr(unsafe.Pointer(&stack[0])) + uintptr(len(stack))
	if tid := startThread(uintptr(unsafe.Pointer(t)), stackTop, uintptr(entry)); tid < 0 {
		return fmt.Errorf("steady: clone: %w", unix.Errno(-tid))
	}
	return nil
}

// stopAndJoin asks the thread to stop, wakes it from its timerfd, and returns once it has
// exited (or had exited already).
func (t *thread) stopAndJoin(timerfd int) {
	atomic.StoreUint32(&t.stop, 1)
	// Wake the thread now rather than at its next due time: it finds stop set and exits. This
	// cannot fail on our own timerfd; if it did, the thread would exit at its next due time,
	// which the wait below would wait for.
	now := unix.ItimerSpec{Value: unix.Timespec{Nsec: 1}}
	_ = unix.TimerfdSettime(timerfd, 0, &now, nil)
	for {
		v := atomic.LoadUint32(&t.ctid)
		if v == 0 {
			return
		}
		// EAGAIN if it has changed meanwhile, EINTR: look again.
		_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(&t.ctid)), futexWait, uintptr(v), 0, 0, 0)
	}
}

// threadMem is what a thread of this package runs on, none of it Go memory: its control block
// (and what that points to), its stack and its timerfd. free releases it once the thread has
// exited.
type threadMem struct {
	block   []byte // the control block and everything the thread reads
	stack   []byte
	timerfd int // -1: none
}

// mapStack maps the thread's stack and creates its blocking timerfd on clock (the thread
// sleeps in read(2)).
func (m *threadMem) mapStack(clock int) error {
	var err error
	if m.stack, err = unix.Mmap(-1, 0, stackSize, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_STACK); err != nil {
		return fmt.Errorf("steady: mmap: %w", err)
	}
	if m.timerfd, err = unix.TimerfdCreate(clock, unix.TFD_CLOEXEC); err != nil {
		return fmt.Errorf("steady: timerfd_create: %w", err)
	}
	return nil
}

// free releases what the thread ran on; it is not running.
func (m *threadMem) free() {
	if m.timerfd >= 0 {
		unix.Close(m.timerfd)
		m.timerfd = -1
	}
	if m.stack != nil {
		unix.Munmap(m.stack)
		m.stack = nil
	}
	if m.block != nil {
		unix.Munmap(m.block)
		m.block = nil
	}
}
