package checks

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// recorder is a Reporter that remembers every call.
type recorder struct {
	mu    sync.Mutex
	calls []reported
}

type reported struct {
	name string
	ok   bool
	d    time.Duration
}

func (r *recorder) CheckResult(name string, ok bool, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, reported{name, ok, d})
}

func (r *recorder) count(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		if c.name == name {
			n++
		}
	}
	return n
}

// seqProbe returns the scripted results in order, then repeats the last one.
type seqProbe struct {
	mu  sync.Mutex
	seq string // '+' ok, '-' failure
	n   int
}

func (p *seqProbe) calls() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

func (p *seqProbe) Probe(context.Context) Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.seq[min(p.n, len(p.seq)-1)]
	p.n++
	return Result{OK: c == '+', Output: "result " + string(c)}
}

// startRunner runs r until the test ends and checks that Run returned nil.
func startRunner(t *testing.T, r *Runner) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
			for range r.Events() { // must be closed once Run has returned
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

func nextEvent(t *testing.T, r *Runner) Event {
	t.Helper()
	select {
	case ev := <-r.Events():
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
		return Event{}
	}
}

func noEvent(t *testing.T, r *Runner) {
	t.Helper()
	select {
	case ev := <-r.Events():
		t.Fatalf("unexpected event %+v", ev)
	default:
	}
}

func TestRunnerFallRiseOverInterval(t *testing.T) { synctest.Test(t, testRunnerFallRiseOverInterval) }

func testRunnerFallRiseOverInterval(t *testing.T) {
	rep := &recorder{}
	probe := &seqProbe{seq: "++--+--++"}
	r := NewRunner([]Spec{{Name: "stats", Interval: 2 * time.Second, Timeout: time.Second, Fall: 2, Rise: 2, Weight: -20, Probe: probe}},
		rep, slog.New(slog.DiscardHandler))
	startRunner(t, r)

	// want[i] is the event expected after result i (nil: none).
	type want struct{ up bool }
	wants := []*want{{true}, nil, nil, {false}, nil, nil, nil, nil, {true}}
	for i, w := range wants {
		expect(t, "result recorded", func() bool { return rep.count("stats") == i+1 })
		if w != nil {
			ev := eventNow(t, r)
			if ev.Name != "stats" || ev.Up != w.up {
				t.Fatalf("after result %d: event %+v, want stats up=%v", i, ev, w.up)
			}
			if ev.Result.OK != w.up || !ev.Result.At.Equal(time.Now()) {
				t.Errorf("event result %+v, want OK=%v At=%v", ev.Result, w.up, time.Now())
			}
		}
		synctest.Wait()
		noEvent(t, r)
		advance(2 * time.Second)
	}
}

func TestRunnerProbesAtOnceAndPendingBefore(t *testing.T) {
	synctest.Test(t, testRunnerProbesAtOnceAndPendingBefore)
}

func testRunnerProbesAtOnceAndPendingBefore(t *testing.T) {
	release := make(chan struct{})
	probe := probeFunc(func(ctx context.Context) Result {
		<-release
		return Result{OK: true}
	})
	r := NewRunner([]Spec{{Name: "slow", Interval: time.Minute, Timeout: time.Minute, Probe: probe}}, nil, nil)
	for _, st := range r.Status() {
		if !st.Pending || st.Up {
			t.Errorf("before Run: %s pending=%v up=%v, want pending and down", st.Name, st.Pending, st.Up)
		}
	}
	if up := r.Up(); len(up) != 0 {
		t.Errorf("Up() before results = %v, want empty: pending is not failing", up)
	}
	if p := r.Pending(); len(p) != 2 {
		t.Errorf("Pending() = %v, want haproxy and slow", p)
	}
	startRunner(t, r)
	close(release) // no clock advance: the first run happens at start
	ev := eventNow(t, r)
	if ev.Name != "slow" || !ev.Up {
		t.Fatalf("first event %+v, want slow up", ev)
	}
	st := r.Status()[1]
	if st.Pending || !st.Up || st.Interval != time.Minute || st.Fall != 1 || st.Rise != 1 || !st.Last.OK {
		t.Errorf("status after first result %+v", st)
	}
}

type probeFunc func(ctx context.Context) Result

func (f probeFunc) Probe(ctx context.Context) Result { return f(ctx) }

func TestRunnerTimeoutCancelsProbe(t *testing.T) { synctest.Test(t, testRunnerTimeoutCancelsProbe) }

func testRunnerTimeoutCancelsProbe(t *testing.T) {
	rep := &recorder{}
	causes := make(chan error, 1)
	probe := probeFunc(func(ctx context.Context) Result {
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return Result{Output: "gave up: " + context.Cause(ctx).Error()}
	})
	r := NewRunner([]Spec{{Name: "hang", Interval: 2 * time.Second, Timeout: 500 * time.Millisecond, Probe: probe}}, rep, nil)
	startRunner(t, r)
	advance(500 * time.Millisecond)
	if err := <-causes; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("probe context cause = %v, want a DeadlineExceeded", err)
	}
	ev := eventNow(t, r)
	if ev.Up || !strings.Contains(ev.Result.Output, "timeout") || ev.Result.Duration != 500*time.Millisecond {
		t.Errorf("event %+v, want down after a 500ms timeout", ev)
	}
}

func TestRunnerAbandonsProbeIgnoringContext(t *testing.T) {
	synctest.Test(t, testRunnerAbandonsProbeIgnoringContext)
}

func testRunnerAbandonsProbeIgnoringContext(t *testing.T) {
	rep := &recorder{}
	release := make(chan struct{})
	var mu sync.Mutex
	calls := 0
	probe := probeFunc(func(ctx context.Context) Result {
		mu.Lock()
		calls++
		first := calls == 1
		mu.Unlock()
		if first {
			<-release // ignores ctx on purpose
		}
		return Result{OK: true}
	})
	r := NewRunner([]Spec{{Name: "stuck", Interval: 10 * time.Second, Timeout: time.Second, Probe: probe}}, rep, nil)
	startRunner(t, r)

	advance(time.Second) // timeout: context cancelled, grace starts
	advance(probeGrace)
	ev := eventNow(t, r)
	if ev.Up || !strings.Contains(ev.Result.Output, "did not return") {
		t.Fatalf("event %+v, want failure for an abandoned probe", ev)
	}
	// Next interval: the stuck run is still going, so no second copy is started.
	advance(10*time.Second - time.Second - probeGrace)
	expect(t, "second result", func() bool { return rep.count("stuck") == 2 })
	mu.Lock()
	if calls != 1 {
		t.Errorf("probe called %d times while the first run was stuck, want 1", calls)
	}
	mu.Unlock()
	st := r.Status()[1]
	if st.Last.OK || !strings.Contains(st.Last.Output, "still running") {
		t.Errorf("second result %+v, want 'still running' failure", st.Last)
	}
	// Once it returns, probing resumes (from the next interval that finds it
	// returned; when exactly its goroutine finishes is up to the scheduler).
	close(release)
	for n := 3; !r.Status()[1].Last.OK; n++ {
		if n > 100 {
			t.Fatal("probing did not resume after the stuck probe returned")
		}
		advance(10 * time.Second)
		expect(t, "next result", func() bool { return rep.count("stuck") == n })
	}
	if ev := eventNow(t, r); !ev.Up {
		t.Errorf("event %+v, want up after the stuck probe returned", ev)
	}
}

func TestRunnerSlowProbeDoesNotBlockOthers(t *testing.T) {
	synctest.Test(t, testRunnerSlowProbeDoesNotBlockOthers)
}

func testRunnerSlowProbeDoesNotBlockOthers(t *testing.T) {
	rep := &recorder{}
	block := make(chan struct{})
	defer close(block)
	slow := probeFunc(func(ctx context.Context) Result { <-block; return Result{OK: true} })
	r := NewRunner([]Spec{
		{Name: "slow", Interval: time.Hour, Timeout: time.Hour, Probe: slow},
		{Name: "quick", Interval: time.Second, Probe: &seqProbe{seq: "+"}},
	}, rep, nil)
	startRunner(t, r)
	for i := 1; i <= 5; i++ {
		expect(t, "quick result", func() bool { return rep.count("quick") == i })
		// armed: slow's timeout + quick's interval timer
		advance(time.Second)
	}
	if n := rep.count("slow"); n != 0 {
		t.Errorf("slow reported %d results, want 0 while blocked", n)
	}
}

func TestRunnerReportsEveryResult(t *testing.T) { synctest.Test(t, testRunnerReportsEveryResult) }

func testRunnerReportsEveryResult(t *testing.T) {
	rep := &recorder{}
	r := NewRunner([]Spec{{Name: "c", Interval: time.Second, Fall: 3, Rise: 3, Probe: &seqProbe{seq: "+-+-"}}}, rep, nil)
	startRunner(t, r)
	for i := 1; i <= 4; i++ {
		expect(t, "result", func() bool { return rep.count("c") == i })
		advance(time.Second)
	}
	rep.mu.Lock()
	defer rep.mu.Unlock()
	var oks []bool
	for _, c := range rep.calls[:4] {
		oks = append(oks, c.ok)
	}
	if oks[0] != true || oks[1] != false || oks[2] != true || oks[3] != false {
		t.Errorf("reported %v, want every raw result true,false,true,false", oks)
	}
	// Only the first result changed the tracked status (fall 3 never reached).
	if ev := eventNow(t, r); !ev.Up {
		t.Errorf("first event %+v", ev)
	}
	synctest.Wait()
	noEvent(t, r)
}

func TestLivenessIsImmediate(t *testing.T) {
	rep := &recorder{}
	r := NewRunner(nil, rep, nil)
	r.Liveness().Set(true, "started pid 42") // before Run: queued, not lost
	startRunner(t, r)
	if ev := nextEvent(t, r); ev.Name != "haproxy" || !ev.Up || ev.Result.Output != "started pid 42" {
		t.Fatalf("event %+v, want haproxy up", ev)
	}

	var worst time.Duration
	for i := range 100 {
		up := i%2 == 1 // i=0: down (it is up already), i=99: up
		start := time.Now()
		r.Liveness().Set(up, "flip")
		ev := nextEvent(t, r)
		worst = max(worst, time.Since(start))
		if ev.Name != "haproxy" || ev.Up != up {
			t.Fatalf("event %+v, want haproxy up=%v", ev, up)
		}
	}
	t.Logf("Liveness.Set -> Event: worst of 100 = %v", worst)
	r.Liveness().Set(false, "exited with status 137")
	if ev := nextEvent(t, r); ev.Up || ev.Result.Output != "exited with status 137" {
		t.Errorf("event %+v, want haproxy down with the exit reason", ev)
	}
	if up, known := r.Up()["haproxy"]; !known || up {
		t.Errorf("Up()[haproxy] = %v (known %v) after Set(false), want known and false", up, known)
	}
	if got := rep.count("haproxy"); got != 102 {
		t.Errorf("reporter got %d haproxy results, want 102", got)
	}
}

func TestLivenessNeverBlocksWithoutReader(t *testing.T) {
	r := NewRunner(nil, nil, nil)
	startRunner(t, r)
	const n = 1000
	done := make(chan struct{})
	go func() {
		for i := range n {
			r.Liveness().Set(i%2 == 0, "x")
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Set blocked with nobody reading events")
	}
	for i := range n {
		if ev := nextEvent(t, r); ev.Up != (i%2 == 0) {
			t.Fatalf("event %d up=%v, out of order", i, ev.Up)
		}
	}
}

// watchProbe signals a change on demand, like a netlink link subscription.
type watchProbe struct {
	seqProbe
	changed chan func()
}

func (w *watchProbe) Watch(ctx context.Context, changed func()) error {
	w.changed <- changed
	<-ctx.Done()
	return nil
}

func TestRunnerWatcherTriggersProbe(t *testing.T) { synctest.Test(t, testRunnerWatcherTriggersProbe) }

func testRunnerWatcherTriggersProbe(t *testing.T) {
	rep := &recorder{}
	p := &watchProbe{seqProbe: seqProbe{seq: "+-"}, changed: make(chan func(), 1)}
	r := NewRunner([]Spec{{Name: "link", Interval: time.Hour, Probe: p}}, rep, nil)
	startRunner(t, r)
	changed := <-p.changed
	if ev := eventNow(t, r); !ev.Up {
		t.Fatalf("first event %+v", ev)
	}
	synctest.Wait()
	changed() // no clock advance
	if ev := eventNow(t, r); ev.Up {
		t.Fatalf("after change: event %+v, want down", ev)
	}
	expect(t, "second result reported", func() bool { return rep.count("link") == 2 })
}

func TestRunnerPanickingProbeFails(t *testing.T) {
	r := NewRunner([]Spec{{Name: "bad", Interval: time.Hour, Probe: probeFunc(func(context.Context) Result { panic("boom") })}}, nil, nil)
	startRunner(t, r)
	if ev := nextEvent(t, r); ev.Up || !strings.Contains(ev.Result.Output, "boom") {
		t.Errorf("event %+v, want failure naming the panic", ev)
	}
}

func TestNewRunnerRejectsBadSpecs(t *testing.T) {
	ok := &seqProbe{seq: "+"}
	tests := []struct {
		name  string
		specs []Spec
		want  string
	}{
		{"empty name", []Spec{{Probe: ok}}, "empty name"},
		{"no probe", []Spec{{Name: "a"}}, "no probe"},
		{"duplicate", []Spec{{Name: "a", Probe: ok}, {Name: "a", Probe: ok}}, "duplicate"},
		{"reserved", []Spec{{Name: "haproxy", Probe: ok}}, "reserved"},
		{"negative interval", []Spec{{Name: "a", Interval: -1, Probe: ok}}, "negative"},
		{"weight", []Spec{{Name: "a", Weight: -255, Probe: ok}}, "outside"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := NewRunner(tt.specs, nil, nil).Run(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestNewRunnerDefaultsAndHAProxyWeight(t *testing.T) {
	r := NewRunner([]Spec{{Name: "haproxy", Weight: -20}, {Name: "a", Probe: &seqProbe{seq: "+"}}}, nil, nil)
	st := r.Status()
	if len(st) != 2 || st[0].Name != "haproxy" || st[0].Weight != -20 || st[0].Interval != 0 {
		t.Fatalf("status %+v, want haproxy (weight -20, event driven) then a", st)
	}
	if a := st[1]; a.Interval != DefaultInterval || a.Timeout != DefaultTimeout || a.Fall != 1 || a.Rise != 1 {
		t.Errorf("defaults %+v", a)
	}
}

func TestRunTwice(t *testing.T) {
	r := NewRunner(nil, nil, nil)
	startRunner(t, r)
	waitFor(t, "started", r.started.Load)
	if err := r.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}
}

// TestWeightsFollowKeepalived: weights are -253..253, keepalived's rule, here as in the
// configuration (the runner used to accept -254..254).
func TestWeightsFollowKeepalived(t *testing.T) {
	for _, tt := range []struct {
		weight int
		ok     bool
	}{{-253, true}, {253, true}, {-254, false}, {254, false}} {
		_, err := normalize(Spec{Name: "a", Probe: &seqProbe{seq: "+"}, Weight: tt.weight})
		if (err == nil) != tt.ok {
			t.Errorf("weight %d: err = %v, want ok %v", tt.weight, err, tt.ok)
		}
	}
}

// TestStartGateKeepsChecksPending: before the gate opens (HAProxy not up yet) a probe does not
// run, so "connection refused" while HAProxy boots is no failure; the check stays pending and
// lowers no priority.
func TestStartGateKeepsChecksPending(t *testing.T) { synctest.Test(t, testStartGateKeepsChecksPending) }

func testStartGateKeepsChecksPending(t *testing.T) {
	gate := make(chan struct{})
	var runs atomic.Int32
	probe := probeFunc(func(ctx context.Context) Result { runs.Add(1); return Result{OK: true} })
	r := NewRunner([]Spec{{Name: "stats", Interval: time.Minute, Probe: probe}}, nil, nil, WithStartGate(gate))
	startRunner(t, r)
	synctest.Wait()
	noEvent(t, r)
	if n := runs.Load(); n != 0 {
		t.Fatalf("probe ran %d times before the gate opened", n)
	}
	if prio, _, _ := EffectivePriority(110, map[string]int{"stats": -20}, r.Up()); prio != 110 {
		t.Errorf("priority %d while pending, want 110", prio)
	}
	close(gate)
	if ev := eventNow(t, r); ev.Name != "stats" || !ev.Up {
		t.Fatalf("first event %+v, want stats up", ev)
	}
	if p := r.Pending(); len(p) != 1 || p[0] != "haproxy" {
		t.Errorf("Pending() = %v, want only haproxy (no event from the supervisor yet)", p)
	}
}

// TestInheritCarriesTheTrackedState: a runner that replaces another (a reload) starts from the
// old one's verdicts, by name, and counts rise and fall on from there with its own settings: a
// check down in the old runner stays down through its first successes in the new one until
// rise; a check the old runner did not have, or had pending, is pending.
func TestInheritCarriesTheTrackedState(t *testing.T) {
	synctest.Test(t, testInheritCarriesTheTrackedState)
}

func testInheritCarriesTheTrackedState(t *testing.T) {
	oldProbe := &seqProbe{seq: "-"}
	old := NewRunner([]Spec{
		{Name: "web", Interval: time.Second, Timeout: time.Second, Weight: -10, Probe: oldProbe},
		{Name: "never", Interval: time.Minute, Timeout: time.Minute, Probe: probeFunc(func(ctx context.Context) Result { <-ctx.Done(); return Result{} })},
	}, nil, nil)
	old.Liveness().Set(false, "exited with status 1")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- old.Run(ctx) }()
	expect(t, "web failed in the old runner", func() bool { up, ok := old.Up()["web"]; return ok && !up })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	newProbe := &seqProbe{seq: "++++"}
	next := NewRunner([]Spec{
		{Name: "web", Interval: time.Second, Timeout: time.Second, Rise: 3, Weight: -10, Probe: newProbe},
		{Name: "never", Interval: time.Minute, Timeout: time.Minute, Probe: probeFunc(func(ctx context.Context) Result { <-ctx.Done(); return Result{} })},
		{Name: "added", Interval: time.Minute, Timeout: time.Minute, Probe: probeFunc(func(ctx context.Context) Result { <-ctx.Done(); return Result{} })},
	}, nil, nil)
	next.Inherit(old)
	if got, want := next.Up(), map[string]bool{"haproxy": false, "web": false}; !maps.Equal(got, want) {
		t.Fatalf("inherited Up() = %v, want %v (pending and new checks absent)", got, want)
	}
	startRunner(t, next)
	for i := 1; i <= 3; i++ {
		expect(t, "a probe in the new runner", func() bool { return newProbe.calls() == i })
		synctest.Wait()
		if up, known := next.Up()["web"]; !known || up != (i == 3) {
			t.Fatalf("after %d successes in the new runner (rise 3): web up=%v known=%v", i, up, known)
		}
		advance(time.Second)
	}
}
