package vip

import (
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hapair/hapair/vrrp/internal/nstest"
	"github.com/vishvananda/netns"
)

// watchIn starts a Watch on ns's addresses, with the socket's receive buffer set to rcvbuf
// (0: the kernel's default).
func watchIn(t testing.TB, ns *nstest.NS, rcvbuf int) *Watch {
	t.Helper()
	var w *Watch
	ns.MustDo(t, func() error {
		h, err := netns.Get()
		if err != nil {
			return err
		}
		w, err = newWatch(&netlinkSource{ns: h, rcvbuf: rcvbuf}, nil)
		return err
	})
	t.Cleanup(func() { w.Close() })
	return w
}

// waitPresent polls, without a syscall of the Manager's, until the Watch says the VIPs are all
// there (want) or not.
func waitPresent(t *testing.T, m *Manager, want bool) {
	t.Helper()
	nstest.Eventually(t, 5*time.Second, func() error {
		if got := m.AllPresent(); got != want {
			return fmt.Errorf("AllPresent = %v, want %v", got, want)
		}
		return nil
	})
}

// TestWatchSeesVIPDeletedByHand: with a Watch, a VIP deleted by hand shows in AllPresent from
// the kernel's notification (no dump), Missing names it, and Attach puts it back.
func TestWatchSeesVIPDeletedByHand(t *testing.T) {
	p := nstest.NewPair(t)
	w := watchIn(t, p.A, 0)
	m, err := NewManager(p.AIf, testVIPs, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.UseWatch(w)
	if m.AllPresent() {
		t.Fatal("AllPresent before Attach")
	}
	p.A.MustDo(t, m.Attach)
	waitPresent(t, m, true)

	p.A.IP(t, "addr", "del", "10.201.0.101/32", "dev", p.AIf)
	p.A.IP(t, "addr", "del", "fd00:201::100/64", "dev", p.AIf)
	waitPresent(t, m, false)
	missing, err := inNS(t, p.A, m.Missing)
	if err != nil {
		t.Fatal(err)
	}
	if want := []netip.Prefix{testVIPs[1], testVIPs[3]}; !slices.Equal(missing, want) {
		t.Errorf("Missing = %v, want %v", missing, want)
	}
	p.A.MustDo(t, m.Attach)
	waitPresent(t, m, true)
	if missing, err := inNS(t, p.A, m.Missing); err != nil || len(missing) != 0 {
		t.Fatalf("Missing after Attach = %v, %v", missing, err)
	}
	p.A.MustDo(t, m.Detach)
	waitPresent(t, m, false)
}

// TestWatchFollowsRecreatedInterface: an interface deleted and made again under the same name
// has a new index; its VIPs are gone, Missing says so (and errors while the interface is
// absent), and once attached again the Watch finds them under the new index.
func TestWatchFollowsRecreatedInterface(t *testing.T) {
	p := nstest.NewPair(t)
	w := watchIn(t, p.A, 0)
	mk := func() {
		p.A.IP(t, "link", "add", "vw0", "type", "veth", "peer", "name", "vw0p")
		p.A.IP(t, "link", "set", "vw0", "up")
	}
	mk()
	vips := []netip.Prefix{netip.MustParsePrefix("10.202.0.10/24")}
	m, err := NewManager("vw0", vips, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.UseWatch(w)
	p.A.MustDo(t, m.Attach)
	waitPresent(t, m, true)

	p.A.IP(t, "link", "del", "vw0")
	waitPresent(t, m, false)
	if _, err := inNS(t, p.A, m.Missing); err == nil || !strings.Contains(err.Error(), "check VIPs on vw0") {
		t.Errorf("Missing with the interface gone: %v, want an error", err)
	}
	mk()
	missing, err := inNS(t, p.A, m.Missing)
	if err != nil || !slices.Equal(missing, vips) {
		t.Fatalf("Missing on the new interface = %v, %v; want %v", missing, err, vips)
	}
	p.A.MustDo(t, m.Attach)
	waitPresent(t, m, true)
}

// TestWatchRecoversFromOverflow: the kernel drops notifications when the socket's buffer is
// full (here a small one, while the Watch is held up), and says so with ENOBUFS; the Watch reads
// the addresses again, so a VIP deleted among the dropped notifications is seen missing and
// addresses added then are known.
func TestWatchRecoversFromOverflow(t *testing.T) {
	p := nstest.NewPair(t)
	w := watchIn(t, p.A, 4096)
	m, err := NewManager(p.AIf, testVIPs, nil)
	if err != nil {
		t.Fatal(err)
	}
	m.UseWatch(w)
	p.A.MustDo(t, m.Attach)
	waitPresent(t, m, true)

	// Hold the Watch up (it applies notifications under its lock) while the kernel sends far
	// more notifications than the channel and the socket's buffer hold.
	var batch strings.Builder
	var added []netip.Prefix
	for i := range 400 {
		a := netip.MustParsePrefix(fmt.Sprintf("10.203.%d.%d/32", i/200, 1+i%200))
		added = append(added, a)
		fmt.Fprintf(&batch, "addr add %s dev %s\n", a, p.AIf)
	}
	fmt.Fprintf(&batch, "addr del %s dev %s\n", testVIPs[0], p.AIf)
	w.mu.Lock()
	cmd := exec.Command("ip", "-n", p.A.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	out, err := cmd.CombinedOutput()
	w.mu.Unlock()
	if err != nil {
		t.Fatalf("ip -batch: %v: %s", err, out)
	}

	nstest.Eventually(t, 10*time.Second, func() error {
		w.mu.RLock()
		resyncs := w.resyncs
		w.mu.RUnlock()
		if resyncs == 0 {
			return errors.New("no dump after the overflow")
		}
		if got, known := w.missingOf(p.AIf, testVIPs); !known || !slices.Equal(got, testVIPs[:1]) {
			return fmt.Errorf("missing %v (known %v), want %v", got, known, testVIPs[:1])
		}
		if got, known := w.missingOf(p.AIf, added); !known || len(got) != 0 {
			return fmt.Errorf("%d of the addresses added are not known (known %v)", len(got), known)
		}
		return nil
	})
}

// BenchmarkMissing: a MASTER's check with 255 addresses on the interface, from the Watch (what
// every check costs now) and by a link lookup and dump of its own (what a check cost without
// the Watch; vip.Dumps shared one such dump between the checks of 500 ms).
func BenchmarkMissing(b *testing.B) {
	p := nstest.NewPair(b)
	var batch strings.Builder
	for i := range 255 {
		fmt.Fprintf(&batch, "addr add 10.204.0.%d/32 dev %s\n", i+1, p.AIf)
	}
	cmd := exec.Command("ip", "-n", p.A.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("ip -batch: %v: %s", err, out)
	}
	vips := []netip.Prefix{netip.MustParsePrefix("10.204.0.200/32")}
	for _, withWatch := range []bool{true, false} {
		name := "dump"
		if withWatch {
			name = "watch"
		}
		b.Run(name, func(b *testing.B) {
			m, err := NewManager(p.AIf, vips, nil)
			if err != nil {
				b.Fatal(err)
			}
			if withWatch {
				m.UseWatch(watchIn(b, p.A, 0))
			}
			p.A.MustDo(b, func() error {
				if missing, err := m.Missing(); err != nil || len(missing) != 0 {
					return fmt.Errorf("Missing = %v, %v", missing, err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					if _, err := m.Missing(); err != nil {
						return err
					}
				}
				return nil
			})
		})
	}
}
