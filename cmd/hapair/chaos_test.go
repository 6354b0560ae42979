package main

// The fault-injection suite (issue 9 item 13): a VRRP group of two hapair hosts and one
// keepalived host, each with a real HAProxy, a client through the VIP and a fourth host that
// forges and replays adverts, under random faults drawn from a seed. Invariants are checked
// all the time; the run ends with a table per fault and the seed to replay it.
//
//	make chaos SEED=42 DURATION=10m     a long run (prints the table)
//	go test -run '^TestChaos$' ./cmd/hapair    the short seeded run of `make test`
//
// "MASTER" below is the host that holds the VIP: hapair and keepalived attach it on entering
// MASTER and detach it on leaving, so the VIP is what a client, and the invariants, see.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hapair/hapair/cmd/internal/lab"
	"github.com/hapair/hapair/cmd/internal/lab/labtest"
	"github.com/hapair/hapair/metrics/status"
)

const (
	chaosPass = "1a2b3c4d"
	// chaosDeadline is Master_Down_Interval plus Skew_Time of the lowest priority in the group
	// (keepalived's 95, advert_int 1 s): 3 s + 2 * (256-95)/256 s. After a heal the group must
	// have exactly one MASTER, the right one, within it; and while a healthy host exists the
	// VIP must never be nowhere for longer.
	chaosDeadline = 3*time.Second + 2*161*time.Second/256
	// chaosStable is how long the right MASTER must hold alone to count as recovered.
	chaosStable = 1500 * time.Millisecond
	// chaosGiveUp bounds the wait for a recovery that overran the deadline (to measure it).
	chaosGiveUp = 20 * time.Second
	// haproxyRiseSettle is hapair's rise hold for a restarted HAProxy (haproxyRiseHold) plus
	// one advert interval for the restored priority to be heard.
	haproxyRiseSettle = haproxyRiseHold + time.Second
)

// chaosSettings reads HAPAIR_CHAOS_SEED and HAPAIR_CHAOS_DURATION (set by `make chaos`).
// Without them the short run of `make test`: a fixed seed, so that CI replays the same faults.
func chaosSettings(t *testing.T) (seed uint64, d time.Duration) {
	seed, d = 1, 60*time.Second
	if s := os.Getenv("HAPAIR_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("HAPAIR_CHAOS_SEED=%q: %v", s, err)
		}
		seed = v
	}
	if s := os.Getenv("HAPAIR_CHAOS_DURATION"); s != "" {
		v, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("HAPAIR_CHAOS_DURATION=%q: %v", s, err)
		}
		d = v
	}
	return seed, d
}

// chaosHost is one load balancer of the group and what the faults did to it.
type chaosHost struct {
	host     *lab.Host
	prio     int
	d        *daemonHost     // hapair hosts
	k        *lab.Keepalived // the keepalived host
	procs    []*lab.Proc     // every hapair process it ran, for the panic check
	cfgPrio  int             // the priority in the last good configuration file
	goodYAML string

	// What the model knows; guarded by chaos.mu.
	isolated, linkDown, stopped, killed, haproxyDown bool
}

func (h *chaosHost) name() string { return h.host.Name }

// participates: the host takes part in the election now.
func (h *chaosHost) participates() bool {
	return !h.isolated && !h.linkDown && !h.stopped && !h.killed
}

// effective is the priority the host advertises, with the seed's weight -20 for a dead HAProxy.
func (h *chaosHost) effective() int {
	p := h.cfgPrio
	if h.haproxyDown {
		p -= 20
	}
	return p
}

// faultRow is one line of the table.
type faultRow struct {
	injected   int
	violations int
	worst      time.Duration
	failed     int
}

// faultSpan is one injection, for attributing client failures.
type faultSpan struct {
	name       string
	start, end time.Time
}

type chaos struct {
	t      *testing.T
	rng    *rand.Rand
	hosts  []*chaosHost
	evil   *lab.Host
	forger *lab.Forger
	forged [][]byte // made once: forgeOnce runs off the test goroutine
	cli    *lab.Host

	mu         sync.Mutex
	current    string // fault being injected or recovered from; "" between faults
	rows       map[string]*faultRow
	spans      []faultSpan
	notes      []string // every violation, in words
	noneSince  time.Time
	noneNoted  bool
	forgedSent int
	// samples of each hapair process: pid -> goroutines / open fds, in order.
	goroutines, fds map[int][]float64
}

func (c *chaos) row(name string) *faultRow {
	r := c.rows[name]
	if r == nil {
		r = &faultRow{}
		c.rows[name] = r
	}
	return r
}

// violation records a broken invariant against a fault ("(run)" for checks at the end).
func (c *chaos) violation(fault, format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.row(fault).violations++
	msg := fmt.Sprintf("%s: %s", fault, fmt.Sprintf(format, args...))
	c.notes = append(c.notes, msg)
	c.t.Logf("%s VIOLATION %s", time.Now().Format("15:04:05.000"), msg)
}

// expected is the host that should be MASTER now: the highest effective priority among the
// hosts taking part ("" when none does).
func (c *chaos) expected() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	best, prio := "", -1
	for _, h := range c.hosts {
		if h.participates() && h.effective() > prio {
			best, prio = h.name(), h.effective()
		}
	}
	return best
}

func (c *chaos) holders() ([]string, error) {
	var out []string
	for _, h := range c.hosts {
		ok, err := h.host.HasAddr(vip)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, h.name())
		}
	}
	return out, nil
}

// watchNoMaster checks, all the time, that the VIP is never nowhere for longer than the
// deadline while a host takes part.
func (c *chaos) watchNoMaster(ctx context.Context) {
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		hs, err := c.holders()
		if err != nil {
			continue
		}
		exp := c.expected()
		now := time.Now()
		c.mu.Lock()
		fault := c.current
		if fault == "" {
			fault = "(between faults)"
		}
		if len(hs) > 0 || exp == "" {
			c.noneSince, c.noneNoted = time.Time{}, false
			c.mu.Unlock()
			continue
		}
		if c.noneSince.IsZero() {
			c.noneSince = now
		}
		over := !c.noneNoted && now.Sub(c.noneSince) > chaosDeadline
		if over {
			c.noneNoted = true
		}
		since := c.noneSince
		c.mu.Unlock()
		if over {
			c.violation(fault, "no host holds the VIP since %s (%s) while %s takes part", since.Format("15:04:05.000"),
				now.Sub(since).Round(time.Millisecond), exp)
		}
	}
}

// recover waits, after a heal, for the right MASTER to hold the VIP alone and stay so; it
// returns how long that took from the heal and whether the deadline held.
func (c *chaos) recover(fault string, healed time.Time) time.Duration {
	var stableSince, dualSince time.Time
	dualNoted := false
	for time.Since(healed) < chaosGiveUp {
		hs, err := c.holders()
		if err != nil {
			time.Sleep(25 * time.Millisecond)
			continue
		}
		exp := c.expected()
		now := time.Now()
		if len(hs) > 1 {
			if dualSince.IsZero() {
				dualSince = now
			}
			if !dualNoted && now.Sub(healed) > chaosDeadline {
				dualNoted = true
				c.violation(fault, "VIP on %v %s after the heal", hs, now.Sub(healed).Round(time.Millisecond))
			}
		}
		if len(hs) == 1 && hs[0] == exp {
			if stableSince.IsZero() {
				stableSince = now
			}
			if now.Sub(stableSince) >= chaosStable {
				d := stableSince.Sub(healed)
				if d > chaosDeadline {
					c.violation(fault, "right MASTER (%s) alone only %s after the heal, deadline %s", exp,
						d.Round(time.Millisecond), chaosDeadline.Round(time.Millisecond))
				}
				return d
			}
		} else {
			stableSince = time.Time{}
		}
		time.Sleep(25 * time.Millisecond)
	}
	hs, _ := c.holders()
	c.violation(fault, "no recovery within %s of the heal: VIP on %v, want %s alone", chaosGiveUp, hs, c.expected())
	return chaosGiveUp
}

// checkStates: once recovered, the hosts say so themselves: the expected one reports MASTER and
// every other BACKUP (hapair through its status, keepalived through its log), so that a host
// stuck in FAULT or INIT, or a MASTER without its VIP, does not hide behind a right VIP holder.
func (c *chaos) checkStates(fault string) {
	exp := c.expected()
	var got map[string]string
	deadline := time.Now().Add(3 * time.Second) // logs and status trail the VIP a little
	for {
		got = map[string]string{}
		ok := true
		for _, h := range c.hosts {
			state := ""
			if h.d != nil {
				st, err := hapairStatus(h.host)
				if err == nil && len(st.Instances) == 1 {
					state = st.Instances[0].State
				}
			} else {
				state = h.k.State()
			}
			got[h.name()] = state
			want := "BACKUP"
			if h.name() == exp {
				want = "MASTER"
			}
			ok = ok && state == want
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.violation(fault, "after recovery the hosts report %v, want %s MASTER and the others BACKUP", got, exp)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// fault is one kind of fault: inject it into a target, hold, heal. heal returns the moment
// the group can be asked to be right again.
type fault struct {
	name    string
	targets func(c *chaos) []*chaosHost
	run     func(c *chaos, h *chaosHost, hold time.Duration) (healed time.Time, err error)
}

func allHosts(c *chaos) []*chaosHost { return c.hosts }
func hapairHosts(c *chaos) []*chaosHost {
	var out []*chaosHost
	for _, h := range c.hosts {
		if h.d != nil {
			out = append(out, h)
		}
	}
	return out
}

func (c *chaos) set(f func()) { c.mu.Lock(); f(); c.mu.Unlock() }

var chaosFaults = []fault{
	{"VRRP loss 30%", allHosts, func(c *chaos, h *chaosHost, hold time.Duration) (time.Time, error) {
		if err := h.host.DropVRRP(30); err != nil {
			return time.Time{}, err
		}
		time.Sleep(2 * hold)
		return time.Now(), h.host.DropVRRP(0)
	}},
	{"partition", allHosts, func(c *chaos, h *chaosHost, hold time.Duration) (time.Time, error) {
		c.set(func() { h.isolated = true })
		if err := h.host.Isolate(); err != nil {
			return time.Time{}, err
		}
		time.Sleep(hold)
		err := h.host.Heal()
		c.set(func() { h.isolated = false })
		return time.Now(), err
	}},
	{"link down/up", allHosts, func(c *chaos, h *chaosHost, hold time.Duration) (time.Time, error) {
		c.set(func() { h.linkDown = true })
		if err := h.host.SetLink(context.Background(), false); err != nil {
			return time.Time{}, err
		}
		time.Sleep(hold)
		err := h.host.SetLink(context.Background(), true)
		c.set(func() { h.linkDown = false })
		return time.Now(), err
	}},
	{"SIGKILL hapair", hapairHosts, func(c *chaos, h *chaosHost, hold time.Duration) (time.Time, error) {
		c.set(func() { h.killed = true })
		if err := h.d.proc.Signal(syscall.SIGKILL); err != nil {
			return time.Time{}, err
		}
		<-h.d.proc.Done()
		time.Sleep(hold)
		h.d.start()
		h.procs = append(h.procs, h.d.proc)
		c.set(func() { h.killed = false })
		return time.Now(), nil
	}},
	{"SIGSTOP/SIGCONT hapair", hapairHosts, func(c *chaos, h *chaosHost, hold time.Duration) (time.Time, error) {
		c.set(func() { h.stopped = true })
		if err := h.d.proc.Signal(syscall.SIGSTOP); err != nil {
			return time.Time{}, err
		}
		time.Sleep(hold)
		err := h.d.proc.Signal(syscall.SIGCONT)
		c.set(func() { h.stopped = false })
		return time.Now(), err
	}},
	{"HAProxy killed", hapairHosts, func(c *chaos, h *chaosHost, hold time.Duration) (time.Time, error) {
		old, err := haproxyMasterIn(h.host.NS)
		if err != nil {
			return time.Time{}, err
		}
		c.set(func() { h.haproxyDown = true })
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			return time.Time{}, err
		}
		// hapair restarts it (backoff 0.5 s); the liveness check trusts it after its rise hold.
		deadline := time.Now().Add(15 * time.Second)
		for {
			pid, err := haproxyMasterIn(h.host.NS)
			if err == nil && pid != old {
				break
			}
			if time.Now().After(deadline) {
				return time.Time{}, fmt.Errorf("%s: HAProxy not restarted within 15 s", h.name())
			}
			time.Sleep(50 * time.Millisecond)
		}
		time.Sleep(haproxyRiseSettle)
		c.set(func() { h.haproxyDown = false })
		return time.Now(), nil
	}},
	{"reload storm", hapairHosts, func(c *chaos, h *chaosHost, hold time.Duration) (time.Time, error) {
		return c.reloadStorm(h)
	}},
	{"CPU starvation", hapairHosts, func(c *chaos, h *chaosHost, hold time.Duration) (time.Time, error) {
		return c.starve(h, hold)
	}},
	{"forged advert flood", allHosts, func(c *chaos, h *chaosHost, hold time.Duration) (time.Time, error) {
		end := time.Now().Add(hold)
		for time.Now().Before(end) {
			for range 50 {
				if err := c.forgeOnce(); err != nil {
					return time.Time{}, err
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		return time.Now(), nil
	}},
}

// reloadStorm sends SIGHUPs in quick succession with good and bad files (a priority out of
// range, a half-written file, a change that needs a restart), ends on a good file and checks
// that exactly that file is in force: nothing half-applied.
func (c *chaos) reloadStorm(h *chaosHost) (time.Time, error) {
	good := func(prio int) string {
		return strings.Replace(h.goodYAML, fmt.Sprintf("priority: %d\n", h.prio), fmt.Sprintf("priority: %d\n", prio), 1)
	}
	bad := []string{
		strings.Replace(h.goodYAML, fmt.Sprintf("priority: %d\n", h.prio), "priority: 999\n", 1),
		h.goodYAML[:len(h.goodYAML)/2],
		strings.Replace(h.goodYAML, "virtual_router_id: 51", "virtual_router_id: 52", 1),
	}
	write := func(text string) error {
		tmp := h.d.cfgPath + ".tmp"
		if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
			return err
		}
		return os.Rename(tmp, h.d.cfgPath)
	}
	final := h.prio
	for i := range 6 + c.rng.IntN(6) {
		text := bad[c.rng.IntN(len(bad))]
		if i%2 == 0 {
			final = h.prio + c.rng.IntN(2) // 110/111, 100/101: the order of the group stays
			text = good(final)
		}
		if err := write(text); err != nil {
			return time.Time{}, err
		}
		if err := h.d.proc.Signal(syscall.SIGHUP); err != nil {
			return time.Time{}, err
		}
		time.Sleep(time.Duration(50+c.rng.IntN(250)) * time.Millisecond)
	}
	if err := write(good(final)); err != nil {
		return time.Time{}, err
	}
	// `hapair reload` waits for the outcome of a reload that started after its own signal,
	// so the storm's queued SIGHUPs cannot be taken for it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := h.host.Run(ctx, hapairBin, "reload", "--config", h.d.cfgPath); err != nil {
		c.violation("reload storm", "%s: the last, good file was not reloaded: %v\n%s", h.name(), err, out)
	}
	c.set(func() { h.cfgPrio = final })
	st, err := hapairStatus(h.host)
	if err != nil {
		return time.Now(), err
	}
	if len(st.Instances) != 1 || st.Instances[0].BasePriority != final || !slices.Equal(st.Instances[0].VIPs, []string{vipCIDR}) {
		c.violation("reload storm", "%s: after the storm status shows %+v, want base priority %d and VIPs [%s]", h.name(), st.Instances, final, vipCIDR)
	}
	return time.Now(), nil
}

// starve pins hapair to one CPU and runs three busy loops there for hold.
func (c *chaos) starve(h *chaosHost, hold time.Duration) (time.Time, error) {
	pid := strconv.Itoa(h.d.proc.PID())
	ctx := context.Background()
	if out, err := exec.Command("taskset", "-a", "-p", "-c", "0", pid).CombinedOutput(); err != nil {
		return time.Time{}, fmt.Errorf("taskset: %v %s", err, out)
	}
	var hogs []*lab.Proc
	for i := range 3 {
		p, err := h.host.Start(ctx, filepath.Join(h.host.Dir(), fmt.Sprintf("hog%d.log", i)), "taskset", "-c", "0", "sh", "-c", "while :; do :; done")
		if err != nil {
			return time.Time{}, err
		}
		hogs = append(hogs, p)
	}
	time.Sleep(hold)
	for _, p := range hogs {
		_ = p.Kill()
		<-p.Done()
	}
	all := fmt.Sprintf("0-%d", max(1, numCPU())-1)
	if out, err := exec.Command("taskset", "-a", "-p", "-c", all, pid).CombinedOutput(); err != nil {
		return time.Time{}, fmt.Errorf("taskset: %v %s", err, out)
	}
	return time.Now(), nil
}

func numCPU() int {
	n := 0
	data, _ := os.ReadFile("/proc/cpuinfo")
	for line := range strings.Lines(string(data)) {
		if strings.HasPrefix(line, "processor") {
			n++
		}
	}
	return n
}

// forgeOnce sends one round of what the hostile neighbour knows to send: the right password
// with a foreign address list, our VIP twice, a wrong password, and replays of a real advert
// it heard with TTL 64 (as if routed) and with a corrupt checksum. Every one must be dropped;
// a replay at TTL 255 and with the right checksum is the real thing to VRRP (keepalived and
// hapair alike, PASS is not a signature) and is not sent.
func (c *chaos) forgeOnce() error {
	type pkt struct {
		b   []byte
		ttl int
	}
	var pkts []pkt
	for _, b := range c.forged {
		pkts = append(pkts, pkt{b, 255})
	}
	if heard := c.forger.Heard(); len(heard) > 0 {
		real := heard[len(heard)-1]
		corrupt := slices.Clone(real)
		corrupt[6] ^= 0x5a // the checksum field
		pkts = append(pkts, pkt{real, 64}, pkt{corrupt, 255})
	}
	for _, p := range pkts {
		if err := c.forger.Send(p.b, p.ttl); err != nil {
			return err
		}
	}
	c.mu.Lock()
	c.forgedSent += len(pkts)
	c.mu.Unlock()
	return nil
}

// background forgery: a few bad packets every 300 ms for the whole run.
func (c *chaos) forgeAll(ctx context.Context) {
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			_ = c.forgeOnce()
		}
	}
}

// haproxyMasterIn finds the HAProxy master running in a namespace: the haproxy process whose
// parent is not haproxy.
func haproxyMasterIn(ns string) (int, error) {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return 0, fmt.Errorf("ip netns pids %s: %w", ns, err)
	}
	comm := func(pid string) string {
		b, _ := os.ReadFile("/proc/" + pid + "/comm")
		return strings.TrimSpace(string(b))
	}
	for _, pid := range strings.Fields(string(out)) {
		if comm(pid) != "haproxy" {
			continue
		}
		stat, _ := os.ReadFile("/proc/" + pid + "/stat")
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) > 1 && comm(f[1]) != "haproxy" {
			return strconv.Atoi(pid)
		}
	}
	return 0, fmt.Errorf("no HAProxy master in %s", ns)
}

func hapairStatus(h *lab.Host) (status.Status, error) {
	var st status.Status
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: h.DialContext, DisableKeepAlives: true}}
	resp, err := client.Get("http://127.0.0.1:9479/status")
	if err != nil {
		return st, fmt.Errorf("%s: status: %w", h.Name, err)
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// metricValue reads one unlabelled sample from hapair's /metrics in host h.
func metricValue(h *lab.Host, name string) (float64, error) {
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: h.DialContext, DisableKeepAlives: true}}
	resp, err := client.Get("http://127.0.0.1:9479/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		return 0, fmt.Errorf("no %s", name)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

// sample records each running hapair's goroutines and open fds, between faults.
func (c *chaos) sample() {
	for _, h := range hapairHosts(c) {
		g, err1 := metricValue(h.host, "go_goroutines")
		f, err2 := metricValue(h.host, "process_open_fds")
		if err1 != nil || err2 != nil {
			continue
		}
		pid := h.d.proc.PID()
		c.mu.Lock()
		c.goroutines[pid] = append(c.goroutines[pid], g)
		c.fds[pid] = append(c.fds[pid], f)
		c.mu.Unlock()
	}
}

func TestChaos(t *testing.T) {
	labtest.RequireCommands(t, "haproxy", "keepalived", "nft", "taskset")
	seed, duration := chaosSettings(t)
	t.Logf("chaos: seed %d, duration %s; replay with: make chaos SEED=%d DURATION=%s", seed, duration, seed, duration)

	l := labtest.New(t)
	c := &chaos{t: t, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), rows: map[string]*faultRow{},
		goroutines: map[int][]float64{}, fds: map[int][]float64{}}
	lb1 := labtest.AddHost(t, l, "lb1", l.Addr(11))
	lb2 := labtest.AddHost(t, l, "lb2", l.Addr(12))
	lb3 := labtest.AddHost(t, l, "lb3", l.Addr(13))
	c.evil = labtest.AddHost(t, l, "evil", l.Addr(66))
	c.cli = labtest.AddHost(t, l, "cli", l.Addr(50))

	for _, s := range []struct {
		h    *lab.Host
		prio int
	}{{lb1, 110}, {lb2, 100}} {
		cfg := haproxyConfigFile(t, s.h, lab.HAProxyConfig{Name: s.h.Name}.Render())
		d := startDaemon(t, s.h, labNode{Priority: s.prio, AuthPass: chaosPass, HAProxyConfig: cfg})
		c.hosts = append(c.hosts, &chaosHost{host: s.h, prio: s.prio, cfgPrio: s.prio, d: d, procs: []*lab.Proc{d.proc}, goodYAML: d.node.YAML()})
	}
	ctx := context.Background()
	hp, err := lb3.StartHAProxy(ctx, lab.HAProxyConfig{Name: "lb3"}.Render(), "")
	if err != nil {
		t.Fatal(err)
	}
	k, err := lb3.StartKeepalived(ctx, lab.KeepalivedConfig{Priority: 95, AuthPass: chaosPass, VIPs: []string{vipCIDR},
		TrackScript: hp.TrackScript(-20)}, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- keepalived log ---\n%s", k.Output())
		}
	})
	c.hosts = append(c.hosts, &chaosHost{host: lb3, prio: 95, cfgPrio: 95, k: k})

	c.hosts[0].d.waitState(0, "MASTER", 15*time.Second)
	waitVIP(t, 10*time.Second, lb1, lb1, lb2, lb3)
	src := c.evil.IP()
	c.forged = [][]byte{
		forgedAdvert(t, src, 254, chaosPass, "10.0.0.99"),
		forgedAdvert(t, src, 254, chaosPass, vip.String(), vip.String()),
		forgedAdvert(t, src, 254, "guessed!", vip.String()),
	}
	if c.forger, err = c.evil.NewForger(); err != nil {
		t.Fatal(err)
	}
	defer c.forger.Close()
	client, err := c.cli.StartClientWith(ctx, lab.ClientOptions{URL: "http://" + vip.String() + "/", Every: 50 * time.Millisecond, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.WaitServedBy(ctx, time.Now(), "lb1"); err != nil {
		t.Fatal(err)
	}

	bg, stopBG := context.WithCancel(ctx)
	var bgDone sync.WaitGroup
	bgDone.Go(func() { c.watchNoMaster(bg) })
	bgDone.Go(func() { c.forgeAll(bg) })

	end := time.Now().Add(duration)
	c.sample()
	for time.Now().Before(end) {
		f := chaosFaults[c.rng.IntN(len(chaosFaults))]
		targets := f.targets(c)
		h := targets[c.rng.IntN(len(targets))]
		hold := time.Second + time.Duration(c.rng.IntN(3000))*time.Millisecond
		c.mu.Lock()
		c.current = f.name
		c.row(f.name).injected++
		c.mu.Unlock()
		start := time.Now()
		t.Logf("%s inject %s on %s for %s", start.Format("15:04:05.000"), f.name, h.name(), hold)
		healed, err := f.run(c, h, hold)
		if err != nil {
			stopBG()
			bgDone.Wait()
			t.Fatalf("%s on %s: %v", f.name, h.name(), err)
		}
		took := c.recover(f.name, healed)
		c.checkStates(f.name)
		c.mu.Lock()
		r := c.row(f.name)
		r.worst = max(r.worst, took)
		c.spans = append(c.spans, faultSpan{f.name, start, time.Now()})
		c.current = ""
		c.mu.Unlock()
		t.Logf("%s healed %s on %s: right MASTER alone after %s", time.Now().Format("15:04:05.000"), f.name, h.name(), took.Round(time.Millisecond))
		c.sample()
	}
	stopBG()
	bgDone.Wait()
	stats := client.Stop()
	c.endChecks()
	c.attribute(stats)
	t.Log("\n" + c.table(seed, duration, stats))
	if len(c.notes) > 0 {
		t.Errorf("%d invariant violations (seed %d):\n%s", len(c.notes), seed, strings.Join(c.notes, "\n"))
	}
}

// endChecks: no panic in any hapair log, no growth of goroutines or fds across a process's
// life, and no process left behind by a graceful stop.
func (c *chaos) endChecks() {
	const row = "(run) leaks, panics"
	c.set(func() { c.row(row) })
	for _, h := range hapairHosts(c) {
		for _, p := range h.procs {
			out := p.Output()
			for _, sign := range []string{"panic:", "fatal error:", "DATA RACE"} {
				if strings.Contains(out, sign) {
					c.violation(row, "%s: hapair pid %d logged %q", h.name(), p.PID(), sign)
				}
			}
		}
	}
	c.mu.Lock()
	type series struct {
		pid       int
		what      string
		vals      []float64
		allowance float64
	}
	var all []series
	for pid, v := range c.goroutines {
		all = append(all, series{pid, "goroutines", v, 10})
	}
	for pid, v := range c.fds {
		all = append(all, series{pid, "open fds", v, 5})
	}
	c.mu.Unlock()
	sort.Slice(all, func(i, j int) bool {
		return all[i].pid < all[j].pid || (all[i].pid == all[j].pid && all[i].what < all[j].what)
	})
	for _, s := range all {
		if len(s.vals) < 3 {
			continue // too short a life to tell a leak from start-up
		}
		// The second sample is the baseline: the first may precede checks' first results.
		if first, last := s.vals[1], s.vals[len(s.vals)-1]; last > first+s.allowance {
			c.violation(row, "pid %d: %s grew from %v to %v over %d samples: %v", s.pid, s.what, first, last, len(s.vals), s.vals)
		}
	}
	for _, h := range hapairHosts(c) {
		if err := h.d.proc.Stop(15 * time.Second); err != nil {
			c.violation(row, "%s: hapair did not stop cleanly: %v", h.name(), err)
			continue
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			out, _ := exec.Command("ip", "netns", "pids", h.host.NS).Output()
			left := strings.Fields(string(out))
			if len(left) == 0 {
				break
			}
			if time.Now().After(deadline) {
				var names []string
				for _, pid := range left {
					b, _ := os.ReadFile("/proc/" + pid + "/comm")
					names = append(names, pid+" "+strings.TrimSpace(string(b)))
				}
				c.violation(row, "%s: processes left after hapair stopped: %v", h.name(), names)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// attribute charges each failure window of the client to the fault during which it began.
func (c *chaos) attribute(stats lab.ClientStats) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range stats.Windows {
		name := "(between faults)"
		for _, s := range c.spans {
			if !w.Start.Before(s.start) && w.Start.Before(s.end) {
				name = s.name
				break
			}
		}
		c.row(name).failed += w.Failed
		c.t.Logf("client failures %s: %d requests from %s for %s (%s)", name, w.Failed, w.Start.Format("15:04:05.000"),
			w.Duration().Round(time.Millisecond), w.Err)
	}
}

func (c *chaos) table(seed uint64, d time.Duration, stats lab.ClientStats) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, 0, len(c.rows))
	for n := range c.rows {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "chaos: seed %d, duration %s, recovery deadline %s (Master_Down_Interval + Skew_Time at priority 95)\n",
		seed, d, chaosDeadline.Round(time.Millisecond))
	fmt.Fprintf(&b, "| fault | times injected | invariant violations | worst recovery | client failed requests |\n| --- | --- | --- | --- | --- |\n")
	total := faultRow{}
	for _, n := range names {
		r := c.rows[n]
		worst := "-"
		if r.injected > 0 {
			worst = r.worst.Round(10 * time.Millisecond).String()
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %d |\n", n, r.injected, r.violations, worst, r.failed)
		total.injected += r.injected
		total.violations += r.violations
		total.failed += r.failed
	}
	fmt.Fprintf(&b, "| total | %d | %d | | %d |\n", total.injected, total.violations, total.failed)
	fmt.Fprintf(&b, "client: %d requests, %d failed; forged or replayed adverts sent: %d\n", stats.OK+stats.Failed, stats.Failed, c.forgedSent)
	fmt.Fprintf(&b, "replay: make chaos SEED=%d DURATION=%s\n", seed, d)
	return b.String()
}
