package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/hapair/hapair/cmd/internal/lab"
	"github.com/hapair/hapair/cmd/internal/lab/labtest"
)

// BenchmarkScale runs hapair and keepalived side by side on the same two lab hosts at the same
// time, N VRRPv3 instances each (lb1 MASTER at priority 110, lb2 BACKUP at 100, one VIP per
// instance, no checks), for every N of HAPAIR_SCALE_N and advert interval of
// HAPAIR_SCALE_INTERVALS, and measures over one window of HAPAIR_SCALE_WINDOW per cell:
//
//   - CPU seconds per minute (utime + stime from /proc) of hapair and of all of keepalived's
//     processes (parent and VRRP child), on the MASTER host and on the BACKUP host;
//   - resident memory (VmRSS, summed over the processes) at the start and at the end of the
//     window;
//   - spurious transitions: "Entering ... STATE" lines logged during the window.
//
// Each implementation has a veth link of its own between the two hosts (hp0 and ka0), so that
// both can use VRIDs 1 to N: 255 instances of each do not fit in one link's 255 VRIDs. Both
// links are alike, and both implementations run in the same window, so they see the same load
// from whatever else the machine runs; the machine's busy share is printed with each cell.
//
// HAPAIR_BENCH_RT=n runs both with real-time priority n (SCHED_RR): vrrp_rt_priority n in
// both configurations (`make bench-soak` sets 10, as deploy/examples do).
//
// HAPAIR_SCALE_BURN=1 keeps every core busy with CPU burners (in a third namespace) during the
// window: with N=100, interval 20ms and a 10m window it is the soak of `make bench-soak`.
//
//	make bench-scale
//	HAPAIR_SCALE_N=100 HAPAIR_SCALE_INTERVALS=20ms HAPAIR_SCALE_WINDOW=10m HAPAIR_SCALE_BURN=1 \
//	    go test -count=1 -timeout 30m -run '^$' -bench BenchmarkScale -benchtime 1x ./cmd/hapair
func BenchmarkScale(b *testing.B) {
	labtest.RequireRoot(b)
	labtest.RequireCommands(b, "keepalived")
	sizes, err := benchEnvInts("HAPAIR_SCALE_N", []int{1, 10, 50, 100, 255})
	if err != nil {
		b.Fatal(err)
	}
	intervals, err := benchEnvDurations("HAPAIR_SCALE_INTERVALS", []time.Duration{time.Second, 100 * time.Millisecond, 20 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	window, err := benchEnvDuration("HAPAIR_SCALE_WINDOW", 20*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	// One instance at 1 s sends 20 adverts in 20 s, and a single event (a collection, a VIP
	// check, a stray wake-up) moves such a window by a tenth: unless HAPAIR_SCALE_WINDOW says
	// otherwise, the one-instance cells take 60 s.
	oneWindow := window
	if os.Getenv("HAPAIR_SCALE_WINDOW") == "" {
		oneWindow = scaleOneWindow
	}
	burn := os.Getenv("HAPAIR_SCALE_BURN") == "1"

	p := benchNewPair(b)
	scaleLinks(b, p)
	var cells []scaleCell
	for _, iv := range intervals {
		for _, n := range sizes {
			w := window
			if n == 1 {
				w = oneWindow
			}
			c := runScaleCell(b, p, n, iv, w, burn)
			b.Logf("%s", c.row())
			cells = append(cells, c)
		}
	}
	fmt.Fprint(os.Stdout, scaleTable(cells, window, oneWindow, burn))
	for _, c := range cells {
		if c.unsettled != "" {
			b.Errorf("N=%d, %s: %s", c.n, c.interval, c.unsettled)
		}
		if c.spurious[0] > 0 {
			b.Errorf("N=%d, %s: hapair had %d spurious transitions", c.n, c.interval, c.spurious[0])
		}
	}
}

// scaleLink is a veth link between lb1 and lb2 for one implementation.
type scaleLink struct {
	name   string // the interface name on both hosts
	subnet string // first three octets; lb1 is .1, lb2 .2
	vips   string // first octet pair of the VIPs
}

var (
	scaleHapairLink     = scaleLink{"hp0", "10.71.0", "10.81"}
	scaleKeepalivedLink = scaleLink{"ka0", "10.72.0", "10.82"}
)

// scaleLinks adds hp0 and ka0 between lb1 and lb2. They go with the namespaces.
func scaleLinks(t testing.TB, p *pair) {
	t.Helper()
	ctx := context.Background()
	for _, l := range []scaleLink{scaleHapairLink, scaleKeepalivedLink} {
		if out, err := p.lb1.Run(ctx, "ip", "link", "add", l.name, "type", "veth", "peer", "name", l.name, "netns", p.lb2.NS); err != nil {
			t.Fatalf("add %s: %v\n%s", l.name, err, out)
		}
		for i, h := range []*lab.Host{p.lb1, p.lb2} {
			for _, args := range [][]string{
				{"addr", "add", fmt.Sprintf("%s.%d/24", l.subnet, i+1), "dev", l.name},
				{"link", "set", l.name, "up"},
			} {
				if out, err := h.Run(ctx, "ip", args...); err != nil {
					t.Fatalf("%s: ip %v: %v\n%s", h.Name, args, err, out)
				}
			}
		}
	}
}

// scaleVIP is the VIP of instance i (1-based) on a link.
func scaleVIP(l scaleLink, i int) string { return fmt.Sprintf("%s.%d.%d/32", l.vips, i/256, i%256) }

// scaleHapairYAML is the hapair configuration of one host: n instances VI_1..VI_n.
func scaleHapairYAML(h *lab.Host, runDir string, n int, iv time.Duration, prio int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "router_id: %s\nruntime_dir: %s\n", h.Name, runDir)
	if rt := benchRTPriority(); rt > 0 {
		fmt.Fprintf(&b, "vrrp_rt_priority: %d\n", rt)
	}
	b.WriteString("vrrp_instances:\n")
	state := "BACKUP"
	if prio >= 110 {
		state = "MASTER"
	}
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "  - name: VI_%d\n    interface: %s\n    state: %s\n    virtual_router_id: %d\n    priority: %d\n",
			i, scaleHapairLink.name, state, i, prio)
		fmt.Fprintf(&b, "    version: 3\n    advert_int: %s\n    virtual_ipaddress: [%s]\n", iv, scaleVIP(scaleHapairLink, i))
	}
	b.WriteString("status:\n  listen: 127.0.0.1:9479\n")
	return b.String()
}

// scaleKeepalivedConf is keepalived's configuration of one host, the same n instances.
func scaleKeepalivedConf(h *lab.Host, n int, iv time.Duration, prio int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global_defs {\n    router_id %s\n", h.Name)
	if rt := benchRTPriority(); rt > 0 {
		// keepalived's default CPU-time limit for a real-time process, 10 ms without blocking,
		// killed its VRRP process at every start with 100 instances ("pid 32507 exited due to
		// signal 9 (Killed) - has rlimit_rttime been exceeded?"): a second lets it run, so the
		// comparison is of scheduling, not of that limit.
		fmt.Fprintf(&b, "    vrrp_rt_priority %d\n    vrrp_rlimit_rttime 1000000\n", rt)
	}
	b.WriteString("}\n")
	state := "BACKUP"
	if prio >= 110 {
		state = "MASTER"
	}
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "vrrp_instance VI_%d {\n    state %s\n    interface %s\n    virtual_router_id %d\n    priority %d\n",
			i, state, scaleKeepalivedLink.name, i, prio)
		fmt.Fprintf(&b, "    advert_int %s\n    version 3\n    virtual_ipaddress {\n        %s\n    }\n}\n",
			strconv.FormatFloat(iv.Seconds(), 'f', -1, 64), scaleVIP(scaleKeepalivedLink, i))
	}
	return b.String()
}

// scaleRunDir is hapair's runtime_dir for the benchmark: on tmpfs, as the unit's /run/hapair
// is, where the state record written at every advert costs no disk (package vrrp/record); in
// the host's directory if the machine has no /dev/shm.
func scaleRunDir(t testing.TB, h *lab.Host) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "hapair-scale-"+h.Name+"-")
	if err != nil {
		return filepath.Join(h.Dir(), "run")
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// scaleProc is one daemon of the benchmark.
type scaleProc struct {
	impl string
	host *lab.Host
	proc *lab.Proc
}

func startScaleHapair(t testing.TB, h *lab.Host, n int, iv time.Duration, prio int) scaleProc {
	t.Helper()
	dir := filepath.Join(h.Dir(), "hapair")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "hapair.yaml")
	if err := os.WriteFile(cfg, []byte(scaleHapairYAML(h, scaleRunDir(t, h), n, iv, prio)), 0o600); err != nil {
		t.Fatal(err)
	}
	env := scaleHapairEnv(t)
	p, err := h.StartWith(context.Background(), lab.ProcOptions{LogPath: filepath.Join(dir, "hapair.log"), Env: env}, hostBinary(t, h, hapairBin), "run", "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	return scaleProc{"hapair", h, p}
}

func startScaleKeepalived(t testing.TB, h *lab.Host, n int, iv time.Duration, prio int) scaleProc {
	t.Helper()
	dir := filepath.Join(h.Dir(), "keepalived-scale")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(conf, []byte(scaleKeepalivedConf(h, n, iv, prio)), 0o600); err != nil {
		t.Fatal(err)
	}
	// As lab.StartKeepalived starts it: VRRP only, console log, pid files of its own.
	p, err := h.StartWith(context.Background(), lab.ProcOptions{LogPath: filepath.Join(dir, "keepalived.log"), Dir: dir},
		"keepalived", "--dont-fork", "--log-console", "--log-detail", "--no-syslog", "--vrrp",
		"--use-file", conf,
		"--pid", filepath.Join(dir, "keepalived.pid"),
		"--vrrp_pid", filepath.Join(dir, "vrrp.pid"),
		"--checkers_pid", filepath.Join(dir, "checkers.pid"))
	if err != nil {
		t.Fatal(err)
	}
	return scaleProc{"keepalived", h, p}
}

// pids is the process and its children (keepalived's VRRP child).
func (s scaleProc) pids() []int { return append([]int{s.proc.PID()}, benchChildren(s.proc.PID())...) }

// cpuSplit is the time s's threads have run, in nanoseconds from /proc/<pid>/task/*/schedstat
// (at one instance and 1 s adverts both daemons use a few milliseconds a minute, below the 10
// ms ticks of /proc/<pid>/stat), split into the main process's threads that are the Go
// runtime's and everything else: for hapair, package steady's sender and watcher threads (which
// block every signal) and the sender processes, so that a cell above keepalived's says which of
// the two it is; for keepalived, its VRRP child. A thread that ended during the window is not
// counted (Go keeps its threads; keepalived's processes have one each).
func (s scaleProc) cpuSplit(t testing.TB) (split [2]time.Duration) {
	t.Helper()
	main := s.proc.PID()
	for _, pid := range s.pids() {
		dirs, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
		if err != nil || pid == main && len(dirs) == 0 {
			t.Fatalf("no tasks for pid %d: %v", pid, err)
		}
		for _, dir := range dirs {
			ns, err := taskRunTime(filepath.Join(dir, "schedstat"))
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
				continue // the thread just ended
			}
			if err != nil {
				t.Fatal(err)
			}
			if pid != main || blocksEverySignal(filepath.Join(dir, "status")) {
				split[1] += ns
			} else {
				split[0] += ns
			}
		}
	}
	return split
}

// taskRunTime is a task's run time from its schedstat file.
func taskRunTime(file string) (time.Duration, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	fields := strings.Fields(string(data))
	if len(fields) < 1 {
		return 0, fmt.Errorf("%s: %q", file, data)
	}
	ns, err := strconv.ParseInt(fields[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %q", file, data)
	}
	return time.Duration(ns), nil
}

// drops is how many packets the raw sockets of s's processes dropped because their receive
// queue was full: the drops column of /proc/<pid>/net/raw and raw6, for the sockets whose
// inodes the processes hold. Every Master of a host advertises in the same moment (vrrp's
// advert phase), so a Backup's reader takes a burst of N adverts at once.
func (s scaleProc) drops(t testing.TB) int64 {
	t.Helper()
	var sum int64
	for _, pid := range s.pids() {
		inodes := map[string]bool{}
		links, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
		for _, l := range links {
			if dst, err := os.Readlink(l); err == nil && strings.HasPrefix(dst, "socket:[") {
				inodes[strings.TrimSuffix(strings.TrimPrefix(dst, "socket:["), "]")] = true
			}
		}
		for _, table := range []string{"raw", "raw6"} {
			data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
			if err != nil {
				t.Fatalf("socket drops of pid %d: %v", pid, err)
			}
			for _, line := range strings.Split(string(data), "\n")[1:] {
				// sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
				f := strings.Fields(line)
				if len(f) < 13 || !inodes[f[9]] {
					continue
				}
				n, err := strconv.ParseInt(f[len(f)-1], 10, 64)
				if err != nil {
					t.Fatalf("/proc/%d/net/%s: %q", pid, table, line)
				}
				sum += n
			}
		}
	}
	return sum
}

// rssSplit is the anonymous and the file-backed part of s's resident set (RssAnon, RssFile):
// which of the two moves between runs of the same cell.
func (s scaleProc) rssSplit(t testing.TB) [2]int64 {
	t.Helper()
	var split [2]int64
	for _, pid := range s.pids() {
		for i, key := range []string{"RssAnon:", "RssFile:"} {
			n, err := benchProcField(fmt.Sprintf("/proc/%d/status", pid), key)
			if err != nil {
				t.Fatal(err)
			}
			split[i] += n
		}
	}
	return split
}

func (s scaleProc) rss(t testing.TB) int64 {
	rss, _ := benchMemory(t, s.pids())
	return rss
}

var scaleTransition = regexp.MustCompile(`\((VI_\d+)\) Entering (\S+) STATE`)

// states returns the last state each instance logged entering, from line from on.
func (s scaleProc) states(from int) map[string]string {
	out := map[string]string{}
	for _, l := range s.proc.Lines()[from:] {
		if m := scaleTransition.FindStringSubmatch(l.Text); m != nil {
			out[m[1]] = m[2]
		}
	}
	return out
}

// transitions counts the state lines from line from on.
func (s scaleProc) transitions(from int) int {
	n := 0
	for _, l := range s.proc.Lines()[from:] {
		if scaleTransition.MatchString(l.Text) {
			n++
		}
	}
	return n
}

// waitAll waits until each of the n instances last entered state.
func (s scaleProc) waitAll(t testing.TB, n int, state string, timeout time.Duration) error {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := s.states(0)
		in := 0
		for _, v := range st {
			if v == state {
				in++
			}
		}
		if in == n {
			return nil
		}
		if s.proc.Exited() {
			t.Fatalf("%s on %s exited: %v\n%s", s.impl, s.host.Name, s.proc.Wait(), tail(s.proc.Output(), 40))
		}
		if time.Now().After(deadline) {
			t.Logf("%s on %s: %d of %d instances %s after %s\n%s", s.impl, s.host.Name, in, n, state, timeout, tail(s.proc.Output(), 10))
			return fmt.Errorf("%s on %s: %d of %d instances %s after %s", s.impl, s.host.Name, in, n, state, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// scaleCell is one N and interval: [0] hapair, [1] keepalived; per host [impl][0 MASTER, 1 BACKUP].
type scaleCell struct {
	n         int
	interval  time.Duration
	window    time.Duration
	busy      float64
	cpu       [2][2]time.Duration
	rss0      [2][2]int64
	rss       [2][2]int64
	spurious  [2]int
	drops     [2][2]int64         // packets its raw sockets dropped in the window: receive queue full
	split     [2][2]int64         // hapair's RssAnon and RssFile at the end of the window, per host
	cpuSplit  [2][2]time.Duration // hapair's CPU in the window, Go runtime and outside it, per host
	unsettled string              // why the cell was not measured: a side never settled
	gaps      string              // the adverts' gaps as lb2 saw them (advertWatch), when watched
}

func runScaleCell(t testing.TB, p *pair, n int, iv, window time.Duration, burn bool) scaleCell {
	t.Helper()
	// Masters first, so that the backups come up hearing them: the figure is a steady state.
	hm := startScaleHapair(t, p.lb1, n, iv, 110)
	km := startScaleKeepalived(t, p.lb1, n, iv, 110)
	settle := 30*time.Second + time.Duration(n)*100*time.Millisecond
	var errs []string
	for _, s := range []scaleProc{hm, km} {
		if err := s.waitAll(t, n, "MASTER", settle); err != nil {
			errs = append(errs, err.Error())
		}
	}
	hb := startScaleHapair(t, p.lb2, n, iv, 100)
	kb := startScaleKeepalived(t, p.lb2, n, iv, 100)
	procs := [2][2]scaleProc{{hm, hb}, {km, kb}}
	defer func() {
		for _, host := range []int{1, 0} { // backups first: no takeover while stopping
			for impl := range procs {
				_ = procs[impl][host].proc.Stop(5 * time.Second)
			}
		}
	}()
	for _, s := range []scaleProc{hb, kb} {
		if err := s.waitAll(t, n, "BACKUP", settle); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		// Not measured, and not fatal: the table says so, and the other cells still count.
		return scaleCell{n: n, interval: iv, window: window, unsettled: strings.Join(errs, "; ")}
	}
	// Past the second GARP burst (5 s after MASTER, both implementations) and start-up.
	time.Sleep(6 * time.Second)

	var burners []*lab.Proc
	if burn {
		for i := range runtime.NumCPU() {
			bp, err := p.cli.StartWith(context.Background(), lab.ProcOptions{LogPath: filepath.Join(p.cli.Dir(), fmt.Sprintf("burner%d.log", i))},
				"sh", "-c", "while :; do :; done")
			if err != nil {
				t.Fatal(err)
			}
			burners = append(burners, bp)
		}
		defer func() {
			for _, bp := range burners {
				_ = bp.Kill()
			}
		}()
	}

	// With every core busy the cell is about timeliness too: lb2 watches the MASTERs' adverts,
	// so that a spurious transition shows whether they came late or were missed.
	var watch *advertWatch
	if burn || os.Getenv("HAPAIR_SCALE_GAPS") == "1" {
		watch = startAdvertWatch(t, p.lb2, iv, scaleHapairLink, scaleKeepalivedLink)
		defer watch.Stop()
	}

	c := scaleCell{n: n, interval: iv, window: window}
	var from [2][2]int
	var cpu0 [2][2]time.Duration
	var split0 [2][2]time.Duration
	var drops0 [2][2]int64
	for impl := range procs {
		for host := range procs[impl] {
			from[impl][host] = procs[impl][host].proc.LineCount()
			split := procs[impl][host].cpuSplit(t)
			cpu0[impl][host] = split[0] + split[1]
			if impl == 0 {
				split0[host] = split
			}
			drops0[impl][host] = procs[impl][host].drops(t)
			c.rss0[impl][host] = procs[impl][host].rss(t)
		}
	}
	m0, err := benchCPUTimes()
	if err != nil {
		t.Fatal(err)
	}
	var watchDrops0 []uint32
	if watch != nil {
		watch.Reset()
		watchDrops0 = watch.Drops()
	}
	start := time.Now()
	for time.Since(start) < window {
		time.Sleep(min(time.Second, window-time.Since(start)))
		for impl := range procs {
			for host := range procs[impl] {
				if s := procs[impl][host]; s.proc.Exited() {
					t.Fatalf("%s on %s exited during the window: %v\n%s", s.impl, s.host.Name, s.proc.Wait(), tail(s.proc.Output(), 40))
				}
			}
		}
	}
	elapsed := time.Since(start)
	for impl := range procs {
		for host := range procs[impl] {
			s := procs[impl][host]
			split := s.cpuSplit(t) // one reading for the total and, for hapair, its two parts
			c.cpu[impl][host] = time.Duration(float64(split[0]+split[1]-cpu0[impl][host]) * float64(window) / float64(elapsed))
			c.rss[impl][host] = s.rss(t)
			if n := s.transitions(from[impl][host]); n > 0 {
				c.spurious[impl] += n
				// Which instances, and the lines around the first: a figure alone says nothing
				// about why.
				lines := s.proc.Lines()[from[impl][host]:]
				for i, l := range lines {
					if scaleTransition.MatchString(l.Text) {
						// On stdout: a benchmark's log is cut to its first lines.
						fmt.Fprintf(os.Stdout, "%s on %s, spurious transitions from:\n%s\n", s.impl, s.host.Name, joinLines(lines[max(i-10, 0):min(i+20, len(lines))]))
						if watch != nil {
							fmt.Fprintf(os.Stdout, "%s\n", watch.Around(impl, l.At.Add(-time.Second), l.At.Add(200*time.Millisecond)))
						}
						break
					}
				}
			}
			c.drops[impl][host] = s.drops(t) - drops0[impl][host]
			if impl == 0 {
				c.split[host] = s.rssSplit(t)
				for i := range split {
					c.cpuSplit[host][i] = time.Duration(float64(split[i]-split0[host][i]) * float64(window) / float64(elapsed))
				}
			}
		}
	}
	m1, err := benchCPUTimes()
	if err != nil {
		t.Fatal(err)
	}
	c.busy = m1.busyShare(m0)
	if watch != nil {
		c.gaps = watch.Summary(watchDrops0)
	}
	return c
}

// perMinute scales CPU time used in the window to seconds per minute.
func (c scaleCell) perMinute(d time.Duration) float64 {
	return d.Seconds() * float64(time.Minute) / float64(c.window)
}

// meets reports whether hapair used no more CPU and no more memory than keepalived on both hosts.
func (c scaleCell) meets() bool {
	for host := range 2 {
		if c.cpu[0][host] > c.cpu[1][host] || c.rss[0][host] > c.rss[1][host] {
			return false
		}
	}
	return true
}

func (c scaleCell) row() string {
	if c.unsettled != "" {
		return fmt.Sprintf("%s\t%d\tnot measured: %s", c.interval, c.n, c.unsettled)
	}
	verdict := "MET"
	if !c.meets() {
		verdict = "NOT MET"
	}
	return fmt.Sprintf("%s\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%d\t%.0f %%\t%s",
		c.interval, c.n,
		c.perMinute(c.cpu[0][0]), c.perMinute(c.cpu[1][0]), c.perMinute(c.cpu[0][1]), c.perMinute(c.cpu[1][1]),
		benchMiB(c.rss[0][0]), benchMiB(c.rss[1][0]), benchMiB(c.rss[0][1]), benchMiB(c.rss[1][1]),
		c.spurious[0], c.spurious[1], 100*c.busy, verdict)
}

// scaleOneWindow is the window of the one-instance cells by default (see BenchmarkScale).
const scaleOneWindow = 60 * time.Second

func scaleTable(cells []scaleCell, window, oneWindow time.Duration, burn bool) string {
	var sb strings.Builder
	load := "no load of its own"
	if burn {
		load = fmt.Sprintf("%d CPU burners keeping every core busy", runtime.NumCPU())
	}
	load += "; " + benchPolicy()
	windows := fmt.Sprintf("%s window per cell", window)
	if oneWindow != window {
		windows = fmt.Sprintf("%s window per cell (%s with one instance)", window, oneWindow)
	}
	fmt.Fprintf(&sb, "\nScale: hapair and keepalived side by side, VRRPv3, N instances each, %s, %s; %d cores\n",
		windows, load, runtime.NumCPU())
	sb.WriteString("CPU: seconds of CPU per minute (all of keepalived's processes). RSS: MiB at the end of the window. h = hapair, k = keepalived.\n")
	w := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "interval\tN\tCPU MASTER h\tk\tCPU BACKUP h\tk\tRSS MASTER h\tk\tRSS BACKUP h\tk\tspurious h\tk\tmachine busy\ttarget (h <= k)")
	for _, c := range cells {
		fmt.Fprintln(w, c.row())
	}
	w.Flush()
	sb.WriteString("Packets the raw sockets dropped in the window (receive queue full; MASTER, BACKUP):")
	for _, c := range cells {
		fmt.Fprintf(&sb, " %s x %d: h %d, %d, k %d, %d;", c.interval, c.n, c.drops[0][0], c.drops[0][1], c.drops[1][0], c.drops[1][1])
	}
	sb.WriteString("\n")
	// At 1 s and few instances both daemons use milliseconds a minute, which the table rounds to
	// equal figures while the verdict, on the unrounded ones, may differ: they are printed here.
	sb.WriteString("CPU in ms/min where the table shows less than 0.1 s/min for any of them (MASTER h, k; BACKUP h, k):")
	for _, c := range cells {
		if c.unsettled != "" || min(c.perMinute(c.cpu[0][0]), c.perMinute(c.cpu[1][0]), c.perMinute(c.cpu[0][1]), c.perMinute(c.cpu[1][1])) >= 0.1 {
			continue
		}
		fmt.Fprintf(&sb, " %s x %d: %.1f, %.1f; %.1f, %.1f;", c.interval, c.n,
			1000*c.perMinute(c.cpu[0][0]), 1000*c.perMinute(c.cpu[1][0]), 1000*c.perMinute(c.cpu[0][1]), 1000*c.perMinute(c.cpu[1][1]))
	}
	sb.WriteString("\n")
	sb.WriteString("hapair's CPU, Go runtime + threads and processes outside it (ms/min; MASTER, BACKUP):")
	for _, c := range cells {
		fmt.Fprintf(&sb, " %s x %d: %.1f + %.1f, %.1f + %.1f;", c.interval, c.n,
			1000*c.perMinute(c.cpuSplit[0][0]), 1000*c.perMinute(c.cpuSplit[0][1]), 1000*c.perMinute(c.cpuSplit[1][0]), 1000*c.perMinute(c.cpuSplit[1][1]))
	}
	sb.WriteString("\n")
	sb.WriteString("hapair's RSS at the end of the window, anonymous + file-backed (MiB; MASTER, BACKUP):")
	for _, c := range cells {
		fmt.Fprintf(&sb, " %s x %d: %.1f + %.1f, %.1f + %.1f;", c.interval, c.n,
			benchMiB(c.split[0][0]), benchMiB(c.split[0][1]), benchMiB(c.split[1][0]), benchMiB(c.split[1][1]))
	}
	sb.WriteString("\n")
	for _, c := range cells {
		if c.gaps != "" {
			fmt.Fprintf(&sb, "Adverts of lb1's MASTERs as lb2 received them (kernel time), %s x %d, hp0 hapair, ka0 keepalived:\n%s", c.interval, c.n, c.gaps)
		}
	}
	if len(cells) == 1 || window >= 5*time.Minute {
		sb.WriteString("RSS at the start and at the end of the window (MiB):\n")
		for _, c := range cells {
			fmt.Fprintf(&sb, "  N=%d %s: hapair MASTER %.1f -> %.1f, BACKUP %.1f -> %.1f; keepalived MASTER %.1f -> %.1f, BACKUP %.1f -> %.1f\n",
				c.n, c.interval,
				benchMiB(c.rss0[0][0]), benchMiB(c.rss[0][0]), benchMiB(c.rss0[0][1]), benchMiB(c.rss[0][1]),
				benchMiB(c.rss0[1][0]), benchMiB(c.rss[1][0]), benchMiB(c.rss0[1][1]), benchMiB(c.rss[1][1]))
		}
	}
	return sb.String()
}

// scaleUnit is the systemd unit whose Environment= hapair runs with here, as deployed.
const scaleUnit = "../../deploy/systemd/hapair.service"

// scaleHapairEnv is the Go runtime environment of the unit (Environment= lines), then
// HAPAIR_SCALE_HAPAIR_ENV (space-separated NAME=value, for trying other settings).
func scaleHapairEnv(t testing.TB) []string {
	t.Helper()
	data, err := os.ReadFile(scaleUnit)
	if err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "Environment="); ok {
			env = append(env, strings.Fields(v)...)
		}
	}
	return append(env, strings.Fields(os.Getenv("HAPAIR_SCALE_HAPAIR_ENV"))...)
}

// hostBinary is a copy of bin of the host's own, as each load balancer has its /usr/sbin/hapair.
// Two hosts running one file share its page cache, and the kernel does not page out what another
// process maps (MADV_PAGEOUT skips shared folios): the trim at settle (internal/residency) then
// gives back only what the other host happens not to map, and the RSS of both depends on when
// each trimmed (20 ms x 50 instances: 14.4 and 14.0 MiB against 9.2 to 10.7 in the other cells).
func hostBinary(t testing.TB, h *lab.Host, bin string) string {
	t.Helper()
	b, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	own := filepath.Join(h.Dir(), "hapair-bin")
	if err := os.WriteFile(own, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return own
}

// benchRTPriority is HAPAIR_BENCH_RT: the real-time priority (vrrp_rt_priority) both hapair and
// keepalived run with in the benchmarks, 0 (unset) for none. A value that is not 0..99 is
// refused by both daemons' own configuration checks.
func benchRTPriority() int {
	rt, _ := strconv.Atoi(os.Getenv("HAPAIR_BENCH_RT"))
	return rt
}

// benchPolicy says how both daemons were scheduled, for the tables.
func benchPolicy() string {
	if rt := benchRTPriority(); rt > 0 {
		return fmt.Sprintf("both at vrrp_rt_priority %d (SCHED_RR)", rt)
	}
	return "both at normal priority"
}

// benchEnvInts reads a comma-separated list of positive integers from the environment.
func benchEnvInts(name string, def []int) ([]int, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 255 {
			return nil, fmt.Errorf("%s=%q: want numbers from 1 to 255, comma-separated", name, v)
		}
		out = append(out, n)
	}
	return out, nil
}

// benchEnvDurations reads a comma-separated list of positive durations from the environment.
func benchEnvDurations(name string, def []time.Duration) ([]time.Duration, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	var out []time.Duration
	for _, f := range strings.Split(v, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(f))
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("%s=%q: want durations such as 20ms, comma-separated", name, v)
		}
		out = append(out, d)
	}
	return out, nil
}

func joinLines(ls []lab.Line) string {
	var b strings.Builder
	for _, l := range ls {
		b.WriteString(l.Text + "\n")
	}
	return b.String()
}
