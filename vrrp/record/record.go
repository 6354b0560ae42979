// Package record keeps a VRRP instance's state record in hapair's runtime directory: the state,
// the priority and when the instance last sent an advert, on a clock that tells a reboot apart
// (the kernel's boot id and CLOCK_BOOTTIME, which counts through suspend and never jumps). A
// hapair that restarts (crash, in-place upgrade) reads it to decide whether it may resume as
// MASTER (vrrp.Machine.Resume).
//
// The record is one fixed-length line rewritten in place (pwrite) at every advert: no
// allocation, no rename, and a reader never sees a torn line of another length. A line that does
// not parse is no record.
//
// Why not a shared mapping of the file, which would spare the pwrite: a mapped page of tmpfs
// counts in the process's resident set, 4 KiB an instance, 1 MiB at 255 instances (measured in
// make bench-scale, 2026-12-03), where the pwrite costs CPU that hapair has to spare at that
// size (a quarter of keepalived's at 20 ms).
package record

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/hapair/hapair/vrrp"
	"golang.org/x/sys/unix"
)

// Clock is the record's clock: the boot it belongs to, and the time since that boot.
type Clock interface {
	BootID() string
	Since() time.Duration // CLOCK_BOOTTIME
}

// SystemClock reads the kernel's boot id and CLOCK_BOOTTIME.
type SystemClock struct{}

var bootID = sync.OnceValue(func() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
})

// BootID is /proc/sys/kernel/random/boot_id ("" when unreadable: then no record resumes).
func (SystemClock) BootID() string { return bootID() }

// Since is CLOCK_BOOTTIME, or a little less. It is read at every advert, and the kernel has no
// vDSO path for CLOCK_BOOTTIME: a real read is a system call. So it reads the clock at most once
// per boottimeRefresh (a second) and extrapolates in between with Go's monotonic clock (the
// vDSO's CLOCK_MONOTONIC: no system call). The two clocks run at the same rate; CLOCK_BOOTTIME
// is CLOCK_MONOTONIC plus the time spent suspended, which grows at each resume. So:
//   - the extrapolation is never ahead of CLOCK_BOOTTIME: the monotonic clock is read after
//     CLOCK_BOOTTIME, and since then CLOCK_BOOTTIME has advanced at least as much as it;
//   - after a resume it is behind by the suspend's length, for at most a second of monotonic
//     time, until the next real read. A record written then says its advert was sent earlier
//     than it was, i.e. is older, which can only make a restarted hapair less willing to resume
//     as MASTER: the safe direction;
//   - it never goes backwards: every value is at most the true CLOCK_BOOTTIME when computed,
//     and a real read (which starts the next extrapolation) is the true value, later.
//
// The reader's side wants the opposite bound (a clock behind makes a record look younger), so
// Read reads CLOCK_BOOTTIME itself (exactSince).
func (SystemClock) Since() time.Duration {
	boottime.mu.Lock()
	defer boottime.mu.Unlock()
	if !boottime.at.IsZero() {
		if d := time.Since(boottime.at); d < boottimeRefresh {
			return boottime.base + d
		}
	}
	return boottime.readLocked()
}

// exactSince is CLOCK_BOOTTIME read now, never behind (for Read).
func (SystemClock) exactSince() time.Duration {
	boottime.mu.Lock()
	defer boottime.mu.Unlock()
	return boottime.readLocked()
}

// exactClock is a Clock whose Since may lag behind and that can read the true time.
type exactClock interface{ exactSince() time.Duration }

// boottimeRefresh is how long SystemClock.Since extrapolates a read of CLOCK_BOOTTIME.
var boottimeRefresh = time.Second

// boottime is SystemClock's last read of CLOCK_BOOTTIME, shared by the instances' goroutines.
var boottime boottimeCache

type boottimeCache struct {
	mu    sync.Mutex
	base  time.Duration // CLOCK_BOOTTIME, read just before at
	at    time.Time     // when base was read, on Go's monotonic clock
	reads atomic.Int64  // reads of CLOCK_BOOTTIME, for tests
}

// readLocked reads CLOCK_BOOTTIME and starts a new extrapolation from it. It is read with a raw
// syscall: clock_gettime never blocks, and unix.ClockGettime's ordinary syscall would wake the Go
// runtime's sysmon (see package vrrp/alarm). A failed read (it does not fail) keeps
// extrapolating the last one, or is 0, as old as a record can be.
func (b *boottimeCache) readLocked() time.Duration {
	b.reads.Add(1)
	var ts unix.Timespec
	if _, _, errno := unix.RawSyscall(unix.SYS_CLOCK_GETTIME, unix.CLOCK_BOOTTIME, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		if b.at.IsZero() {
			return 0
		}
		return b.base + time.Since(b.at)
	}
	// Monotonic after BOOTTIME, never before: so the extrapolation can only lag.
	b.base, b.at = time.Duration(ts.Nano()), time.Now()
	return b.base
}

// Path is the record of instance name in dir.
func Path(dir, name string) string { return filepath.Join(dir, "vrrp-"+name+".state") }

// line layout: fixed widths so every rewrite has the same length.
const (
	magic    = "hapair-vrrp-state-1"
	bootLen  = 36 // a UUID
	stateLen = 6  // MASTER
	// advertLen: the advert's CLOCK_BOOTTIME nanoseconds, zero-padded, the line's last field.
	advertLen = 20
	lineLen   = len(magic) + 1 + 5 + bootLen + 1 + 5 + 3 + 1 + 6 + stateLen + 1 + 5 + 3 + 1 + 7 + advertLen + 1
)

// Writer rewrites one instance's record. It is used from the instance's loop only.
type Writer struct {
	// OnError, when set, is called with the first write error, once: a record that stops
	// following its instance means a restart will not resume it, which its owner must say.
	// Later errors are dropped, so that a full disk does not flood the log.
	OnError func(error)

	f      *os.File
	clock  Clock
	vrid   uint8
	last   time.Duration // CLOCK_BOOTTIME of the last advert sent
	buf    []byte
	failed bool // a write failed: OnError has been told
	err    error
	// onTmpfs: the record lives in memory (a systemd RuntimeDirectory under /run), so pwrite
	// never waits for a disk and is made as a raw syscall, which does not wake the Go runtime's
	// sysmon at every advert. Elsewhere a write may block, and the runtime must know.
	onTmpfs bool
	fd      uintptr // f's descriptor, for the raw pwrite
	// cut: the file has been cut to one line. The line is rewritten in place, so a file that
	// was longer when Create found it (an older hapair's page-sized mapped record, anything
	// else) would keep its tail, and Read would never take it for a record again. Cut once, at
	// the first Record and not in Create, which must leave the last record for the restarted
	// hapair to read.
	cut bool
}

// Create opens (creating, mode 0600) the record of instance name in dir. It leaves a record
// already there as it is (the restarted hapair reads it after Create) until the first Record,
// which also cuts a longer file to the one line.
func Create(dir, name string, vrid uint8, clock Clock) (*Writer, error) {
	if clock == nil {
		clock = SystemClock{}
	}
	f, err := os.OpenFile(Path(dir, name), os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state record: %w", err)
	}
	var st unix.Statfs_t
	onTmpfs := unix.Fstatfs(int(f.Fd()), &st) == nil && st.Type == unix.TMPFS_MAGIC
	return &Writer{f: f, clock: clock, vrid: vrid, buf: make([]byte, 0, lineLen), onTmpfs: onTmpfs, fd: f.Fd()}, nil
}

// Record rewrites the record: the instance is in state with priority prio; advertSent says an
// advert was just sent (its time is then now on the record's clock). The first write error goes
// to OnError and is kept for Err; later ones are dropped.
func (w *Writer) Record(state vrrp.State, prio uint8, advertSent bool) {
	if advertSent {
		w.last = w.clock.Since()
	}
	b := w.buf[:0]
	b = append(b, magic...)
	b = append(b, " boot="...)
	b = appendPadded(b, w.clock.BootID(), bootLen)
	b = append(b, " vrid="...)
	b = appendZeroPadded(b, uint64(w.vrid), 3)
	b = append(b, " state="...)
	b = appendPadded(b, state.String(), stateLen)
	b = append(b, " prio="...)
	b = appendZeroPadded(b, uint64(prio), 3)
	b = append(b, " advert="...)
	b = appendZeroPadded(b, uint64(w.last), advertLen)
	b = append(b, '\n')
	w.buf = b
	err := w.write(b)
	if err == nil && !w.cut {
		// After the write, so that a reader meanwhile sees the new line or a longer file,
		// never an empty one.
		w.cut = true
		err = w.f.Truncate(int64(len(b)))
	}
	if err != nil && !w.failed {
		w.failed, w.err = true, fmt.Errorf("state record %s: %w", w.f.Name(), err)
		if w.OnError != nil {
			w.OnError(w.err)
		}
	}
}

// SteadyLine is what a sender that rewrites the record itself at every advert needs (package
// vrrp/transport/steady, whose thread the Go runtime does not know): the record's descriptor,
// its line for adverts in state with priority prio, and where in the line each advert's time
// goes (20 digits, the CLOCK_BOOTTIME nanoseconds of Record's advert field). The line is
// written once here, so that the file holds it (and no longer line) before the sender starts. ok
// is false when the record cannot be rewritten so: not on tmpfs (a write may block the sender,
// which must never wait) or failing.
func (w *Writer) SteadyLine(state vrrp.State, prio uint8) (fd int, line []byte, stampAt int, ok bool) {
	if !w.onTmpfs || w.failed {
		return -1, nil, 0, false
	}
	w.Record(state, prio, false)
	if w.failed {
		return -1, nil, 0, false
	}
	return int(w.fd), slices.Clone(w.buf), len(w.buf) - 1 - advertLen, true
}

// AdvertSentAt says an advert was sent at at (CLOCK_BOOTTIME) by a sender that wrote the
// record itself (SteadyLine): the next Record writes that time, not an older one.
func (w *Writer) AdvertSentAt(at time.Duration) {
	if at > w.last {
		w.last = at
	}
}

func (w *Writer) write(b []byte) error {
	if !w.onTmpfs {
		_, err := w.f.WriteAt(b, 0)
		return err
	}
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_PWRITE64, w.fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, 0, 0)
		switch {
		case errno == unix.EINTR:
			continue
		case errno != 0:
			return &os.PathError{Op: "write", Path: w.f.Name(), Err: errno}
		case int(n) != len(b):
			return fmt.Errorf("write %s: short write (%d of %d bytes)", w.f.Name(), n, len(b))
		}
		return nil
	}
}

// Err is the first write error, nil if none.
func (w *Writer) Err() error { return w.err }

// Close closes the record (it stays on disk).
func (w *Writer) Close() error { return w.f.Close() }

func appendPadded(b []byte, s string, n int) []byte {
	if len(s) > n {
		s = s[:n]
	}
	b = append(b, s...)
	for range n - len(s) {
		b = append(b, '_')
	}
	return b
}

func appendZeroPadded(b []byte, v uint64, n int) []byte {
	var digits [20]byte
	d := strconv.AppendUint(digits[:0], v, 10)
	for range n - len(d) {
		b = append(b, '0')
	}
	return append(b, d...)
}

// Entry is a record as read back.
type Entry struct {
	State    vrrp.State
	Priority uint8
	// Age is how long ago the last advert was sent, on the record's clock.
	Age time.Duration
}

// ErrOtherBoot says the record was written before the last reboot.
var ErrOtherBoot = errors.New("state record from an earlier boot")

// Read returns instance name's record in dir. It returns (nil, nil) when there is none, and an
// error for a record that is unreadable, of another virtual router, of an earlier boot
// (ErrOtherBoot) or from the future: all of these mean "start normally".
func Read(dir, name string, vrid uint8, clock Clock) (*Entry, error) {
	if clock == nil {
		clock = SystemClock{}
	}
	b, err := os.ReadFile(Path(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state record: %w", err)
	}
	line := strings.TrimSuffix(string(b), "\n")
	fields := strings.Fields(line)
	if len(line) != lineLen-1 || len(fields) != 6 || fields[0] != magic {
		return nil, fmt.Errorf("state record %s: not a record: %q", Path(dir, name), line)
	}
	kv := map[string]string{}
	for _, f := range fields[1:] {
		k, v, _ := strings.Cut(f, "=")
		kv[k] = v
	}
	boot := strings.TrimRight(kv["boot"], "_")
	if cur := clock.BootID(); boot == "" || cur == "" || boot != cur {
		return nil, ErrOtherBoot
	}
	rv, err1 := strconv.Atoi(kv["vrid"])
	prio, err2 := strconv.Atoi(kv["prio"])
	at, err3 := strconv.ParseUint(kv["advert"], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("state record %s: %w", Path(dir, name), err)
	}
	if rv != int(vrid) {
		return nil, fmt.Errorf("state record %s: virtual router %d, not %d", Path(dir, name), rv, vrid)
	}
	var state vrrp.State
	switch strings.TrimRight(kv["state"], "_") {
	case "INIT":
		state = vrrp.Init
	case "BACKUP":
		state = vrrp.Backup
	case "MASTER":
		state = vrrp.Master
	case "FAULT":
		state = vrrp.Fault
	default:
		return nil, fmt.Errorf("state record %s: state %q", Path(dir, name), kv["state"])
	}
	var now time.Duration
	if c, ok := clock.(exactClock); ok {
		now = c.exactSince()
	} else {
		now = clock.Since()
	}
	age := now - time.Duration(at)
	if age < 0 {
		return nil, fmt.Errorf("state record %s: last advert in the future", Path(dir, name))
	}
	return &Entry{State: state, Priority: uint8(prio), Age: age}, nil
}
