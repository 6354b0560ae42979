package main

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/hapair/hapair/internal/testenv"
	vipnet "github.com/hapair/hapair/vrrp/vip"
)

// TestVIPCheckDoesNotAllocate: a MASTER's VIP check, every VIP present, allocates nothing. It
// runs for every MASTER about once a second; what it allocated (the closure's variables, 48
// bytes a check) grew the heap of 255 instances by 9 KB a second up to the collector's goal,
// and that growth was the resident memory above keepalived's.
func TestVIPCheckDoesNotAllocate(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a network namespace (root)")
	}
	type outcome struct {
		skip, fail string
		missing    []netip.Prefix
		err        error
		allocs     float64
	}
	result := make(chan outcome, 1)
	go func() {
		// This thread goes into a namespace of its own and ends with the goroutine: the runtime
		// then destroys it rather than reuse it elsewhere, and the namespace goes with it.
		runtime.LockOSThread()
		result <- func() outcome {
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return outcome{skip: fmt.Sprintf("unshare: %v (needs root)", err)}
			}
			link := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "vipchk0"}, PeerName: "vipchk1"}
			if err := netlink.LinkAdd(link); err != nil {
				return outcome{fail: fmt.Sprintf("add link: %v", err)}
			}
			if err := netlink.LinkSetUp(link); err != nil {
				return outcome{fail: fmt.Sprintf("link up: %v", err)}
			}
			w, err := vipnet.NewWatch(nil)
			if err != nil {
				return outcome{fail: fmt.Sprintf("NewWatch: %v", err)}
			}
			defer w.Close()
			vip := netip.MustParsePrefix("192.0.2.10/32")
			m, err := vipnet.NewManager("vipchk0", []netip.Prefix{vip}, nil)
			if err != nil {
				return outcome{fail: fmt.Sprintf("NewManager: %v", err)}
			}
			m.UseWatch(w)
			if err := m.Attach(); err != nil {
				return outcome{fail: fmt.Sprintf("Attach: %v", err)}
			}
			for deadline := time.Now().Add(5 * time.Second); !m.AllPresent(); time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					return outcome{fail: "the Watch never saw the VIP attached"}
				}
			}
			vips := offStackVIPs{m}
			var o outcome
			o.allocs = testing.AllocsPerRun(100, func() { o.missing, o.err = vips.Missing() })
			return o
		}()
	}()
	o := <-result
	switch {
	case o.skip != "":
		testenv.SkipOrFail(t, "%s", o.skip)
	case o.fail != "":
		t.Fatal(o.fail)
	case o.err != nil || len(o.missing) != 0:
		t.Fatalf("Missing = %v, %v; want none", o.missing, o.err)
	case o.allocs != 0:
		t.Errorf("a VIP check with every VIP present made %v allocations, want 0", o.allocs)
	}
}
