package record

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/hapair/hapair/internal/testenv"
	"github.com/hapair/hapair/vrrp"
	"golang.org/x/sys/unix"
)

type fakeClock struct {
	boot  string
	since time.Duration
}

func (c *fakeClock) BootID() string       { return c.boot }
func (c *fakeClock) Since() time.Duration { return c.since }

const boot = "0b9d3c2e-6f0a-4d8e-9a55-1c2b3d4e5f60"

// TestRoundTrip writes and reads a record in a directory on disk and, where the machine has
// one, on tmpfs, where the writes are raw syscalls.
func TestRoundTrip(t *testing.T) {
	t.Run("disk", func(t *testing.T) { testRoundTrip(t, diskDir(t), false) })
	t.Run("tmpfs", func(t *testing.T) { testRoundTrip(t, tmpfsDir(t), true) })
}

func testRoundTrip(t *testing.T, dir string, tmpfs bool) {
	clock := &fakeClock{boot: boot, since: 100 * time.Second}
	w, err := Create(dir, "VI_LOGS", 51, clock)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.onTmpfs != tmpfs {
		t.Fatalf("%s: on tmpfs %v, want %v", dir, w.onTmpfs, tmpfs)
	}
	w.Record(vrrp.Master, 110, true)
	clock.since += 700 * time.Millisecond
	e, err := Read(dir, "VI_LOGS", 51, clock)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Entry{State: vrrp.Master, Priority: 110, Age: 700 * time.Millisecond}); *e != want {
		t.Errorf("read %+v, want %+v", *e, want)
	}
	// A transition without an advert keeps the last advert's time; the line keeps its length.
	w.Record(vrrp.Init, 110, false)
	clock.since += time.Second
	e, err = Read(dir, "VI_LOGS", 51, clock)
	if err != nil {
		t.Fatal(err)
	}
	if e.State != vrrp.Init || e.Age != 1700*time.Millisecond {
		t.Errorf("read %+v, want INIT, age 1.7s", *e)
	}
	b, _ := os.ReadFile(Path(dir, "VI_LOGS"))
	if len(b) != lineLen {
		t.Errorf("record is %d bytes, want %d:\n%s", len(b), lineLen, b)
	}
	if err := w.Err(); err != nil {
		t.Error(err)
	}
}

func TestReadRefusals(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{boot: boot, since: 100 * time.Second}
	if e, err := Read(dir, "VI_LOGS", 51, clock); e != nil || err != nil {
		t.Fatalf("no record: %v, %v; want nil, nil", e, err)
	}
	w, err := Create(dir, "VI_LOGS", 51, clock)
	if err != nil {
		t.Fatal(err)
	}
	w.Record(vrrp.Master, 110, true)
	w.Close()

	if _, err := Read(dir, "VI_LOGS", 52, clock); err == nil {
		t.Error("a record of another virtual router was read")
	}
	rebooted := &fakeClock{boot: "11111111-2222-3333-4444-555555555555", since: 200 * time.Second}
	if _, err := Read(dir, "VI_LOGS", 51, rebooted); !errors.Is(err, ErrOtherBoot) {
		t.Errorf("after a reboot: %v, want ErrOtherBoot", err)
	}
	noBoot := &fakeClock{since: 200 * time.Second}
	if _, err := Read(dir, "VI_LOGS", 51, noBoot); !errors.Is(err, ErrOtherBoot) {
		t.Errorf("boot id unknown: %v, want ErrOtherBoot", err)
	}
	past := &fakeClock{boot: boot, since: 50 * time.Second}
	if _, err := Read(dir, "VI_LOGS", 51, past); err == nil {
		t.Error("a last advert in the future was read")
	}
	for _, junk := range []string{"", "garbage\n", "hapair-vrrp-state-1 boot=x\n"} {
		if err := os.WriteFile(Path(dir, "VI_LOGS"), []byte(junk), 0o600); err != nil {
			t.Fatal(err)
		}
		if e, err := Read(dir, "VI_LOGS", 51, clock); err == nil {
			t.Errorf("junk %q read as %+v", junk, e)
		}
	}
}

func TestSystemClock(t *testing.T) {
	c := SystemClock{}
	if len(c.BootID()) != 36 {
		t.Errorf("boot id %q", c.BootID())
	}
	a := c.Since()
	time.Sleep(10 * time.Millisecond)
	if b := c.Since(); b-a < 10*time.Millisecond {
		t.Errorf("CLOCK_BOOTTIME advanced %v over a 10ms sleep", b-a)
	}
}

// TestSystemClockSince: SystemClock.Since, read from several goroutines at once, never goes
// backwards and is never ahead of a CLOCK_BOOTTIME read taken after it; it lags such a read by
// little (the median of the lags is tested, as a goroutine may be preempted between the two).
func TestSystemClockSince(t *testing.T) {
	defer func(r time.Duration) { boottimeRefresh = r }(boottimeRefresh)
	boottimeRefresh = 5 * time.Millisecond // extrapolations and real reads, many of each
	reads := boottime.reads.Load()
	var c Clock = SystemClock{}
	errs := make(chan error, 4)
	lags := make(chan []time.Duration, 4)
	for range 4 {
		go func() {
			var prev time.Duration
			var lag []time.Duration
			for end := time.Now().Add(100 * time.Millisecond); time.Now().Before(end); {
				v := c.Since()
				var ts unix.Timespec
				if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
					errs <- err
					return
				}
				now := time.Duration(ts.Nano())
				if v < prev {
					errs <- fmt.Errorf("Since went backwards: %v after %v", v, prev)
					return
				}
				if v > now {
					errs <- fmt.Errorf("Since %v is ahead of CLOCK_BOOTTIME %v read after it", v, now)
					return
				}
				prev = v
				lag = append(lag, now-v)
			}
			errs <- nil
			lags <- lag
		}()
	}
	var all []time.Duration
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		all = append(all, <-lags...)
	}
	slices.Sort(all)
	if med := all[len(all)/2]; med > time.Millisecond {
		t.Errorf("Since lags CLOCK_BOOTTIME by %v (median of %d), want well under a millisecond", med, len(all))
	}
	if n := boottime.reads.Load() - reads; n < 2 {
		t.Errorf("CLOCK_BOOTTIME read %d times over 100ms with a 5ms refresh: extrapolation not tested", n)
	}
}

// TestReadUsesExactClock: Read's now is a real read of CLOCK_BOOTTIME, never an extrapolation
// that lags (after a suspend) and would make the record look younger than it is.
func TestReadUsesExactClock(t *testing.T) {
	dir := t.TempDir()
	w, err := Create(dir, "VI_LOGS", 51, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Record(vrrp.Master, 110, true)
	reads := boottime.reads.Load()
	if _, err := Read(dir, "VI_LOGS", 51, nil); err != nil {
		t.Fatal(err)
	}
	if boottime.reads.Load() == reads {
		t.Error("Read did not read CLOCK_BOOTTIME")
	}
}

func TestRecordDoesNotAllocate(t *testing.T) {
	for _, tc := range recordDirs {
		t.Run(tc.name, func(t *testing.T) {
			w, err := Create(tc.dir(t), "VI_LOGS", 51, &fakeClock{boot: boot, since: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			if n := testing.AllocsPerRun(100, func() { w.Record(vrrp.Master, 110, true) }); n != 0 {
				t.Errorf("Record allocates %.0f times per call", n)
			}
		})
	}
}

// recordDirs are where a record may live: on a disk (written with WriteAt) and on tmpfs (a raw
// pwrite).
var recordDirs = []struct {
	name string
	dir  func(*testing.T) string
}{{"disk", diskDir}, {"tmpfs", tmpfsDir}}

// tmpfsDir is a new directory on tmpfs, removed at the end of the test, where the record's
// writes are raw pwrites.
func tmpfsDir(t *testing.T) string {
	t.Helper()
	return dirOn(t, true, "/dev/shm", "/run")
}

// diskDir is a directory that is not on tmpfs, where the record's writes are ordinary ones:
// in the test's temporary directory or, where /tmp is a tmpfs, in /var/tmp.
func diskDir(t *testing.T) string {
	t.Helper()
	return dirOn(t, false, os.TempDir(), "/var/tmp")
}

// dirOn makes a directory, removed at the test's end, in the first of parents that is a
// writable tmpfs (tmpfs) or is not one (!tmpfs); with none, the test cannot run here.
func dirOn(t *testing.T, tmpfs bool, parents ...string) string {
	t.Helper()
	for _, parent := range parents {
		var st unix.Statfs_t
		if unix.Statfs(parent, &st) != nil || (st.Type == unix.TMPFS_MAGIC) != tmpfs {
			continue
		}
		dir, err := os.MkdirTemp(parent, "hapair-record-test-")
		if err != nil {
			continue
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	testenv.SkipOrFail(t, "none of %v is a writable directory on tmpfs=%v here: that write path is not tested", parents, tmpfs)
	return ""
}

// TestRecordReadsTheClockOnceASecond: a MASTER's record reads CLOCK_BOOTTIME (a system call:
// it has no vDSO path) at most about once a second, not at every advert.
func TestRecordReadsTheClockOnceASecond(t *testing.T) {
	w, err := Create(t.TempDir(), "VI_LOGS", 51, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	reads := boottime.reads.Load()
	for range 1000 {
		w.Record(vrrp.Master, 110, true)
	}
	// 1000 records take well under a second; the first one may find the clock's last read
	// more than a second old, and one more read may fall at the second's turn.
	if n := boottime.reads.Load() - reads; n > 2 {
		t.Errorf("1000 records read CLOCK_BOOTTIME %d times, want at most 2", n)
	}
	if err := w.Err(); err != nil {
		t.Error(err)
	}
}

// TestCreateKeepsTheRecord: a new Writer (the restarted hapair) leaves the last record as it
// was until it writes its own: hapair reads it after Create to decide whether to resume.
func TestCreateKeepsTheRecord(t *testing.T) {
	for _, tc := range recordDirs {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir(t)
			clock := &fakeClock{boot: boot, since: 100 * time.Second}
			w, err := Create(dir, "VI_LOGS", 51, clock)
			if err != nil {
				t.Fatal(err)
			}
			w.Record(vrrp.Master, 110, true)
			w.Close()
			w, err = Create(dir, "VI_LOGS", 51, clock)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			clock.since += 50 * time.Millisecond
			e, err := Read(dir, "VI_LOGS", 51, clock)
			if err != nil {
				t.Fatal(err)
			}
			if want := (Entry{State: vrrp.Master, Priority: 110, Age: 50 * time.Millisecond}); *e != want {
				t.Errorf("read %+v, want %+v", *e, want)
			}
		})
	}
}

// TestRecordCutsALongerFile: a file longer than one line (an older hapair's page-sized mapped
// record, anything else) is cut to the line at the first Record; rewriting only the line's
// length in place would leave the tail there, and no later restart could read the record.
func TestRecordCutsALongerFile(t *testing.T) {
	for _, tc := range recordDirs {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir(t)
			clock := &fakeClock{boot: boot, since: 100 * time.Second}
			w, err := Create(dir, "VI_LOGS", 51, clock)
			if err != nil {
				t.Fatal(err)
			}
			w.Record(vrrp.Backup, 100, true)
			w.Close()
			line, err := os.ReadFile(Path(dir, "VI_LOGS"))
			if err != nil {
				t.Fatal(err)
			}
			long := append(line, make([]byte, 4096-len(line))...)
			if err := os.WriteFile(Path(dir, "VI_LOGS"), long, 0o600); err != nil {
				t.Fatal(err)
			}

			w, err = Create(dir, "VI_LOGS", 51, clock)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			w.Record(vrrp.Master, 110, true)
			clock.since += 50 * time.Millisecond
			e, err := Read(dir, "VI_LOGS", 51, clock)
			if err != nil {
				t.Fatal(err)
			}
			if want := (Entry{State: vrrp.Master, Priority: 110, Age: 50 * time.Millisecond}); *e != want {
				t.Errorf("read %+v, want %+v", *e, want)
			}
			if err := w.Err(); err != nil {
				t.Error(err)
			}
		})
	}
}

// A sender that rewrites the record itself gets the line with the advert's digits where it puts
// its stamps: a line so stamped reads back as that advert's time, and the Writer's next record
// keeps it (AdvertSentAt). Off tmpfs, where a write may block, it gets nothing.
func TestSteadyLine(t *testing.T) {
	clock := &fakeClock{boot: boot, since: 100 * time.Second}
	dir := tmpfsDir(t)
	w, err := Create(dir, "VI_LOGS", 51, clock)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Record(vrrp.Master, 110, true) // advert at 100 s
	fd, line, at, ok := w.SteadyLine(vrrp.Master, 110)
	if !ok || fd != int(w.f.Fd()) || at+20 != len(line)-1 {
		t.Fatalf("SteadyLine = %d, %q, %d, %v", fd, line, at, ok)
	}
	stamp := 103*time.Second + 5*time.Millisecond
	copy(line[at:], fmt.Sprintf("%020d", int64(stamp)))
	if _, err := unix.Pwrite(fd, line, 0); err != nil {
		t.Fatal(err)
	}
	clock.since = 104 * time.Second
	e, err := Read(dir, "VI_LOGS", 51, clock)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Entry{State: vrrp.Master, Priority: 110, Age: 995 * time.Millisecond}); *e != want {
		t.Fatalf("stamped line reads %+v, want %+v", *e, want)
	}
	w.AdvertSentAt(stamp)
	w.AdvertSentAt(stamp - time.Second) // never back
	w.Record(vrrp.Master, 120, false)
	if e, err = Read(dir, "VI_LOGS", 51, clock); err != nil || e.Age != 995*time.Millisecond || e.Priority != 120 {
		t.Fatalf("after AdvertSentAt and Record: %+v, %v; want age 995ms, priority 120", e, err)
	}

	onDisk, err := Create(diskDir(t), "VI_LOGS", 51, clock)
	if err != nil {
		t.Fatal(err)
	}
	defer onDisk.Close()
	if _, _, _, ok := onDisk.SteadyLine(vrrp.Master, 110); ok {
		t.Error("SteadyLine on a disk: ok, want a refusal (its writes may block)")
	}
}
