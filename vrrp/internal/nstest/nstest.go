// Package nstest builds throw-away Linux network namespaces for the tests of hapair's VRRP I/O
// packages, and runs test code inside them.
//
// Namespaces are made with ip(8) under unique names and deleted in t.Cleanup, so a test
// never touches the machine's own namespace and two runs never collide.
//
// Code runs inside a namespace on a goroutine locked to its OS thread (Do). That goroutine
// exits still locked, so the Go runtime discards the thread instead of handing a thread in a
// foreign namespace to other goroutines. Sockets keep the namespace they were opened in, so a
// socket opened inside Do may be used from any goroutine afterwards.
package nstest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// RequireRoot skips the test under -short (namespaces are no unit test, even as root) and unless
// it runs as root; with CI set in the environment a
// missing root is a failure instead, so that CI never passes by skipping.
func RequireRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("namespace test: skipped under -short")
	}
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("needs root for network namespaces (CI is set, so not skipping)")
	}
	t.Skip("needs root for network namespaces")
}

// NS is one network namespace created for a test.
type NS struct {
	Name   string
	Handle netns.NsHandle
}

// New creates a namespace named hpt-<random> with its loopback up and removes it when the test
// ends. It calls RequireRoot first.
func New(t testing.TB) *NS {
	t.Helper()
	RequireRoot(t)
	name := "hpt-" + randomSuffix(t)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	ns := &NS{Name: name, Handle: netns.None()}
	t.Cleanup(func() {
		if ns.Handle.IsOpen() {
			ns.Handle.Close()
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("open namespace %s: %v", name, err)
	}
	ns.Handle = h
	ns.IP(t, "link", "set", "lo", "up")
	return ns
}

// IP runs `ip -n <ns> args...` and returns its output; a failure fails the test.
func (ns *NS) IP(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-n", ns.Name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", ns.Name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Sysctl sets a sysctl inside the namespace (key in dotted form, as sysctl(8) takes it).
func (ns *NS) Sysctl(t testing.TB, key, value string) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns.Name, "sysctl", "-q", "-w", key+"="+value).CombinedOutput()
	if err != nil {
		t.Fatalf("sysctl -w %s=%s in %s: %v: %s", key, value, ns.Name, err, out)
	}
}

// Do runs f inside the namespace and returns its error. See the package comment for why the
// thread is never unlocked.
func (ns *NS) Do(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: this thread's namespace has changed, let it die with the goroutine.
		if err := netns.Set(ns.Handle); err != nil {
			errc <- fmt.Errorf("enter namespace %s: %w", ns.Name, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// MustDo is Do that fails the test on error.
func (ns *NS) MustDo(t testing.TB, f func() error) {
	t.Helper()
	if err := ns.Do(f); err != nil {
		t.Fatal(err)
	}
}

// Netlink returns a netlink handle working inside the namespace, closed at the end of the test.
func (ns *NS) Netlink(t testing.TB) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns.Handle)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", ns.Name, err)
	}
	t.Cleanup(h.Close)
	return h
}

// HardwareAddr returns the MAC address of a link in the namespace.
func (ns *NS) HardwareAddr(t testing.TB, ifname string) net.HardwareAddr {
	t.Helper()
	l, err := ns.Netlink(t).LinkByName(ifname)
	if err != nil {
		t.Fatalf("link %s in %s: %v", ifname, ns.Name, err)
	}
	return l.Attrs().HardwareAddr
}

// Pair is two namespaces joined by a veth pair, both ends up and addressed.
type Pair struct {
	A, B       *NS
	AIf, BIf   string // link names: "va" in A, "vb" in B
	A4, B4     netip.Prefix
	A6, B6     netip.Prefix // unique local addresses, added without DAD
	ALinkLocal netip.Addr   // A's IPv6 link-local address (DAD disabled, usable at once)
	BLinkLocal netip.Addr
	AMAC, BMAC net.HardwareAddr
}

// NewPair creates two namespaces joined by a veth pair with addresses 10.201.0.1/24 (A) and
// 10.201.0.2/24 (B), fd00:201::1/64 and fd00:201::2/64, and fixed link-local addresses. DAD is
// off on both ends so that every address is usable at once.
func NewPair(t testing.TB) *Pair {
	t.Helper()
	p := &Pair{
		A: New(t), B: New(t), AIf: "va", BIf: "vb",
		A4: netip.MustParsePrefix("10.201.0.1/24"), B4: netip.MustParsePrefix("10.201.0.2/24"),
		A6: netip.MustParsePrefix("fd00:201::1/64"), B6: netip.MustParsePrefix("fd00:201::2/64"),
		AMAC: net.HardwareAddr{0x02, 0x00, 0x5e, 0x20, 0x01, 0x01},
		BMAC: net.HardwareAddr{0x02, 0x00, 0x5e, 0x20, 0x01, 0x02},
	}
	p.ALinkLocal = netip.MustParseAddr("fe80::5eff:fe20:101")
	p.BLinkLocal = netip.MustParseAddr("fe80::5eff:fe20:102")
	p.A.IP(t, "link", "add", p.AIf, "address", p.AMAC.String(), "type", "veth",
		"peer", "name", p.BIf, "address", p.BMAC.String(), "netns", p.B.Name)
	for _, side := range []struct {
		ns        *NS
		ifname    string
		v4, v6    netip.Prefix
		linkLocal netip.Addr
	}{
		{p.A, p.AIf, p.A4, p.A6, p.ALinkLocal},
		{p.B, p.BIf, p.B4, p.B6, p.BLinkLocal},
	} {
		// With addr_gen_mode none the kernel adds no link-local address of its own (it would
		// be tentative for a second); ours is added without DAD.
		side.ns.Sysctl(t, "net.ipv6.conf."+side.ifname+".accept_dad", "0")
		side.ns.IP(t, "link", "set", side.ifname, "addrgenmode", "none")
		side.ns.IP(t, "addr", "add", side.v4.String(), "dev", side.ifname)
		side.ns.IP(t, "addr", "add", side.linkLocal.String()+"/64", "dev", side.ifname, "nodad")
		side.ns.IP(t, "addr", "add", side.v6.String(), "dev", side.ifname, "nodad")
		side.ns.IP(t, "link", "set", side.ifname, "up")
	}
	p.WaitUp(t)
	return p
}

// WaitUp waits until both veth ends report carrier (lower layer up).
func (p *Pair) WaitUp(t testing.TB) {
	t.Helper()
	for _, side := range []struct {
		ns     *NS
		ifname string
	}{{p.A, p.AIf}, {p.B, p.BIf}} {
		h := side.ns.Netlink(t)
		Eventually(t, 5*time.Second, func() error {
			l, err := h.LinkByName(side.ifname)
			if err != nil {
				return err
			}
			if l.Attrs().OperState != netlink.OperUp {
				return fmt.Errorf("%s in %s is %s", side.ifname, side.ns.Name, l.Attrs().OperState)
			}
			return nil
		})
	}
}

// Eventually polls cond until it returns nil, failing the test with cond's last error when the
// deadline passes.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func randomSuffix(t testing.TB) string {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random namespace suffix: %v", err)
	}
	return hex.EncodeToString(b)
}

// Children lists the pids of this process's children, of every thread's.
func Children(t testing.TB) []int {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, task := range tasks {
		b, _ := os.ReadFile("/proc/self/task/" + task.Name() + "/children")
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				out = append(out, pid)
			}
		}
	}
	return out
}
