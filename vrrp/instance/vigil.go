package instance

import (
	"time"
)

// A BACKUP whose MASTER's adverts are expected (expectSteady) reads them when it wakes, once
// every three intervals, and that wake-up of the Go runtime costs more than keepalived's
// BACKUP spends on the three adverts. Alone on its loop, it hands the reading to a watcher
// outside the runtime instead (package vrrp/transport/steady's Watch: a small process, as the
// MASTER's sender is, or a thread at short intervals and with Config.SteadyThread; see
// watchProcessFrom), which wakes when the loop would
// have (just after the last advert due before the master-down deadline) for a few system
// calls, and wakes the loop only when it finds no new advert: the MASTER has gone silent, or
// is late, or the watcher's process was killed, and the loop decides as before, from the
// adverts the watcher read.
//
// The rule that keeps this safe, the mirror of a MASTER's delegated adverts: while the watcher
// runs, the machine has not seen the adverts it read, and its master-down deadline is behind
// them. So the loop arms no timer for it, the reader hands every advert to the loop rather
// than to the machine (HandlePacket), and every turn first takes the watcher's adverts
// (takeQuiet, which ends the watch) before anything else reaches the machine.

// WatchConn is a QuietConn whose expected adverts a watcher outside the loop can read (package
// vrrp/transport's Member).
type WatchConn interface {
	// Watch starts the watcher, in a process of its own unless thread: it wakes at first, then
	// after past the newest advert it read, and calls silent when a wake-up finds none. Quiet,
	// Expect and Unexpect end it.
	Watch(first time.Time, after time.Duration, thread bool, silent func()) (received func() uint64, err error)
	// Unwatch ends it, and returns how many adverts it read that Quiet will count too, and
	// why it could not do its work, if it could not (another would fail alike).
	Unwatch() (received uint64, err error)
}

// WatchReporter counts a watcher's adverts while it runs and once it has stopped (package
// metrics).
type WatchReporter interface {
	WatchStarted(received func() uint64)
	WatchStopped(received uint64)
}

// watchSteady hands the reading of the expected adverts to a watcher, at the end of a turn,
// when it can: the daemon allows it (Config.Steady, as for a MASTER's sender), the instance is
// a BACKUP alone on its loop that expects its MASTER's adverts, and the next of them is still
// to come before the deadline (quietWake). Otherwise the loop keeps reading them.
func (in *Instance) watchSteady() {
	if !in.cfg.Steady || in.vigil || in.expect == nil || in.quiet == nil || in.stopSeen ||
		!in.loop.alone() {
		return
	}
	wc, ok := in.quiet.(WatchConn)
	if !ok {
		return
	}
	now := in.now()
	if !in.steadyRetryAt.IsZero() && now.Before(in.steadyRetryAt) {
		return
	}
	first, deadline := in.quietWake(now), in.machine.NextDeadline()
	if first.IsZero() || deadline.IsZero() {
		return
	}
	// After the newest advert, the watcher wakes when the loop would have: its due time plus
	// quietWakeLag, never past the deadline.
	wake := in.machine.LastAdvertDue().Add(quietWakeLag)
	if deadline.Before(wake) {
		wake = deadline
	}
	after := wake.Sub(in.machine.LastAdvertHeard())
	received, err := wc.Watch(first, after, watchInThread(in.cfg.SteadyThread, in.machine.MasterDownInterval()), in.schedule)
	if err != nil {
		in.steadyRetryAt = now.Add(steadyRetryAfter)
		in.log.Debug(in.msg("The loop reads the MASTER's adverts: no watcher"), "err", err, "retry_in", steadyRetryAfter)
		return
	}
	in.vigil = true
	if r, ok := in.rep.(WatchReporter); ok {
		r.WatchStarted(received)
	}
}

// watchProcessFrom is the shortest master-down interval for which the watcher reads from a
// process of its own rather than from its thread (package steady, WatchConfig.Thread). After a
// long sleep the process wakes for less (one instance at 1 s: 1.3 to 1.7 ms/min against 3.3 to
// 4.4 for the thread), but making it clones hapair's page tables on the loop (about 2 ms,
// steady's BenchmarkRestart) and leaves hapair's memory to be faulted back writable page by
// page, at the edge of a short failover: at 10 ms adverts a cable cut's failover took 38.3,
// 40.5 and 42.5 ms (medians) with the process against 33.7 and 33.8 with the thread (make
// bench-edge, 2026-12-05 13:35 to 13:55 UTC). At 100 ms adverts and below the process saves
// nothing that shows (a BACKUP of one instance: 12.0 ms/min in the afternoon's run with the
// process, 14.0 and 14.7 in the late morning's with the thread; keepalived 26 to 33).
const watchProcessFrom = time.Second

// watchInThread: the watcher reads from its thread (steadyThread: Config.SteadyThread), or
// when its MASTER's master-down interval is shorter than watchProcessFrom.
func watchInThread(steadyThread bool, masterDown time.Duration) bool {
	return steadyThread || masterDown < watchProcessFrom
}

// endVigil takes the reading of the expected adverts back from the watcher, if it has it: what
// it read counts in the next Quiet, which the caller makes at once. It returns how many of
// those the reporter has counted already (WatchStopped). Called with turn held.
func (in *Instance) endVigil() (counted int) {
	if !in.vigil {
		return 0
	}
	in.vigil = false
	n, err := in.quiet.(WatchConn).Unwatch()
	if err != nil {
		// Not again at every turn: a watcher that fails at once would be started and fail
		// again at each, a thread made and ended per turn.
		in.steadyRetryAt = in.now().Add(steadyRetryAfter)
		in.log.Warn(in.msg("The MASTER's adverts watcher stopped on an error: the loop reads them"), "err", err, "retry_in", steadyRetryAfter)
	}
	if r, ok := in.rep.(WatchReporter); ok {
		r.WatchStopped(n)
		return int(n)
	}
	return 0
}
