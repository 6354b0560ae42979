// Package alarm runs many deadline timers on one Linux timerfd, read through Go's netpoller.
//
// Why not time.Timer: on an otherwise idle process the Go runtime's sysmon thread sleeps until
// the next Go timer is due, so every timer expiry wakes two threads (sysmon and the one that
// runs the timer), and every ordinary syscall made while sysmon sleeps wakes it again. For a
// VRRP daemon whose work is one small advert every 20 ms per instance, that overhead is most of
// its CPU: a bare Go program sending one datagram from a 20 ms time.Ticker costs about 1 s of
// CPU a minute on the lab machine, keepalived's whole VRRP process 0.3 s. A timerfd waited on by
// the netpoller is an fd like the VRRP sockets: the expiry wakes the one thread blocked in
// epoll_wait, and sysmon sleeps on. Arming and reading the timerfd are raw syscalls (they never
// block), so they do not wake sysmon either.
//
// All timers share the one timerfd, armed for the earliest deadline (or, while that is far off,
// for an earlier one it was pushed back from: see arm); one goroutine reads it and delivers the
// due timers' channels. Deadlines are taken from Go's monotonic clock and the
// timerfd counts CLOCK_MONOTONIC, so a timer never fires early and wall-clock steps do not move
// it.
package alarm

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Alarms is a set of timers sharing one timerfd. Create it with New.
type Alarms struct {
	file    *os.File
	rc      syscall.RawConn
	fd      uintptr // the timerfd, for the raw syscalls; valid until Close
	done    chan struct{}
	closing atomic.Bool

	mu    sync.Mutex
	heap  []*Timer     // by deadline, earliest first
	armed time.Time    // the deadline the timerfd is armed for; zero: disarmed
	due   []func()     // the due AfterFunc timers' functions, called after mu is released (reader-owned)
	arms  atomic.Int64 // timerfd_settime calls made (tests)
}

// New opens the timerfd and starts the goroutine that delivers the timers.
func New() (*Alarms, error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "timerfd") // non-blocking: the netpoller waits on it
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("timerfd: %w", err)
	}
	a := &Alarms{file: f, rc: rc, fd: uintptr(fd), done: make(chan struct{})}
	go a.serve()
	return a, nil
}

// Close stops the delivery; pending timers never fire.
func (a *Alarms) Close() error {
	a.closing.Store(true)
	err := a.file.Close()
	<-a.done
	return err
}

// Timer is one deadline of an Alarms. Its methods are safe for concurrent use.
type Timer struct {
	a   *Alarms
	c   chan time.Time // nil for an AfterFunc timer
	f   func()         // an AfterFunc timer's function
	at  time.Time
	idx int // position in a.heap; -1 when not pending
}

// NewTimer returns a timer that is not set.
func (a *Alarms) NewTimer() *Timer {
	return &Timer{a: a, c: make(chan time.Time, 1), idx: -1}
}

// AfterFunc returns a timer that is not set and, once set, calls f on the Alarms' goroutine at
// each expiry, with no lock held; f delays every timer due after it, so it must be short and
// must not wait for another timer of the same Alarms. Its C is nil.
func (a *Alarms) AfterFunc(f func()) *Timer {
	return &Timer{a: a, f: f, idx: -1}
}

// C receives the time of each expiry. It holds at most one; Reset and Stop empty it.
func (t *Timer) C() <-chan time.Time { return t.c }

// Reset sets the timer to fire once, d from now, replacing any pending deadline and dropping
// an expiry not yet received.
func (t *Timer) Reset(d time.Duration) {
	a := t.a
	at := time.Now().Add(max(d, 0))
	a.mu.Lock()
	defer a.mu.Unlock()
	t.drain()
	t.at = at
	if t.idx < 0 {
		t.idx = len(a.heap)
		a.heap = append(a.heap, t)
		a.up(t.idx)
	} else if !a.down(t.idx) {
		a.up(t.idx)
	}
	a.arm()
}

// Stop cancels the pending deadline, if any, and drops an expiry not yet received.
func (t *Timer) Stop() {
	a := t.a
	a.mu.Lock()
	defer a.mu.Unlock()
	t.drain()
	if t.idx >= 0 {
		a.remove(t.idx)
		a.arm()
	}
}

func (t *Timer) drain() {
	if t.c == nil {
		return
	}
	select {
	case <-t.c:
	default:
	}
}

// serve waits for the timerfd and delivers the timers that are due, until Close.
//
// It never reads the timerfd's expiration count. The netpoller waits on the timerfd
// edge-triggered: every expiry is an edge it reports (the timerfd wakes its waiters at each),
// read or not, and fire re-arms it (timerfd_settime), which clears the count. What is due is
// told by the heap and the clock, not by the count: a wake-up with nothing due (an edge from an
// earlier arming) only re-arms. So an expiry costs no read: one system call fewer per advert.
//
// The timers are delivered within the callback, which then returns false for the netpoller to
// wait: rawConn.Read forgets, when it starts, a readiness the poller reported before. Within one
// Read, an expiry that comes while the timers are delivered is an edge the poller has reported,
// and the wait returns at once.
func (a *Alarms) serve() {
	defer close(a.done)
	expired := func(uintptr) bool {
		a.deliver()
		return false // wait for the next expiry
	}
	for {
		err := a.rc.Read(expired) // returns only for an error: the timerfd was closed
		if a.closing.Load() {
			return
		}
		if err != nil {
			// Only a bad fd fails here; keep delivering by time rather than spin.
			time.Sleep(time.Millisecond)
		}
		a.deliver()
	}
}

// deliver fires the due timers and calls the due AfterFunc functions, with mu released.
func (a *Alarms) deliver() {
	a.fire()
	for i, f := range a.due {
		f()
		a.due[i] = nil
	}
	a.due = a.due[:0]
}

// fire delivers every timer whose deadline has passed (an AfterFunc timer's function goes to
// a.due, for serve to call) and arms the timerfd for the next.
func (a *Alarms) fire() {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	// The timerfd is one-shot: it fired (or this wake-up is an earlier arming's edge). Arm anew.
	a.armed = time.Time{}
	for len(a.heap) > 0 && !a.heap[0].at.After(now) {
		t := a.heap[0]
		a.remove(0)
		if t.f != nil {
			a.due = append(a.due, t.f)
			continue
		}
		select {
		case t.c <- now:
		default: // the previous expiry is still unread: one is enough
		}
	}
	a.arm()
}

// arm points the timerfd at the earliest deadline, or leaves it armed for an earlier one while
// that is still far off. Called with mu held.
//
// A BACKUP's master-down timer is pushed back by every advert it hears, and re-arming the
// timerfd is a timerfd_settime (about 5 µs on the lab machine, BenchmarkReset): at 10 BACKUP
// instances at 20 ms, 380 a second, 15 % of the process's CPU. So when the earliest deadline
// moves later, or none is left, the timerfd stays armed for the earlier one until that is
// within a quarter of the way to the new one; the pushes that follow re-arm it then, one in
// about three at one instance, and at many instances one per three-quarters of a master-down
// interval instead of one per advert. Should it fire first (the pushes stopped), fire finds
// nothing due and arms it for the earliest deadline: a wake-up early, never a timer late, and
// a deadline that moves earlier re-arms at once.
func (a *Alarms) arm() {
	var at time.Time
	if len(a.heap) > 0 {
		at = a.heap[0].at
	}
	if at.Equal(a.armed) {
		return
	}
	if !a.armed.IsZero() && (at.IsZero() || at.After(a.armed)) {
		now := time.Now()
		if at.IsZero() || a.armed.Sub(now) >= at.Sub(now)/4 {
			return
		}
	}
	var spec unix.ItimerSpec
	if !at.IsZero() {
		// Relative to now on the monotonic clock; at least 1 ns, since a zero value disarms.
		spec.Value = unix.NsecToTimespec(int64(max(time.Until(at), 1)))
	}
	// Raw: timerfd_settime never blocks, and a raw syscall does not wake the runtime's sysmon.
	a.arms.Add(1)
	_, _, errno := unix.RawSyscall6(unix.SYS_TIMERFD_SETTIME, a.fd, 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0)
	if errno != 0 {
		// Only a closed fd fails here; the timers then never fire, as after Close.
		return
	}
	a.armed = at
}

// The heap, by deadline. Called with mu held.

func (a *Alarms) less(i, j int) bool { return a.heap[i].at.Before(a.heap[j].at) }

func (a *Alarms) swap(i, j int) {
	a.heap[i], a.heap[j] = a.heap[j], a.heap[i]
	a.heap[i].idx, a.heap[j].idx = i, j
}

func (a *Alarms) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !a.less(j, i) {
			break
		}
		a.swap(i, j)
		j = i
	}
}

// down moves element i0 down; it reports whether it moved.
func (a *Alarms) down(i0 int) bool {
	i, n := i0, len(a.heap)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && a.less(r, l) {
			j = r
		}
		if !a.less(j, i) {
			break
		}
		a.swap(i, j)
		i = j
	}
	return i > i0
}

func (a *Alarms) remove(i int) {
	n := len(a.heap) - 1
	t := a.heap[i]
	if i != n {
		a.swap(i, n)
	}
	a.heap[n] = nil
	a.heap = a.heap[:n]
	if i != n && !a.down(i) {
		a.up(i)
	}
	t.idx = -1
}
