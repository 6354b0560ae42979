package vrrp

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A discrete-event simulation of N routers running Machine on a fake network with per-link
// loss, delay and (possibly one-way) partitions, over fake time. Nothing sleeps: the loop
// jumps from one event (a packet arriving, a Machine deadline, a scripted change) to the next.

type simLink struct {
	cut      bool
	loss     float64       // probability that one advert is lost
	maxDelay time.Duration // each advert is delayed uniformly in [0, maxDelay]
}

type simTransition struct {
	at       time.Time
	from, to State
	reason   string
	since    time.Time
}

type simRouter struct {
	id    int
	cfg   Config
	m     *Machine
	alive bool  // false while crashed: it neither sends, receives nor ticks
	state State // as told by its Transition actions
	vips  bool  // as told by its Attach/Detach actions
	// preemptFrom is the last Start or fault clearing: its preempt window opens PreemptDelay later.
	preemptFrom time.Time
	history     []simTransition
}

type simEvent struct {
	at       time.Time
	seq      uint64
	from, to int
	prio     uint8
	fn       func() // a scripted change when set, else an advert delivery
	what     string
}

type simQueue []*simEvent

func (q simQueue) Len() int { return len(q) }
func (q simQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q simQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *simQueue) Push(x any)   { *q = append(*q, x.(*simEvent)) }
func (q *simQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

type simNet struct {
	rng     *rand.Rand
	now     time.Time
	routers []*simRouter
	links   [][]simLink // [from][to]
	events  simQueue
	seq     uint64
	trace   []string
	errs    []string
	steps   int

	sent, lost, delivered int
}

func newSimNet(rng *rand.Rand, cfgs []Config) (*simNet, error) {
	n := &simNet{rng: rng, now: t0}
	for i, cfg := range cfgs {
		m, err := NewMachine(cfg)
		if err != nil {
			return nil, err
		}
		n.routers = append(n.routers, &simRouter{id: i, cfg: cfg, m: m, alive: true})
	}
	n.links = make([][]simLink, len(cfgs))
	for i := range n.links {
		n.links[i] = make([]simLink, len(cfgs))
	}
	return n, nil
}

func (n *simNet) logf(format string, args ...any) {
	n.trace = append(n.trace, fmt.Sprintf("%9.4fs ", n.now.Sub(t0).Seconds())+fmt.Sprintf(format, args...))
}

func (n *simNet) errorf(format string, args ...any) {
	msg := fmt.Sprintf("%9.4fs ", n.now.Sub(t0).Seconds()) + fmt.Sprintf(format, args...)
	n.errs = append(n.errs, msg)
	n.trace = append(n.trace, "ERROR "+msg)
}

// at schedules a scripted change.
func (n *simNet) at(t time.Time, what string, fn func()) {
	n.seq++
	heap.Push(&n.events, &simEvent{at: t, seq: n.seq, fn: fn, what: what})
}

// apply carries out a router's actions the way vrrp/instance does, checking the action contract.
func (n *simNet) apply(r *simRouter, acts []Action) {
	for i, a := range acts {
		switch a.Kind {
		case ActTransition:
			if i != 0 {
				n.errorf("r%d: %v is action %d, want transitions first", r.id, a, i)
			}
			if a.From != r.state {
				n.errorf("r%d: %v but it was %v", r.id, a, r.state)
			}
			if a.To == Master && (a.Since.IsZero() || a.Since.After(n.now)) {
				n.errorf("r%d: %v with Since outside (0, now]", r.id, a)
			}
			r.state = a.To
			r.history = append(r.history, simTransition{n.now, a.From, a.To, a.Reason, a.Since})
			n.logf("r%d %v prio %d", r.id, a, r.m.Priority())
		case ActSendAdvert:
			n.broadcast(r, a.Priority)
		case ActAttachVIPs:
			if r.vips {
				n.errorf("r%d: attach while attached", r.id)
			}
			r.vips = true
		case ActDetachVIPs:
			if !r.vips {
				n.errorf("r%d: detach while detached", r.id)
			}
			r.vips = false
		case ActSendGARP:
			if !r.vips {
				n.errorf("r%d: GARP without VIPs", r.id)
			}
		}
	}
	if r.state != r.m.State() || r.vips != (r.state == Master) {
		n.errorf("r%d: told state %v vips %v, machine says %v", r.id, r.state, r.vips, r.m.State())
	}
}

func (n *simNet) broadcast(from *simRouter, prio uint8) {
	for _, to := range n.routers {
		if to == from {
			continue
		}
		n.sent++
		l := n.links[from.id][to.id]
		if l.cut || n.rng.Float64() < l.loss {
			n.lost++
			continue
		}
		var d time.Duration
		if l.maxDelay > 0 {
			d = time.Duration(n.rng.Int64N(int64(l.maxDelay) + 1))
		}
		n.seq++
		heap.Push(&n.events, &simEvent{at: n.now.Add(d), seq: n.seq, from: from.id, to: to.id, prio: prio})
	}
}

// run processes events and deadlines up to and including until.
func (n *simNet) run(until time.Time) {
	for {
		n.steps++
		if n.steps > 5_000_000 {
			n.errorf("no progress: more than 5M steps")
			return
		}
		timer, timerAt := (*simRouter)(nil), time.Time{}
		for _, r := range n.routers {
			if d := r.m.NextDeadline(); r.alive && !d.IsZero() && (timer == nil || d.Before(timerAt)) {
				timer, timerAt = r, d
			}
		}
		if len(n.events) > 0 && (timer == nil || !timerAt.Before(n.events[0].at)) {
			if n.events[0].at.After(until) {
				break
			}
			e := heap.Pop(&n.events).(*simEvent)
			n.now = e.at
			if e.fn != nil {
				n.logf("%s", e.what)
				e.fn()
				continue
			}
			to := n.routers[e.to]
			if !to.alive {
				continue
			}
			n.delivered++
			from := n.routers[e.from]
			a := Advert{Version: from.cfg.Version, VRID: from.cfg.VRID, Priority: e.prio, Interval: from.cfg.AdvertInterval}
			n.apply(to, to.m.Receive(n.now, from.cfg.PrimaryAddr, a))
			continue
		}
		if timer == nil || timerAt.After(until) {
			break
		}
		if timerAt.After(n.now) {
			n.now = timerAt
		}
		n.apply(timer, timer.m.Tick(n.now))
	}
	n.now = until
}

// Router operations, as the instance runner would call them.

func (n *simNet) start(r *simRouter) {
	r.preemptFrom = n.now
	n.apply(r, r.m.Start(n.now))
}

func (n *simNet) crash(r *simRouter) {
	r.alive = false
}

// restart brings a crashed router back with a fresh Machine, its VIPs gone with the old process.
func (n *simNet) restart(r *simRouter) {
	prio, drained := r.m.tracked, r.m.drained // the checks' priority, and a drain kept on disk
	r.m, _ = NewMachine(r.cfg)
	r.m.SetPriority(n.now, prio)
	r.m.SetDrained(n.now, drained)
	r.alive, r.state, r.vips = true, Init, false
	n.start(r)
}

func (n *simNet) setFault(r *simRouter, fault bool) {
	acts := r.m.SetFault(n.now, fault, "sim")
	if !fault && len(acts) > 0 {
		r.preemptFrom = n.now
	}
	n.apply(r, acts)
}

func (n *simNet) masters() []*simRouter {
	var out []*simRouter
	for _, r := range n.routers {
		if r.alive && r.state == Master {
			out = append(out, r)
		}
	}
	return out
}

func (n *simNet) report() string {
	var b strings.Builder
	for _, r := range n.routers {
		fmt.Fprintf(&b, "  r%d %v v%d prio %d (base %d) interval %v preempt %v delay %v fast %v: %v\n",
			r.id, r.cfg.PrimaryAddr, r.cfg.Version, r.m.Priority(), r.cfg.Priority, r.cfg.AdvertInterval,
			r.cfg.Preempt, r.cfg.PreemptDelay, r.cfg.FastFailover, r.state)
	}
	for _, e := range n.errs {
		b.WriteString("  ERROR " + e + "\n")
	}
	for _, l := range n.trace {
		b.WriteString("    " + l + "\n")
	}
	return b.String()
}

// ranks says whether a outranks b: the order every router agrees on (priority, then address).
func ranks(a, b *simRouter) bool {
	if pa, pb := a.m.Priority(), b.m.Priority(); pa != pb {
		return pa > pb
	}
	return a.cfg.PrimaryAddr.Compare(b.cfg.PrimaryAddr) > 0
}

// --- scripted scenarios: the seed's pair (advert_int 1, priorities 110/100, weight -20) ---

func seedPair(t *testing.T, version int, fast bool) *simNet {
	t.Helper()
	base := Config{Name: "VI_LOGS", Version: version, VRID: 51, AdvertInterval: time.Second,
		Preempt: true, FastFailover: fast}
	a, b := base, base
	a.Priority, a.PrimaryAddr = 110, netip.MustParseAddr("10.0.0.11")
	b.Priority, b.PrimaryAddr = 100, netip.MustParseAddr("10.0.0.12")
	n, err := newSimNet(rand.New(rand.NewPCG(1, 2)), []Config{a, b})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n.links {
		for j := range n.links[i] {
			n.links[i][j].maxDelay = time.Millisecond
		}
	}
	n.start(n.routers[0])
	n.start(n.routers[1])
	n.run(t0.Add(10 * time.Second))
	if ms := n.masters(); len(ms) != 1 || ms[0] != n.routers[0] || len(n.errs) > 0 {
		t.Fatalf("seed pair did not settle on r0:\n%s", n.report())
	}
	return n
}

// lastTakeover returns r's last transition to Master and the takeover time it measures.
func lastTakeover(t *testing.T, n *simNet, r *simRouter) (simTransition, time.Duration) {
	t.Helper()
	for i := len(r.history) - 1; i >= 0; i-- {
		if h := r.history[i]; h.to == Master {
			return h, h.at.Sub(h.since)
		}
	}
	t.Fatalf("r%d never became Master:\n%s", r.id, n.report())
	return simTransition{}, 0
}

func TestSim_SeedPairMasterPriorityDropFailsOverAfterSkewTime(t *testing.T) {
	// HAProxy killed on the Master: weight -20 takes it from 110 to 90, below the Backup's 100.
	for _, tc := range []struct {
		version int
		fast    bool
		max     time.Duration // takeover measured from the Master's lower-priority advert
	}{
		{2, true, 609375*time.Microsecond + time.Millisecond}, // Skew_Time + delay
		{3, true, 600*time.Millisecond + time.Millisecond},
		{2, false, 3609375*time.Microsecond + time.Millisecond}, // RFC: Master_Down_Interval
		{3, false, 3600*time.Millisecond + time.Millisecond},
	} {
		t.Run(fmt.Sprintf("v%d fast=%v", tc.version, tc.fast), func(t *testing.T) {
			n := seedPair(t, tc.version, tc.fast)
			master, backup := n.routers[0], n.routers[1]
			dropAt := n.now.Add(300 * time.Millisecond)
			n.at(dropAt, "r0 haproxy down: priority 90", func() { n.apply(master, master.m.SetPriority(n.now, 90)) })
			n.run(dropAt.Add(10 * time.Second))
			if ms := n.masters(); len(ms) != 1 || ms[0] != backup || len(n.errs) > 0 {
				t.Fatalf("want r1 sole Master:\n%s", n.report())
			}
			h, took := lastTakeover(t, n, backup)
			if h.since.Before(dropAt) || took > tc.max || h.reason != "preempt" {
				t.Fatalf("takeover %v (%q, since %v after the drop), want <= %v since the drop:\n%s",
					took, h.reason, h.since.Sub(dropAt), tc.max, n.report())
			}
			if got := h.at.Sub(dropAt); got > tc.max {
				t.Fatalf("VIP moved %v after the drop, want <= %v", got, tc.max)
			}
		})
	}
}

func TestSim_SeedPairGracefulStopFailsOverAfterSkewTime(t *testing.T) {
	for _, version := range []int{2, 3} {
		n := seedPair(t, version, true)
		master, backup := n.routers[0], n.routers[1]
		stopAt := n.now.Add(300 * time.Millisecond)
		n.at(stopAt, "r0 stop", func() { n.apply(master, master.m.Shutdown(n.now)) })
		n.run(stopAt.Add(10 * time.Second))
		h, took := lastTakeover(t, n, backup)
		if h.reason != "priority 0 received" || took != backup.m.SkewTime() || h.at.Sub(stopAt) > backup.m.SkewTime()+time.Millisecond {
			t.Fatalf("v%d: takeover %q after %v (%v since the stop), want Skew_Time %v:\n%s",
				version, h.reason, took, h.at.Sub(stopAt), backup.m.SkewTime(), n.report())
		}
	}
}

func TestSim_SeedPairMasterCrashFailsOverAfterMasterDownInterval(t *testing.T) {
	for _, version := range []int{2, 3} {
		n := seedPair(t, version, true)
		master, backup := n.routers[0], n.routers[1]
		crashAt := n.now.Add(300 * time.Millisecond)
		n.at(crashAt, "r0 crash", func() { n.crash(master) })
		n.run(crashAt.Add(10 * time.Second))
		h, took := lastTakeover(t, n, backup)
		if h.reason != "master down" || took != backup.m.MasterDownInterval() {
			t.Fatalf("v%d: takeover %q after %v, want master down after exactly %v:\n%s",
				version, h.reason, took, backup.m.MasterDownInterval(), n.report())
		}
		// The reference is the last advert that arrived before the crash.
		if h.since.After(crashAt) || crashAt.Sub(h.since) > time.Second+time.Millisecond {
			t.Fatalf("v%d: Since %v is not the last advert before the crash at %v", version, h.since, crashAt)
		}
	}
}

func TestSim_SeedPairPriorityRestoredPreemptsBack(t *testing.T) {
	n := seedPair(t, 2, true)
	a, b := n.routers[0], n.routers[1]
	dropAt := n.now.Add(100 * time.Millisecond)
	n.at(dropAt, "r0 priority 90", func() { n.apply(a, a.m.SetPriority(n.now, 90)) })
	backAt := n.now.Add(5 * time.Second)
	n.at(backAt, "r0 priority 110", func() { n.apply(a, a.m.SetPriority(n.now, 110)) })
	n.run(backAt)
	if ms := n.masters(); len(ms) != 1 || ms[0] != b {
		t.Fatalf("r1 did not take over after r0 dropped to 90:\n%s", n.report())
	}
	n.run(backAt.Add(10 * time.Second))
	h, _ := lastTakeover(t, n, a)
	if ms := n.masters(); len(ms) != 1 || ms[0] != a || h.at.Before(backAt) || h.at.Sub(backAt) > time.Second+a.m.SkewTime()+time.Millisecond {
		t.Fatalf("r0 did not preempt back within one interval + Skew_Time:\n%s", n.report())
	}
}

func TestSim_PartitionHealKeepsTheHigherMaster(t *testing.T) {
	n := seedPair(t, 3, true)
	a, b := n.routers[0], n.routers[1]
	cut := func(c bool) func() {
		return func() { n.links[0][1].cut, n.links[1][0].cut = c, c }
	}
	n.at(n.now.Add(100*time.Millisecond), "partition", cut(true))
	healAt := n.now.Add(20 * time.Second)
	n.at(healAt, "heal", cut(false))
	n.run(healAt)
	if len(n.masters()) != 2 {
		t.Fatalf("partitioned pair: want two Masters:\n%s", n.report())
	}
	n.run(healAt.Add(10 * time.Second))
	if ms := n.masters(); len(ms) != 1 || ms[0] != a {
		t.Fatalf("healed pair: want r0 sole Master:\n%s", n.report())
	}
	h := b.history[len(b.history)-1]
	if h.to != Backup || h.at.Sub(healAt) > time.Second+time.Millisecond {
		t.Fatalf("r1 stepped down %v after the heal, want within one interval:\n%s", h.at.Sub(healAt), n.report())
	}
}

func TestSim_TenMinutesAt50msNoSpuriousTransition(t *testing.T) {
	// The design's target "advert_int 0.05 s (v3): no spurious transition in 10 minutes", for
	// the protocol alone: five routers, jittered delays up to 5ms, no loss.
	var cfgs []Config
	for i, p := range []uint8{100, 150, 200, 200, 50} {
		cfgs = append(cfgs, Config{Name: "VI_FAST", Version: 3, VRID: 7, Priority: p,
			AdvertInterval: 50 * time.Millisecond, Preempt: true, FastFailover: true,
			PrimaryAddr: netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)})})
	}
	n, err := newSimNet(rand.New(rand.NewPCG(3, 4)), cfgs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n.links {
		for j := range n.links[i] {
			n.links[i][j].maxDelay = 5 * time.Millisecond
		}
	}
	for _, r := range n.routers {
		n.start(r)
	}
	n.run(t0.Add(time.Second))
	settled := len(n.trace)
	n.run(t0.Add(10*time.Minute + time.Second))
	if ms := n.masters(); len(ms) != 1 || ms[0] != n.routers[3] || len(n.trace) != settled || len(n.errs) > 0 {
		t.Fatalf("want r3 (200, highest address) sole Master and no transition after 1s:\n%s", n.report())
	}
	if n.delivered < 4*12000 {
		t.Fatalf("only %d adverts delivered in 10 minutes", n.delivered)
	}
}

// --- property: random chaos, then a whole network converges to the right single Master ---

var simPriorities = []uint8{1, 50, 90, 100, 100, 110, 150, 200, 254, 255}

type simScenario struct {
	net       *simNet
	heal      time.Time
	interval  time.Duration   // the longest advert interval of the scenario
	intervals []time.Duration // each router's own
	mixed     bool            // VRRPv3 routers with different intervals
	maxDelay  time.Duration
	// handover: a drain was being handed over at the heal; its old Master keeps the VIPs until
	// a new one advertises, which takes up to one more Master_Down_Interval.
	handover bool
}

// longestMasterDown is r's Master_Down_Interval at its priority for the slowest Master it
// may learn the interval of.
func (s *simScenario) longestMasterDown(r *simRouter) time.Duration {
	longest := r.m.MasterDownInterval()
	for _, iv := range s.intervals {
		cfg := r.cfg
		cfg.Priority, cfg.AdvertInterval = r.m.Priority(), iv
		if m, err := NewMachine(cfg); err == nil {
			longest = max(longest, m.MasterDownInterval())
		}
	}
	return longest
}

func genScenario(rng *rand.Rand) (*simScenario, error) {
	nr := 2 + rng.IntN(4)
	version := 2 + rng.IntN(2)
	interval := time.Second
	if version == 2 {
		interval = time.Duration(1+rng.IntN(2)) * time.Second
	} else {
		interval = []time.Duration{20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, time.Second}[rng.IntN(4)]
	}
	ipv6 := version == 3 && rng.IntN(3) == 0
	// VRRPv3 routers may advertise at different intervals: Backups adopt their Master's.
	mixed := version == 3 && rng.IntN(3) == 0
	var cfgs []Config
	var intervals []time.Duration
	perm := rng.Perm(nr) // addresses in random order against ids
	for i := range nr {
		own := interval
		if mixed {
			own = []time.Duration{20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, time.Second}[rng.IntN(4)]
		}
		intervals = append(intervals, own)
		c := Config{Name: "VI_SIM", Version: version, VRID: 9, AdvertInterval: own,
			Priority: simPriorities[rng.IntN(len(simPriorities))], Preempt: rng.IntN(5) > 0, FastFailover: rng.IntN(4) > 0}
		if ipv6 {
			c.PrimaryAddr = netip.AddrFrom16([16]byte{0: 0xfe, 1: 0x80, 14: byte(perm[i]), 15: byte(rng.IntN(256))})
		} else {
			c.PrimaryAddr = netip.AddrFrom4([4]byte{10, byte(perm[i]), 0, byte(1 + rng.IntN(254))})
		}
		if rng.IntN(3) == 0 {
			c.PreemptDelay = []time.Duration{2 * interval, 10 * interval, 3 * time.Second}[rng.IntN(3)]
		}
		cfgs = append(cfgs, c)
	}
	n, err := newSimNet(rng, cfgs)
	if err != nil {
		return nil, err
	}
	// Jitter stays well below the fastest interval: a delay spread near Master_Down_Interval
	// minus the interval is loss, and loss is not what a whole network has.
	fastest := slices.Min(intervals)
	maxDelay := min([]time.Duration{0, 100 * time.Microsecond, 2 * time.Millisecond, fastest / 20}[rng.IntN(4)], fastest/10)
	for i := range n.links {
		for j := range n.links[i] {
			n.links[i][j].maxDelay = time.Duration(rng.Int64N(int64(maxDelay) + 1))
		}
	}
	s := &simScenario{net: n, interval: slices.Max(intervals), intervals: intervals, mixed: mixed, maxDelay: maxDelay}
	interval = s.interval // chaos and heal are counted in the slowest router's intervals
	// Routers start at random times in the first three intervals.
	for _, r := range n.routers {
		n.at(t0.Add(time.Duration(rng.Int64N(int64(3*interval)))), fmt.Sprintf("r%d start", r.id), func() { n.start(r) })
	}
	chaos := time.Duration(10+rng.IntN(40)) * interval
	for range 3 + rng.IntN(15) {
		at := t0.Add(time.Duration(rng.Int64N(int64(chaos))))
		r := n.routers[rng.IntN(nr)]
		o := n.routers[rng.IntN(nr)]
		switch rng.IntN(11) {
		case 0:
			groups := make([]int, nr)
			for i := range groups {
				groups[i] = rng.IntN(3)
			}
			n.at(at, fmt.Sprintf("partition %v", groups), func() {
				for i := range n.links {
					for j := range n.links[i] {
						n.links[i][j].cut = groups[i] != groups[j]
					}
				}
			})
		case 1:
			n.at(at, fmt.Sprintf("cut r%d->r%d one way", r.id, o.id), func() { n.links[r.id][o.id].cut = true })
		case 2:
			n.at(at, "heal cuts", func() {
				for i := range n.links {
					for j := range n.links[i] {
						n.links[i][j].cut = false
					}
				}
			})
		case 3:
			loss := []float64{0.1, 0.3, 0.6, 0.9}[rng.IntN(4)]
			n.at(at, fmt.Sprintf("loss %.1f r%d<->r%d", loss, r.id, o.id), func() {
				n.links[r.id][o.id].loss, n.links[o.id][r.id].loss = loss, loss
			})
		case 4:
			p := simPriorities[rng.IntN(len(simPriorities))]
			n.at(at, fmt.Sprintf("r%d priority %d", r.id, p), func() {
				if r.alive {
					n.apply(r, r.m.SetPriority(n.now, p))
				}
			})
		case 5:
			n.at(at, fmt.Sprintf("r%d fault toggle", r.id), func() {
				if r.alive {
					n.setFault(r, !r.m.fault)
				}
			})
		case 6:
			n.at(at, fmt.Sprintf("r%d stop", r.id), func() {
				if r.alive {
					n.apply(r, r.m.Shutdown(n.now))
				}
			})
		case 7:
			n.at(at, fmt.Sprintf("r%d start", r.id), func() {
				if r.alive && r.state == Init {
					n.start(r)
				}
			})
		case 8:
			n.at(at, fmt.Sprintf("r%d crash", r.id), func() { n.crash(r) })
		case 9:
			n.at(at, fmt.Sprintf("r%d resign", r.id), func() {
				if r.alive {
					n.apply(r, r.m.Resign(n.now))
				}
			})
		case 10:
			n.at(at, fmt.Sprintf("r%d drain toggle", r.id), func() {
				if r.alive {
					n.apply(r, r.m.SetDrained(n.now, !r.m.Drained()))
				}
			})
		}
	}
	// The network becomes whole again: no cut, no loss, every router up, no fault.
	s.heal = t0.Add(chaos + time.Duration(rng.Int64N(int64(interval))))
	n.at(s.heal, "network whole again", func() {
		for i := range n.links {
			for j := range n.links[i] {
				n.links[i][j].cut, n.links[i][j].loss = false, 0
			}
		}
		for _, r := range n.routers {
			if !r.alive {
				n.restart(r)
			}
			// A resign under way has ended with its process, which starts again. A drain stays:
			// a drained router is one at priority 1, and the properties hold for it.
			if r.m.handover == handoverStop {
				n.restart(r) // the stopping process has gone (its priority 0 is long sent)
			}
			s.handover = s.handover || r.m.HandingOver()
			if r.m.fault {
				n.setFault(r, false) // a stopped router keeps its fault for the next Start
			}
			if r.state == Init {
				n.start(r)
			}
		}
	})
	return s, nil
}

type simStats struct {
	scenarios, routers, transitions int
	lateFlaps, lateFlapsMixed       int // routers with more than two transitions after the heal
	sent, lost, delivered           int
	worstSlack                      time.Duration // least (bound - convergence) seen
	worstRatio                      float64       // most convergence/bound seen
	fake                            time.Duration
}

// check runs one scenario to its end and returns an error describing any property violation.
func (s *simScenario) check(st *simStats) error {
	n := s.net
	n.run(s.heal)
	// Priorities no longer change: find the router every router ranks first.
	top := n.routers[0]
	maxMDI := time.Duration(0)
	latestWindow := s.heal
	for _, r := range n.routers {
		if ranks(r, top) {
			top = r
		}
		maxMDI = max(maxMDI, s.longestMasterDown(r))
		latestWindow = laterOf(latestWindow, r.preemptFrom.Add(r.cfg.PreemptDelay))
	}
	topPreempts := top.cfg.Preempt || top.m.Priority() == OwnerPriority
	// Bound on the last transition after the heal. With a preempting top router: it becomes
	// Master by its own Master_Down_Interval after the heal (or after its preempt window
	// opens), and everyone else hears it within the network delay. Otherwise only uniqueness is
	// promised, after every router's window and a longer wait.
	var bound time.Time
	if topPreempts {
		bound = laterOf(s.heal, top.preemptFrom.Add(top.cfg.PreemptDelay)).Add(s.longestMasterDown(top) + s.maxDelay)
	} else {
		bound = latestWindow.Add(2*maxMDI + s.interval + 2*s.maxDelay)
	}
	if s.handover {
		bound = bound.Add(maxMDI)
	}
	if s.mixed {
		// A Backup that last heard a faster previous Master may time out on the new, slower
		// one before its first advert arrives, and yields at that advert (RFC 5798 behaviour:
		// Master_Adver_Interval is whatever the last accepted advert said).
		bound = bound.Add(s.interval + s.maxDelay)
	}
	end := bound.Add(30*s.interval + 2*maxMDI)
	n.run(end)

	st.scenarios++
	st.routers += len(n.routers)
	st.sent += n.sent
	st.lost += n.lost
	st.delivered += n.delivered
	st.fake += end.Sub(t0)
	last := s.heal
	for _, r := range n.routers {
		perRouter := 0
		for _, h := range r.history {
			if h.at.After(s.heal) {
				st.transitions++
				perRouter++
				last = laterOf(last, h.at)
			}
		}
		if perRouter > 2 {
			st.lateFlaps++
			if s.mixed {
				st.lateFlapsMixed++
			}
		}
	}
	if len(n.errs) > 0 {
		return fmt.Errorf("action contract broken")
	}
	if last.After(bound) {
		return fmt.Errorf("transition at %v, %v after the bound (heal + %v)",
			last.Sub(t0), last.Sub(bound), bound.Sub(s.heal))
	}
	if topPreempts {
		if slack := bound.Sub(last); st.scenarios == 1 || slack < st.worstSlack {
			st.worstSlack = slack
		}
		if r := float64(last.Sub(s.heal)) / float64(bound.Sub(s.heal)); r > st.worstRatio {
			st.worstRatio = r
		}
	}
	ms := n.masters()
	if len(ms) != 1 {
		return fmt.Errorf("%d Masters at the end, want 1", len(ms))
	}
	if topPreempts && ms[0] != top {
		return fmt.Errorf("Master is r%d, want r%d (highest priority, then address)", ms[0].id, top.id)
	}
	holders := 0
	for _, r := range n.routers {
		if r.vips {
			holders++
		}
	}
	if holders != 1 {
		return fmt.Errorf("%d routers hold the VIPs, want 1", holders)
	}
	return nil
}

func laterOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// TestSim_PropertyOneRightMasterOnceWhole runs seeded random scenarios. Set
// HAPAIR_SIM_SCENARIOS for more of them and HAPAIR_SIM_SEED to replay another series; a
// failure prints the seed of its scenario and its whole trace.
func TestSim_PropertyOneRightMasterOnceWhole(t *testing.T) {
	scenarios := 3000
	if testing.Short() {
		scenarios = 300
	}
	if v, err := strconv.Atoi(os.Getenv("HAPAIR_SIM_SCENARIOS")); err == nil && v > 0 {
		scenarios = v
	}
	base := uint64(20250101)
	if v, err := strconv.ParseUint(os.Getenv("HAPAIR_SIM_SEED"), 10, 64); err == nil {
		base = v
	}
	var st simStats
	for i := range scenarios {
		seed := base + uint64(i)
		s, err := genScenario(rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)))
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if err := s.check(&st); err != nil {
			t.Fatalf("HAPAIR_SIM_SEED=%d HAPAIR_SIM_SCENARIOS=1: %v\nheal at %v\n%s",
				seed, err, s.heal.Sub(t0), s.net.report())
		}
	}
	t.Logf("%d scenarios, %d routers, %v of fake time; adverts sent %d, lost %d, delivered %d; "+
		"%d transitions after the heal, %d routers with more than two (%d of them with mixed intervals); worst convergence %.0f%% of the bound, least slack %v",
		st.scenarios, st.routers, st.fake.Round(time.Second), st.sent, st.lost, st.delivered,
		st.transitions, st.lateFlaps, st.lateFlapsMixed, 100*st.worstRatio, st.worstSlack)
}
