package vip

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
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
	at    time.Time
	addrs []netlink.Addr
}

// NewDumps returns a Dumps whose dumps serve for maxAge.
func NewDumps(maxAge time.Duration) *Dumps {
	return &Dumps{maxAge: maxAge, byIf: map[string]dump{}, clock: time.Now}
}

// addrs returns the addresses of link, from a dump at most maxAge old.
func (d *Dumps) addrs(ifname string, link netlink.Link) ([]netlink.Addr, error) {
	if d != nil {
		d.mu.Lock()
		defer d.mu.Unlock()
		if cur, ok := d.byIf[ifname]; ok && d.clock().Sub(cur.at) < d.maxAge {
			return cur.addrs, nil
		}
	}
	var addrs []netlink.Addr
	var err error
	for range 3 { // a dump interrupted by a concurrent change is retried
		addrs, err = netlink.AddrList(link, netlink.FAMILY_ALL)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	if d != nil {
		d.byIf[ifname] = dump{at: d.clock(), addrs: addrs}
	}
	return addrs, nil
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
