package vrrp

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// OwnerPriority is the priority of the router that owns the virtual addresses (RFC 5798
// section 5.2.4): it becomes Master at once on start and always preempts.
const OwnerPriority uint8 = 255

// Config is what one VRRP instance needs to run the state machine.
type Config struct {
	Name           string        // "VI_LOGS", used in Transition reasons/logs only
	Version        int           // 2 (RFC 3768) or 3 (RFC 5798)
	VRID           uint8         // 1..255
	Priority       uint8         // base priority 1..255; 255 = address owner
	AdvertInterval time.Duration // v2: whole seconds 1s..255s; v3: 10ms steps, 10ms..40.95s
	Preempt        bool          // false = keepalived's nopreempt (ignored by the address owner)
	PreemptDelay   time.Duration // see Machine: counted from Start and from leaving Fault
	PrimaryAddr    netip.Addr    // our own address on the interface, for equal-priority tie-breaks
	// FastFailover lets a Backup with preempt that hears its Master advertise a lower priority
	// than its own take over after Skew_Time instead of Master_Down_Interval. hapair's config
	// turns it on by default; the zero value is the plain RFC behaviour.
	FastFailover bool
	// ClaimFirst makes a Backup that has heard no Master since it entered Backup advertise
	// once and wait one more Advertisement_Interval before it becomes Master (see Machine).
	// hapair's daemon turns it on; the zero value is the plain RFC behaviour.
	ClaimFirst bool
}

func (c *Config) validate() error {
	if c.Version != 2 && c.Version != 3 {
		return fmt.Errorf("version %d: must be 2 or 3", c.Version)
	}
	if c.VRID == 0 {
		return errors.New("virtual router id 0: must be 1..255")
	}
	if c.Priority == 0 {
		return errors.New("priority 0: must be 1..255 (0 is reserved for a Master leaving)")
	}
	if err := CheckAdvertInterval(c.Version, c.AdvertInterval); err != nil {
		return fmt.Errorf("advert interval %w", err)
	}
	if c.PreemptDelay < 0 {
		return fmt.Errorf("preempt delay %v: must not be negative", c.PreemptDelay)
	}
	if !c.PrimaryAddr.IsValid() {
		return errors.New("primary address missing: needed to break equal-priority ties")
	}
	if c.Version == 2 && !c.PrimaryAddr.Unmap().Is4() {
		return fmt.Errorf("primary address %v: VRRPv2 is IPv4 only", c.PrimaryAddr)
	}
	return nil
}

// Machine is the VRRP state machine of RFC 5798 section 6 (and its RFC 3768 VRRPv2 form) for
// one virtual router. It is pure: every method takes the current time and returns the actions
// the caller must carry out, in order; it starts no goroutine, reads no clock and touches no
// socket. The caller feeds it adverts that already passed Filter.Check, calls Tick at
// NextDeadline, and calls SetPriority / SetFault when tracked checks change. A Machine is not
// safe for concurrent use.
//
// The slice returned by each method is backed by a buffer inside the Machine and is valid only
// until the next call of a method that returns actions: apply it, then call again. This keeps
// the receive and timer paths free of allocations.
//
// Timers follow RFC 5798 section 6.1: Master_Down_Interval = 3*Master_Adver_Interval +
// Skew_Time, with Skew_Time = ((256-Priority)*Master_Adver_Interval)/256 computed in
// centiseconds (truncated, as the RFC and keepalived do) for VRRPv3, and (256-Priority)/256
// seconds with the local Advertisement_Interval for VRRPv2 (RFC 3768 section 6.1). A VRRPv3
// Backup adopts the interval its Master advertises (Master_Adver_Interval); Priority is always
// the effective priority.
//
// Where hapair goes beyond the letter of the RFC, and why:
//
//   - Ordering. A Backup with preempt ranks an advert by (priority, sender address), the order
//     RFC 5798 section 6.4.3 uses between two Masters: an equal-priority advert from a lower
//     address counts as lower and may be preempted. The plain RFC keeps whichever router
//     became Master first, so the winner would depend on start order; with one total order
//     the winner is always the same router, and two Masters meeting resolve the same way.
//   - Fast failover (Config.FastFailover). A Backup allowed to preempt that receives a
//     lower-ranked advert from its current Master (or from a Master when it knows none yet)
//     arms its Master_Down_Timer to Skew_Time from that advert (it never moves the timer
//     later), instead of discarding the advert and waiting for the whole Master_Down_Interval.
//     The RFC reaches the same Master, later. A priority-0 advert likewise never moves an
//     earlier timer later.
//   - Preempt delay (keepalived's preempt_delay). The preempt window opens PreemptDelay after
//     Start and after leaving Fault. Before it opens, a Backup treats every advert as if
//     preempt were off: it accepts it and restarts its Master_Down_Timer. The first
//     lower-ranked advert that arrives once the window is open starts the preemption (after
//     Skew_Time with fast failover, after Master_Down_Interval without). A priority-0 advert
//     and a silent Master are not preemption and are never delayed.
//   - The address owner (effective priority 255) always preempts, whatever Preempt and
//     PreemptDelay say (RFC 5798 section 6.1, Preempt_Mode).
//   - A priority change is advertised at once by a Master. A Backup whose priority rises above
//     its Master's last advertised priority starts a fast takeover at once, and one whose
//     priority falls back cancels a fast takeover it had started.
//   - Make-before-break handover (Resign, SetDrained). A Master that leaves on purpose sends
//     priority 0 as Shutdown does, so its Backup takes over after Skew_Time, but keeps its
//     VIPs until it hears the new Master's first advert, which that Master sends after
//     attaching the VIPs and announcing them. Until then it repeats priority 0 at every
//     Adver_Timer, never its own priority, and ignores priority changes. This cannot leave two
//     Masters: priority 0 tells every Backup to take over, whatever its preempt setting, and
//     any advert heard ends the handover. It ends anyway after LongestMasterDown.
//   - Drain (SetDrained). A drained router runs at priority 1 so that it serves only when no
//     other router can; see SetDrained.
//   - Claim first (Config.ClaimFirst). Two routers started together both wait their
//     Master_Down_Interval, which differ by only (p1-p2)/256 of an interval (39 ms between 110
//     and 100 at 1 s): a lower-priority router that started a little earlier would win, then
//     yield to the higher one at its first advert, and the VIP would flap. So a Backup whose
//     Master_Down_Timer fires without having heard any Master since it entered Backup first
//     sends one advert at its own priority and re-arms the timer for one
//     Advertisement_Interval: a higher-ranked router hearing it preempts (after Skew_Time,
//     shorter than the interval) or is already claiming itself, and its advert sends us back
//     to waiting. Only when the interval passes in silence does it become Master. A router
//     that heard a Master before, and the address owner, never claim. A router without
//     preempt that hears a lower router's claim less than an interval before its own falls
//     due claims too, rather than follow it (rivalClaim).
//   - Priority 0 answered a quarter interval apart. 6.4.3 has a Master answer every priority-0
//     advert at once; a flood of forged ones made it send one advert per forged packet. It
//     answers at once at most once per quarter Advertisement_Interval, and a priority 0 heard
//     sooner brings the Adver_Timer forward to the end of that quarter (answerPriorityZero).
//   - Fault (a failed check or a down interface) is a state of its own: a Master leaves with a
//     priority-0 advert so that its Backup takes over after Skew_Time; adverts and timers are
//     ignored until the fault clears, which re-enters Backup with a fresh Master_Down_Timer and
//     Master_Adver_Interval reset to our own, as Initialize does.
//
// Action.Since on a transition to Master is the reference time of the takeover: the arrival of
// the first priority-0 or lower-ranked advert that started it (counted since the last advert
// the Backup accepted), else the arrival of the last advert it accepted from the previous
// Master, else, when it has heard no Master since entering Backup, the time its
// Master_Down_Timer was armed (Start, leaving Fault).
type Machine struct {
	cfg     Config
	state   State
	prio    uint8 // effective priority: tracked, or 1 while drained
	tracked uint8 // priority from SetPriority (the tracked checks)
	drained bool  // SetDrained: give way to any peer, keep serving only as the last resort

	// A make-before-break handover under way (Resign, SetDrained): the Master has sent priority
	// 0 and keeps its VIPs until it hears the new Master or handoverEnd passes.
	handover      handoverKind
	handoverSince time.Time
	handoverEnd   time.Time

	fault       bool   // a fault is set; the Machine is in Fault once started
	faultReason string // Transition reason for entering Fault

	// Timers: zero when not armed.
	adverAt time.Time // Master: Adver_Timer
	// delegated: a Master's steady adverts are sent for it (DelegateAdverts) until
	// ReclaimAdverts; Tick sends none meanwhile and NextDeadline has no Adver_Timer.
	delegated bool
	// reannounceAt: a Master that hears a lower priority re-announces no sooner than this;
	// reannounceNext: and announces once more with its next advert.
	reannounceAt   time.Time
	reannounceNext bool
	// zeroAnswerFrom: a Master answers priority 0 at once no sooner than this; zeroAnswerDue: a
	// priority 0 heard before it waits for the next advert (see answerPriorityZero).
	zeroAnswerFrom time.Time
	zeroAnswerDue  bool
	downAt         time.Time // Backup: Master_Down_Timer

	masterAdverInterval time.Duration // Master_Adver_Interval (VRRPv3 learns it)

	// What the Backup knows about the Master.
	masterAddr    netip.Addr
	masterPrio    uint8
	masterHeardAt time.Time // last advert of masterAddr since entering Backup, accepted or not
	acceptedAt    time.Time // last advert accepted since entering Backup
	armedAt       time.Time // Master_Down_Timer first armed in this Backup period

	// A takeover under way (priority 0 or a lower-ranked Master): when and why it began.
	pendingSince  time.Time
	pendingReason string

	preemptFrom time.Time // Start or leaving Fault; the preempt window opens PreemptDelay later
	claimed     bool      // ClaimFirst: this Backup period's claim advert has been sent

	out []Action // reused for every returned slice
}

// Transition reasons. They are log and notify words, not metric labels.
const (
	reasonInit         = "init"
	reasonMasterDown   = "master down"
	reasonPriorityZero = "priority 0 received"
	reasonPreempt      = "preempt"
	reasonHigherPrio   = "higher priority"
	reasonHigherAddr   = "equal priority, higher address"
	reasonFaultCleared = "fault cleared"
	reasonStop         = "stop"
	reasonDrain        = "drain"
)

// handoverKind says why a Master hands over, and so where it goes once it has.
type handoverKind int

const (
	noHandover    handoverKind = iota
	handoverStop               // Resign: Init afterwards; the VIPs go even if nobody took over
	handoverDrain              // SetDrained: Backup afterwards; stays Master if nobody took over
)

// NewMachine checks cfg and returns a Machine in Init. Call Start to run it.
func NewMachine(cfg Config) (*Machine, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("vrrp instance %q: %w", cfg.Name, err)
	}
	cfg.PrimaryAddr = cfg.PrimaryAddr.Unmap()
	return &Machine{
		cfg:                 cfg,
		prio:                cfg.Priority,
		tracked:             cfg.Priority,
		masterAdverInterval: cfg.AdvertInterval,
		out:                 make([]Action, 0, 4),
	}, nil
}

// Start runs RFC 5798 section 6.4.1 (Initialize): the address owner becomes Master at once,
// any other router Backup with its Master_Down_Timer armed. A Machine with a fault set goes
// to Fault. Start does nothing unless the Machine is in Init.
func (m *Machine) Start(now time.Time) []Action {
	m.out = m.out[:0]
	if m.state != Init {
		return m.out
	}
	m.preemptFrom = now
	m.masterAdverInterval = m.cfg.AdvertInterval
	m.masterAddr, m.masterPrio = netip.Addr{}, 0
	switch {
	case m.fault:
		m.transition(Init, Fault, m.faultReason)
		m.state = Fault
	case m.prio == OwnerPriority:
		m.becomeMaster(now, Init, reasonInit, now)
	default:
		m.transition(Init, Backup, reasonInit)
		m.enterBackup(now)
	}
	return m.out
}

// Receive handles an advert from src that already passed Filter.Check (RFC 5798 sections
// 6.4.2 and 6.4.3). Adverts of another virtual router or version are ignored, as are all
// adverts in Init and Fault.
func (m *Machine) Receive(now time.Time, src netip.Addr, a Advert) []Action {
	m.out = m.out[:0]
	if a.VRID != m.cfg.VRID || a.Version != m.cfg.Version {
		return m.out
	}
	src = src.Unmap()
	switch m.state {
	case Backup:
		m.receiveBackup(now, src, &a)
	case Master:
		m.receiveMaster(now, src, &a)
	}
	return m.out
}

func (m *Machine) receiveBackup(now time.Time, src netip.Addr, a *Advert) {
	if a.Priority == 0 {
		// 6.4.2: the Master is leaving: "Set the Master_Down_Timer to Skew_Time".
		m.startTakeover(now, reasonPriorityZero)
		return
	}
	if m.rivalClaim(now, src, a.Priority) {
		m.claim(now)
		return
	}
	if !m.mayPreempt(now) || m.outranks(src, a.Priority) {
		// 6.4.2: accept, learn the interval (v3), restart Master_Down_Timer.
		m.masterAddr, m.masterPrio, m.masterHeardAt, m.acceptedAt = src, a.Priority, now, now
		m.learnInterval(a)
		m.downAt = now.Add(m.MasterDownInterval())
		m.pendingSince, m.pendingReason = time.Time{}, ""
		return
	}
	// 6.4.2: lower-ranked advert and preempt allowed: the RFC discards it and lets the
	// Master_Down_Timer run out. An advert of some other Master than ours is left at that.
	if !m.masterHeardAt.IsZero() && src != m.masterAddr {
		return
	}
	m.masterAddr, m.masterPrio, m.masterHeardAt = src, a.Priority, now
	if m.cfg.FastFailover {
		m.startTakeover(now, reasonPreempt)
	} else if m.pendingSince.IsZero() {
		// Only remembered for Action.Since and Reason when the timer fires.
		m.pendingSince, m.pendingReason = now, reasonPreempt
	}
}

func (m *Machine) receiveMaster(now time.Time, src netip.Addr, a *Advert) {
	if m.handover != noHandover {
		m.receiveHandingOver(now, src, a)
		return
	}
	if a.Priority == 0 {
		m.answerPriorityZero(now)
		return
	}
	if !m.outranks(src, a.Priority) {
		// 6.4.3: discard. But only a Master sends adverts: this one comes out of a split
		// brain and its gratuitous ARPs point the clients at its MAC. It stands down when
		// it hears us; advertise at once and announce the VIPs again so that the clients
		// come back too. At most once per advert interval: a flood must not make us flood.
		if now.Before(m.reannounceAt) || src == m.cfg.PrimaryAddr.Unmap() {
			return // too soon, or our own advert looped back
		}
		m.reannounceAt = now.Add(m.cfg.AdvertInterval)
		m.sendAdvert(m.prio)
		m.adverAt = now.Add(m.cfg.AdvertInterval)
		m.out = append(m.out, Action{Kind: ActSendGARP})
		// Its own takeover ARPs may reach the clients after ours: announce once more with
		// the next advert, by when it has heard us and stood down.
		m.reannounceNext = true
		return
	}
	reason := reasonHigherPrio
	if a.Priority == m.prio {
		reason = reasonHigherAddr
	}
	m.transition(Master, Backup, reason)
	m.out = append(m.out, Action{Kind: ActDetachVIPs})
	m.learnInterval(a)
	m.enterBackup(now)
	m.masterAddr, m.masterPrio, m.masterHeardAt, m.acceptedAt = src, a.Priority, now, now
}

// zeroAnswersPerInterval bounds the adverts a Master sends at once in answer to priority 0: at
// most one per this fraction of its Advertisement_Interval (see answerPriorityZero).
const zeroAnswersPerInterval = 4

// answerPriorityZero is 6.4.3's answer to another Master leaving: "Send an ADVERTISEMENT; Reset
// the Adver_Timer", so that its Backups hear a Master before their Skew_Time ends. At once,
// unless an answer went out less than a quarter interval ago: then the Adver_Timer is brought
// forward to the end of that quarter, and that advert answers every priority 0 heard meanwhile.
// A neighbour flooding forged priority-0 adverts makes the Master send one advert per quarter
// interval instead of one per forged packet, and no genuine one waits longer than a quarter
// interval, while the leaving Master's Backups wait their Skew_Time, (256-Priority)/256 of an
// interval (0.6 of it at priority 100).
func (m *Machine) answerPriorityZero(now time.Time) {
	if now.Before(m.zeroAnswerFrom) {
		if m.zeroAnswerFrom.Before(m.adverAt) {
			m.adverAt = m.zeroAnswerFrom
		}
		m.zeroAnswerDue = true
		return
	}
	m.sendAdvert(m.prio)
	m.adverAt = now.Add(m.cfg.AdvertInterval)
	m.zeroAnswerFrom = now.Add(m.cfg.AdvertInterval / zeroAnswersPerInterval)
}

// receiveHandingOver handles an advert while a Master hands over. Ours said priority 0, so any
// router advertising a priority now is the new Master: it has attached the VIPs and sent its
// gratuitous ARPs, so ours can go. A priority-0 advert (another Master leaving as well) is
// left unanswered: answering with our own priority 0 would change nothing.
func (m *Machine) receiveHandingOver(now time.Time, src netip.Addr, a *Advert) {
	if a.Priority == 0 {
		return
	}
	since := m.handoverSince
	if m.handover == handoverStop {
		m.transition(Master, Init, reasonStop)
		m.out = append(m.out, Action{Kind: ActDetachVIPs})
		m.state = Init
		m.clearTimers()
	} else {
		m.transition(Master, Backup, reasonDrain)
		m.out = append(m.out, Action{Kind: ActDetachVIPs})
		m.learnInterval(a)
		m.enterBackup(now)
		m.masterHeardAt, m.acceptedAt = now, now
	}
	m.masterAddr, m.masterPrio = src, a.Priority
	m.out = append(m.out, Action{Kind: ActHandoverDone, Since: since, HandedTo: src})
}

// handoverTimedOut ends a handover nobody took: a stop releases the VIPs anyway (the process
// is leaving), a drain keeps them and goes on advertising its drained priority, since
// releasing to nobody would only stop the service until our own Master_Down_Timer brought
// the VIPs back.
func (m *Machine) handoverTimedOut(now time.Time) {
	since := m.handoverSince
	if m.handover == handoverStop {
		m.transition(Master, Init, reasonStop)
		m.out = append(m.out, Action{Kind: ActDetachVIPs})
		m.state = Init
		m.clearTimers()
		m.masterAddr, m.masterPrio = netip.Addr{}, 0
	} else {
		m.handover, m.handoverSince, m.handoverEnd = noHandover, time.Time{}, time.Time{}
		m.sendAdvert(m.prio)
		m.adverAt = now.Add(m.cfg.AdvertInterval)
	}
	m.out = append(m.out, Action{Kind: ActHandoverDone, Since: since})
}

// Tick fires the timers due at or before now: Master_Down_Timer in Backup (6.4.2), Adver_Timer
// in Master (6.4.3). Calling it early or more often than needed is harmless.
func (m *Machine) Tick(now time.Time) []Action {
	m.out = m.out[:0]
	switch m.state {
	case Backup:
		if m.downAt.IsZero() || now.Before(m.downAt) {
			break
		}
		since, reason := m.pendingSince, m.pendingReason
		if m.cfg.ClaimFirst && !m.claimed && m.masterHeardAt.IsZero() && since.IsZero() {
			m.claim(now)
			break
		}
		if since.IsZero() {
			reason = reasonMasterDown
			since = m.acceptedAt
			if since.IsZero() {
				since = m.armedAt
			}
		}
		m.becomeMaster(now, Backup, reason, since)
	case Master:
		if m.handover != noHandover && !now.Before(m.handoverEnd) {
			m.handoverTimedOut(now)
			break
		}
		if m.delegated || now.Before(m.adverAt) {
			break
		}
		// While handing over, priority 0 again: a Backup that missed the first one would
		// otherwise wait for its whole Master_Down_Interval.
		m.sendAdvert(m.advertised())
		if m.zeroAnswerDue {
			// This advert answers the priority 0 heard since the last answer: the next answer
			// at once is a quarter interval away again.
			m.zeroAnswerDue = false
			m.zeroAnswerFrom = now.Add(m.cfg.AdvertInterval / zeroAnswersPerInterval)
		}
		if m.reannounceNext {
			m.reannounceNext = false
			m.out = append(m.out, Action{Kind: ActSendGARP})
		}
		m.adverAt = m.nextAdvert(now)
	}
	return m.out
}

// nextAdvert is when the advert after the one sent now falls due. It keeps the cadence when
// Tick runs a little late, and restarts it when far behind rather than sending a burst.
//
// It also moves the cadence onto the interval's phase of the clock (a whole multiple of the
// interval), sending one advert early, once, by less than an interval: every Master with the
// same interval then advertises at the same moment. Each Master's phase was otherwise set by
// when it took over, and a host with ten Masters sent ten bursts per interval; its peer, whose
// reader wakes once per burst, woke ten times. In phase they leave as one burst and are read in
// one wake-up. An advert sooner than due is harmless: a Backup restarts its Master_Down_Timer
// on every advert, and the gap between two adverts stays at most Advertisement_Interval. The
// advert right after a transition is still due one full interval after the first (the RFC's
// Adver_Timer); only the one after that is early.
func (m *Machine) nextAdvert(now time.Time) time.Time {
	interval := m.cfg.AdvertInterval
	next := m.adverAt.Add(interval)
	if !next.After(now) {
		return now.Add(interval)
	}
	// Not Truncate: it drops the monotonic reading, and the cadence would then follow the wall
	// clock through every step NTP makes. Only the phase is read from the wall clock.
	if inPhase := next.Add(-time.Duration(next.UnixNano() % int64(interval))); inPhase.After(now) {
		return inPhase
	}
	return next
}

// NextDeadline is when Tick must run next; zero when no timer is armed (Init, Fault).
func (m *Machine) NextDeadline() time.Time {
	switch m.state {
	case Backup:
		return m.downAt
	case Master:
		if m.handover != noHandover && m.handoverEnd.Before(m.adverAt) {
			return m.handoverEnd
		}
		if m.delegated {
			return time.Time{}
		}
		return m.adverAt
	}
	return time.Time{}
}

// DelegateAdverts hands a steady Master's adverts to a sender of the caller's (one that sends
// without waking the process: instance and package steady) when the next advert is a plain
// one: Master, no handover under way, no priority-0 answer or re-announcement riding on it. It
// returns the priority every advert carries and when the next is due, on the Adver_Timer's
// cadence (one every AdvertInterval from next); ok false when the adverts are not steady, and
// then nothing changes.
//
// Until ReclaimAdverts, Tick sends no advert and NextDeadline leaves the Adver_Timer out. The
// caller must ReclaimAdverts before any other call that may change the adverts or the state
// (Receive, SetPriority, SetFault, SetDrained, Resign, Shutdown); Tick alone keeps them
// delegated.
func (m *Machine) DelegateAdverts() (priority uint8, next time.Time, ok bool) {
	if m.state != Master || m.handover != noHandover || m.zeroAnswerDue || m.reannounceNext || m.adverAt.IsZero() {
		return 0, time.Time{}, false
	}
	m.delegated = true
	return m.prio, m.adverAt, true
}

// ReclaimAdverts takes the adverts back from the caller's sender, whose last advert on the
// Adver_Timer's cadence was due at last (zero: it sent none). The next advert is due an
// interval after that one, as if the Machine had sent them all.
func (m *Machine) ReclaimAdverts(last time.Time) {
	if !m.delegated {
		return
	}
	m.delegated = false
	if !last.IsZero() && !last.Before(m.adverAt) {
		m.adverAt = last.Add(m.cfg.AdvertInterval)
	}
}

// Delegated says the adverts are with the caller's sender (DelegateAdverts).
func (m *Machine) Delegated() bool { return m.delegated }

// SetPriority sets the effective priority (tracked checks changed it). 0 is reserved for a
// leaving Master and is taken as 1. A Master advertises the new priority at once, so that a
// Backup with preempt that now outranks it takes over without waiting for the next advert.
func (m *Machine) SetPriority(now time.Time, effective uint8) []Action {
	m.out = m.out[:0]
	effective = max(effective, 1)
	m.tracked = effective
	if m.drained || effective == m.prio {
		return m.out // a drained router stays at 1 whatever its checks say
	}
	m.prio = effective
	switch m.state {
	case Master:
		if m.handover != noHandover {
			break // the priority 0 stands until the handover ends
		}
		m.sendAdvert(m.prio)
		m.adverAt = now.Add(m.cfg.AdvertInterval)
	case Backup:
		m.reconsiderPreempt(now)
	}
	return m.out
}

// reconsiderPreempt re-ranks the Master we last heard against our new priority.
func (m *Machine) reconsiderPreempt(now time.Time) {
	if m.masterHeardAt.IsZero() {
		return // no Master heard since entering Backup
	}
	weaker := m.mayPreempt(now) && !m.outranks(m.masterAddr, m.masterPrio)
	switch {
	case m.pendingReason == reasonPreempt && !weaker:
		// We no longer outrank it: its last advert counts as accepted after all.
		m.pendingSince, m.pendingReason = time.Time{}, ""
		m.downAt = m.masterHeardAt.Add(m.MasterDownInterval())
	case m.pendingSince.IsZero() && weaker && m.cfg.FastFailover:
		m.startTakeover(now, reasonPreempt)
	}
}

// SetFault enters (fault true) or leaves (fault false) Fault. A Master leaving for Fault sends a
// priority-0 advert and detaches its VIPs; leaving Fault enters Backup with a fresh
// Master_Down_Timer and reopens the preempt delay. Before Start the fault is only remembered:
// Start then enters Fault.
func (m *Machine) SetFault(now time.Time, fault bool, reason string) []Action {
	m.out = m.out[:0]
	if fault == m.fault {
		return m.out
	}
	m.fault = fault
	if fault {
		m.faultReason = "fault"
		if reason != "" {
			m.faultReason = "fault: " + reason
		}
		switch m.state {
		case Master:
			m.transition(Master, Fault, m.faultReason)
			m.sendAdvert(0)
			m.out = append(m.out, Action{Kind: ActDetachVIPs})
			m.masterAddr, m.masterPrio = netip.Addr{}, 0
		case Backup:
			m.transition(Backup, Fault, m.faultReason)
		default:
			return m.out
		}
		m.state = Fault
		m.clearTimers()
		return m.out
	}
	if m.state != Fault {
		return m.out
	}
	m.transition(Fault, Backup, reasonFaultCleared)
	m.preemptFrom = now
	m.masterAdverInterval = m.cfg.AdvertInterval
	m.enterBackup(now)
	return m.out
}

// Shutdown stops the instance (RFC 5798 6.4.2/6.4.3 Shutdown event): a Master sends a
// priority-0 advert so that its Backup takes over after Skew_Time, and detaches its VIPs.
// The Machine returns to Init; Start runs it again.
func (m *Machine) Shutdown(now time.Time) []Action {
	m.out = m.out[:0]
	switch m.state {
	case Init:
		return m.out
	case Master:
		m.transition(Master, Init, reasonStop)
		m.sendAdvert(0)
		m.out = append(m.out, Action{Kind: ActDetachVIPs})
	default:
		m.transition(m.state, Init, reasonStop)
	}
	m.state = Init
	m.clearTimers()
	m.masterAddr, m.masterPrio = netip.Addr{}, 0
	return m.out
}

// Resign is a Shutdown that makes before it breaks (hapair's choice, see the handover notes on
// Machine). A Master sends priority 0 at once, so that its Backup takes over after Skew_Time as
// with Shutdown, but keeps its VIPs until it hears the new Master's first advert: only then
// does it detach them and enter Init. Until that advert the old Master still answers, so no
// client is left without a router. Nobody advertising within LongestMasterDown ends the
// handover anyway (ActHandoverDone without HandedTo): the VIPs are detached and the Machine
// enters Init. Outside Master, Resign is Shutdown. A drain under way becomes a stop.
func (m *Machine) Resign(now time.Time) []Action {
	if m.state != Master {
		return m.Shutdown(now)
	}
	m.out = m.out[:0]
	switch m.handover {
	case noHandover:
		m.startHandover(now, handoverStop)
	case handoverDrain:
		m.handover = handoverStop // the Backup is already on its way: same deadline
	}
	return m.out
}

// SetDrained drains (true) or undrains (false) the router for planned maintenance. A drained
// router runs at priority 1, the lowest there is, whatever SetPriority says, so that it serves
// only when no other router can (the last resort). A drained Master hands over as Resign does
// but becomes Backup afterwards; if nobody takes over within LongestMasterDown it stays Master
// at priority 1 (ActHandoverDone without HandedTo). Undraining restores the tracked priority:
// a Backup then preempts as after any priority rise, and a Master still handing over claims
// the router back with an advert at once.
func (m *Machine) SetDrained(now time.Time, drained bool) []Action {
	m.out = m.out[:0]
	if drained == m.drained {
		return m.out
	}
	m.drained = drained
	old := m.prio
	m.prio = m.tracked
	if drained {
		m.prio = 1
	}
	switch m.state {
	case Master:
		switch {
		case drained && m.handover == noHandover:
			m.startHandover(now, handoverDrain)
		case !drained && m.handover == handoverDrain:
			m.handover = noHandover
			m.sendAdvert(m.prio)
			m.adverAt = now.Add(m.cfg.AdvertInterval)
		case !drained && m.handover == noHandover && m.prio != old:
			m.sendAdvert(m.prio)
			m.adverAt = now.Add(m.cfg.AdvertInterval)
		}
	case Backup:
		if m.prio != old {
			m.reconsiderPreempt(now)
		}
	}
	return m.out
}

// Drained says whether SetDrained(true) is in force.
func (m *Machine) Drained() bool { return m.drained }

// HandingOver says whether a Master is handing over (Resign or SetDrained): it has sent
// priority 0 and keeps its VIPs until a new Master advertises.
func (m *Machine) HandingOver() bool { return m.handover != noHandover }

// LongestMasterDown bounds a handover: 3*Master_Adver_Interval + Skew_Time at priority 1, the
// longest Master_Down_Interval any Backup can have. By then a Backup that heard none of our
// priority-0 adverts has taken over all the same.
func (m *Machine) LongestMasterDown() time.Duration {
	return 3*m.masterAdverInterval + m.skewTime(1)
}

// startHandover sends priority 0 and arms the handover deadline; the VIPs stay.
func (m *Machine) startHandover(now time.Time, kind handoverKind) {
	m.handover, m.handoverSince = kind, now
	m.handoverEnd = now.Add(m.LongestMasterDown())
	m.sendAdvert(0)
	m.adverAt = now.Add(m.cfg.AdvertInterval)
}

// advertised is the priority a Master puts in its adverts: 0 while it hands over.
func (m *Machine) advertised() uint8 {
	if m.handover != noHandover {
		return 0
	}
	return m.prio
}

// State is the current state.
func (m *Machine) State() State { return m.state }

// Priority is the effective priority.
func (m *Machine) Priority() uint8 { return m.prio }

// LastAdvertDue is when the last advert of the Master we follow that can come before
// Master_Down_Timer fires is due to arrive: the last one heard plus the whole
// Master_Adver_Intervals that fit in Master_Down_Interval (three: Skew_Time is less than one).
// Zero unless Backup with the timer running from that last advert (no takeover under way).
func (m *Machine) LastAdvertDue() time.Time {
	if m.state != Backup || m.masterHeardAt.IsZero() || !m.pendingSince.IsZero() || m.masterAdverInterval <= 0 {
		return time.Time{}
	}
	down := m.MasterDownInterval()
	if !m.downAt.Equal(m.masterHeardAt.Add(down)) {
		return time.Time{}
	}
	return m.masterHeardAt.Add(down / m.masterAdverInterval * m.masterAdverInterval)
}

// LastAdvertHeard is when the last advert of the Master we follow was heard (the time
// Master_Down_Timer runs from, with LastAdvertDue); zero when none since entering Backup.
func (m *Machine) LastAdvertHeard() time.Time { return m.masterHeardAt }

// SetPrimaryAddr makes a our own address from now on: the interface was renumbered, or created
// again with another address. Equal-priority ties are broken with it, and a Master reports it
// as the Master's address. Nothing else changes: the state, the timers and the priority stay.
func (m *Machine) SetPrimaryAddr(a netip.Addr) {
	a = a.Unmap()
	m.cfg.PrimaryAddr = a
	if m.state == Master {
		m.masterAddr = a
	}
}

// MasterAddr is the current Master as far as we know: our PrimaryAddr when Master, the sender
// of the Master's last advert in Backup (and still in Fault, for status), invalid when unknown.
func (m *Machine) MasterAddr() netip.Addr {
	if m.state == Master {
		return m.cfg.PrimaryAddr
	}
	return m.masterAddr
}

// MasterPriority is the priority last advertised by MasterAddr (ours when Master), 0 if unknown.
func (m *Machine) MasterPriority() uint8 {
	if m.state == Master {
		return m.prio
	}
	return m.masterPrio
}

// MasterDownInterval is 3*Master_Adver_Interval + Skew_Time (v2: the local advert interval).
func (m *Machine) MasterDownInterval() time.Duration {
	return 3*m.masterAdverInterval + m.SkewTime()
}

// SkewTime is Skew_Time for the effective priority: ((256-Priority)*Master_Adver_Interval)/256
// in whole centiseconds for VRRPv3, (256-Priority)/256 seconds for VRRPv2.
func (m *Machine) SkewTime() time.Duration { return m.skewTime(m.prio) }

func (m *Machine) skewTime(prio uint8) time.Duration {
	if m.cfg.Version == 2 {
		return time.Duration(256-int(prio)) * time.Second / 256
	}
	cs := int64(m.masterAdverInterval / v3TimerUnit)
	return time.Duration((256-int64(prio))*cs/256) * v3TimerUnit
}

// outranks says whether an advert of priority prio from src beats our effective priority:
// higher priority, or equal priority and a higher primary address compared as an unsigned
// integer (RFC 5798 section 6.4.3).
func (m *Machine) outranks(src netip.Addr, prio uint8) bool {
	if prio != m.prio {
		return prio > m.prio
	}
	return src.Compare(m.cfg.PrimaryAddr) > 0
}

// mayPreempt says whether a Backup may take over from a lower-ranked Master at now.
func (m *Machine) mayPreempt(now time.Time) bool {
	if m.prio == OwnerPriority {
		return true
	}
	return m.cfg.Preempt && !now.Before(m.preemptFrom.Add(m.cfg.PreemptDelay))
}

// claim sends this Backup period's claim advert and waits one Advertisement_Interval for a
// higher-ranked router to answer (Config.ClaimFirst).
func (m *Machine) claim(now time.Time) {
	m.claimed = true
	m.sendAdvert(m.prio)
	m.downAt = now.Add(m.cfg.AdvertInterval)
}

// rivalClaim says whether an advert of priority prio from src, which we outrank, is another
// router's claim made as ours falls due, rather than the advert of a Master in place: with
// ClaimFirst, before our claim, no Master heard in this Backup period, and Master_Down_Timer
// less than one Advertisement_Interval away. A Master in place advertises every interval and is
// heard long before that (a router started beside it hears it within an interval of starting);
// two routers started together claim within the timer grid of each other, and the lower one's
// claim can reach us just before our own timer fires. Without preempt we would follow it; so we
// claim too, and the lower router follows us.
func (m *Machine) rivalClaim(now time.Time, src netip.Addr, prio uint8) bool {
	return m.cfg.ClaimFirst && !m.claimed && m.masterHeardAt.IsZero() && m.pendingSince.IsZero() &&
		!m.outranks(src, prio) && !now.Before(m.downAt.Add(-m.cfg.AdvertInterval))
}

// learnInterval adopts the Master's advert interval (VRRPv3 only: v2 intervals must match).
func (m *Machine) learnInterval(a *Advert) {
	if m.cfg.Version == 3 && a.Interval > 0 {
		m.masterAdverInterval = a.Interval
	}
}

// startTakeover arms Master_Down_Timer to Skew_Time from now unless it fires sooner already,
// remembering the first event that started the takeover.
func (m *Machine) startTakeover(now time.Time, reason string) {
	if m.pendingSince.IsZero() {
		m.pendingSince, m.pendingReason = now, reason
	}
	if at := now.Add(m.SkewTime()); m.downAt.IsZero() || at.Before(m.downAt) {
		m.downAt = at
	}
}

// enterBackup sets state Backup with a fresh Master_Down_Timer and no knowledge of adverts.
func (m *Machine) enterBackup(now time.Time) {
	m.state = Backup
	m.clearTimers()
	m.armedAt = now
	m.downAt = now.Add(m.MasterDownInterval())
}

func (m *Machine) becomeMaster(now time.Time, from State, reason string, since time.Time) {
	// VIPs and gratuitous ARPs before the advert (RFC 5798 6.4.2 lists the advert first): a
	// Master we preempt, or one handing over, detaches its VIPs when it hears this advert, and
	// by then the clients' ARP caches already point here, so none of their packets lands on a
	// router that no longer has the address.
	m.out = append(m.out,
		Action{Kind: ActTransition, From: from, To: Master, Reason: reason, Since: since},
		Action{Kind: ActAttachVIPs},
		Action{Kind: ActSendGARP},
		Action{Kind: ActSendAdvert, Priority: m.prio},
	)
	m.state = Master
	m.clearTimers()
	m.adverAt = now.Add(m.cfg.AdvertInterval)
	m.masterAddr, m.masterPrio = m.cfg.PrimaryAddr, m.prio
	// Our Backups learn our interval (6.4.2), so LongestMasterDown must count with it, not
	// with the one learnt from the Master we followed.
	m.masterAdverInterval = m.cfg.AdvertInterval
}

// clearTimers disarms both timers and forgets the timing of this Backup period (the
// Master's address and priority stay, for status).
func (m *Machine) clearTimers() {
	m.delegated = false
	m.adverAt, m.downAt, m.armedAt = time.Time{}, time.Time{}, time.Time{}
	m.acceptedAt, m.masterHeardAt = time.Time{}, time.Time{}
	m.pendingSince, m.pendingReason = time.Time{}, ""
	m.handover, m.handoverSince, m.handoverEnd = noHandover, time.Time{}, time.Time{}
	m.claimed = false
	m.reannounceNext = false
	m.zeroAnswerFrom, m.zeroAnswerDue = time.Time{}, false
}

func (m *Machine) transition(from, to State, reason string) {
	m.out = append(m.out, Action{Kind: ActTransition, From: from, To: to, Reason: reason})
}

func (m *Machine) sendAdvert(prio uint8) {
	m.out = append(m.out, Action{Kind: ActSendAdvert, Priority: prio})
}
