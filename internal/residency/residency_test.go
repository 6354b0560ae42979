package residency

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestParseMapsKeepsReadOnlyMappingsOfTheFile(t *testing.T) {
	maps := `00400000-00402000 r--p 00000000 fe:00 9978012                            /usr/sbin/hapair
00402000-00e0d000 r-xp 00002000 fe:00 9978012                            /usr/sbin/hapair
00e0d000-01a07000 r--p 00a0d000 fe:00 9978012                            /usr/sbin/hapair (deleted)
01a07000-01a89000 rw-p 01607000 fe:00 9978012                            /usr/sbin/hapair
01a89000-02000000 rw-p 00000000 00:00 0
7f0da8cf0000-7f0da8e46000 r-xp 00026000 fe:00 326269                     /usr/lib/x86_64-linux-gnu/libc.so.6
7f0da8e46000-7f0da8e50000 r-xp 00026000 fe:01 9978012                    /other/device/same/inode
`
	got, err := parseMaps(strings.NewReader(maps), fileID{0xfe, 0, 9978012})
	if err != nil {
		t.Fatal(err)
	}
	want := []Mapping{{0x400000, 0x402000}, {0x402000, 0xe0d000}, {0xe0d000, 0x1a07000}}
	if len(got) != len(want) {
		t.Fatalf("got %x, want %x", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mapping %d: got %x, want %x", i, got[i], want[i])
		}
	}
}

func TestParseMapsRejectsABadRange(t *testing.T) {
	if _, err := parseMaps(strings.NewReader("00402000-00400000 r-xp 00000000 fe:00 7 /x\n"), fileID{0xfe, 0, 7}); err == nil {
		t.Fatal("an inverted range was accepted")
	}
}

// TestTrimReleasesExecutablePages trims this test binary and reads the kernel's own account of
// its executable mappings: fewer of their pages are resident afterwards.
func TestTrimReleasesExecutablePages(t *testing.T) {
	before := exeRSS(t)
	ms, err := Trim()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 {
		t.Fatal("no mapping of the executable found")
	}
	after := exeRSS(t)
	t.Logf("resident pages of the executable's read-only mappings: %d KiB before, %d KiB after", before, after)
	if after >= before {
		t.Fatalf("resident %d KiB after the trim, %d KiB before", after, before)
	}
	// The pages left the process, not the page cache: a takeover's first run of cold code must
	// not wait for the disk. mincore reports page-cache residency for a file mapping.
	var pages, cached int
	for _, m := range ms {
		vec := make([]byte, (m.Len()+uintptr(os.Getpagesize())-1)/uintptr(os.Getpagesize()))
		if _, _, errno := unix.Syscall(unix.SYS_MINCORE, m.Start, m.Len(), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
			t.Fatalf("mincore: %v", errno)
		}
		for _, v := range vec {
			pages++
			if v&1 != 0 {
				cached++
			}
		}
	}
	t.Logf("%d of %d pages of the executable's read-only mappings still in the page cache", cached, pages)
	if cached < pages*9/10 {
		t.Errorf("only %d of %d pages left in the page cache: the trim evicted the binary", cached, pages)
	}
}

// exeRSS sums the Rss (KiB) of the executable's read-only mappings from /proc/self/smaps.
func exeRSS(t *testing.T) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &st); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var sum int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 5 && strings.Contains(fs[0], "-") && !strings.HasSuffix(fs[0], ":") {
			ino, _ := strconv.ParseUint(fs[4], 10, 64)
			in = ino == st.Ino && fs[1][1] != 'w'
			continue
		}
		if in && len(fs) >= 2 && fs[0] == "Rss:" {
			n, _ := strconv.ParseInt(fs[1], 10, 64)
			sum += n
		}
	}
	return sum
}
