package gcpace

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"
)

// restore puts GOGC and the memory limit back as they were for the next test.
func restore(t *testing.T) {
	gogc := debug.SetGCPercent(100)
	debug.SetGCPercent(gogc)
	limit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(gogc)
		debug.SetMemoryLimit(limit)
	})
}

var sink [][]byte

// cycles is the number of collections the runtime has completed.
func cycles() uint64 {
	s := []metrics.Sample{{Name: sampleNames[iCycles]}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// waitPaced waits until the pacer has set the limit after collection n or a later one.
func waitPaced(t *testing.T, p *Pacer, n uint64, wait time.Duration) (limit int64, ok bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		limit, cycle := p.Limit()
		if cycle >= n {
			return limit, true
		}
		if time.Now().After(deadline) {
			return limit, false
		}
		time.Sleep(time.Millisecond)
	}
}

// collect runs a collection and waits for the pacer to follow it. The sentinel the pacer
// allocated after the collection before may have been allocated during this one's marking,
// which keeps it: then the next collection is the one it dies in.
func collect(t *testing.T, p *Pacer) int64 {
	t.Helper()
	for range 10 {
		runtime.GC()
		if limit, ok := waitPaced(t, p, cycles(), time.Second); ok {
			return limit
		}
	}
	t.Fatal("the pacer followed none of 10 collections")
	return 0
}

// The pacer turns GOGC off (which is what stops the forced collection every two minutes), and
// the memory limit follows the live heap from one collection to the next: up when it grows, down
// when it shrinks, never above the limit the process had.
func TestLimitFollowsTheLiveHeap(t *testing.T) {
	restore(t)
	debug.SetGCPercent(50)
	debug.SetMemoryLimit(math.MaxInt64)
	runtime.GC()

	p := Start(nil)
	if p == nil {
		t.Fatal("Start returned nil with GOGC=50")
	}
	defer p.Stop()
	if got := debug.SetGCPercent(-1); got != -1 {
		t.Fatalf("GOGC is %d while paced, want off (-1)", got)
	}
	small, _ := p.Limit()
	if small <= 0 || small >= 64<<20 {
		t.Fatalf("limit %d with a small heap, want between 0 and 64 MiB", small)
	}

	// 64 MiB kept live: after the next collection the limit is above it, with GOGC's share.
	for range 64 {
		sink = append(sink, make([]byte, 1<<20))
	}
	big := collect(t, p)
	if want := int64(64<<20) * 3 / 2; big < want {
		t.Errorf("limit %d MiB with 64 MiB live at GOGC=50, want at least %d MiB", big>>20, want>>20)
	}

	// Let go of it: the limit comes down with the next collection.
	sink = nil
	after := collect(t, p)
	if after >= big/2 {
		t.Errorf("limit %d MiB once the 64 MiB died, want well under %d MiB", after>>20, big>>20)
	}

	// Garbage alone starts collections (the memory limit's trigger, as GOGC's would): the
	// pacer follows them without a runtime.GC.
	before := cycles()
	for range 256 {
		sink = [][]byte{make([]byte, 1<<20)}
	}
	sink = nil
	if _, ok := waitPaced(t, p, before+1, 10*time.Second); !ok {
		t.Error("the pacer followed no collection while 256 MiB of garbage was allocated")
	}
}

// The limit the process started with (GOMEMLIMIT) caps the pacer's.
func TestCeiling(t *testing.T) {
	restore(t)
	debug.SetGCPercent(100)
	debug.SetMemoryLimit(48 << 20)
	p := Start(nil)
	defer p.Stop()
	for range 64 {
		sink = append(sink, make([]byte, 1<<20))
	}
	defer func() { sink = nil }()
	if limit := collect(t, p); limit != 48<<20 {
		t.Errorf("limit %d with 64 MiB live and GOMEMLIMIT=48MiB, want the 48 MiB ceiling", limit)
	}
}

// Stop gives the runtime its settings back, and a collection after it changes nothing.
func TestStopRestores(t *testing.T) {
	restore(t)
	debug.SetGCPercent(50)
	debug.SetMemoryLimit(64 << 20)
	p := Start(nil)
	p.Stop()
	p.Stop()      // twice is harmless
	p.collected() // as the cleanup of a collection after Stop: it changes nothing
	if got := debug.SetGCPercent(50); got != 50 {
		t.Errorf("GOGC %d after Stop, want 50", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 64<<20 {
		t.Errorf("memory limit %d after Stop, want 64 MiB", got)
	}
}

// With GOGC off already, Start leaves the runtime alone.
func TestGOGCOff(t *testing.T) {
	restore(t)
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(32 << 20)
	if p := Start(nil); p != nil {
		p.Stop()
		t.Fatal("Start paced with GOGC off")
	}
	if got := debug.SetMemoryLimit(-1); got != 32<<20 {
		t.Errorf("memory limit %d, want 32 MiB untouched", got)
	}
	var nilPacer *Pacer
	nilPacer.Stop() // what a caller of Start may do with its nil
}

// A live heap between 1.3 and 2 MiB at GOGC=50 left the runtime less than its own minimum
// headroom under the limit (1 MiB): its goal fell to the live heap, and it collected back to
// back, the whole CPU (found at 100 instances in bench-scale, 2026-12-05). Garbage allocated
// now costs about one collection per GOGC's headroom, as it would with GOGC.
func TestNoBackToBackCollections(t *testing.T) {
	restore(t)
	debug.SetGCPercent(50)
	debug.SetMemoryLimit(math.MaxInt64)
	for live := 1 << 20; live <= 3<<20; live += 256 << 10 {
		sink = [][]byte{make([]byte, live)}
		runtime.GC()
		p := Start(nil)
		collect(t, p)
		before := cycles()
		for range 20 * 16 { // 20 MiB of garbage, 64 KiB at a time
			_ = append([]byte(nil), make([]byte, 64<<10)...)
		}
		n := cycles() - before
		limit, _ := p.Limit()
		p.Stop()
		t.Logf("%.2f MiB live: %d collections for 20 MiB of garbage, limit %.2f MiB", float64(live)/(1<<20), n, float64(limit)/(1<<20))
		// GOGC=50 with at least 0.65 MiB of headroom: about 30 collections at most.
		if n > 60 {
			t.Errorf("%.2f MiB live: %d collections for 20 MiB of garbage, want about one per half the live heap", float64(live)/(1<<20), n)
		}
	}
	sink = nil
}

// Collections back to back, whatever the cause, make the pacer give the runtime its own pacing
// back, and say so.
func TestGivesUpOnBackToBackCollections(t *testing.T) {
	restore(t)
	debug.SetGCPercent(50)
	debug.SetMemoryLimit(64 << 20)
	// Atomic: a real collection's cleanup may call it too.
	var gaveUp atomic.Int32
	p := Start(func() { gaveUp.Add(1) })
	for range backToBack - 1 {
		p.collected() // as after as many collections within the second
	}
	if gaveUp.Load() != 0 || debug.SetGCPercent(-1) != -1 {
		t.Fatalf("gave up after %d collections, want %d", backToBack-1, backToBack)
	}
	p.collected()
	p.collected() // after it has given up: nothing more
	if n := gaveUp.Load(); n != 1 {
		t.Errorf("gaveUp called %d times, want once", n)
	}
	if got := debug.SetGCPercent(50); got != 50 {
		t.Errorf("GOGC %d after giving up, want 50 back", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 64<<20 {
		t.Errorf("memory limit %d after giving up, want 64 MiB back", got)
	}
}
