package vip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hapair/hapair/vrrp/internal/nstest"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// fakeSource is the kernel's addresses for a Watch in a unit test: the test sends the
// notifications, ends a subscription as the kernel does when it drops some (ENOBUFS), and says
// what the next dumps return.
type fakeSource struct {
	mu      sync.Mutex
	addrs   []netlink.Addr // what dump returns
	dumpErr error          // returned by dump instead, while set
	subs    []*fakeSub
	dumps   int
}

type fakeSub struct {
	ch   chan netlink.AddrUpdate
	once sync.Once
}

func (s *fakeSub) end() { s.once.Do(func() { close(s.ch) }) }

func (f *fakeSource) subscribe(stop <-chan struct{}, onError func(error)) (<-chan netlink.AddrUpdate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sub := &fakeSub{ch: make(chan netlink.AddrUpdate)}
	f.subs = append(f.subs, sub)
	go func() { <-stop; sub.end() }()
	return sub.ch, nil
}

func (f *fakeSource) dump() ([]netlink.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dumps++
	if f.dumpErr != nil {
		return nil, f.dumpErr
	}
	return slices.Clone(f.addrs), nil
}

// current is the live subscription's channel.
func (f *fakeSource) current() chan<- netlink.AddrUpdate {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.subs[len(f.subs)-1].ch
}

// lose ends the live subscription as the kernel's ENOBUFS does.
func (f *fakeSource) lose() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.subs[len(f.subs)-1].end()
}

func (f *fakeSource) subscriptions() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

func nlAddr(index int, p string, flags int) netlink.Addr {
	pp := netip.MustParsePrefix(p)
	return netlink.Addr{LinkIndex: index, Flags: flags, IPNet: &net.IPNet{
		IP: pp.Addr().AsSlice(), Mask: net.CIDRMask(pp.Bits(), pp.Addr().BitLen()),
	}}
}

func update(index int, p string, added bool, flags int) netlink.AddrUpdate {
	a := nlAddr(index, p, flags)
	return netlink.AddrUpdate{LinkAddress: *a.IPNet, LinkIndex: index, NewAddr: added, Flags: flags}
}

var (
	vipA = netip.MustParsePrefix("10.0.0.10/32")
	vipB = netip.MustParsePrefix("fd00::10/64")
)

func newFakeWatch(t *testing.T, f *fakeSource) *Watch {
	t.Helper()
	w, err := newWatch(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	w.retry = time.Millisecond
	t.Cleanup(func() { w.Close() })
	w.learn("eth0", 2)
	return w
}

// waitMissing polls the Watch until it knows eth0's VIPs and reports want missing: it applies
// notifications on its own goroutine.
func waitMissing(t *testing.T, w *Watch, want ...netip.Prefix) {
	t.Helper()
	nstest.Eventually(t, 5*time.Second, func() error {
		got, known := w.missingOf("eth0", []netip.Prefix{vipA, vipB})
		if !known {
			return errors.New("the Watch does not know")
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("missing %v, want %v", got, want)
		}
		return nil
	})
}

// TestWatchFollowsNotifications: the first dump, then each notification, say what is on the
// interface; an address on another interface, or with another prefix length, is not ours; a
// VIP whose DAD failed counts as missing; OnGone hears of addresses deleted or failed.
func TestWatchFollowsNotifications(t *testing.T) {
	f := &fakeSource{addrs: []netlink.Addr{nlAddr(2, "10.0.0.10/32", 0), nlAddr(3, "fd00::10/64", 0)}}
	w := newFakeWatch(t, f)
	waitMissing(t, w, vipB) // vipB is on interface 3

	f.current() <- update(2, "fd00::10/64", true, unix.IFA_F_NODAD)
	waitMissing(t, w)
	f.current() <- update(2, "10.0.0.10/32", false, 0)
	waitMissing(t, w, vipA)
	f.current() <- update(2, "10.0.0.10/24", true, 0)
	waitMissing(t, w, vipA)
	f.current() <- update(2, "fd00::10/64", true, unix.IFA_F_DADFAILED)
	waitMissing(t, w, vipA, vipB)

	gone := make(chan netip.Prefix, 4)
	w.OnGone(func(p netip.Prefix) { gone <- p })
	f.current() <- update(2, "10.0.0.10/32", true, 0)
	f.current() <- update(2, "10.0.0.10/32", false, 0)
	f.current() <- update(2, "fd00::10/64", true, unix.IFA_F_DADFAILED)
	for _, want := range []netip.Prefix{vipA, vipB} {
		if got := <-gone; got != want {
			t.Errorf("OnGone called with %v, want %v", got, want)
		}
	}
	waitMissing(t, w, vipA, vipB)
	if len(gone) != 0 {
		t.Errorf("OnGone called for an address added: %v", <-gone)
	}

	if _, known := w.missingOf("eth1", []netip.Prefix{vipA}); known {
		t.Error("the Watch answers for an interface whose index it was never told")
	}
}

// TestWatchMakesUpForLostNotifications: when the subscription ends (the kernel dropped
// notifications: ENOBUFS), the Watch subscribes again and takes the addresses from a dump, so a
// VIP deleted while notifications were lost is seen missing; while the dump fails the Watch
// says it does not know (Missing then reads the addresses itself) and keeps trying.
func TestWatchMakesUpForLostNotifications(t *testing.T) {
	f := &fakeSource{addrs: []netlink.Addr{nlAddr(2, "10.0.0.10/32", 0), nlAddr(2, "fd00::10/64", 0)}}
	w := newFakeWatch(t, f)
	gone := make(chan netip.Prefix, 4)
	w.OnGone(func(p netip.Prefix) { gone <- p })
	waitMissing(t, w)

	// vipA is deleted, and its notification lost; the dumps fail for a while.
	f.mu.Lock()
	f.addrs = []netlink.Addr{nlAddr(2, "fd00::10/64", 0)}
	f.dumpErr = unix.ENOBUFS
	f.mu.Unlock()
	f.lose()
	nstest.Eventually(t, 5*time.Second, func() error {
		if _, known := w.missingOf("eth0", []netip.Prefix{vipA}); known {
			return errors.New("the Watch still answers after losing notifications, with no dump since")
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.dumps < 3 {
			return fmt.Errorf("%d dumps, want the Watch to keep trying", f.dumps)
		}
		return nil
	})

	f.mu.Lock()
	f.dumpErr = nil
	f.mu.Unlock()
	waitMissing(t, w, vipA)
	// The dump after the loss says what left meanwhile, as its lost notification would have.
	select {
	case p := <-gone:
		if p != vipA {
			t.Errorf("gone %v after the dump, want %v", p, vipA)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("%v left while notifications were lost: OnGone not called after the dump", vipA)
	}
	select {
	case p := <-gone:
		t.Errorf("gone %v as well, which never left", p)
	default:
	}
	// Notifications on the new subscription are applied.
	f.current() <- update(2, "10.0.0.10/32", true, 0)
	waitMissing(t, w)
	w.mu.RLock()
	resyncs := w.resyncs
	w.mu.RUnlock()
	if resyncs != 1 {
		t.Errorf("resyncs = %d, want 1", resyncs)
	}
}

// TestWatchCheckDoesNotAllocate: a MASTER's check with every VIP present allocates nothing.
func TestWatchCheckDoesNotAllocate(t *testing.T) {
	f := &fakeSource{addrs: []netlink.Addr{nlAddr(2, "10.0.0.10/32", 0), nlAddr(2, "fd00::10/64", 0)}}
	w := newFakeWatch(t, f)
	waitMissing(t, w)
	m, err := NewManager("eth0", []netip.Prefix{vipA, vipB}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.UseWatch(w)
	var missing []netip.Prefix
	allocs := testing.AllocsPerRun(100, func() {
		if missing, err = m.Missing(); err != nil || !m.AllPresent() {
			t.Fatalf("Missing = %v, %v; AllPresent false", missing, err)
		}
	})
	if allocs != 0 || len(missing) != 0 {
		t.Errorf("Missing: %v allocations a check (missing %v), want 0", allocs, missing)
	}
}

// TestWatchClose: Close ends the Watch's goroutine, also while it waits to subscribe again.
func TestWatchClose(t *testing.T) {
	f := &fakeSource{}
	w, err := newWatch(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.dumpErr = errors.New("no")
	f.mu.Unlock()
	f.lose()
	nstest.Eventually(t, 5*time.Second, func() error {
		if n := f.subscriptions(); n < 2 {
			return fmt.Errorf("%d subscriptions", n)
		}
		return nil
	})
	done := make(chan struct{})
	go func() { w.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return while the Watch waited to subscribe again")
	}
}
