package residency

import (
	"bufio"
	"fmt"
	"io"
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
	f, exe, err := openWithExe("/proc/self/smaps")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ms, err := libraryCode(f, exe)
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
// the executable with no anonymous (private, written) pages.
func libraryCode(r io.Reader, exe fileID) ([]Mapping, error) {
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
		if exe.is(fs[3], fs[4]) {
			continue // the executable: Trim's
		}
		m, err := parseRange(fs[0])
		if err != nil {
			return nil, fmt.Errorf("smaps: %w", err)
		}
		cur = &m
	}
	done()
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read smaps: %w", err)
	}
	return ms, nil
}
