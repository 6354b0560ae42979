// Package instance runs one VRRP instance: it feeds the pure state machine of package vrrp with
// the adverts a transport receives, its timers and the tracked priority, and carries out the actions
// it returns (send adverts, attach and detach virtual IPs, announce them).
//
// All protocol decisions stay in vrrp.Machine; this package only owns time, sockets and netlink.
// One goroutine (Run) carries out what the machine decides. Packets are parsed and filtered on
// the transport's reader goroutine, which every instance on a socket shares (HandlePacket), so
// that a flood of bad packets never delays a timer; an accepted advert goes to the machine
// there and then when the loop is not in a turn (the common case: a BACKUP hearing its MASTER
// wakes nothing), else it queues for the loop. Neither path allocates per advert.
package instance

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hapair/hapair/vrrp"
)

// Conn sends and receives VRRP payloads (a vrrp/transport Member implements it).
type Conn interface {
	// Receive has deliver called with every packet for the instance's VRID, on the transport's
	// goroutine, until Close; payload is valid only during the call. ttl is -1 if unknown.
	Receive(deliver func(payload []byte, src, dst netip.Addr, ttl int))
	WriteAdvert(payload []byte) error
	// Close stops delivery: once it returns, deliver is not running and is not called again.
	Close() error
}

// QuietConn is implemented by a transport that can take a MASTER's steady adverts off the
// reader's path (package vrrp/transport's Member): a BACKUP then wakes at its master-down
// deadline rather than at every advert (see Instance.expectSteady).
type QuietConn interface {
	// Expect keeps adverts from src whose VRRP payload is payload away from the handler; an
	// error means it cannot, and the adverts reach the handler as before.
	Expect(src netip.Addr, payload []byte) error
	// Unexpect gives them back to the handler.
	Unexpect()
	// Quiet reads the expected adverts kept away since the last call: how many, and when the
	// latest arrived.
	Quiet() (at time.Time, n int)
}

// PendingConn is implemented by a transport whose reader the loop can overtake (package
// vrrp/transport's Member): ReadPending delivers, on the caller's goroutine and before it
// returns, the packets queued for the reader.
type PendingConn interface {
	ReadPending()
}

// PeerWriter is implemented by a unicast transport that can address one peer at a time.
type PeerWriter interface {
	WriteAdvertTo(payload []byte, dst netip.Addr) error
}

// VIPs attaches and detaches the instance's virtual addresses (package vrrp/vip implements it).
type VIPs interface {
	Attach() error
	Detach() error
	Missing() ([]netip.Prefix, error)
	RemoveStale() error
}

// Announcer sends gratuitous ARPs / unsolicited neighbour advertisements for the VIPs.
type Announcer interface {
	Announce(vips []netip.Prefix) (int, error)
}

// Reporter receives what an operator watches, one small interface per concern. Package metrics
// implements all of them; it must be safe for concurrent use, since the reader goroutine reports
// packets while the loop reports the rest.
type Reporter interface {
	StateReporter
	FailoverReporter
	PacketReporter
	VIPReporter
}

// StateReporter follows the instance's state and effective priority.
type StateReporter interface {
	SetState(s vrrp.State)
	Transition(from, to vrrp.State)
	SetPriority(p uint8)
}

// FailoverReporter times the moves of the VIPs (see hapair_vrrp_takeover_seconds and
// hapair_vrrp_release_seconds).
type FailoverReporter interface {
	ObserveTakeover(d time.Duration)
	ObserveRelease(d time.Duration)
}

// PacketReporter counts adverts sent, received and dropped.
type PacketReporter interface {
	AdvertSent(prio uint8)
	// AdvertSendError counts an advert that could not be sent (see
	// hapair_vrrp_advert_send_errors_total).
	AdvertSendError()
	AdvertReceived(prio uint8)
	Dropped(reason vrrp.DropReason)
	// AddrListMismatch counts an advert accepted although its address list differs from ours
	// (see vrrp.Filter.Differs).
	AddrListMismatch()
}

// VIPReporter counts what was done to the VIPs on the interface and on the link.
type VIPReporter interface {
	GARPSent(n int)
	// VIPError counts a failed vrrp.ActAttachVIPs or vrrp.ActDetachVIPs.
	VIPError(op vrrp.ActionKind)
}

// Notifier runs the notify hooks of a transition. It must not block: the VRRP loop calls it.
type Notifier interface {
	Notify(instance string, state vrrp.State, priority uint8)
}

// Config is what one instance needs beyond its collaborators.
type Config struct {
	Name      string
	Interface string
	Machine   vrrp.Config
	Filter    vrrp.Filter
	VIPs      []netip.Prefix
	// Source is the address adverts are sent from; with the multicast group or peer it forms the
	// pseudo-header of the v3 checksum.
	Source      netip.Addr
	Destination []netip.Addr // multicast group, or every unicast peer
	Checksum    vrrp.ChecksumMode
	AuthType    uint8
	AuthPass    string
	// GARPRepeat announcements are sent at once on becoming MASTER, and GARPRepeat more after
	// GARPDelay (keepalived's garp_master_repeat / garp_master_delay). GARPDelay 0: no second burst.
	GARPRepeat int
	GARPDelay  time.Duration
	// ReconcileEvery is how often a MASTER checks that its VIPs are still attached.
	ReconcileEvery time.Duration
	// Previous, when set, is asked at start what the instance's state record says (nil: none).
	// A MASTER a moment ago resumes as MASTER (vrrp.Machine.Resume) and keeps its VIPs.
	Previous func(now time.Time) *vrrp.Previous
	// Record, when set, is told every state change and every advert sent (package vrrp/record).
	Record Recorder
	// Drained starts the instance drained (see SetDrained): the state is kept across restarts.
	Drained bool
	// Timers makes the instance's timer; nil: Go's own (time.AfterFunc), which testing/synctest's
	// fake clock also drives. The daemon passes a vrrp/alarm set, which costs the Go runtime
	// far fewer wake-ups per advert.
	Timers Timers
	// Loop runs the instance's turns; nil: a loop of its own. The daemon gives every instance
	// the same one (see Loop).
	Loop *Loop
	// Steady lets a MASTER hand its steady adverts to a sender thread outside the Go runtime
	// (see delegate), where the platform has one (steady.Supported) and the conn can.
	Steady bool
	// SteadyThread has that sender send from its thread, and a lone BACKUP's watcher read from
	// its thread (see watchSteady), not from the small process each makes otherwise
	// (steady.Config.Thread, steady.WatchConfig.Thread).
	SteadyThread bool
}

// Timers makes the instance's timer (the daemon adapts a vrrp/alarm.Alarms).
type Timers interface {
	// AfterFunc returns a timer that is not set and calls fire at each expiry. fire may run
	// the instance's turn there and then (Loop.turnNow): as short as a turn on the loop, and
	// it never waits for a timer.
	AfterFunc(fire func()) Timer
}

// Timer calls its function once, d after Reset. Reset replaces the pending deadline.
type Timer interface {
	Reset(d time.Duration)
	Stop()
}

// goTimers are Go's own timers.
type goTimers struct{}

func (goTimers) AfterFunc(fire func()) Timer {
	t := time.AfterFunc(time.Hour, fire)
	t.Stop()
	return goTimer{t}
}

// goTimer is a time.Timer as a Timer.
type goTimer struct{ t *time.Timer }

func (g goTimer) Reset(d time.Duration) { g.t.Reset(d) }
func (g goTimer) Stop()                 { g.t.Stop() }

func (in *Instance) newTimer() Timer {
	if in.cfg.Timers != nil {
		return in.cfg.Timers.AfterFunc(in.timerFired)
	}
	return goTimers{}.AfterFunc(in.timerFired)
}

// timerFired runs the instance's turn on the timer's goroutine when the loop is idle (see
// Loop.turnNow).
func (in *Instance) timerFired() { in.loop.turnNow(in) }

// Recorder keeps the state record a restarted hapair resumes from. It is called from the loop
// and must not block.
type Recorder interface {
	Record(state vrrp.State, priority uint8, advertSent bool)
}

// Status is a snapshot of one instance for /status and the SIGUSR1 dump.
type Status struct {
	Name           string
	Interface      string
	VRID           uint8
	Version        int
	State          vrrp.State
	BasePriority   uint8
	Priority       uint8
	MasterAddr     netip.Addr
	VIPs           []netip.Prefix
	Since          time.Time
	LastTransition Transition
	Fault          string
	Drained        bool
}

// Transition is the last state change, as shown in status.
type Transition struct {
	From, To vrrp.State
	Reason   string
	At       time.Time
}

// Instance runs one VRRP instance. Create it with New, then call Run.
type Instance struct {
	cfg      Config
	machine  *vrrp.Machine
	conn     Conn
	vips     VIPs
	announce Announcer
	rep      Reporter
	notify   Notifier
	log      *slog.Logger
	now      func() time.Time

	control  chan controlEvent
	latest   latest // the priority and fault state to apply next: the newest only
	rebind   atomic.Pointer[rebind]
	received chan received
	settled  chan struct{}
	settle   sync.Once
	done     chan struct{} // closed when Run returns: nobody takes events any more
	handover atomic.Bool   // Run ends without Shutdown: the next image resumes (HandOver)
	wakeAt   atomic.Int64  // unix nanos of the turn the loop waits for; 0: none (Overdue)
	grid     time.Duration // the timer grid (timerGridFor)
	// filter is what the reader accepts; a reload that changes the VIPs swaps it.
	filter atomic.Pointer[vrrp.Filter]

	// Reader-owned state.
	listNotes vrrp.ListNotes // address-list findings already logged, per sender
	dropLog   logBudget      // per-packet debug lines
	listLog   logBudget      // address-list warnings

	mu     sync.Mutex
	status Status

	// Owned by the transport's goroutine (HandlePacket).
	rx vrrp.Advert // parsed into, so that its address slice is reused

	// The MASTER's advert the transport keeps off the reader's path (expectSteady); nil quiet:
	// the transport cannot. Guarded by turn.
	quiet  QuietConn
	expect *expected // nil: none

	// turn is held by the loop for each of its turns, and taken (TryLock) by the reader to hand
	// an advert to the machine at once: a BACKUP hearing its MASTER then costs no wake-up of
	// the loop, whose timer, armed for the old master-down deadline, wakes it about once every
	// three adverts to re-arm. The reader never waits for it: while the loop holds it, adverts
	// queue in received. The machine and pending are guarded by it.
	turn    sync.Mutex
	pending []vrrp.Action // what the reader's Receive calls returned, for the loop to carry out
	timer   Timer         // the instance's; the reader re-arms it, with turn held

	// Scheduling on the loop (see Loop): queued is guarded by loop.mu; finished is set at the
	// end of the run, after which no turn is asked for or run.
	loop      *Loop
	queued    bool
	started   atomic.Bool // Start has run: turns may be asked for
	finished  atomic.Bool
	ctx       context.Context // Start's
	stopSeen  bool            // the turn that saw ctx end has begun the stop (turn-owned)
	vigil     bool            // a watcher reads the expected adverts (watchSteady; turn-owned)
	stopWatch func() bool     // unregisters the wake-up at ctx's end

	// Loop-owned state.
	advAddrs      []netip.Addr // the VIPs' addresses, as adverts list them
	txBuf         []byte       // reused for every advert sent
	sendErrs      sendFailures // the adverts that could not be sent, for the log
	garpRound     int          // announcement bursts done since becoming MASTER
	nextGARP      time.Time    // zero: no burst pending
	takeoverSince time.Time    // non-zero until the first GARP after becoming MASTER
	releaseSince  time.Time    // when the failure that makes us give up MASTER was seen
	nextReconcile time.Time
	steady        *steadyRun              // the adverts' sender while they are delegated (delegate)
	steadyRetryAt time.Time               // a sender or watcher thread could not be had: none before this
	drainReplies  []chan<- HandoverResult // SetDrained callers waiting for the handover's end
	handedTo      netip.Addr              // the last handover's new MASTER
}

// controlEvent is a request that must reach the loop whole and in order: a reload's update or a
// drain, each with a reply its sender waits for, or a VIP check. The priority and fault state
// do not come this way (see latest).
type controlEvent struct {
	checkVIPs bool // CheckVIPs: nothing else in the event
	update    *Update
	drain     *drainRequest
	at        time.Time
}

// latest holds the newest effective priority and fault state handed over (SetPriority,
// SetFault) that the loop has not applied yet. An instance needs only the newest of each, not
// every step in between, so a newer value replaces an older one and handing one over never
// waits: the daemon hands them over holding its lock, which an instance's start waits for.
// They used to queue on the control channel with the rest; before the start nothing reads it,
// and a check or link flapping while an instance waited for its checks' first results filled
// it: the sender blocked holding the daemon's lock, the start never came, and hapair hung.
type latest struct {
	mu sync.Mutex
	v  latestValues
}

// latestValues are what latest holds. set: a value waits; since: when the first value not yet
// applied was handed over (the release figure runs from the failure being seen, not from a
// later value that replaced it).
type latestValues struct {
	priority      uint8
	prioritySet   bool
	prioritySince time.Time
	fault         bool
	reason        string
	faultSet      bool
	faultSince    time.Time
}

// waiting says whether a value waits for the loop.
func (l *latest) waiting() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.v.prioritySet || l.v.faultSet
}

type drainRequest struct {
	drained bool
	reply   chan<- HandoverResult
}

// HandoverResult is what a drain (SetDrained) came to.
type HandoverResult struct {
	// HandedOver: this instance was MASTER and a new MASTER's advert ended the handover.
	HandedOver bool
	State      vrrp.State // after the drain
	MasterAddr netip.Addr // the MASTER now as far as this instance knows; invalid when unknown
}

// Update carries what a configuration reload changes in a running instance without restarting
// it. The state, the timers and the socket stay.
type Update struct {
	BasePriority uint8 // shown in status; the effective priority comes through SetPriority
	VIPs         []netip.Prefix
	Manager      VIPs // manages VIPs; attached at once when MASTER
	GARPRepeat   int
	GARPDelay    time.Duration
	Notifier     Notifier
	// Applied is closed once the loop has taken the update (Apply makes it when nil).
	Applied chan struct{}
}

// received is an advert that passed the filter, on its way to the loop. Its Addrs are nil: the
// machine does not use them, and the parsed ones belong to the transport's goroutine.
type received struct {
	advert vrrp.Advert
	src    netip.Addr
}

// receivedBacklog is how many accepted adverts may wait for the instance's turn. An advert
// waits only when it arrives during the instance's turn, or while others wait: the turn asked
// for then comes after the turns already asked for on the loop, well within an advert interval,
// and each peer sends one advert per interval, so a few suffice; a full backlog means a stuck
// loop (the watchdog's business), and the adverts beyond it are dropped and counted rather than
// stall every other instance on the socket. Kept small: every slot costs about 100 bytes an
// instance (16 slots were 0.4 MB of heap at 255 instances).
const receivedBacklog = 4

// controlBacklog is how many control events (reload, drain, VIP check) may wait for the
// instance's turn. Senders of a reload or a drain block beyond it until the loop takes one,
// which it does within a turn once started; each waits for its reply anyway, and the daemon
// makes one reload and one drain at a time and never holds its lock while sending one. A VIP
// check is dropped when the queue is full. The priority and the fault state, which checks and
// links hand over at any rate, do not queue here (see latest). It was 64: 4.6 KiB per
// instance, 1.2 MiB of heap at 255 instances, for bursts that never came.
const controlBacklog = 8

// New checks the configuration and builds the machine.
func New(cfg Config, conn Conn, vips VIPs, announce Announcer, rep Reporter, notify Notifier, log *slog.Logger) (*Instance, error) {
	m, err := vrrp.NewMachine(cfg.Machine)
	if err != nil {
		return nil, fmt.Errorf("instance %s: %w", cfg.Name, err)
	}
	if cfg.ReconcileEvery <= 0 {
		cfg.ReconcileEvery = time.Second
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	in := &Instance{
		cfg: cfg, machine: m, conn: conn, vips: vips, announce: announce, rep: rep, notify: notify,
		log: log, now: time.Now,
		control:  make(chan controlEvent, controlBacklog),
		received: make(chan received, receivedBacklog),
		loop:     cfg.Loop,
		settled:  make(chan struct{}),
		done:     make(chan struct{}),
	}
	if in.loop == nil {
		in.loop = NewLoop()
	}
	in.quiet, _ = conn.(QuietConn)
	filter := cfg.Filter
	in.filter.Store(&filter)
	in.dropLog = logBudget{period: time.Second, burst: dropLogBurst}
	in.listLog = logBudget{period: listLogPeriod, burst: listLogBurst}
	in.grid = timerGridFor(cfg.Machine.AdvertInterval)
	in.advAddrs = addrsOf(cfg.VIPs)
	in.status = Status{
		Name: cfg.Name, Interface: cfg.Interface, VRID: cfg.Machine.VRID, Version: cfg.Machine.Version,
		State: vrrp.Init, BasePriority: cfg.Machine.Priority, Priority: cfg.Machine.Priority,
		VIPs: cfg.VIPs,
	}
	if cfg.Drained {
		m.SetDrained(in.now(), true) // before Start: only the priority
		in.status.Drained, in.status.Priority = true, m.Priority()
	}
	rep.SetState(vrrp.Init)
	rep.SetPriority(m.Priority())
	return in, nil
}

// SetDrained drains the instance (true: a MASTER hands its VIPs over make-before-break and the
// instance stays at priority 1, see vrrp.Machine.SetDrained) or undrains it. The channel
// receives one result once the handover has ended, at once when there was none to make. Once
// Run has returned (Done), nothing is applied and the channel is closed without a result; a
// caller racing with the end of Run waits on Done as well.
func (in *Instance) SetDrained(drained bool) <-chan HandoverResult {
	reply := make(chan HandoverResult, 1)
	select {
	case <-in.done: // checked first: send could still queue the event in the buffer
		close(reply)
		return reply
	default:
	}
	if !in.send(controlEvent{drain: &drainRequest{drained: drained, reply: reply}, at: in.now()}) {
		close(reply)
	}
	return reply
}

// SetPriority hands the instance a new effective priority (from the tracked checks). It never
// blocks: the loop applies, in its next turn, the last priority handed over (see latest); before
// Start it waits for the start, and once Run has returned it is never applied.
func (in *Instance) SetPriority(p uint8) {
	at := in.now()
	l := &in.latest
	l.mu.Lock()
	if !l.v.prioritySet {
		l.v.prioritySince = at
	}
	l.v.priority, l.v.prioritySet = p, true
	l.mu.Unlock()
	in.schedule()
}

// Apply hands a running instance a reloaded configuration (see Update) and waits until the loop
// has taken it, so the caller may then detach the VIPs that are no longer configured. It returns
// false, and nothing was applied, when Run has returned.
func (in *Instance) Apply(u *Update) bool {
	if u.Applied == nil {
		u.Applied = make(chan struct{})
	}
	if !in.send(controlEvent{update: u, at: in.now()}) {
		return false
	}
	select {
	case <-u.Applied:
		return true
	case <-in.done:
		// The loop may have taken it in its last turn.
		select {
		case <-u.Applied:
			return true
		default:
			return false
		}
	}
}

// CheckVIPs makes a MASTER check its VIPs in its next turn rather than ReconcileEvery after the
// last check: the daemon calls it when the kernel says a VIP left its interface. It never
// blocks (it runs on the address watch's goroutine): with the control queue full the check
// keeps its usual turn.
func (in *Instance) CheckVIPs() {
	select {
	case in.control <- controlEvent{checkVIPs: true}:
		in.schedule()
	default:
	}
}

// SetFault puts the instance in FAULT (fault true) or takes it out of FAULT. Like SetPriority it
// never blocks, and the last state handed over before a turn is the one applied: a fault
// cleared before the loop took it is no fault.
func (in *Instance) SetFault(fault bool, reason string) {
	at := in.now()
	l := &in.latest
	l.mu.Lock()
	if !l.v.faultSet {
		l.v.faultSince = at
	}
	l.v.fault, l.v.reason, l.v.faultSet = fault, reason, true
	l.mu.Unlock()
	in.schedule()
}

// send queues a control event for the loop; false once Run has returned.
func (in *Instance) send(c controlEvent) bool {
	select {
	case in.control <- c:
		in.schedule()
		return true
	case <-in.done:
		return false
	}
}

// schedule asks the loop for a turn of the instance. It never blocks.
func (in *Instance) schedule() { in.loop.schedule(in) }

// Done is closed when Run has returned.
func (in *Instance) Done() <-chan struct{} { return in.done }

// Settled is closed once the election has an outcome for this node (MASTER, a BACKUP that hears
// a MASTER, or FAULT): the moment systemd is told READY.
func (in *Instance) Settled() <-chan struct{} { return in.settled }

// Overdue is how long ago, at now, the loop should have turned and has not: a watchdog tells a
// stuck loop from a waiting one by it. The loop does not turn only to say it is alive (that
// would be a wake-up per instance per second for nothing): it is due at its next deadline, and
// a loop with no deadline (INIT, FAULT) waits in select and is never overdue.
func (in *Instance) Overdue(now time.Time) time.Duration {
	w := in.wakeAt.Load()
	if w == 0 {
		return 0
	}
	return max(now.Sub(time.Unix(0, w)), 0)
}

// Status returns a snapshot.
func (in *Instance) Status() Status {
	in.mu.Lock()
	defer in.mu.Unlock()
	st := in.status
	st.VIPs = append([]netip.Prefix(nil), st.VIPs...)
	return st
}

// Run is Start, then waiting until the run has ended (Done).
func (in *Instance) Run(ctx context.Context) error {
	in.Start(ctx)
	<-in.done
	return nil
}

// Start removes stale VIPs and starts the machine, on the caller's goroutine; from then on the
// instance runs in turns on its loop (Config.Loop) until ctx is done. Then it releases
// mastership make-before-break (vrrp.Machine.Resign: a priority-0 advert at once, the VIPs kept
// until the new MASTER advertises, at most Machine.LongestMasterDown), detaches them, and Done
// is closed. Start is called once.
func (in *Instance) Start(ctx context.Context) {
	// One reading of the clock for the record, the stale VIPs and Resume: read again for
	// Resume, the record could age past ResumeWindow in between, and the instance started
	// BACKUP with the VIPs that Resumable had spared from RemoveStale.
	now := in.now()
	prev := in.previous(now)
	if !in.machine.Resumable(now, prev) {
		if err := in.vips.RemoveStale(); err != nil {
			in.rep.VIPError(vrrp.ActDetachVIPs)
			in.log.Warn(in.msg("Removing stale VIPs failed"), "err", err)
		}
	}
	in.turn.Lock()
	defer in.turn.Unlock() // HandlePacket only tries the lock
	in.ctx = ctx
	in.loop.add()
	in.timer = in.newTimer()
	in.takeRebind(false)
	in.conn.Receive(in.HandlePacket)
	in.apply(in.machine.Resume(now, prev))
	in.armTimer(in.timer)
	in.stopWatch = context.AfterFunc(ctx, in.schedule)
	in.started.Store(true)
	// Handed over before the start (a priority from the checks): schedule ignored it then.
	// latest is read after started is set, and SetPriority schedules after it stores: one of
	// the two sees the other. The stop likewise: for a context already done, AfterFunc runs
	// the wake-up on a goroutine of its own, which may ask for the turn before started is set.
	if len(in.control) > 0 || len(in.received) > 0 || in.latest.waiting() || ctx.Err() != nil {
		in.schedule()
	}
}

// runTurn is one turn of the instance, on its loop: what the reader handed the machine, the
// stop, a control event, the adverts queued, the timers; then the timer is armed for the next
// deadline.
func (in *Instance) runTurn() {
	in.turn.Lock()
	defer in.turn.Unlock()
	if in.finished.Load() {
		return
	}
	// The watcher's adverts came before anything else this turn handles (see vigil.go).
	if in.vigil {
		in.takeQuiet()
	}
	// What the reader handed the machine meanwhile happened first.
	in.applyPending()
	// Before the fault state: the daemon hands over the new interface's socket, then clears
	// the fault that kept the instance off the dead one.
	in.takeRebind(true)
	if in.steadyTrouble() || (in.steady != nil && in.loop.count() > maxSteadyGroup) {
		// To log and count the failed sends (delegated again at the end of the turn), or
		// more instances run on the loop now than share a sender.
		in.reclaim()
	}
	if !in.stopSeen && in.ctx.Err() != nil {
		in.stopSeen = true
		in.reclaim()
		if in.handover.Load() {
			in.handOver()
			in.finish()
			return
		}
		if in.machine.State() == vrrp.Master {
			in.log.Info(in.msg("Stopping: keeping the VIPs until a new MASTER advertises"),
				"at_most", in.machine.LongestMasterDown())
		}
		in.apply(in.machine.Resign(in.now()))
	} else {
		in.applyLatest()
		// One control event a turn, as they came; another turn for the next.
		select {
		case ctl := <-in.control:
			in.handleControl(ctl)
			if len(in.control) > 0 {
				in.schedule()
			}
		default:
		}
	}
	// Adverts that have already arrived count before any timer fires: after the loop ran
	// late, the master-down timer must not fire between two queued adverts of a live MASTER.
	// The kept ones first: the machine takes them as of when the latest arrived and the queued
	// ones as of now, and a queued one from the MASTER is what came after its steady adverts
	// stopped (its priority 0). Taken after it, the older steady advert cancelled the takeover.
	in.takeQuiet()
	in.takeReceived()
	now := in.readBeforeMasterDown(in.now())
	in.apply(in.machine.Tick(now))
	in.maintainMaster(now)
	in.mu.Lock()
	in.status.MasterAddr = in.machine.MasterAddr()
	in.status.Priority = in.machine.Priority()
	in.mu.Unlock()
	// Settled: the election has an outcome for this node, it is MASTER, it is a BACKUP
	// that hears a MASTER, or it is in FAULT.
	if st := in.machine.State(); st == vrrp.Master || st == vrrp.Fault || (st == vrrp.Backup && in.machine.MasterAddr().IsValid()) {
		in.settle.Do(func() { close(in.settled) })
	}
	if !in.machine.HandingOver() {
		in.answerDrains()
	}
	if in.stopSeen && !in.machine.HandingOver() {
		// The handover has ended (or a fault cut it short): leave for good.
		in.apply(in.machine.Shutdown(in.now()))
		in.finish()
		return
	}
	in.delegate()
	in.watchSteady()
	in.armTimer(in.timer)
}

// finish ends the run, in a turn: no turn is run after it, the drains waiting are answered,
// Done is closed and the transport stops delivering.
func (in *Instance) finish() {
	in.reclaim()
	in.unexpect()
	in.finished.Store(true)
	in.stopWatch()
	in.answerDrains()
	in.timer.Stop()
	in.wakeAt.Store(0)
	close(in.done)
	in.conn.Close() // returns once HandlePacket is not running and will not run again
	in.loop.remove()
	if r := in.rebind.Swap(nil); r != nil { // handed over too late: the caller closes r's
		close(r.done)
	}
}

// rebind is a socket and announcer for an interface created again (Rebind).
type rebind struct {
	conn     Conn      // nil: keep the current conn and announcer
	announce Announcer // with conn
	source   netip.Addr
	done     chan struct{}
}

// SourceConn is a Conn whose source address can change in place (package vrrp/transport's
// Member): Rebind with a new source and no new conn needs one.
type SourceConn interface {
	Conn
	// SetSource makes the adverts leave from src; called in the instance's turn.
	SetSource(src netip.Addr)
}

// Rebind moves the instance onto conn and announce, opened on its interface as it is now. An
// interface deleted and created again under the same name (ifupdown or networkd bringing a VLAN
// or bond back) is a new interface with a new index, and the socket and announcer opened on the
// old one hear and send nothing any more: a BACKUP left on them would hear no MASTER and become
// a second one. The daemon keeps the instance in FAULT until it has handed the new ones over.
//
// It never blocks. The instance takes them in its next turn, which Rebind asks for, and closes
// its old conn; the channel is closed then, and the caller may close the old announcer. If Run
// has ended first, the channel is closed without the swap, and conn and announce stay the
// caller's to close. A newer Rebind before the turn replaces an older one, which is then
// closed at once, unused.
//
// source, when valid, is the address the adverts leave from from now on, which is also the
// state machine's own address for equal-priority ties (vrrp.Machine.SetPrimaryAddr): the
// interface came back with another address, or was renumbered in place. For the latter conn
// and announce are nil: the instance keeps them and changes their source (SourceConn).
func (in *Instance) Rebind(conn Conn, announce Announcer, source netip.Addr) <-chan struct{} {
	r := &rebind{conn: conn, announce: announce, source: source, done: make(chan struct{})}
	if old := in.rebind.Swap(r); old != nil {
		if old.conn != nil {
			old.conn.Close()
		}
		if c, ok := old.announce.(io.Closer); ok {
			c.Close()
		}
		close(old.done)
	}
	if in.finished.Load() {
		if in.rebind.CompareAndSwap(r, nil) {
			close(r.done)
		}
		return r.done
	}
	in.schedule()
	return r.done
}

// takeRebind swaps in the socket and announcer handed over by Rebind, if any. Called with turn
// held; started says whether the old conn is delivering to HandlePacket already.
func (in *Instance) takeRebind(started bool) {
	r := in.rebind.Swap(nil)
	if r == nil {
		return
	}
	in.reclaim() // the sender writes to the old socket, from the old source
	if r.conn != nil {
		in.unexpect() // the MASTER's steady adverts were expected on the old socket
		old := in.conn
		in.conn, in.announce = r.conn, r.announce
		in.quiet, _ = r.conn.(QuietConn)
		if started {
			in.conn.Receive(in.HandlePacket)
		}
		old.Close() // returns once HandlePacket is not running from it: it only tries turn
		in.log.Info(in.msg("Listening on " + in.cfg.Interface + " as it is now"))
	}
	if r.source.IsValid() && r.source != in.cfg.Source {
		if r.conn == nil {
			if sc, ok := in.conn.(SourceConn); ok {
				sc.SetSource(r.source)
			}
		}
		in.log.Info(in.msg("Sending from "+r.source.String()+", the address of "+in.cfg.Interface+" now"), "was", in.cfg.Source)
		in.cfg.Source = r.source
		in.machine.SetPrimaryAddr(r.source)
	}
	close(r.done)
}

// applyPending carries out what the reader's Receive calls returned. Called with turn held.
func (in *Instance) applyPending() {
	if len(in.pending) == 0 {
		return
	}
	in.apply(in.pending)
	clear(in.pending) // keep no addresses alive
	in.pending = in.pending[:0]
}

// receiveInline hands an advert to the machine on the reader's goroutine, with turn held, and
// wakes the loop only when there is something for it to do: actions to carry out, a new MASTER
// to show in status, or a deadline earlier than the one it waits for.
func (in *Instance) receiveInline(at time.Time, src netip.Addr, adv vrrp.Advert, payload []byte) {
	in.reclaim()
	master := in.machine.MasterAddr()
	acts := in.machine.Receive(at, src, adv)
	in.expectSteady(src, &adv, acts, payload)
	in.pending = append(in.pending, acts...)
	wake := len(acts) > 0 || in.machine.MasterAddr() != master
	if dl := in.machine.NextDeadline(); !wake && !dl.IsZero() {
		w := in.wakeAt.Load()
		wake = w == 0 || onGrid(dl, in.grid).UnixNano() < w
	}
	if wake {
		in.schedule()
		return
	}
	if in.timer != nil {
		// The deadline moved later: re-arm here rather than let the loop wake at the old one
		// only to re-arm. A re-arm is a heap update (and at most one timerfd_settime); a wasted
		// turn is a thread woken from epoll and two goroutine switches.
		in.armTimer(in.timer)
	}
}

// takeReceived hands the machine the adverts the reader queued for the loop.
func (in *Instance) takeReceived() {
	for {
		select {
		case r := <-in.received:
			in.receive(r)
		default:
			return
		}
	}
}

// readBeforeMasterDown reads the socket before a BACKUP's master-down deadline, due now, takes
// effect (PendingConn), and returns the time to tick at. After the whole process ran late (a
// stall, a busy core), the Go scheduler ran the loop, woken by its timer, before the reader
// woken by the same poll: the MASTER's adverts that arrived meanwhile were still queued on the
// socket, and the BACKUP went MASTER and back (TestStalledBackupKeepsBackup, a BACKUP of 40
// instances stopped 5 times: 42 transitions at 100 ms for 800 ms, and 42 at 50 ms for 400 ms;
// keepalived beside it, none).
// keepalived reads its socket before it looks at its timeouts. Only when the deadline is due:
// in a steady state it never comes, and at a real takeover the read finds nothing.
func (in *Instance) readBeforeMasterDown(now time.Time) time.Time {
	if in.machine.State() != vrrp.Backup {
		return now
	}
	if dl := in.machine.NextDeadline(); dl.IsZero() || now.Before(dl) {
		return now
	}
	p, ok := in.conn.(PendingConn)
	if !ok {
		return now
	}
	// This instance's adverts come back through HandlePacket to in.received (its turn is
	// ours); the other instances of the socket take theirs inline, as from the reader.
	p.ReadPending()
	in.takeReceived()
	return in.now()
}

// receive hands an advert to the machine as of now, when the loop takes it, rather than as of
// its arrival: on a machine so loaded that the loop runs tens of milliseconds late, timing by
// arrival left the master-down timer already expired when the MASTER's advert was taken, and a
// BACKUP at 20 ms adverts went MASTER and back for every queued advert (seen in make
// bench-scale, 50 instances). keepalived, too, restarts the timer when it reads the advert.
func (in *Instance) receive(r received) {
	in.reclaim()
	in.apply(in.machine.Receive(in.now(), r.src, r.advert))
}

// HandOver makes Run, when its context ends, leave the instance as it is for the next image of
// hapair (an in-place upgrade) rather than shut it down: a MASTER sends one last advert, so that
// the next image has a full ResumeWindow, and keeps its VIPs; no priority-0 advert, no
// transition.
func (in *Instance) HandOver() { in.handover.Store(true) }

func (in *Instance) handOver() {
	if in.machine.State() == vrrp.Master {
		in.sendAdvert(in.machine.Priority())
		if in.cfg.Record != nil && !in.recordsAdverts() {
			// The next image starts at once and reads the record: its last advert goes on it
			// whatever the interval.
			in.cfg.Record.Record(vrrp.Master, in.machine.Priority(), true)
		}
	}
	in.log.Info(in.msg("Handing over in " + in.machine.State().String() + " STATE to the next image"))
}

// fastestRestart is the soonest a crashed hapair runs again: systemd's RestartSec at its default
// (the shipped unit has 1 s).
const fastestRestart = 100 * time.Millisecond

// recordsAdverts says whether every advert's time goes to the state record. A restarted hapair
// resumes as MASTER only within the machine's ResumeWindow (2.75 advert intervals) of the last
// advert, and after a crash it is back no sooner than fastestRestart: with a shorter window
// (advert_int below about 36 ms) a crash can never resume, and the write would buy nothing (a
// pwrite per advert: 0.01 to 0.05 s of CPU a minute for one MASTER at 20 ms in A/B runs on the
// lab VM). State changes are still recorded, and so is the last advert of an upgrade's handover,
// whose next image starts at once.
func (in *Instance) recordsAdverts() bool { return in.machine.ResumeWindow() > fastestRestart }

// previous reads the state record as of now, and whether every VIP is still attached, for Resume.
func (in *Instance) previous(now time.Time) *vrrp.Previous {
	if in.cfg.Previous == nil {
		return nil
	}
	prev := in.cfg.Previous(now)
	if prev == nil || prev.State != vrrp.Master {
		return prev
	}
	missing, err := in.vips.Missing()
	prev.VIPsAttached = err == nil && len(missing) == 0
	if !prev.VIPsAttached {
		in.log.Info(in.msg("Was MASTER, but the VIPs are gone: starting as usual"),
			"ago", now.Sub(prev.LastAdvert).Round(time.Millisecond), "missing", fmt.Sprint(missing))
	}
	return prev
}

// answerDrains tells the SetDrained callers waiting what the drain came to.
func (in *Instance) answerDrains() {
	if len(in.drainReplies) == 0 {
		return
	}
	res := HandoverResult{HandedOver: in.handedTo.IsValid(), State: in.machine.State(), MasterAddr: in.machine.MasterAddr()}
	for _, r := range in.drainReplies {
		r <- res
	}
	in.drainReplies = nil
}

func (in *Instance) handleControl(c controlEvent) {
	if c.checkVIPs {
		in.nextReconcile = time.Time{} // maintainMaster, later in this turn, checks
		return
	}
	in.reclaim() // a reload's new VIPs or a drain's priority change the adverts
	if c.update != nil {
		in.applyUpdate(c.update)
		return
	}
	if c.drain != nil {
		in.handedTo = netip.Addr{}
		old := in.machine.Priority()
		in.apply(in.machine.SetDrained(c.at, c.drain.drained))
		if now := in.machine.Priority(); now != old {
			in.rep.SetPriority(now)
			why := "undrained"
			if c.drain.drained {
				why = "drained"
			}
			in.log.Info(in.msg(fmt.Sprintf("Changing effective priority from %d to %d", old, now)), "why", why)
		}
		in.mu.Lock()
		in.status.Drained = in.machine.Drained()
		in.mu.Unlock()
		in.drainReplies = append(in.drainReplies, c.drain.reply)
	}
}

// applyLatest applies the fault state and the priority handed over since the last turn, the
// newest of each (see latest): the fault state first, as the daemon hands them over. Each
// ends as it was handed last whichever comes first, since the machine keeps the priority in
// FAULT and leaves FAULT for BACKUP, never straight for MASTER.
func (in *Instance) applyLatest() {
	l := &in.latest
	l.mu.Lock()
	v := l.v
	l.v = latestValues{}
	l.mu.Unlock()
	if v.faultSet {
		in.applyFault(v.faultSince, v.fault, v.reason)
	}
	if v.prioritySet {
		in.applyPriority(v.prioritySince, v.priority)
	}
}

// applyFault enters or leaves FAULT for a fault state handed over at.
func (in *Instance) applyFault(at time.Time, fault bool, reason string) {
	in.reclaim()
	if fault && in.machine.State() == vrrp.Master {
		// The release figure runs from the failure being seen to the advert that tells the backup.
		in.releaseSince = at
	}
	in.setFaultReason(fault, reason)
	in.apply(in.machine.SetFault(at, fault, reason))
	in.releaseSince = time.Time{}
}

// applyPriority takes an effective priority handed over at.
func (in *Instance) applyPriority(at time.Time, priority uint8) {
	in.reclaim()
	old := in.machine.Priority()
	if priority < old && in.machine.State() == vrrp.Master {
		in.releaseSince = at // as in applyFault
	}
	actions := in.machine.SetPriority(at, priority)
	in.rep.SetPriority(in.machine.Priority())
	if now := in.machine.Priority(); now != old {
		in.log.Info(in.msg(fmt.Sprintf("Changing effective priority from %d to %d", old, now)))
	}
	in.apply(actions)
	in.releaseSince = time.Time{}
}

func (in *Instance) applyUpdate(u *Update) {
	defer close(u.Applied)
	// The next advert goes through the new filter whole; those kept meanwhile were heard.
	in.takeQuiet()
	in.unexpect()
	in.cfg.VIPs = u.VIPs
	in.advAddrs = addrsOf(u.VIPs)
	if f := *in.filter.Load(); len(f.Addrs) > 0 {
		// The address check follows the VIPs; HandlePacket picks the new filter up with its
		// next packet.
		f.Addrs = addrsOf(u.VIPs)
		in.filter.Store(&f)
	}
	in.cfg.GARPRepeat, in.cfg.GARPDelay = u.GARPRepeat, u.GARPDelay
	in.notify = u.Notifier
	in.vips = u.Manager
	in.mu.Lock()
	in.status.BasePriority = u.BasePriority
	in.status.VIPs = u.VIPs
	in.mu.Unlock()
	if in.machine.State() == vrrp.Master {
		if err := in.vips.Attach(); err != nil {
			in.rep.VIPError(vrrp.ActAttachVIPs)
			in.log.Error(in.msg("Attaching VIPs failed"), "err", err)
		}
		in.sendGARP()
	}
}

// The loop's wake-ups sit on a grid of the clock, so that the instances whose deadlines fall in
// the same slot wake the process once, not once each: one timerfd expiry, one thread woken, the
// loops run back to back. A deadline is then up to one slot late, but not the next one: the
// machine counts each deadline from the previous deadline, not from when Tick ran.
//
// The slot is a tenth of the advert interval, at least a millisecond and at most 50 ms: 255
// instances wake the process at most 10 times per interval instead of 255, and their adverts
// leave in as many bursts, so that a BACKUP's reader, too, wakes once per burst rather than
// once per advert. The cost is a constant phase, not jitter: the interval is a whole number of
// slots, so every advert of an instance is late by the same fraction of a slot and the gaps
// between its adverts stay exactly the interval. A BACKUP's master-down deadline rounds up as
// well, by at most a tenth of an interval, against three intervals and the skew.
const (
	minTimerGrid      = time.Millisecond
	maxTimerGrid      = 50 * time.Millisecond
	timerGridFraction = 10
)

// timerGridFor is the grid of an instance advertising every interval.
func timerGridFor(interval time.Duration) time.Duration {
	return min(max(interval/timerGridFraction, minTimerGrid), maxTimerGrid)
}

// reconcileGrid is the grid of a MASTER's VIP checks, coarser: they need no precision, and on
// it the checks of every instance share at most 10 wake-ups a second.
const reconcileGrid = 100 * time.Millisecond

// onGrid rounds t up to the next multiple of grid.
func onGrid(t time.Time, grid time.Duration) time.Time {
	if r := time.Duration(t.UnixNano() % int64(grid)); r > 0 {
		return t.Add(grid - r)
	} else if r < 0 {
		return t.Add(-r)
	}
	return t
}

func (in *Instance) armTimer(t Timer) {
	if in.vigil {
		// The watcher wakes the loop when the adverts stop; the machine's deadline is behind
		// the adverts it read.
		in.wakeAt.Store(0)
		t.Stop()
		return
	}
	deadline := in.machine.NextDeadline()
	if !in.nextGARP.IsZero() && (deadline.IsZero() || in.nextGARP.Before(deadline)) {
		deadline = in.nextGARP
	}
	if in.machine.State() == vrrp.Master && (deadline.IsZero() || (in.nextReconcile.Before(deadline) && !in.checksRideAdverts())) {
		deadline = in.nextReconcile
	}
	if deadline.IsZero() {
		// Nothing to do until an advert or a control event comes (INIT, FAULT): no wake-up.
		// The watchdog knows a waiting loop from a stuck one by wakeAt (Overdue).
		in.wakeAt.Store(0)
		t.Stop()
		return
	}
	now := in.now()
	wake := onGrid(deadline, in.grid)
	if w := in.quietWake(now); !w.IsZero() && w.Before(wake) {
		wake = w
	}
	in.wakeAt.Store(wake.UnixNano())
	t.Reset(max(wake.Sub(now), 0))
}

// A BACKUP that expects its MASTER's adverts (they queue unread: takeQuiet) learns of them only
// when it wakes, and must wake by its master-down deadline. It wakes instead just after the last
// advert due before that deadline: quietWakeLag after the time it is due, on a grid of
// quietWakeSlot so that the instances of one burst of adverts share the wake-up.
//
// The wake-ups are as many as before (every three intervals: each finds three new adverts and
// moves the deadline on by as much) and none is later. What changes is that the process wakes
// a moment after a packet came in rather than most of an interval after it, while the CPU is
// still awake and its caches warm from delivering it; at one instance that made a BACKUP a fifth
// to a third cheaper in the lab (20 ms to 100 ms adverts; docs/performance.md). Should the advert be
// late (the MASTER's host busy), the wake-up finds one advert fewer and the next comes an
// interval sooner; should the MASTER have gone silent, it finds none and the timer waits for
// the deadline.
const (
	quietWakeLag  = 300 * time.Microsecond
	quietWakeSlot = time.Millisecond
)

// quietWake is when a BACKUP expecting its MASTER's adverts wakes before its master-down
// deadline (see quietWakeLag); zero when it does not expect them, or that advert is already
// past: it did not come in time and the deadline is what is left to wait for.
func (in *Instance) quietWake(now time.Time) time.Time {
	if in.expect == nil {
		return time.Time{}
	}
	due := in.machine.LastAdvertDue()
	if due.IsZero() {
		return time.Time{}
	}
	if w := onGrid(due.Add(quietWakeLag), quietWakeSlot); w.After(now) {
		return w
	}
	return time.Time{}
}

// checksRideAdverts: a MASTER advertises at least as often as it checks its VIPs, so a check
// needs no wake-up of its own: it is made in the advert's turn before it falls due
// (checkBeforeNextTurn), up to one advert interval early. A wake-up costs a thread woken from
// epoll; one instance at 1 s adverts woke twice a second, once for each.
func (in *Instance) checksRideAdverts() bool {
	return in.cfg.Machine.AdvertInterval <= in.cfg.ReconcileEvery
}

// checkBeforeNextTurn: the VIP check falls due before the loop's next deadline, and is made now
// rather than late, in this turn. Only when checksRideAdverts.
func (in *Instance) checkBeforeNextTurn() bool {
	if !in.checksRideAdverts() {
		return false
	}
	next := in.machine.NextDeadline()
	return !next.IsZero() && onGrid(next, in.grid).After(in.nextReconcile)
}

// maintainMaster sends the delayed GARP burst and puts back a VIP removed by hand.
func (in *Instance) maintainMaster(now time.Time) {
	if in.machine.State() != vrrp.Master {
		in.nextGARP = time.Time{}
		return
	}
	if !in.nextGARP.IsZero() && !now.Before(in.nextGARP) {
		in.nextGARP = time.Time{}
		in.sendGARP()
	}
	if now.Before(in.nextReconcile) && !in.checkBeforeNextTurn() {
		return
	}
	in.nextReconcile = in.reconcileAt(now)
	missing, err := in.vips.Missing()
	if err != nil {
		in.log.Warn(in.msg("Checking VIPs failed"), "err", err)
		return
	}
	if len(missing) == 0 {
		return
	}
	in.log.Warn(in.msg("VIPs missing while MASTER, attaching them again"), "missing", fmt.Sprint(missing))
	if err := in.vips.Attach(); err != nil {
		in.rep.VIPError(vrrp.ActAttachVIPs)
		in.log.Error(in.msg("Attaching VIPs failed"), "err", err)
		return
	}
	in.sendGARP()
}

// HandlePacket parses and filters one packet for this instance and hands an accepted advert to
// the loop. The transport calls it on its reader goroutine, shared by every instance on the
// socket: it never blocks and, for an accepted advert, does not allocate.
func (in *Instance) HandlePacket(payload []byte, src, dst netip.Addr, ttl int) {
	at := in.now()
	filter := in.filter.Load()
	err := in.rx.Unmarshal(payload, src, dst)
	if err == nil {
		err = filter.Check(ttl, src, dst, &in.rx)
	}
	if err != nil {
		in.dropped(at, src, &in.rx, err)
		return
	}
	if in.noteAddrList(filter, src, &in.rx) {
		// Every advert of a differing list is counted as one (AddrListMismatch): none is
		// expected (expectSteady).
		payload = nil
	}
	in.rep.AdvertReceived(in.rx.Priority)
	adv := in.rx
	adv.Addrs = nil
	// At once, unless the loop is in a turn or adverts already wait for it (they go first).
	if len(in.received) == 0 && in.turn.TryLock() {
		if !in.vigil {
			in.receiveInline(at, src, adv, payload) // at: read once per packet, on arrival
			in.turn.Unlock()
			return
		}
		// The watcher holds adverts the machine has not seen: this one goes after them, in a
		// turn (see vigil.go).
		in.turn.Unlock()
	}
	select {
	case in.received <- received{advert: adv, src: src}:
		in.schedule()
	default:
		in.rep.Dropped(vrrp.DropOther)
		// A flood of valid adverts fills the queue: the same budget as other drops.
		if in.log.Enabled(context.Background(), slog.LevelDebug) {
			if ok, missed := in.dropLog.take(at); ok {
				if missed > 0 {
					in.log.Debug(in.msg("more dropped packets not logged"), "missed", missed, "burst", in.dropLog.burst, "per", in.dropLog.period)
				}
				in.log.Debug(in.msg("dropped advert: the loop's queue is full"), "from", src, "queued", receivedBacklog)
			}
		}
	}
}

// dropLogBurst is how many dropped packets a second are logged at debug level; the rest are
// counted in one line, so that --debug under a flood stays readable and cheap.
const dropLogBurst = 5

// listLogBurst lines a listLogPeriod at most about address lists (dropped or differing), on top
// of vrrp.ListNotes' once per sender and change: ListNotes forgets past its bounds and when a
// sender falls back in line, and a forger rotating sources or lists would have a line logged
// for every advert.
const (
	listLogBurst  = 5
	listLogPeriod = time.Minute
)

func (in *Instance) dropped(at time.Time, src netip.Addr, adv *vrrp.Advert, err error) {
	reason := vrrp.ReasonOf(err)
	switch reason {
	case vrrp.DropVRID:
		// Other groups on the same segment are normal traffic, not an error; count quietly.
		in.rep.Dropped(reason)
		return
	case vrrp.DropAddrs:
		// A peer misconfigured with our VRID (or a forger) sends every interval: one line per
		// sender and change of its list, whatever the log level.
		in.rep.Dropped(reason)
		if in.listNotes.Note(src, "drop", adv.Addrs) {
			if ok, missed := in.listLog.take(at); ok {
				in.log.Warn(in.msg("ignoring adverts: ip address associated with VRID not present in MASTER advert (logged once until the sender's list changes)"),
					append([]any{"from", src, "err", err}, heldBack(missed)...)...)
			}
		}
		return
	case "":
		reason = vrrp.DropOther
	}
	in.rep.Dropped(reason)
	if !in.log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	ok, missed := in.dropLog.take(at)
	if !ok {
		return
	}
	if missed > 0 {
		in.log.Debug(in.msg("more dropped packets not logged"), "missed", missed, "burst", in.dropLog.burst, "per", in.dropLog.period)
	}
	in.log.Debug(in.msg("dropped advert"), "from", src, "err", err)
}

// noteAddrList counts and logs, once per sender and change, an accepted advert whose address
// list differs from ours: a VIP change reloaded on one host and not yet on the other.
func (in *Instance) noteAddrList(f *vrrp.Filter, src netip.Addr, adv *vrrp.Advert) (differs bool) {
	if len(f.Addrs) == 0 {
		return false
	}
	if !f.Differs(adv) {
		in.listNotes.Note(src, "", nil)
		return false
	}
	in.rep.AddrListMismatch()
	if in.listNotes.Note(src, "mismatch", adv.Addrs) {
		if ok, missed := in.listLog.take(in.now()); ok {
			in.log.Warn(in.msg("accepted an advert whose address list differs from ours, as the lists overlap (a VIP change applied on one host only?; logged once until the sender's list changes)"),
				append([]any{"from", src, "theirs", fmt.Sprint(adv.Addrs), "ours", fmt.Sprint(f.Addrs)}, heldBack(missed)...)...)
		}
	}
	return true
}

// heldBack is the attribute saying how many address-list lines the budget held back, if any.
func heldBack(missed int) []any {
	if missed == 0 {
		return nil
	}
	return []any{"not_logged", missed}
}

// logBudget lets at most burst lines through per period and counts the others.
type logBudget struct {
	period time.Duration
	burst  int

	start  time.Time
	used   int
	missed int
}

// take reports whether a line may be logged at now and, the first time it may after lines
// were held back, how many were.
func (b *logBudget) take(now time.Time) (ok bool, missed int) {
	if now.Sub(b.start) >= b.period || now.Before(b.start) {
		b.start, b.used = now, 0
	}
	if b.used >= b.burst {
		b.missed++
		return false, 0
	}
	b.used++
	missed, b.missed = b.missed, 0
	return true, missed
}

func (in *Instance) apply(actions []vrrp.Action) {
	for _, a := range actions {
		switch a.Kind {
		case vrrp.ActTransition:
			in.transition(a)
		case vrrp.ActSendAdvert:
			in.sendAdvert(a.Priority)
		case vrrp.ActAttachVIPs:
			if err := in.vips.Attach(); err != nil {
				in.rep.VIPError(vrrp.ActAttachVIPs)
				in.log.Error(in.msg("Attaching VIPs failed"), "err", err)
			}
			in.nextReconcile = in.reconcileAt(in.now())
		case vrrp.ActDetachVIPs:
			in.nextGARP = time.Time{}
			if err := in.vips.Detach(); err != nil {
				in.rep.VIPError(vrrp.ActDetachVIPs)
				in.log.Error(in.msg("Detaching VIPs failed"), "err", err)
			}
		case vrrp.ActSendGARP:
			in.garpRound = 0
			in.sendGARP()
		case vrrp.ActHandoverDone:
			in.handoverDone(a)
		}
	}
}

// handoverDone logs how a make-before-break handover ended.
func (in *Instance) handoverDone(a vrrp.Action) {
	took := in.now().Sub(a.Since).Round(time.Millisecond)
	in.handedTo = a.HandedTo
	switch {
	case a.HandedTo.IsValid():
		in.log.Info(in.msg("New MASTER advertised after our priority 0: VIPs released"), "master", a.HandedTo, "after", took)
	case in.machine.State() == vrrp.Master:
		in.log.Warn(in.msg("No new MASTER after our priority 0: keeping the VIPs, still MASTER"),
			"after", took, "priority", in.machine.Priority())
	default:
		in.log.Warn(in.msg("No new MASTER after our priority 0: VIPs released anyway"), "after", took)
	}
}

func (in *Instance) transition(a vrrp.Action) {
	in.unexpect() // only a BACKUP expects, and only what it heard in that state
	now := in.now()
	msg := "Entering " + a.To.String() + " STATE"
	if a.From == vrrp.Init && a.To == vrrp.Backup {
		msg += " (init)"
	}
	if a.To == vrrp.Init {
		msg = "Stopped"
	}
	in.log.Info(in.msg(msg), "reason", a.Reason, "priority", in.machine.Priority())
	if in.cfg.Record != nil {
		in.cfg.Record.Record(a.To, in.machine.Priority(), false)
	}
	in.rep.SetState(a.To)
	in.rep.Transition(a.From, a.To)
	if a.To == vrrp.Master && a.Reason == vrrp.ReasonResume {
		in.log.Info(in.msg("Resumed MASTER from its state record: VIPs kept"))
	} else if a.To == vrrp.Master {
		in.takeoverSince = a.Since
		if in.takeoverSince.IsZero() {
			in.takeoverSince = now
		}
	}
	in.mu.Lock()
	in.status.State = a.To
	// With the state, so that a status never shows the new state with the old MASTER.
	in.status.MasterAddr = in.machine.MasterAddr()
	in.status.Since = now
	in.status.LastTransition = Transition{From: a.From, To: a.To, Reason: a.Reason, At: now}
	in.mu.Unlock()
	if in.notify != nil {
		in.notify.Notify(in.cfg.Name, a.To, in.machine.Priority())
	}
}

// advert is the instance's advert with priority.
func (in *Instance) advert(priority uint8) vrrp.Advert {
	adv := vrrp.Advert{
		Version:  in.cfg.Machine.Version,
		VRID:     in.cfg.Machine.VRID,
		Priority: priority,
		Interval: in.cfg.Machine.AdvertInterval,
		AuthType: in.cfg.AuthType,
		Addrs:    in.advAddrs,
	}
	copy(adv.AuthData[:], in.cfg.AuthPass)
	return adv
}

func (in *Instance) sendAdvert(priority uint8) {
	adv := in.advert(priority)
	if err := in.write(&adv); err != nil {
		in.sendFailed(err)
		return
	}
	if in.sendErrs.total > 0 {
		in.sendWorksAgain()
	}
	in.rep.AdvertSent(priority)
	if in.cfg.Record != nil && in.recordsAdverts() {
		in.cfg.Record.Record(in.machine.State(), priority, true)
	}
	if priority == 0 {
		in.log.Info(in.msg("sent 0 priority"))
	}
	if !in.releaseSince.IsZero() && (priority == 0 || in.machine.State() == vrrp.Master) {
		in.rep.ObserveRelease(in.now().Sub(in.releaseSince))
		in.releaseSince = time.Time{}
	}
}

// sendErrLogPeriod is how often, at most, a run of failed adverts is logged after its first.
const sendErrLogPeriod = 10 * time.Second

// sendFailures is a run of adverts that could not be sent, for the log. A link whose transmit
// queue stays full fails every advert (a raw socket answers ENOBUFS at once), and a line each
// was 50 lines a second at advert_int 20 ms: the first failure is logged at once, then at most
// one line per sendErrLogPeriod with how many failed since the last, then one line when an
// advert leaves again. Every failure is counted (AdvertSendError) whatever is logged.
type sendFailures struct {
	total    int       // failures in the run; 0: sending works
	since    time.Time // the run's first failure
	lastLine time.Time // when a line about the run was last logged
	unlogged int       // failures since lastLine
}

// sendFailed counts a failed advert and logs it within the budget of sendFailures. It does not
// allocate when it does not log.
func (in *Instance) sendFailed(err error) {
	in.rep.AdvertSendError()
	now, f := in.now(), &in.sendErrs
	f.total++
	if f.total == 1 {
		f.since, f.lastLine = now, now
		in.log.Warn(in.msg("Sending advert failed"), "err", err)
		return
	}
	f.unlogged++
	if now.Sub(f.lastLine) < sendErrLogPeriod {
		return
	}
	in.log.Warn(in.msg("Sending adverts still failing"), "failed", f.unlogged,
		"in", now.Sub(f.lastLine).Round(time.Millisecond), "err", err)
	f.lastLine, f.unlogged = now, 0
}

// sendWorksAgain ends a run of failed adverts: an advert has left.
func (in *Instance) sendWorksAgain() {
	f := &in.sendErrs
	in.log.Info(in.msg("Sending adverts works again"), "failed", f.total,
		"for", in.now().Sub(f.since).Round(time.Millisecond))
	*f = sendFailures{}
}

// write sends one advert to the multicast group, or to each unicast peer. With v3 over IPv4 the
// checksum covers the destination address, so a peer-addressed transport gets one payload each.
func (in *Instance) write(adv *vrrp.Advert) error {
	// Only with several peers: the type assertion is a lookup in the runtime's itab table,
	// which after an interval asleep is a cache miss at every advert.
	if len(in.cfg.Destination) > 1 {
		if perPeer, ok := in.conn.(PeerWriter); ok {
			// Every peer gets its advert even when one of them cannot (no route to it, a full
			// queue): a peer left out would take the VIP. The first failure is the one reported.
			var first error
			for _, dst := range in.cfg.Destination {
				payload, err := adv.Append(in.txBuf[:0], in.cfg.Source, dst, in.cfg.Checksum)
				if err != nil {
					return fmt.Errorf("build advert: %w", err)
				}
				in.txBuf = payload
				if err := perPeer.WriteAdvertTo(payload, dst); err != nil && first == nil {
					first = err
				}
			}
			return first
		}
	}
	payload, err := adv.Append(in.txBuf[:0], in.cfg.Source, in.cfg.Destination[0], in.cfg.Checksum)
	if err != nil {
		return fmt.Errorf("build advert: %w", err)
	}
	in.txBuf = payload
	return in.conn.WriteAdvert(payload)
}

// sendGARP sends one burst: GARPRepeat announcements of every VIP.
func (in *Instance) sendGARP() {
	for range max(in.cfg.GARPRepeat, 1) {
		n, err := in.announce.Announce(in.cfg.VIPs)
		if n > 0 {
			in.rep.GARPSent(n)
		}
		if err != nil {
			in.log.Warn(in.msg("Gratuitous ARP failed"), "err", err)
			break
		}
	}
	in.garpRound++
	if !in.takeoverSince.IsZero() {
		d := in.now().Sub(in.takeoverSince)
		in.rep.ObserveTakeover(d)
		in.log.Info(in.msg("took over"), "in", d.Round(time.Millisecond))
		in.takeoverSince = time.Time{}
	}
	if in.garpRound == 1 && in.cfg.GARPDelay > 0 {
		in.nextGARP = in.now().Add(in.cfg.GARPDelay)
	}
}

// addrsOf returns the addresses of vips, as an advert lists them.
func addrsOf(vips []netip.Prefix) []netip.Addr {
	out := make([]netip.Addr, 0, len(vips))
	for _, p := range vips {
		out = append(out, p.Addr())
	}
	return out
}

func (in *Instance) setFaultReason(fault bool, reason string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if fault {
		in.status.Fault = reason
	} else {
		in.status.Fault = ""
	}
}

// msg prefixes a message with the instance's name, as keepalived writes its lines:
// "(VI_LOGS) Entering MASTER STATE". Values go in attributes, not in the message.
func (in *Instance) msg(text string) string { return "(" + in.cfg.Name + ") " + text }

// reconcileAt is when a MASTER checks its VIPs next: ReconcileEvery on, on reconcileGrid,
// so that the checks of all instances share wake-ups.
func (in *Instance) reconcileAt(now time.Time) time.Time {
	every := in.cfg.ReconcileEvery
	if in.machine.Delegated() {
		every = max(every, steadyReconcileEvery)
	}
	return onGrid(now.Add(every), min(reconcileGrid, in.cfg.ReconcileEvery))
}

// expected is the advert a BACKUP expects (expectSteady).
type expected struct {
	src     netip.Addr
	advert  vrrp.Advert // fed to the machine for the adverts Quiet reports (no Addrs)
	prio    uint8       // our priority when it was set
	payload []byte
}

// expectSteady hands the transport the bytes of an advert that this BACKUP accepted from its
// MASTER and that changed nothing: the identical ones that follow, every interval, are then
// kept away from the reader and read when the instance wakes (takeQuiet; see quietWakeLag), so
// that the process wakes once every three intervals instead of once per advert. Whatever
// differs (another priority, a priority-0 advert, another sender, a malformed packet) still
// comes through HandlePacket at once. Called with turn held.
//
// Only for an advert that outranks us (one we would preempt must be seen as it comes) and whose
// address list is ours (payload nil: it differs, and each one is counted).
func (in *Instance) expectSteady(src netip.Addr, adv *vrrp.Advert, acts []vrrp.Action, payload []byte) {
	if in.quiet == nil {
		return
	}
	steady := payload != nil && len(acts) == 0 && in.machine.State() == vrrp.Backup &&
		in.machine.MasterAddr() == src && adv.Priority > in.machine.Priority()
	e := in.expect
	if !steady {
		if e != nil && src == e.src {
			in.unexpect()
		}
		return
	}
	if e != nil && e.src == src && bytes.Equal(e.payload, payload) {
		return
	}
	if err := in.quiet.Expect(src, payload); err != nil {
		// The transport cannot (IPv6, a long address list, enough instances on the socket
		// expecting already): every advert comes as before, for the rest of the run.
		in.log.Debug(in.msg("adverts go through the reader one by one"), "why", err)
		in.unexpect()
		in.quiet = nil
		return
	}
	in.expect = &expected{src: src, advert: *adv, prio: in.machine.Priority(), payload: bytes.Clone(payload)}
}

// unexpect gives the MASTER's adverts back to the reader. What the transport kept meanwhile is
// counted, not weighed: a caller to whom it matters takes it first (takeQuiet); the machine is
// not called here, so that a transition may unexpect while its actions are carried out. Called
// with turn held.
func (in *Instance) unexpect() {
	e := in.expect
	if e == nil {
		return
	}
	in.expect = nil
	counted := in.endVigil()
	_, n := in.quiet.Quiet()
	in.quiet.Unexpect()
	for range n - counted {
		in.rep.AdvertReceived(e.advert.Priority)
	}
}

// takeQuiet hands the machine the expected adverts the transport kept away since the last
// turn, as one advert at the time of the latest: the machine restarts its master-down timer
// from it, as it would have from each. When this instance is no longer a BACKUP or its own
// priority has changed since, the adverts go back to the reader, to be weighed one by one.
// Called with turn held, never while actions are carried out.
func (in *Instance) takeQuiet() {
	e := in.expect
	if e == nil {
		return
	}
	counted := in.endVigil()
	if at, n := in.quiet.Quiet(); n > 0 {
		for range n - counted {
			in.rep.AdvertReceived(e.advert.Priority)
		}
		in.reclaim() // a BACKUP's: never delegated, but Receive is not Tick
		in.apply(in.machine.Receive(at, e.src, e.advert))
	}
	if in.machine.State() != vrrp.Backup || in.machine.Priority() != e.prio {
		in.unexpect()
	}
}
