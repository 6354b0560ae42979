package vip

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Dumps shares the address dumps of interfaces between the Managers of one daemon. Every MASTER
// checks once a second that its VIPs are still there (Missing); with n instances on a link, each
// doing a dump of its own costs n dumps of n addresses a second. With Dumps, the checks within
// maxAge of a dump reuse it; any Attach or Detach through a Manager that shares it makes the
// next check dump afresh. A nil *Dumps shares nothing. It is for the managers of one network
// namespace.
type Dumps struct {
	maxAge time.Duration

	mu    sync.Mutex
	byIf  map[string]dump
	clock func() time.Time
}

type dump struct {
	at      time.Time
	present map[netip.Prefix]bool
}

// NewDumps returns a Dumps whose dumps serve for maxAge.
func NewDumps(maxAge time.Duration) *Dumps {
	return &Dumps{maxAge: maxAge, byIf: map[string]dump{}, clock: time.Now}
}

// present returns the addresses on the interface (false: present but unusable, DAD failed),
// from a dump at most maxAge old. link looks the interface up, only when a new dump is needed:
// the lookup is itself a netlink round trip, the larger share of a check's cost. The map is
// shared: read it, never write it.
func (d *Dumps) present(ifname string, link func() (netlink.Link, error)) (map[netip.Prefix]bool, error) {
	if d != nil {
		d.mu.Lock()
		defer d.mu.Unlock()
		if cur, ok := d.byIf[ifname]; ok && d.clock().Sub(cur.at) < d.maxAge {
			return cur.present, nil
		}
	}
	l, err := link()
	if err != nil {
		return nil, err
	}
	var addrs []netlink.Addr
	for range 3 { // a dump interrupted by a concurrent change is retried
		addrs, err = netlink.AddrList(l, netlink.FAMILY_ALL)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	present := make(map[netip.Prefix]bool, len(addrs))
	for _, a := range addrs {
		if p, ok := fromNetlink(a); ok {
			// A VIP whose DAD failed is on the interface but unusable: count it as missing, so
			// that reconcile reports it rather than believing all is well.
			present[p] = a.Flags&unix.IFA_F_DADFAILED == 0
		}
	}
	if d != nil {
		d.byIf[ifname] = dump{at: d.clock(), present: present}
	}
	return present, nil
}

// forget drops the dump of ifname: its addresses are being changed.
func (d *Dumps) forget(ifname string) {
	if d == nil {
		return
	}
	d.mu.Lock()
	delete(d.byIf, ifname)
	d.mu.Unlock()
}
