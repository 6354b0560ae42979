package main

import (
	"net/netip"

	"github.com/hapair/hapair/vrrp/instance"
	vipnet "github.com/hapair/hapair/vrrp/vip"
)

// offStackVIPs runs a VIP manager's calls on a goroutine that ends with the call.
// vishvananda/netlink receives into a 64 KiB array on the stack (NetlinkSocket.Receive has a
// 65,736-byte frame), so a goroutine that calls it once keeps a 128 KiB stack for good: the
// loops of 255 instances held 34 MB of stack for it. A goroutine that ends gives its stack back
// to the runtime. This relies on every thread of hapair being in the network namespace of its
// interfaces, which the daemon's are (a test that moves one thread into another namespace
// calls the manager directly).
type offStackVIPs struct{ m *vipnet.Manager }

var _ instance.VIPs = offStackVIPs{}

func (o offStackVIPs) Attach() error      { return offStack(o.m.Attach) }
func (o offStackVIPs) Detach() error      { return offStack(o.m.Detach) }
func (o offStackVIPs) RemoveStale() error { return offStack(o.m.RemoveStale) }

// Missing asks the Watch first, on this goroutine: while every VIP is there, the answer costs
// no syscall, no goroutine and no allocation (TestVIPCheckDoesNotAllocate).
func (o offStackVIPs) Missing() ([]netip.Prefix, error) {
	if o.m.AllPresent() {
		return nil, nil
	}
	return o.missingOffStack()
}

// missingOffStack is the slow path of Missing, a function of its own: the variables its closure
// captures escape to the heap, and in Missing they did on every call, fast path too.
func (o offStackVIPs) missingOffStack() (missing []netip.Prefix, err error) {
	err = offStack(func() error {
		missing, err = o.m.Missing()
		return err
	})
	return missing, err
}

func offStack(f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	return <-done
}
