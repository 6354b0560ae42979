package residency

import (
	"os"
	"os/user"
	"strconv"
	"strings"
	"testing"
)

// TestLibraryCodeKeepsUnwrittenCodeOfLibraries: only the libraries' code mappings with no
// private page are advised; never the executable's, the read-only data (RELRO is written at
// relocation), a writable mapping, or code a debugger wrote to.
func TestLibraryCodeKeepsUnwrittenCodeOfLibraries(t *testing.T) {
	smaps := `00402000-00e0d000 r-xp 00002000 fe:00 9978012                            /usr/sbin/hapair
Rss:                1836 kB
Anonymous:             0 kB
7f0da8cc0000-7f0da8cf0000 r--p 00000000 fe:00 326269                     /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
7f0da8cf0000-7f0da8e46000 r-xp 00026000 fe:00 326269                     /usr/lib/x86_64-linux-gnu/libc.so.6
Size:               1368 kB
Rss:                 904 kB
Anonymous:             0 kB
7f0da8e99000-7f0da8e9d000 r--p 001d5000 fe:00 326269                     /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:            16 kB
7f0da8e9d000-7f0da8e9f000 rw-p 001d9000 fe:00 326269                     /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             8 kB
7f0da8f00000-7f0da8f26000 r-xp 00001000 fe:00 325835                     /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
Anonymous:             0 kB
7f0da8f30000-7f0da8f34000 r-xp 00001000 fe:00 111                        /usr/lib/debugged.so
Anonymous:             4 kB
7ffd1c3f0000-7ffd1c3f2000 r-xp 00000000 00:00 0                          [vdso]
Anonymous:             0 kB
`
	got, err := libraryCode(strings.NewReader(smaps), fileID{0xfe, 0, 9978012})
	if err != nil {
		t.Fatal(err)
	}
	want := []Mapping{{0x7f0da8cf0000, 0x7f0da8e46000}, {0x7f0da8f00000, 0x7f0da8f26000}}
	if len(got) != len(want) {
		t.Fatalf("got %x, want %x", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mapping %d: got %x, want %x", i, got[i], want[i])
		}
	}
}

// TestTrimLibrariesReleasesLibcPages trims this test binary, which links the C library through
// os/user (cgo): the libraries' code is less resident afterwards, and calling into the C
// library again works (its pages fault back from the page cache).
func TestTrimLibrariesReleasesLibcPages(t *testing.T) {
	if _, err := user.Current(); err != nil { // a cgo call: libc's code is mapped and resident
		t.Fatal(err)
	}
	before := libraryRSS(t)
	if before == 0 {
		t.Skip("no shared library code resident: the test binary is linked statically")
	}
	ms, err := TrimLibraries()
	if err != nil {
		t.Fatal(err)
	}
	after := libraryRSS(t)
	t.Logf("%d mappings advised; libraries' resident code: %d KiB before, %d KiB after", len(ms), before, after)
	if len(ms) == 0 || after >= before {
		t.Fatalf("libraries' resident code %d KiB after the trim, %d KiB before", after, before)
	}
	if u, err := user.Current(); err != nil || u.Uid == "" {
		t.Fatalf("a call into the C library after the trim: %v", err)
	}
}

// libraryRSS is the resident KiB of the r-xp mappings of .so files, from smaps.
func libraryRSS(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	total, inLib := 0, false
	for _, l := range strings.Split(string(data), "\n") {
		fs := strings.Fields(l)
		if len(fs) >= 6 && strings.Contains(fs[0], "-") && !strings.HasSuffix(fs[0], ":") {
			inLib = fs[1] == "r-xp" && strings.Contains(fs[5], ".so")
			continue
		}
		if inLib && len(fs) >= 2 && fs[0] == "Rss:" {
			n, err := strconv.Atoi(fs[1])
			if err != nil {
				t.Fatal(err)
			}
			total += n
		}
	}
	return total
}
