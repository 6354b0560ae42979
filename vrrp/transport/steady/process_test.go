//go:build linux

package steady

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hapair/hapair/vrrp/internal/nstest"
	"golang.org/x/sys/unix"
)

// TestProcessHasAlmostNothingMapped: the sender process keeps of this process's memory only the
// code it runs, its block, its stack and the command line; it shows as this process's command;
// and once Stop has returned it is gone, reaped.
func TestProcessHasAlmostNothingMapped(t *testing.T) {
	skipUnsupported(t)
	l := newLink(t)
	s := start(t, l.config(BootTime(), 5*time.Millisecond))
	pid := s.Child()
	if pid <= 0 {
		t.Fatalf("Child() = %d: no sender process", pid)
	}
	waitFor(t, "sending", func() bool { return s.Sent(0) >= 3 })
	checkSmallProcess(t, "sender", pid)

	res := stop(s)
	if res.Killed || res.Failed != 0 || res.Each[0].Sent < 3 {
		t.Errorf("Result %+v", res)
	}
	// Reaped by its thread before Stop returned: not even a zombie is left.
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the sender process %d is still there after Stop: %v", pid, err)
	}
	if s.Child() != 0 {
		t.Errorf("Child() %d after Stop", s.Child())
	}
}

// TestProcessKilled: a sender process killed on its own is reaped and said killed (Config.Ended
// at once); nothing is sent after, and Stop still returns.
func TestProcessKilled(t *testing.T) {
	skipUnsupported(t)
	l := newLink(t)
	const period = 5 * time.Millisecond
	cfg := l.config(BootTime(), period)
	ended := make(chan struct{})
	cfg.Ended = func() { close(ended) }
	s := start(t, cfg)
	waitFor(t, "sending", func() bool { return s.Sent(0) >= 2 })
	// SIGTERM and SIGHUP are blocked: a pkill meant for hapair does nothing to it.
	for _, sig := range []unix.Signal{unix.SIGTERM, unix.SIGHUP} {
		if err := unix.Kill(s.Child(), sig); err != nil {
			t.Fatal(err)
		}
	}
	sent := s.Sent(0)
	waitFor(t, "sending on after SIGTERM and SIGHUP", func() bool { return s.Sent(0) >= sent+3 })
	if s.Ended() {
		t.Fatal("Ended after SIGTERM and SIGHUP")
	}
	if err := unix.Kill(s.Child(), unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ended:
	case <-time.After(time.Second):
		t.Fatal("Config.Ended not called within a second of the SIGKILL")
	}
	if !s.Ended() {
		t.Error("Ended() false after Config.Ended")
	}
	l.count(t, time.Now().Add(period)) // what it sent before
	if n := l.count(t, time.Now().Add(5*period)); n != 0 {
		t.Errorf("%d datagrams after the sender process was killed", n)
	}
	waitFor(t, "its thread gone", func() bool { return blockedThreads(t) == 0 })
	if res := stop(s); !res.Killed || res.Failed != 0 {
		t.Errorf("Result %+v, want Killed", res)
	}
}

// TestThreadSender: Config.Thread sends from the thread itself, with no process.
func TestThreadSender(t *testing.T) {
	skipUnsupported(t)
	l := newLink(t)
	cfg := l.config(BootTime(), 5*time.Millisecond)
	cfg.Thread = true
	s := start(t, cfg)
	waitFor(t, "sending", func() bool { return s.Sent(0) >= 3 })
	if pid := s.Child(); pid != 0 {
		t.Errorf("Child() = %d with Config.Thread", pid)
	}
	if children := nstest.Children(t); len(children) != 0 {
		t.Errorf("children %v with Config.Thread", children)
	}
	if res := stop(s); res.Each[0].Sent < 3 || res.Killed {
		t.Errorf("Result %+v", res)
	}
}

// senderHelperEnv makes the test binary a process that starts a Sender to the address given
// and waits to be killed (TestProcessDiesWithItsParent).
const senderHelperEnv = "STEADY_SENDER_HELPER"

func TestMain(m *testing.M) {
	if port := os.Getenv(senderHelperEnv); port != "" {
		os.Exit(senderHelper(port))
	}
	os.Exit(m.Run())
}

// senderHelper sends to 127.0.0.1:port every 5 ms, watches a socket of its own, prints the
// sender's and the watcher's process's pids, and sleeps.
func senderHelper(port string) int {
	p, err := strconv.Atoi(port)
	if err != nil {
		return 2
	}
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		return 2
	}
	if err := unix.Connect(sock, &unix.SockaddrInet4{Port: p, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return 2
	}
	s, err := Start(Config{Datagrams: []Datagram{{Socket: sock, Payload: payload, Record: -1}}, First: BootTime(), Period: 5 * time.Millisecond})
	if err != nil {
		fmt.Println(err)
		return 2
	}
	rx, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		return 2
	}
	w, err := StartWatch(WatchConfig{Socket: rx, First: time.Now().Add(time.Hour), After: time.Hour, Silent: func() {}})
	if err != nil {
		fmt.Println(err)
		return 2
	}
	fmt.Println(s.Child(), w.Child())
	time.Sleep(time.Minute)
	return 0
}

// TestProcessDiesWithItsParent: SIGKILL of the process whose Sender it is (hapair crashing)
// ends the sender process too, at once: no advert of a dead hapair keeps its VIP. Its Watch's
// process ends alike.
func TestProcessDiesWithItsParent(t *testing.T) {
	skipUnsupported(t)
	l := newLink(t)
	sa, err := unix.Getsockname(l.rx)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), senderHelperEnv+"="+strconv.Itoa(sa.(*unix.SockaddrInet4).Port))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		// Killed and reaped, should the test fail before: a zombie would stay this process's child.
		cmd.Process.Kill()
		cmd.Wait()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("the helper: %v", err)
	}
	var child, watcher int
	if _, err := fmt.Sscan(line, &child, &watcher); err != nil || child <= 0 || watcher <= 0 {
		t.Fatalf("the helper said %q", line)
	}
	defer unix.Kill(child, unix.SIGKILL) // should the test fail
	defer unix.Kill(watcher, unix.SIGKILL)
	if n := l.count(t, time.Now().Add(50*time.Millisecond)); n < 3 {
		t.Fatalf("%d datagrams from the helper's sender in 50 ms, want about 10", n)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	for what, pid := range map[string]int{"sender": child, "watcher": watcher} {
		waitFor(t, "the "+what+" process gone", func() bool {
			// Reparented to init (or the machine's subreaper), which reaps it: gone, or a zombie.
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
			return err != nil || bytes.Contains(b, []byte(") Z "))
		})
	}
	l.count(t, time.Now().Add(5*time.Millisecond)) // what was in flight
	if n := l.count(t, time.Now().Add(50*time.Millisecond)); n != 0 {
		t.Errorf("%d datagrams after the helper was killed", n)
	}
}

// checkSmallProcess checks that the process pid, a sender's or a watcher's (what), keeps of
// this process's memory only the code it runs, its block, its stack and the command line, shows
// as this process's command, and is this process's child.
func checkSmallProcess(t *testing.T, what string, pid int) {
	t.Helper()
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The code, the block, the stack, the command line; a split may make one two.
	if n := bytes.Count(maps, []byte("\n")); n == 0 || n > 6 {
		t.Errorf("the %s process has %d mappings, want at most 6:\n%s", what, n, maps)
	}
	if rss := procStatusKiB(t, pid, "VmRSS:"); rss > 256 {
		t.Errorf("the %s process has %d KiB resident, want at most 256", what, rss)
	}
	ours, _ := os.ReadFile("/proc/self/cmdline")
	if theirs, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); !bytes.Equal(theirs, ours) {
		t.Errorf("its command line %q, ours %q", theirs, ours)
	}
	if ppid := procStatusKiB(t, pid, "PPid:"); ppid != os.Getpid() {
		t.Errorf("its parent %d, want this process (%d)", ppid, os.Getpid())
	}
}

// procStatusHex is the hexadecimal mask after key in /proc/<pid>/status (SigBlk:, ShdPnd:).
func procStatusHex(t *testing.T, pid int, key string) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			if n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil {
				return n
			}
		}
	}
	t.Fatalf("no %s in /proc/%d/status", key, pid)
	return 0
}

// procStatusKiB is the number after key in /proc/<pid>/status.
func procStatusKiB(t *testing.T, pid int, key string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				if n, err := strconv.Atoi(f[0]); err == nil {
					return n
				}
			}
		}
	}
	t.Fatalf("no %s in /proc/%d/status", key, pid)
	return 0
}

// BenchmarkRestart is what a group's join or leave costs (vrrp/instance, steadyGroup): a
// Sender of ten datagrams stopped and another started, in a process with 8 MiB of heap
// touched, about hapair's resident memory (the process's clone copies its page tables).
//
//	go test -run '^$' -bench Restart ./vrrp/transport/steady
func BenchmarkRestart(b *testing.B) {
	if !Supported() {
		b.Skip("no sender thread on this architecture")
	}
	heap := make([]byte, 8<<20)
	for i := 0; i < len(heap); i += 4096 {
		heap[i] = 1
	}
	sock, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(sock)
	if err := unix.Connect(sock, &unix.SockaddrInet4{Port: 9, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		b.Fatal(err)
	}
	cfg := Config{First: BootTime() + time.Hour, Period: time.Hour}
	for range 10 {
		cfg.Datagrams = append(cfg.Datagrams, Datagram{Socket: sock, Payload: payload, Record: -1})
	}
	s, err := Start(cfg)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		s.Stop()
		if s, err = Start(cfg); err != nil {
			b.Fatal(err)
		}
	}
	s.Stop()
	runtime.KeepAlive(heap)
}

// TestChildKnownOnceStarted: Start and StartWatch return once the process runs its loop, and
// its pid is known by then. The thread that makes it wrote the pid after its clone returned,
// which the process could outrun: Child() then read 0 (seen under -race).
func TestChildKnownOnceStarted(t *testing.T) {
	skipUnsupported(t)
	l := stampedLink(t)
	for i := range 100 {
		s := start(t, l.config(BootTime()+time.Hour, time.Hour))
		w := startWatch(t, WatchConfig{Socket: l.rx, First: time.Now().Add(time.Hour), After: time.Hour, Silent: func() {}})
		sc, wc := s.Child(), w.Child()
		stop(s)
		stopWatch(w)
		if sc <= 0 || wc <= 0 {
			t.Fatalf("start %d: Child() %d for the sender, %d for the watcher, want their pids", i, sc, wc)
		}
	}
}
