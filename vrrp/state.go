package vrrp

import (
	"net/netip"
	"strconv"
	"time"
)

// State is the state of one VRRP instance. The values are those of the
// hapair_vrrp_state metric (and of the keepalived exporters): do not reorder.
type State int

const (
	Init   State = iota // RFC 5798 Initialize: not started, or stopped
	Backup              // listening for the Master's adverts
	Master              // owning the virtual addresses and advertising
	Fault               // a tracked check or the interface says we must not serve
)

// States lists every state, in the order of their values.
func States() []State { return []State{Init, Backup, Master, Fault} }

// String returns the state in the words keepalived logs ("MASTER").
func (s State) String() string {
	switch s {
	case Init:
		return "INIT"
	case Backup:
		return "BACKUP"
	case Master:
		return "MASTER"
	case Fault:
		return "FAULT"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// ActionKind says what the caller of a Machine method must do.
type ActionKind int

const (
	// ActTransition reports a state change (From, To, Reason, and Since when To is Master).
	// It always comes first among the actions of one call.
	ActTransition ActionKind = iota
	// ActSendAdvert asks for one advert carrying Priority (0 = the Master releases the router).
	ActSendAdvert
	// ActAttachVIPs asks for the virtual addresses to be added to the interface.
	ActAttachVIPs
	// ActDetachVIPs asks for the virtual addresses to be removed from the interface.
	ActDetachVIPs
	// ActSendGARP asks for gratuitous ARP / unsolicited neighbour advertisements for the VIPs.
	ActSendGARP
	// ActHandoverDone reports the end of a make-before-break handover (Machine.Resign,
	// Machine.SetDrained): HandedTo is the new Master whose advert ended it, invalid when
	// nobody took over in time; Since is when the handover began. It comes after the
	// Transition and DetachVIPs of the same call.
	ActHandoverDone
)

// String names the kind for logs and test failures.
func (k ActionKind) String() string {
	switch k {
	case ActTransition:
		return "Transition"
	case ActSendAdvert:
		return "SendAdvert"
	case ActAttachVIPs:
		return "AttachVIPs"
	case ActDetachVIPs:
		return "DetachVIPs"
	case ActSendGARP:
		return "SendGARP"
	case ActHandoverDone:
		return "HandoverDone"
	}
	return "ActionKind(" + strconv.Itoa(int(k)) + ")"
}

// Action is one thing the caller of a Machine must do, in order.
//
// Becoming Master yields Transition, AttachVIPs, SendGARP, SendAdvert (the VIPs are announced
// before the advert that makes the previous Master let go of them). Leaving Master yields
// Transition, then SendAdvert with priority 0 when going to Fault or Init, then DetachVIPs; the
// end of a handover (Machine.Resign, Machine.SetDrained), whose priority 0 went out when it
// began, yields Transition, DetachVIPs, HandoverDone.
type Action struct {
	Kind     ActionKind
	Priority uint8  // ActSendAdvert: priority to put in the advert (0 = release)
	From, To State  // ActTransition
	Reason   string // ActTransition: why, for logs and notify scripts ("master down", "preempt", ...)
	// Since is set on ActTransition to Master: the reference time of the takeover, for
	// hapair_vrrp_takeover_seconds. See Machine for how it is chosen.
	Since time.Time
	// HandedTo is set on ActHandoverDone: the new Master, invalid when nobody took over.
	HandedTo netip.Addr
}

// String renders the action for logs and test failures.
func (a Action) String() string {
	switch a.Kind {
	case ActTransition:
		s := "Transition(" + a.From.String() + "->" + a.To.String() + ", " + strconv.Quote(a.Reason)
		if !a.Since.IsZero() {
			s += ", since " + a.Since.Format("15:04:05.000000")
		}
		return s + ")"
	case ActSendAdvert:
		return "SendAdvert(" + strconv.Itoa(int(a.Priority)) + ")"
	case ActHandoverDone:
		to := "nobody"
		if a.HandedTo.IsValid() {
			to = a.HandedTo.String()
		}
		return "HandoverDone(to " + to + ")"
	}
	return a.Kind.String()
}
