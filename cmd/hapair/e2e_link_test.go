package main

import (
	"context"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hapair/hapair/cmd/internal/lab"
)

// TestOwnLinkDownFaultsAndComesBack (issue 9 item 2): the MASTER's own interface goes down.
// Like keepalived, hapair tracks it: FAULT at once, VIP released, the peer takes over and the
// client follows it; link up: BACKUP, the election (preempt) gives the VIP back, announced
// with gratuitous ARPs so that the client's neighbour entry moves back without asking. Before,
// the MASTER kept the VIP on the dead link and took it back on link up without a single
// gratuitous ARP.
func TestOwnLinkDownFaultsAndComesBack(t *testing.T) {
	t.Parallel()
	p, lb1, lb2 := startElectedPair(t)
	if got, want := p.neighborOf(t), p.lb1.MAC().String(); got != want {
		t.Fatalf("client resolves the VIP to %s, want lb1's %s", got, want)
	}

	ctx := context.Background()
	from1, from2 := lb1.lines(), lb2.lines()
	down := time.Now()
	if err := p.lb1.SetLink(ctx, false); err != nil {
		t.Fatal(err)
	}
	lb1.waitState(from1, "FAULT", 3*time.Second)
	t.Logf("link down: lb1 FAULT after %s", time.Since(down).Round(time.Millisecond))
	waitNoVIP(t, lb1, time.Second) // detached right after the transition is logged
	lb2.waitState(from2, "MASTER", seedMasterDown+2*time.Second)
	waitVIP(t, 2*time.Second, p.lb2, p.lb1, p.lb2)
	waitNeighbor(t, p, p.lb2.MAC().String())

	from1 = lb1.lines()
	if err := p.lb1.SetLink(ctx, true); err != nil {
		t.Fatal(err)
	}
	lb1.waitState(from1, "BACKUP", 3*time.Second)
	lb1.waitState(from1, "MASTER", seedMasterDown+2*time.Second)
	waitVIP(t, 3*time.Second, p.lb1, p.lb1, p.lb2)
	// The client does not ask: only lb1's gratuitous ARPs can move its entry back.
	waitNeighbor(t, p, p.lb1.MAC().String())
}

// TestTrackInterfaceAddedByReload (issue 9 item 2): with dont_track_primary the instance's
// own link going down changes nothing; a track_interface added by SIGHUP takes effect at once
// (before, the reload logged it as applied and nothing followed the link).
func TestTrackInterfaceAddedByReload(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	d := startDaemon(t, p.lb1, labNode{Priority: 110, ExtraInstance: []string{"dont_track_primary: true"}})
	d.waitState(0, "MASTER", 10*time.Second)
	waitVIPOn(t, p.lb1, 3*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// dont_track_primary: the own link down is not a FAULT.
	from := d.lines()
	if err := p.lb1.SetLink(ctx, false); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if err := p.lb1.SetLink(ctx, true); err != nil {
		t.Fatal(err)
	}
	for _, l := range d.proc.Lines()[from:] {
		if strings.Contains(l.Text, "Entering") {
			t.Fatalf("with dont_track_primary, the own link going down caused %q", l.Text)
		}
	}

	// A second link in the host, then a reload that tracks it.
	for _, args := range [][]string{
		{"ip", "link", "add", "trk0", "type", "veth", "peer", "name", "trk1"},
		{"ip", "link", "set", "trk0", "up"},
		{"ip", "link", "set", "trk1", "up"},
	} {
		if out, err := p.lb1.Run(ctx, args[0], args[1:]...); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	// Both ends up: trk0 is operationally up once the kernel has seen its peer come up.
	if err := lab.WaitFor(ctx, 5*time.Second, func() (bool, error) {
		out, err := p.lb1.Run(ctx, "ip", "-o", "link", "show", "trk0")
		return strings.Contains(out, "state UP"), err
	}); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(d.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	tracked := strings.Replace(string(good), "dont_track_primary: true", "dont_track_primary: true\n    track_interface: [trk0]", 1)
	if err := os.WriteFile(d.cfgPath, []byte(tracked), 0o600); err != nil {
		t.Fatal(err)
	}
	from = d.lines()
	if err := d.proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if _, err := d.proc.WaitForLineAfter(ctx, from, regexp.MustCompile(`Configuration reloaded`)); err != nil {
		t.Fatal(err)
	}
	// A transition the reload caused may come a moment after its last line: look a second on.
	time.Sleep(time.Second)
	for _, l := range d.proc.Lines()[from:] {
		if strings.Contains(l.Text, "Entering") {
			t.Fatalf("the reload adding an up link caused %q", l.Text)
		}
	}

	// The peer end down: trk0 loses its carrier (LOWERLAYERDOWN).
	from = d.lines()
	if out, err := p.lb1.Run(ctx, "ip", "link", "set", "trk1", "down"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	d.waitState(from, "FAULT", 3*time.Second)
	waitNoVIP(t, d, time.Second)
	from = d.lines()
	if out, err := p.lb1.Run(ctx, "ip", "link", "set", "trk1", "up"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	d.waitState(from, "BACKUP", 3*time.Second)
	d.waitState(from, "MASTER", seedMasterDown+2*time.Second)
	waitVIPOn(t, p.lb1, 3*time.Second)
}

// waitNoVIP polls until the daemon's host no longer holds the VIP.
func waitNoVIP(t *testing.T, d *daemonHost, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for d.hasVIP() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: in FAULT and still holding the VIP after %s", d.host.Name, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRecreatedInterfaceIsFollowed: an interface deleted and created again under the same name
// (ifupdown or networkd bringing a VLAN or bond back) is a new interface to the kernel, with a
// new index. Like keepalived, hapair follows it: FAULT while it is gone, then BACKUP on the new
// interface, hearing its MASTER there; and a MASTER's VIP goes back on the new interface,
// announced there.
func TestRecreatedInterfaceIsFollowed(t *testing.T) {
	t.Parallel()
	p, lb1, lb2 := startElectedPair(t)
	ctx := context.Background()
	if got, want := p.neighborOf(t), p.lb1.MAC().String(); got != want {
		t.Fatalf("client resolves the VIP to %s, want lb1's %s", got, want)
	}

	// The BACKUP's interface comes back: it must hear lb1 on it and stay BACKUP. Deaf on the
	// new interface, it would become a second MASTER after Master_Down_Interval.
	from2 := lb2.lines()
	if err := p.lb2.RecreateLink(ctx, 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	lb2.waitState(from2, "FAULT", 3*time.Second)
	back := lb2.waitState(from2, "BACKUP", 5*time.Second)
	time.Sleep(seedMasterDown + 2*time.Second)
	for _, l := range lb2.proc.Lines()[back.N:] {
		if strings.Contains(l.Text, "Entering MASTER STATE") {
			t.Fatalf("lb2 became MASTER %s after its interface came back, with lb1 MASTER: %s",
				l.At.Sub(back.At).Round(time.Millisecond), l.Text)
		}
	}
	if got := vipHolders(t, p.lb1, p.lb2); len(got) != 1 || got[0] != p.lb1.Name {
		t.Fatalf("VIP on %v, want lb1 alone", got)
	}

	// The MASTER's interface comes back: lb2 takes over meanwhile, and lb1 (higher priority,
	// preempting) takes the VIP back on its new interface and announces it there.
	from1, from2 := lb1.lines(), lb2.lines()
	if err := p.lb1.RecreateLink(ctx, 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	lb1.waitState(from1, "FAULT", 3*time.Second)
	lb2.waitState(from2, "MASTER", seedMasterDown+2*time.Second)
	waitNeighbor(t, p, p.lb2.MAC().String())
	lb1.waitState(from1, "BACKUP", 5*time.Second)
	lb1.waitState(from1, "MASTER", seedMasterDown+3*time.Second)
	lb2.waitState(from2, "BACKUP", 5*time.Second)
	waitVIP(t, 3*time.Second, p.lb1, p.lb1, p.lb2)
	// The client does not ask: only gratuitous ARPs sent on the new interface move it back.
	waitNeighbor(t, p, p.lb1.MAC().String())
}

// TestRenumberedInterfaceIsFollowed: the MASTER's interface is renumbered under it. With
// promote_secondaries (systemd's default on hosts), a new address is added and the old one
// deleted: lb1 sends from the new address and stays MASTER, and lb2 follows it as MASTER. Left
// with no address of its own (the subnet flushed), lb1 goes to FAULT and gives the VIP up, and
// lb2 takes over; given an address again, lb1 takes the VIP back from it. Before, lb1 went on
// sending from the address that had left: every advert was refused by the kernel, lb2 took
// over, and both held the VIP.
func TestRenumberedInterfaceIsFollowed(t *testing.T) {
	t.Parallel()
	p, lb1, lb2 := startElectedPair(t)
	ctx := context.Background()
	run := func(h *lab.Host, args ...string) {
		t.Helper()
		if out, err := h.Run(ctx, args[0], args[1:]...); err != nil {
			t.Fatalf("%s: %v: %v\n%s", h.Name, args, err, out)
		}
	}
	run(p.lb1, "sysctl", "-q", "-w", "net.ipv4.conf.eth0.promote_secondaries=1")
	from1, from2 := lb1.lines(), lb2.lines()
	run(p.lb1, "ip", "addr", "add", "10.0.0.21/24", "dev", "eth0")
	run(p.lb1, "ip", "addr", "del", p.lb1.IP().String()+"/24", "dev", "eth0")
	time.Sleep(seedMasterDown + 2*time.Second)
	for _, l := range append(lb1.proc.Lines()[from1:], lb2.proc.Lines()[from2:]...) {
		if strings.Contains(l.Text, "Entering") {
			t.Errorf("a transition after lb1 was renumbered: %s", l.Text)
		}
	}
	if got := vipHolders(t, p.lb1, p.lb2); len(got) != 1 || got[0] != p.lb1.Name {
		t.Fatalf("VIP on %v after lb1 was renumbered, want lb1 alone", got)
	}
	if st := statusOf(t, lb2); len(st.Instances) != 1 || st.Instances[0].MasterAddress != "10.0.0.21" {
		t.Errorf("lb2 follows %+v, want the MASTER at 10.0.0.21", st.Instances)
	}

	// No address of its own: FAULT, the VIP to lb2.
	from1, from2 = lb1.lines(), lb2.lines()
	run(p.lb1, "ip", "-4", "addr", "flush", "dev", "eth0")
	lb1.waitState(from1, "FAULT", 3*time.Second)
	lb2.waitState(from2, "MASTER", seedMasterDown+2*time.Second)
	waitVIP(t, 3*time.Second, p.lb2, p.lb1, p.lb2)

	// An address again: lb1 contends from it and takes the VIP back.
	from1, from2 = lb1.lines(), lb2.lines()
	run(p.lb1, "ip", "addr", "add", "10.0.0.31/24", "dev", "eth0")
	lb1.waitState(from1, "MASTER", seedMasterDown+3*time.Second)
	lb2.waitState(from2, "BACKUP", 5*time.Second)
	waitVIP(t, 3*time.Second, p.lb1, p.lb1, p.lb2)
}

// TestUnicastSourceRemovedFaults: a unicast pair whose MASTER's unicast_src_ip is deleted from
// its host. It cannot send any more: it goes to FAULT and gives the VIP up, and its peer takes
// over; with the address back, it takes the VIP back. Before, it kept the VIP with every advert
// refused, and both held it.
func TestUnicastSourceRemovedFaults(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	a1, a2 := p.lb1.IP().String(), p.lb2.IP().String()
	lb1 := startDaemon(t, p.lb1, labNode{Priority: 110, UnicastSrc: a1, UnicastPeers: []string{a2}})
	lb2 := startDaemon(t, p.lb2, labNode{Priority: 100, UnicastSrc: a2, UnicastPeers: []string{a1}})
	lb1.waitState(0, "MASTER", 10*time.Second)
	lb2.waitState(0, "BACKUP", 10*time.Second)
	waitVIP(t, 3*time.Second, p.lb1, p.lb1, p.lb2)
	ctx := context.Background()

	from1, from2 := lb1.lines(), lb2.lines()
	if out, err := p.lb1.Run(ctx, "ip", "addr", "del", a1+"/24", "dev", "eth0"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	lb1.waitState(from1, "FAULT", 3*time.Second)
	lb2.waitState(from2, "MASTER", seedMasterDown+2*time.Second)
	waitVIP(t, 3*time.Second, p.lb2, p.lb1, p.lb2)

	from1, from2 = lb1.lines(), lb2.lines()
	if out, err := p.lb1.Run(ctx, "ip", "addr", "add", a1+"/24", "dev", "eth0"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	lb1.waitState(from1, "MASTER", seedMasterDown+3*time.Second)
	lb2.waitState(from2, "BACKUP", 5*time.Second)
	waitVIP(t, 3*time.Second, p.lb1, p.lb1, p.lb2)
}

// TestRecreatedInterfaceWithAnotherAddress: the MASTER's interface is created again with another
// address. lb1 moves onto it and sends from the new address: it takes the VIP back from lb2, which
// names 10.0.0.21 as MASTER. Before, lb1 stayed in FAULT until hapair was restarted ("restart
// hapair to send from it").
func TestRecreatedInterfaceWithAnotherAddress(t *testing.T) {
	t.Parallel()
	p, lb1, lb2 := startElectedPair(t)
	from1, from2 := lb1.lines(), lb2.lines()
	if err := p.lb1.RecreateLinkAs(context.Background(), 500*time.Millisecond, netip.MustParsePrefix("10.0.0.21/24")); err != nil {
		t.Fatal(err)
	}
	lb1.waitState(from1, "FAULT", 3*time.Second)
	lb2.waitState(from2, "MASTER", seedMasterDown+2*time.Second)
	lb1.waitState(from1, "MASTER", seedMasterDown+3*time.Second)
	lb2.waitState(from2, "BACKUP", 5*time.Second)
	waitVIP(t, 3*time.Second, p.lb1, p.lb1, p.lb2)
	if st := statusOf(t, lb2); len(st.Instances) != 1 || st.Instances[0].MasterAddress != "10.0.0.21" {
		t.Errorf("lb2 follows %+v, want the MASTER at 10.0.0.21", st.Instances)
	}
}
