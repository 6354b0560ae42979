package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/hapair/hapair/cmd/internal/lab"
	"github.com/hapair/hapair/cmd/internal/lab/labtest"
)

// BenchmarkSoakFastAdverts runs a hapair pair with VRRPv3 adverts every 50 ms while every core
// of the machine is kept busy by CPU burners, and counts spurious transitions: any "Entering ...
// STATE" line after the initial election. DESIGN.md's target is none in 10 minutes; the default
// duration is 60 s, HAPAIR_SOAK sets another (a Go duration):
//
//	HAPAIR_SOAK=10m go test -count=1 -timeout 30m -run '^$' -bench BenchmarkSoakFastAdverts -benchtime 1x ./cmd/hapair
//
// With advert_int 50 ms the backup's master-down interval is 3 x 50 ms + (256-100)/256 x 50 ms
// = 180 ms: three adverts lost or late by that much under load and it takes over.
func BenchmarkSoakFastAdverts(b *testing.B) {
	labtest.RequireRoot(b)
	dur, err := benchEnvDuration("HAPAIR_SOAK", 60*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	p := benchNewPair(b)
	node := func(prio int) labNode { return labNode{Priority: prio, Version: 3, AdvertInt: "50ms"} }
	d1 := startDaemon(b, p.lb1, node(110))
	d2 := startDaemon(b, p.lb2, node(100))
	d1.waitState(0, "MASTER", 15*time.Second)
	d2.waitState(0, "BACKUP", 15*time.Second)
	waitVIP(b, 3*time.Second, p.lb1, p.lb1, p.lb2)
	from1, from2 := d1.lines(), d2.lines()

	// One burner per core, in the client's namespace (they touch no network): plain busy loops
	// at the same nice level as hapair, which has no real-time priority of its own.
	var burners []*lab.Proc
	for i := range runtime.NumCPU() {
		bp, err := p.cli.StartWith(context.Background(), lab.ProcOptions{LogPath: fmt.Sprintf("burner%d.log", i)},
			"sh", "-c", "while :; do :; done")
		if err != nil {
			b.Fatal(err)
		}
		burners = append(burners, bp)
	}
	cpu0, err := benchCPUTimes()
	if err != nil {
		b.Fatal(err)
	}
	own0 := []time.Duration{benchProcCPU(b, d1.proc.PID()), benchProcCPU(b, d2.proc.PID())}
	start := time.Now()

	// Sample who holds the VIP all along: a takeover shorter than the log's reach still shows.
	var samples, offMaster int
	tick := time.NewTicker(100 * time.Millisecond)
	for time.Since(start) < dur {
		<-tick.C
		for _, d := range []*daemonHost{d1, d2} {
			if d.proc.Exited() {
				b.Fatalf("hapair on %s exited during the soak: %v\n%s", d.host.Name, d.proc.Wait(), d.proc.Output())
			}
		}
		samples++
		if h := vipHolders(b, p.lb1, p.lb2); len(h) != 1 || h[0] != p.lb1.Name {
			offMaster++
		}
	}
	tick.Stop()
	elapsed := time.Since(start)
	own := []time.Duration{benchProcCPU(b, d1.proc.PID()) - own0[0], benchProcCPU(b, d2.proc.PID()) - own0[1]}
	cpu1, err := benchCPUTimes()
	if err != nil {
		b.Fatal(err)
	}
	for _, bp := range burners {
		_ = bp.Kill()
	}
	busy := cpu1.busyShare(cpu0)

	transition := regexp.MustCompile(`Entering \S+ STATE`)
	var spurious []string
	for _, c := range []struct {
		d    *daemonHost
		from int
	}{{d1, from1}, {d2, from2}} {
		for _, l := range c.d.proc.Lines()[c.from:] {
			if transition.MatchString(l.Text) {
				spurious = append(spurious, c.d.host.Name+": "+l.Text)
			}
		}
	}

	var sb strings.Builder
	fmt.Fprintf(&sb, "\nSoak: hapair pair, VRRPv3, advert_int 50ms, %d CPU burners on %d cores, %s\n", len(burners), runtime.NumCPU(), elapsed.Round(time.Second))
	w := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "machine CPU busy\t%.1f %%\n", 100*busy)
	fmt.Fprintf(w, "hapair CPU (lb1 MASTER, lb2 BACKUP)\t%.2f %%, %.2f %% of one core\n",
		100*own[0].Seconds()/elapsed.Seconds(), 100*own[1].Seconds()/elapsed.Seconds())
	fmt.Fprintf(w, "spurious transitions\t%d\n", len(spurious))
	fmt.Fprintf(w, "VIP samples (every 100ms) not on lb1 alone\t%d of %d\n", offMaster, samples)
	w.Flush()
	verdict := "MET"
	switch {
	case len(spurious) > 0 || offMaster > 0:
		verdict = "NOT MET"
	case elapsed < 10*time.Minute:
		verdict = "none in " + elapsed.Round(time.Second).String() + ", but the target is 10 minutes: run with HAPAIR_SOAK=10m to judge it"
	}
	fmt.Fprintf(&sb, "DESIGN.md target: no spurious transition in 10 minutes: %s\n", verdict)
	fmt.Fprint(os.Stdout, sb.String())
	b.ReportMetric(float64(len(spurious)), "spurious-transitions")
	b.ReportMetric(100*own[0].Seconds()/elapsed.Seconds(), "master-cpu-%")

	if busy < 0.9 {
		b.Errorf("the machine was only %.0f%% busy: the burners did not load every core", 100*busy)
	}
	if len(spurious) > 0 || offMaster > 0 {
		b.Errorf("%d spurious transitions, VIP off lb1 in %d samples:\n%s", len(spurious), offMaster, strings.Join(spurious, "\n"))
	}
}

// BenchmarkMemory compares the resident memory of a hapair MASTER (its own process, without
// HAProxy) with keepalived's two processes (parent and VRRP child) doing the same job in the same
// lab: the seed's configuration, HAProxy beside each, measured 10 s after becoming MASTER.
// DESIGN.md says keepalived holds about 13.6 MB. RSS counts pages shared by keepalived's parent
// and child twice; PSS (from smaps_rollup) shares them out.
func BenchmarkMemory(b *testing.B) {
	labtest.RequireRoot(b)
	labtest.RequireCommands(b, "haproxy", "keepalived", "pgrep")
	l := labtest.NewWith(b, lab.Options{Log: benchQuietLogger(b)})
	lb1 := labtest.AddHost(b, l, "lb1", l.Addr(11))
	ka1 := labtest.AddHost(b, l, "ka1", l.Addr(21))

	cfg := haproxyConfigFile(b, lb1, lab.HAProxyConfig{Name: lb1.Name}.Render())
	d := startDaemon(b, lb1, labNode{Priority: 110, AuthPass: foAuthPass, HAProxyConfig: cfg, StatsURL: statsURL})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hp, err := ka1.StartHAProxy(ctx, lab.HAProxyConfig{Name: ka1.Name}.Render(), "")
	if err != nil {
		b.Fatal(err)
	}
	k, err := ka1.StartKeepalived(ctx, lab.KeepalivedConfig{
		State: "MASTER", VRID: foKeepalivedVRID, Priority: 110, AdvertInt: "1", Version: 2,
		AuthPass: foAuthPass, VIPs: []string{foKeepalivedCIDR}, TrackScript: hp.TrackScript(-20),
	}, "")
	if err != nil {
		b.Fatal(err)
	}

	d.waitState(0, "MASTER", 20*time.Second)
	waitVIPOn(b, lb1, 3*time.Second)
	if _, err := k.WaitState(ctx, 0, "MASTER"); err != nil {
		b.Fatalf("keepalived: %v", err)
	}
	if _, err := benchWaitAddr(ctx, ka1, foKeepalivedVIP, 3*time.Second); err != nil {
		b.Fatal(err)
	}
	// Both run their checks and adverts for a while: the figure is a steady state, not a start.
	time.Sleep(10 * time.Second)
	if d.proc.Exited() || k.Exited() {
		b.Fatalf("a daemon exited: hapair %v, keepalived %v", d.proc.Exited(), k.Exited())
	}

	hapair := []int{d.proc.PID()}
	keepalived := append([]int{k.PID()}, benchChildren(k.PID())...)
	if len(keepalived) != 2 {
		b.Fatalf("keepalived processes %v, want the parent and its VRRP child", keepalived)
	}
	hRSS, hPSS := benchMemory(b, hapair)
	kRSS, kPSS := benchMemory(b, keepalived)

	var sb strings.Builder
	sb.WriteString("\nResident memory, 10 s after MASTER (seed config, HAProxy beside each, HAProxy not counted)\n")
	w := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "implementation\tprocesses\tRSS\t\tPSS")
	row := func(name string, pids []int, rss, pss int64) {
		fmt.Fprintf(w, "%s\t%d %v\t%.1f MiB\t(%.1f MB)\t%.1f MiB\n", name, len(pids), pids, benchMiB(rss), float64(rss)/1e6, benchMiB(pss))
	}
	row("hapair", hapair, hRSS, hPSS)
	row("keepalived", keepalived, kRSS, kPSS)
	w.Flush()
	sb.WriteString("DESIGN.md: keepalived's two processes hold about 13.6 MB resident.\n")
	fmt.Fprint(os.Stdout, sb.String())
	b.ReportMetric(benchMiB(hRSS), "hapair-rss-MiB")
	b.ReportMetric(benchMiB(kRSS), "keepalived-rss-MiB")
}

// benchMemory sums VmRSS (status) and Pss (smaps_rollup) over pids, in bytes.
func benchMemory(t testing.TB, pids []int) (rss, pss int64) {
	t.Helper()
	for _, pid := range pids {
		r, err := benchProcField(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:")
		if err != nil {
			t.Fatal(err)
		}
		p, err := benchProcField(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:")
		if err != nil {
			t.Fatal(err)
		}
		rss, pss = rss+r, pss+p
	}
	return rss, pss
}

// benchProcField reads a "Key:   123 kB" line of a /proc file, in bytes.
func benchProcField(path, key string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == key {
			n, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: %s: %w", path, key, err)
			}
			if len(fields) == 3 && fields[2] == "kB" {
				n *= 1024
			}
			return n, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	return 0, fmt.Errorf("%s: no %s line", path, key)
}

func benchMiB(n int64) float64 { return float64(n) / (1 << 20) }

// benchProcCPU is the user plus system time pid has used, from /proc/<pid>/stat.
func benchProcCPU(t testing.TB, pid int) time.Duration {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	// Fields after the parenthesised name: state is field 3, utime 14, stime 15.
	i := strings.LastIndex(s, ") ")
	if i < 0 {
		t.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 13 {
		t.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	// USER_HZ is 100 on every Linux architecture Go supports.
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// benchCPU is the machine's aggregate CPU time from /proc/stat, in ticks.
type benchCPU struct{ idle, total int64 }

func benchCPUTimes() (benchCPU, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return benchCPU{}, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return benchCPU{}, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var c benchCPU
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return benchCPU{}, fmt.Errorf("/proc/stat: %q: %w", line, err)
		}
		c.total += n
		if i == 3 || i == 4 { // idle, iowait
			c.idle += n
		}
	}
	return c, nil
}

// busyShare is the share of CPU time not idle between before and c.
func (c benchCPU) busyShare(before benchCPU) float64 {
	total := c.total - before.total
	if total <= 0 {
		return 0
	}
	return 1 - float64(c.idle-before.idle)/float64(total)
}

// benchEnvDuration reads a positive Go duration from the environment.
func benchEnvDuration(name string, def time.Duration) (time.Duration, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive duration such as 10m", name, v)
	}
	return d, nil
}

func TestBenchProcField(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status")
	text := "Name:\thapair\nVmPeak:\t  1300 kB\nVmRSS:\t   16220 kB\nThreads:\t7\n"
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key     string
		want    int64
		wantErr bool
	}{
		{"VmRSS:", 16220 * 1024, false},
		{"Threads:", 7, false}, // no unit: as it stands
		{"Pss:", 0, true},
	} {
		got, err := benchProcField(path, tc.key)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("benchProcField(%s) = %d, %v; want %d, error %t", tc.key, got, err, tc.want, tc.wantErr)
		}
	}
	// The real thing: this process has a resident size.
	if rss, err := benchProcField("/proc/self/status", "VmRSS:"); err != nil || rss <= 0 {
		t.Errorf("own VmRSS = %d, %v", rss, err)
	}
}

func TestBenchCPUBusyShare(t *testing.T) {
	before := benchCPU{idle: 1000, total: 2000}
	for _, tc := range []struct {
		name  string
		after benchCPU
		want  float64
	}{
		{"all busy", benchCPU{idle: 1000, total: 2400}, 1},
		{"half busy", benchCPU{idle: 1200, total: 2400}, 0.5},
		{"idle", benchCPU{idle: 1400, total: 2400}, 0},
		{"no time passed", before, 0},
	} {
		if got := tc.after.busyShare(before); got != tc.want {
			t.Errorf("%s: busyShare = %v, want %v", tc.name, got, tc.want)
		}
	}
	if c, err := benchCPUTimes(); err != nil || c.total <= 0 || c.idle > c.total {
		t.Errorf("benchCPUTimes() = %+v, %v", c, err)
	}
}

func TestBenchEnv(t *testing.T) {
	for _, tc := range []struct {
		value   string
		want    time.Duration
		wantErr bool
	}{
		{"", time.Minute, false},
		{"10m", 10 * time.Minute, false},
		{"90s", 90 * time.Second, false},
		{"0s", 0, true},
		{"-1m", 0, true},
		{"ten minutes", 0, true},
	} {
		t.Setenv("HAPAIR_TEST_SOAK", tc.value)
		got, err := benchEnvDuration("HAPAIR_TEST_SOAK", time.Minute)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("benchEnvDuration(%q) = %v, %v; want %v, error %t", tc.value, got, err, tc.want, tc.wantErr)
		}
	}
	for _, tc := range []struct {
		value   string
		want    int
		wantErr bool
	}{
		{"", 5, false}, {"12", 12, false}, {"0", 0, true}, {"five", 0, true},
	} {
		t.Setenv("HAPAIR_TEST_TRIALS", tc.value)
		got, err := benchEnvInt("HAPAIR_TEST_TRIALS", 5)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("benchEnvInt(%q) = %v, %v; want %v, error %t", tc.value, got, err, tc.want, tc.wantErr)
		}
	}
}
