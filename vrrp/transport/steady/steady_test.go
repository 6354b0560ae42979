//go:build linux

package steady

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

var payload = []byte("advert: the same bytes every period")

func skipUnsupported(t *testing.T) {
	t.Helper()
	if !Supported() {
		t.Skip("no sender thread on this architecture")
	}
}

// link is a sending socket and a receiving one, both UDP on 127.0.0.1 and outside Go's
// netpoller (the receiver is read with poll(2) and MSG_DONTWAIT, so that a drain reads exactly
// what is queued).
type link struct {
	sock, rx int
	name     []byte // the receiver's address, for Config.Name
}

func newLink(t *testing.T) *link {
	t.Helper()
	l := &link{}
	var err error
	for _, fd := range []*int{&l.sock, &l.rx} {
		if *fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Close(*fd) })
	}
	if err := unix.Bind(l.rx, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(l.rx)
	if err != nil {
		t.Fatal(err)
	}
	raw := unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: [4]byte{127, 0, 0, 1}}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&raw.Port))[:], uint16(sa.(*unix.SockaddrInet4).Port))
	l.name = bytes.Clone(unsafe.Slice((*byte)(unsafe.Pointer(&raw)), unix.SizeofSockaddrInet4))
	return l
}

func (l *link) config(first, period time.Duration) Config {
	return Config{Datagrams: []Datagram{{Socket: l.sock, Name: l.name, Payload: payload, Record: -1}}, First: first, Period: period}
}

// recv returns the next datagram and its source address, waiting for it until the deadline;
// nil when none came. A deadline in the past reads only what is queued.
func (l *link) recv(t *testing.T, deadline time.Time) ([]byte, [4]byte) {
	t.Helper()
	buf := make([]byte, 70000)
	for {
		n, from, err := unix.Recvfrom(l.rx, buf, unix.MSG_DONTWAIT)
		if err == nil {
			return buf[:n], from.(*unix.SockaddrInet4).Addr
		}
		if err != unix.EAGAIN {
			t.Fatal(err)
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return nil, [4]byte{}
		}
		fds := []unix.PollFd{{Fd: int32(l.rx), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, int((wait+time.Millisecond-1)/time.Millisecond)); err != nil && err != unix.EINTR {
			t.Fatal(err)
		}
	}
}

// count receives until the deadline, checking that every datagram is the payload.
func (l *link) count(t *testing.T, deadline time.Time) int {
	t.Helper()
	n := 0
	for {
		b, _ := l.recv(t, deadline)
		if b == nil {
			return n
		}
		if !bytes.Equal(b, payload) {
			t.Fatalf("received %q, want %q", b, payload)
		}
		n++
	}
}

func start(t *testing.T, cfg Config) *Sender {
	t.Helper()
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(s) }) // before the link's sockets are closed
	return s
}

// stop is s.Stop, which must not hang (see noHang).
func stop(s *Sender) Result { return noHang(s.Stop) }

// noHang returns what stop (a Stop) returns, and must not hang: a test whose Stop does ends the
// run at once, since nothing (not even its cleanup) could stop the thread afterwards.
func noHang[R any](stop func() R) R {
	done := make(chan R, 1)
	go func() { done <- stop() }()
	select {
	case res := <-done:
		return res
	case <-time.After(5 * time.Second):
		panic("Stop still waiting after 5 s")
	}
}

// waitFor polls cond for up to a second.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after a second", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPeriodAndCount: one datagram per period on the timer's grid, each the payload, and
// Result.Sent is exactly what arrived.
func TestPeriodAndCount(t *testing.T) {
	skipUnsupported(t)
	l := newLink(t)
	const period = 10 * time.Millisecond
	s := start(t, l.config(BootTime()+period, period))
	got := l.count(t, time.Now().Add(200*time.Millisecond))
	if got < 12 || got > 25 {
		t.Errorf("received %d datagrams in 200 ms at a 10 ms period, want about 20", got)
	}
	res := stop(s)
	// Loopback delivers within sendmsg: what was sent before Stop returned is queued now.
	got += l.count(t, time.Now())
	if res.Each[0].Sent != uint64(got) || res.Each[0].Errors != 0 {
		t.Errorf("Result %+v, received %d", res, got)
	}
	if res.Failed != 0 || res.Each[0].LastErr != 0 {
		t.Errorf("Result %+v", res)
	}
}

// TestNothingAfterStop: once Stop has returned, no datagram comes, and the counters stay.
func TestNothingAfterStop(t *testing.T) {
	skipUnsupported(t)
	l := newLink(t)
	const period = 5 * time.Millisecond
	s := start(t, l.config(BootTime(), period))
	waitFor(t, "sending", func() bool { return s.Sent(0) >= 3 })
	res := stop(s)
	queued := l.count(t, time.Now())
	if uint64(queued) != res.Each[0].Sent {
		t.Errorf("%d datagrams queued at Stop, Result.Sent %d", queued, res.Each[0].Sent)
	}
	if after := l.count(t, time.Now().Add(3*period)); after != 0 {
		t.Errorf("%d datagrams after Stop", after)
	}
	if s.Sent(0) != res.Each[0].Sent || s.Errors(0) != res.Each[0].Errors {
		t.Errorf("Sent %d Errors %d after Stop, Result %+v", s.Sent(0), s.Errors(0), res)
	}
	if again := s.Stop(); !reflect.DeepEqual(again, res) {
		t.Errorf("second Stop %+v, first %+v", again, res)
	}
}

// TestStopIsPrompt: Stop does not wait for the next due time.
func TestStopIsPrompt(t *testing.T) {
	skipUnsupported(t)
	l := newLink(t)
	s := start(t, l.config(BootTime()+time.Hour, time.Hour))
	waitFor(t, "running", func() bool { return blockedThreads(t) == 1 })
	begin := time.Now()
	res := stop(s)
	if took := time.Since(begin); took > 100*time.Millisecond {
		t.Errorf("Stop took %v", took)
	}
	if res.Each[0].Sent != 0 || res.Each[0].Errors != 0 || res.Each[0].Last != 0 {
		t.Errorf("Result %+v, want nothing sent", res)
	}
}

// TestControl: the ancillary data goes with every datagram (IP_PKTINFO: the source address).
func TestControl(t *testing.T) {
	skipUnsupported(t)
	l := newLink(t)
	control := make([]byte, unix.CmsgSpace(unix.SizeofInet4Pktinfo))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&control[0]))
	h.Level, h.Type = unix.IPPROTO_IP, unix.IP_PKTINFO
	h.SetLen(unix.CmsgLen(unix.SizeofInet4Pktinfo))
	info := (*unix.Inet4Pktinfo)(unsafe.Pointer(&control[unix.CmsgLen(0)]))
	info.Spec_dst = [4]byte{127, 0, 0, 2} // the socket alone would send from 127.0.0.1
	cfg := l.config(BootTime(), 5*time.Millisecond)
	cfg.Datagrams[0].Control = control
	s := start(t, cfg)
	for range 3 {
		b, from := l.recv(t, time.Now().Add(time.Second))
		if b == nil {
			t.Fatal("nothing received")
		}
		if from != [4]byte{127, 0, 0, 2} {
			t.Fatalf("datagram from %v, want 127.0.0.2", from)
		}
	}
	stop(s)
}

// TestRecord: the record line holds the due time of the last datagram sent, on the grid, not
// after it was sent, and the rest of the line as given.
func TestRecord(t *testing.T) {
	skipUnsupported(t)
	l := newLink(t)
	f, err := os.CreateTemp(t.TempDir(), "record")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const period = 10 * time.Millisecond
	const line = "x advert=00000000000000000000\n"
	first := BootTime() + 5*time.Millisecond
	cfg := l.config(first, period)
	cfg.Datagrams[0].Record, cfg.Datagrams[0].RecordLine, cfg.Datagrams[0].StampAt = int(f.Fd()), []byte(line), strings.Index(line, "0")
	s := start(t, cfg)
	waitFor(t, "sending", func() bool { return s.Sent(0) >= 4 })
	res := stop(s)
	now := BootTime()

	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != len(line) || string(b[:cfg.Datagrams[0].StampAt]) != line[:cfg.Datagrams[0].StampAt] || b[len(b)-1] != '\n' {
		t.Fatalf("record %q, want the shape of %q", b, line)
	}
	stamp, err := strconv.ParseInt(string(b[cfg.Datagrams[0].StampAt:cfg.Datagrams[0].StampAt+20]), 10, 64)
	if err != nil {
		t.Fatalf("record %q: %v", b, err)
	}
	due := time.Duration(stamp)
	switch {
	case due < first+time.Duration(res.Each[0].Sent-1)*period || due > now:
		t.Errorf("recorded due time %v, want in [%v, %v] (%d sent)", due, first+time.Duration(res.Each[0].Sent-1)*period, now, res.Each[0].Sent)
	case (due-first)%period != 0:
		t.Errorf("recorded due time %v is not on the grid %v + k*%v", due, first, period)
	case res.Each[0].Last != due:
		t.Errorf("Result.Last %v, recorded %v", res.Each[0].Last, due)
	case res.Each[0].RecordErrors != 0:
		t.Errorf("Result %+v", res)
	}
}

// TestRecordErrors: a failed pwrite is counted, and the datagrams still go.
func TestRecordErrors(t *testing.T) {
	skipUnsupported(t)
	l := newLink(t)
	f, err := os.Open(os.DevNull) // read-only: pwrite fails with EBADF
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg := l.config(BootTime(), 5*time.Millisecond)
	cfg.Datagrams[0].Record, cfg.Datagrams[0].RecordLine = int(f.Fd()), make([]byte, 20)
	s := start(t, cfg)
	waitFor(t, "sending", func() bool { return s.Sent(0) >= 3 })
	res := stop(s)
	if res.Each[0].RecordErrors != res.Each[0].Sent || res.Each[0].Errors != 0 {
		t.Errorf("Result %+v, want a record error per datagram", res)
	}
}

// TestSendErrors: a failed sendmsg is counted with its errno, and the thread goes on.
func TestSendErrors(t *testing.T) {
	skipUnsupported(t)
	p := pipe(t)
	l := newLink(t)
	cfg := l.config(BootTime(), 5*time.Millisecond)
	cfg.Datagrams[0].Socket = p[1]
	s := start(t, cfg)
	waitFor(t, "failing", func() bool { return s.Errors(0) >= 3 })
	n := s.Errors(0)
	waitFor(t, "failing on", func() bool { return s.Errors(0) > n })
	res := stop(s)
	if res.Each[0].Sent != 0 || res.Each[0].Errors < n+1 || res.Each[0].LastErr != unix.ENOTSOCK || res.Each[0].Last != 0 || res.Failed != 0 {
		t.Errorf("Result %+v, want ENOTSOCK errors only", res)
	}
}

// TestNoBurstAfterStall: due times passed before the thread woke make one datagram, not one
// each, and the due time it carries is the latest of them.
func TestNoBurstAfterStall(t *testing.T) {
	skipUnsupported(t)
	l := newLink(t)
	// A period long enough for a loaded machine's Start (a clone and its process's unmapping)
	// and first send to fit in its first half: at 20 ms this failed twice in twelve runs while
	// a CI run shared the machine (2 datagrams, and 0).
	const period = 100 * time.Millisecond
	first := BootTime() - 10*period // the next due time is a period from now
	s := start(t, l.config(first, period))
	begin := time.Now()
	if n := l.count(t, begin.Add(period/2)); n != 1 {
		t.Fatalf("%d datagrams in the first half period, want 1", n)
	}
	if n := l.count(t, begin.Add(period/2+5*period)); n < 3 || n > 6 {
		t.Errorf("%d datagrams in the next 5 periods, want about 5", n)
	}
	res := stop(s)
	// k counts every due time passed: the first wake-up's datagram was due at first+10*period.
	if floor := first + time.Duration(10+res.Each[0].Sent-1)*period; res.Each[0].Last < floor || res.Each[0].Last > BootTime() || (res.Each[0].Last-first)%period != 0 {
		t.Errorf("Result.Last %v, want on the grid from %v (%d sent)", res.Each[0].Last, floor, res.Each[0].Sent)
	}
}

// TestReadFailure: a failed read of the timerfd (here: its descriptor replaced by a pipe's
// write end) ends the thread (or the sender process), which Config.Ended hears at once and
// Stop reports.
func TestReadFailure(t *testing.T) {
	skipUnsupported(t)
	for _, thread := range []bool{false, true} {
		t.Run(map[bool]string{false: "process", true: "thread"}[thread], func(t *testing.T) {
			p := pipe(t)
			l := newLink(t)
			cfg := l.config(BootTime(), 5*time.Millisecond)
			cfg.Thread = thread
			ended := make(chan struct{})
			cfg.Ended = func() { close(ended) }
			s := start(t, cfg)
			// The read under way goes on with the timerfd; the next one finds the pipe.
			if err := unix.Dup3(p[1], s.mem.timerfd, unix.O_CLOEXEC); err != nil {
				t.Fatal(err)
			}
			select {
			case <-ended:
			case <-time.After(time.Second):
				t.Fatal("Config.Ended not called within a second")
			}
			waitFor(t, "exited", func() bool { return blockedThreads(t) == 0 })
			if !s.Ended() {
				t.Error("Ended() false")
			}
			res := stop(s)
			if res.Failed != unix.EBADF || res.Killed {
				t.Errorf("Result %+v, want Failed EBADF", res)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	skipUnsupported(t)
	const nofd = 1 << 20 // no open descriptor, should a config wrongly pass
	ok := Config{Datagrams: []Datagram{{Socket: nofd, Payload: payload, Record: -1}}, First: time.Second, Period: time.Second}
	for name, change := range map[string]func(*Config){
		"no Datagrams":   func(c *Config) { c.Datagrams = nil },
		"256 Datagrams":  func(c *Config) { c.Datagrams = slices.Repeat(c.Datagrams, 256) },
		"Socket -1":      func(c *Config) { c.Datagrams[0].Socket = -1 },
		"Period 0":       func(c *Config) { c.Period = 0 },
		"Period < 0":     func(c *Config) { c.Period = -time.Second },
		"First 0":        func(c *Config) { c.First = 0 },
		"no Payload":     func(c *Config) { c.Datagrams[0].Payload = nil },
		"Payload 64 KiB": func(c *Config) { c.Datagrams[0].Payload = make([]byte, 65536) },
		"Name too long":  func(c *Config) { c.Datagrams[0].Name = make([]byte, 129) },
		"Record -2":      func(c *Config) { c.Datagrams[0].Record = -2 },
		"no RecordLine":  func(c *Config) { c.Datagrams[0].Record = nofd },
		"StampAt < 0": func(c *Config) {
			c.Datagrams[0].Record, c.Datagrams[0].RecordLine, c.Datagrams[0].StampAt = nofd, make([]byte, 30), -1
		},
		"StampAt past": func(c *Config) {
			c.Datagrams[0].Record, c.Datagrams[0].RecordLine, c.Datagrams[0].StampAt = nofd, make([]byte, 30), 11
		},
	} {
		cfg := ok
		cfg.Datagrams = slices.Clone(ok.Datagrams)
		change(&cfg)
		if s, err := Start(cfg); err == nil {
			stop(s)
			t.Errorf("%s: no error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

// TestNoLeaks: starting and stopping many times leaves no thread, descriptor or mapping.
func TestNoLeaks(t *testing.T) {
	skipUnsupported(t)
	l := newLink(t)
	checkNoLeaks(t, func(i int) threadMem {
		s, err := Start(l.config(BootTime(), time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			waitFor(t, "running", func() bool { return blockedThreads(t) == 1 })
		}
		mem := s.mem
		stop(s)
		return mem
	})
}

// checkNoLeaks runs 200 cycles of a thread started and stopped, and checks that they leave no
// thread, descriptor, goroutine or mapping (each cycle returns what its thread ran on, freed).
func checkNoLeaks(t *testing.T, cycle func(i int) threadMem) {
	t.Helper()
	fds := countDir(t, "/proc/self/fd")
	tasks := countDir(t, "/proc/self/task")
	goroutines := runtime.NumGoroutine()
	for i := range 200 {
		mem := cycle(i)
		for _, m := range [][]byte{mem.block, mem.stack} {
			// madvise fails with ENOMEM on a range that is not mapped.
			if err := unix.Madvise(m, unix.MADV_NORMAL); err != unix.ENOMEM {
				t.Fatalf("cycle %d: madvise of a freed mapping: %v, want ENOMEM", i, err)
			}
		}
	}
	// An exited thread may linger in /proc for a moment after it has cleared its ctid.
	waitFor(t, "gone", func() bool { return blockedThreads(t) == 0 })
	if n := countDir(t, "/proc/self/fd"); n != fds {
		t.Errorf("%d descriptors after 200 cycles, %d before", n, fds)
	}
	// The runtime may have started threads of its own meanwhile (the futex waits block).
	if n := countDir(t, "/proc/self/task"); n > tasks+4 {
		t.Errorf("%d threads after 200 cycles, %d before", n, tasks)
	}
	waitFor(t, "the goroutines gone", func() bool { return runtime.NumGoroutine() <= goroutines })
}

// TestCountersDuringStop: Sent and Errors may be read while Stop frees the block.
func TestCountersDuringStop(t *testing.T) {
	skipUnsupported(t)
	l := newLink(t)
	for range 20 {
		s := start(t, l.config(BootTime(), time.Millisecond))
		done := make(chan struct{})
		go func() {
			defer close(done)
			for range 1000 {
				s.Sent(0)
				s.Errors(0)
			}
		}()
		res := stop(s)
		<-done
		if s.Sent(0) != res.Each[0].Sent {
			t.Fatalf("Sent %d after Stop, Result %+v", s.Sent(0), res)
		}
	}
}

func countDir(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// blockedThreads counts the process's threads that block every signal the kernel lets them:
// the sender threads (Go's threads block none for long).
func blockedThreads(t *testing.T) int {
	t.Helper()
	const all = "SigBlk:\tfffffffffffbfeff\n" // all but SIGKILL and SIGSTOP
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/status")
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			continue // exited meanwhile
		}
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(all)) {
			n++
		}
	}
	return n
}

// pipe is a pipe's read and write ends, closed when the test ends: descriptors that are not a
// socket, nor a timerfd.
func pipe(t *testing.T) [2]int {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	return p
}

// TestManyDatagrams: every datagram of the Config goes out at every due time, each on its own
// socket with its own record, and each has its own counts: one that fails (its socket is a
// pipe) fails alone.
func TestManyDatagrams(t *testing.T) {
	skipUnsupported(t)
	const period = 10 * time.Millisecond
	links := []*link{newLink(t), newLink(t), newLink(t)}
	p := pipe(t)
	cfg := Config{First: BootTime() + period, Period: period}
	var records []*os.File
	for _, l := range links {
		f, err := os.CreateTemp(t.TempDir(), "record")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		records = append(records, f)
		cfg.Datagrams = append(cfg.Datagrams, Datagram{Socket: l.sock, Name: l.name, Payload: payload,
			Record: int(f.Fd()), RecordLine: []byte("MASTER 00000000000000000000\n"), StampAt: 7})
	}
	cfg.Datagrams = append(cfg.Datagrams, Datagram{Socket: p[1], Payload: payload, Record: -1})
	s := start(t, cfg)
	waitFor(t, "sending", func() bool { return s.Sent(2) >= 10 })
	res := stop(s)
	for i, l := range links {
		got := l.count(t, time.Now())
		if c := res.Each[i]; c.Sent != uint64(got) || c.Errors != 0 || c.RecordErrors != 0 || c.Last == 0 {
			t.Errorf("datagram %d: %+v, received %d", i, c, got)
		}
		b, err := os.ReadFile(records[i].Name())
		if err != nil {
			t.Fatal(err)
		}
		if stamp, err := strconv.ParseInt(string(b[7:27]), 10, 64); err != nil || time.Duration(stamp) != res.Each[i].Last {
			t.Errorf("datagram %d: record %q, Last %v", i, b, res.Each[i].Last)
		}
	}
	if res.Each[0].Sent < 10 || res.Each[0].Sent != res.Each[2].Sent {
		t.Errorf("sent %d and %d of the first and third, want the same, 10 or more", res.Each[0].Sent, res.Each[2].Sent)
	}
	if c := res.Each[3]; c.Sent != 0 || c.Errors < 10 || c.LastErr != unix.ENOTSOCK {
		t.Errorf("the datagram on a pipe: %+v, want ENOTSOCK errors only", c)
	}
}
