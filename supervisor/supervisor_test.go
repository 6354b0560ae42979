package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func requireHAProxy(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("haproxy not installed (make deps)")
		}
		t.Skip("haproxy not installed")
	}
	return p
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// config is a HAProxy configuration that answers every request on 127.0.0.1:port with body, and
// needs no backend server. Extra lines go into the frontend.
func config(port int, body string, extra ...string) string {
	c := fmt.Sprintf(`global
    maxconn 100
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
frontend fe
    bind 127.0.0.1:%d
    http-request return status 200 content-type text/plain string %s
`, port, body)
	for _, l := range extra {
		c += "    " + l + "\n"
	}
	return c
}

type fakeReporter struct {
	mu       sync.Mutex
	ups      []bool
	restarts int
	reloads  []ReloadResult
	exits    []int
}

func (r *fakeReporter) HAProxyUp(up bool) { r.mu.Lock(); r.ups = append(r.ups, up); r.mu.Unlock() }
func (r *fakeReporter) HAProxyRestart()   { r.mu.Lock(); r.restarts++; r.mu.Unlock() }
func (r *fakeReporter) HAProxyReload(res ReloadResult) {
	r.mu.Lock()
	r.reloads = append(r.reloads, res)
	r.mu.Unlock()
}
func (r *fakeReporter) HAProxyExit(s int) { r.mu.Lock(); r.exits = append(r.exits, s); r.mu.Unlock() }

func (r *fakeReporter) snapshot() fakeReporter {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fakeReporter{ups: slices.Clone(r.ups), restarts: r.restarts, reloads: slices.Clone(r.reloads), exits: slices.Clone(r.exits)}
}

type fixture struct {
	sup    *Supervisor
	rep    *fakeReporter
	cfg    string
	port   int
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, body string, mod func(*Config)) *fixture {
	t.Helper()
	bin := requireHAProxy(t)
	return startCommand(t, bin, body, mod)
}

func startCommand(t *testing.T, bin, body string, mod func(*Config)) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{rep: &fakeReporter{}, cfg: filepath.Join(dir, "haproxy.cfg"), port: freePort(t), done: make(chan error, 1)}
	if err := os.WriteFile(f.cfg, []byte(config(f.port, body)), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Config{Command: bin, ConfigFile: f.cfg, RuntimeDir: filepath.Join(dir, "run"), StopGrace: 2 * time.Second,
		BackoffInitial: 200 * time.Millisecond, BackoffMax: 2 * time.Second, BackoffResetAfter: 10 * time.Second}
	if mod != nil {
		mod(&c)
	}
	f.sup = New(c, f.rep, nil)
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go func() { f.done <- f.sup.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-f.done:
		case <-time.After(15 * time.Second):
			t.Error("supervisor did not stop")
		}
	})
	return f
}

func (f *fixture) event(t *testing.T, up bool, within time.Duration) Event {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case ev := <-f.sup.Events():
			if ev.Up == up {
				return ev
			}
		case <-deadline:
			t.Fatalf("no up=%t event within %s", up, within)
		}
	}
}

// waitUntil polls cond until it holds or within has passed.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func get(port int) (string, error) {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func mustGet(t *testing.T, port int, want string) {
	t.Helper()
	if body, err := get(port); err != nil || body != want {
		t.Fatalf("GET = %q, %v; want %q", body, err, want)
	}
}

// processesWith lists the pids whose command line contains s (the test's own config path, so
// only processes this test started).
func processesWith(t *testing.T, s string) []int {
	t.Helper()
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil {
			continue // gone meanwhile
		}
		stat, _ := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if strings.Contains(string(stat), ") Z ") {
			continue // a zombie is dead, only not reaped yet by its parent
		}
		if strings.Contains(string(cmdline), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func TestStartServesAndEnvironmentIsScrubbed(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	t.Setenv("WATCHDOG_USEC", "10000000")
	t.Setenv("WATCHDOG_PID", "1")
	t.Setenv("HAPAIR_TEST_OVERRIDDEN", "parent")
	f := start(t, "one", func(c *Config) { c.Env = []string{"HAPAIR_TEST_ADDED=yes", "HAPAIR_TEST_OVERRIDDEN=config"} })
	ev := f.event(t, true, 10*time.Second)
	mustGet(t, f.port, "one")
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", ev.PID))
	if err != nil {
		t.Fatal(err)
	}
	env := strings.Split(string(raw), "\x00")
	for _, kv := range env {
		if strings.HasPrefix(kv, "NOTIFY_SOCKET=") || strings.HasPrefix(kv, "WATCHDOG_") {
			t.Errorf("HAProxy got %s", kv)
		}
	}
	for _, want := range []string{"HAPAIR_TEST_ADDED=yes", "HAPAIR_TEST_OVERRIDDEN=config"} {
		if !slices.Contains(env, want) {
			t.Errorf("HAProxy's environment lacks %s", want)
		}
	}
	if slices.Contains(env, "HAPAIR_TEST_OVERRIDDEN=parent") {
		t.Error("Config.Env did not override the parent's variable")
	}
	sock, err := os.Stat(f.sup.SocketPath())
	if err != nil || sock.Mode().Perm() != 0o600 {
		t.Errorf("master socket %v mode %v, want 0600", err, sock.Mode().Perm())
	}
	dir, err := os.Stat(filepath.Dir(f.sup.SocketPath()))
	if err != nil || dir.Mode().Perm() != 0o700 {
		t.Errorf("runtime dir %v mode %v, want 0700", err, dir.Mode().Perm())
	}
	// Own process group: a signal to hapair's group does not reach HAProxy.
	if pgid, err := syscall.Getpgid(ev.PID); err != nil || pgid != ev.PID {
		t.Errorf("HAProxy's process group %d (%v), want its own (%d)", pgid, err, ev.PID)
	}
	if st := f.sup.Status(); !st.Up || st.PID != ev.PID || st.Restarts != 0 || st.LastExit != nil {
		t.Errorf("status %+v", st)
	}
}

// TestRuntimeDirModeKept: an existing runtime dir keeps its mode (systemd's
// RuntimeDirectoryMode=0750); the supervisor used to chmod it to 0700.
func TestRuntimeDirModeKept(t *testing.T) {
	run := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(run, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(run, 0o750); err != nil { // whatever the umask
		t.Fatal(err)
	}
	f := start(t, "one", func(c *Config) { c.RuntimeDir = run })
	f.event(t, true, 10*time.Second)
	fi, err := os.Stat(run)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o750 {
		t.Errorf("runtime dir mode %04o after start, want 0750 kept", fi.Mode().Perm())
	}
}

func TestExitSeenAtOnceAndRestarted(t *testing.T) {
	f := start(t, "one", nil)
	up := f.event(t, true, 10*time.Second)
	killed := time.Now()
	if err := syscall.Kill(up.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	down := f.event(t, false, 5*time.Second)
	received := time.Since(killed)
	seen := down.At.Sub(killed)
	// A figure, not a bound: how soon is the machine's load to decide. That the exit is told
	// when the master is reaped, not when its output closes, TestExitSeenWhileOutputStillOpen
	// shows by causality.
	t.Logf("exit seen %s after SIGKILL (event received after %s)", seen, received)
	if down.ExitStatus != 128+int(syscall.SIGKILL) || down.PID != up.PID || down.Reason != "killed by signal 9 (killed)" {
		t.Errorf("down event %+v, want status 137 of %d", down, up.PID)
	}
	again := f.event(t, true, 10*time.Second)
	t.Logf("restarted and up again %s after the exit (backoff 200ms ±20%%)", again.At.Sub(down.At))
	if again.PID == up.PID {
		t.Fatal("not restarted")
	}
	if gap := again.At.Sub(down.At); gap < 160*time.Millisecond {
		t.Errorf("restarted after %s, before the 200ms -20%% backoff", gap)
	}
	mustGet(t, f.port, "one")
	st := f.sup.Status()
	if st.Restarts != 1 || st.LastExit == nil || *st.LastExit != 137 || st.LastExitReason != down.Reason || st.Failures != 1 || st.Backoff != 0 {
		t.Errorf("status after restart: %+v", st)
	}
	rep := f.rep.snapshot()
	if !slices.Equal(rep.ups, []bool{true, false, true}) || rep.restarts != 1 || !slices.Equal(rep.exits, []int{137}) {
		t.Errorf("reported ups %v, restarts %d, exits %v", rep.ups, rep.restarts, rep.exits)
	}
}

// A worker killed makes the master stop everything and exit: the supervisor sees that too.
func TestWorkerDeathIsAnExit(t *testing.T) {
	f := start(t, "one", nil)
	up := f.event(t, true, 10*time.Second)
	p, err := showProc(context.Background(), f.sup.SocketPath(), cliTimeout)
	if err != nil || len(p.workers) != 1 {
		t.Fatalf("show proc: %+v, %v", p, err)
	}
	if err := syscall.Kill(p.workers[0].pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	down := f.event(t, false, 5*time.Second)
	if down.PID != up.PID || down.ExitStatus != 137 {
		t.Errorf("down event %+v, want the master exiting 137", down)
	}
	f.event(t, true, 10*time.Second)
}

// The exit is told when the master is reaped, even while something it started still holds its
// output pipe (HAProxy's workers share it).
func TestExitSeenWhileOutputStillOpen(t *testing.T) {
	script := filepath.Join(t.TempDir(), "fake-haproxy")
	// The background sleep keeps stdout open for 5 s after the "master" exits.
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho '[ALERT] fake master going down'\nsleep 5 &\nsleep 0.2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f := startCommand(t, script, "x", nil)
	down := f.event(t, false, 3*time.Second)
	t.Cleanup(func() { _ = syscall.Kill(-down.PID, syscall.SIGKILL) }) // the sleep, same group
	// Told while the straggler still holds the output (it sleeps 5 s), not once the output closed.
	if err := syscall.Kill(-down.PID, 0); err != nil {
		t.Errorf("down event received only after the output holder ended (%v)", err)
	}
	if down.ExitStatus != 3 {
		t.Errorf("exit status %d, want 3", down.ExitStatus)
	}
	// Nor does the straggler hold up the restart.
	again := f.event(t, false, 3*time.Second)
	t.Cleanup(func() { _ = syscall.Kill(-again.PID, syscall.SIGKILL) })
	if again.PID == down.PID {
		t.Errorf("second run %+v after %+v: want a restart", again, down)
	}
	if err := syscall.Kill(-down.PID, 0); err != nil {
		t.Errorf("restarted only after the first run's output holder ended (%v)", err)
	}
}

func TestCrashLoopBacksOff(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	// A port already taken: haproxy -c accepts the file, every start fails to bind and exits.
	bad := filepath.Join(t.TempDir(), "busy.cfg")
	if err := os.WriteFile(bad, []byte(config(busy.Addr().(*net.TCPAddr).Port, "x")), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Validate(context.Background(), requireHAProxy(t), bad); err != nil {
		t.Fatalf("the crash-loop config must validate: %v", err)
	}
	f := start(t, "x", func(c *Config) { c.ConfigFile = bad })
	var backoffs []time.Duration
	var last Status
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) && len(backoffs) < 5 {
		last = f.sup.Status()
		if b := last.Backoff; b > 0 && (len(backoffs) == 0 || b != backoffs[len(backoffs)-1]) {
			backoffs = append(backoffs, b)
			if last.Up || last.Failures != len(backoffs) || last.LastExit == nil || *last.LastExit != 1 {
				t.Errorf("status during the crash loop: %+v", last)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("backoffs: %v, restarts %d", backoffs, last.Restarts)
	if len(backoffs) < 4 {
		t.Fatalf("want at least 4 backoff waits, saw %v", backoffs)
	}
	// ±20% around a doubling from 200ms: each wait is longer than the one before until the 2s cap,
	// and none passes the cap + 20%.
	for i := 1; i < len(backoffs) && backoffs[i-1] < 1600*time.Millisecond; i++ {
		if backoffs[i] <= backoffs[i-1] {
			t.Errorf("backoff did not grow: %v", backoffs)
		}
	}
	for _, b := range backoffs {
		if b > 2400*time.Millisecond {
			t.Errorf("backoff %s above the 2s cap plus jitter", b)
		}
	}
	rep := f.rep.snapshot()
	if rep.restarts < len(backoffs)-1 || len(rep.exits) < len(backoffs) || slices.Contains(rep.ups, true) {
		t.Errorf("reported restarts %d, exits %v, ups %v", rep.restarts, rep.exits, rep.ups)
	}
}

func TestMissingBinaryIsAFailedStart(t *testing.T) {
	f := startCommand(t, filepath.Join(t.TempDir(), "no-haproxy"), "x", nil)
	down := f.event(t, false, 2*time.Second)
	if down.PID != 0 || down.ExitStatus != -1 || !strings.Contains(down.Reason, "no-haproxy") {
		t.Errorf("down event %+v", down)
	}
	waitUntil(t, 2*time.Second, "a backoff pending", func() bool { return f.sup.Status().Backoff > 0 })
	st := f.sup.Status()
	if !strings.Contains(st.LastStartError, "no-haproxy") || st.LastExit != nil || st.Up {
		t.Errorf("status %+v", st)
	}
}

func TestReloadRefusedKeepsTheRunningHAProxy(t *testing.T) {
	f := start(t, "one", nil)
	up := f.event(t, true, 10*time.Second)
	if err := os.WriteFile(f.cfg, []byte(config(f.port, "two", "no-such-keyword")), 0o644); err != nil {
		t.Fatal(err)
	}
	err := f.sup.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), "unknown keyword 'no-such-keyword'") {
		t.Fatalf("broken config: err = %v, want HAProxy's own words", err)
	}
	mustGet(t, f.port, "one")
	p, err := showProc(context.Background(), f.sup.SocketPath(), cliTimeout)
	if err != nil || p.master != up.PID || p.reloads != 0 {
		t.Errorf("after a refused reload show proc = %+v, %v: the master must not have been touched", p, err)
	}
	if st := f.sup.Status(); st.LastReload.Result != "refused" || !strings.Contains(st.LastReload.Error, "no-such-keyword") {
		t.Errorf("status %+v", st.LastReload)
	}
	if rep := f.rep.snapshot(); !slices.Equal(rep.reloads, []ReloadResult{"refused"}) {
		t.Errorf("reported reloads %v", rep.reloads)
	}
}

func TestReloadServesNewConfigWithoutFailedRequests(t *testing.T) {
	f := start(t, "one", nil)
	up := f.event(t, true, 10*time.Second)
	if err := os.WriteFile(f.cfg, []byte(config(f.port, "two")), 0o644); err != nil {
		t.Fatal(err)
	}
	// Requests run through the reload, and on until 20 have been answered by the new worker.
	var mu sync.Mutex
	var failed, ok, newOK int
	var errs []error
	reloaded := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			body, err := get(f.port)
			mu.Lock()
			switch {
			case err != nil:
				failed++
				errs = append(errs, err)
			case body == "two":
				ok++
				newOK++
			default:
				ok++
			}
			n := newOK
			mu.Unlock()
			select {
			case <-reloaded:
				if n >= 20 {
					return
				}
			default:
			}
		}
	}()
	began := time.Now()
	err := f.sup.Reload(context.Background())
	took := time.Since(began)
	close(reloaded)
	if err != nil {
		t.Fatalf("good reload: %v", err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the new configuration is not served")
	}
	t.Logf("reload took %s (haproxy -c, SIGUSR2, new worker in show proc); %d requests ok, %d failed", took, ok, failed)
	if failed != 0 {
		t.Errorf("%d requests failed during the reload: %v", failed, errs)
	}
	mustGet(t, f.port, "two")
	p, err := showProc(context.Background(), f.sup.SocketPath(), cliTimeout)
	if err != nil || p.master != up.PID || p.reloads != 1 {
		t.Errorf("show proc after reload %+v, %v: want the same master %d, reloaded once", p, err, up.PID)
	}
	if st := f.sup.Status(); st.PID != up.PID || !st.Up || st.LastReload.Result != "ok" || st.Restarts != 0 {
		t.Errorf("status after reload: %+v (master was %d)", st, up.PID)
	}
	if rep := f.rep.snapshot(); !slices.Equal(rep.reloads, []ReloadResult{"ok"}) {
		t.Errorf("reported reloads %v", rep.reloads)
	}
	select {
	case ev := <-f.sup.Events():
		t.Errorf("a reload is no up/down change, got %+v", ev)
	default:
	}
}

// A file that `haproxy -c` accepts can still fail to load (here: a port already taken). The
// master reports the failure, the old worker keeps serving, and the error quotes HAProxy.
func TestReloadFailingAtLoadKeepsOldWorkers(t *testing.T) {
	f := start(t, "one", nil)
	up := f.event(t, true, 10*time.Second)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if err := os.WriteFile(f.cfg, []byte(config(f.port, "two", "bind "+busy.Addr().String())), 0o644); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	err = f.sup.Reload(context.Background())
	t.Logf("failed reload reported after %s", time.Since(began))
	if err == nil || !strings.Contains(err.Error(), "cannot bind socket") {
		t.Fatalf("reload onto a busy port: err = %v, want HAProxy's bind alert", err)
	}
	t.Logf("failed reload: %v", err)
	mustGet(t, f.port, "one")
	if st := f.sup.Status(); st.PID != up.PID || !st.Up || st.LastReload.Result != "failed" {
		t.Errorf("status %+v", st)
	}
	// Fixed, the next reload works from that state.
	if err := os.WriteFile(f.cfg, []byte(config(f.port, "three")), 0o644); err != nil {
		t.Fatal(err)
	}
	began = time.Now()
	if err := f.sup.Reload(context.Background()); err != nil {
		t.Fatalf("reload after a failed one: %v", err)
	}
	t.Logf("reload after a failed one took %s", time.Since(began))
	mustGet(t, f.port, "three")
	if rep := f.rep.snapshot(); !slices.Equal(rep.reloads, []ReloadResult{"failed", "ok"}) || len(rep.exits) != 0 {
		t.Errorf("reported reloads %v, exits %v", rep.reloads, rep.exits)
	}
}

func TestReloadWithoutHAProxy(t *testing.T) {
	bin := requireHAProxy(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(config(freePort(t), "x")), 0o644); err != nil {
		t.Fatal(err)
	}
	rep := &fakeReporter{}
	s := New(Config{Command: bin, ConfigFile: cfg, RuntimeDir: filepath.Join(dir, "run")}, rep, nil)
	if err := s.Reload(context.Background()); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("Reload before Run = %v, want ErrNotRunning", err)
	}
	if !slices.Equal(rep.reloads, []ReloadResult{"failed"}) {
		t.Errorf("reported %v", rep.reloads)
	}
}

func TestStopIsSoftAndComplete(t *testing.T) {
	f := start(t, "one", nil)
	up := f.event(t, true, 10*time.Second)
	p, err := showProc(context.Background(), f.sup.SocketPath(), cliTimeout)
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	f.cancel()
	select {
	case err := <-f.done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	t.Logf("soft stop took %s", time.Since(began))
	f.done <- nil // for the cleanup
	for _, pid := range []int{up.PID, p.workers[0].pid} {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("HAProxy process %d still running after stop", pid)
		}
	}
	if _, err := get(f.port); err == nil {
		t.Fatal("HAProxy still answers after stop")
	}
	down := f.event(t, false, time.Second)
	if down.Reason != "stopped" || down.ExitStatus != 0 {
		t.Errorf("stop event %+v, want a clean soft stop (status 0)", down)
	}
	st := f.sup.Status()
	if st.Up || st.PID != 0 || st.Restarts != 0 {
		t.Errorf("status after stop %+v", st)
	}
	if rep := f.rep.snapshot(); !slices.Equal(rep.ups, []bool{true, false}) || !slices.Equal(rep.exits, []int{0}) || rep.restarts != 0 {
		t.Errorf("reported ups %v, exits %v, restarts %d", rep.ups, rep.exits, rep.restarts)
	}
}

// A soft stop lets a request in flight finish: the stop waits for it, the client gets its
// answer, and however HAProxy ends (0, 143, or 2.6.12's 139) it counts as stopped.
func TestStopWithRequestInFlight(t *testing.T) {
	f := start(t, "one", nil)
	f.event(t, true, 10*time.Second)
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", f.port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Half a request: the worker has it in flight.
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 2*time.Second, "the request accepted", func() bool {
		return len(processesWith(t, f.cfg)) == 2
	})
	began := time.Now()
	f.cancel()
	// The rest of the request comes while the stop is under way: the listener is closed.
	waitUntil(t, 2*time.Second, "the soft stop closing the listener", func() bool {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", f.port))
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	if _, err := io.WriteString(conn, "\r\n"); err != nil {
		t.Fatalf("finishing the request during the soft stop: %v", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	answer, _ := io.ReadAll(conn)
	if !strings.HasPrefix(string(answer), "HTTP/1.1 200") || !strings.HasSuffix(string(answer), "one") {
		t.Errorf("request in flight during the soft stop got %q", answer)
	}
	select {
	case err := <-f.done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	f.done <- nil
	down := f.event(t, false, time.Second)
	t.Logf("soft stop with a request in flight took %s, exit status %d", time.Since(began), down.ExitStatus)
	if down.Reason != "stopped" {
		t.Errorf("stop event %+v", down)
	}
}

// A child that ignores the soft stop gets SIGTERM once StopGrace has passed.
func TestStopEscalatesToSIGTERM(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "stubborn")
	trapped := filepath.Join(dir, "trapped") // written once SIGUSR1 is ignored
	if err := os.WriteFile(script, []byte("#!/bin/sh\ntrap '' USR1\n: > "+trapped+"\nwhile :; do sleep 0.05; done\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f := startCommand(t, script, "x", func(c *Config) { c.StopGrace = 300 * time.Millisecond })
	// A SIGUSR1 before the trap is set would kill the stub: wait for the trap, not for its pid.
	waitUntil(t, 10*time.Second, "the stub ignoring SIGUSR1", func() bool {
		_, err := os.Stat(trapped)
		return err == nil && f.sup.Status().PID != 0
	})
	pid := f.sup.Status().PID
	t.Cleanup(func() { _ = syscall.Kill(-pid, syscall.SIGKILL) }) // a last sleep, same group
	began := time.Now()
	f.cancel()
	select {
	case <-f.done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	f.done <- nil
	took := time.Since(began)
	// At least the grace; that SIGTERM (not SIGKILL after killGrace) ended it, the exit status
	// below tells.
	if took < 300*time.Millisecond {
		t.Errorf("stop took %s, less than the 300ms grace before SIGTERM", took)
	}
	down := f.event(t, false, time.Second)
	if down.ExitStatus != 143 || down.Reason != "stopped" {
		t.Errorf("stop event %+v, want SIGTERM's 143 counted as stopped", down)
	}
}

// TestStopUsesTheStopGraceSetSinceStart: a stop grace changed while HAProxy runs (a reload of
// haproxy.stop_grace) is the one the next stop waits before SIGTERM, not the one the supervisor
// was made with.
func TestStopUsesTheStopGraceSetSinceStart(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "stubborn")
	trapped := filepath.Join(dir, "trapped")
	if err := os.WriteFile(script, []byte("#!/bin/sh\ntrap '' USR1\n: > "+trapped+"\nwhile :; do sleep 0.05; done\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	f := startCommand(t, script, "x", func(c *Config) { c.StopGrace = 20 * time.Second })
	waitUntil(t, 10*time.Second, "the stub ignoring SIGUSR1", func() bool {
		_, err := os.Stat(trapped)
		return err == nil && f.sup.Status().PID != 0
	})
	pid := f.sup.Status().PID
	t.Cleanup(func() { _ = syscall.Kill(-pid, syscall.SIGKILL) })
	f.sup.SetTimings(Config{StopGrace: 300 * time.Millisecond})
	began := time.Now()
	f.cancel()
	select {
	case <-f.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("Run did not return within 10s of the stop: the stop waits the 20s grace it was made with, not the 300ms set since")
	}
	f.done <- nil
	if took := time.Since(began); took < 300*time.Millisecond {
		t.Errorf("stop took %s, less than the 300ms grace", took)
	}
	if down := f.event(t, false, time.Second); down.ExitStatus != 143 {
		t.Errorf("stop event %+v, want SIGTERM's 143 after the new grace", down)
	}
}

// TestHAProxyDiesWithHapair: a hapair killed with SIGKILL leaves no HAProxy behind, neither master
// nor worker, and a new one starts cleanly on the same runtime dir. The test binary re-runs itself
// as a stand-in hapair that only runs the supervisor.
// TestHAProxySurvivesHapairAndIsAdopted: a hapair that dies without a stop (SIGKILL) leaves its
// HAProxy serving; the next one on the same runtime dir adopts the same master (no restart),
// reloads it, and stops it. Before, the master died with hapair (Pdeathsig).
func TestHAProxySurvivesHapairAndIsAdopted(t *testing.T) {
	if os.Getenv("HAPAIR_SUPERVISOR_CHILD") != "" {
		return
	}
	bin := requireHAProxy(t)
	dir := t.TempDir()
	port := freePort(t)
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(config(port, "child")), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "run", "master.sock")
	env := append(os.Environ(), "HAPAIR_SUPERVISOR_CHILD=1", "SUP_BIN="+bin, "SUP_CFG="+cfg, "SUP_DIR="+filepath.Join(dir, "run"))
	standIn := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSupervisorChild$")
		cmd.Env = env
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	serving := func() bool { body, err := get(port); return err == nil && body == "child" }
	master := func() procList {
		p, err := showProc(context.Background(), sock, cliTimeout)
		if err != nil {
			t.Fatalf("show proc: %v", err)
		}
		return p
	}
	t.Cleanup(func() { // whatever happens, no HAProxy outlives the test
		for _, pid := range processesWith(t, cfg) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})

	cmd := standIn()
	waitUntil(t, 10*time.Second, "HAProxy under the stand-in serving", serving)
	// A reload first: the master re-executes itself (its command line grows -sf/-x), and must
	// still be recognised after that.
	if err := os.WriteFile(cfg, []byte(config(port, "child")+"# reloaded\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the stand-in's reload", func() bool {
		p, err := showProc(context.Background(), sock, cliTimeout)
		return err == nil && p.reloads == 1 && len(p.workers) == 1
	})
	before := master()
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	time.Sleep(300 * time.Millisecond)
	if !serving() {
		t.Fatal("HAProxy stopped serving when its supervisor was SIGKILLed")
	}

	second := standIn()
	// The second stand-in adopts: same master, same worker, still serving, nothing restarted.
	time.Sleep(time.Second)
	after := master()
	if after.master != before.master || len(after.workers) != 1 || after.workers[0].pid != before.workers[0].pid {
		t.Fatalf("after adoption show proc = %+v, want master %d and worker %d kept", after, before.master, before.workers[0].pid)
	}
	if !serving() {
		t.Fatal("not serving after adoption")
	}
	// The adopter reloads it.
	if err := second.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the adopter's reload", func() bool {
		p, err := showProc(context.Background(), sock, cliTimeout)
		return err == nil && p.master == before.master && p.reloads == 2 && len(p.workers) == 1
	})
	// The adopter stops it, and sees it gone.
	if err := second.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := second.Wait(); err != nil {
		t.Errorf("adopter exit: %v", err)
	}
	if pids := processesWith(t, cfg); len(pids) != 0 {
		t.Errorf("HAProxy processes %v left after the adopter stopped", pids)
	}
	if _, err := os.Stat(filepath.Join(dir, "run", PIDFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file left after a stop: %v", err)
	}
}

// TestAdoptedMastersOutputCrossesTheNextUpgrade: after an in-place upgrade the new image adopts
// the master with the output pipe the old image handed it (InheritOutput); a second upgrade must
// hand that pipe on as well. The master here is started as the previous image started it: with
// the supervisor's command line, its output on a pipe, its pid in the pid file.
func TestAdoptedMastersOutputCrossesTheNextUpgrade(t *testing.T) {
	bin := requireHAProxy(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(config(freePort(t), "adopted")), 0o644); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(dir, "run")
	if err := os.Mkdir(run, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // whatever happens, no HAProxy outlives the test
		for _, pid := range processesWith(t, cfg) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	s := New(Config{Command: bin, ConfigFile: cfg, RuntimeDir: run, StopGrace: 2 * time.Second}, nil, nil)

	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	args := s.args()
	prev := exec.Command(args[0], args[1:]...)
	prev.Stdout, prev.Stderr = w, w
	prev.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := prev.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	s.writePIDFile(prev.Process.Pid)
	waitUntil(t, 10*time.Second, "the previous image's master answering", func() bool {
		p, err := showProc(context.Background(), s.SocketPath(), cliTimeout)
		return err == nil && len(p.workers) == 1
	})

	s.InheritOutput(r)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("supervisor did not stop")
		}
	})
	waitUntil(t, 10*time.Second, "the master adopted", func() bool { return s.Status().PID == prev.Process.Pid })

	env := s.KeepOutputAcrossExec()
	if env == "" {
		t.Fatal("KeepOutputAcrossExec() = \"\" with an adopted master whose output came along: the next upgrade's execve closes the pipe")
	}
	fd, err := strconv.Atoi(strings.TrimPrefix(env, OutputFDEnv+"="))
	if err != nil {
		t.Fatalf("KeepOutputAcrossExec() = %q, want %s=<fd>", env, OutputFDEnv)
	}
	if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil || flags&unix.FD_CLOEXEC != 0 {
		t.Errorf("fd %d flags %#x, %v: want it kept across execve (no FD_CLOEXEC)", fd, flags, err)
	}
}

func TestSupervisorChild(t *testing.T) {
	if os.Getenv("HAPAIR_SUPERVISOR_CHILD") == "" {
		t.Skip("helper process for TestHAProxySurvivesHapairAndIsAdopted")
	}
	s := New(Config{Command: os.Getenv("SUP_BIN"), ConfigFile: os.Getenv("SUP_CFG"), RuntimeDir: os.Getenv("SUP_DIR")}, nil, nil)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM)
	ctx, stop := context.WithCancel(context.Background())
	go func() {
		for sig := range sigs {
			if sig == syscall.SIGTERM {
				stop()
				return
			}
			_ = s.Reload(context.Background())
		}
	}()
	_ = s.Run(ctx)
}

// TestStrangerMasterStoppedAndReplaced: a master that answers on the socket but is not the one
// this configuration starts (another config, no pid file of ours) is stopped and a fresh one
// started.
func TestStrangerMasterStoppedAndReplaced(t *testing.T) {
	bin := requireHAProxy(t)
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	if err := os.Mkdir(run, 0o700); err != nil {
		t.Fatal(err)
	}
	otherCfg := filepath.Join(dir, "other.cfg")
	if err := os.WriteFile(otherCfg, []byte(config(freePort(t), "other")), 0o644); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(run, "master.sock")
	other := exec.Command(bin, "-W", "-db", "-S", sock+",mode,600", "-f", otherCfg)
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	otherDone := make(chan struct{})
	go func() { _ = other.Wait(); close(otherDone) }()
	t.Cleanup(func() { _ = other.Process.Kill(); <-otherDone })
	waitUntil(t, 10*time.Second, "the other master answering", func() bool {
		_, err := showProc(context.Background(), sock, cliTimeout)
		return err == nil
	})
	f := start(t, "mine", func(c *Config) { c.RuntimeDir = run })
	ev := f.event(t, true, 15*time.Second)
	if ev.PID == other.Process.Pid {
		t.Fatal("adopted a master started with another configuration")
	}
	select {
	case <-otherDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the stranger master still runs")
	}
	mustGet(t, f.port, "mine")
}

func TestValidate(t *testing.T) {
	bin := requireHAProxy(t)
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.cfg", config(freePort(t), "x"))
	noListener := write("nolistener.cfg", "global\n    maxconn 10\n")
	bad := write("bad.cfg", config(freePort(t), "x", "bogus-directive"))
	tests := []struct {
		name, command, file string
		wantErr             string // "" = valid
	}{
		{"valid", bin, good, ""},
		{"valid without listener (exit 2)", bin, noListener, ""},
		{"errors (exit 1) in HAProxy's words", bin, bad, "unknown keyword 'bogus-directive'"},
		{"missing config", bin, filepath.Join(dir, "missing.cfg"), "missing.cfg: no such file"},
		{"missing binary", filepath.Join(dir, "no-haproxy"), good, "haproxy binary " + filepath.Join(dir, "no-haproxy")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Validate(context.Background(), tt.command, tt.file)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("err = %v, want valid", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("err = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
