package spawn

import (
	"slices"
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []string
		err  string
	}{
		{in: "/usr/bin/pgrep -x haproxy", want: []string{"/usr/bin/pgrep", "-x", "haproxy"}},
		{in: "  a \t b\n", want: []string{"a", "b"}},
		{in: `/bin/sh -c 'echo "$x" | wc -l'`, want: []string{"/bin/sh", "-c", `echo "$x" | wc -l`}},
		{in: `/bin/check "two words" 'and more' x\ y`, want: []string{"/bin/check", "two words", "and more", "x y"}},
		{in: `a "b \"c\" \\ d"`, want: []string{"a", `b "c" \ d`}},
		{in: `/bin/echo 'it''s'`, want: []string{"/bin/echo", "its"}},
		{in: `empty "" arg`, want: []string{"empty", "", "arg"}},
		{in: `a x'y'"z"`, want: []string{"a", "xyz"}},
		{in: `bad "quote`, err: "unterminated double quote"},
		{in: `bad 'quote`, err: "unterminated single quote"},
		{in: `bad\`, err: "trailing backslash"},
		{in: "", err: "empty command"},
		{in: "   ", err: "empty command"},
	} {
		got, err := Split(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Split(%q) = %q, %v; want error %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("Split(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestJoinSplitsBack(t *testing.T) {
	for _, argv := range [][]string{
		{"/usr/bin/pgrep", "-x", "haproxy"},
		{"/bin/sh", "-c", `echo "$x" | wc -l`},
		{"a", "", `b\c`, "it's", "tab\there", "new\nline"},
	} {
		line := Join(argv)
		got, err := Split(line)
		if err != nil || !slices.Equal(got, argv) {
			t.Errorf("Split(Join(%q)) = Split(%q) = %q, %v", argv, line, got, err)
		}
	}
}

func TestEnvDropsSystemdVariablesAndAppliesExtra(t *testing.T) {
	got := Env([]string{"PATH=/bin", "NOTIFY_SOCKET=/run/x", "WATCHDOG_USEC=1", "WATCHDOG_PID=2",
		"LISTEN_FDS=2", "LISTEN_PID=3", "LISTEN_FDNAMES=a", "HOME=/root", "LANG=C"}, "LANG=C.UTF-8", "EXTRA=1")
	want := []string{"PATH=/bin", "HOME=/root", "LANG=C.UTF-8", "EXTRA=1"}
	if !slices.Equal(got, want) {
		t.Errorf("Env = %q, want %q", got, want)
	}
	// A name that only starts alike stays.
	alike := []string{"NOTIFY_SOCKETS=x", "MY_WATCHDOG_USEC=1", "MY_LISTEN_FDS=1"}
	if got := Env(alike); !slices.Equal(got, alike) {
		t.Errorf("Env(%q) = %q", alike, got)
	}
}
