package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hapair/hapair/vrrp"
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

// TestDaemonPriorityFollowsChecks: the instance's priority is the base priority plus the weights
// of the failing tracked checks; an HAProxy crash counts at once, its recovery only after the
// rise hold; a TCP check counts at its interval.
func TestDaemonPriorityFollowsChecks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		web := newTCPTarget(t)
		td := newTestDaemon(t, pairYAML(dir, web.addr, "10.255.0.10/24"))
		td.start()
		settle(5 * time.Second) // alone: MASTER after the master-down interval (3.57s)
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
		dir := t.TempDir()
		td := newTestDaemon(t, pairYAML(dir, newTCPTarget(t).addr, "10.255.0.10/24"))
		td.start()
		settle(5 * time.Second)
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
		dir := t.TempDir()
		web := newTCPTarget(t)
		td := newTestDaemon(t, pairYAML(dir, web.addr, "10.255.0.10/24, 10.255.0.11/24"))
		td.start()
		settle(5 * time.Second)
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

// TestDaemonReloadRefusesABrokenFile: the running configuration stays, nothing is touched.
func TestDaemonReloadRefusesABrokenFile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		web := newTCPTarget(t)
		td := newTestDaemon(t, pairYAML(dir, web.addr, "10.255.0.10/24"))
		td.start()
		settle(5 * time.Second)
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
		dir := t.TempDir()
		td := newTestDaemon(t, pairYAML(dir, newTCPTarget(t).addr, "10.255.0.10/24"))
		td.start()
		settle(5 * time.Second)
		st := td.d.Status()
		if len(st.Instances) != 1 || st.Instances[0].State != "MASTER" || st.HAProxy.PID != 4242 || len(st.Checks) != 2 {
			t.Fatalf("status = %+v", st)
		}
		td.d.dump()
		if !strings.Contains(td.logs.String(), "State dump written") {
			t.Fatalf("no dump written:\n%s", td.logs)
		}
	})
}
