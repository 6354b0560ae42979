package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"

	"github.com/hapair/hapair/checks"
	"github.com/hapair/hapair/cmd/internal/config"
	"github.com/hapair/hapair/metrics"
	"github.com/hapair/hapair/supervisor"
	"github.com/hapair/hapair/vrrp/alarm"
	"github.com/hapair/hapair/vrrp/instance"
	"github.com/hapair/hapair/vrrp/transport"
	vipnet "github.com/hapair/hapair/vrrp/vip"
)

// The daemon's seams: what touches the host (sockets, netlink, the HAProxy process) sits behind
// these small interfaces, so that the wiring (priorities from checks, reloads, the stop order)
// is tested without root, on fakes.

// hostNetwork opens what an instance needs from the host's network. netlinkHost is the real one.
type hostNetwork interface {
	// Open opens an instance's VIP manager, socket and announcer. Unless mayResume, it first
	// removes VIPs a crash left behind; it takes the source address from unicast_src_ip, else
	// from the interface's primary address.
	Open(ic config.Instance, mayResume bool) (instanceIO, error)
	// Rejoin opens the instance's socket and announcer again, on its interface as it is now
	// (created again under the same name: recreated.go), sending from source.
	Rejoin(ic config.Instance, source netip.Addr) (instanceIO, error)
	// Source is the address the instance's adverts leave from now: unicast_src_ip while it is
	// an address of the host, else its interface's primary address other than any of notOurs
	// (the VIPs). An error wrapping transport.ErrNoAddress: there is none (recreated.go).
	Source(ic config.Instance, notOurs []netip.Addr) (netip.Addr, error)
	// VIPs returns a manager for vips on ifname: a reload's new list, or the removed VIPs.
	VIPs(ifname string, vips []netip.Prefix) (instance.VIPs, error)
	// Links follows the state of the host's links.
	Links() (links, error)
	// OnVIPGone calls gone, which must not block, with each address the kernel says left an
	// interface, so that a MASTER puts a VIP removed by hand back at once. The fakes never call it.
	OnVIPGone(gone func(netip.Prefix))
}

// instanceIO is one instance's socket, VIP manager and announcer.
type instanceIO struct {
	source    netip.Addr
	conn      instance.Conn
	vips      instance.VIPs
	ann       announcer
	mayResume bool            // false when only VIPs were left on the interface
	timers    instance.Timers // the loop's timer; nil: Go's
	ifindex   int             // the interface conn listens on; 0: unknown (fakes)
}

// announcer is the instance's announcer, closed with the instance.
type announcer interface {
	instance.Announcer
	Close() error
}

// links tells whether tracked links are down and follows their changes (*checks.Links).
type links interface {
	Down(names []string) (down bool, why string)
	Index(name string) int // 0: no such interface
	Watch(ctx context.Context, changed func()) error
}

// haproxy is what the daemon uses of the supervisor (*supervisor.Supervisor).
type haproxy interface {
	Run(ctx context.Context) error
	Events() <-chan supervisor.Event
	Status() supervisor.Status
	Reload(ctx context.Context) error
	SetTimings(c supervisor.Config) // haproxy.stop_grace and haproxy.restart_backoff, on reload
}

var (
	_ haproxy = (*supervisor.Supervisor)(nil)
	_ links   = (*checks.Links)(nil)
)

// netlinkHost is the host's real network: raw sockets (one per interface, shared by the
// instances through the hub), netlink and ARP (root).
type netlinkHost struct {
	log   *slog.Logger
	hub   *transport.Hub // the VRRP sockets, shared by the instances
	watch *vipnet.Watch  // the host's addresses from netlink notifications, for the instances' VIP checks; nil: a dump per check
	// timers wakes every instance's loop from one timerfd (vrrp/alarm); nil if it could not
	// be made, and then the instances use Go's timers.
	timers instance.Timers
}

// alarmTimers adapts a vrrp/alarm set to instance.Timers.
type alarmTimers struct{ *alarm.Alarms }

func (a alarmTimers) AfterFunc(fire func()) instance.Timer { return a.Alarms.AfterFunc(fire) }

func newNetlinkHost(m *metrics.Metrics, log *slog.Logger) netlinkHost {
	watch, err := vipnet.NewWatch(log)
	if err != nil {
		// Not fatal: each MASTER's check reads the addresses itself, as it did before the Watch.
		log.Warn("Watching addresses failed, checking VIPs with a dump each time", "err", err)
		watch = nil
	}
	var timers instance.Timers
	if a, err := alarm.New(); err != nil {
		log.Warn("No timerfd: the VRRP loops use Go's timers, at a higher CPU cost per advert", "err", err)
	} else {
		timers = alarmTimers{a}
	}
	return netlinkHost{
		log:    log,
		watch:  watch,
		timers: timers,
		hub: transport.NewHub(transport.HubOptions{
			Strays: func(ifname string) transport.Counter { return m.OtherVRID(ifname) },
			Log:    log,
		}),
	}
}

func (h netlinkHost) Links() (links, error) { return checks.NewLinks() }

func (h netlinkHost) OnVIPGone(gone func(netip.Prefix)) {
	if h.watch != nil {
		h.watch.OnGone(gone)
	}
}

func (h netlinkHost) VIPs(ifname string, vips []netip.Prefix) (instance.VIPs, error) {
	m, err := h.manager(ifname, vips)
	if err != nil {
		return nil, err
	}
	return offStackVIPs{m}, nil
}

func (h netlinkHost) manager(ifname string, vips []netip.Prefix) (*vipnet.Manager, error) {
	m, err := vipnet.NewManager(ifname, vips, h.log)
	if err != nil {
		return nil, err
	}
	m.UseWatch(h.watch)
	return m, nil
}

func (h netlinkHost) Open(ic config.Instance, mayResume bool) (instanceIO, error) {
	family := ic.Family()
	vips, err := h.manager(ic.Interface, ic.VIPs)
	if err != nil {
		return instanceIO{}, err
	}
	removeStale := func() {
		if err := vips.RemoveStale(); err != nil {
			h.log.Warn("("+ic.Name+") Removing stale VIPs failed", "err", err)
		}
	}
	if !mayResume {
		// Stale VIPs first: a VIP left by a crash could otherwise be taken for the primary address.
		removeStale()
	}
	primary, err := transport.PrimaryAddr(ic.Interface, family)
	if err != nil {
		return instanceIO{}, err
	}
	if mayResume && slices.Contains(prefixAddrs(ic.VIPs), primary) {
		// Only VIPs left on the interface: no resume without our own address.
		removeStale()
		mayResume = false
		if primary, err = transport.PrimaryAddr(ic.Interface, family); err != nil {
			return instanceIO{}, err
		}
	}
	source := primary
	if ic.UnicastSrcIP.IsValid() {
		source = ic.UnicastSrcIP
	}
	nio, err := h.join(ic, source)
	if err != nil {
		return instanceIO{}, err
	}
	nio.vips, nio.mayResume, nio.timers = offStackVIPs{vips}, mayResume, h.timers
	return nio, nil
}

// join opens the instance's socket and announcer on its interface, sending from source.
func (h netlinkHost) join(ic config.Instance, source netip.Addr) (instanceIO, error) {
	conn, err := h.hub.Join(transport.Options{
		Interface: ic.Interface, Family: ic.Family(), SourceAddr: source, Peers: ic.UnicastPeers,
	}, ic.VRID)
	if err != nil {
		return instanceIO{}, err
	}
	ann, err := vipnet.NewAnnouncer(ic.Interface)
	if err != nil {
		conn.Close()
		return instanceIO{}, err
	}
	return instanceIO{source: source, conn: conn, ann: ann, ifindex: conn.Index()}, nil
}

func (h netlinkHost) Rejoin(ic config.Instance, source netip.Addr) (instanceIO, error) {
	return h.join(ic, source)
}

func (h netlinkHost) Source(ic config.Instance, notOurs []netip.Addr) (netip.Addr, error) {
	if ic.UnicastSrcIP.IsValid() {
		if err := transport.HostHas(ic.UnicastSrcIP); err != nil {
			return netip.Addr{}, fmt.Errorf("unicast_src_ip: %w", err)
		}
		return ic.UnicastSrcIP, nil
	}
	return transport.PrimaryAddr(ic.Interface, ic.Family(), notOurs...)
}
