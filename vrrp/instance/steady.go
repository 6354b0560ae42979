package instance

import (
	"slices"
	"sync"
	"time"

	"github.com/hapair/hapair/vrrp"
	"github.com/hapair/hapair/vrrp/transport/steady"
	"golang.org/x/sys/unix"
)

// A MASTER whose adverts are steady (the same advert every interval, nothing else due with
// them) hands them to a sender that the Go runtime does not know (package
// vrrp/transport/steady): a thread, and a small process of its own, that wakes for each
// advert, sends it and sleeps again, without the Go scheduler's wake-up path, which costs more
// than the advert itself. The loop then wakes only for the VIP checks, every
// steadyReconcileEvery, and for whatever changes.
//
// The MASTERs of one loop share one sender (steadyGroup), which sends all their adverts of an
// interval in one wake-up, as the loop's own wake-up did (the machine keeps every Master's
// adverts on the interval's phase of the clock) and as keepalived's does. A MASTER joins at the
// end of its turn, its adverts moving onto the group's grid (never later than its own next
// one), and leaves when it takes them back; either restarts the sender with the new set (1.8 to
// 2.0 ms with 8 MiB resident, BenchmarkRestart in package steady), which the other members do
// not notice: the new sender goes on from the due time after the old one's last. Only while at
// most maxSteadyGroup instances run on the loop: with more, the restarts cost more, and the
// loop's wake-up is shared by more adverts, so it gains less (docs/performance.md).
//
// The rule that keeps this safe: while the adverts are delegated the machine is only ticked
// and read. Every other call that may change the adverts or the state (an advert received, a
// priority, a fault, a drain, a reload, a rebind, the stop) first takes them back (reclaim),
// which returns once the sender has stopped: no advert of the old kind leaves after it.

// SteadyConn is a Conn whose adverts a sender outside the loop can send (package
// vrrp/transport's Member): on a socket of their own, connected to the one destination, which
// the caller closes, each advert after header (the IP header, on a socket that takes it from
// the datagram; or nothing).
type SteadyConn interface {
	SteadySocket() (fd int, header []byte, err error)
}

// SteadyRecorder is a Recorder that such a sender can rewrite itself at each advert (package
// vrrp/record's Writer).
type SteadyRecorder interface {
	SteadyLine(state vrrp.State, prio uint8) (fd int, line []byte, stampAt int, ok bool)
	AdvertSentAt(at time.Duration)
}

// SteadyReporter counts a sender's adverts while it runs and once it has stopped (package
// metrics).
type SteadyReporter interface {
	SteadyStarted(sent, errors func() uint64)
	SteadyStopped(sent, errors uint64)
}

// steadyReconcileEvery is how often a MASTER whose adverts are delegated checks its VIPs. The
// kernel's address notifications (the daemon's CheckVIPs) put a VIP removed by hand back at
// once, as keepalived does with nothing else, and the address watch makes up for lost ones with
// a dump (vip.Watch); the periodic check is a safety net. At its usual second it would wake the
// process once a second, as often as the adverts at 1 s. Each check of a delegated MASTER wakes
// the Go side cold after its sleep: 0.8 to 0.9 ms of CPU on the lab machine (2026-12-05), where
// a lone MASTER's sender spends 13 ms a minute at 1 s; once a minute it was the larger of the
// two things hapair's Go side still did (the other the runtime's forced collection, package
// internal/gcpace), so every five minutes.
const steadyReconcileEvery = 5 * time.Minute

// steadyRetryAfter is how long after a failed delegation the loop tries again.
const steadyRetryAfter = time.Minute

// maxSteadyGroup is the most instances a loop may run for its MASTERs to share a sender.
const maxSteadyGroup = 16

// steadyGroup is the sender of the steady adverts of a loop's MASTERs (see above). Its members
// join and leave in their own turns, which the loop runs one at a time; mu guards what the
// metrics read meanwhile (the sender, the members' counts) and what Ended reads.
type steadyGroup struct {
	thread bool // Config.SteadyThread
	period time.Duration
	// The grid: a due time on CLOCK_BOOTTIME, and the same moment on the instances' clock.
	origin     time.Duration
	originWall time.Time

	mu      sync.Mutex
	s       *steady.Sender // nil: none running
	start   time.Duration  // its Config.First
	members []*steadyRun   // in the sender's order
	// ended: a sender stopped on its own (its process killed, a failed read) or could not be
	// started again; every member takes its adverts back in its turn, and none joins.
	ended  bool
	killed bool
	failed unix.Errno
}

// steadyRun is a MASTER's membership of its loop's group.
type steadyRun struct {
	g      *steadyGroup
	in     *Instance
	dg     steady.Datagram
	index  int  // in g.s
	member bool // still one (for the metrics' reads)
	// By the group's stopped senders:
	sent, errs uint64
	lastErr    unix.Errno
	last       time.Duration // CLOCK_BOOTTIME due time of its last advert sent; 0: none
}

// nextDue is the first due time of the group's grid after boot time t.
func (g *steadyGroup) nextDue(t time.Duration) time.Duration {
	if t < g.origin {
		return g.origin
	}
	return g.origin + ((t-g.origin)/g.period+1)*g.period
}

// wall is boot time t on the instances' clock.
func (g *steadyGroup) wall(t time.Duration) time.Time { return g.originWall.Add(t - g.origin) }

// restart stops the running sender, if any, keeping what it did for each member, and starts
// one for members from the due time after its last advert (a time past: at once), or from its
// first if it sent none. g.mu held.
func (g *steadyGroup) restart(members []*steadyRun) error {
	first := g.origin
	if g.s != nil {
		first = g.start
		res := g.s.Stop()
		g.s = nil
		var latest time.Duration
		for i, m := range g.members {
			c := res.Each[i]
			m.sent += c.Sent
			m.errs += c.Errors
			if c.LastErr != 0 {
				m.lastErr = c.LastErr
			}
			if c.Sent > 0 {
				m.last = c.Last
			}
			latest = max(latest, c.Last)
		}
		if res.Killed || res.Failed != 0 {
			g.ended, g.killed, g.failed = true, res.Killed, res.Failed
		}
		if latest > 0 {
			first = latest + g.period
		}
	}
	g.members = members
	if len(members) == 0 || g.ended {
		return nil
	}
	cfg := steady.Config{First: first, Period: g.period, Thread: g.thread, Ended: g.senderEnded}
	for i, m := range members {
		m.index = i
		cfg.Datagrams = append(cfg.Datagrams, m.dg)
	}
	s, err := steady.Start(cfg)
	if err != nil {
		// The members' adverts have no sender now: each takes them back in its turn, at once.
		g.ended = true
		for _, m := range members {
			m.in.schedule()
		}
		return err
	}
	g.s, g.start = s, first
	return nil
}

// hasEnded is g.ended, read under mu.
func (g *steadyGroup) hasEnded() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.ended
}

// senderEnded is the sender's Config.Ended: every member takes its adverts back at once.
func (g *steadyGroup) senderEnded() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, m := range g.members {
		m.in.schedule()
	}
}

// sentNow and errorsNow are the member's counts so far, for the metrics.
func (m *steadyRun) sentNow() uint64 {
	m.g.mu.Lock()
	defer m.g.mu.Unlock()
	n := m.sent
	if m.member && m.g.s != nil {
		n += m.g.s.Sent(m.index)
	}
	return n
}

func (m *steadyRun) errorsNow() uint64 {
	m.g.mu.Lock()
	defer m.g.mu.Unlock()
	n := m.errs
	if m.member && m.g.s != nil {
		n += m.g.s.Errors(m.index)
	}
	return n
}

// trouble: the member has failed to send an advert since it joined, which the loop must log
// and count (reclaim), or its sender has stopped on its own, so that the loop sends again.
func (m *steadyRun) trouble() bool {
	m.g.mu.Lock()
	defer m.g.mu.Unlock()
	return m.errs > 0 || m.g.ended || m.g.s == nil || m.g.s.Errors(m.index) > 0 || m.g.s.Ended()
}

// delegate hands a steady MASTER's adverts to its loop's sender, at the end of a turn, when it
// can: the daemon allows it (Config.Steady), the machine says they are steady, the transport
// and the record can be written from outside Go, and no run of failed sends is being logged.
// Otherwise the loop keeps sending them, as before.
func (in *Instance) delegate() {
	if !in.cfg.Steady || in.steady != nil || in.stopSeen || in.sendErrs.total > 0 ||
		in.machine.State() != vrrp.Master || len(in.cfg.Destination) != 1 || in.loop.count() > maxSteadyGroup {
		return
	}
	if !in.steadyRetryAt.IsZero() && in.now().Before(in.steadyRetryAt) {
		return
	}
	interval := in.cfg.Machine.AdvertInterval
	g := in.loop.steadyGroup()
	if g != nil && (g.hasEnded() || g.period != interval) {
		return // not until the group has ended, or not in it: the loop sends them
	}
	target, ok := in.conn.(SteadyConn)
	if !ok {
		return
	}
	recFd, recLine, stampAt := -1, []byte(nil), 0
	if in.cfg.Record != nil && in.recordsAdverts() {
		sr, ok := in.cfg.Record.(SteadyRecorder)
		if !ok {
			return
		}
		if recFd, recLine, stampAt, ok = sr.SteadyLine(vrrp.Master, in.machine.Priority()); !ok {
			return
		}
	}
	prio, next, ok := in.machine.DelegateAdverts()
	if !ok {
		return
	}
	bootNow, now := steady.BootTime(), in.now()
	first := bootNow + max(next.Sub(now), 0)
	if g == nil {
		// Its grid is this MASTER's: the next advert is due then, and every interval after.
		g = &steadyGroup{thread: in.cfg.SteadyThread, period: interval, origin: first, originWall: now.Add(first - bootNow)}
	} else if due := g.nextDue(bootNow); first < due-time.Millisecond {
		// The MASTER's adverts move onto the group's grid: its next one would come later than
		// its own is due. Not now: at the end of the turn that sends it, when the group's is
		// at most an interval after it (an earlier advert is harmless: a BACKUP restarts its
		// timer on every advert).
		in.machine.ReclaimAdverts(time.Time{})
		return
	}
	fail := func(why string, err error) {
		in.machine.ReclaimAdverts(time.Time{})
		// Not again at every advert: a start that fails (no thread to be had) costs more than
		// the advert it would spare.
		in.steadyRetryAt = in.now().Add(steadyRetryAfter)
		in.log.Debug(in.msg("The loop sends the adverts: "+why), "err", err, "retry_in", steadyRetryAfter)
	}
	adv := in.advert(prio)
	payload, err := adv.Append(nil, in.cfg.Source, in.cfg.Destination[0], in.cfg.Checksum)
	if err != nil {
		fail("no advert", err)
		return
	}
	fd, header, err := target.SteadySocket()
	if err != nil {
		fail("no socket", err)
		return
	}
	run := &steadyRun{g: g, in: in, member: true, dg: steady.Datagram{
		// Connected: no address, no control message.
		Socket: fd, Payload: append(header, payload...),
		Record: recFd, RecordLine: recLine, StampAt: stampAt,
	}}
	g.mu.Lock()
	err = g.restart(append(slices.Clip(g.members), run))
	if err != nil {
		// restart has asked the other members for a turn, in which they take theirs back;
		// this one was never one.
		g.members = slices.DeleteFunc(g.members, func(m *steadyRun) bool { return m == run })
		if len(g.members) == 0 {
			in.loop.dropSteadyGroup(g)
		}
	}
	g.mu.Unlock()
	if err != nil {
		unix.Close(fd)
		fail("no sender", err)
		return
	}
	in.loop.setSteadyGroup(g)
	in.steady = run
	if r, ok := in.rep.(SteadyReporter); ok {
		r.SteadyStarted(run.sentNow, run.errorsNow)
	}
}

// reclaim takes the adverts back from the sender, if they are delegated: once it returns the
// sender sends none of them any more, and the machine's next advert is due an interval after
// the sender's last. The other members' adverts go on from a new sender. It may run outside
// the loop (receiveInline, on the reader's goroutine, with the instance's turn held) while
// another instance's turn runs: it only takes the member out, under the group's mu, and the
// loop's group is read and written under the loop's mu.
func (in *Instance) reclaim() {
	run := in.steady
	if run == nil {
		return
	}
	in.steady = nil
	g := run.g
	g.mu.Lock()
	rest := make([]*steadyRun, 0, len(g.members))
	for _, m := range g.members {
		if m != run {
			rest = append(rest, m)
		}
	}
	err := g.restart(rest)
	run.member = false
	killed, failed := g.killed, g.failed
	if len(rest) == 0 {
		in.loop.dropSteadyGroup(g)
	}
	g.mu.Unlock()
	if err != nil {
		in.log.Warn(in.msg("The advert sender could not be started again: the loop sends the other instances' adverts"), "err", err)
	}
	unix.Close(run.dg.Socket)
	var last time.Time
	if run.sent > 0 {
		// On the group's grid: its adverts were due at origin + k*interval.
		last = g.wall(run.last)
		if sr, ok := in.cfg.Record.(SteadyRecorder); ok && in.recordsAdverts() {
			sr.AdvertSentAt(run.last)
		}
	}
	in.machine.ReclaimAdverts(last)
	if r, ok := in.rep.(SteadyReporter); ok {
		r.SteadyStopped(run.sent, run.errs)
	}
	if run.errs > 0 {
		// Logged as the loop's own failures are, and its next advert that leaves says so.
		now := in.now()
		in.log.Warn(in.msg("Sending advert failed"), "failed", run.errs, "err", run.lastErr)
		in.sendErrs = sendFailures{total: int(run.errs), since: now, lastLine: now}
	}
	if failed != 0 {
		in.log.Warn(in.msg("The advert sender stopped on an error: the loop sends the adverts"), "err", failed, "retry_in", steadyRetryAfter)
	}
	if killed {
		in.log.Warn(in.msg("The advert sender process was killed: the loop sends the adverts"), "retry_in", steadyRetryAfter)
	}
	if failed != 0 || killed {
		// Not at the end of this turn: whatever ended it may end the next one too.
		in.steadyRetryAt = in.now().Add(steadyRetryAfter)
	}
}

// steadyTrouble: the sender has failed to send an advert since the instance joined, which the
// loop must log and count (reclaim), or it has stopped on its own (its process killed), so that
// the loop sends again.
func (in *Instance) steadyTrouble() bool { return in.steady != nil && in.steady.trouble() }
