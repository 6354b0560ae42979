package main

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/hapair/hapair/vrrp/transport"
)

// An interface deleted and created again under the same name (ifupdown or networkd bringing a
// VLAN or a bond back, a veth made anew) is a new interface to the kernel, with a new index. The
// instance's socket and announcer were opened on the old one: a BACKUP left on them hears no
// MASTER and becomes a second one after Master_Down_Interval (seen in
// TestRecreatedInterfaceIsFollowed before this was written). keepalived reopens its sockets on
// the new interface; so does hapair:
//   - the link watcher sees the name come back with another index (links.Index);
//   - the instance is held in FAULT ("interface ... created again") until it listens there;
//   - a socket and an announcer are opened on the new interface and handed to the instance
//     (instance.Rebind), which takes them in its next turn, before the fault is cleared;
//   - until they can be opened (the new interface has no address yet: ifupdown adds it after
//     the link), it is tried again at every link event and every rebindRetry.
//
// An interface renumbered in place (its address deleted, another added: an operator, DHCP) is
// followed the same way. A MASTER that kept sending from the address that left sent nothing
// (the kernel refuses the source), and kept its VIPs: its BACKUP took over and both held them
// (seen by hand on 2026-12-04, TestRenumberedInterfaceIsFollowed since). keepalived takes the
// interface's new address, or goes to FAULT while it has none; so does hapair:
//   - the address watch says which addresses leave (addrGone); one an instance sends from marks
//     it for a look;
//   - the interface's primary address, VIPs aside, becomes its source and the state machine's
//     own address (instance.Rebind with a source and no new socket);
//   - while it has none, the instance is held in FAULT (its VIPs released) and looked at again
//     every rebindRetry; so is one whose unicast_src_ip is no longer an address of the host.
//
// The VIP manager finds its interface by name at each use and needs nothing.

// rebindRetry is how often a rebind that failed is tried again while no link event comes (an
// address is added to the new interface: no link event follows).
const rebindRetry = 500 * time.Millisecond

// rebindWarnAfter is how long a rebind may fail before it is a warning. ifupdown and networkd
// bring the link up before they add its address, so the first tries of every recreation fail
// for a few milliseconds: that is logged as progress, not as a problem.
const rebindWarnAfter = 5 * time.Second

// linksChanged is the link watcher's callback: instances on an interface created again or
// renumbered move to it, then every instance's fault state and priority are computed again.
func (d *daemon) linksChanged() {
	d.rebindRecreated()
	d.updatePriorities()
}

// addrGone is the address watch's callback, on its goroutine (it must not block): a VIP that
// left wakes its MASTER (vipGone), and the address an instance sends from makes it look for
// its interface's address now.
func (d *daemon) addrGone(p netip.Prefix) {
	d.vipGone(p)
	if sources := d.sources.Load(); sources != nil && slices.Contains(*sources, p.Addr()) {
		go d.sourceLeft(p.Addr())
	}
}

// sourceLeft marks the instances that send from a, which left its interface, and follows them.
func (d *daemon) sourceLeft(a netip.Addr) {
	d.mu.Lock()
	for _, vi := range d.instances {
		if vi.source == a {
			vi.sourceGone = true
		}
	}
	d.mu.Unlock()
	d.linksChanged()
}

// noteSources publishes the addresses the instances send from, for addrGone. Called with d.mu
// held, or before anything runs.
func (d *daemon) noteSources() {
	sources := make([]netip.Addr, 0, len(d.instances))
	for _, vi := range d.instances {
		if !slices.Contains(sources, vi.source) {
			sources = append(sources, vi.source)
		}
	}
	d.sources.Store(&sources)
}

// vipAddrs are the addresses of every instance's VIPs, which are never an instance's source
// (never nil). Called with d.mu held.
func (d *daemon) vipAddrs() []netip.Addr {
	addrs := []netip.Addr{}
	for _, vi := range d.instances {
		addrs = append(addrs, prefixAddrs(vi.cfg.VIPs)...)
	}
	return addrs
}

// rebindRecreated moves each instance whose interface has a new index, or a new address, onto
// it, or holds it in FAULT until it can (updatePriorities reads vi.rebindWhy).
func (d *daemon) rebindRecreated() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.instancesClosed {
		return
	}
	retry := false
	var notOurs []netip.Addr // every instance's VIPs, gathered once a pass when needed
	for _, vi := range d.instances {
		index := d.links.Index(vi.cfg.Interface)
		if vi.ifindex == 0 || index == 0 {
			// The fakes' instances have no index unless a test gives one; a gone interface
			// faults as a link down, and is looked at again when it comes back.
			continue
		}
		recreated := index != vi.ifindex
		if !recreated && !vi.sourceGone && vi.rebindWhy == "" {
			continue
		}
		if recreated && vi.rebindIndex != index {
			vi.rebindIndex = index
			d.log.Warn("("+vi.name+") Interface "+vi.cfg.Interface+" was created again: moving to it",
				"index", vi.ifindex, "new_index", index)
			vi.rebindWhy = fmt.Sprintf("interface %s created again, not yet listening on it", vi.cfg.Interface)
			vi.rebindSince, vi.rebindWarned, vi.rebindErr = time.Now(), false, ""
		}
		if notOurs == nil {
			notOurs = d.vipAddrs()
		}
		source, err := d.host.Source(vi.cfg, notOurs)
		var nio instanceIO
		if err == nil && recreated {
			nio, err = d.host.Rejoin(vi.cfg, source)
		}
		if err != nil {
			d.holdForRebind(vi, recreated, err)
			retry = true
			continue
		}
		switch {
		case recreated:
			oldAnn := vi.ann
			done := vi.run.Rebind(nio.conn, nio.ann, source)
			go func() {
				<-done // the instance no longer uses it
				oldAnn.Close()
			}()
			vi.conn, vi.ann, vi.ifindex = nio.conn, nio.ann, nio.ifindex
		case source != vi.source:
			d.log.Warn("("+vi.name+") The address of "+vi.cfg.Interface+" changed: sending from "+source.String(), "was", vi.source)
			vi.run.Rebind(nil, nil, source)
		}
		if vi.rebindWhy != "" && !recreated {
			d.log.Info("(" + vi.name + ") " + vi.cfg.Interface + " has an address again: " + source.String())
		}
		vi.source, vi.sourceGone = source, false
		vi.rebindWhy, vi.rebindErr, vi.rebindIndex = "", "", 0
	}
	d.noteSources()
	if retry && d.rebindTimer == nil {
		d.rebindTimer = time.AfterFunc(rebindRetry, func() {
			d.mu.Lock()
			d.rebindTimer = nil
			d.mu.Unlock()
			d.linksChanged()
		})
	}
}

// holdForRebind keeps vi in FAULT, with why, until it can send from its interface as it is now:
// logged once per reason at INFO (every ifupdown-style recreation fails for a moment), and once
// as a warning when that lasts rebindWarnAfter. Called with d.mu held.
func (d *daemon) holdForRebind(vi *vrrpInstance, recreated bool, err error) {
	if vi.rebindErr == err.Error() { // once per reason, not at every retry
		if recreated {
			d.warnIfLong(vi, err)
		}
		return
	}
	vi.rebindErr = err.Error()
	if recreated {
		d.log.Info("("+vi.name+") Cannot listen on the new "+vi.cfg.Interface+" yet, trying again", "err", err)
		// The fault says why in `hapair status` too.
		vi.rebindWhy = fmt.Sprintf("interface %s created again, not yet listening on it: %v", vi.cfg.Interface, err)
		d.warnIfLong(vi, err)
		return
	}
	if !errors.Is(err, transport.ErrNoAddress) {
		// Not an answer (netlink failed): no fault for it, the next retry asks again.
		d.log.Warn("("+vi.name+") Looking for the address of "+vi.cfg.Interface+" failed, trying again", "err", err)
		return
	}
	// keepalived 2.2.7 goes to FAULT too (seen in the lab). A warning at once: nothing
	// brings the address back by itself.
	d.log.Warn("("+vi.name+") No address of its own on "+vi.cfg.Interface+" to send from: FAULT until it has one", "was", vi.source, "err", err)
	vi.rebindWhy = fmt.Sprintf("no address of its own on %s to send from (%s left it): %v", vi.cfg.Interface, vi.source, err)
}

// warnIfLong warns, once, when moving vi onto its recreated interface has failed for
// rebindWarnAfter.
func (d *daemon) warnIfLong(vi *vrrpInstance, err error) {
	if failing := time.Since(vi.rebindSince); failing >= rebindWarnAfter && !vi.rebindWarned {
		vi.rebindWarned = true
		d.log.Warn("("+vi.name+") Listening on the new "+vi.cfg.Interface+" still fails, trying again",
			"for", failing.Round(time.Millisecond), "err", err)
	}
}
