package instance

import "sync"

// Loop runs the turns of many instances, one after the other, on one goroutine: an instance
// asks for a turn (schedule) when its timer fires, an advert or a control event waits for it,
// or its context ends, and the loop runs it when it comes to it. keepalived runs every instance
// on one thread in the same way.
//
// Why not a goroutine per instance, waiting in a select: a goroutine keeps the stack its
// deepest turn grew (logging, netlink, a send) until a collection shrinks it, and the frames it
// waits in are deep enough that it never shrinks below 8 KiB: 2.8 MB of stacks at 255
// instances, a fifth of hapair's resident memory. Here only the loop's one stack grows.
// With GOMAXPROCS=1 nothing ran in parallel anyway; what is given up is that one instance's
// slow turn (a netlink call, a blocked log write) delays the others' turns, as in keepalived.
//
// A turn asked for by a timer while the loop is idle runs at once on the goroutine that
// delivered the expiry (turnNow), still one turn at a time.
//
// The goroutine runs while an instance is running on the loop (between Start and the end of
// its run) and ends with the last one.
type Loop struct {
	mu      sync.Mutex
	ready   []*Instance // instances that asked for a turn, in order; each at most once
	spare   []*Instance // the batch the goroutine ran last, reused
	running int         // instances started and not finished
	serving bool        // the goroutine runs
	busy    bool        // a turn runs, on the goroutine or inline (turnNow)
	batches int         // batches of turns the goroutine ran (tests)
	wake    chan struct{}

	// steady is the sender its MASTERs share (steady.go). Members join in turns only, but may
	// leave outside one (receiveInline): under mu.
	steady *steadyGroup
}

// steadyGroup is the loop's group of MASTERs sharing a sender; nil if none.
func (l *Loop) steadyGroup() *steadyGroup {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.steady
}

func (l *Loop) setSteadyGroup(g *steadyGroup) {
	l.mu.Lock()
	l.steady = g
	l.mu.Unlock()
}

// dropSteadyGroup forgets g, its last member gone, unless another group took its place.
func (l *Loop) dropSteadyGroup(g *steadyGroup) {
	l.mu.Lock()
	if l.steady == g {
		l.steady = nil
	}
	l.mu.Unlock()
}

// NewLoop returns a loop with no instance on it.
func NewLoop() *Loop { return &Loop{wake: make(chan struct{}, 1)} }

// add counts a starting instance and starts the goroutine if it is not running.
func (l *Loop) add() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.running++
	if !l.serving {
		l.serving = true
		go l.serve()
	}
}

// remove counts an instance whose run has ended; it asks for no more turns (finished).
func (l *Loop) remove() {
	l.mu.Lock()
	l.running--
	l.mu.Unlock()
	l.signal()
}

// schedule asks for a turn of in. It never blocks and does not allocate once the ready list has
// grown to the number of instances: the timers, the transport's reader and the control senders
// call it.
func (l *Loop) schedule(in *Instance) {
	l.mu.Lock()
	if in.queued || !in.started.Load() || in.finished.Load() {
		l.mu.Unlock()
		return
	}
	in.queued = true
	l.ready = append(l.ready, in)
	first := len(l.ready) == 1
	l.mu.Unlock()
	if first {
		l.signal()
	}
}

// turnNow runs in's turn on the calling goroutine if the loop is idle (no turn running, none
// asked for), else asks for one as schedule does. The instances' timers call it: a MASTER's
// every advert is a timer's expiry, and its turn run where the expiry is delivered spares a
// goroutine switch (waking the loop's goroutine, and parking it again) per advert. Turns still
// run one at a time and in the order asked for: inline only when no other waits.
func (l *Loop) turnNow(in *Instance) {
	l.mu.Lock()
	if l.busy || len(l.ready) > 0 || in.queued || !in.started.Load() || in.finished.Load() {
		l.mu.Unlock()
		l.schedule(in)
		return
	}
	l.busy = true
	l.mu.Unlock()
	in.runTurn()
	l.mu.Lock()
	l.busy = false
	// Turns asked for meanwhile, or the last instance's end, are the goroutine's to see.
	wake := len(l.ready) > 0 || l.running == 0
	l.mu.Unlock()
	if wake {
		l.signal()
	}
}

// alone says whether one instance runs on the loop: only then is a steady MASTER's own sender
// thread cheaper than the loop (see delegate).
func (l *Loop) alone() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.running == 1
}

// count is the number of instances running on the loop.
func (l *Loop) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.running
}

func (l *Loop) signal() {
	select {
	case l.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// serve runs the turns asked for, in batches, until no instance runs on the loop.
func (l *Loop) serve() {
	for {
		l.mu.Lock()
		if len(l.ready) == 0 || l.busy { // busy: an inline turn, which signals when it ends
			if l.running == 0 && !l.busy {
				l.serving = false
				l.mu.Unlock()
				return
			}
			l.mu.Unlock()
			<-l.wake
			continue
		}
		batch := l.ready
		l.ready = l.spare[:0]
		for _, in := range batch {
			in.queued = false // an event during its turn asks for another
		}
		l.busy = true
		l.batches++
		l.mu.Unlock()
		for i, in := range batch {
			in.runTurn()
			batch[i] = nil
		}
		l.mu.Lock()
		l.busy = false
		l.spare = batch[:0]
		l.mu.Unlock()
	}
}
