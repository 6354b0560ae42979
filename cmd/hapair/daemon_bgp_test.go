package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hapair/hapair/bgp"
)

// fakeBGP is the BGP side of the machine for the daemon's unit tests: it records what would go
// to the routers and onto lo in the shared event list, so that the stop order can be read.
type fakeBGP struct {
	ev *events

	mu   sync.Mutex
	onLo map[netip.Prefix]bool
}

func newFakeBGP(ev *events) *fakeBGP { return &fakeBGP{ev: ev, onLo: map[netip.Prefix]bool{}} }

func (f *fakeBGP) StartSpeaker(ctx context.Context, cfg bgp.ServerConfig, rep bgp.PeerReporter, log *slog.Logger) (bgpServer, error) {
	f.ev.add(fmt.Sprintf("bgp started as %s", cfg.RouterID))
	return f, nil
}

func (f *fakeBGP) Loopback(name string) (bgpLoopback, error) { return f, nil }

func (f *fakeBGP) RouterIDToward(peer netip.Addr) (netip.Addr, error) {
	return netip.MustParseAddr("10.255.0.11"), nil
}

func (f *fakeBGP) Announce(p netip.Prefix, gshut bool) error {
	if gshut {
		f.ev.add("bgp announce " + p.String() + " GRACEFUL_SHUTDOWN")
	} else {
		f.ev.add("bgp announce " + p.String())
	}
	return nil
}

func (f *fakeBGP) Withdraw(p netip.Prefix) error {
	f.ev.add("bgp withdraw " + p.String())
	return nil
}

func (f *fakeBGP) SetPeers(ctx context.Context, peers []bgp.Peer) error { return nil }
func (f *fakeBGP) Peers() []bgp.PeerStatus                              { return nil }
func (f *fakeBGP) Stop()                                                { f.ev.add("bgp stopped") }

func (f *fakeBGP) Add(p netip.Prefix) error {
	f.mu.Lock()
	f.onLo[p] = true
	f.mu.Unlock()
	f.ev.add("lo add " + p.String())
	return nil
}

func (f *fakeBGP) Remove(p netip.Prefix) error {
	f.mu.Lock()
	delete(f.onLo, p)
	f.mu.Unlock()
	f.ev.add("lo remove " + p.String())
	return nil
}

// anycastYAML is an anycast node: HAProxy, a TCP check, no VRRP instance, two prefixes.
func anycastYAML(dir, tcpAddr string) string {
	return fmt.Sprintf(`runtime_dir: %[1]s
haproxy:
  command: /usr/sbin/haproxy
  config: /etc/haproxy/haproxy.cfg
checks:
  - name: web
    tcp: {address: "%[2]s"}
    interval: 1s
    timeout: 500ms
bgp:
  local_asn: 65010
  drain_time: 2s
  peers:
    - {address: 10.255.0.1, asn: 65000}
  announce:
    - {prefix: 10.77.9.10/32, checks: [haproxy]}
    - {prefix: 10.77.9.11/32, checks: [haproxy, web]}
status:
  listen: ""
  dump_file: %[1]s/hapair.data
`, dir, tcpAddr)
}

// since returns the events after the first one equal to mark.
func since(all []string, mark string) []string {
	i := slices.Index(all, mark)
	if i < 0 {
		return nil
	}
	return all[i+1:]
}

// TestDaemonBGPFollowsChecksAndStopsInOrder: the prefixes go on lo before HAProxy starts, are
// announced once their checks have results, withdrawn on the very event that reports HAProxy
// dead (no time passes), announced again after the rise hold; at stop, GRACEFUL_SHUTDOWN, the
// drain time, the withdrawal, HAProxy's stop, then lo.
func TestDaemonBGPFollowsChecksAndStopsInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		web := newTCPTarget(t)
		td := newTestDaemon(t, anycastYAML(dir, web.addr))
		fb := newFakeBGP(td.ev)
		td.d.bgp.machine = fb
		td.start()
		settle(time.Second)
		all := td.ev.all()
		if i, j := slices.Index(all, "lo add 10.77.9.10/32"), slices.Index(all, "bgp started as 10.255.0.11"); i < 0 || j < 0 {
			t.Fatalf("at start: %q, want the addresses on lo and the speaker started with the router id toward the peer", all)
		}
		for _, p := range []string{"10.77.9.10/32", "10.77.9.11/32"} {
			if !slices.Contains(all, "bgp announce "+p) {
				t.Fatalf("%s not announced once its checks passed: %q", p, all)
			}
		}

		mark := fmt.Sprintf("mark %d", len(all))
		td.ev.add(mark)
		td.haproxy.send(false, "exited with status 1")
		synctest.Wait() // no fake time passes: the withdrawal rides on the event itself
		if got := since(td.ev.all(), mark); !slices.Contains(got, "bgp withdraw 10.77.9.10/32") || !slices.Contains(got, "bgp withdraw 10.77.9.11/32") {
			t.Fatalf("after HAProxy died, with no time passing: %q, want both prefixes withdrawn", got)
		}
		web.down()
		td.haproxy.send(true, "started again")
		settle(haproxyRiseHold + 1500*time.Millisecond)
		got := since(td.ev.all(), mark)
		if !slices.Contains(got, "bgp announce 10.77.9.10/32") {
			t.Errorf("HAProxy back past its rise hold: %q, want 10.77.9.10/32 announced again", got)
		}
		if slices.Contains(got, "bgp announce 10.77.9.11/32") {
			t.Errorf("10.77.9.11/32 announced while its web check is down: %q", got)
		}

		mark = "mark stop"
		td.ev.add(mark)
		td.stop()
		got = since(td.ev.all(), mark)
		want := []string{
			"bgp announce 10.77.9.10/32 GRACEFUL_SHUTDOWN",
			"bgp withdraw 10.77.9.10/32",
			"haproxy stopped",
			"bgp stopped",
			"lo remove",
		}
		at := -1
		for _, w := range want {
			i := slices.IndexFunc(got, func(e string) bool { return strings.HasPrefix(e, w) })
			if i <= at {
				t.Fatalf("stop order: %q, want %q in this order", got, want)
			}
			at = i
		}
		if len(fb.onLo) != 0 {
			t.Errorf("left on lo after the stop: %v", fb.onLo)
		}
	})
}

// TestDaemonBGPHandoverKeepsTheLoopback: an in-place upgrade ends the sessions but leaves the
// service addresses on lo, as it leaves HAProxy running: the next image puts them there again
// (present already is fine) and announces them, and until the routers have withdrawn this node
// the packets they still send here reach HAProxy. Before, the old image took them off lo.
//
// Outside a synctest bubble: HAProxy (the fake) is left running for the next image, as it must
// be, and its goroutines stay blocked when the test ends.
func TestDaemonBGPHandoverKeepsTheLoopback(t *testing.T) {
	td := newTestDaemon(t, anycastYAML(t.TempDir(), newTCPTarget(t).addr))
	fb := newFakeBGP(td.ev)
	td.d.bgp.machine = fb
	td.start()
	for deadline := time.Now().Add(10 * time.Second); !slices.Contains(td.ev.all(), "bgp announce 10.77.9.11/32"); {
		if time.Now().After(deadline) {
			t.Fatalf("not announced within 10 s: %q", td.ev.all())
		}
		time.Sleep(10 * time.Millisecond)
	}
	td.ev.add("mark handover")
	td.d.beginHandover()
	td.cancel()
	td.cancel = nil
	if err := <-td.served; !errors.Is(err, errHandover) {
		t.Fatalf("serve after beginHandover: %v, want errHandover", err)
	}
	got := since(td.ev.all(), "mark handover")
	if !slices.Contains(got, "bgp stopped") {
		t.Errorf("the sessions were not ended for the next image: %q", got)
	}
	for _, e := range got {
		if strings.HasPrefix(e, "lo remove") || e == "haproxy stopped" {
			t.Errorf("at the handover: %q (all: %q)", e, got)
		}
	}
	fb.mu.Lock()
	defer fb.mu.Unlock()
	if len(fb.onLo) != 2 {
		t.Errorf("on lo after the handover: %v, want both service addresses", fb.onLo)
	}
}

// TestDaemonBGPFollowsVRRPState: a prefix gated by a VRRP instance is announced when it becomes
// MASTER and withdrawn when it stops being MASTER, through the instance's notifier (queued, so
// that the VRRP loop never waits on the speaker), and kept off lo.
func TestDaemonBGPFollowsVRRPState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		web := newTCPTarget(t)
		yaml := pairYAML(dir, web.addr, "10.255.0.10/24") + `bgp:
  local_asn: 65010
  drain_time: 0s
  peers:
    - {address: 10.255.0.1, asn: 65000}
  announce:
    - {prefix: 10.77.9.20/32, vrrp_instance: VI_1}
`
		td := newTestDaemon(t, yaml)
		fb := newFakeBGP(td.ev)
		td.d.bgp.machine = fb
		td.start()
		settle(time.Second)
		if slices.Contains(td.ev.all(), "bgp announce 10.77.9.20/32") {
			t.Fatalf("announced while BACKUP: %q", td.ev.all())
		}
		settle(4 * time.Second) // alone: MASTER after the master-down interval
		if !slices.Contains(td.ev.all(), "bgp announce 10.77.9.20/32") {
			t.Fatalf("not announced as MASTER: %q", td.ev.all())
		}
		td.ev.add("mark")
		td.stop()
		if got := since(td.ev.all(), "mark"); !slices.Contains(got, "bgp withdraw 10.77.9.20/32") {
			t.Errorf("not withdrawn at stop: %q", got)
		}
		for _, e := range td.ev.all() {
			if strings.HasPrefix(e, "lo add") {
				t.Errorf("a VRRP-gated prefix went on lo: %q", e)
			}
		}
	})
}
