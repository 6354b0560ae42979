package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hapair/hapair/cmd/internal/lab"
	"github.com/hapair/hapair/cmd/internal/lab/labtest"
)

// hapairBin is the binary under test, built once by TestMain.
var hapairBin string

// Parallel tests: every end-to-end test builds a lab of its own (namespaces with a random part in
// their names, files under t.TempDir, ports only inside its own namespaces), so labs never
// collide. A test calls t.Parallel() when, besides, it bounds no timing that CPU contention could
// break and changes nothing the process shares (environment, working directory, the machine's own
// namespace). Go starts the parallel tests only once every serial one has ended, so the serial
// ones (failover and takeover times, advert gaps, requests that must not fail, the chaos suite,
// the start race) still run alone. `make test` sets how many run at once (-parallel).

func TestMain(m *testing.M) {
	if bin := os.Getenv("HAPAIR_BIN"); bin != "" { // a binary built elsewhere (packaging, debugging)
		hapairBin = bin
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "hapair-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Others may run it too: the demo test drops to nobody to see the not-root refusal.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	hapairBin = filepath.Join(dir, "hapair")
	build := exec.Command("go", "build", "-o", hapairBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // as the Makefile builds it: static
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building hapair:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var vip = netip.MustParseAddr("10.0.0.10")

const vipCIDR = "10.0.0.10/24"

// daemonHost is one hapair running in a lab host.
type daemonHost struct {
	t       testing.TB
	host    *lab.Host
	node    labNode
	cfgPath string
	proc    *lab.Proc
	bin     string // the hapair binary to run; hapairBin when empty
}

// hostRunDir is the runtime_dir of h's hapair: on tmpfs, as the unit's /run/hapair is, where the
// state record is rewritten by a MASTER's steady sender thread (instance.Config.Steady: on a
// disk, where a write may block, the loop sends the adverts instead); the same directory for
// every start on h. In the host's directory if the machine has no /dev/shm.
func hostRunDir(t testing.TB, h *lab.Host) string {
	t.Helper()
	dir := filepath.Join("/dev/shm", "hapair-e2e-"+h.NS) // the namespace's name is the test's own
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return filepath.Join(h.Dir(), "run")
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// startDaemon writes the node's configuration and starts `hapair run` in the host.
func startDaemon(t testing.TB, h *lab.Host, n labNode) *daemonHost {
	t.Helper()
	if n.RouterID == "" {
		n.RouterID = h.Name
	}
	if len(n.VIPs) == 0 {
		n.VIPs = []string{vipCIDR}
	}
	if n.RuntimeDir == "" { // namespaces do not separate files: one runtime dir (and lock) per host
		n.RuntimeDir = hostRunDir(t, h)
	}
	d := &daemonHost{t: t, host: h, node: n, cfgPath: filepath.Join(h.Dir(), "hapair.yaml")}
	if err := os.MkdirAll(h.Dir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.cfgPath, []byte(n.YAML()), 0o600); err != nil {
		t.Fatal(err)
	}
	d.start()
	return d
}

func (d *daemonHost) start() {
	d.t.Helper()
	bin := hapairBin
	if d.bin != "" {
		bin = d.bin
	}
	p, err := d.host.StartWith(context.Background(), lab.ProcOptions{LogPath: filepath.Join(d.host.Dir(), "hapair.log")},
		bin, "run", "--config", d.cfgPath)
	if err != nil {
		d.t.Fatalf("start hapair on %s: %v", d.host.Name, err)
	}
	d.proc = p
	d.t.Cleanup(func() {
		if d.t.Failed() {
			d.t.Logf("--- hapair log of %s ---\n%s", d.host.Name, p.Output())
		}
		_ = p.Kill()
	})
}

// waitState waits for the keepalived-style transition line, from line `from` of the log on.
func (d *daemonHost) waitState(from int, state string, timeout time.Duration) lab.Line {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	re := regexp.MustCompile(`\(VI_LOGS\) Entering ` + state + ` STATE`)
	l, err := d.proc.WaitForLineAfter(ctx, from, re)
	if err != nil {
		d.t.Fatalf("%s: no %q within %s: %v\n%s", d.host.Name, re, timeout, err, d.proc.Output())
	}
	return l
}

func (d *daemonHost) lines() int { return d.proc.LineCount() }

func (d *daemonHost) hasVIP() bool {
	d.t.Helper()
	ok, err := d.host.HasAddr(vip)
	if err != nil {
		d.t.Fatalf("%s: read addresses: %v", d.host.Name, err)
	}
	return ok
}

// steadyThreads counts hapair's threads that block SIGTERM and SIGURG: the threads of package
// steady (a MASTER's sender, a BACKUP's watcher), which block every signal. The Go runtime's
// threads block neither.
func (d *daemonHost) steadyThreads() int {
	d.t.Helper()
	return steadyThreadsOf(d.t, d.host.Name, d.proc.PID())
}

// waitSteadyThreads waits up to timeout for the hapair with pid pid, on host, to have want
// threads of package steady, and returns how many it has. A BACKUP starts its watcher at the
// end of a turn after it began to expect its MASTER's adverts: its first wake-up for them, up
// to three intervals after the first advert.
func waitSteadyThreads(t testing.TB, host string, pid, want int, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n := steadyThreadsOf(t, host, pid)
		if n == want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// steadyThreadsOf is steadyThreads for the hapair with pid pid, on host.
func steadyThreadsOf(t testing.TB, host string, pid int) int {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("%s: threads of hapair: %v", host, err)
	}
	n := 0
	for _, f := range tasks {
		if blocksEverySignal(f) {
			n++
		}
	}
	return n
}

// blocksEverySignal: the task whose /proc status file is status blocks SIGTERM and SIGURG, as
// the threads and the sender process of package steady do (Go's threads block neither).
func blocksEverySignal(status string) bool {
	const want = 1<<(syscall.SIGTERM-1) | 1<<(syscall.SIGURG-1)
	b, err := os.ReadFile(status)
	if err != nil {
		return false // it has exited
	}
	for _, l := range strings.Split(string(b), "\n") {
		if hex, ok := strings.CutPrefix(l, "SigBlk:"); ok {
			m, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			return err == nil && m&want == want
		}
	}
	return false
}

// steadyProcesses lists the children of d's hapair that are a process of package steady (a
// MASTER's sender, a BACKUP's watcher): they block every signal, HAProxy does not.
func (d *daemonHost) steadyProcesses() []int {
	var out []int
	for _, pid := range benchChildren(d.proc.PID()) {
		if blocksEverySignal(fmt.Sprintf("/proc/%d/status", pid)) {
			out = append(out, pid)
		}
	}
	return out
}

// kill sends SIGKILL to hapair alone: its HAProxy, if any, keeps running, for the next start to adopt.
func (d *daemonHost) kill() time.Time {
	d.t.Helper()
	at := time.Now()
	if err := d.proc.Signal(syscall.SIGKILL); err != nil {
		d.t.Fatal(err)
	}
	<-d.proc.Done()
	return at
}

// terminate sends SIGTERM and waits for a clean exit.
func (d *daemonHost) terminate() time.Time {
	d.t.Helper()
	at := time.Now()
	if err := d.proc.Stop(15 * time.Second); err != nil {
		d.t.Fatalf("%s: hapair did not stop cleanly: %v\n%s", d.host.Name, err, d.proc.Output())
	}
	return at
}

// vipHolders lists the hosts that have the VIP now.
func vipHolders(t testing.TB, hosts ...*lab.Host) []string {
	t.Helper()
	var out []string
	for _, h := range hosts {
		ok, err := h.HasAddr(vip)
		if err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
		if ok {
			out = append(out, h.Name)
		}
	}
	return out
}

// waitVIP polls until exactly `want` holds the VIP among hosts and returns when that was seen.
func waitVIP(t testing.TB, timeout time.Duration, want *lab.Host, hosts ...*lab.Host) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		holders := vipHolders(t, hosts...)
		if len(holders) == 1 && holders[0] == want.Name {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("VIP held by %v after %s, want only %s", holders, timeout, want.Name)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pair is the seed's two load balancers and a client on one lab switch.
type pair struct {
	lab           *lab.Lab
	lb1, lb2, cli *lab.Host
}

func newPair(t testing.TB) *pair {
	t.Helper()
	l := labtest.New(t)
	return &pair{
		lab: l,
		lb1: labtest.AddHost(t, l, "lb1", l.Addr(11)),
		lb2: labtest.AddHost(t, l, "lb2", l.Addr(12)),
		cli: labtest.AddHost(t, l, "cli", l.Addr(50)),
	}
}

// neighborOf returns the client's neighbour entry for the VIP, after making sure one exists.
func (p *pair) neighborOf(t testing.TB) string {
	t.Helper()
	mac, err := p.cli.Neighbor(vip)
	if err != nil || mac == nil {
		_, _ = p.cli.Run(context.Background(), "ping", "-c", "1", "-W", "1", vip.String())
		mac, err = p.cli.Neighbor(vip)
	}
	if err != nil {
		t.Fatalf("client neighbour entry for %s: %v", vip, err)
	}
	return mac.String()
}

// startElectedPair starts hapair on lb1 (priority 110) and lb2 (100) of a new pair and waits
// until lb1 is MASTER with the VIP and lb2 BACKUP.
func startElectedPair(t *testing.T) (p *pair, lb1, lb2 *daemonHost) {
	t.Helper()
	p = newPair(t)
	lb1 = startDaemon(t, p.lb1, labNode{Priority: 110, AuthPass: "1a2b3c4d"})
	lb2 = startDaemon(t, p.lb2, labNode{Priority: 100, AuthPass: "1a2b3c4d"})
	lb1.waitState(0, "MASTER", 10*time.Second)
	lb2.waitState(0, "BACKUP", 10*time.Second)
	waitVIP(t, 3*time.Second, p.lb1, p.lb1, p.lb2)
	return p, lb1, lb2
}
