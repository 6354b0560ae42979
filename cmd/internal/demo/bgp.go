package demo

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hapair/hapair/cmd/internal/lab"
)

// demoPrefix is the anycast service address of `hapair demo --bgp`.
var demoPrefix = netip.MustParsePrefix("10.77.9.10/32")

// runBGP is `hapair demo --bgp`: FRR as the upstream router, three anycast nodes announcing one
// service address, a client behind the router; HAProxy killed, a graceful stop and a hard failure,
// each read in the router's kernel route.
func (d *demo) runBGP(ctx context.Context) error {
	return d.inLab(ctx, "a router, three nodes and a client joined by veth pairs, addresses only inside.", d.playBGP)
}

// playBGP is the anycast scenario in the lab l, with self the hapair binary the nodes run.
func (d *demo) playBGP(ctx context.Context, self string, l *lab.Lab) error {
	router, err := l.AddHost("router", l.Addr(1))
	if err != nil {
		return err
	}
	frr, err := router.StartFRR(ctx, lab.FRRConfig{})
	if err != nil {
		return err
	}
	d.say("Router %s: FRR's zebra and bgpd (AS 65000, bgp listen range %s, maximum-paths 8, hold time 3s), state in %s",
		router.IP(), l.Subnet(), frr.StateDir)
	cli, err := l.AddHost("cli", l.Addr(50))
	if err != nil {
		return err
	}
	if _, err := cli.Run(ctx, "ip", "route", "add", "10.77.9.0/24", "via", router.IP().String()); err != nil {
		return err
	}
	var nodes []*lab.Host
	procs := map[string]*lab.Proc{}
	for i := range 3 {
		h, err := l.AddHost(fmt.Sprintf("n%d", i+1), l.Addr(11+i))
		if err != nil {
			return err
		}
		p, err := startDemoNode(ctx, self, h, func(haproxyCfg string) string {
			return AnycastNode{
				RouterID: h.Name, HAProxyConfig: haproxyCfg, RuntimeDir: filepath.Join(h.Dir(), "run"),
				DumpFile: filepath.Join(h.Dir(), "hapair.data"), Router: router.IP().String(), Prefix: demoPrefix.String(),
			}.YAML()
		})
		if err != nil {
			return err
		}
		nodes = append(nodes, h)
		procs[h.Name] = p
		d.say("Started hapair on %s (%s): HAProxy, no VRRP, announces %s while HAProxy lives", h.Name, h.IP(), demoPrefix)
	}
	nexthops := func() []string {
		gws, err := router.Nexthops(demoPrefix)
		if err != nil {
			return []string{err.Error()}
		}
		var names []string
		for _, gw := range gws {
			for _, n := range nodes {
				if n.IP() == gw {
					names = append(names, n.Name)
				}
			}
		}
		slices.Sort(names)
		return names
	}
	// waitRoute polls the router's kernel route every millisecond until it goes through want.
	waitRoute := func(timeout time.Duration, want ...string) (time.Time, error) {
		slices.Sort(want)
		var at time.Time
		err := lab.WaitFor(ctx, timeout, func() (bool, error) {
			at = time.Now()
			return slices.Equal(nexthops(), want), nil
		})
		if err != nil {
			return at, fmt.Errorf("router's route to %s: %v, want %v: %w", demoPrefix, nexthops(), want, err)
		}
		return at, nil
	}

	if _, err := waitRoute(30*time.Second, "n1", "n2", "n3"); err != nil {
		return err
	}
	d.say("\nThe router's kernel route, once the three sessions are up and HAProxy runs everywhere:")
	if out, err := router.Run(ctx, "ip", "route", "show", demoPrefix.String()); err == nil {
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			d.say("  %s", line)
		}
		// zebra installs a kernel nexthop group: no "type resilient" means hash-threshold, where
		// a change can move flows of the nodes that stay too (docs/scale-out.md).
		if m := regexp.MustCompile(`nhid (\d+)`).FindStringSubmatch(out); m != nil {
			if nh, err := router.Run(ctx, "ip", "nexthop", "show", "id", m[1]); err == nil {
				d.say("  ip nexthop show id %s: %s", m[1], strings.TrimSpace(nh))
			}
		}
	}
	client, err := cli.StartClientWith(ctx, lab.ClientOptions{URL: "http://" + demoPrefix.Addr().String() + "/", Every: 20 * time.Millisecond, Timeout: 500 * time.Millisecond})
	if err != nil {
		return err
	}
	defer client.Stop()
	waitCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for _, n := range nodes {
		if err := client.WaitServedBy(waitCtx, time.Time{}, n.Name); err != nil {
			return fmt.Errorf("client never answered by %s: %w", n.Name, err)
		}
	}
	d.pause(ctx, 2*time.Second)
	d.say("  client on %s: GET http://%s/ every 20ms through the router, answered by %s",
		cli.IP(), demoPrefix.Addr(), responders(client.Stats()))

	// 1. HAProxy killed.
	pid, err := ChildHAProxy(procs["n1"].PID())
	if err != nil {
		return err
	}
	d.say("\nHealth-gated withdrawal: kill -9 HAProxy (pid %d) on n1", pid)
	before := client.Stats()
	from1 := procs["n1"].LineCount()
	d.start = time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return err
	}
	d.at(d.start, "n1", "HAProxy killed")
	gone, err := waitRoute(5*time.Second, "n2", "n3")
	if err != nil {
		return err
	}
	d.logLine(procs["n1"], from1, "BGP: withdrawing", "n1")
	d.at(gone, "rtr", "kernel route: n2 n3 (n1 gone)")
	after := client.Stats()
	d.at(gone, "cli", fmt.Sprintf("%d requests failed meanwhile (sent to n1's dead HAProxy)", after.Failed-before.Failed))
	d.flush()
	back, err := waitRoute(20*time.Second, "n1", "n2", "n3")
	if err != nil {
		return err
	}
	d.say("  n1's HAProxy restarted and held 2s: announced again, kernel route n1 n2 n3 after %s", back.Sub(d.start).Round(time.Millisecond))

	// 2. Graceful stop.
	d.pause(ctx, time.Second)
	d.say("\nGraceful stop: SIGTERM to hapair on n2 (drain_time 1s)")
	before = client.Stats()
	from2 := procs["n2"].LineCount()
	d.start = time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- procs["n2"].Stop(15 * time.Second) }()
	d.at(d.start, "n2", "SIGTERM")
	left, err := waitRoute(10*time.Second, "n1", "n3")
	if err != nil {
		return err
	}
	d.at(left, "rtr", "kernel route: n1 n3 (GRACEFUL_SHUTDOWN: LOCAL_PREF 0 takes n2 out of the multipath set)")
	if err := <-stopped; err != nil {
		return fmt.Errorf("n2 did not stop cleanly: %w", err)
	}
	d.logLine(procs["n2"], from2, "BGP: draining", "n2")
	d.logLine(procs["n2"], from2, "BGP: withdrawing", "n2")
	d.logLine(procs["n2"], from2, "Stopping HAProxy", "n2")
	d.pause(ctx, time.Second)
	after = client.Stats()
	d.at(time.Now(), "cli", fmt.Sprintf("%d requests failed across the stop (%d ok)", after.Failed-before.Failed, after.OK-before.OK))
	d.flush()

	// 3. Hard failure.
	d.say("\nHard failure: n3's cable pulled, then hapair SIGKILLed (nothing can tell the router)")
	before = client.Stats()
	d.start = time.Now()
	if err := nodes[2].SetCable(ctx, false); err != nil {
		return err
	}
	_ = procs["n3"].Kill()
	d.at(d.start, "n3", "cable pulled, hapair killed")
	gone, err = waitRoute(10*time.Second, "n1")
	if err != nil {
		return err
	}
	d.at(gone, "rtr", "kernel route: n1 only (the router's hold timer, 3s, expired)")
	d.pause(ctx, 2*time.Second) // requests sent to n3 meanwhile time out after 500ms
	after = client.Stats()
	d.at(time.Now(), "cli", fmt.Sprintf("%d requests failed: those hashed to n3 until the hold time ran out", after.Failed-before.Failed))
	d.flush()

	final := client.Stop()
	d.say("\nClient over the whole run: %d ok, %d failed, answered by %s.", final.OK, final.Failed, responders(final))
	d.say("Observability on n1: %s", describeEndpoints(nodes[0]))
	for _, p := range procs {
		_ = p.Stop(10 * time.Second)
	}
	return nil
}

// logLine puts the first line of p after line from that contains text on the timeline.
func (d *demo) logLine(p *lab.Proc, from int, text, who string) {
	for _, l := range p.Lines()[from:] {
		if strings.Contains(l.Text, text) {
			if i := strings.Index(l.Text, "BGP"); i >= 0 && strings.HasPrefix(text, "BGP") {
				d.at(l.At, who, shortenLog(l.Text[i:]))
			} else {
				d.at(l.At, who, text)
			}
			return
		}
	}
}

var logTail = regexp.MustCompile(`"?\s*(source=\S+)?$`)

func shortenLog(s string) string { return strings.TrimSpace(logTail.ReplaceAllString(s, "")) }

func responders(st lab.ClientStats) string {
	var names []string
	for name, n := range st.Responses {
		names = append(names, fmt.Sprintf("%s (%d)", name, n))
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}
