package transport

import (
	"errors"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hapair/hapair/vrrp/internal/nstest"
	"github.com/hapair/hapair/vrrp/transport/steady"
	"golang.org/x/sys/unix"
)

// TestWatchReadsTheExpectedAdverts: a member alone in expecting adverts on its socket can have
// a watcher thread read them. While they come, it keeps quiet and counts them; what it read
// counts in the next Quiet, with the newest arrival time, and once in Unwatch. When they stop,
// it calls silent. It is refused twice, or beside another member expecting adverts, and that
// member's Expect stops it and calls silent: the member relies on it to be woken.
func TestWatchReadsTheExpectedAdverts(t *testing.T) {
	if !steady.Supported() {
		t.Skip("no watcher thread on this architecture")
	}
	p := nstest.NewPair(t)
	hb := NewHub(HubOptions{})
	b51 := joinIn(t, p.B, hb, Options{Interface: p.BIf, Family: 4}, 51)
	b61 := joinIn(t, p.B, hb, Options{Interface: p.BIf, Family: 4}, 61)
	a := joinIn(t, p.A, NewHub(HubOptions{}), Options{Interface: p.AIf, Family: 4}, 51)
	steadyAdvert := append([]byte(nil), advertV2...)
	steadyAdvert[1], steadyAdvert[2] = 51, 200
	send := func() time.Time {
		t.Helper()
		at := time.Now()
		if err := a.WriteAdvert(steadyAdvert); err != nil {
			t.Fatal(err)
		}
		return at
	}
	send()
	readWithin(t, b51, 5*time.Second)
	if err := b51.Expect(p.A4.Addr(), steadyAdvert); err != nil {
		t.Fatal(err)
	}
	const period = 20 * time.Millisecond
	var silent atomic.Int32
	watch := func() func() uint64 {
		t.Helper()
		received, err := b51.Watch(time.Now().Add(period), 3*period+period/2, false, func() { silent.Add(1) })
		if err != nil {
			t.Fatal(err)
		}
		return received
	}

	// While the adverts come.
	received := watch()
	if _, err := b51.Watch(time.Now(), period, false, func() {}); !errors.Is(err, errWatched) {
		t.Errorf("a second Watch: %v, want %v", err, errWatched)
	}
	const n = 30
	var last time.Time
	for range n {
		last = send()
		time.Sleep(period)
	}
	if s := silent.Load(); s != 0 {
		t.Fatalf("silent called %d times while the adverts came", s)
	}
	if got := received(); got < n-5 {
		t.Errorf("the watcher counted %d adverts while running, want about %d", got, n)
	}
	watched := unwatch(t, b51)
	at, quiet := b51.Quiet()
	if quiet != n || watched > n || watched < n-5 {
		t.Errorf("Unwatch = %d and Quiet = %d, want about %d and %d", watched, quiet, n, n)
	}
	if d := at.Sub(last); d < 0 || d > 50*time.Millisecond {
		t.Errorf("the latest arrival is %v after the last send, want just after it", d)
	}
	if again := unwatch(t, b51); again != 0 {
		t.Errorf("Unwatch again = %d", again)
	}

	// When they stop.
	watch()
	for range 5 {
		last = send()
		time.Sleep(period)
	}
	waitUntil(t, "silent called", func() bool { return silent.Load() == 1 })
	watched = unwatch(t, b51)
	at, quiet = b51.Quiet()
	if quiet != 5 || watched != 5 {
		t.Errorf("after the silence: Unwatch = %d and Quiet = %d, want 5 and 5", watched, quiet)
	}
	if d := at.Sub(last); d < 0 || d > 50*time.Millisecond {
		t.Errorf("the latest arrival is %v after the last send, want just after it", d)
	}

	// Another member expecting adverts: its Expect stops the watcher, and no other starts.
	received = watch()
	send()
	waitUntil(t, "the advert read by the watcher", func() bool { return received() == 1 })
	if err := b61.Expect(p.A4.Addr(), steadyAdvert61()); err != nil {
		t.Fatal(err)
	}
	if s := silent.Load(); s != 2 {
		t.Errorf("silent called %d times in all, want 2: the watcher that another member's Expect stopped says so", s)
	}
	if _, err := b51.Watch(time.Now(), period, false, func() {}); !errors.Is(err, errNotAlone) {
		t.Errorf("Watch beside another expecting member: %v, want %v", err, errNotAlone)
	}
	if _, quiet := b51.Quiet(); quiet != 1 || unwatch(t, b51) != 1 {
		t.Errorf("the advert read before the other's Expect: Quiet = %d, want 1", quiet)
	}
}

// unwatch is m.Unwatch, which must not report an error here.
func unwatch(t *testing.T, m *testConn) uint64 {
	t.Helper()
	n, err := m.Unwatch()
	if err != nil {
		t.Errorf("Unwatch: %v", err)
	}
	return n
}

func steadyAdvert61() []byte {
	b := append([]byte(nil), advertV2...)
	b[1], b[2] = 61, 200
	return b
}

// waitUntil polls cond for up to two seconds.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after two seconds", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWatcherProcessKilled: a watcher whose process is killed (by hand, by the OOM killer)
// wakes the member (silent), and Unwatch says why, so that the loop reads the adverts itself;
// what it read before still counts in Quiet.
func TestWatcherProcessKilled(t *testing.T) {
	if !steady.Supported() {
		t.Skip("no watcher on this architecture")
	}
	p := nstest.NewPair(t)
	b51 := joinIn(t, p.B, NewHub(HubOptions{}), Options{Interface: p.BIf, Family: 4}, 51)
	a := joinIn(t, p.A, NewHub(HubOptions{}), Options{Interface: p.AIf, Family: 4}, 51)
	steadyAdvert := append([]byte(nil), advertV2...)
	steadyAdvert[1], steadyAdvert[2] = 51, 200
	if err := a.WriteAdvert(steadyAdvert); err != nil {
		t.Fatal(err)
	}
	readWithin(t, b51, 5*time.Second)
	if err := b51.Expect(p.A4.Addr(), steadyAdvert); err != nil {
		t.Fatal(err)
	}
	var silent atomic.Int32
	received, err := b51.Watch(time.Now().Add(time.Hour), time.Hour, false, func() { silent.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	children := nstest.Children(t)
	if len(children) != 1 {
		t.Fatalf("children %v, want the watcher's process alone", children)
	}
	if err := a.WriteAdvert(steadyAdvert); err != nil {
		t.Fatal(err)
	}
	// Queued (SIOCINQ: the size of the first datagram waiting); the watcher would read it at its
	// wake-up, an hour on.
	waitUntil(t, "the advert queued", func() bool {
		n, err := unix.IoctlGetInt(b51.sock.sender, unix.SIOCINQ)
		return err == nil && n > 0
	})
	if err := syscall.Kill(children[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "silent called", func() bool { return silent.Load() == 1 })
	if got := received(); got != 0 {
		t.Errorf("the watcher read %d adverts, want none (it was to wake in an hour)", got)
	}
	if _, err := b51.Unwatch(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Unwatch after the kill: %v, want the process killed", err)
	}
	if _, quiet := b51.Quiet(); quiet != 1 {
		t.Errorf("Quiet = %d after the kill, want the advert queued meanwhile", quiet)
	}
}
