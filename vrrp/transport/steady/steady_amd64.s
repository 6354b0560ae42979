//go:build linux

#include "go_asm.h"
#include "textflag.h"

// The ctl_*, wctl_* and thread_* offsets are those of the Go structs ctl (steady.go), wctl
// (watch.go) and thread (thread.go), from go_asm.h; const_* are Go constants of the package.
// Every control block starts with its thread: thread_* offsets apply to the block's address.

// Linux amd64 system call numbers and errnos.
#define SYS_read		0
#define SYS_rt_sigprocmask	14
#define SYS_pwrite64		18
#define SYS_sendmsg		46
#define SYS_clone		56
#define SYS_write		1
#define SYS_munmap		11
#define SYS_wait4		61
#define SYS_getpid		39
#define SYS_getppid		110
#define SYS_prctl		157
#define SYS_futex		202
#define SYS_timerfd_settime	286
#define SYS_recvmmsg		299
#define SYS_exit		60
#define EINTR			4
#define EAGAIN			11
#define ECANCELED		125

// WKEEP adds a wake-up's datagrams (R13) to w.received and keeps the newest stamp (R14) in
// w.latest. received is one aligned store, which Received reads while the thread runs; Go
// reads the rest only once the thread has exited. It clobbers AX.
#define WKEEP \
	MOVQ	wctl_received(R12), AX \
	ADDQ	R13, AX \
	MOVQ	AX, wctl_received(R12) \
	CMPQ	R14, wctl_latest(R12) \
	JLE	2(PC) \
	MOVQ	R14, wctl_latest(R12)

// func startThread(c, stackTop, entry uintptr) (tid int64)
//
// Between the two rt_sigprocmask calls the goroutine cannot be preempted: an assembly function
// is no async preemption point, and SIGURG is blocked anyway.
TEXT ·startThread(SB),NOSPLIT,$0-32
	MOVQ	c+0(FP), R12
	MOVQ	stackTop+8(FP), R13
	// The new thread cannot read the arguments (its stack is another): BX carries the entry
	// across clone, which SYSCALL keeps.
	MOVQ	entry+16(FP), BX

	// rt_sigprocmask(SIG_SETMASK, &c.mask, &c.oldMask, 8): the new thread inherits the mask.
	MOVQ	$SYS_rt_sigprocmask, AX
	MOVQ	$const_sigSetmask, DI
	LEAQ	thread_mask(R12), SI
	LEAQ	thread_oldMask(R12), DX
	MOVQ	$8, R10
	SYSCALL

	// clone(flags, stackTop, NULL, &c.ctid, 0)
	MOVQ	$SYS_clone, AX
	MOVQ	$const_cloneFlags, DI
	MOVQ	R13, SI
	XORQ	DX, DX
	LEAQ	thread_ctid(R12), R10
	XORQ	R8, R8
	SYSCALL
	TESTQ	AX, AX
	JEQ	thread

	// The caller (and after a failed clone too): restore its mask, return the tid or -errno.
	MOVQ	AX, R13
	MOVQ	$SYS_rt_sigprocmask, AX
	MOVQ	$const_sigSetmask, DI
	LEAQ	thread_oldMask(R12), SI
	XORQ	DX, DX
	MOVQ	$8, R10
	SYSCALL
	MOVQ	R13, tid+24(FP)
	RET

	// The new thread: R12 is c, BX the loop to run.
thread:
	CMPQ	BX, $const_entryWatcher
	JEQ	watcher
	CMPQ	BX, $const_entryProcess
	JEQ	process
	CMPQ	BX, $const_entryWatcherProcess
	JEQ	process

	// The sender: it keeps the timer expirations counted so far (k) in R14 and
	// the due time of the current datagram in R13; SYSCALL keeps both (it clobbers AX, CX, R11).
	XORQ	R14, R14

wait:
	// read(c.timerfd, &c.expirations, 8), blocking until the next due time.
	MOVQ	$SYS_read, AX
	MOVQ	ctl_timerfd(R12), DI
	LEAQ	ctl_expirations(R12), SI
	MOVQ	$8, DX
	SYSCALL
	// Stop is looked at after every wake-up and before anything is sent: once Stop has set it
	// (and woken the timerfd), nothing more leaves.
	CMPL	thread_stop(R12), $0
	JNE	exit
	CMPQ	AX, $0
	JLT	readerr

	// k += expirations; due = First + (k-1)*Period: the latest due time passed. One datagram
	// each however many passed.
	ADDQ	ctl_expirations(R12), R14
	LEAQ	-1(R14), R13
	IMULQ	ctl_period(R12), R13
	ADDQ	ctl_first(R12), R13
	// R15 walks the entries, R9 counts those left (SYSCALL keeps both).
	MOVQ	ctl_entries(R12), R15
	MOVQ	ctl_nentries(R12), R9

send:
	// sendmsg(e.sock, e.msg, sendFlags)
	MOVQ	$SYS_sendmsg, AX
	MOVQ	entry_sock(R15), DI
	MOVQ	entry_msg(R15), SI
	MOVQ	$const_sendFlags, DX
	SYSCALL
	CMPQ	AX, $0
	JLT	senderr
	INCQ	entry_sent(R15)
	MOVQ	R13, entry_last(R15)

	CMPQ	entry_recfd(R15), $0
	JLT	sent
	// The due time in decimal, stampLen digits written right to left into the record line.
	MOVQ	R13, AX
	MOVQ	entry_stampEnd(R15), DI
	MOVQ	$10, BX
	MOVQ	$const_stampLen, CX
digit:
	XORQ	DX, DX
	DIVQ	BX
	ADDQ	$'0', DX
	DECQ	DI
	MOVB	DX, (DI)
	DECQ	CX
	JNE	digit
	// pwrite(e.recfd, e.line, e.lineLen, 0)
	MOVQ	$SYS_pwrite64, AX
	MOVQ	entry_recfd(R15), DI
	MOVQ	entry_line(R15), SI
	MOVQ	entry_lineLen(R15), DX
	XORQ	R10, R10
	SYSCALL
	CMPQ	AX, $0
	JGE	sent
	INCQ	entry_recErrs(R15)

sent:
	ADDQ	$entry__size, R15
	DECQ	R9
	JNE	send
	JMP	wait

senderr:
	INCQ	entry_errs(R15)
	NEGQ	AX
	MOVQ	AX, entry_lastErr(R15)
	JMP	sent

readerr:
	CMPQ	AX, $-EINTR
	JEQ	wait
	CMPQ	AX, $-EAGAIN
	JEQ	wait
	// Any other error would come back at every read: keep it for Stop and exit, not spin.
	NEGQ	AX
	MOVQ	AX, thread_failed(R12)
	// write(c.eventfd, &c.one, 8): Go hears that nothing is sent any more (Config.Ended).
	MOVQ	$SYS_write, AX
	MOVQ	thread_eventfd(R12), DI
	LEAQ	thread_one(R12), SI
	MOVQ	$8, DX
	SYSCALL

exit:
	// exit(0): this thread only (the sender process: the process). The kernel then clears
	// c.ctid and wakes Stop (the process's parent thread: wait4 returns).
	MOVQ	$SYS_exit, AX
	XORQ	DI, DI
	SYSCALL
	JMP	exit

	// The process (process.go) that runs the sender's loop (BX entryProcess) or the watcher's
	// (entryWatcherProcess): this thread makes it, then waits for it to end. R12 is the control
	// block, which is shared memory: the process's stores are seen here and by Go.
process:
	// clone(procCloneFlags, 0, NULL, NULL, 0): a process of its own, which goes on from here on
	// its own copy of this thread's stack (stack 0: the same stack pointer).
	MOVQ	$SYS_clone, AX
	MOVQ	$const_procCloneFlags, DI
	XORQ	SI, SI
	XORQ	DX, DX
	XORQ	R10, R10
	XORQ	R8, R8
	SYSCALL
	TESTQ	AX, AX
	JEQ	child
	JLT	pcloneerr
	MOVQ	AX, thread_child(R12)
preap:
	// wait4(child, &c.status, __WALL, NULL): it has no exit signal, so only __WALL waits for it.
	MOVQ	$SYS_wait4, AX
	MOVQ	thread_child(R12), DI
	LEAQ	thread_status(R12), SI
	MOVQ	$const_waitAll, DX
	XORQ	R10, R10
	SYSCALL
	CMPQ	AX, $-EINTR
	JEQ	preap
	// It has ended. Not by Stop, and by a signal (the low 7 bits of the status; an exit(2),
	// after Stop, an error it kept in failed or a watcher's hand-back, leaves them 0): it was
	// killed.
	CMPL	thread_stop(R12), $0
	JNE	pended
	MOVL	thread_status(R12), AX
	ANDL	$0x7f, AX
	JEQ	pended
	MOVQ	$1, thread_killed(R12)
	// write(eventfd, &one, 8): Go hears that the loop has ended (Config.Ended, Watch's Silent).
	MOVQ	$SYS_write, AX
	MOVQ	thread_eventfd(R12), DI
	LEAQ	thread_one(R12), SI
	MOVQ	$8, DX
	SYSCALL
pended:
	// Before it was ready: Start is waiting.
	CMPL	thread_ready(R12), $0
	JNE	exit
	MOVL	$const_readyFailed, thread_ready(R12)
	JMP	pwake

pcloneerr:
	NEGQ	AX
	MOVQ	AX, thread_failed(R12)
	MOVL	$const_readyFailed, thread_ready(R12)
pwake:
	// futex(&c.ready, FUTEX_WAKE, 1): shared, as Start's wait is.
	MOVQ	$SYS_futex, AX
	LEAQ	thread_ready(R12), DI
	MOVQ	$const_futexWake, SI
	MOVQ	$1, DX
	SYSCALL
	JMP	exit

	// The process. Its signals are blocked as its parent thread's were; BX is still the entry.
child:
	// prctl(PR_SET_PDEATHSIG, SIGKILL): it dies with its parent thread, which dies with hapair.
	MOVQ	$SYS_prctl, AX
	MOVQ	$const_prSetPdeathsig, DI
	MOVQ	$const_sigKill, SI
	SYSCALL
	CMPQ	AX, $0
	JLT	cfail
	// Had hapair died before the prctl, the process would now be another's child: end.
	MOVQ	$SYS_getppid, AX
	SYSCALL
	CMPQ	AX, thread_ppid(R12)
	JNE	exit
	// Its own pid in child, before it says it is ready: the parent thread writes the same once
	// its clone returns, which this process may outrun, and Start returns at ready.
	MOVQ	$SYS_getpid, AX
	SYSCALL
	MOVQ	AX, thread_child(R12)
	// munmap every span of c.unmap: all of its copy of hapair's memory but this code, the
	// block, the stack and the command line.
	MOVQ	thread_unmap(R12), R13
	MOVQ	thread_nunmap(R12), R14
cunmap:
	TESTQ	R14, R14
	JEQ	cready
	MOVQ	$SYS_munmap, AX
	MOVQ	0(R13), DI
	MOVQ	8(R13), SI
	SYSCALL
	CMPQ	AX, $0
	JLT	cfail
	ADDQ	$16, R13
	DECQ	R14
	JMP	cunmap
cready:
	MOVL	$const_readyRunning, thread_ready(R12)
	MOVQ	$SYS_futex, AX
	LEAQ	thread_ready(R12), DI
	MOVQ	$const_futexWake, SI
	MOVQ	$1, DX
	SYSCALL
	// The loop, as the thread runs it.
	CMPQ	BX, $const_entryWatcherProcess
	JEQ	watcher
	XORQ	R14, R14
	JMP	wait
cfail:
	// The parent thread sees it end before it was ready, and tells Start.
	NEGQ	AX
	MOVQ	AX, thread_failed(R12)
	JMP	exit

	// The watcher (watch.go): R12 is the wctl. In each wake-up it keeps how many datagrams it
	// read in R13, the newest arrival stamp among them in R14, and a batch's count in R15.
watcher:
	// read(w.timerfd, &w.expirations, 8), blocking until the wake-up armed.
	MOVQ	$SYS_read, AX
	MOVQ	wctl_timerfd(R12), DI
	LEAQ	wctl_expirations(R12), SI
	MOVQ	$8, DX
	SYSCALL
	CMPL	thread_stop(R12), $0
	JNE	wexit
	CMPQ	AX, $-EINTR
	JEQ	watcher
	CMPQ	AX, $-ECANCELED
	JEQ	wclock
	CMPQ	AX, $0
	JLT	wreaderr
	XORQ	R13, R13
	XORQ	R14, R14

wdrain:
	// Every header of the batch gets its control buffer's whole length back (the kernel wrote
	// the length it used there) and no flags.
	MOVQ	wctl_mmsg(R12), DI
	MOVQ	$const_watchBatch, CX
wreset:
	MOVQ	$const_watchOob, const_offControllen(DI)
	MOVL	$0, const_offFlags(DI)
	ADDQ	$const_mmsgSize, DI
	DECQ	CX
	JNE	wreset
	// recvmmsg(w.sock, w.mmsg, watchBatch, MSG_DONTWAIT, NULL)
	MOVQ	$SYS_recvmmsg, AX
	MOVQ	wctl_sock(R12), DI
	MOVQ	wctl_mmsg(R12), SI
	MOVQ	$const_watchBatch, DX
	MOVQ	$const_recvFlags, R10
	XORQ	R8, R8
	SYSCALL
	CMPQ	AX, $-EINTR
	JEQ	wdrain
	CMPQ	AX, $0
	JLE	wdrained // EAGAIN: read empty; any other error ends this wake-up's reading too
	ADDQ	AX, R13
	MOVQ	AX, R15
	// The batch's last datagram is its newest. Its control message is SCM_TIMESTAMPNS alone
	// (the socket asks for nothing else): a cmsghdr, then the arrival time as a timespec.
	MOVQ	AX, BX
	DECQ	BX
	IMULQ	$const_mmsgSize, BX
	ADDQ	wctl_mmsg(R12), BX
	CMPQ	const_offControllen(BX), $const_stampCmsgLen
	JLT	wnostamp
	MOVQ	const_offControl(BX), SI
	CMPQ	0(SI), $const_stampCmsgLen
	JNE	wnostamp
	CMPL	8(SI), $const_solSocket
	JNE	wnostamp
	CMPL	12(SI), $const_scmTimestampns
	JNE	wnostamp
	MOVQ	16(SI), AX
	IMULQ	$1000000000, AX
	ADDQ	24(SI), AX
	CMPQ	AX, R14
	JLE	wbatch
	MOVQ	AX, R14
wbatch:
	CMPQ	R15, $const_watchBatch
	JEQ	wdrain

wdrained:
	TESTQ	R13, R13
	JEQ	wsilent
	WKEEP
	// The next wake-up: After past the newest arrival, on CLOCK_REALTIME as the stamps are,
	// absolute, and cut short (ECANCELED) should the clock be set meanwhile. A time already
	// past fires at once: the next wake-up finds nothing and hands back.
	MOVQ	wctl_latest(R12), AX
	ADDQ	wctl_after(R12), AX
	XORQ	DX, DX
	MOVQ	$1000000000, CX
	DIVQ	CX
	MOVQ	AX, wctl_armSec(R12)
	MOVQ	DX, wctl_armNsec(R12)
	// timerfd_settime(w.timerfd, armFlags, &w.armInterval (an itimerspec), NULL)
	MOVQ	$SYS_timerfd_settime, AX
	MOVQ	wctl_timerfd(R12), DI
	MOVQ	$const_armFlags, SI
	LEAQ	wctl_armInterval(R12), DX
	XORQ	R10, R10
	SYSCALL
	CMPQ	AX, $0
	JGE	watcher
	NEGQ	AX
	MOVQ	AX, thread_failed(R12)
	MOVQ	$const_backFailed, wctl_reason(R12)
	JMP	whandback

wsilent:
	MOVQ	$const_backSilent, wctl_reason(R12)
	JMP	whandback

wclock:
	MOVQ	$const_backClock, wctl_reason(R12)
	JMP	whandback

wnostamp:
	WKEEP
	MOVQ	$const_backNoStamp, wctl_reason(R12)
	JMP	whandback

wreaderr:
	NEGQ	AX
	MOVQ	AX, thread_failed(R12)
	MOVQ	$const_backFailed, wctl_reason(R12)

whandback:
	// write(w.eventfd, &w.one, 8): Go's side hears it and takes the adverts back.
	MOVQ	$SYS_write, AX
	MOVQ	thread_eventfd(R12), DI
	LEAQ	thread_one(R12), SI
	MOVQ	$8, DX
	SYSCALL

wexit:
	// exit(0): this thread only (the watcher process: the process). The kernel then clears the
	// thread's ctid and wakes Stop (the process's parent thread: wait4 returns).
	MOVQ	$SYS_exit, AX
	XORQ	DI, DI
	SYSCALL
	JMP	wexit

// func codeEnd() is empty: its address ends the code of startThread, which a process of
// process.go keeps mapped (the linker lays out a package's assembly functions in the file's order).
TEXT ·codeEnd(SB),NOSPLIT,$0-0
	RET

// func codeSpan() (start, end uintptr): where startThread's code begins, and codeEnd.
TEXT ·codeSpan(SB),NOSPLIT,$0-16
	LEAQ	·startThread(SB), AX
	MOVQ	AX, start+0(FP)
	LEAQ	·codeEnd(SB), AX
	MOVQ	AX, end+8(FP)
	RET
