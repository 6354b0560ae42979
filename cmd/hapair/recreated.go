package main

import (
	"fmt"
	"time"
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
// The VIP manager finds its interface by name at each use and needs nothing.

// rebindRetry is how often a rebind that failed is tried again while no link event comes (an
// address is added to the new interface: no link event follows).
const rebindRetry = 500 * time.Millisecond

// rebindWarnAfter is how long a rebind may fail before it is a warning. ifupdown and networkd
// bring the link up before they add its address, so the first tries of every recreation fail
// for a few milliseconds: that is logged as progress, not as a problem.
const rebindWarnAfter = 5 * time.Second

// linksChanged is the link watcher's callback: instances on an interface created again move to
// it, then every instance's fault state and priority are computed again.
func (d *daemon) linksChanged() {
	d.rebindRecreated()
	d.updatePriorities()
}

// rebindRecreated moves each instance whose interface has a new index onto it, or holds it in
// FAULT until it can (updatePriorities reads vi.rebindWhy).
func (d *daemon) rebindRecreated() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.instancesClosed {
		return
	}
	retry := false
	for _, vi := range d.instances {
		index := d.links.Index(vi.cfg.Interface)
		if vi.ifindex == 0 || index == 0 || index == vi.ifindex {
			// The fakes' instances have no index; a gone interface faults as a link down.
			continue
		}
		if vi.rebindWhy == "" {
			d.log.Warn("("+vi.name+") Interface "+vi.cfg.Interface+" was created again: moving to it",
				"index", vi.ifindex, "new_index", index)
			vi.rebindWhy = fmt.Sprintf("interface %s created again, not yet listening on it", vi.cfg.Interface)
			vi.rebindSince, vi.rebindWarned = time.Now(), false
		}
		nio, err := d.host.Rejoin(vi.cfg, vi.source)
		if err != nil {
			if vi.rebindErr != err.Error() { // once per reason, not at every retry
				vi.rebindErr = err.Error()
				d.log.Info("("+vi.name+") Cannot listen on the new "+vi.cfg.Interface+" yet, trying again", "err", err)
				// The fault says why in `hapair status` too.
				vi.rebindWhy = fmt.Sprintf("interface %s created again, not yet listening on it: %v", vi.cfg.Interface, err)
			}
			if failing := time.Since(vi.rebindSince); failing >= rebindWarnAfter && !vi.rebindWarned {
				vi.rebindWarned = true
				d.log.Warn("("+vi.name+") Listening on the new "+vi.cfg.Interface+" still fails, trying again",
					"for", failing.Round(time.Millisecond), "err", err)
			}
			retry = true
			continue
		}
		oldAnn := vi.ann
		done := vi.run.Rebind(nio.conn, nio.ann)
		go func() {
			<-done // the instance no longer uses it
			oldAnn.Close()
		}()
		vi.conn, vi.ann, vi.ifindex = nio.conn, nio.ann, nio.ifindex
		vi.rebindWhy, vi.rebindErr = "", ""
	}
	if retry && d.rebindTimer == nil {
		d.rebindTimer = time.AfterFunc(rebindRetry, func() {
			d.mu.Lock()
			d.rebindTimer = nil
			d.mu.Unlock()
			d.linksChanged()
		})
	}
}
