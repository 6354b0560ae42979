package residency

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// TrimLibraries unmaps the resident pages of the shared libraries' code (the C library and the
// dynamic loader, which a Go binary built with cgo maps): their start-up ran once, and hapair
// calls into them only when it starts a thread or looks a user up. The pages stay in the page
// cache, shared with every other process; a later call faults back what it runs. About 1 MB of
// hapair's resident memory, whatever the number of instances.
//
// Only code mappings (r-xp) holding no private copy of a page (Anonymous: 0 in smaps) are
// advised: MADV_DONTNEED on a private mapping discards what the process wrote to it, which in
// code happens only under a debugger, but in the read-only data after relocation (RELRO) always.
// The executable's own mappings are Trim's. It returns the mappings it advised.
func TrimLibraries() ([]Mapping, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		return nil, fmt.Errorf("stat /proc/self/exe: %w", err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ms, err := libraryCode(f, unix.Major(st.Dev), unix.Minor(st.Dev), st.Ino)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if err := madvise(m, unix.MADV_DONTNEED); err != nil {
			return nil, fmt.Errorf("madvise %#x-%#x dontneed: %w", m.Start, m.End, err)
		}
	}
	return ms, nil
}

// libraryCode reads /proc/<pid>/smaps and keeps the code mappings (r-xp) of files other than
// the executable (device major:minor, inode ino) with no anonymous (private, written) pages.
func libraryCode(r io.Reader, major, minor uint32, ino uint64) ([]Mapping, error) {
	var (
		ms   []Mapping
		cur  *Mapping // the mapping whose fields are being read, if it is a candidate
		anon = -1
	)
	done := func() {
		if cur != nil && anon == 0 {
			ms = append(ms, *cur)
		}
		cur, anon = nil, -1
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		fs := strings.Fields(line)
		if len(fs) == 0 {
			continue
		}
		if v, ok := strings.CutPrefix(line, "Anonymous:"); ok {
			if cur != nil {
				n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
				if err != nil {
					return nil, fmt.Errorf("smaps: %q", line)
				}
				anon = n
			}
			continue
		}
		if strings.HasSuffix(fs[0], ":") || !strings.Contains(fs[0], "-") {
			continue // another field of the mapping
		}
		// A mapping's first line: "start-end perms offset major:minor inode path".
		done()
		if len(fs) < 6 || fs[1] != "r-xp" || fs[4] == "0" || !strings.HasPrefix(fs[5], "/") {
			continue
		}
		maj, min, ok := strings.Cut(fs[3], ":")
		if n, err := strconv.ParseUint(fs[4], 10, 64); ok && err == nil && n == ino && hexIs(maj, uint64(major)) && hexIs(min, uint64(minor)) {
			continue // the executable: Trim's
		}
		lo, hi, ok := strings.Cut(fs[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			return nil, fmt.Errorf("smaps: bad range %q", fs[0])
		}
		cur = &Mapping{uintptr(start), uintptr(end)}
	}
	done()
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read smaps: %w", err)
	}
	return ms, nil
}
