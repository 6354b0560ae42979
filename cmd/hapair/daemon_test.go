package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hapair/hapair/checks"
	"github.com/hapair/hapair/cmd/internal/config"
	"github.com/hapair/hapair/internal/syncbuf"
	"github.com/hapair/hapair/vrrp"
	"github.com/hapair/hapair/vrrp/record"
)

// pairYAML is one instance on lo tracking HAProxy (-20) and a TCP check (-10).
func pairYAML(dir, tcpAddr, vips string) string {
	return fmt.Sprintf(`runtime_dir: %[1]s
haproxy:
  command: /usr/sbin/haproxy
  config: /etc/haproxy/haproxy.cfg
  runtime_dir: %[1]s
checks:
  - name: web
    tcp: {address: "%[2]s"}
    interval: 1s
    timeout: 500ms
    weight: -10
vrrp_instances:
  - name: VI_1
    interface: lo
    virtual_router_id: 51
    priority: 110
    virtual_ipaddress: [%[3]s]
    track: {haproxy: -20, web: -10}
status:
  listen: ""
  dump_file: %[1]s/hapair.data
`, dir, tcpAddr, vips)
}

// newMasterPair starts a daemon on pairYAML(vips) with a TCP target for its check and lets it
// run alone past the master-down interval (3.57s), so that it is MASTER with every check up.
func newMasterPair(t *testing.T, vips string) (td *testDaemon, dir string, web *tcpTarget) {
	t.Helper()
	dir = t.TempDir()
	web = newTCPTarget(t)
	td = newTestDaemon(t, pairYAML(dir, web.addr, vips))
	td.start()
	settle(5 * time.Second)
	return td, dir, web
}

// TestDaemonPriorityFollowsChecks: the instance's priority is the base priority plus the weights
// of the failing tracked checks; an HAProxy crash counts at once, its recovery only after the
// rise hold; a TCP check counts at its interval.
func TestDaemonPriorityFollowsChecks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		td, _, web := newMasterPair(t, "10.255.0.10/24")
		st := td.status("VI_1")
		if st.State != vrrp.Master || st.Priority != 110 {
			t.Fatalf("alone with every check up: %s at priority %d, want MASTER at 110", st.State, st.Priority)
		}
		if vips := td.host.allManagers()[0]; !vips.has() {
			t.Fatal("MASTER without its VIPs attached")
		}

		td.haproxy.send(false, "exited with status 1")
		synctest.Wait()
		if p := td.status("VI_1").Priority; p != 90 {
			t.Fatalf("at once after HAProxy died: priority %d, want 90", p)
		}
		if got := td.host.conn("VI_1").lastSent(); got != 90 {
			t.Errorf("last advert after HAProxy died carried priority %d, want 90 sent at once", got)
		}

		td.haproxy.send(true, "started again")
		settle(haproxyRiseHold - time.Millisecond)
		if p := td.status("VI_1").Priority; p != 90 {
			t.Fatalf("HAProxy back for less than the rise hold: priority %d, want still 90", p)
		}
		settle(time.Millisecond)
		if p := td.status("VI_1").Priority; p != 110 {
			t.Fatalf("HAProxy back for the rise hold: priority %d, want 110", p)
		}

		web.down()
		settle(time.Second) // the next probe
		if p := td.status("VI_1").Priority; p != 100 {
			t.Fatalf("TCP check down: priority %d, want 100", p)
		}
		web.up()
		settle(time.Second)
		if p := td.status("VI_1").Priority; p != 110 {
			t.Fatalf("TCP check up again: priority %d, want 110", p)
		}
	})
}

// TestDaemonStopReleasesVIPsBeforeHAProxy: on SIGTERM the MASTER advertises priority 0 and
// detaches its VIPs, and only then is HAProxy stopped (its connections drain while the VIP is
// already on the peer).
func TestDaemonStopReleasesVIPsBeforeHAProxy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		td, _, _ := newMasterPair(t, "10.255.0.10/24")
		if st := td.status("VI_1"); st.State != vrrp.Master {
			t.Fatalf("state %s, want MASTER before stopping", st.State)
		}
		td.stop()
		// Repeated priority-0 adverts count as one step.
		want := []string{"VI_1 advertised priority 0", "VI_1 detached 10.255.0.10/24", "haproxy stopped"}
		if got := slices.Compact(td.ev.all()); !slices.Equal(got, want) {
			t.Fatalf("stop order %q, want %q", got, want)
		}
		if c := td.host.conn("VI_1"); c.closeCount() == 0 {
			t.Error("the instance's socket was not closed")
		}
	})
}

// TestDaemonReloadAppliesInPlace: SIGHUP with a changed VIP list, priority and checks: the new
// VIPs are attached while MASTER, the removed one detached, the checks runner replaced, and
// HAProxy reloaded; the instance keeps running (no new socket).
func TestDaemonReloadAppliesInPlace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		td, dir, _ := newMasterPair(t, "10.255.0.10/24, 10.255.0.11/24")
		oldRunner := td.d.checks

		other := newTCPTarget(t)
		next := strings.Replace(pairYAML(dir, other.addr, "10.255.0.10/24, 10.255.0.12/24"), "priority: 110", "priority: 120", 1)
		td.write(next)
		td.d.reload(t.Context(), td.path)
		synctest.Wait()

		if td.d.checks == oldRunner {
			t.Error("the checks changed but the runner was not replaced")
		}
		st := td.status("VI_1")
		if st.BasePriority != 120 || prefixList(st.VIPs) != "10.255.0.10/24,10.255.0.12/24" {
			t.Errorf("after reload: base priority %d, VIPs %v; want 120 and .10, .12", st.BasePriority, st.VIPs)
		}
		settle(time.Second) // the new runner's first results
		if p := td.status("VI_1").Priority; p != 120 {
			t.Errorf("after reload: effective priority %d, want 120", p)
		}
		managers := td.host.allManagers()
		var attachedNew, detachedRemoved bool
		for _, m := range managers[1:] {
			switch prefixList(m.vips) {
			case "10.255.0.10/24,10.255.0.12/24":
				attachedNew = m.has()
			case "10.255.0.11/24":
				detachedRemoved = m.detachCount() == 1
			}
		}
		if !attachedNew || !detachedRemoved {
			t.Errorf("new list attached %v, removed VIP detached %v; want both", attachedNew, detachedRemoved)
		}
		if td.haproxy.reloadCount() != 1 {
			t.Errorf("HAProxy reloaded %d times, want 1", td.haproxy.reloadCount())
		}
		if !strings.Contains(td.logs.String(), "Configuration reloaded") {
			t.Errorf("no \"Configuration reloaded\" in the log:\n%s", td.logs)
		}
		if n := td.host.opened(); n != 1 {
			t.Errorf("%d sockets opened, want the first one kept", n)
		}
	})
}

// TestReloadAppliesHAProxysStopGraceAndBackoff: haproxy.stop_grace and haproxy.restart_backoff
// are reloadable, so a reload hands the new values to the supervisor. Before, the reload logged
// them among "Applying the changes" and said ok, and the supervisor kept the values it was made
// with: the next stop still waited the old grace.
func TestReloadAppliesHAProxysStopGraceAndBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		td, dir, web := newMasterPair(t, "10.255.0.10/24")
		if got := td.haproxy.currentTimings(); got.StopGrace != 10*time.Second {
			t.Fatalf("stop grace %s at start, want the default 10s", got.StopGrace)
		}
		td.write(strings.Replace(pairYAML(dir, web.addr, "10.255.0.10/24"), "  runtime_dir: "+dir+"\n",
			"  runtime_dir: "+dir+"\n  stop_grace: 3s\n  restart_backoff: {initial: 2s, max: 1m, reset_after: 2m}\n", 1))
		if res, err := td.d.reload(t.Context(), td.path); err != nil {
			t.Fatalf("reload %s: %v", res, err)
		}
		got := td.haproxy.currentTimings()
		if got.StopGrace != 3*time.Second || got.BackoffInitial != 2*time.Second || got.BackoffMax != time.Minute || got.BackoffResetAfter != 2*time.Minute {
			t.Errorf("after the reload the supervisor has stop grace %s, backoff %s..%s reset after %s; want 3s, 2s..1m0s, 2m0s",
				got.StopGrace, got.BackoffInitial, got.BackoffMax, got.BackoffResetAfter)
		}
	})
}

// TestLinkWatchEndingWithAnErrorIsResubscribed: the netlink link subscription ends at its first
// receive error (ENOBUFS in a burst of link events); hapair subscribes again and reads every
// link, so that the instance's link going down meanwhile, whose notification nobody received,
// still faults it, and later changes are followed. Before, followLinks logged the error once
// and nothing followed the links again: the MASTER kept its VIP on a dead link for good.
func TestLinkWatchEndingWithAnErrorIsResubscribed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir, web := t.TempDir(), newTCPTarget(t)
		td := newTestDaemon(t, pairYAML(dir, web.addr, "10.255.0.10/24"))
		links := newFlappingLinks()
		td.d.links = links
		td.start()
		settle(5 * time.Second)
		if st := td.status("VI_1"); st.State != vrrp.Master {
			t.Fatalf("alone with its link up: %s, want MASTER", st.State)
		}

		links.fail <- fmt.Errorf("link updates: %w", errors.New("Receive failed: no buffer space available"))
		synctest.Wait()
		links.set(true) // while no subscription runs
		settle(time.Second)
		if st := td.status("VI_1"); st.State != vrrp.Fault {
			t.Fatalf("1s after the link watch failed and lo went down meanwhile: %s, want FAULT (%d watches)", st.State, links.watchCount())
		}
		links.set(false)
		synctest.Wait()
		if st := td.status("VI_1"); st.State == vrrp.Fault {
			t.Errorf("link up again after the new subscription: %s, want out of FAULT", st.State)
		}
		for _, want := range []string{"Following link state failed, subscribing again", "Following link state again"} {
			if n := strings.Count(td.logs.String(), want); n != 1 {
				t.Errorf("%q logged %d times, want once:\n%s", want, n, td.logs)
			}
		}
	})
}

// TestDaemonVIPGoneWakesTheMaster: told by the address watch that a VIP left (vipGone), the
// MASTER that owns it checks its VIPs at once, with no time passing; a VIP a reload removed (its
// Detach makes the same notification, during the reload: the fake calls vipGone from Detach) or
// nobody's wakes nobody.
func TestDaemonVIPGoneWakesTheMaster(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		td, dir, web := newMasterPair(t, "10.255.0.10/24, 10.255.0.11/24")
		td.write(pairYAML(dir, web.addr, "10.255.0.10/24, 10.255.0.12/24"))
		td.d.reload(t.Context(), td.path)
		synctest.Wait()
		var current *fakeVIPs // the reload's manager, which the instance now checks with
		for _, m := range td.host.allManagers() {
			if prefixList(m.vips) == "10.255.0.10/24,10.255.0.12/24" {
				current = m
			}
		}
		if current == nil {
			t.Fatal("no manager for the reloaded VIPs")
		}
		woken := "(VI_1) VIP removed from the interface while MASTER"

		before := current.checkCount()
		td.d.vipGone(netip.MustParsePrefix("10.255.0.11/24"))
		td.d.vipGone(netip.MustParsePrefix("10.9.9.9/32"))
		synctest.Wait()
		if n := current.checkCount(); n != before || strings.Contains(td.logs.String(), woken) {
			t.Errorf("a VIP not configured (any more) woke the MASTER: %d checks, was %d; log:\n%s", n, before, td.logs)
		}

		td.d.vipGone(netip.MustParsePrefix("10.255.0.12/24"))
		synctest.Wait()
		if n := current.checkCount(); n != before+1 {
			t.Errorf("%d checks after its VIP left, want %d (one at once)", n, before+1)
		}
		if !strings.Contains(td.logs.String(), woken+", checking the VIPs now\" vip=10.255.0.12/24") {
			t.Errorf("no %q for 10.255.0.12/24 in the log:\n%s", woken, td.logs)
		}
	})
}

// TestSecondCollectionWaitsOnlyForMasters: the collection after the second GARP burst is
// scheduled for the instances that are MASTER, which send one; a BACKUP sends none.
func TestSecondCollectionWaitsOnlyForMasters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir, web := t.TempDir(), newTCPTarget(t)
		td := newTestDaemon(t, pairYAML(dir, web.addr, "10.255.0.10/24"))
		td.start()
		settle(time.Second) // BACKUP until the master-down interval (3.57 s) has passed
		if st := td.status("VI_1").State; st != vrrp.Backup {
			t.Fatalf("VI_1 is %s after 1 s, want BACKUP", st)
		}
		if got := td.d.pendingGARPDelay(); got != 0 {
			t.Errorf("a BACKUP waits %v for a GARP burst, want 0", got)
		}
		settle(4 * time.Second)
		if st := td.status("VI_1").State; st != vrrp.Master {
			t.Fatalf("VI_1 is %s after 5 s, want MASTER", st)
		}
		if got, want := td.d.pendingGARPDelay(), 5*time.Second; got != want {
			t.Errorf("a MASTER waits %v for its second GARP burst, want %v (garp_master_delay)", got, want)
		}
	})
}

// TestDaemonReloadRefusesABrokenFile: the running configuration stays, nothing is touched.
func TestDaemonReloadRefusesABrokenFile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		td, dir, web := newMasterPair(t, "10.255.0.10/24")
		before := td.d.cfg
		for _, bad := range []string{
			"vrrp_instances: [{name: VI_1, bogus: 1}]\n",
			strings.Replace(pairYAML(dir, web.addr, "10.255.0.10/24"), "virtual_router_id: 51", "virtual_router_id: 52", 1),
		} {
			td.write(bad)
			td.d.reload(t.Context(), td.path)
		}
		synctest.Wait()
		if td.d.cfg != before || td.haproxy.reloadCount() != 0 {
			t.Errorf("a refused reload changed the configuration or reloaded HAProxy (%d)", td.haproxy.reloadCount())
		}
		if n := strings.Count(td.logs.String(), "Reload refused"); n != 2 {
			t.Errorf("%d refusals logged, want 2:\n%s", n, td.logs)
		}
	})
}

// TestDaemonStatusAndDump: the status document and the SIGUSR1 dump show the instance, HAProxy
// and the checks.
func TestDaemonStatusAndDump(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		td, dir, _ := newMasterPair(t, "10.255.0.10/24")
		st := td.d.Status()
		if len(st.Instances) != 1 || st.Instances[0].State != "MASTER" || st.HAProxy.PID != 4242 || len(st.Checks) != 2 {
			t.Fatalf("status = %+v", st)
		}
		td.d.dump()
		if !strings.Contains(td.logs.String(), "State dump written") {
			t.Fatalf("no dump written:\n%s", td.logs)
		}
		b, err := os.ReadFile(filepath.Join(dir, "hapair.data"))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"VI_1", "MASTER", "4242", "web", "10.255.0.10/24"} {
			if !strings.Contains(string(b), want) {
				t.Errorf("the dump lacks %q:\n%s", want, b)
			}
		}
	})
}

// checkUpSeries returns the check label of every hapair_check_up series.
func checkUpSeries(t *testing.T, td *testDaemon) []string {
	t.Helper()
	families, err := td.d.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range families {
		if f.GetName() != "hapair_check_up" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "check" {
					out = append(out, l.GetValue())
				}
			}
		}
	}
	return out
}

// TestStoppedChecksRunnerIsNotFollowed (issue 9 item 12): once stopChecks returns (a reload
// replacing the checks, or the stop), the old runner's follower must be gone: it used to go on
// reading the runner's closed event channel (zero events made a hapair_check_up{check=""} series)
// and could apply the old runner's results after the new runner had started.
func TestStoppedChecksRunnerIsNotFollowed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		td, _, _ := newMasterPair(t, "10.255.0.10/24")
		for range 50 {
			old := td.d.checks
			// Events queued for the follower when the runner stops.
			for i := range 16 {
				old.Liveness().Set(i%2 == 0, "flapping") // ends down
			}
			td.d.stopChecks()
			// From here on nothing may act on the old runner's events.
			td.d.metrics.CheckUp("marker", true)
			synctest.Wait()
			for _, name := range checkUpSeries(t, td) {
				if name == "" {
					t.Fatalf("hapair_check_up series %q: a follower read a stopped runner's closed channel", checkUpSeries(t, td))
				}
			}
			next := checks.NewRunner(nil, td.d.metrics, nil)
			next.Liveness().Set(true, "up")
			td.d.startChecks(context.Background(), next, false)
			synctest.Wait()
			if p := td.status("VI_1").Priority; p != 110 {
				t.Fatalf("with the new runner all up: priority %d, want 110 (the old runner's results landed)", p)
			}
		}
	})
}

// TestFlappingLinkBeforeStartDoesNotHang: while an instance waits for its checks' first results
// before it starts (holdUntilChecksReport, here because HAProxy is still starting), a tracked
// link flaps. Each change hands the instance a fault state and a priority under d.mu; they used
// to queue on the instance's control channel (8 slots), which nothing reads before the start:
// the fifth change blocked holding d.mu, and the instance's start, which waits for d.mu, never
// came. The whole daemon hung. The instance must start and take the link's last state.
func TestFlappingLinkBeforeStartDoesNotHang(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		td := newTestDaemon(t, pairYAML(t.TempDir(), newTCPTarget(t).addr, "10.255.0.10/24"))
		td.haproxy.quiet = true // its checks stay pending: the instance is held before its start
		link := &flappingLinks{}
		td.d.links = link
		td.start()
		synctest.Wait()
		if st := td.status("VI_1"); st.State != vrrp.Init {
			t.Fatalf("state %s before the checks reported, want INIT (held before the start)", st.State)
		}

		flapped := make(chan struct{})
		go func() {
			defer close(flapped)
			for i := range 21 { // ends down
				link.set(i%2 == 0)
			}
		}()
		synctest.Wait() // everything that can move has: a blocked sender stays blocked
		select {
		case <-flapped:
		default:
			locked := !td.d.mu.TryLock()
			if !locked {
				td.d.mu.Unlock()
			}
			t.Fatalf("a flapping link blocked the daemon before the instance started (d.mu held: %v): the start waits for d.mu", locked)
		}

		settle(contendHold + time.Second) // the instance contends without the pending checks
		if st := td.status("VI_1"); st.State != vrrp.Fault || !strings.Contains(st.Fault, "link lo down") {
			t.Fatalf("after the start with the link last down: state %s, fault %q; want FAULT for the link", st.State, st.Fault)
		}
		link.set(false)
		synctest.Wait()
		if st := td.status("VI_1"); st.State != vrrp.Backup {
			t.Fatalf("link back up: state %s, want BACKUP", st.State)
		}
	})
}

// TestReloadBeforeStartHoldsNoLock: a reload while an instance is held before its start hands
// the instance its update on the control channel, which nothing reads before the start, and
// waits for it there; it must do so without d.mu, which the start waits for. The reload then
// ends once the instance has started.
func TestReloadBeforeStartHoldsNoLock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		td := newTestDaemon(t, pairYAML(t.TempDir(), newTCPTarget(t).addr, "10.255.0.10/24"))
		td.haproxy.quiet = true // its checks stay pending: the instance is held before its start
		td.start()
		synctest.Wait()
		reloaded := make(chan struct{})
		go func() {
			defer close(reloaded)
			td.d.reload(context.Background(), td.path)
		}()
		synctest.Wait()
		select {
		case <-reloaded:
			t.Fatal("the reload returned before the instance started: the test proves nothing")
		default:
		}
		if !td.d.mu.TryLock() {
			t.Fatal("a reload waiting for an instance that has not started holds d.mu: the start waits for it")
		}
		td.d.mu.Unlock()
		settle(contendHold + time.Second)
		if st := td.status("VI_1"); st.State == vrrp.Init {
			t.Fatalf("state %s after contendHold, want started", st.State)
		}
		select {
		case <-reloaded:
		default:
			t.Fatal("the reload has not returned after the instance started")
		}
		if !strings.Contains(td.logs.String(), "Configuration reloaded") {
			t.Errorf("no \"Configuration reloaded\" in the log:\n%s", td.logs)
		}
	})
}

// TestReloadStartsNoNotifyGoroutine (issue 9 item 12): a reload replaces an instance's notify
// hooks; the old hooks' goroutine ends instead of waiting forever, and at stop every hook
// goroutine ends.
//
// It counts the hooks' goroutines themselves (notifyLoops), not runtime.NumGoroutine, which
// counts every goroutine of the process, other tests' too, and counts one that has just ended
// for a moment after synctest.Wait has returned: the runtime marks a goroutine dead, which
// tells the bubble (Wait returns), before it puts it on the free list, which NumGoroutine
// counts by (runtime.gdestroy). Under -race, run alone, this test said "10 reloads left 1 more
// goroutines" in 1 run of 90, while a dump of the stacks taken right after showed 14
// goroutines, as before the reloads.
func TestReloadStartsNoNotifyGoroutine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		web := newTCPTarget(t)
		yaml := strings.Replace(pairYAML(dir, web.addr, "10.255.0.10/24"), "    track:", "    notify_master: /bin/true\n    track:", 1)
		td := newTestDaemon(t, yaml)
		td.start()
		settle(5 * time.Second)
		if n := notifyLoops(t); n != 1 {
			t.Fatalf("%d notify hook goroutines for the one instance with hooks, want 1", n)
		}
		for range 10 {
			td.d.reload(t.Context(), td.path)
		}
		settle(time.Second)
		if n := notifyLoops(t); n != 1 {
			t.Errorf("after 10 reloads: %d notify hook goroutines, want 1 (the replaced hooks' goroutines are left waiting)", n)
		}
		td.stop()
		synctest.Wait()
		if n := notifyLoops(t); n != 0 {
			t.Errorf("after the stop: %d notify hook goroutines, want none", n)
		}
	})
}

// bubbleOf finds the synctest bubble in a goroutine's header line ("goroutine 7 [select
// (durable), synctest bubble 3]:"); no match when it is in none.
var bubbleOf = regexp.MustCompile(`^goroutine \d+ \[[^\]]*synctest bubble (\d+)`)

// notifyLoops is how many goroutines of the caller's synctest bubble run notify hooks (a
// notify.Runner's loop, one per hooks while they are in use), from a dump of every goroutine.
// Once synctest.Wait has returned, none of them is running: a goroutine that has ended is not
// in the dump, one that waits for hooks is.
func notifyLoops(t *testing.T) int {
	t.Helper()
	buf := make([]byte, 4096)
	own := bubbleOf.FindSubmatch(buf[:runtime.Stack(buf, false)])
	if own == nil {
		t.Fatalf("no synctest bubble in the caller's stack header:\n%s", buf)
	}
	n := 0
	for g := range strings.SplitSeq(string(allStacks()), "\n\n") {
		if m := bubbleOf.FindStringSubmatch(g); m != nil && m[1] == string(own[1]) && strings.Contains(g, "cmd/internal/notify.(*Runner).loop(") {
			n++
		}
	}
	return n
}

// TestSupervisorStartErrorIsHeard (issue 9 item 12): when the supervisor cannot start (a live
// HAProxy master owns its socket), hapair says so at once and its HAProxy check fails, instead of
// running without HAProxy in silence until shutdown.
func TestSupervisorStartErrorIsHeard(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		td := newTestDaemon(t, pairYAML(dir, newTCPTarget(t).addr, "10.255.0.10/24"))
		td.haproxy.runErr = errors.New("master socket in use by a live HAProxy master (pid 4242)")
		td.start()
		synctest.Wait()
		if !strings.Contains(td.logs.String(), "pid 4242") {
			t.Fatalf("the supervisor's start error is not logged at once:\n%s", td.logs)
		}
		settle(5 * time.Second)
		if up, known := td.d.checks.Up()[config.BuiltinHAProxyCheck]; !known || up {
			t.Errorf("the haproxy check without an HAProxy: up %v, known %v; want known and down", up, known)
		}
		if p := td.status("VI_1").Priority; p != 90 {
			t.Errorf("priority %d without HAProxy, want 90 (haproxy weight -20)", p)
		}
	})
}

// TestReloadAfterInstancesStoppedReturns (issue 9 item 12): a SIGHUP that arrives while hapair
// stops does not wait forever on instances that no longer take updates.
func TestReloadAfterInstancesStoppedReturns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		td, dir, web := newMasterPair(t, "10.255.0.10/24")
		td.stop()
		td.write(pairYAML(dir, web.addr, "10.255.0.10/24, 10.255.0.11/24"))
		returned := make(chan struct{})
		go func() {
			defer close(returned)
			td.d.reload(context.Background(), td.path)
		}()
		synctest.Wait()
		select {
		case <-returned:
		default:
			t.Fatal("reload blocks on a stopped instance")
		}
	})
}

// notifications records what the daemon tells systemd.
type notifications struct {
	mu     sync.Mutex
	states []string
}

func (n *notifications) notify(state string) error {
	n.mu.Lock()
	n.states = append(n.states, state)
	n.mu.Unlock()
	return nil
}

// count is how many notifications began with prefix.
func (n *notifications) count(prefix string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, s := range n.states {
		if strings.HasPrefix(s, prefix) {
			c++
		}
	}
	return c
}

// watchdogPings runs a settled MASTER for a minute with env set and counts its notifications.
func watchdogPings(t *testing.T, env map[string]string) (ready, pings int) {
	for k, v := range env {
		t.Setenv(k, v)
	}
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		web := newTCPTarget(t)
		td := newTestDaemon(t, pairYAML(dir, web.addr, "10.255.0.10/24"))
		n := &notifications{}
		td.d.notify = n.notify
		td.start()
		settle(5 * time.Second)
		if got := n.count("READY=1"); got != 1 {
			t.Fatalf("READY=1 sent %d times once settled, want 1", got)
		}
		before := n.count("WATCHDOG=1")
		settle(time.Minute)
		ready, pings = n.count("READY=1"), n.count("WATCHDOG=1")-before
		td.stop()
		synctest.Wait()
	})
	return ready, pings
}

// TestWatchdogPingsAtHalfItsTimeout: under a systemd watchdog (WATCHDOG_USEC), the daemon pings
// at half its timeout, as sd_watchdog_enabled(3) advises: every 5 s with the unit's
// WatchdogSec=10s, not every 2 s (each ping is a wake-up of an otherwise idle process).
func TestWatchdogPingsAtHalfItsTimeout(t *testing.T) {
	_, pings := watchdogPings(t, map[string]string{"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "10000000"})
	if pings < 11 || pings > 13 {
		t.Errorf("%d watchdog pings in a minute with WATCHDOG_USEC=10s, want 12 (one every 5 s)", pings)
	}
}

// TestNoWatchdogNoPings: without a systemd watchdog (no WATCHDOG_USEC, or one meant for another
// process), nothing pings it and nothing wakes the process to do so.
func TestNoWatchdogNoPings(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"no WATCHDOG_USEC":     {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": ""},
		"another WATCHDOG_PID": {"NOTIFY_SOCKET": "/run/systemd/notify", "WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"},
		"no NOTIFY_SOCKET":     {"NOTIFY_SOCKET": "", "WATCHDOG_USEC": "10000000"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, pings := watchdogPings(t, env); pings != 0 {
				t.Errorf("%d watchdog pings in a minute, want none", pings)
			}
		})
	}
}

// TestReloadMatchesInstancesByName: a reload that only lists the instances in another order
// changes nothing. Reloadable pairs the old and the new instances by name; the daemon must
// apply each instance's settings to the instance of that name, not to the one at its position
// (which gave VRID 51's VIP and priority to VRID 52 while the peer still announced it on 51).
func TestReloadMatchesInstancesByName(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		instanceA := `  - name: VI_A
    interface: lo
    virtual_router_id: 51
    priority: 110
    virtual_ipaddress: [10.255.0.10/24]
`
		instanceB := `  - name: VI_B
    interface: lo
    virtual_router_id: 52
    priority: 100
    virtual_ipaddress: [10.255.0.20/24]
`
		yaml := func(instances string) string {
			return fmt.Sprintf("runtime_dir: %s\nvrrp_instances:\n%sstatus:\n  listen: \"\"\n", dir, instances)
		}
		td := newTestDaemon(t, yaml(instanceA+instanceB))
		td.start()
		settle(5 * time.Second)

		td.write(yaml(instanceB + instanceA))
		if _, err := td.d.reload(t.Context(), td.path); err != nil {
			t.Fatalf("reload of the same instances in another order: %v", err)
		}
		synctest.Wait()
		for _, want := range []struct {
			name     string
			vrid     uint8
			priority uint8
			vips     string
		}{{"VI_A", 51, 110, "10.255.0.10/24"}, {"VI_B", 52, 100, "10.255.0.20/24"}} {
			var found bool
			for _, vi := range td.d.instances {
				st := vi.run.Status()
				if st.VRID != want.vrid {
					continue
				}
				found = true
				if vi.cfg.Name != want.name || st.BasePriority != want.priority || prefixList(st.VIPs) != want.vips {
					t.Errorf("VRID %d after the reload: named %s, base priority %d, VIPs %s; want %s, %d, %s",
						want.vrid, vi.cfg.Name, st.BasePriority, prefixList(st.VIPs), want.name, want.priority, want.vips)
				}
			}
			if !found {
				t.Errorf("no instance with VRID %d", want.vrid)
			}
		}
	})
}

// TestReloadKeepsTheChecksVerdicts: a reload that changes the checks starts a new runner, and
// until a check's first probe in it the check keeps the verdict it had. Before, every check
// started pending, which counts as nothing: an instance in FAULT for a failing check with weight
// 0 left FAULT (notify_backup ran) and came back when the probe failed again; a MASTER held at
// 100 by a failing check was at 110 for as long as the probe took, and advertised it if an
// advert fell due meanwhile.
func TestReloadKeepsTheChecksVerdicts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		// The script fails after a moment of real time: the new runner's first probe is
		// still running when its follower first computes the priority.
		yaml := func(interval string) string {
			return fmt.Sprintf(`runtime_dir: %s
checks:
  - name: slow
    script: {command: "/bin/sh -c 'sleep 0.2; exit 1'"}
    interval: %s
    timeout: 5s
vrrp_instances:
  - name: VI_1
    interface: lo
    virtual_router_id: 51
    priority: 110
    virtual_ipaddress: [10.255.0.10/24]
    track: {slow: 0}
status:
  listen: ""
`, dir, interval)
		}
		td := newTestDaemon(t, yaml("1s"))
		td.start()
		settle(5 * time.Second)
		if st := td.status("VI_1"); st.State != vrrp.Fault {
			t.Fatalf("with its weight-0 check failing: %s, want FAULT", st.State)
		}
		logged := len(td.logs.String())

		td.write(yaml("2s"))
		if _, err := td.d.reload(t.Context(), td.path); err != nil {
			t.Fatal(err)
		}
		settle(3 * time.Second)
		if after := td.logs.String()[logged:]; strings.Contains(after, "Entering ") {
			t.Errorf("the reload moved the instance, its check failing all along:\n%s", after)
		}
		if st := td.status("VI_1"); st.State != vrrp.Fault {
			t.Errorf("after the reload: %s, want FAULT", st.State)
		}
	})
}

// TestReloadKeepsHAProxysRiseHold: HAProxy back for less than the rise hold when a reload
// replaces the checks runner: the new runner's "haproxy" check says what the old one said (down)
// until the hold ends, not what the supervisor says (up).
func TestReloadKeepsHAProxysRiseHold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		td, dir, web := newMasterPair(t, "10.255.0.10/24")
		td.haproxy.send(false, "exited with status 1")
		synctest.Wait()
		td.haproxy.send(true, "started again")
		synctest.Wait()
		conn := td.host.conn("VI_1")
		before := conn.sentCount()

		td.write(strings.Replace(pairYAML(dir, web.addr, "10.255.0.10/24"), "timeout: 500ms", "timeout: 400ms", 1))
		if _, err := td.d.reload(t.Context(), td.path); err != nil {
			t.Fatal(err)
		}
		settle(haproxyRiseHold - time.Second)
		if got := conn.sentSince(before); slices.Contains(got, 110) || len(got) == 0 {
			t.Errorf("adverts during the rise hold, after the reload, carried %v; want only 90", got)
		}
		settle(time.Second)
		if p := td.status("VI_1").Priority; p != 110 {
			t.Errorf("after the rise hold: priority %d, want 110", p)
		}
	})
}

// TestReloadDropsARemovedChecksSeries: a check a reload removes loses its series; a failing one
// left at hapair_check_up 0 kept HapairCheckFailing firing until hapair restarted.
func TestReloadDropsARemovedChecksSeries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		td, dir, web := newMasterPair(t, "10.255.0.10/24")
		web.down()
		settle(time.Second)
		if got := checkUpSeries(t, td); !slices.Contains(got, "web") {
			t.Fatalf("hapair_check_up series %q before the reload, want web among them", got)
		}
		withoutWeb := pairYAML(dir, web.addr, "10.255.0.10/24")
		withoutWeb = withoutWeb[:strings.Index(withoutWeb, "checks:")] + withoutWeb[strings.Index(withoutWeb, "vrrp_instances:"):]
		withoutWeb = strings.Replace(withoutWeb, "track: {haproxy: -20, web: -10}", "track: {haproxy: -20}", 1)
		td.write(withoutWeb)
		if _, err := td.d.reload(t.Context(), td.path); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if got := checkUpSeries(t, td); slices.Contains(got, "web") || !slices.Contains(got, "haproxy") {
			t.Errorf("hapair_check_up series %q after the reload removed web, want haproxy and not web", got)
		}
		out, err := td.d.metrics.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range out {
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "check" && l.GetValue() == "web" {
						t.Errorf("%s still has a series for the removed check", f.GetName())
					}
				}
			}
		}
	})
}

// TestStopWaitsForTheNotifyHooks: notify_stop is queued as the instance stops; the stop waits
// for it (at most notify.timeout) before hapair exits. Before, serve returned with the hook
// still running, and hapair's exit killed it (its parent-death signal) or it never started.
func TestStopWaitsForTheNotifyHooks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		ran := filepath.Join(dir, "notify_stop.ran")
		td := newTestDaemon(t, fmt.Sprintf(`runtime_dir: %s
vrrp_instances:
  - name: VI_1
    interface: lo
    virtual_router_id: 51
    priority: 110
    virtual_ipaddress: [10.255.0.10/24]
    notify_stop: "/bin/sh -c 'sleep 0.3; touch %s'"
status:
  listen: ""
`, dir, ran))
		td.start()
		settle(5 * time.Second)
		td.stop()
		if _, err := os.Stat(ran); err != nil {
			t.Errorf("hapair's serve returned before notify_stop had run: %v", err)
		}
	})
}

// TestWatchdogPingedFromTheStart: the watchdog is pinged as soon as the daemon serves, and every
// half timeout from then on, before its instances have settled too. After an in-place upgrade
// the new image runs under the old one's watchdog, whose last ping may be 5 s old: it waited
// for every instance to settle (a BACKUP: its checks, then a MASTER's advert or its own
// takeover) and a ticker period more, and systemd aborted it in some upgrades, which then
// restarted through a normal election and moved the VIP.
func TestWatchdogPingedFromTheStart(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	t.Setenv("WATCHDOG_USEC", "10000000")
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		web := newTCPTarget(t)
		td := newTestDaemon(t, pairYAML(dir, web.addr, "10.255.0.10/24"))
		n := &notifications{}
		td.d.notify = n.notify
		td.start()
		synctest.Wait()
		if ready, pings := n.count("READY=1"), n.count("WATCHDOG=1"); ready != 0 || pings != 1 {
			t.Fatalf("at the start: READY=1 %d times, WATCHDOG=1 %d times; want 0 and 1", ready, pings)
		}
		settle(3 * time.Second) // still BACKUP: its master-down interval is 3.57 s
		if ready, pings := n.count("READY=1"), n.count("WATCHDOG=1"); ready != 0 || pings != 1 {
			t.Fatalf("after 3 s: READY=1 %d times, WATCHDOG=1 %d times; want 0 and 1", ready, pings)
		}
		settle(2 * time.Second)
		if ready, pings := n.count("READY=1"), n.count("WATCHDOG=1"); ready != 1 || pings != 2 {
			t.Errorf("after 5 s: READY=1 %d times, WATCHDOG=1 %d times; want 1 and 2", ready, pings)
		}
	})
}

// startIndexedMaster starts a daemon on pairYAML whose instance knows its interface's index (2,
// as netlinkHost.Open sets it; the fakes leave it 0) and whose links a test can recreate, lets
// edit change the instance before the start, and waits until it is MASTER. In a synctest bubble.
func startIndexedMaster(t *testing.T, edit func(vi *vrrpInstance)) (*testDaemon, *recreatedLinks, *vrrpInstance) {
	t.Helper()
	td := newTestDaemon(t, pairYAML(t.TempDir(), newTCPTarget(t).addr, "10.255.0.10/24"))
	links := &recreatedLinks{index: 2}
	td.d.links = links
	vi := td.d.instances[0]
	vi.ifindex = 2
	if edit != nil {
		edit(vi)
	}
	td.start()
	settle(contendHold + time.Second)
	if st := td.status("VI_1"); st.State != vrrp.Master {
		t.Fatalf("before: %s, want MASTER", st.State)
	}
	return td, links, vi
}

// TestRenumberedInterfaceFollowedOnFakes: the address a MASTER sends from leaves its interface.
// Renumbered (another address there), it sends from the new one and stays MASTER; left with no
// address of its own, it goes to FAULT (its VIPs released: its adverts cannot leave, and its
// BACKUP takes over) until one comes, then contends again from that address.
func TestRenumberedInterfaceFollowedOnFakes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		td, _, vi := startIndexedMaster(t, nil)
		source := func() netip.Addr {
			td.d.mu.Lock()
			defer td.d.mu.Unlock()
			return vi.source
		}

		renumbered := netip.MustParseAddr("10.9.9.21")
		td.host.mu.Lock()
		td.host.sources = map[string]netip.Addr{"VI_1": renumbered}
		td.host.mu.Unlock()
		td.d.addrGone(netip.PrefixFrom(fakeSource, 24))
		settle(time.Second)
		if st := td.status("VI_1"); st.State != vrrp.Master || st.MasterAddr != renumbered || source() != renumbered {
			t.Fatalf("renumbered: %s, MASTER %s, source %s; want MASTER %s sending from it", st.State, st.MasterAddr, source(), renumbered)
		}

		td.host.mu.Lock()
		td.host.noAddress = true
		td.host.mu.Unlock()
		td.d.addrGone(netip.PrefixFrom(renumbered, 24))
		settle(time.Second)
		if st := td.status("VI_1"); st.State != vrrp.Fault || !strings.Contains(st.Fault, "no address of its own on lo") {
			t.Fatalf("no address left: %s, fault %q; want FAULT saying why", st.State, st.Fault)
		}

		again := netip.MustParseAddr("10.9.9.31")
		td.host.mu.Lock()
		td.host.noAddress, td.host.sources["VI_1"] = false, again
		td.host.mu.Unlock()
		settle(rebindRetry + contendHold + time.Second) // found at the next retry, then elected
		if st := td.status("VI_1"); st.State != vrrp.Master || st.MasterAddr != again {
			t.Fatalf("an address again: %s, MASTER %s; want MASTER from %s", st.State, st.MasterAddr, again)
		}
		for _, want := range []string{
			`msg="(VI_1) The address of lo changed: sending from 10.9.9.21"`,
			`msg="(VI_1) No address of its own on lo to send from: FAULT until it has one"`,
			`msg="(VI_1) lo has an address again: 10.9.9.31"`,
		} {
			if !strings.Contains(td.logs.String(), want) {
				t.Errorf("log lacks %s:\n%s", want, td.logs.String())
			}
		}
	})
}

// TestSourceLookupFailureIsRetriedQuietly: when the interface's addresses cannot be read
// (netlink failed) after the source left, that is no answer: no FAULT, one line, and a retry
// every rebindRetry until it can be read. Before, every retry logged the line again.
func TestSourceLookupFailureIsRetriedQuietly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		td, _, vi := startIndexedMaster(t, nil)
		td.host.mu.Lock()
		td.host.sourceErr = errors.New("primary address of lo: list addresses: interrupted")
		td.host.mu.Unlock()
		td.d.addrGone(netip.PrefixFrom(fakeSource, 24))
		settle(10 * rebindRetry)
		if st := td.status("VI_1"); st.State != vrrp.Master {
			t.Fatalf("addresses unreadable: %s (%q), want MASTER still", st.State, st.Fault)
		}
		if n := strings.Count(td.logs.String(), "Looking for the address of lo failed"); n != 1 {
			t.Errorf("logged %d times over 10 retries, want once:\n%s", n, td.logs.String())
		}
		renumbered := netip.MustParseAddr("10.9.9.21")
		td.host.mu.Lock()
		td.host.sourceErr, td.host.sources = nil, map[string]netip.Addr{"VI_1": renumbered}
		td.host.mu.Unlock()
		settle(rebindRetry + time.Millisecond)
		td.d.mu.Lock()
		source := vi.source
		td.d.mu.Unlock()
		if source != renumbered {
			t.Errorf("once readable: sending from %s, want %s", source, renumbered)
		}
	})
}

// TestRecreatedInterfaceFailingLongIsAWarning: a rebind that still fails after rebindWarnAfter
// is a warning, once, however long it goes on failing.
func TestRecreatedInterfaceFailingLongIsAWarning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		td, links, vi := startIndexedMaster(t, func(vi *vrrpInstance) { vi.ann = &closingAnnouncer{} })
		td.host.mu.Lock()
		td.host.rejoinFails = 1000
		td.host.mu.Unlock()
		links.recreate(3)
		settle(rebindWarnAfter - rebindRetry)
		if strings.Contains(td.logs.String(), `level=WARN msg="(VI_1) Listening on the new`) {
			t.Fatalf("warned before %s:\n%s", rebindWarnAfter, td.logs.String())
		}
		settle(2 * rebindWarnAfter)
		if n := strings.Count(td.logs.String(), `level=WARN msg="(VI_1) Listening on the new `+vi.cfg.Interface+" still fails"); n != 1 {
			t.Errorf("warned %d times in %s of failures, want once:\n%s", n, 3*rebindWarnAfter, td.logs.String())
		}
		if st := td.status("VI_1"); st.State != vrrp.Fault {
			t.Errorf("still not listening on the new interface: %s, want FAULT", st.State)
		}
	})
}

// TestRecreatedInterfaceHeldInFaultUntilRejoined: the instance's interface is created again
// (a new index). Until a socket and an announcer can be opened on it (the new interface has no
// address yet: two tries fail), the instance stays in FAULT, however up the link is; the
// failure is logged once, at INFO (every ifupdown-style recreation has it for a moment), and
// tried again without any further link event. Then the instance takes the new ones and leaves
// FAULT, and the old ones are closed.
func TestRecreatedInterfaceHeldInFaultUntilRejoined(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var oldConn *fakeConn
		oldAnn := &closingAnnouncer{}
		td, links, vi := startIndexedMaster(t, func(vi *vrrpInstance) {
			oldConn = vi.conn.(*fakeConn)
			vi.ann = oldAnn
		})

		td.host.mu.Lock()
		td.host.rejoinFails = 2
		td.host.mu.Unlock()
		links.recreate(3)
		settle(0)
		if st := td.status("VI_1"); st.State != vrrp.Fault || !strings.Contains(st.Fault, "created again") {
			t.Fatalf("interface created again, not rejoined: %s, fault %q; want FAULT, created again", st.State, st.Fault)
		}
		settle(rebindRetry + time.Millisecond) // the second try fails too
		if st := td.status("VI_1"); st.State != vrrp.Fault {
			t.Fatalf("after the second failed try: %s, want FAULT", st.State)
		}
		if n := strings.Count(td.logs.String(), `level=INFO msg="(VI_1) Cannot listen on the new `+vi.cfg.Interface+" yet"); n != 1 {
			t.Errorf("the failure logged %d times at INFO, want once:\n%s", n, td.logs.String())
		}
		if strings.Contains(td.logs.String(), "still fails") {
			t.Errorf("a failure of a second warned as lasting:\n%s", td.logs.String())
		}
		settle(rebindRetry + time.Millisecond) // the third succeeds
		settle(time.Second)
		st := td.status("VI_1")
		if st.State == vrrp.Fault {
			t.Fatalf("rejoined: still FAULT (%q)", st.Fault)
		}
		td.host.mu.Lock()
		rejoined := td.host.rejoined
		td.host.mu.Unlock()
		if len(rejoined) != 1 {
			t.Fatalf("rejoined %d times, want 1", len(rejoined))
		}
		td.d.mu.Lock()
		conn, index := vi.conn, vi.ifindex
		td.d.mu.Unlock()
		if conn != rejoined[0].conn || index != 3 {
			t.Errorf("the daemon holds conn %p on index %d, want the new one %p on 3", conn, index, rejoined[0].conn)
		}
		oldConn.mu.Lock()
		closes := oldConn.closes
		oldConn.mu.Unlock()
		if closes == 0 || !oldAnn.closed.Load() {
			t.Errorf("old socket closed %d times, old announcer closed %v; want both closed", closes, oldAnn.closed.Load())
		}
		if !strings.Contains(td.logs.String(), "Listening on "+vi.cfg.Interface+" as it is now") {
			t.Errorf("the instance did not say it listens on the new interface:\n%s", td.logs.String())
		}
	})
}

// TestStateRecordFailureIsReported: a state record that can no longer be written says so, once,
// however many adverts follow (record.Writer.OnError, recordFailed). Before, the Writer kept the
// error for a caller that never asked.
func TestStateRecordFailureIsReported(t *testing.T) {
	w, err := record.Create(t.TempDir(), "VI_1", 51, nil)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncbuf.Buffer
	w.OnError = recordFailed(slog.New(slog.NewTextHandler(&logs, nil)), "VI_1")
	w.Record(vrrp.Master, 110, true)
	if logs.String() != "" {
		t.Fatalf("a record written fine logged:\n%s", logs.String())
	}
	w.Close() // every write fails from here on
	for range 3 {
		w.Record(vrrp.Master, 110, true)
	}
	if n := strings.Count(logs.String(), "Writing the state record failed"); n != 1 {
		t.Errorf("the failure was logged %d times, want once:\n%s", n, logs.String())
	}
}
