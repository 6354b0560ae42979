// Package gcpace paces the Go runtime's garbage collections by allocation alone, as GOGC does,
// without the collection the runtime forces every two minutes.
//
// Why: the runtime starts a collection when the heap has grown by GOGC percent since the last,
// and also when two minutes have passed without one (forcegcperiod), whatever was allocated. A
// hapair whose adverts are sent and read by threads outside the runtime (package
// vrrp/transport/steady) allocates next to nothing from one minute to the next, and that forced
// collection, of a heap gone cold in the caches, was the largest thing its Go side did: 4.2 ms
// of CPU on a MASTER and 5.0 on a BACKUP every two minutes on the lab machine (2026-12-05, per
// thread), against 13 ms a minute for the sender's adverts of a MASTER at 1 s and 4 ms a minute
// for a BACKUP's watcher reading its MASTER's: a sixth of the one and more than half of the
// other, where keepalived's whole daemon is at about the same level as those threads.
//
// The runtime skips the time trigger only while GOGC is off (runtime/mgc.go, gcTrigger.test:
// "if gcController.gcPercent.Load() < 0 { return false }"). So Start turns GOGC off and sets
// the memory limit where GOGC would have put the next collection: the live heap after the last
// one, plus GOGC percent of it and of what the collector scans besides (stacks, globals), with
// the runtime's own minimum, plus the memory the runtime holds outside the heap's objects; never
// above the limit the process started with (GOMEMLIMIT). The runtime collects when the heap
// reaches that, as it would have at the GOGC goal, and after each collection the limit is set
// again from the new live heap (a cleanup on an object of no use but to die in it).
//
// What changes besides: the runtime returns free heap pages to the kernel to stay under a memory
// limit (its scavenger), so the resident set after a collection is nearer the live heap than
// with GOGC alone. What could go wrong: the memory limit is soft. A live heap that grows past it
// between two collections (a reload of a much larger configuration) makes the runtime collect
// more often, up to half the CPU (its limiter), until the end of the next collection, which sets
// the limit from the larger heap.
package gcpace

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// heapMinimum is the runtime's smallest heap goal at GOGC=100 (runtime/mgcpacer.go), scaled by
// GOGC as the runtime scales it.
const heapMinimum = 4 << 20

// runtimeHeadroom is the least the runtime keeps between its heap goal and a memory limit
// (runtime/mgcpacer.go, memoryLimitMinHeapGoalHeadroom).
const runtimeHeadroom = 1 << 20

// The runtime/metrics samples the limit is computed from, and the collections completed, by
// their index in Pacer.samples.
const (
	iLive = iota
	iStacks
	iGlobals
	iTotal
	iReleased
	iFree
	iObjects
	iCycles
)

var sampleNames = [...]string{
	iLive:     "/gc/heap/live:bytes",
	iStacks:   "/gc/scan/stack:bytes",
	iGlobals:  "/gc/scan/globals:bytes",
	iTotal:    "/memory/classes/total:bytes",
	iReleased: "/memory/classes/heap/released:bytes",
	iFree:     "/memory/classes/heap/free:bytes",
	iObjects:  "/memory/classes/heap/objects:bytes",
	iCycles:   "/gc/cycles/total:gc-cycles",
}

// backToBack is how many collections in one second make the pacer give the runtime its own
// pacing back: hapair allocates nowhere near the 100 MiB a second that would take at the GOGC
// goal, so they would be the pacer's fault (a limit the runtime reads otherwise than here).
const backToBack = 50

// Pacer is the pacing started by Start. Stop it to give the runtime its settings back.
type Pacer struct {
	gogc    int    // GOGC as it was
	ceiling int64  // the memory limit as it was
	gaveUp  func() // called once if the pacer gives up

	mu       sync.Mutex
	stopped  bool
	limit    int64  // the memory limit set last
	cycle    uint64 // the collections completed when it was set
	samples  []metrics.Sample
	second   time.Time // the start of the second whose collections inSecond counts (backToBack)
	inSecond int
}

// Start turns the runtime's GOGC off and paces its collections by the memory limit, as the
// package comment says. It returns nil, and changes nothing, when GOGC is off already (GOGC=off:
// whoever set it wants no collection by heap growth). Should collections come back to back
// (backToBack in a second), the pacer stops, as Stop does, and calls gaveUp (if not nil) on the
// runtime's cleanup goroutine.
func Start(gaveUp func()) *Pacer {
	gogc := debug.SetGCPercent(-1)
	if gogc < 0 {
		return nil
	}
	p := &Pacer{gogc: gogc, ceiling: debug.SetMemoryLimit(-1), gaveUp: gaveUp}
	for _, name := range sampleNames {
		p.samples = append(p.samples, metrics.Sample{Name: name})
	}
	p.mu.Lock()
	p.setLimit()
	p.mu.Unlock()
	p.arm()
	return p
}

// Stop gives the runtime back the GOGC and memory limit it had before Start.
func (p *Pacer) Stop() {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.restore()
}

// restore gives the runtime its settings back, once. Called with mu held.
func (p *Pacer) restore() {
	if p.stopped {
		return
	}
	p.stopped = true
	debug.SetMemoryLimit(p.ceiling)
	debug.SetGCPercent(p.gogc)
}

// Limit is the memory limit the pacer set last, and the number of collections the runtime had
// completed when it did.
func (p *Pacer) Limit() (limit int64, cycle uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.limit, p.cycle
}

// sentinel is allocated to die in the next collection; its cleanup sets the limit again. Not a
// tiny object (under 16 bytes and pointer-free): those share a block with others and may never
// be found dead alone.
type sentinel struct {
	_ *int
	_ [2]uintptr
}

// arm allocates the next sentinel and forgets it: the next collection finds it unreachable.
func (p *Pacer) arm() {
	runtime.AddCleanup(new(sentinel), (*Pacer).collected, p)
}

// collected runs, on the runtime's cleanup goroutine, after each collection.
func (p *Pacer) collected() {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	if now := time.Now(); now.Sub(p.second) >= time.Second {
		p.second, p.inSecond = now, 0
	}
	p.inSecond++
	if p.inSecond >= backToBack {
		p.restore()
		p.mu.Unlock()
		if p.gaveUp != nil {
			p.gaveUp()
		}
		return
	}
	p.setLimit()
	p.arm()
	p.mu.Unlock()
}

// setLimit sets the memory limit for the next collection from what the last one left. Called with
// mu held.
func (p *Pacer) setLimit() {
	metrics.Read(p.samples)
	v := func(i int) int64 { return int64(min(p.samples[i].Value.Uint64(), math.MaxInt64)) }
	live, stacks, globals := v(iLive), v(iStacks), v(iGlobals)
	mapped := v(iTotal) - v(iReleased)
	free, objects := v(iFree), v(iObjects)
	p.cycle = p.samples[iCycles].Value.Uint64()
	// What GOGC would allow the heap (runtime/mgcpacer.go, heapGoalInternal): the live heap and
	// GOGC percent of what the collector scans, at least the minimum.
	goal := live + (live+stacks+globals)*int64(p.gogc)/100
	goal = max(goal, heapMinimum*int64(p.gogc)/100)
	// The runtime's goal under a memory limit (runtime/mgcpacer.go, memoryLimitHeapGoal) is
	// the limit less what it has mapped besides the heap's objects and free pages (stacks, the
	// collector's metadata, spans' unused tails), less a headroom of its own: 3 % of the rest,
	// at least 1 MiB. Without that headroom added back, a heap whose GOGC share was under 1 MiB
	// had its goal at the live heap, and the runtime collected back to back. Free pages are
	// not counted in: while they are more than the goal leaves room for, the runtime gives them
	// back to the kernel (its scavenger, to stay under the limit), as it would at the GOGC goal.
	nonHeap := max(mapped-free-objects, 0)
	limit := nonHeap + goal + max(goal*3/97, runtimeHeadroom)
	p.limit = min(limit, p.ceiling)
	debug.SetMemoryLimit(p.limit)
}
