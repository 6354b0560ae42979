package vip

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/hapair/hapair/internal/nldump"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Watch knows which addresses are on the interfaces of one network namespace from the kernel's
// address notifications (RTM_NEWADDR, RTM_DELADDR), as keepalived does, so that a MASTER's
// once-a-second check that its VIPs are still there (Manager.Missing) is a map lookup instead
// of a netlink link lookup and address dump (a third of a CPU profile of 255 MASTERs when each
// dumped for itself; then one shared dump per interface every 500 ms, with a new socket each).
// One Watch serves every Manager of the namespace, through one netlink socket.
//
// Correctness does not depend on receiving every notification: when the kernel drops some
// (ENOBUFS, the socket's buffer full) or the subscription ends for any other reason, the Watch
// subscribes again and replaces what it knows with a dump; until that dump is in, and whenever
// the Watch does not know an interface's index, Missing reads the addresses itself as before.
type Watch struct {
	src   addrSource
	log   *slog.Logger
	retry time.Duration // first wait before subscribing again after a failure; doubles to maxRetry

	mu      sync.RWMutex
	synced  bool               // addrs holds the namespace's addresses; false while lost events are being made up for
	addrs   map[ifAddr]bool    // address on an interface -> usable (false: DAD failed)
	indexes map[string]int     // interface name -> index, as Managers last looked it up
	resyncs int                // dumps after the first, each for a lost subscription
	lastErr error              // the subscription's last error, logged when it ends
	gone    func(netip.Prefix) // OnGone's

	done    chan struct{}
	stopped chan struct{}
}

// ifAddr is an address on one interface. The kernel identifies an address by its interface,
// address and prefix length.
type ifAddr struct {
	index  int
	prefix netip.Prefix
}

// addrSource is where a Watch gets addresses from: the kernel (netlinkSource), or a test's fake.
type addrSource interface {
	// subscribe starts the notifications of address changes. The channel is closed when they
	// end, whether stop was closed or an error (events lost) ended them; errors go to onError.
	subscribe(stop <-chan struct{}, onError func(error)) (<-chan netlink.AddrUpdate, error)
	// dump lists every address in the namespace.
	dump() ([]netlink.Addr, error)
}

const (
	watchRetry    = 100 * time.Millisecond
	watchMaxRetry = 5 * time.Second
)

// NewWatch subscribes to the address notifications of the process's network namespace and
// reads its addresses. Close ends it. Every thread of the process must be in that namespace, as
// the daemon's are: the Watch opens its sockets on whichever thread runs it, and never enters a
// namespace (setns), which the unit's RestrictNamespaces forbids.
func NewWatch(log *slog.Logger) (*Watch, error) {
	src := &netlinkSource{ns: netns.None()}
	w, err := newWatch(src, log)
	if err != nil {
		src.close()
		return nil, err
	}
	return w, nil
}

func newWatch(src addrSource, log *slog.Logger) (*Watch, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Watch{
		src: src, log: log, retry: watchRetry,
		indexes: map[string]int{},
		done:    make(chan struct{}), stopped: make(chan struct{}),
	}
	updates, stop, err := w.sync()
	if err != nil {
		return nil, fmt.Errorf("watch addresses: %w", err)
	}
	go w.run(updates, stop)
	return w, nil
}

// Close ends the subscription.
func (w *Watch) Close() error {
	close(w.done)
	<-w.stopped
	if c, ok := w.src.(interface{ close() }); ok {
		c.close()
	}
	return nil
}

// run applies the notifications, and makes up for lost ones with a dump.
func (w *Watch) run(updates <-chan netlink.AddrUpdate, stop chan struct{}) {
	defer close(w.stopped)
	for {
		select {
		case <-w.done:
			end(updates, stop)
			return
		case u, ok := <-updates:
			if ok {
				w.apply(u)
				continue
			}
			end(updates, stop)
			w.mu.Lock()
			w.synced = false
			err := w.lastErr
			w.mu.Unlock()
			w.log.Warn("Address notifications lost, reading the addresses again", "err", err)
			if updates, stop = w.resubscribe(); updates == nil {
				return
			}
			w.mu.Lock()
			w.resyncs++
			w.mu.Unlock()
		}
	}
}

// end stops a subscription, and drains it so that its goroutine, which may be blocked sending
// on the channel, can see stop and close it.
func end(updates <-chan netlink.AddrUpdate, stop chan struct{}) {
	close(stop)
	go func() {
		for range updates {
		}
	}()
}

// resubscribe subscribes and dumps again until it succeeds (nil when the Watch is closed
// first), waiting longer after each failure.
func (w *Watch) resubscribe() (<-chan netlink.AddrUpdate, chan struct{}) {
	wait := w.retry
	for {
		updates, stop, err := w.sync()
		if err == nil {
			return updates, stop
		}
		w.log.Warn("Watching addresses failed, checking VIPs with a dump each time until it works again", "err", err, "retry", wait)
		t := time.NewTimer(wait)
		select {
		case <-w.done:
			t.Stop()
			return nil, nil
		case <-t.C:
		}
		wait = min(2*wait, watchMaxRetry)
	}
}

// sync subscribes, then dumps: a change between the two is in both, and applying the
// notifications (each says what an address now is) after the dump ends in the right state.
func (w *Watch) sync() (<-chan netlink.AddrUpdate, chan struct{}, error) {
	stop := make(chan struct{})
	updates, err := w.src.subscribe(stop, w.onError)
	if err != nil {
		close(stop)
		return nil, nil, fmt.Errorf("subscribe: %w", err)
	}
	list, err := w.src.dump()
	if err != nil {
		end(updates, stop)
		return nil, nil, fmt.Errorf("list addresses: %w", err)
	}
	addrs := make(map[ifAddr]bool, len(list))
	for _, a := range list {
		if p, ok := fromNetlink(a); ok {
			addrs[ifAddr{a.LinkIndex, p}] = usable(a.Flags)
		}
	}
	w.mu.Lock()
	// What left while notifications were lost is reported as if they had said so: a MASTER
	// whose adverts are delegated checks its VIPs only every half minute otherwise.
	var left []netip.Prefix
	for k, ok := range w.addrs {
		if now, still := addrs[k]; ok && (!still || !now) {
			left = append(left, k.prefix)
		}
	}
	w.addrs, w.synced = addrs, true
	gone := w.gone
	w.mu.Unlock()
	if gone != nil {
		for _, p := range left {
			gone(p)
		}
	}
	return updates, stop, nil
}

func (w *Watch) onError(err error) {
	w.mu.Lock()
	w.lastErr = err
	w.mu.Unlock()
	w.log.Debug("Address notification error", "err", err)
}

func (w *Watch) apply(u netlink.AddrUpdate) {
	p, ok := fromNetlink(netlink.Addr{IPNet: &u.LinkAddress})
	if !ok {
		return
	}
	k := ifAddr{u.LinkIndex, p}
	w.mu.Lock()
	if u.NewAddr {
		w.addrs[k] = usable(u.Flags)
	} else {
		delete(w.addrs, k)
	}
	gone := w.gone
	w.mu.Unlock()
	if gone != nil && (!u.NewAddr || !usable(u.Flags)) {
		gone(p)
	}
}

// OnGone makes the Watch call f with every address the kernel says left an interface, or
// failed DAD, so that a MASTER can put a VIP back at once rather than at its next check. f runs
// on the Watch's goroutine and must not block: notifications wait meanwhile. A dump made after
// lost notifications calls it with every address that left (or failed DAD) meanwhile.
func (w *Watch) OnGone(f func(netip.Prefix)) {
	w.mu.Lock()
	w.gone = f
	w.mu.Unlock()
}

// usable: a VIP whose DAD failed is on the interface but unusable, so it counts as missing and
// reconcile reports it rather than believing all is well.
func usable(flags int) bool { return flags&unix.IFA_F_DADFAILED == 0 }

// missingOf returns the VIPs not on ifname, and whether the Watch knows: it does not while lost
// notifications are being made up for, nor before a Manager told it ifname's index (learn).
// With nothing missing it does not allocate.
func (w *Watch) missingOf(ifname string, vips []netip.Prefix) ([]netip.Prefix, bool) {
	if w == nil {
		return nil, false
	}
	w.mu.RLock()
	defer w.mu.RUnlock()
	index, ok := w.indexes[ifname]
	if !ok || !w.synced {
		return nil, false
	}
	var missing []netip.Prefix
	for _, p := range vips {
		if !w.addrs[ifAddr{index, p}] {
			missing = append(missing, p)
		}
	}
	return missing, true
}

// learn records ifname's index, as a Manager just looked it up: an interface deleted and made
// again has a new one. The notifications carry indexes, not names.
func (w *Watch) learn(ifname string, index int) {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.indexes[ifname] = index
	w.mu.Unlock()
}

// netlinkSource is the kernel's addresses in one network namespace.
type netlinkSource struct {
	ns      netns.NsHandle // netns.None(): the calling thread's, without setns
	rcvbuf  int            // the socket's receive buffer; 0: the kernel's default (a test makes it small)
	handle  *netlink.Handle
	handleE error
	once    sync.Once
}

func (s *netlinkSource) subscribe(stop <-chan struct{}, onError func(error)) (<-chan netlink.AddrUpdate, error) {
	// Buffered so that a burst (every MASTER attaching its VIPs at once) waits here rather
	// than in the socket, whose overflow costs a dump.
	updates := make(chan netlink.AddrUpdate, 256)
	ns := s.ns
	err := netlink.AddrSubscribeWithOptions(updates, stop, netlink.AddrSubscribeOptions{
		Namespace:              &ns,
		ErrorCallback:          onError,
		ReceiveBufferSize:      s.rcvbuf,
		ReceiveBufferForceSize: s.rcvbuf != 0,
	})
	if err != nil {
		return nil, err
	}
	return updates, nil
}

func (s *netlinkSource) dump() ([]netlink.Addr, error) {
	s.once.Do(func() { s.handle, s.handleE = netlink.NewHandleAt(s.ns, unix.NETLINK_ROUTE) })
	if s.handleE != nil {
		return nil, s.handleE
	}
	return nldump.Retry(func() ([]netlink.Addr, error) { return s.handle.AddrList(nil, netlink.FAMILY_ALL) })
}

func (s *netlinkSource) close() {
	if s.handle != nil {
		s.handle.Close()
	}
	if s.ns.IsOpen() {
		s.ns.Close()
	}
}
