package vrrp

import "time"

// ReasonResume is the Transition reason of a Master that resumed from its state record.
const ReasonResume = "resume"

// Previous is what this router's state record says about the instance just before hapair
// restarted (a crash, or an in-place upgrade), as the caller read it.
type Previous struct {
	State    State // the state the record was written in
	Priority uint8 // the priority it last advertised
	// LastAdvert is when it last sent an advert, on the caller's clock. The caller turns the
	// record's clock (boot id + CLOCK_BOOTTIME) into this one, and gives no Previous at all for
	// a record written before the last reboot.
	LastAdvert time.Time
	// VIPsAttached: every virtual address is on the interface now.
	VIPsAttached bool
}

// ResumeWindow is how young a Master's last advert must be for a restarted router to resume as
// Master: 2.75*Advertisement_Interval. Any Backup of this virtual router has a
// Master_Down_Interval of at least 3*Advertisement_Interval (its Skew_Time is never negative,
// and a VRRPv3 Backup learns our interval), counted from when it received our last advert, which
// is no earlier than when we sent it. So within the window no Backup that heard our last advert
// can have become Master for want of adverts; the quarter interval kept back covers the resume
// advert's own way to the peer and a peer's timer firing a little early.
func (m *Machine) ResumeWindow() time.Duration {
	return 3*m.cfg.AdvertInterval - m.cfg.AdvertInterval/4
}

// Resumable says whether Resume would resume as Master at now: the record says Master, and not
// one handing over (priority 0: its Backup took over after Skew_Time, well inside the window),
// its last advert is younger than ResumeWindow (and not in the future: a clock that went
// backwards proves nothing), every VIP is still attached, no fault is set, and the Machine is in
// Init.
func (m *Machine) Resumable(now time.Time, prev *Previous) bool {
	if prev == nil || m.state != Init || m.fault || prev.State != Master || prev.Priority == 0 || !prev.VIPsAttached {
		return false
	}
	age := now.Sub(prev.LastAdvert)
	return age >= 0 && age < m.ResumeWindow()
}

// Resume is the Start of a router that was running a moment ago. When Resumable, it re-enters
// Master at once without passing through Backup: advert first, VIPs kept (the attach is a no-op
// for addresses already there), gratuitous ARPs, Adver_Timer armed; Action.Since is now, since
// nothing was taken over. A Backup that outranks us and became Master meanwhile is resolved by
// RFC 5798 6.4.3 as between any two Masters: its next advert sends us back to Backup. Otherwise
// Resume is Start (section 6.4.1).
func (m *Machine) Resume(now time.Time, prev *Previous) []Action {
	if !m.Resumable(now, prev) {
		return m.Start(now)
	}
	m.out = m.out[:0]
	m.preemptFrom = now
	m.becomeMaster(now, Init, ReasonResume, now)
	return m.out
}
