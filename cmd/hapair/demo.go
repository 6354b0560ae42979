package main

import (
	"context"
	"errors"
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

// cmdDemo is `hapair demo`: the seed's lab and failover test, end to end, on this machine.
func cmdDemo(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("demo", stderr)
	quick := fs.Bool("quick", false, "shorter pauses (for tests)")
	keep := fs.Bool("keep-logs", false, "keep the lab's directory with every log")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, errNotRoot)
		return 1
	}
	for _, tool := range []string{"haproxy", "ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(stderr, "hapair demo needs %s: run `make demo`, which installs it\n", tool)
			return 1
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d := &demo{out: stdout, quick: *quick, keep: *keep}
	err := d.run(ctx)
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

func (d *demo) run(ctx context.Context) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	l, err := lab.New(ctx, lab.Options{KeepDir: d.keep})
	if err != nil {
		return err
	}
	defer func() {
		names := l.Namespaces()
		if err := l.Close(); err != nil {
			d.say("Tearing down the lab: %v", err)
		} else {
			d.say("Lab torn down: namespaces %s removed.", strings.Join(names, " "))
		}
		if d.keep {
			d.say("Logs kept in %s", l.Dir())
		}
	}()
	d.say("Lab: switch namespace %s with a bridge; hosts joined by veth pairs, addresses 10.0.0.0/24 only inside.", l.Switch())

	hosts := map[string]*lab.Host{}
	for _, h := range []struct {
		name string
		n    int
	}{{"lb1", 11}, {"lb2", 12}, {"cli", 50}} {
		host, err := l.AddHost(h.name, l.Addr(h.n))
		if err != nil {
			return err
		}
		hosts[h.name] = host
	}
	procs := map[string]*lab.Proc{}
	for _, lb := range []struct {
		name string
		prio int
	}{{"lb1", 110}, {"lb2", 100}} {
		h := hosts[lb.name]
		dir := filepath.Join(h.Dir(), "haproxy")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		cfg := filepath.Join(dir, "haproxy.cfg")
		if err := os.WriteFile(cfg, []byte(lab.HAProxyConfig{Name: lb.name}.Render()), 0o644); err != nil {
			return err
		}
		node := labNode{
			RouterID: "log" + lb.name, Priority: lb.prio, AuthPass: "1a2b3c4d", VIPs: []string{"10.0.0.10/24"},
			HAProxyConfig: cfg, RuntimeDir: filepath.Join(h.Dir(), "run"), StatsURL: "http://127.0.0.1:8404/stats;csv",
		}
		path := filepath.Join(h.Dir(), "hapair.yaml")
		if err := os.WriteFile(path, []byte(node.YAML()), 0o600); err != nil {
			return err
		}
		p, err := h.StartWith(ctx, lab.ProcOptions{LogPath: filepath.Join(h.Dir(), "hapair.log")}, self, "run", "--config", path)
		if err != nil {
			return err
		}
		procs[lb.name] = p
		d.say("Started hapair on %s (%s, priority %d) with its own HAProxy", lb.name, h.IP(), lb.prio)
	}

	d.say("\nElection (journal lines, as keepalived writes them):")
	master := regexp.MustCompile(`\(VI_LOGS\) Entering MASTER STATE`)
	waitCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if _, err := procs["lb1"].WaitForLine(waitCtx, master); err != nil {
		return fmt.Errorf("lb1 never became MASTER: %w\n%s", err, procs["lb1"].Output())
	}
	for _, name := range []string{"lb1", "lb2"} {
		for _, line := range procs[name].Lines() {
			if strings.Contains(line.Text, "STATE") {
				d.say("  %s: %s", name, line.Text[strings.Index(line.Text, "("):])
			}
		}
	}
	vipAddr := netip.MustParseAddr("10.0.0.10")
	if err := lab.WaitFor(ctx, 5*time.Second, func() (bool, error) { return hosts["lb1"].HasAddr(vipAddr) }); err != nil {
		return fmt.Errorf("VIP not on lb1: %w", err)
	}
	d.say("  ip addr on lb1: 10.0.0.10/24 present; on lb2: %s", presence(hosts["lb2"], vipAddr))

	client, err := hosts["cli"].StartClientWith(ctx, lab.ClientOptions{URL: "http://10.0.0.10/", Every: 20 * time.Millisecond, Timeout: 500 * time.Millisecond})
	if err != nil {
		return err
	}
	defer client.Stop()
	if err := client.WaitServedBy(waitCtx, time.Now(), "lb1"); err != nil {
		return err
	}
	d.say("  client on %s: GET http://10.0.0.10/ every 20ms, answered by lb1", hosts["cli"].IP())
	d.pause(ctx, 2*time.Second)

	pid, err := childHAProxy(procs["lb1"].PID())
	if err != nil {
		return err
	}
	d.say("\nFailover test: kill -9 HAProxy (pid %d) on the MASTER lb1", pid)
	from2 := procs["lb2"].LineCount()
	d.start = time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return err
	}
	d.at(d.start, "lb1", "HAProxy killed")
	line, err := procs["lb2"].WaitForLineAfter(waitCtx, from2, master)
	if err != nil {
		return fmt.Errorf("lb2 did not take over: %w", err)
	}
	d.at(line.At, "lb2", "(VI_LOGS) Entering MASTER STATE")
	if err := lab.WaitFor(ctx, 5*time.Second, func() (bool, error) { return hosts["lb2"].HasAddr(vipAddr) }); err != nil {
		return err
	}
	d.at(time.Now(), "lb2", "10.0.0.10/24 attached, gratuitous ARPs sent")
	if tl, err := procs["lb2"].WaitForLineAfter(waitCtx, from2, regexp.MustCompile(`took over in (\S+)`)); err == nil {
		d.at(tl.At, "lb2", "takeover measured by lb2: "+regexp.MustCompile(`took over in (\S+)`).FindStringSubmatch(tl.Text)[1]+
			" (last valid advert of lb1 to VIP attached and first GARP)")
	}
	if err := client.WaitServedBy(waitCtx, d.start, "lb2"); err != nil {
		return err
	}
	st := client.Stats()
	for _, w := range st.Windows {
		if w.Start.After(d.start.Add(-time.Second)) {
			d.at(w.Start, "cli", fmt.Sprintf("first failed request (%s)", shorten(w.Err)))
			if !w.End.IsZero() {
				d.at(w.End, "cli", fmt.Sprintf("answered again: %d requests failed, window %s", w.Failed, w.Duration().Round(time.Millisecond)))
			}
		}
	}
	for _, c := range st.Changes {
		if c.At.After(d.start) {
			d.at(c.At, "cli", fmt.Sprintf("now answered by %s (was %s)", c.To, c.From))
		}
	}
	if len(st.Windows) == 0 {
		d.say("  the client saw no failed request")
	}
	d.flush()
	d.say("\nRecovery: hapair restarts HAProxy on lb1, its checks rise, lb1 preempts")
	from1 := procs["lb1"].LineCount()
	backCtx, cancelBack := context.WithTimeout(ctx, 30*time.Second)
	defer cancelBack()
	line, err = procs["lb1"].WaitForLineAfter(backCtx, from1, master)
	if err != nil {
		return fmt.Errorf("lb1 did not take the VIP back: %w", err)
	}
	d.at(line.At, "lb1", "(VI_LOGS) Entering MASTER STATE")
	if err := client.WaitServedBy(backCtx, line.At, "lb1"); err != nil {
		return err
	}
	d.at(time.Now(), "cli", "answered by lb1 again")
	d.flush()

	d.say("\nObservability, inside each host's namespace:")
	for _, name := range []string{"lb1", "lb2"} {
		d.say("  %s: %s", name, describeEndpoints(hosts[name]))
	}
	final := client.Stop()
	d.say("\nClient over the whole run: %d ok, %d failed, longest failure window %s.",
		final.OK, final.Failed, final.Longest().Round(time.Millisecond))
	for _, p := range procs {
		_ = p.Stop(10 * time.Second)
	}
	return nil
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

// childHAProxy finds the HAProxy master that hapair (pid) started as its child.
func childHAProxy(pid int) (int, error) {
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
