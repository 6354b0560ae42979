//go:build linux

#include "go_asm.h"
#include "textflag.h"

// The ctl_* offsets are those of the Go struct ctl (steady.go), from go_asm.h; const_* are
// start_amd64.go's constants.

// Linux amd64 system call numbers and errnos.
#define SYS_read		0
#define SYS_rt_sigprocmask	14
#define SYS_pwrite64		18
#define SYS_sendmsg		46
#define SYS_clone		56
#define SYS_exit		60
#define EINTR			4
#define EAGAIN			11

// func startThread(c, stackTop uintptr) (tid int64)
//
// Between the two rt_sigprocmask calls the goroutine cannot be preempted: an assembly function
// is no async preemption point, and SIGURG is blocked anyway.
TEXT ·startThread(SB),NOSPLIT,$0-24
	MOVQ	c+0(FP), R12
	MOVQ	stackTop+8(FP), R13

	// rt_sigprocmask(SIG_SETMASK, &c.mask, &c.oldMask, 8): the new thread inherits the mask.
	MOVQ	$SYS_rt_sigprocmask, AX
	MOVQ	$const_sigSetmask, DI
	LEAQ	ctl_mask(R12), SI
	LEAQ	ctl_oldMask(R12), DX
	MOVQ	$8, R10
	SYSCALL

	// clone(flags, stackTop, NULL, &c.ctid, 0)
	MOVQ	$SYS_clone, AX
	MOVQ	$const_cloneFlags, DI
	MOVQ	R13, SI
	XORQ	DX, DX
	LEAQ	ctl_ctid(R12), R10
	XORQ	R8, R8
	SYSCALL
	TESTQ	AX, AX
	JEQ	thread

	// The caller (and after a failed clone too): restore its mask, return the tid or -errno.
	MOVQ	AX, R13
	MOVQ	$SYS_rt_sigprocmask, AX
	MOVQ	$const_sigSetmask, DI
	LEAQ	ctl_oldMask(R12), SI
	XORQ	DX, DX
	MOVQ	$8, R10
	SYSCALL
	MOVQ	R13, tid+16(FP)
	RET

	// The new thread: R12 is c. It keeps the timer expirations counted so far (k) in R14 and
	// the due time of the current datagram in R13; SYSCALL keeps both (it clobbers AX, CX, R11).
thread:
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
	CMPL	ctl_stop(R12), $0
	JNE	exit
	CMPQ	AX, $0
	JLT	readerr

	// k += expirations; due = First + (k-1)*Period: the latest due time passed. One datagram
	// however many passed.
	ADDQ	ctl_expirations(R12), R14
	LEAQ	-1(R14), R13
	IMULQ	ctl_period(R12), R13
	ADDQ	ctl_first(R12), R13

	// sendmsg(c.sock, c.msg, sendFlags)
	MOVQ	$SYS_sendmsg, AX
	MOVQ	ctl_sock(R12), DI
	MOVQ	ctl_msg(R12), SI
	MOVQ	$const_sendFlags, DX
	SYSCALL
	CMPQ	AX, $0
	JLT	senderr
	INCQ	ctl_sent(R12)
	MOVQ	R13, ctl_last(R12)

	CMPQ	ctl_recfd(R12), $0
	JLT	wait
	// The due time in decimal, stampLen digits written right to left into the record line.
	MOVQ	R13, AX
	MOVQ	ctl_stampEnd(R12), DI
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
	// pwrite(c.recfd, c.line, c.lineLen, 0)
	MOVQ	$SYS_pwrite64, AX
	MOVQ	ctl_recfd(R12), DI
	MOVQ	ctl_line(R12), SI
	MOVQ	ctl_lineLen(R12), DX
	XORQ	R10, R10
	SYSCALL
	CMPQ	AX, $0
	JGE	wait
	INCQ	ctl_recErrs(R12)
	JMP	wait

senderr:
	INCQ	ctl_errs(R12)
	NEGQ	AX
	MOVQ	AX, ctl_lastErr(R12)
	JMP	wait

readerr:
	CMPQ	AX, $-EINTR
	JEQ	wait
	CMPQ	AX, $-EAGAIN
	JEQ	wait
	// Any other error would come back at every read: keep it for Stop and exit, not spin.
	NEGQ	AX
	MOVQ	AX, ctl_failed(R12)

exit:
	// exit(0): this thread only. The kernel then clears c.ctid and wakes Stop.
	MOVQ	$SYS_exit, AX
	XORQ	DI, DI
	SYSCALL
	JMP	exit
