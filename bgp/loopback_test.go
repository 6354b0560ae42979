package bgp

import (
	"net/netip"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/hapair/hapair/internal/testenv"
)

// inNewNetns runs f on a thread of its own in a fresh network namespace (root only), so that
// nothing touches the machine's own lo. The thread is never returned to the scheduler.
func inNewNetns(t *testing.T, f func()) {
	t.Helper()
	if testing.Short() {
		t.Skip("a network namespace of its own: skipped under -short")
	}
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(t, "needs root (a network namespace of its own)")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // not unlocked: the thread ends with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			t.Errorf("unshare: %v", err)
			return
		}
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		if err != nil {
			t.Errorf("lo: %v", err)
			return
		}
		f()
	}()
	<-done
}

func TestLoopbackAddsAndRemovesHostAddresses(t *testing.T) {
	inNewNetns(t, func() {
		lo, err := OpenLoopback("lo")
		if err != nil {
			t.Error(err)
			return
		}
		for _, p := range []netip.Prefix{svc, svc6} {
			if err := lo.Add(p); err != nil {
				t.Errorf("add %s: %v", p, err)
				continue
			}
			if err := lo.Add(p); err != nil { // present already is fine
				t.Errorf("add %s again: %v", p, err)
			}
			if has, err := lo.Has(p); err != nil || !has {
				t.Errorf("%s not on lo after Add (err %v)", p, err)
			}
			if err := lo.Remove(p); err != nil {
				t.Errorf("remove %s: %v", p, err)
			}
			if has, err := lo.Has(p); err != nil || has {
				t.Errorf("%s still on lo after Remove (err %v)", p, err)
			}
			if err := lo.Remove(p); err != nil { // absent already is fine
				t.Errorf("remove %s again: %v", p, err)
			}
		}
		if _, err := OpenLoopback("nosuch0"); err == nil {
			t.Error("OpenLoopback of a missing interface succeeded")
		}
	})
}

func TestRouterIDToward(t *testing.T) {
	inNewNetns(t, func() {
		la := &netlink.LinkAttrs{Name: "v0"}
		veth := &netlink.Veth{LinkAttrs: *la, PeerName: "v1"}
		if err := netlink.LinkAdd(veth); err != nil {
			t.Errorf("veth: %v", err)
			return
		}
		link, _ := netlink.LinkByName("v0")
		peer, _ := netlink.LinkByName("v1")
		_ = netlink.LinkSetUp(link)
		_ = netlink.LinkSetUp(peer)
		addr, _ := netlink.ParseAddr("10.77.0.11/24")
		if err := netlink.AddrAdd(link, addr); err != nil {
			t.Errorf("addr: %v", err)
			return
		}
		got, err := RouterIDToward(netip.MustParseAddr("10.77.0.1"))
		if err != nil || got != netip.MustParseAddr("10.77.0.11") {
			t.Errorf("RouterIDToward(10.77.0.1) = %v, %v; want 10.77.0.11", got, err)
		}
		if _, err := RouterIDToward(netip.MustParseAddr("192.0.2.1")); err == nil {
			t.Error("RouterIDToward found a route where there is none")
		}
	})
}
