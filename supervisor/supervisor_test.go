package supervisor

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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

func config(port int, body string) string {
	return fmt.Sprintf(`global
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
}

type fakeReporter struct {
	mu       sync.Mutex
	ups      []bool
	restarts int
	reloads  []string
	exits    []int
}

func (r *fakeReporter) HAProxyUp(up bool) { r.mu.Lock(); r.ups = append(r.ups, up); r.mu.Unlock() }
func (r *fakeReporter) HAProxyRestart()   { r.mu.Lock(); r.restarts++; r.mu.Unlock() }
func (r *fakeReporter) HAProxyReload(res string) {
	r.mu.Lock()
	r.reloads = append(r.reloads, res)
	r.mu.Unlock()
}
func (r *fakeReporter) HAProxyExit(s int) { r.mu.Lock(); r.exits = append(r.exits, s); r.mu.Unlock() }

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

func TestStartServesAndEnvironmentIsScrubbed(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
	t.Setenv("WATCHDOG_USEC", "10000000")
	f := start(t, "one", nil)
	ev := f.event(t, true, 10*time.Second)
	if body, err := get(f.port); err != nil || body != "one" {
		t.Fatalf("GET = %q, %v", body, err)
	}
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", ev.PID))
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range strings.Split(string(env), "\x00") {
		if strings.HasPrefix(kv, "NOTIFY_SOCKET=") || strings.HasPrefix(kv, "WATCHDOG_") {
			t.Errorf("HAProxy got %s", kv)
		}
	}
	sock, err := os.Stat(f.sup.SocketPath())
	if err != nil || sock.Mode().Perm() != 0o600 {
		t.Errorf("master socket %v mode %v, want 0600", err, sock.Mode().Perm())
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
	seen := down.At.Sub(killed)
	t.Logf("exit seen %s after SIGKILL", seen)
	if seen > 100*time.Millisecond {
		t.Errorf("exit seen after %s, want it at once", seen)
	}
	if down.ExitStatus != 128+int(syscall.SIGKILL) {
		t.Errorf("exit status %d, want 137", down.ExitStatus)
	}
	again := f.event(t, true, 10*time.Second)
	if again.PID == up.PID {
		t.Fatal("not restarted")
	}
	if st := f.sup.Status(); st.Restarts != 1 || st.LastExit == nil || *st.LastExit != 137 {
		t.Errorf("status after restart: %+v", st)
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
	f := start(t, "x", func(c *Config) { c.ConfigFile = bad })
	var backoffs []time.Duration
	deadline := time.Now().Add(6 * time.Second)
	for time.Now().Before(deadline) {
		if b := f.sup.Status().Backoff; b > 0 && (len(backoffs) == 0 || b != backoffs[len(backoffs)-1]) {
			backoffs = append(backoffs, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("backoffs: %v, restarts %d", backoffs, f.sup.Status().Restarts)
	if len(backoffs) < 3 {
		t.Fatalf("want at least 3 backoff waits, saw %v", backoffs)
	}
	// ±20% jitter around a doubling from 200ms: the first waits grow, none passes max + 20%.
	for i := 1; i < 3; i++ {
		if backoffs[i] <= backoffs[i-1] {
			t.Errorf("backoff did not grow: %v", backoffs)
		}
	}
	for _, b := range backoffs {
		if b > 2400*time.Millisecond {
			t.Errorf("backoff %s above the 2s cap plus jitter", b)
		}
	}
	if f.sup.Status().Up {
		t.Error("status says up during the crash loop")
	}
}

func TestReloadRefusedAndOK(t *testing.T) {
	f := start(t, "one", nil)
	up := f.event(t, true, 10*time.Second)

	if err := os.WriteFile(f.cfg, []byte(config(f.port, "two")+"    no-such-keyword\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := f.sup.Reload(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no-such-keyword") {
		t.Fatalf("broken config: err = %v, want HAProxy's own words", err)
	}
	if body, err := get(f.port); err != nil || body != "one" {
		t.Fatalf("after a refused reload GET = %q, %v", body, err)
	}

	if err := os.WriteFile(f.cfg, []byte(config(f.port, "two")), 0o644); err != nil {
		t.Fatal(err)
	}
	// Requests run through the reload: none may fail.
	stop := make(chan struct{})
	var failed, ok int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := get(f.port); err != nil {
				failed++
			} else {
				ok++
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	began := time.Now()
	if err := f.sup.Reload(context.Background()); err != nil {
		t.Fatalf("good reload: %v", err)
	}
	took := time.Since(began)
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("reload took %s; %d requests ok, %d failed during it", took, ok, failed)
	if failed != 0 {
		t.Errorf("%d requests failed during the reload", failed)
	}
	if body, err := get(f.port); err != nil || body != "two" {
		t.Fatalf("after reload GET = %q, %v", body, err)
	}
	if st := f.sup.Status(); st.PID != up.PID || st.LastReload.Result != "ok" {
		t.Errorf("status after reload: %+v (master was %d)", st, up.PID)
	}
	f.rep.mu.Lock()
	defer f.rep.mu.Unlock()
	if strings.Join(f.rep.reloads, ",") != "refused,ok" {
		t.Errorf("reported reloads %v, want refused,ok", f.rep.reloads)
	}
}

func TestStopIsSoftAndComplete(t *testing.T) {
	f := start(t, "one", nil)
	up := f.event(t, true, 10*time.Second)
	f.cancel()
	select {
	case err := <-f.done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	f.done <- nil // for the cleanup
	if err := syscall.Kill(up.PID, 0); err == nil {
		t.Fatalf("HAProxy master %d still running after stop", up.PID)
	}
	if _, err := get(f.port); err == nil {
		t.Fatal("HAProxy still answers after stop")
	}
}

// TestHAProxyDiesWithHapair: a hapair killed with SIGKILL leaves no HAProxy behind. The test
// binary re-runs itself as a stand-in hapair that only runs the supervisor.
func TestHAProxyDiesWithHapair(t *testing.T) {
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
	cmd := exec.Command(os.Args[0], "-test.run=^TestSupervisorChild$")
	cmd.Env = append(os.Environ(), "HAPAIR_SUPERVISOR_CHILD=1", "SUP_BIN="+bin, "SUP_CFG="+cfg, "SUP_DIR="+filepath.Join(dir, "run"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitServing := func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			if body, err := get(port); err == nil && body == "child" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("HAProxy under the stand-in never served")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitServing()
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := get(port); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("HAProxy kept serving after its supervisor was SIGKILLed (orphan)")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A new supervisor starts cleanly on the same runtime dir (stale socket removed).
	cmd2 := exec.Command(os.Args[0], "-test.run=^TestSupervisorChild$")
	cmd2.Env = cmd.Env
	if err := cmd2.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd2.Process.Kill(); _ = cmd2.Wait() }()
	waitServing()
}

// TestSupervisorChild is the stand-in hapair of TestHAProxyDiesWithHapair.
func TestSupervisorChild(t *testing.T) {
	if os.Getenv("HAPAIR_SUPERVISOR_CHILD") == "" {
		t.Skip("helper process for TestHAProxyDiesWithHapair")
	}
	s := New(Config{Command: os.Getenv("SUP_BIN"), ConfigFile: os.Getenv("SUP_CFG"), RuntimeDir: os.Getenv("SUP_DIR")}, &fakeReporter{}, nil)
	_ = s.Run(context.Background())
}

func TestValidate(t *testing.T) {
	bin := requireHAProxy(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.cfg")
	_ = os.WriteFile(good, []byte(config(freePort(t), "x")), 0o644)
	if _, err := Validate(context.Background(), bin, good); err != nil {
		t.Errorf("good config: %v", err)
	}
	if _, err := Validate(context.Background(), bin, filepath.Join(dir, "missing.cfg")); err == nil || !strings.Contains(err.Error(), "missing.cfg") {
		t.Errorf("missing config: %v", err)
	}
	if _, err := Validate(context.Background(), filepath.Join(dir, "no-haproxy"), good); err == nil || !strings.Contains(err.Error(), "no-haproxy") {
		t.Errorf("missing binary: %v", err)
	}
}

func TestParseShowProc(t *testing.T) {
	text := `#<PID>          <type>          <reloads>       <uptime>        <version>
6038            master          1 [failed: 2]   0d00h49m29s     2.6.12-1+deb12u4
# workers
1094            worker          0               0d00h00m01s     2.6.12-1+deb12u4
# old workers
6041            worker          1               0d00h49m28s     2.6.12-1+deb12u4
# programs
`
	p, err := parseShowProc(text)
	if err != nil {
		t.Fatal(err)
	}
	if p.reloads != 1 || p.failed != 2 || len(p.workers) != 1 || p.workers[0].pid != 1094 {
		t.Fatalf("parsed %+v", p)
	}
	if _, err := parseShowProc("garbage\n"); err == nil {
		t.Error("garbage accepted")
	}
}
