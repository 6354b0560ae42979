package main

import (
	"context"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hapair/hapair/cmd/internal/lab"
)

// Master_Down_Interval for the seed's settings (advert_int 1, priority 100, v2):
// 3 * 1s + (256-100)/256 s = 3.61 s.
const seedMasterDown = 3*time.Second + 609*time.Millisecond

// TestElectionFailoverAndPreempt is the seed's lab with two hapair hosts: the higher priority
// owns the VIP; SIGKILL moves it within Master_Down_Interval; the old master comes back and takes
// it back (preempt); SIGTERM moves it within the skew time; the client's neighbour entry follows.
func TestElectionFailoverAndPreempt(t *testing.T) {
	p := newPair(t)
	lb1 := startDaemon(t, p.lb1, labNode{Priority: 110, AuthPass: "1a2b3c4d"})
	lb2 := startDaemon(t, p.lb2, labNode{Priority: 100, AuthPass: "1a2b3c4d"})

	lb1.waitState(0, "MASTER", 10*time.Second)
	lb2.waitState(0, `BACKUP`, 10*time.Second)
	waitVIP(t, 2*time.Second, p.lb1, p.lb1, p.lb2)
	if got, want := p.neighborOf(t), p.lb1.MAC().String(); got != want {
		t.Fatalf("client resolves the VIP to %s, want lb1's %s", got, want)
	}

	// Hard failure: the master's VRRP speaker dies without a word.
	from2 := lb2.lines()
	killed := lb1.kill()
	lb2.waitState(from2, "MASTER", seedMasterDown+2*time.Second)
	took := waitVIPOn(t, p.lb2, seedMasterDown+2*time.Second)
	t.Logf("SIGKILL of the MASTER: VIP on the BACKUP after %s (Master_Down_Interval %s)", took.Sub(killed).Round(time.Millisecond), seedMasterDown)
	if d := took.Sub(killed); d > seedMasterDown+500*time.Millisecond {
		t.Errorf("takeover after SIGKILL took %s, want within Master_Down_Interval %s + 500ms", d, seedMasterDown)
	}
	waitNeighbor(t, p, p.lb2.MAC().String())

	// The old master comes back: stale VIP removed at start, then it preempts.
	from2 = lb2.lines()
	lb1.start()
	lb1.waitState(0, "MASTER", 10*time.Second)
	lb2.waitState(from2, "BACKUP", 10*time.Second)
	waitVIP(t, 2*time.Second, p.lb1, p.lb1, p.lb2)
	waitNeighbor(t, p, p.lb1.MAC().String())

	// Graceful stop: priority 0, the backup takes over after its skew time (0.61 s at 100).
	from2 = lb2.lines()
	stopped := lb1.terminate()
	if lb1.hasVIP() {
		t.Fatal("the stopped master kept the VIP")
	}
	lb2.waitState(from2, "MASTER", 3*time.Second)
	took = waitVIPOn(t, p.lb2, 3*time.Second)
	t.Logf("SIGTERM of the MASTER: VIP on the BACKUP after %s", took.Sub(stopped).Round(time.Millisecond))
	if d := took.Sub(stopped); d > time.Second+500*time.Millisecond {
		t.Errorf("takeover after SIGTERM took %s, want within skew time + margin", d)
	}
}

// TestNoPreemptKeepsTheVIP: with preempt off, the recovered higher-priority host stays BACKUP.
func TestNoPreemptKeepsTheVIP(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	lb1 := startDaemon(t, p.lb1, labNode{Priority: 110, NoPreempt: true})
	lb2 := startDaemon(t, p.lb2, labNode{Priority: 100, NoPreempt: true})
	lb1.waitState(0, "MASTER", 10*time.Second)
	waitVIP(t, 2*time.Second, p.lb1, p.lb1, p.lb2)

	from2 := lb2.lines()
	lb1.terminate()
	lb2.waitState(from2, "MASTER", 3*time.Second)
	waitVIP(t, 3*time.Second, p.lb2, p.lb1, p.lb2)

	lb1.start()
	lb1.waitState(0, "BACKUP", 10*time.Second)
	// Three advert intervals and then some: long enough for a preempting host to have acted.
	time.Sleep(4 * time.Second)
	if h := vipHolders(t, p.lb1, p.lb2); len(h) != 1 || h[0] != p.lb2.Name {
		t.Fatalf("VIP held by %v with preempt off, want lb2 to keep it", h)
	}
}

// TestVIPDeletedByHandComesBack: the MASTER reconciles its VIPs, woken by the kernel's address
// notification (vip.Watch) rather than at its next once-a-second check.
func TestVIPDeletedByHandComesBack(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	lb1 := startDaemon(t, p.lb1, labNode{Priority: 110, AdvertInt: "1s"})
	lb1.waitState(0, "MASTER", 10*time.Second)
	waitVIPOn(t, p.lb1, 2*time.Second)
	woken := regexp.MustCompile(`\(VI_LOGS\) VIP removed from the interface while MASTER, checking the VIPs now`)
	for range 3 {
		from := lb1.lines()
		deleted := time.Now()
		if _, err := p.lb1.Run(context.Background(), "ip", "addr", "del", vipCIDR, "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
		back := waitVIPOn(t, p.lb1, 3*time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := lb1.proc.WaitForLineAfter(ctx, from, woken)
		cancel()
		if err != nil {
			t.Fatalf("no %q: %v\n%s", woken, err, lb1.proc.Output())
		}
		t.Logf("VIP back %v after its deletion", back.Sub(deleted).Round(time.Millisecond))
	}
}

// waitVIPOn polls until h has the VIP and returns when it was first seen there.
func waitVIPOn(t testing.TB, h *lab.Host, d time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, err := h.HasAddr(vip)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has no VIP after %s", h.Name, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitNeighbor waits for the client's neighbour entry of the VIP to name mac: the gratuitous ARPs
// of a new MASTER update it without the client asking.
func waitNeighbor(t testing.TB, p *pair, mac string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		got, err := p.cli.Neighbor(vip)
		if err == nil && got.String() == mac {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("client's neighbour entry for the VIP is %v (%v), want %s", got, err, mac)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestIPv6PairFailsOver: VRRPv3 over IPv6 end to end (ff02::12 from link-local sources, the
// VIP an IPv6 address): the pair elects, the BACKUP hears its MASTER for several intervals
// without a takeover, and takes the VIP when the MASTER dies. The receive path's checks (hop
// limit, the group as destination from IPV6_PKTINFO) otherwise have only socket-level tests.
func TestIPv6PairFailsOver(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	vip6 := netip.MustParseAddr("fd00:10::10")
	node := func(prio int) labNode {
		return labNode{Priority: prio, Version: 3, VIPs: []string{"fd00:10::10/64"}}
	}
	lb1 := startDaemon(t, p.lb1, node(110))
	lb2 := startDaemon(t, p.lb2, node(100))
	lb1.waitState(0, "MASTER", 10*time.Second)
	from2 := lb2.waitState(0, "BACKUP", 10*time.Second).N + 1
	time.Sleep(seedMasterDown + time.Second) // longer than lb2's Master_Down_Interval
	for _, l := range lb2.proc.Lines()[from2:] {
		if strings.Contains(l.Text, "Entering MASTER STATE") {
			t.Fatalf("lb2 took over from a live MASTER over IPv6: %s", l.Text)
		}
	}
	for _, h := range []struct {
		host *lab.Host
		want bool
	}{{p.lb1, true}, {p.lb2, false}} {
		if got, err := h.host.HasAddr(vip6); err != nil || got != h.want {
			t.Fatalf("%s has %s: %v (err %v), want %v", h.host.Name, vip6, got, err, h.want)
		}
	}
	from2 = lb2.lines()
	lb1.kill()
	lb2.waitState(from2, "MASTER", seedMasterDown+2*time.Second)
	if err := lab.WaitFor(context.Background(), 2*time.Second, func() (bool, error) { return p.lb2.HasAddr(vip6) }); err != nil {
		t.Fatalf("lb2 MASTER without %s: %v", vip6, err)
	}
}
