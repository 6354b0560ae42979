package record

import (
	"errors"
	"os"
	"testing"
	"time"

	"github.com/hapair/hapair/vrrp"
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
	t.Run("disk", func(t *testing.T) { testRoundTrip(t, t.TempDir(), false) })
	t.Run("tmpfs", func(t *testing.T) {
		dir, err := os.MkdirTemp("/dev/shm", "hapair-record-test-")
		if err != nil {
			t.Skipf("no /dev/shm: %v", err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		testRoundTrip(t, dir, true)
	})
}

func testRoundTrip(t *testing.T, dir string, tmpfs bool) {
	clock := &fakeClock{boot: boot, since: 100 * time.Second}
	w, err := Create(dir, "VI_LOGS", 51, clock)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if w.onTmpfs != tmpfs {
		t.Skipf("%s: on tmpfs %v, not %v", dir, w.onTmpfs, tmpfs)
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

func TestRecordDoesNotAllocate(t *testing.T) {
	w, err := Create(t.TempDir(), "VI_LOGS", 51, &fakeClock{boot: boot, since: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if n := testing.AllocsPerRun(100, func() { w.Record(vrrp.Master, 110, true) }); n != 0 {
		t.Errorf("Record allocates %.0f times per call", n)
	}
}
