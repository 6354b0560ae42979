// Package residency gives back the pages of hapair's own executable that start-up touched and
// the running daemon does not need, so that its resident set is what it uses.
//
// Why: Linux 6.x reads an executable into the page cache in large folios and maps a whole folio
// on a fault, so a Go binary ends up almost fully resident (hapair: 10 MiB of text and 11 MiB of
// read-only data when it embedded GoBGP, most of it code that ran once at start-up). Trim asks
// the kernel to reclaim those pages now (MADV_PAGEOUT), to map them back one page at a time when
// they are touched again (MADV_RANDOM: no read-ahead into large folios), and to read the file back
// into the page cache without mapping it (MADV_WILLNEED). What the daemon runs afterwards comes
// back page by page; what it never runs again stays unmapped.
//
// Why the read-back: without it, code that has not run since the trim (a BACKUP's first takeover,
// a reload, a scrape) is read from the disk when it first runs, in the middle of a failover:
// 129 page reads at a first takeover, measured in the lab. With it, 26, and 1.7 MiB more
// resident. MADV_DONTNEED alone (unmapping, the page cache kept) gives nothing back: the kernel
// maps the page cache's large folios whole again at the next faults (19 MiB resident after 10 s).
package residency

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Mapping is one read-only mapping of the executable (its text, its read-only data).
type Mapping struct {
	Start, End uintptr
}

// Len is the mapping's size in bytes.
func (m Mapping) Len() uintptr { return m.End - m.Start }

// Trim asks the kernel to reclaim the resident pages of the executable's read-only mappings and
// not to read ahead when they fault again. Writable mappings (initialised data) are never
// touched: their pages may differ from the file. It returns the mappings it advised.
func Trim() ([]Mapping, error) {
	ms, err := executableMappings()
	if err != nil {
		return nil, err
	}
	syncExecutable()
	for _, m := range ms {
		// MADV_RANDOM first: the faults after the page-out read single pages.
		if err := madvise(m, unix.MADV_RANDOM); err != nil {
			return nil, fmt.Errorf("madvise %#x-%#x random: %w", m.Start, m.End, err)
		}
		if err := madvise(m, unix.MADV_PAGEOUT); err != nil {
			// EINVAL before Linux 5.4, which has no MADV_PAGEOUT: nothing is lost but the trim.
			return nil, fmt.Errorf("madvise %#x-%#x pageout: %w", m.Start, m.End, err)
		}
	}
	// The garbage collector runs every two minutes at the latest, in a daemon that does nothing
	// else too. Run now, between the page-out and the read-back, its code comes back one page
	// at a time; run after the read-back, it faulted in the read-ahead's large folios whole:
	// 2.2 MiB more resident at hapair's first forced collection (100 instances, 5.1 -> 7.3 MiB
	// of file pages), none with this.
	runtime.GC()
	for _, m := range ms {
		// Read back into the page cache, unmapped (see the package comment).
		if err := madvise(m, unix.MADV_WILLNEED); err != nil {
			return nil, fmt.Errorf("madvise %#x-%#x willneed: %w", m.Start, m.End, err)
		}
	}
	return ms, nil
}

// syncExecutable writes back the executable's dirty pages, which the kernel cannot reclaim: a
// binary just built or copied stays dirty in the page cache for up to half a minute, and a
// page-out then keeps nearly all of it. On an installed binary it does nothing.
func syncExecutable() {
	f, err := os.Open("/proc/self/exe")
	if err != nil {
		return
	}
	defer f.Close()
	_ = unix.Fdatasync(int(f.Fd())) // best effort: the trim still gives back the clean pages
}

// executableMappings are the read-only mappings of the file /proc/self/exe points to.
func executableMappings() ([]Mapping, error) {
	f, exe, err := openWithExe("/proc/self/maps")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseMaps(f, exe)
}

// fileID is a file by device and inode: the executable's mappings are known by it, since after
// an upgrade the path in /proc/self/maps ends in " (deleted)".
type fileID struct {
	major, minor uint32
	ino          uint64
}

// openWithExe opens a file of /proc/self and says which file the executable is.
func openWithExe(name string) (*os.File, fileID, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		return nil, fileID{}, fmt.Errorf("stat /proc/self/exe: %w", err)
	}
	f, err := os.Open(name)
	return f, fileID{unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino}, err
}

// is says whether a mapping line's device ("fe:00") and inode fields name this file.
func (id fileID) is(dev, inode string) bool {
	maj, min, ok := strings.Cut(dev, ":")
	n, err := strconv.ParseUint(inode, 10, 64)
	return ok && err == nil && n == id.ino && hexIs(maj, uint64(id.major)) && hexIs(min, uint64(id.minor))
}

// parseRange reads a mapping line's "start-end" (hexadecimal).
func parseRange(field string) (Mapping, error) {
	lo, hi, _ := strings.Cut(field, "-")
	start, err1 := strconv.ParseUint(lo, 16, 64)
	end, err2 := strconv.ParseUint(hi, 16, 64)
	if err1 != nil || err2 != nil || end <= start {
		return Mapping{}, fmt.Errorf("bad range %q", field)
	}
	return Mapping{uintptr(start), uintptr(end)}, nil
}

// parseMaps reads /proc/<pid>/maps lines ("start-end perms offset major:minor inode path") and
// keeps the non-writable mappings of the file with that device and inode.
func parseMaps(r io.Reader, exe fileID) ([]Mapping, error) {
	var ms []Mapping
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 5 || len(fs[1]) < 2 || fs[1][1] == 'w' || !exe.is(fs[3], fs[4]) {
			continue
		}
		m, err := parseRange(fs[0])
		if err != nil {
			return nil, fmt.Errorf("maps: %w", err)
		}
		ms = append(ms, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read maps: %w", err)
	}
	return ms, nil
}

func hexIs(s string, want uint64) bool {
	n, err := strconv.ParseUint(s, 16, 32)
	return err == nil && n == want
}
