// Package demo is `hapair demo`: the seed's scenario played end to end in a lab of network
// namespaces on this machine (real HAProxy, real keepalived or FRR), and the hapair configurations
// of the lab's hosts, which the end-to-end tests of cmd/hapair use as well. It is no part of the
// appliance: `hapair run` never reaches it.
package demo

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/hapair/hapair/cmd/internal/lab"
)

var errNotRoot = errors.New("hapair demo builds network namespaces and needs root: run it as root (sudo make demo)")

// Run is `hapair demo`: the seed's lab and failover test, end to end, on this machine. It
// returns the exit code.
func Run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("hapair demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "shorter pauses (for tests)")
	keep := fs.Bool("keep-logs", false, "keep the lab's directory with every log")
	withBGP := fs.Bool("bgp", false, "the scale-out story instead: three nodes announce a service address over BGP to an FRR router")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, errNotRoot)
		return 1
	}
	tools := []string{"haproxy", "ip", "nft"}
	if *withBGP {
		tools = append(tools, "vtysh", lab.FRRDir+"/bgpd")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(stderr, "hapair demo needs %s: run `make demo`, which installs it\n", tool)
			return 1
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &demo{out: stdout, quick: *quick, keep: *keep}
	run := d.run
	if *withBGP {
		run = d.runBGP
	}
	err := run(ctx)
	if errors.Is(ctx.Err(), context.Canceled) {
		fmt.Fprintln(stdout, "Interrupted: the lab was torn down.")
		return 130
	}
	if err != nil {
		fmt.Fprintf(stderr, "hapair demo: %v\n", err)
		return 1
	}
	return 0
}

type demo struct {
	out      io.Writer
	quick    bool
	keep     bool
	start    time.Time
	timeline []timelineEntry
}

type timelineEntry struct {
	at       time.Time
	who, say string
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, format+"\n", args...)
}

// at records one timeline line; flush prints them in time order, relative to the failure.
func (d *demo) at(t time.Time, who, what string) {
	d.timeline = append(d.timeline, timelineEntry{t, who, what})
}

func (d *demo) flush() {
	sort.SliceStable(d.timeline, func(i, j int) bool { return d.timeline[i].at.Before(d.timeline[j].at) })
	for _, e := range d.timeline {
		fmt.Fprintf(d.out, "  %+8.3fs  %-4s %s\n", e.at.Sub(d.start).Seconds(), e.who, e.say)
	}
	d.timeline = nil
}

// The scenario's fixed parts: the VIP, and the journal lines it waits for.
var (
	demoVIP        = netip.MustParseAddr("10.0.0.10")
	masterLine     = regexp.MustCompile(`\(VI_LOGS\) Entering MASTER STATE`)
	tookOverLine   = regexp.MustCompile(`took over in=(\S+)`)
	demoLBs        = []demoLB{{"lb1", 11, 110}, {"lb2", 12, 100}}
	demoClientHost = 50
)

// demoLB is one load balancer of the pair: its name, its host number in the lab, its priority.
type demoLB struct {
	name string
	n    int
	prio int
}

// demoRun is one run of the scenario: the lab's hosts, the hapair on each load balancer, and
// the client that keeps asking through the VIP.
type demoRun struct {
	*demo
	hosts  map[string]*lab.Host
	procs  map[string]*lab.Proc
	client *lab.Client
}

// run builds the lab and plays the seed's scenario, phase by phase: election, HAProxy killed on
// the MASTER, recovery and preemption, observability. The lab is torn down whatever happens.
func (d *demo) run(ctx context.Context) error {
	return d.inLab(ctx, "hosts joined by veth pairs, addresses 10.0.0.0/24 only inside.", d.playVRRP)
}

// playVRRP is the VRRP scenario in the lab l, with self the hapair binary the nodes run.
func (d *demo) playVRRP(ctx context.Context, self string, l *lab.Lab) error {
	r := &demoRun{demo: d, hosts: map[string]*lab.Host{}, procs: map[string]*lab.Proc{}}
	if err := r.addHosts(l); err != nil {
		return err
	}
	for _, lb := range demoLBs {
		if err := r.startHapair(ctx, self, lb); err != nil {
			return err
		}
	}
	defer r.stopAll()
	waitCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := r.election(ctx, waitCtx); err != nil {
		return err
	}
	defer r.client.Stop()
	d.pause(ctx, 2*time.Second)
	if err := r.failover(ctx, waitCtx); err != nil {
		return err
	}
	if err := r.recovery(ctx); err != nil {
		return err
	}
	r.observe()
	return nil
}

// inLab builds a lab, says what it holds (layout), plays a scenario in it with self the hapair
// binary, and tears the lab down whatever happens.
func (d *demo) inLab(ctx context.Context, layout string, play func(ctx context.Context, self string, l *lab.Lab) error) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	l, err := lab.New(ctx, lab.Options{KeepDir: d.keep})
	if err != nil {
		return err
	}
	defer d.teardown(l)
	d.say("Lab: switch namespace %s with a bridge; %s", l.Switch(), layout)
	return play(ctx, self, l)
}

func (d *demo) teardown(l *lab.Lab) {
	names := l.Namespaces()
	if err := l.Close(); err != nil {
		d.say("Tearing down the lab: %v", err)
	} else {
		d.say("Lab torn down: namespaces %s removed.", strings.Join(names, " "))
	}
	if d.keep {
		d.say("Logs kept in %s", l.Dir())
	}
}

func (r *demoRun) addHosts(l *lab.Lab) error {
	add := func(name string, n int) error {
		host, err := l.AddHost(name, l.Addr(n))
		r.hosts[name] = host
		return err
	}
	for _, lb := range demoLBs {
		if err := add(lb.name, lb.n); err != nil {
			return err
		}
	}
	return add("cli", demoClientHost)
}

// startHapair writes lb's HAProxy and hapair configurations into its host's directory and starts
// hapair, which starts its own HAProxy.
func (r *demoRun) startHapair(ctx context.Context, self string, lb demoLB) error {
	h := r.hosts[lb.name]
	p, err := startDemoNode(ctx, self, h, func(haproxyCfg string) string {
		return Node{
			RouterID: "log" + lb.name, Priority: lb.prio, AuthPass: "1a2b3c4d", VIPs: []string{demoVIP.String() + "/24"},
			HAProxyConfig: haproxyCfg, RuntimeDir: filepath.Join(h.Dir(), "run"), StatsURL: "http://127.0.0.1:8404/stats;csv",
		}.YAML()
	})
	if err != nil {
		return err
	}
	r.procs[lb.name] = p
	r.say("Started hapair on %s (%s, priority %d) with its own HAProxy", lb.name, h.IP(), lb.prio)
	return nil
}

// startDemoNode writes a HAProxy configuration for host h into its directory, then the hapair
// configuration that hapairYAML makes around it, and starts hapair there (which starts HAProxy).
func startDemoNode(ctx context.Context, self string, h *lab.Host, hapairYAML func(haproxyCfg string) string) (*lab.Proc, error) {
	dir := filepath.Join(h.Dir(), "haproxy")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(lab.HAProxyConfig{Name: h.Name}.Render()), 0o644); err != nil {
		return nil, err
	}
	path := filepath.Join(h.Dir(), "hapair.yaml")
	if err := os.WriteFile(path, []byte(hapairYAML(cfg)), 0o600); err != nil {
		return nil, err
	}
	return h.StartWith(ctx, lab.ProcOptions{LogPath: filepath.Join(h.Dir(), "hapair.log")}, self, "run", "--config", path)
}

func (r *demoRun) stopAll() {
	for _, p := range r.procs {
		_ = p.Stop(10 * time.Second)
	}
}

// election waits for lb1 to become MASTER and hold the VIP, shows both journals, and starts the
// client.
func (r *demoRun) election(ctx, waitCtx context.Context) error {
	r.say("\nElection (journal lines, as keepalived writes them):")
	if _, err := r.procs["lb1"].WaitForLine(waitCtx, masterLine); err != nil {
		return fmt.Errorf("lb1 never became MASTER: %w\n%s", err, r.procs["lb1"].Output())
	}
	for _, lb := range demoLBs {
		for _, line := range r.procs[lb.name].Lines() {
			if strings.Contains(line.Text, "STATE") {
				r.say("  %s: %s", lb.name, line.Text[strings.Index(line.Text, "("):])
			}
		}
	}
	if err := r.waitVIP(ctx, "lb1"); err != nil {
		return fmt.Errorf("VIP not on lb1: %w", err)
	}
	r.say("  ip addr on lb1: %s/24 present; on lb2: %s", demoVIP, presence(r.hosts["lb2"], demoVIP))

	client, err := r.hosts["cli"].StartClientWith(ctx, lab.ClientOptions{URL: "http://" + demoVIP.String() + "/", Every: 20 * time.Millisecond, Timeout: 500 * time.Millisecond})
	if err != nil {
		return err
	}
	r.client = client
	if err := client.WaitServedBy(waitCtx, time.Now(), "lb1"); err != nil {
		return err
	}
	r.say("  client on %s: GET http://%s/ every 20ms, answered by lb1", r.hosts["cli"].IP(), demoVIP)
	return nil
}

func (r *demoRun) waitVIP(ctx context.Context, host string) error {
	return lab.WaitFor(ctx, 5*time.Second, func() (bool, error) { return r.hosts[host].HasAddr(demoVIP) })
}

// failover kills HAProxy on the MASTER lb1 and prints the timeline of lb2 taking over, as lb2 and
// the client saw it.
func (r *demoRun) failover(ctx, waitCtx context.Context) error {
	pid, err := ChildHAProxy(r.procs["lb1"].PID())
	if err != nil {
		return err
	}
	r.say("\nFailover test: kill -9 HAProxy (pid %d) on the MASTER lb1", pid)
	from2 := r.procs["lb2"].LineCount()
	r.start = time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return err
	}
	r.at(r.start, "lb1", "HAProxy killed")
	line, err := r.procs["lb2"].WaitForLineAfter(waitCtx, from2, masterLine)
	if err != nil {
		return fmt.Errorf("lb2 did not take over: %w", err)
	}
	r.at(line.At, "lb2", "(VI_LOGS) Entering MASTER STATE")
	if err := r.waitVIP(ctx, "lb2"); err != nil {
		return err
	}
	r.at(time.Now(), "lb2", demoVIP.String()+"/24 attached, gratuitous ARPs sent")
	if tl, err := r.procs["lb2"].WaitForLineAfter(waitCtx, from2, tookOverLine); err == nil {
		r.at(tl.At, "lb2", "takeover measured by lb2: "+tookOverLine.FindStringSubmatch(tl.Text)[1]+
			" (last valid advert of lb1 to VIP attached and first GARP)")
	}
	if err := r.client.WaitServedBy(waitCtx, r.start, "lb2"); err != nil {
		return err
	}
	r.clientTimeline()
	r.flush()
	return nil
}

// clientTimeline adds what the client saw since the failure to the timeline.
func (r *demoRun) clientTimeline() {
	st := r.client.Stats()
	for _, w := range st.Windows {
		if w.Start.After(r.start.Add(-time.Second)) {
			r.at(w.Start, "cli", fmt.Sprintf("first failed request (%s)", shorten(w.Err)))
			if !w.End.IsZero() {
				r.at(w.End, "cli", fmt.Sprintf("answered again: %d requests failed, window %s", w.Failed, w.Duration().Round(time.Millisecond)))
			}
		}
	}
	for _, c := range st.Changes {
		if c.At.After(r.start) {
			r.at(c.At, "cli", fmt.Sprintf("now answered by %s (was %s)", c.To, c.From))
		}
	}
	if len(st.Windows) == 0 {
		r.say("  the client saw no failed request")
	}
}

// recovery waits for hapair to restart HAProxy on lb1 and for lb1 to preempt.
func (r *demoRun) recovery(ctx context.Context) error {
	r.say("\nRecovery: hapair restarts HAProxy on lb1, its checks rise, lb1 preempts")
	from1 := r.procs["lb1"].LineCount()
	backCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	line, err := r.procs["lb1"].WaitForLineAfter(backCtx, from1, masterLine)
	if err != nil {
		return fmt.Errorf("lb1 did not take the VIP back: %w", err)
	}
	r.at(line.At, "lb1", "(VI_LOGS) Entering MASTER STATE")
	if err := r.client.WaitServedBy(backCtx, line.At, "lb1"); err != nil {
		return err
	}
	r.at(time.Now(), "cli", "answered by lb1 again")
	r.flush()
	return nil
}

// observe shows each host's endpoints and the client's figures over the whole run.
func (r *demoRun) observe() {
	r.say("\nObservability, inside each host's namespace:")
	for _, lb := range demoLBs {
		r.say("  %s: %s", lb.name, describeEndpoints(r.hosts[lb.name]))
	}
	final := r.client.Stop()
	r.say("\nClient over the whole run: %d ok, %d failed, longest failure window %s.",
		final.OK, final.Failed, final.Longest().Round(time.Millisecond))
}

func (d *demo) pause(ctx context.Context, dur time.Duration) {
	if d.quick {
		dur /= 4
	}
	select {
	case <-ctx.Done():
	case <-time.After(dur):
	}
}

func presence(h *lab.Host, a netip.Addr) string {
	ok, err := h.HasAddr(a)
	switch {
	case err != nil:
		return err.Error()
	case ok:
		return "present (split brain!)"
	}
	return "absent (correct)"
}

// describeEndpoints says how /metrics, /status and /healthz answered on a host.
func describeEndpoints(h *lab.Host) string {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: h.DialContext}}
	var parts []string
	for _, path := range []string{"/metrics", "/status", "/healthz"} {
		resp, err := client.Get("http://127.0.0.1:9479" + path)
		if err != nil {
			parts = append(parts, path+" "+err.Error())
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		desc := fmt.Sprintf("%s %d (%d bytes)", path, resp.StatusCode, len(body))
		if path == "/metrics" {
			if m := regexp.MustCompile(`(?m)^hapair_vrrp_state\{.*\} (\d)`).FindSubmatch(body); m != nil {
				desc += " hapair_vrrp_state=" + string(m[1])
			}
		}
		parts = append(parts, desc)
	}
	return "http://127.0.0.1:9479: " + strings.Join(parts, ", ")
}

// ChildHAProxy finds the HAProxy master that hapair (pid) started as its child.
func ChildHAProxy(pid int) (int, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, task := range tasks {
			data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
			for _, f := range strings.Fields(string(data)) {
				comm, _ := os.ReadFile("/proc/" + f + "/comm")
				if strings.TrimSpace(string(comm)) == "haproxy" {
					var child int
					fmt.Sscan(f, &child)
					return child, nil
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
		tasks, _ = os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	}
	return 0, fmt.Errorf("no HAProxy child of hapair (pid %d)", pid)
}

func shorten(s string) string {
	if len(s) > 60 {
		return s[:60] + "..."
	}
	return s
}
