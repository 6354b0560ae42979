// Package rtprio runs hapair at a real-time scheduling priority (keepalived's vrrp_rt_priority)
// without handing that priority to the programs hapair starts.
//
// Why: a BACKUP that is not scheduled within its Master_Down_Interval (70 ms at a 20 ms advert
// interval) takes the VIP from a healthy MASTER, and a MASTER that is not scheduled on time lets
// its BACKUP do so. On a host whose cores are busy, a process of normal priority waits for the
// scheduler to preempt the load; SCHED_RR at a low real-time priority runs before any of it.
//
// How: Linux schedules threads, not processes, and a new thread or process inherits the policy
// of the thread that made it. Set gives every thread of the process SCHED_RR; the Go runtime's
// later threads inherit it. A child would inherit it too: HAProxy, check scripts and notify
// hooks running real-time could starve the very host they serve, so keepalived returns its
// children to normal priority, and so does hapair. SCHED_RESET_ON_FORK would do it for children
// but also for the runtime's own later threads, so instead, while real-time, Start forks every
// child from one thread kept at SCHED_OTHER: a goroutine locked to it for good. The runtime never
// clones a new thread from a locked one (it asks its template thread, made before the lock), so
// that thread's policy stays its own and nothing else inherits it.
//
// Safety: with GOMAXPROCS=1 (the unit's setting) hapair runs Go code on one core at a time, so
// even a runaway hapair leaves the other cores to HAProxy; and the kernel keeps 5 % of every
// second for normal tasks (sched_rt_runtime_us). No RLIMIT_RTTIME: a Go thread may run a
// garbage collection or a reload's parsing for longer than keepalived's 10 ms without blocking,
// and the limit's signal would kill hapair, VIP and all.
package rtprio

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// MaxPriority is the highest SCHED_RR priority Linux offers; keepalived accepts 1 to 99 as well.
const MaxPriority = 99

// current is the real-time priority of the process's threads, 0 while they run SCHED_OTHER:
// the one Set gave them, or, before any Set, the one hapair was started with (systemd's
// CPUSchedulingPolicy=, chrt), which its children must not inherit either.
var current atomic.Int32

func init() {
	if attr, err := unix.SchedGetAttr(0, 0); err == nil && (attr.Policy == unix.SCHED_RR || attr.Policy == unix.SCHED_FIFO) {
		current.Store(int32(attr.Priority))
	}
}

// Set gives every thread of the process SCHED_RR at priority (1 to 99), or returns them to
// SCHED_OTHER with 0. The thread that Start forks children from stays SCHED_OTHER. Raising the
// policy needs CAP_SYS_NICE (or an RLIMIT_RTPRIO of at least priority); lowering it does not.
func Set(priority int) error {
	if priority < 0 || priority > MaxPriority {
		return fmt.Errorf("real-time priority %d: must be 0 (off) to %d", priority, MaxPriority)
	}
	attr := &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL}
	if priority > 0 {
		attr.Policy, attr.Priority = unix.SCHED_RR, uint32(priority)
		// The forking thread must exist before any thread is raised: locking it may start the
		// runtime's template thread, which must inherit the new policy like every other.
		startForker()
	}
	// A thread made while this runs inherits its maker's policy, old or new: repeat until a
	// pass finds every thread as wanted.
	for range 10 {
		changed, err := setAll(attr)
		if err != nil {
			return err
		}
		if !changed {
			current.Store(int32(priority))
			return nil
		}
	}
	return errors.New("real-time priority: threads kept appearing with the old policy")
}

// Priority is the real-time priority of the process: the one Set gave it, or the one it was
// started with; 0 for none.
func Priority() int { return int(current.Load()) }

// setAll applies attr to every thread but the forker, saying whether any needed it.
func setAll(attr *unix.SchedAttr) (bool, error) {
	tids, err := threads()
	if err != nil {
		return false, err
	}
	changed := false
	for _, tid := range tids {
		if tid == int(forkerTID.Load()) {
			continue
		}
		have, err := unix.SchedGetAttr(tid, 0)
		if errors.Is(err, unix.ESRCH) {
			continue // gone meanwhile
		}
		if err != nil {
			return false, fmt.Errorf("scheduling policy of thread %d: %w", tid, err)
		}
		if have.Policy == attr.Policy && have.Priority == attr.Priority {
			continue
		}
		changed = true
		if err := unix.SchedSetAttr(tid, attr, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			return false, fmt.Errorf("set %s of thread %d: %w", describe(attr), tid, err)
		}
	}
	return changed, nil
}

func describe(attr *unix.SchedAttr) string {
	if attr.Policy == unix.SCHED_RR {
		return fmt.Sprintf("SCHED_RR priority %d", attr.Priority)
	}
	return "SCHED_OTHER"
}

// threads lists the process's thread ids.
func threads() ([]int, error) {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, fmt.Errorf("list threads: %w", err)
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids, nil
}

// Start starts cmd as cmd.Start does, but while the process is real-time it forks from the
// thread kept at SCHED_OTHER, so that the child runs at normal priority. A parent-death signal
// (SysProcAttr.Pdeathsig) is tied to the thread that forks: that thread lives as long as hapair.
func Start(cmd *exec.Cmd) error {
	if current.Load() == 0 {
		return cmd.Start()
	}
	startForker()
	done := make(chan error, 1)
	forks <- func() { done <- cmd.Start() }
	return <-done
}

var (
	forkerOnce sync.Once
	forks      = make(chan func())
	forkerTID  atomic.Int64
)

// startForker starts the goroutine that owns the normal-priority thread, once.
func startForker() {
	forkerOnce.Do(func() {
		ready := make(chan struct{})
		go func() {
			runtime.LockOSThread() // for good: the thread ends with the process
			forkerTID.Store(int64(unix.Gettid()))
			// It may have been made real-time already, by Set or by the unit's
			// CPUSchedulingPolicy=; lowering one's own policy needs no privilege.
			_ = unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL}, 0)
			close(ready)
			for f := range forks {
				f()
			}
		}()
		<-ready
	})
}
