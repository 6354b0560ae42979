//go:build linux

package steady

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hapair/hapair/vrrp/internal/nstest"
	"golang.org/x/sys/unix"
)

// stampedLink is a link whose receiver asks for arrival times, as the transport's queue of
// expected adverts does.
func stampedLink(t *testing.T) *link {
	t.Helper()
	l := newLink(t)
	if err := unix.SetsockoptInt(l.rx, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		t.Fatal(err)
	}
	return l
}

// send sends one datagram to the receiver and returns when, on the wall clock.
func (l *link) send(t *testing.T) time.Time {
	t.Helper()
	sa := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
	got, err := unix.Getsockname(l.rx)
	if err != nil {
		t.Fatal(err)
	}
	sa.Port = got.(*unix.SockaddrInet4).Port
	at := time.Now()
	if err := unix.Sendto(l.sock, payload, 0, sa); err != nil {
		t.Fatal(err)
	}
	return at
}

// eachWatcher runs test with a watcher in a process of its own (the default) and in a thread.
func eachWatcher(t *testing.T, test func(t *testing.T, thread bool)) {
	t.Run("process", func(t *testing.T) { test(t, false) })
	t.Run("thread", func(t *testing.T) { test(t, true) })
}

func startWatch(t *testing.T, cfg WatchConfig) *Watch {
	t.Helper()
	w, err := StartWatch(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopWatch(w) }) // before the link's sockets are closed
	return w
}

// stopWatch is w.Stop, which must not hang (see noHang).
func stopWatch(w *Watch) WatchResult { return noHang(w.Stop) }

// TestWatchHandsBackWhenSilent: while datagrams come every period, the watcher reads them all
// and keeps quiet; a period after they stop (After past the last) it hands back, with the
// newest arrival time, and every datagram counted.
func TestWatchHandsBackWhenSilent(t *testing.T) {
	skipUnsupported(t)
	eachWatcher(t, func(t *testing.T, thread bool) {
		l := stampedLink(t)
		const period = 20 * time.Millisecond
		var silent atomic.Int32
		var silentAt atomic.Int64
		w := startWatch(t, WatchConfig{Socket: l.rx, First: time.Now().Add(2 * period), After: 3 * period,
			Silent: func() { silentAt.Store(time.Now().UnixNano()); silent.Add(1) }, Thread: thread})
		var last time.Time
		const n = 40
		for range n {
			last = l.send(t)
			time.Sleep(period)
		}
		if s := silent.Load(); s != 0 {
			t.Fatalf("handed back %d times while the datagrams came", s)
		}
		if got := w.Received(); got < n-2 {
			t.Errorf("Received %d while running, want about %d", got, n)
		}
		waitFor(t, "handed back", func() bool { return silent.Load() == 1 })
		if after := time.Duration(silentAt.Load() - last.UnixNano()); after < 3*period || after > 3*period+500*time.Millisecond {
			t.Errorf("handed back %v after the last datagram, want 3 periods (%v) and a little", after, 3*period)
		}
		res := stopWatch(w)
		if res.Why != Silent || res.Received != n {
			t.Errorf("Stop = %+v, want Silent with %d received", res, n)
		}
		if d := time.Duration(res.Latest - last.UnixNano()); d < 0 || d > 50*time.Millisecond {
			t.Errorf("Latest is %v after the last send, want just after it", d)
		}
		if b, _ := l.recv(t, time.Now()); b != nil {
			t.Error("a datagram was left on the socket")
		}
	})
}

// TestWatchStopLeavesTheSocket: Stop ends the thread before it has read anything more: what
// comes after is the caller's to read, and Silent is not called.
func TestWatchStopLeavesTheSocket(t *testing.T) {
	skipUnsupported(t)
	eachWatcher(t, func(t *testing.T, thread bool) {
		l := stampedLink(t)
		var silent atomic.Int32
		w := startWatch(t, WatchConfig{Socket: l.rx, First: time.Now().Add(time.Hour), After: time.Second,
			Silent: func() { silent.Add(1) }, Thread: thread})
		l.send(t)
		res := stopWatch(w)
		if res.Why != Stopped || res.Received != 0 || res.Latest != 0 {
			t.Errorf("Stop = %+v, want Stopped with nothing read", res)
		}
		if b, _ := l.recv(t, time.Now().Add(time.Second)); b == nil {
			t.Error("the datagram sent before Stop is gone")
		}
		l.send(t)
		if b, _ := l.recv(t, time.Now().Add(time.Second)); b == nil {
			t.Error("the datagram sent after Stop is gone")
		}
		if s := silent.Load(); s != 0 {
			t.Errorf("Silent called %d times after Stop", s)
		}
		if again := stopWatch(w); again != res {
			t.Errorf("Stop again = %+v, want %+v", again, res)
		}
	})
}

// TestWatchNoStamp: datagrams without an arrival time cannot be timed: the watcher hands back
// at the first.
func TestWatchNoStamp(t *testing.T) {
	skipUnsupported(t)
	eachWatcher(t, func(t *testing.T, thread bool) {
		l := newLink(t) // no SO_TIMESTAMPNS
		var silent atomic.Int32
		w := startWatch(t, WatchConfig{Socket: l.rx, First: time.Now().Add(20 * time.Millisecond), After: time.Second,
			Silent: func() { silent.Add(1) }, Thread: thread})
		l.send(t)
		waitFor(t, "handed back", func() bool { return silent.Load() == 1 })
		if res := stopWatch(w); res.Why != NoStamp || res.Received != 1 || res.Latest != 0 {
			t.Errorf("Stop = %+v, want NoStamp with 1 received and no time", res)
		}
	})
}

// TestWatchPastWakeUp: a newest arrival already older than After arms a wake-up in the past,
// which fires at once: the watcher reads what came, finds nothing more and hands back.
func TestWatchPastWakeUp(t *testing.T) {
	skipUnsupported(t)
	eachWatcher(t, func(t *testing.T, thread bool) {
		l := stampedLink(t)
		l.send(t)
		time.Sleep(100 * time.Millisecond)
		var silent atomic.Int32
		w := startWatch(t, WatchConfig{Socket: l.rx, First: time.Now(), After: 10 * time.Millisecond,
			Silent: func() { silent.Add(1) }, Thread: thread})
		waitFor(t, "handed back", func() bool { return silent.Load() == 1 })
		if res := stopWatch(w); res.Why != Silent || res.Received != 1 {
			t.Errorf("Stop = %+v, want Silent with the one datagram", res)
		}
	})
}

// TestWatchConfigErrors: a config the thread cannot run with is refused.
func TestWatchConfigErrors(t *testing.T) {
	skipUnsupported(t)
	ok := WatchConfig{Socket: 0, First: time.Now(), After: time.Second, Silent: func() {}}
	for name, mod := range map[string]func(*WatchConfig){
		"socket":  func(c *WatchConfig) { c.Socket = -1 },
		"first":   func(c *WatchConfig) { c.First = time.Unix(0, 0) },
		"after":   func(c *WatchConfig) { c.After = 0 },
		"silent":  func(c *WatchConfig) { c.Silent = nil },
		"forever": func(c *WatchConfig) { c.After = 2 * time.Hour },
	} {
		cfg := ok
		mod(&cfg)
		if w, err := StartWatch(cfg); err == nil {
			stopWatch(w)
			t.Errorf("%s: started", name)
		}
	}
}

// TestWatchNoLeaks: starting and stopping many watchers, some of which have handed back,
// leaves no thread, descriptor (timerfd, eventfd), mapping or goroutine.
func TestWatchNoLeaks(t *testing.T) {
	skipUnsupported(t)
	l := stampedLink(t)
	var silent atomic.Int32
	checkNoLeaks(t, func(i int) threadMem {
		first := time.Now().Add(time.Hour)
		if i%2 == 1 {
			first = time.Now() // hands back at once: nothing queued
		}
		w, err := StartWatch(WatchConfig{Socket: l.rx, First: first, After: time.Second, Silent: func() { silent.Add(1) }})
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			waitFor(t, "handed back", func() bool { return silent.Load() == 1 })
		}
		mem := w.mem
		stopWatch(w)
		return mem
	})
}

// TestWatchProcess: the watcher's process is as small as the sender's (checkSmallProcess), and
// gone once Stop has returned; with WatchConfig.Thread there is no process.
func TestWatchProcess(t *testing.T) {
	skipUnsupported(t)
	l := stampedLink(t)
	// Queued before its first wake-up, which would hand back and end the process on finding
	// nothing.
	l.send(t)
	w := startWatch(t, WatchConfig{Socket: l.rx, First: time.Now().Add(5 * time.Millisecond), After: time.Hour, Silent: func() {}})
	pid := w.Child()
	if pid <= 0 {
		t.Fatalf("Child() = %d: no watcher process", pid)
	}
	waitFor(t, "the datagram read", func() bool { return w.Received() == 1 })
	checkSmallProcess(t, "watcher", pid)
	if res := stopWatch(w); res.Why != Stopped || res.Received != 1 {
		t.Errorf("Stop = %+v, want Stopped with the one datagram", res)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the watcher process %d is still there after Stop: %v", pid, err)
	}

	th := startWatch(t, WatchConfig{Socket: l.rx, First: time.Now().Add(time.Hour), After: time.Hour, Silent: func() {}, Thread: true})
	if pid := th.Child(); pid != 0 {
		t.Errorf("Child() = %d with WatchConfig.Thread", pid)
	}
	if children := nstest.Children(t); len(children) != 0 {
		t.Errorf("children %v with WatchConfig.Thread", children)
	}
}

// TestWatchProcessKilled: SIGTERM and SIGHUP do nothing to the watcher's process; killed, it
// is reaped and Silent is called at once, and Stop says Killed with what it had read.
func TestWatchProcessKilled(t *testing.T) {
	skipUnsupported(t)
	l := stampedLink(t)
	silent := make(chan struct{}, 2)
	at := l.send(t) // queued before the first wake-up (see TestWatchProcess)
	w := startWatch(t, WatchConfig{Socket: l.rx, First: time.Now().Add(10 * time.Millisecond), After: time.Hour,
		Silent: func() { silent <- struct{}{} }})
	waitFor(t, "the datagram read", func() bool { return w.Received() == 1 })
	pid := w.Child()
	for _, sig := range []unix.Signal{unix.SIGTERM, unix.SIGHUP} {
		if err := unix.Kill(pid, sig); err != nil {
			t.Fatal(err)
		}
	}
	// Both arrived and wait, blocked (pending), while the process runs on.
	pending := uint64(1)<<(unix.SIGTERM-1) | uint64(1)<<(unix.SIGHUP-1)
	waitFor(t, "SIGTERM and SIGHUP pending", func() bool { return procStatusHex(t, pid, "ShdPnd:")&pending == pending })
	select {
	case <-silent:
		t.Fatal("Silent after SIGTERM and SIGHUP")
	default:
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err != nil || strings.Contains(string(b), ") Z ") {
		t.Fatalf("the watcher process is gone after SIGTERM and SIGHUP: %v", err)
	}
	if err := unix.Kill(pid, unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-silent:
	case <-time.After(time.Second):
		t.Fatal("Silent not called within a second of the SIGKILL")
	}
	waitFor(t, "its thread gone", func() bool { return blockedThreads(t) == 0 })
	res := stopWatch(w)
	if res.Why != Killed || res.Received != 1 {
		t.Errorf("Stop = %+v, want Killed with the one datagram", res)
	}
	if d := time.Duration(res.Latest - at.UnixNano()); d < 0 || d > 50*time.Millisecond {
		t.Errorf("Latest is %v after the send, want just after it", d)
	}
	if b, _ := l.recv(t, time.Now()); b != nil {
		t.Error("a datagram was left on the socket")
	}
}
