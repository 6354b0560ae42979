package main

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/hapair/hapair/cmd/internal/lab"
	"github.com/hapair/hapair/cmd/internal/lab/labtest"
)

// TestPlannedHandoversLoseNothing is issue 13's lab run: the seed's settings (VRRP v2, advert_int 1,
// priorities 110/100, PASS, HAProxy as hapair's child, the stats probe) and a client that GETs
// http://VIP/ every 20 ms with a 300 ms timeout, one new connection each time. In one run, hapair
// goes through a graceful stop of the MASTER, its preemption back when it starts again, a drain
// and an undrain (a preemption back as well): none may leave the client without a server (no
// timeout, no refusal); at most one connection in flight at the switch may be reset (see the
// end of the test). keepalived's
// graceful stop (and its preemption back) is measured beside it in the same lab and printed, not
// judged: it is the figure hapair is compared with.
func TestPlannedHandoversLoseNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("lab test: skipped under -short")
	}
	labtest.RequireCommands(t, "haproxy", "keepalived", "pgrep")
	p := benchNewPair(t)
	hp := startFoHapair(t, p)
	ctx := t.Context()

	var rows []handoverRow
	phase := func(c *lab.Client, impl, kind string, act func() time.Time, settled func(since time.Time)) handoverRow {
		t.Helper()
		before := c.Stats()
		at := act()
		settled(at)
		// Requests sent before now may still wait for their timeout: let them end.
		time.Sleep(foClientTimeout + 100*time.Millisecond)
		after := c.Stats()
		window, _ := foClientWindows(after, at.Add(-foClientTimeout), time.Now())
		r := handoverRow{impl: impl, kind: kind, failed: after.Failed - before.Failed, window: window,
			requests: after.OK + after.Failed - before.OK - before.Failed}
		var errs []string
		for _, w := range after.Windows {
			if !w.Start.Before(at.Add(-foClientTimeout)) {
				errs = append(errs, fmt.Sprintf("%s after the action: %d failed, %s", w.Start.Sub(at).Round(time.Millisecond), w.Failed, w.Err))
				if w.Failed == 1 && strings.Contains(w.Err, "connection reset by peer") {
					r.straddlers++
				}
			}
		}
		t.Logf("%s, %s: %d failed of %d requests, longest failure window %s %v", impl, kind, r.failed, r.requests, foMS(r.window), errs)
		rows = append(rows, r)
		return r
	}
	servedBy := func(c *lab.Client, host *lab.Host) func(time.Time) {
		return func(since time.Time) {
			t.Helper()
			if err := foServed(ctx, c, since, host.Name); err != nil {
				t.Fatalf("client not served by %s: %v", host.Name, err)
			}
		}
	}

	// 1. Graceful stop of the MASTER: the VIP moves to lb2, hapair on lb1 exits 0.
	phase(hp.cli, "hapair", "graceful stop of the MASTER (SIGTERM)", func() time.Time {
		at := time.Now()
		if err := hp.d1.proc.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		return at
	}, func(at time.Time) {
		if _, err := benchWaitSole(ctx, vip, p.lb2, 10*time.Second, p.lb1, p.lb2); err != nil {
			t.Fatal(err)
		}
		servedBy(hp.cli, p.lb2)(at)
		select {
		case <-hp.d1.proc.Done():
		case <-time.After(15 * time.Second):
			t.Fatalf("hapair on lb1 still running 15s after SIGTERM:\n%s", hp.d1.proc.Output())
		}
		if err := hp.d1.proc.Wait(); err != nil {
			t.Fatalf("hapair on lb1 exited with %v after SIGTERM, want 0:\n%s", err, hp.d1.proc.Output())
		}
	})

	// 2. lb1 starts again and takes the VIP back (preempt).
	phase(hp.cli, "hapair", "preemption back (lb1 started again)", func() time.Time {
		at := time.Now()
		hp.d1.start()
		return at
	}, func(at time.Time) {
		if _, err := benchWaitSole(ctx, vip, p.lb1, 30*time.Second, p.lb1, p.lb2); err != nil {
			t.Fatal(err)
		}
		servedBy(hp.cli, p.lb1)(at)
	})
	// Let the failback's GARPs and checks settle as an operator would before the next step.
	time.Sleep(2 * time.Second)

	// 3. Drain: the VIP moves to lb2 and the command says so.
	phase(hp.cli, "hapair", "drain (hapair drain)", func() time.Time {
		at := time.Now()
		out, err := hapairCommand(ctx, "drain", "--config", hp.d1.cfgPath)
		if err != nil {
			t.Fatalf("hapair drain: %v\n%s\n--- lb1 ---\n%s", err, out, hp.d1.proc.Output())
		}
		t.Logf("hapair drain:\n%s", out)
		if lb2 := p.lab.Addr(12).Addr().String(); !strings.Contains(out, "MASTER is now "+lb2) {
			t.Errorf("hapair drain does not say that lb2 (%s) is MASTER now:\n%s", lb2, out)
		}
		return at
	}, func(at time.Time) {
		if _, err := benchWaitSole(ctx, vip, p.lb2, 10*time.Second, p.lb1, p.lb2); err != nil {
			t.Fatal(err)
		}
		servedBy(hp.cli, p.lb2)(at)
	})
	if !childHAProxyAlive(hp.d1.proc.PID()) {
		t.Errorf("the drained node's HAProxy is not running: a drain must keep it serving open connections")
	}
	// The status listener is on lb1's own loopback: ask from inside lb1.
	out, err := p.lb1.Run(ctx, hapairBin, "status", "--config", hp.d1.cfgPath)
	if err != nil || !strings.Contains(out, "This node is drained") {
		t.Errorf("hapair status on the drained node does not say it is drained (%v):\n%s", err, out)
	}

	// The drain is kept across a restart: lb1 comes back drained and leaves the VIP to lb2.
	phase(hp.cli, "hapair", "restart of the drained node", func() time.Time {
		at := time.Now()
		hp.d1.terminate()
		hp.d1.start()
		return at
	}, func(at time.Time) {
		hp.d1.waitState(0, "BACKUP", 20*time.Second)
		time.Sleep(2 * time.Second) // long enough for an undrained lb1 to have preempted
		if h := vipHolders(t, p.lb1, p.lb2); len(h) != 1 || h[0] != p.lb2.Name {
			t.Fatalf("after restarting the drained lb1 the VIP is held by %v, want lb2", h)
		}
		out, err := p.lb1.Run(ctx, hapairBin, "status", "--json", "--config", hp.d1.cfgPath)
		if err != nil || !strings.Contains(out, `"drained": true`) {
			t.Errorf("restarted lb1 does not report drained (%v):\n%s", err, out)
		}
	})

	// 4. Undrain: lb1 takes the VIP back.
	phase(hp.cli, "hapair", "undrain (hapair undrain, preemption back)", func() time.Time {
		at := time.Now()
		out, err := hapairCommand(ctx, "undrain", "--config", hp.d1.cfgPath)
		if err != nil {
			t.Fatalf("hapair undrain: %v\n%s", err, out)
		}
		if lb1 := p.lab.Addr(11).Addr().String(); !strings.Contains(out, "MASTER is now "+lb1+" (this node)") {
			t.Errorf("hapair undrain does not say that lb1 (%s) is MASTER again:\n%s", lb1, out)
		}
		t.Logf("hapair undrain:\n%s", out)
		return at
	}, func(at time.Time) {
		if _, err := benchWaitSole(ctx, vip, p.lb1, 10*time.Second, p.lb1, p.lb2); err != nil {
			t.Fatal(err)
		}
		servedBy(hp.cli, p.lb1)(at)
	})

	// keepalived beside it, same lab and run: its graceful stop and its preemption back.
	ka := startFoKeepalived(t, p)
	phase(ka.cli, "keepalived", "graceful stop of the MASTER (SIGTERM)", func() time.Time {
		at, err := ka.fail(foGracefulStop)
		if err != nil {
			t.Fatal(err)
		}
		return at
	}, func(at time.Time) {
		if _, err := benchWaitSole(ctx, foKeepalivedVIP, ka.ka2, 10*time.Second, ka.ka1, ka.ka2); err != nil {
			t.Fatal(err)
		}
		servedBy(ka.cli, ka.ka2)(at)
	})
	phase(ka.cli, "keepalived", "preemption back (ka1 started again)", func() time.Time {
		at := time.Now()
		if err := ka.repair(ctx, foGracefulStop); err != nil {
			t.Fatal(err)
		}
		return at
	}, func(at time.Time) {
		if _, err := benchWaitSole(ctx, foKeepalivedVIP, ka.ka1, 30*time.Second, ka.ka1, ka.ka2); err != nil {
			t.Fatal(err)
		}
		servedBy(ka.cli, ka.ka1)(at)
	})

	t.Logf("\n%s", handoverTable(rows))
	for _, r := range rows {
		// A lone reset at the switch is a connection that straddled it: its SYN reached the old
		// MASTER before the new MASTER's gratuitous ARP, its next packets the new MASTER, which
		// knows no such connection. No VRRP ordering can prevent that (the clients' ARP caches
		// move one packet to the next); it happens when a request is in flight at that instant,
		// more often on a loaded machine. Every other failure is a gap in service: none allowed.
		if r.impl == "hapair" && (r.failed-r.straddlers != 0 || r.straddlers > 1) {
			t.Errorf("hapair, %s: %d failed requests (%d a lone reset at the switch, longest window %s), want none but at most one straddling connection",
				r.kind, r.failed, r.straddlers, foMS(r.window))
		}
	}
}

// handoverRow is one planned handover as the client saw it.
type handoverRow struct {
	impl, kind       string
	failed, requests int
	straddlers       int // failed windows that are one reset connection: see the test
	window           time.Duration
}

func handoverTable(rows []handoverRow) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Planned handovers, seed settings (VRRP v2, advert_int 1, 110/100), client GET every %s, timeout %s\n",
		foClientEvery, foClientTimeout)
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "handover\timplementation\tfailed requests\tof them a lone reset at the switch\tlongest failure window\trequests sent")
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\t%d\n", r.kind, r.impl, r.failed, r.straddlers, foMS(r.window), r.requests)
	}
	w.Flush()
	return b.String()
}

// hapairCommand runs the hapair binary under test with args and returns its combined output.
func hapairCommand(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, hapairBin, args...).CombinedOutput()
	return string(out), err
}

// childHAProxyAlive says whether hapair (pid) has a live HAProxy child.
func childHAProxyAlive(pid int) bool {
	hp, err := childHAProxy(pid)
	return err == nil && benchAlive(hp)
}

// TestHandoverWithoutAPeer: a lone MASTER that is drained finds nobody to take over: it keeps the
// VIP, says so, and `hapair drain` exits non-zero; a stop then releases the VIP anyway after
// LongestMasterDown (3 x 1 s + 255/256 s) and says so too.
func TestHandoverWithoutAPeer(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("lab test: skipped under -short")
	}
	p := newPair(t)
	lb1 := startDaemon(t, p.lb1, labNode{Priority: 110, AuthPass: foAuthPass})
	lb1.waitState(0, "MASTER", 10*time.Second)
	waitVIPOn(t, p.lb1, 2*time.Second)

	out, err := hapairCommand(t.Context(), "drain", "--config", lb1.cfgPath)
	if err == nil || !strings.Contains(out, "no peer took over: this node is still MASTER") {
		t.Fatalf("hapair drain with no peer: %v, want a failure saying it is still MASTER:\n%s", err, out)
	}
	if !lb1.hasVIP() {
		t.Fatal("the lone drained MASTER dropped its VIP")
	}
	if !regexp.MustCompile(`No new MASTER after our priority 0: keeping the VIPs, still MASTER after=\S+`).MatchString(lb1.proc.Output()) {
		t.Errorf("no log line saying the drain kept the VIPs:\n%s", lb1.proc.Output())
	}

	from := lb1.lines()
	stopped := lb1.terminate()
	took := time.Since(stopped)
	if lb1.hasVIP() {
		t.Fatal("the stopped MASTER kept the VIP")
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if _, err := lb1.proc.WaitForLineAfter(ctx, from, regexp.MustCompile(`No new MASTER after our priority 0: VIPs released anyway after=\S+`)); err != nil {
		t.Errorf("no log line saying the stop released the VIP anyway: %v\n%s", err, lb1.proc.Output())
	}
	// It waited for a taker for LongestMasterDown (3.996 s), not more than a few seconds beyond.
	if took < 3900*time.Millisecond || took > 10*time.Second {
		t.Errorf("the lone MASTER stopped after %s, want about LongestMasterDown 3.996s", took)
	}
}
