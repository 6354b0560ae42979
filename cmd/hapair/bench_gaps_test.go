package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hapair/hapair/cmd/internal/lab"
	"golang.org/x/sys/unix"
)

// advertWatch records when the adverts of lb1's MASTERs reach lb2, in kernel time, per link and
// VRID, while a scale cell runs. A spurious transition on lb2 has two possible causes, and the
// daemons' logs alone do not tell them apart: the MASTER went quiet (its adverts came late),
// or the BACKUP missed adverts that came on time. The gaps it saw around the transition do.
//
// It is a raw VRRP socket per link in lb2's namespace (bound to the link, kernel timestamps,
// an 8 MiB queue whose overflows it counts), read by the benchmark's own process at normal
// priority: its lateness changes nothing, the time is the kernel's.
type advertWatch struct {
	interval time.Duration
	links    []scaleLink
	fds      []int
	wg       sync.WaitGroup
	stop     chan struct{}

	mu      sync.Mutex
	last    map[watchKey]time.Time
	stats   []watchStats // per link
	lateLog []lateAdvert // gaps of lateAfter or more, the first watchLateKept
}

type watchKey struct {
	link int
	vrid uint8
}

type watchStats struct {
	adverts int
	drops   uint32 // the queue's overflows (SO_RXQ_OVFL), cumulative
	maxGap  time.Duration
	late    int // gaps of 2 intervals or more
	silent  int // gaps of 3 intervals or more: a BACKUP at priority 100 has 3.61 before it takes over
}

// lateAdvert is one advert that came 2 intervals or more after the one before it.
type lateAdvert struct {
	link int
	vrid uint8
	at   time.Time // the late advert's arrival
	gap  time.Duration
}

const watchLateKept = 2000

// startAdvertWatch opens the sockets in h's namespace and reads them until Stop.
func startAdvertWatch(t testing.TB, h *lab.Host, iv time.Duration, links ...scaleLink) *advertWatch {
	t.Helper()
	w := &advertWatch{interval: iv, links: links, stop: make(chan struct{}),
		last: map[watchKey]time.Time{}, stats: make([]watchStats, len(links))}
	err := h.Do(func() error {
		for _, l := range links {
			fd, err := watchSocket(l.name)
			if err != nil {
				return err
			}
			w.fds = append(w.fds, fd)
		}
		return nil
	})
	if err != nil {
		for _, fd := range w.fds {
			unix.Close(fd)
		}
		t.Fatalf("advert watch on %s: %v", h.Name, err)
	}
	for i, fd := range w.fds {
		src := netip.MustParseAddr(links[i].subnet + ".1") // lb1's address on the link
		w.wg.Go(func() { w.read(i, fd, src) })
	}
	return w
}

func watchSocket(ifname string) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 112)
	if err != nil {
		return -1, fmt.Errorf("raw VRRP socket: %w", err)
	}
	for _, o := range []struct {
		name string
		set  func() error
	}{
		{"SO_BINDTODEVICE", func() error { return unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifname) }},
		{"SO_TIMESTAMPNS", func() error { return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1) }},
		{"SO_RXQ_OVFL", func() error { return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1) }},
		{"SO_RCVBUFFORCE", func() error { return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20) }},
		// Woken every 200 ms with nothing, so that Stop is seen.
		{"SO_RCVTIMEO", func() error {
			return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200_000})
		}},
	} {
		if err := o.set(); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("%s on %s: %w", o.name, ifname, err)
		}
	}
	return fd, nil
}

func (w *advertWatch) read(link, fd int, src netip.Addr) {
	buf := make([]byte, 2048)
	oob := make([]byte, 256)
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return
		}
		at, drops, ok := watchControl(oob[:oobn])
		vrid, from, vok := watchAdvert(buf[:n])
		if !ok || !vok || from != src {
			continue
		}
		w.note(link, vrid, at, drops)
	}
}

// watchControl reads the kernel's receive time and the queue's overflow count.
func watchControl(oob []byte) (at time.Time, drops uint32, ok bool) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return time.Time{}, 0, false
	}
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET {
			continue
		}
		switch m.Header.Type {
		case unix.SCM_TIMESTAMPNS:
			if len(m.Data) >= 16 {
				sec := int64(binary.NativeEndian.Uint64(m.Data[0:8]))
				nsec := int64(binary.NativeEndian.Uint64(m.Data[8:16]))
				at, ok = time.Unix(sec, nsec), true
			}
		case unix.SO_RXQ_OVFL:
			if len(m.Data) >= 4 {
				drops = binary.NativeEndian.Uint32(m.Data)
			}
		}
	}
	return at, drops, ok
}

// watchAdvert reads the VRID and the source of an IPv4 packet carrying VRRP.
func watchAdvert(p []byte) (vrid uint8, src netip.Addr, ok bool) {
	if len(p) < 20 {
		return 0, netip.Addr{}, false
	}
	ihl := int(p[0]&0x0f) * 4
	if ihl < 20 || len(p) < ihl+8 {
		return 0, netip.Addr{}, false
	}
	return p[ihl+1], netip.AddrFrom4([4]byte(p[12:16])), true
}

func (w *advertWatch) note(link int, vrid uint8, at time.Time, drops uint32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := &w.stats[link]
	s.adverts++
	s.drops = max(s.drops, drops)
	k := watchKey{link, vrid}
	prev, seen := w.last[k]
	w.last[k] = at
	if !seen {
		return
	}
	gap := at.Sub(prev)
	s.maxGap = max(s.maxGap, gap)
	if gap < 2*w.interval {
		return
	}
	s.late++
	if gap >= 3*w.interval {
		s.silent++
	}
	if len(w.lateLog) < watchLateKept {
		w.lateLog = append(w.lateLog, lateAdvert{link: link, vrid: vrid, at: at, gap: gap})
	}
}

// Stop ends the reading and closes the sockets.
func (w *advertWatch) Stop() {
	close(w.stop)
	w.wg.Wait()
	for _, fd := range w.fds {
		unix.Close(fd)
	}
}

// Reset forgets what was seen so far: the window starts.
func (w *advertWatch) Reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i := range w.stats {
		w.stats[i] = watchStats{drops: w.stats[i].drops}
	}
	clear(w.last)
	w.lateLog = nil
}

// Summary is one line per link: adverts seen, the longest gap between two adverts of one
// VRID, and how many gaps reached 2 and 3 intervals.
func (w *advertWatch) Summary(drops0 []uint32) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var sb strings.Builder
	for i, l := range w.links {
		s := w.stats[i]
		fmt.Fprintf(&sb, "  %s: %d adverts from lb1, longest gap %s, gaps >= 2 x %s: %d, >= 3 x: %d; queue overflows %d\n",
			l.name, s.adverts, s.maxGap.Round(10*time.Microsecond), w.interval, s.late, s.silent, s.drops-drops0[i])
	}
	return sb.String()
}

// Drops is the overflow count of each link so far.
func (w *advertWatch) Drops() []uint32 {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := make([]uint32, len(w.stats))
	for i, s := range w.stats {
		d[i] = s.drops
	}
	return d
}

// Around lists the late adverts on link that arrived between from and to, by arrival.
func (w *advertWatch) Around(link int, from, to time.Time) string {
	w.mu.Lock()
	var ls []lateAdvert
	for _, l := range w.lateLog {
		if l.link == link && !l.at.Before(from) && !l.at.After(to) {
			ls = append(ls, l)
		}
	}
	w.mu.Unlock()
	if len(ls) == 0 {
		return fmt.Sprintf("no advert on %s came 2 x %s or more after the one before it, from %s to %s",
			w.links[link].name, w.interval, from.Format("15:04:05.000"), to.Format("15:04:05.000"))
	}
	slices.SortFunc(ls, func(a, b lateAdvert) int { return a.at.Compare(b.at) })
	var sb strings.Builder
	fmt.Fprintf(&sb, "late adverts on %s (arrival, VRID, gap), from %s to %s:", w.links[link].name, from.Format("15:04:05.000"), to.Format("15:04:05.000"))
	for i, l := range ls {
		if i == 40 {
			fmt.Fprintf(&sb, " ... and %d more", len(ls)-i)
			break
		}
		fmt.Fprintf(&sb, " %s vrid %d %s;", l.at.Format("15:04:05.000"), l.vrid, l.gap.Round(100*time.Microsecond))
	}
	return sb.String()
}

func TestAdvertWatchGaps(t *testing.T) {
	w := &advertWatch{interval: 20 * time.Millisecond, links: []scaleLink{scaleHapairLink}, last: map[watchKey]time.Time{}, stats: make([]watchStats, 1)}
	t0 := time.Date(2026, 12, 5, 2, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	for _, a := range []struct {
		vrid uint8
		at   int
	}{{1, 0}, {2, 5}, {1, 20}, {2, 25}, {1, 40}, {2, 75}, {1, 120}, {2, 95}} {
		w.note(0, a.vrid, ms(a.at), 0)
	}
	s := w.stats[0]
	// VRID 1: gaps 20, 20, 80 (late and silent); VRID 2: 20, 50 (late), 20.
	if s.adverts != 8 || s.maxGap != 80*time.Millisecond || s.late != 2 || s.silent != 1 {
		t.Errorf("stats %+v, want 8 adverts, longest gap 80ms, 2 late, 1 silent", s)
	}
	got := w.Around(0, ms(100), ms(200))
	if !strings.Contains(got, "vrid 1 80ms") || strings.Contains(got, "vrid 2") {
		t.Errorf("Around(100ms, 200ms) = %q, want VRID 1's 80ms gap only", got)
	}
	if got := w.Around(0, ms(0), ms(60)); !strings.HasPrefix(got, "no advert on hp0") {
		t.Errorf("Around(0, 60ms) = %q, want none", got)
	}
	w.Reset()
	if s := w.stats[0]; s.adverts != 0 || s.maxGap != 0 || len(w.lateLog) != 0 {
		t.Errorf("after Reset: %+v, %d late kept", s, len(w.lateLog))
	}
}

func TestWatchAdvert(t *testing.T) {
	p := make([]byte, 28)
	p[0] = 0x45
	copy(p[12:16], []byte{10, 71, 0, 1})
	p[21] = 42
	vrid, src, ok := watchAdvert(p)
	if !ok || vrid != 42 || src != netip.MustParseAddr("10.71.0.1") {
		t.Errorf("watchAdvert = %d, %s, %v; want 42, 10.71.0.1, true", vrid, src, ok)
	}
	if _, _, ok := watchAdvert(p[:24]); ok {
		t.Error("a truncated packet was read")
	}
	p[0] = 0x44 // IHL 16 bytes: no valid IPv4 header
	if _, _, ok := watchAdvert(p); ok {
		t.Error("an IHL below 20 bytes was read")
	}
}
