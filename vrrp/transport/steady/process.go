//go:build linux

//lint:file-ignore U1000 the constants are read by steady_amd64.s (go_asm.h's const_<name>), which staticcheck does not see

package steady

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A Sender sends, and a Watch reads, from a process of its own, not from a thread of hapair's
// (Config.Thread, WatchConfig.Thread).
//
// Why: on the lab machine (a paravirtualised VM) a wake-up after a second's sleep costs more
// the more memory the waking process has resident, about 8.5 µs per MiB (a C sender with 0 to
// 64 MiB touched and never touched again: 154 to 710 µs a wake-up; docs/performance.md). A
// thread of hapair's wakes with hapair's 8 MiB: 215 to 260 µs a wake-up at 1 s, where
// keepalived's VRRP process, with 3 MiB, costs 168 to 183. So the thread makes a process: a
// clone without CLONE_VM, which shares hapair's descriptor table (CLONE_FILES: the socket, the
// timerfd and the record are the same descriptors) and nothing else, and which unmaps its copy
// of hapair's memory but for the few pages it runs on: startThread's code, the control block
// (a shared mapping, so Go reads its counters as it does the thread's), its stack, and the
// command line (so that ps shows it as hapair's, not as "[hapair]"). It then runs the thread's
// loop. A watcher's process is made the same way and runs the watcher's loop: a BACKUP's
// wake-up every three intervals is the same kind of wake-up after a long sleep.
//
// The thread stays, blocked in wait4 until the process has ended (it costs nothing while it
// waits), for three things:
//   - the process dies with hapair: its parent-death signal (SIGKILL) is sent when its parent
//     thread ends, and the thread ends only with hapair or once the process has ended;
//   - Stop's join is unchanged: the thread ends once the process has, and the kernel then
//     clears its ctid; so no datagram leaves after Stop returns;
//   - the process is reaped: it has no exit signal, so hapair's other waits (HAProxy's, which
//     wait for their own pid) never see it.
//
// Like the thread, the process blocks every signal: a SIGTERM or SIGHUP meant for hapair
// (pkill hapair) does nothing to it. SIGKILL ends it alone: the thread then keeps that it was
// killed (Result.Killed, WatchResult.Why Killed) and writes the eventfd (Config.Ended, on
// which the instance takes its adverts back; WatchConfig.Silent, on which it reads them).
// SIGSTOP of hapair's main process does not stop it, as stopping keepalived's parent does not
// stop its VRRP child.

// The constants the process's code uses (go_asm.h's const_<name>).
const (
	// procCloneFlags: a process (no CLONE_VM, no CLONE_THREAD) sharing only the descriptor
	// table, with no exit signal (the low byte).
	procCloneFlags = unix.CLONE_FILES
	waitAll        = unix.WALL
	prSetPdeathsig = unix.PR_SET_PDEATHSIG
	sigKill        = int(unix.SIGKILL)
	futexWake      = 1 // FUTEX_WAKE, shared: the block is a shared mapping

	readyRunning = 1 // the process runs the loop
	readyFailed  = 2 // it ended (or was never made) before it did

)

// maxUnmap is the most spans the process unmaps: one more than the spans it keeps.
const maxUnmap = 5

// span is one range of addresses, as the process's munmap takes it.
type span struct{ addr, size uintptr }

// userTop is the end of a process's address space on x86-64 with four-level page tables
// (TASK_SIZE_MAX): munmap takes everything below it.
const userTop = 1<<47 - 4096

// codeEnd and codeSpan are in steady_amd64.s.
func codeEnd()
func codeSpan() (start, end uintptr)

// cmdline is where the kernel keeps this process's command line (arg_start, arg_end of
// /proc/self/stat), which the process keeps mapped; 0, 0 if it cannot be read.
var cmdline = sync.OnceValues(func() (uintptr, uintptr) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, 0
	}
	// Fields 48 and 49 (proc(5)), counted from the third, which follows the command's ")".
	f := bytes.Fields(b[bytes.LastIndexByte(b, ')')+1:])
	if len(f) < 49-2 {
		return 0, 0
	}
	start, err1 := strconv.ParseUint(string(f[48-3]), 10, 64)
	end, err2 := strconv.ParseUint(string(f[49-3]), 10, 64)
	if err1 != nil || err2 != nil || end < start {
		return 0, 0
	}
	return uintptr(start), uintptr(end)
})

// unmapSpans is what the process unmaps: every address but the pages of keep.
func unmapSpans(keep []span) ([]span, error) {
	const page = 4096
	var pages []span
	for _, k := range keep {
		if k.size == 0 {
			continue
		}
		start, end := k.addr&^(page-1), (k.addr+k.size+page-1)&^(page-1)
		if end > userTop {
			return nil, fmt.Errorf("steady: %#x..%#x is above the address space the process unmaps", start, end)
		}
		pages = append(pages, span{start, end - start})
	}
	slices.SortFunc(pages, func(a, b span) int {
		switch {
		case a.addr < b.addr:
			return -1
		case a.addr > b.addr:
			return 1
		}
		return 0
	})
	var out []span
	at := uintptr(0)
	for _, k := range pages {
		if k.addr > at {
			out = append(out, span{at, k.addr - at})
		}
		at = max(at, k.addr+k.size)
	}
	if at < userTop {
		out = append(out, span{at, userTop - at})
	}
	if len(out) > maxUnmap {
		return nil, fmt.Errorf("steady: %d spans to unmap, room for %d", len(out), maxUnmap)
	}
	return out, nil
}

// run starts the thread on m to run loop entry; for a process entry (entryProcess,
// entryWatcherProcess) it fills in what the process needs and returns once the process runs
// its loop. what names the loop in errors.
func (t *thread) run(m *threadMem, entry int, what string) error {
	inProcess := entry == entryProcess || entry == entryWatcherProcess
	if inProcess {
		if err := prepareProcess(t, m); err != nil {
			return err
		}
	}
	if err := t.start(m.stack, entry); err != nil {
		return err
	}
	if inProcess {
		if err := awaitProcess(t, what); err != nil {
			// The thread has ended, or is about to: join it before the memory goes.
			t.stopAndJoin(m.timerfd)
			return err
		}
	}
	return nil
}

// prepareProcess fills in what the process needs in t: hapair's pid, and the spans to unmap
// (at t.unmap, room for maxUnmap in the block).
func prepareProcess(t *thread, m *threadMem) error {
	start, end := codeSpan()
	if end <= start || end-start > 64<<10 {
		// codeEnd is not after startThread: the process would unmap the code it runs.
		return fmt.Errorf("steady: the threads' code is not in one piece (%#x..%#x)", start, end)
	}
	argStart, argEnd := cmdline()
	spans, err := unmapSpans([]span{
		{start, end - start},
		{uintptr(unsafe.Pointer(&m.block[0])), uintptr(len(m.block))},
		{uintptr(unsafe.Pointer(&m.stack[0])), uintptr(len(m.stack))},
		{argStart, argEnd - argStart},
	})
	if err != nil {
		return err
	}
	// t.unmap is in the block, which is no Go memory: the offset finds it without turning the
	// uintptr back into a pointer.
	at := t.unmap - uintptr(unsafe.Pointer(&m.block[0]))
	copy(unsafe.Slice((*span)(unsafe.Pointer(&m.block[at])), maxUnmap), spans)
	t.nunmap = int64(len(spans))
	t.ppid = int64(unix.Getpid())
	return nil
}

// awaitProcess returns once the process runs its loop, or has ended before it did (its
// parent thread then says so): nil, or why it could not.
func awaitProcess(t *thread, what string) error {
	for {
		switch v := atomic.LoadUint32(&t.ready); v {
		case readyRunning:
			return nil
		case readyFailed:
			if atomic.LoadUint64(&t.killed) != 0 {
				return fmt.Errorf("steady: the %s process was killed before it ran", what)
			}
			return fmt.Errorf("steady: the %s process: %w", what, unix.Errno(atomic.LoadUint64(&t.failed)))
		default:
			// FUTEX_WAIT, shared (the block is a shared mapping); EAGAIN, EINTR: look again.
			_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(&t.ready)), futexWait, uintptr(v), 0, 0, 0)
		}
	}
}

// Ended reports whether the sender has stopped on its own (Config.Ended): its process was
// killed, or a read of its timer failed. Nothing is sent since.
func (s *Sender) Ended() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c == nil {
		return s.res.Killed || s.res.Failed != 0
	}
	return atomic.LoadUint64(&s.c.thr.killed) != 0 || atomic.LoadUint64(&s.c.thr.failed) != 0
}

// Child is the pid of the sender process, 0 for a thread (Config.Thread) or once stopped.
func (s *Sender) Child() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.c == nil {
		return 0
	}
	return int(atomic.LoadInt64(&s.c.thr.child))
}
