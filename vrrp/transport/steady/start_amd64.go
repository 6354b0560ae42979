//go:build linux

//lint:file-ignore U1000 the constants are read by steady_amd64.s (go_asm.h's const_<name>), which staticcheck does not see

package steady

import "golang.org/x/sys/unix"

// Supported reports whether this architecture has the sender thread.
func Supported() bool { return true }

// The constants steady_amd64.s takes from go_asm.h (const_<name>).
const (
	// cloneFlags make the thread one of the process's (memory, descriptors, signal handlers,
	// thread group), with no exit signal, and have the kernel clear ctl.ctid and wake its futex
	// when it has exited.
	cloneFlags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
		unix.CLONE_THREAD | unix.CLONE_SYSVSEM | unix.CLONE_CHILD_CLEARTID

	// sendFlags: the send never blocks the loop, and never raises SIGPIPE (blocked on the
	// thread, it would stay pending there).
	sendFlags = unix.MSG_DONTWAIT | unix.MSG_NOSIGNAL

	// sigSetmask is rt_sigprocmask's SIG_SETMASK.
	sigSetmask = unix.SIG_SETMASK
)

// startThread creates a thread on c (a control block that starts with a thread) with its stack
// pointer at stackTop, running loop entry (entrySender, entryWatcher), and returns its thread
// id, or -errno. It runs with every signal blocked while it clones, so the thread starts with
// them blocked; the calling thread's mask is restored before it returns. In steady_amd64.s.
func startThread(c, stackTop, entry uintptr) (tid int64)
