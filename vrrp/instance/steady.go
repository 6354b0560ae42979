package instance

import (
	"time"

	"github.com/hapair/hapair/vrrp"
	"github.com/hapair/hapair/vrrp/transport/steady"
	"golang.org/x/sys/unix"
)

// A MASTER whose adverts are steady (the same advert every interval, nothing else due with
// them) hands them to a sender thread that the Go runtime does not know (package
// vrrp/transport/steady): it wakes for each advert, sends it and sleeps again, without the Go
// scheduler's wake-up path, which costs more than the advert itself. A lone MASTER then costs
// less CPU than keepalived's at every interval (docs/performance.md, "A sender outside the Go
// runtime"); the loop wakes only for the VIP checks, every steadyReconcileEvery, and for
// whatever changes.
//
// Only an instance alone on its loop (the daemon runs one VRRP instance): with more, the loop
// sends every MASTER's adverts of one interval in one wake-up (they share the interval's
// phase), where a thread each would wake the process once per instance.
//
// The rule that keeps this safe: while the adverts are delegated the machine is only ticked
// and read. Every other call that may change the adverts or the state (an advert received, a
// priority, a fault, a drain, a reload, a rebind, the stop) first takes them back (reclaim),
// which returns once the sender thread has exited: no advert of the old kind leaves after it.

// SteadyConn is a Conn whose adverts a sender outside the loop can send (package
// vrrp/transport's Member): on a socket of their own, connected to the one destination, which
// the caller closes.
type SteadyConn interface {
	SteadySocket() (fd int, err error)
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
// once, as keepalived does with nothing else; the periodic check is a safety net, and at its
// usual second it would wake the process once a second, as often as the adverts at 1 s.
const steadyReconcileEvery = 30 * time.Second

// steadyRetryAfter is how long after a failed delegation the loop tries again.
const steadyRetryAfter = time.Minute

// steadyRun is the sender of a MASTER's adverts, while they are delegated.
type steadyRun struct {
	s     *steady.Sender
	sock  int           // its socket (SteadySocket), closed once it has stopped
	first time.Duration // CLOCK_BOOTTIME of its first advert
	next  time.Time     // the same, on the instance's clock
}

// delegate hands a steady MASTER's adverts to a sender, at the end of a turn, when it can: the
// daemon allows it (Config.Steady), the machine says they are steady, the transport and the
// record can be written from outside Go, and no run of failed sends is being logged. Otherwise
// the loop keeps sending them, as before.
func (in *Instance) delegate() {
	if !in.cfg.Steady || in.steady != nil || in.stopSeen || in.sendErrs.total > 0 ||
		in.machine.State() != vrrp.Master || len(in.cfg.Destination) != 1 || !in.loop.alone() {
		return
	}
	if !in.steadyRetryAt.IsZero() && in.now().Before(in.steadyRetryAt) {
		return
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
	fd, err := target.SteadySocket()
	if err != nil {
		fail("no socket", err)
		return
	}
	bootNow, now := steady.BootTime(), in.now()
	first := bootNow + max(next.Sub(now), 0)
	s, err := steady.Start(steady.Config{
		Socket: fd, Payload: payload, // connected: no address, no control message
		First: first, Period: in.cfg.Machine.AdvertInterval,
		Record: recFd, RecordLine: recLine, StampAt: stampAt,
		Thread: in.cfg.SteadyThread,
		// A turn at once: steadyTrouble takes the adverts back, and the loop sends them.
		Ended: in.schedule,
	})
	if err != nil {
		unix.Close(fd)
		fail("no sender thread", err)
		return
	}
	in.steady = &steadyRun{s: s, sock: fd, first: first, next: now.Add(first - bootNow)}
	if r, ok := in.rep.(SteadyReporter); ok {
		r.SteadyStarted(s.Sent, s.Errors)
	}
}

// reclaim takes the adverts back from the sender, if they are delegated: once it returns the
// sender has stopped, and the machine's next advert is due an interval after the sender's last.
func (in *Instance) reclaim() {
	run := in.steady
	if run == nil {
		return
	}
	in.steady = nil
	res := run.s.Stop()
	unix.Close(run.sock)
	var last time.Time
	if res.Sent > 0 {
		// On the sender's grid: its adverts were due at first + k*interval.
		last = run.next.Add(res.Last - run.first)
		if sr, ok := in.cfg.Record.(SteadyRecorder); ok && in.recordsAdverts() {
			sr.AdvertSentAt(res.Last)
		}
	}
	in.machine.ReclaimAdverts(last)
	if r, ok := in.rep.(SteadyReporter); ok {
		r.SteadyStopped(res.Sent, res.Errors)
	}
	if res.Errors > 0 {
		// Logged as the loop's own failures are, and its next advert that leaves says so.
		now := in.now()
		in.log.Warn(in.msg("Sending advert failed"), "failed", res.Errors, "err", res.LastErr)
		in.sendErrs = sendFailures{total: int(res.Errors), since: now, lastLine: now}
	}
	if res.Failed != 0 {
		in.log.Warn(in.msg("The advert sender stopped on an error: the loop sends the adverts"), "err", res.Failed, "retry_in", steadyRetryAfter)
	}
	if res.Killed {
		in.log.Warn(in.msg("The advert sender process was killed: the loop sends the adverts"), "retry_in", steadyRetryAfter)
	}
	if res.Failed != 0 || res.Killed {
		// Not at the end of this turn: whatever ended it may end the next one too.
		in.steadyRetryAt = in.now().Add(steadyRetryAfter)
	}
}

// steadyTrouble: the sender has failed to send an advert since it started, which the loop
// must log and count (reclaim), or it has stopped on its own (its process killed), so that the
// loop sends again.
func (in *Instance) steadyTrouble() bool {
	return in.steady != nil && (in.steady.s.Errors() > 0 || in.steady.s.Ended())
}
