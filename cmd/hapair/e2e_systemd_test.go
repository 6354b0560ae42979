package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hapair/hapair/cmd/internal/lab"
	"github.com/hapair/hapair/cmd/internal/lab/labtest"
	"github.com/hapair/hapair/cmd/internal/nspawn"
	"github.com/hapair/hapair/vrrp/transport/steady"
)

// TestUnitUnderSystemd installs the .deb in a Debian booted with a real systemd as PID 1
// (systemd-nspawn) whose network is a lab host, and checks the unit the way an operator meets
// it: `systemctl start`, reload, a crash, a watchdog abort, an upgrade, a stop.
func TestUnitUnderSystemd(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("lab test")
	}
	labtest.RequireRoot(t)
	labtest.RequireCommands(t, nspawn.Required...)
	labtest.RequireCommands(t, "dpkg-deb")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	rootfs, err := nspawn.Rootfs(ctx, "", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	debs := t.TempDir()
	debV1 := buildDeb(t, debs, "v0.1.0-sdtest", "0.1.0+sdtest")
	debV2 := buildDeb(t, debs, "v0.2.0-sdtest", "0.2.0+sdtest")
	if err := os.Chmod(debs, 0o755); err != nil {
		t.Fatal(err)
	}

	l := labtest.New(t)
	lb1, err := l.AddHost("lb1", l.Addr(11))
	if err != nil {
		t.Fatal(err)
	}
	m, err := nspawn.Boot(ctx, nspawn.Options{
		Rootfs: rootfs, NetNS: "/run/netns/" + lb1.NS, Binds: []string{debs},
		Log: filepath.Join(l.Dir(), "console.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	c := &container{t: t, m: m, host: lb1}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := m.Exec(context.Background(), "journalctl", "-u", "hapair", "--no-pager", "-n", "150")
			t.Logf("--- journal of hapair.service ---\n%s", out)
		}
		if err := m.Close(); err != nil {
			t.Errorf("close container: %v", err)
		}
	})

	c.must("dpkg", "-i", debV1)
	haproxyCfg := lab.HAProxyConfig{Name: "lb1"}.Render()
	// maxconn 8000 needs about 16000 descriptors, far past the soft limit of 1024: the unit's
	// LimitNOFILE must let HAProxy raise it. (Not 20000 as in production examples: the hard
	// limit of the machines this runs on is 20000, and no container can go past it.)
	haproxyCfg = strings.Replace(haproxyCfg, "maxconn 2000\n", "maxconn 8000\n", 1)
	c.write("/etc/haproxy/haproxy.cfg", haproxyCfg)
	node := labNode{
		RouterID: "lb1", Priority: 110, VIPs: []string{vipCIDR},
		HAProxyConfig: "/etc/haproxy/haproxy.cfg", RuntimeDir: "/run/hapair",
		StatsURL: "http://127.0.0.1:8404/stats;csv",
		Extra:    "vrrp_rt_priority: 10\n",
	}
	goodYAML := node.YAML()
	c.write("/etc/hapair/hapair.yaml", goodYAML)
	// A short watchdog keeps the abort test quick; everything else is the shipped unit.
	c.write("/etc/systemd/system/hapair.service.d/test.conf", "[Service]\nWatchdogSec=4s\n")
	c.must("systemctl", "daemon-reload")

	t.Run("active only after READY", func(t *testing.T) {
		c.t = t
		c.must("systemctl", "start", "hapair")
		// systemctl start returns once the unit is active: READY has been sent, and hapair
		// sends it only once the election has an outcome (MASTER here, alone on the link).
		st := c.status()
		if got := st.instanceState("VI_LOGS"); got != "MASTER" {
			t.Fatalf("right after `systemctl start`, VI_LOGS is %q, want MASTER", got)
		}
		// Alone on the link it becomes MASTER only after Master_Down_Interval (3.6 s): a unit
		// active sooner would not have waited for READY.
		start := c.propUsec("ExecMainStartTimestampMonotonic")
		active := c.propUsec("ActiveEnterTimestampMonotonic")
		master := c.journalTime(`\(VI_LOGS\) Entering MASTER STATE`)
		if usec(active-start) < 3*time.Second {
			t.Errorf("unit active %s after its main process started, before Master_Down_Interval", usec(active-start))
		}
		// journald stamps a line when it reads it from the pipe, READY comes through another
		// socket: the two may pass each other by a few milliseconds.
		if d := usec(active - master); d < -100*time.Millisecond || d > time.Second {
			t.Errorf("unit active %s after the MASTER line, want within 100 ms before to 1 s after", d)
		}
		t.Logf("main process started, MASTER after %s, unit active after %s", usec(master-start), usec(active-start))
		if !c.hasVIP() {
			t.Error("MASTER without the VIP")
		}
	})

	t.Run("VIP deleted by hand comes back, woken by netlink", func(t *testing.T) {
		// The unit's sandbox (RestrictNamespaces forbids setns) must leave the address watch
		// working: without it a VIP deleted by hand waits for the once-a-second check.
		c.t = t
		since := c.journalCursor()
		if _, err := c.host.Run(context.Background(), "ip", "addr", "del", vipCIDR, "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(3 * time.Second)
		for !c.hasVIP() {
			if time.Now().After(deadline) {
				t.Fatal("the VIP deleted by hand is not back after 3 s")
			}
			time.Sleep(5 * time.Millisecond)
		}
		out := string(c.must("journalctl", "-u", "hapair", "--no-pager", "-o", "cat", "--after-cursor", since))
		if !strings.Contains(out, "(VI_LOGS) VIP removed from the interface while MASTER") {
			t.Errorf("no wake-up by the address watch in the journal:\n%s", out)
		}
		all := string(c.must("journalctl", "-u", "hapair", "--no-pager", "-o", "cat"))
		if strings.Contains(all, "Watching addresses failed") {
			t.Errorf("the address watch failed under the unit:\n%s", all)
		}
	})

	t.Run("vrrp_rt_priority: hapair SCHED_RR, HAProxy not", func(t *testing.T) {
		// The unit's sandbox must allow SCHED_RR (no RestrictRealtime, CAP_SYS_NICE kept).
		c.t = t
		main := strings.TrimSpace(string(c.must("systemctl", "show", "-p", "MainPID", "--value", "hapair")))
		stats := string(c.must("sh", "-c", "cat /proc/"+main+"/task/*/stat"))
		policies := map[string]int{}
		for l := range strings.Lines(stats) {
			policies[parseStatPolicy(t, l)]++
		}
		if policies["SCHED_RR 10"] < 3 || policies["SCHED_OTHER 0"] != 1 || len(policies) != 2 {
			t.Errorf("hapair's threads under the unit: %v, want SCHED_RR 10 but the one that forks", policies)
		}
		pid := c.status().HAProxy.PID
		if got := parseStatPolicy(t, string(c.must("cat", fmt.Sprintf("/proc/%d/stat", pid)))); got != "SCHED_OTHER 0" {
			t.Errorf("HAProxy master under the unit: %s, want SCHED_OTHER 0", got)
		}
		if j := string(c.must("journalctl", "-u", "hapair", "--no-pager", "-o", "cat")); strings.Contains(j, "Real-time priority not set") {
			t.Errorf("the unit refused the real-time priority:\n%s", j)
		}
	})

	t.Run("a lone MASTER's adverts from its steady sender thread", func(t *testing.T) {
		// Under the unit's sandbox (seccomp filter, RestrictNamespaces, /run/hapair on tmpfs):
		// one thread blocks every signal, the sender of package steady.
		if !steady.Supported() {
			t.Skip("no steady sender on this architecture")
		}
		c.t = t
		main := strings.TrimSpace(string(c.must("systemctl", "show", "-p", "MainPID", "--value", "hapair")))
		status := string(c.must("sh", "-c", "grep -h SigBlk /proc/"+main+"/task/*/status"))
		const both = 1<<(syscall.SIGTERM-1) | 1<<(syscall.SIGURG-1)
		senders := 0
		for l := range strings.Lines(status) {
			hex := strings.TrimSpace(strings.TrimPrefix(l, "SigBlk:"))
			if m, err := strconv.ParseUint(hex, 16, 64); err == nil && m&both == both {
				senders++
			}
		}
		if senders != 1 {
			t.Errorf("hapair under the unit, a lone MASTER: %d threads block every signal, want its one steady sender\n%s", senders, status)
		}
	})

	t.Run("collections paced by allocation, under the unit's GOMEMLIMIT", func(t *testing.T) {
		// The unit's GOGC=50 is taken over by package gcpace: GOGC off (no collection every two
		// minutes), and a memory limit that follows the live heap, under the unit's 64 MiB.
		c.t = t
		gogc, err := metricValue(c.host, "go_gc_gogc_percent")
		if err != nil {
			t.Fatal(err)
		}
		limit, err := metricValue(c.host, "go_gc_gomemlimit_bytes")
		if err != nil {
			t.Fatal(err)
		}
		// runtime/metrics keeps GOGC as an unsigned integer: off (-1) reads 2^64-1.
		if gogc != -1 && gogc != math.MaxUint64 {
			t.Errorf("go_gc_gogc_percent %v under the unit, want off (-1, or 2^64-1 as the runtime's unsigned metric says it)", gogc)
		}
		if limit <= 0 || limit >= 64<<20 {
			t.Errorf("go_gc_gomemlimit_bytes %v under the unit, want the pacer's, below the unit's 64 MiB", limit)
		}
		t.Logf("memory limit %.1f MiB", limit/(1<<20))
	})

	t.Run("RuntimeDirectoryMode", func(t *testing.T) {
		c.t = t
		out := strings.TrimSpace(string(c.must("stat", "-c", "%a %U", "/run/hapair")))
		if out != "750 root" {
			t.Errorf("/run/hapair is %q, want the unit's RuntimeDirectoryMode=0750 (root)", out)
		}
	})

	t.Run("LimitNOFILE fits HAProxy's maxconn", func(t *testing.T) {
		c.t = t
		openFiles := func(when string) {
			pid := c.status().HAProxy.PID
			if pid == 0 {
				t.Fatalf("%s: no HAProxy pid in status", when)
			}
			limits := string(c.must("cat", fmt.Sprintf("/proc/%d/limits", pid)))
			m := regexp.MustCompile(`Max open files\s+(\d+)\s+(\d+)`).FindStringSubmatch(limits)
			if m == nil {
				t.Fatalf("%s: no open-files limit in:\n%s", when, limits)
			}
			if soft, _ := strconv.Atoi(m[1]); soft < 16000 {
				t.Errorf("%s: HAProxy (maxconn 8000) runs with %s open files, want >= 16000", when, m[1])
			}
		}
		openFiles("at the start")
		// A reload re-executes the master: it must come up with the same limit.
		c.must("hapair", "reload", "--config", "/etc/hapair/hapair.yaml")
		openFiles("after a reload")
	})

	t.Run("reload with a bad file fails", func(t *testing.T) {
		c.t = t
		c.write("/etc/hapair/hapair.yaml", strings.Replace(goodYAML, "priority: 110", "priority: 999", 1))
		out, err := c.m.Exec(ctx, "systemctl", "reload", "hapair")
		if err == nil {
			t.Errorf("systemctl reload with priority 999 succeeded:\n%s", out)
		}
		c.write("/etc/hapair/hapair.yaml", goodYAML)
		if st := c.prop("ActiveState"); st != "active" {
			t.Errorf("after a refused reload the unit is %s, want active", st)
		}
		c.must("systemctl", "reload", "hapair")
	})

	t.Run("kill -9 of hapair: restarted, HAProxy and the VIP stay", func(t *testing.T) {
		c.t = t
		c.crashAndCheck(true, func(mainPID int) {
			c.must("kill", "-9", strconv.Itoa(mainPID))
		})
	})

	// A hapair frozen past the watchdog (4 s here, 10 s in the unit) has sent no advert for longer
	// than Master_Down_Interval (3.6 s): its peer has taken the VIP, or would have. The abort
	// removes its state records, so the VIP goes through a normal election; HAProxy stays.
	t.Run("watchdog abort: restarted quietly, HAProxy stays, no resume", func(t *testing.T) {
		c.t = t
		since := c.journalCursor()
		c.crashAndCheck(false, func(mainPID int) {
			c.must("kill", "-STOP", strconv.Itoa(mainPID))
		})
		out := string(c.must("journalctl", "-u", "hapair", "--no-pager", "-o", "cat", "--after-cursor", since))
		if !strings.Contains(out, "Watchdog timeout") {
			t.Errorf("no watchdog timeout in the journal:\n%s", out)
		}
		if n := len(regexp.MustCompile(`(?m)^goroutine \d+ \[`).FindAllString(out, -1)); n > 0 {
			t.Errorf("the watchdog abort poured %d goroutine traces into the journal", n)
		}
	})

	t.Run("dpkg -i of a newer .deb upgrades in place", func(t *testing.T) {
		c.t = t
		mainPID := c.propInt("MainPID")
		hp := c.status().HAProxy.PID
		watch := c.watchVIP()
		t.Logf("dpkg -i %s:\n%s", filepath.Base(debV2), c.must("dpkg", "-i", debV2))
		st := c.waitStatus(func(s statusJSON) bool { return strings.Contains(s.Version, "0.2.0") })
		lost := watch()
		if got := c.propInt("MainPID"); got != mainPID {
			t.Errorf("main pid %d after the upgrade, want %d (in place)", got, mainPID)
		}
		if st.HAProxy.PID != hp {
			t.Errorf("HAProxy pid %d after the upgrade, want %d", st.HAProxy.PID, hp)
		}
		if lost > 0 {
			t.Errorf("the VIP was missing in %d polls during the upgrade", lost)
		}
	})

	t.Run("a bad file and restart: no restart loop, starts once fixed", func(t *testing.T) {
		c.t = t
		c.write("/etc/hapair/hapair.yaml", strings.Replace(goodYAML, "priority: 110", "priority: 999", 1))
		if out, err := c.m.Exec(ctx, "systemctl", "restart", "hapair"); err == nil {
			t.Fatalf("restart with a broken file succeeded:\n%s", out)
		}
		time.Sleep(6 * time.Second) // RestartSec=1s: a loop would have tried 5 times by now
		if n := c.propInt("NRestarts"); n > 1 {
			t.Errorf("a config error restarted the unit %d times", n)
		}
		if r := c.prop("Result"); r == "start-limit-hit" {
			t.Errorf("a config error left the unit failed for good (%s)", r)
		}
		c.write("/etc/hapair/hapair.yaml", goodYAML)
		c.must("systemctl", "start", "hapair")
		if st := c.status(); st.instanceState("VI_LOGS") != "MASTER" {
			t.Errorf("after the fix: %+v", st)
		}
	})

	t.Run("a runtime_dir the unit cannot write: no restart loop", func(t *testing.T) {
		// ProtectSystem=strict makes /var read-only to the unit: creating the directory fails
		// with EROFS, which only the operator mends. It exited 1, and systemd restarted it
		// against the same wall until the start limit.
		c.t = t
		unwritable := node
		unwritable.RuntimeDir = "/var/lib/hapair-run"
		c.write("/etc/hapair/hapair.yaml", unwritable.YAML())
		if out, err := c.m.Exec(ctx, "systemctl", "restart", "hapair"); err == nil {
			t.Fatalf("restart with an unwritable runtime_dir succeeded:\n%s", out)
		}
		time.Sleep(4 * time.Second) // RestartSec=1s: a loop would have tried 3 times by now
		if n := c.propInt("NRestarts"); n > 0 {
			t.Errorf("an unwritable runtime_dir restarted the unit %d times", n)
		}
		if code := c.prop("ExecMainStatus"); code != "78" {
			t.Errorf("hapair exited %s, want 78", code)
		}
		if out, _ := c.m.Exec(ctx, "journalctl", "-u", "hapair", "-n", "20", "--no-pager"); !strings.Contains(string(out), "read-only file system") {
			t.Errorf("the journal does not say why:\n%s", out)
		}
		c.write("/etc/hapair/hapair.yaml", goodYAML)
		c.must("systemctl", "start", "hapair")
		if st := c.status(); st.instanceState("VI_LOGS") != "MASTER" {
			t.Errorf("after the fix: %+v", st)
		}
	})

	t.Run("a drain outlives a stop and a start", func(t *testing.T) {
		// The drain is a file in the runtime directory, kept until `hapair undrain` or a
		// reboot. With RuntimeDirectoryPreserve=restart systemd removed the directory at the
		// stop, and the node came back undrained, taking the VIP back mid-maintenance.
		c.t = t
		// Alone in the container, nobody takes over: drain says so and exits 1, drained.
		if out, err := c.m.Exec(ctx, "hapair", "drain", "--config", "/etc/hapair/hapair.yaml"); !strings.Contains(string(out), "drained (kept across restarts") {
			t.Fatalf("hapair drain: %v\n%s", err, out)
		}
		c.must("systemctl", "stop", "hapair")
		c.must("systemctl", "start", "hapair")
		if st := c.status(); !st.Drained {
			t.Errorf("after drain, stop and start: not drained: %+v", st)
		}
		c.must("hapair", "undrain", "--config", "/etc/hapair/hapair.yaml")
		if st := c.waitStatus(func(st statusJSON) bool { return st.instanceState("VI_LOGS") == "MASTER" }); st.Drained {
			t.Errorf("after undrain: %+v", st)
		}
	})

	t.Run("stop releases the VIP, then stops HAProxy, and leaves no process", func(t *testing.T) {
		c.t = t
		since := c.journalCursor()
		c.must("systemctl", "stop", "hapair")
		if c.hasVIP() {
			t.Error("VIP still attached after stop")
		}
		out := string(c.must("journalctl", "-u", "hapair", "--no-pager", "-o", "cat", "--after-cursor", since))
		release := strings.Index(out, "sent 0 priority")
		haproxyStop := strings.Index(out, "Stopping HAProxy")
		if release < 0 || haproxyStop < 0 || release > haproxyStop {
			t.Errorf("want the priority-0 advert before HAProxy's stop:\n%s", out)
		}
		if out, err := c.m.Exec(ctx, "pgrep", "-a", "haproxy|hapair"); err == nil {
			t.Errorf("processes left after stop:\n%s", out)
		}
	})
}

// container is the booted Debian with the lab host's network.
type container struct {
	t    *testing.T
	m    *nspawn.Machine
	host *lab.Host
}

func (c *container) must(name string, args ...string) []byte {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := c.m.Exec(ctx, name, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

func (c *container) write(path, text string) {
	c.t.Helper()
	if err := c.m.WriteFile(path, []byte(text), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

func (c *container) prop(name string) string {
	c.t.Helper()
	return strings.TrimSpace(string(c.must("systemctl", "show", "-P", name, "hapair")))
}

func (c *container) propInt(name string) int {
	c.t.Helper()
	n, err := strconv.Atoi(c.prop(name))
	if err != nil {
		c.t.Fatalf("%s: %v", name, err)
	}
	return n
}

func (c *container) propUsec(name string) int64 {
	c.t.Helper()
	n, err := strconv.ParseInt(c.prop(name), 10, 64)
	if err != nil {
		c.t.Fatalf("%s: %v", name, err)
	}
	return n
}

// journalTime is the monotonic time (µs) of the last journal line of the unit matching re.
func (c *container) journalTime(re string) int64 {
	c.t.Helper()
	out := c.must("journalctl", "-u", "hapair", "--no-pager", "-o", "json", "--output-fields=MESSAGE,__MONOTONIC_TIMESTAMP")
	rx := regexp.MustCompile(re)
	var at int64 = -1
	for _, line := range strings.Split(string(out), "\n") {
		var e struct {
			Message string `json:"MESSAGE"`
			Mono    string `json:"__MONOTONIC_TIMESTAMP"`
		}
		if json.Unmarshal([]byte(line), &e) != nil || !rx.MatchString(e.Message) {
			continue
		}
		at, _ = strconv.ParseInt(e.Mono, 10, 64)
	}
	if at < 0 {
		c.t.Fatalf("no journal line matches %s", re)
	}
	return at
}

// journalCursor returns the journal's cursor now, to read what comes after it.
func (c *container) journalCursor() string {
	c.t.Helper()
	out := string(c.must("journalctl", "-u", "hapair", "-n", "1", "--show-cursor", "--no-pager", "-o", "cat"))
	i := strings.LastIndex(out, "-- cursor: ")
	if i < 0 {
		c.t.Fatalf("no cursor in %q", out)
	}
	return strings.TrimSpace(out[i+len("-- cursor: "):])
}

func (c *container) hasVIP() bool {
	c.t.Helper()
	ok, err := c.host.HasAddr(vip)
	if err != nil {
		c.t.Fatal(err)
	}
	return ok
}

// watchVIP polls the VIP every 10 ms until the returned function is called, which returns
// how many polls found it missing.
func (c *container) watchVIP() func() int {
	var missing atomic.Int64
	stop := pollEvery(10*time.Millisecond, func() {
		if ok, err := c.host.HasAddr(vip); err == nil && !ok {
			missing.Add(1)
		}
	})
	return func() int { stop(); return int(missing.Load()) }
}

// crashAndCheck makes hapair die without a stop (through crash) and checks that systemd
// starts it again while HAProxy's master and the VIP stay.
// With keepVIP the VIP must never leave the host (a resume as MASTER); without, the new hapair
// must not resume (a watchdog abort removes the records) and wins the VIP back by election.
func (c *container) crashAndCheck(keepVIP bool, crash func(mainPID int)) {
	c.t.Helper()
	mainPID := c.propInt("MainPID")
	hp := c.status().HAProxy.PID
	restarts := c.propInt("NRestarts")
	watch := c.watchVIP()
	crash(mainPID)
	deadline := time.Now().Add(60 * time.Second)
	for c.propInt("NRestarts") == restarts || c.prop("ActiveState") != "active" {
		if time.Now().After(deadline) {
			c.t.Fatalf("hapair not restarted within 60s (ActiveState %s)", c.prop("ActiveState"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	st := c.waitStatus(func(s statusJSON) bool { return s.instanceState("VI_LOGS") == "MASTER" })
	lost := watch()
	if got := c.propInt("MainPID"); got == mainPID {
		c.t.Errorf("main pid still %d", got)
	}
	if st.HAProxy.PID != hp {
		c.t.Errorf("HAProxy master pid %d after the restart, want %d (adopted, not restarted)", st.HAProxy.PID, hp)
	}
	switch {
	case keepVIP && lost > 0:
		c.t.Errorf("the VIP was missing in %d polls (10 ms apart) across the restart", lost)
	case !keepVIP && lost == 0:
		c.t.Errorf("the VIP never left: hapair resumed MASTER after a watchdog abort")
	}
	c.t.Logf("VIP missing in %d polls (10 ms apart) across the restart", lost)
}

// statusJSON is the part of `hapair status --json` the test reads.
type statusJSON struct {
	Version   string `json:"version"`
	Drained   bool   `json:"drained"`
	Instances []struct {
		Name  string `json:"name"`
		State string `json:"state"`
	} `json:"instances"`
	HAProxy struct {
		PID int `json:"pid"`
	} `json:"haproxy"`
}

func (s statusJSON) instanceState(name string) string {
	for _, in := range s.Instances {
		if in.Name == name {
			return in.State
		}
	}
	return ""
}

func (c *container) status() statusJSON {
	c.t.Helper()
	out := c.must("hapair", "status", "--json", "--config", "/etc/hapair/hapair.yaml")
	var st statusJSON
	if err := json.Unmarshal(out, &st); err != nil {
		c.t.Fatalf("hapair status --json: %v\n%s", err, out)
	}
	return st
}

func (c *container) waitStatus(ok func(statusJSON) bool) statusJSON {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err := c.m.Exec(ctx, "hapair", "status", "--json", "--config", "/etc/hapair/hapair.yaml")
		cancel()
		var st statusJSON
		if err == nil && json.Unmarshal(out, &st) == nil && ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("status not as wanted within 30s: %v\n%s", err, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func usec(d int64) time.Duration { return time.Duration(d) * time.Microsecond }

// buildDeb builds hapair with the given version and packages it with build-deb.sh.
func buildDeb(t *testing.T, dir, version, debVersion string) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "hapair")
	// No -trimpath: the build then shares TestMain's compiled packages and only links anew.
	build := exec.Command("go", "build", "-ldflags", "-X main.version="+version+" -X main.commit=sdtest", "-o", bin, "./cmd/hapair")
	build.Dir = root
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	pkg := exec.Command("sh", "deploy/package/build-deb.sh", bin, version, dir)
	pkg.Dir = root
	out, err := pkg.CombinedOutput()
	if err != nil {
		t.Fatalf("build-deb.sh: %v\n%s", err, out)
	}
	deb := filepath.Join(dir, "hapair_"+debVersion+"_amd64.deb")
	if _, err := os.Stat(deb); err != nil {
		t.Fatalf("build-deb.sh made no %s: %v\n%s", deb, err, out)
	}
	return deb
}
