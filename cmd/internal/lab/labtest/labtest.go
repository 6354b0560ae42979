// Package labtest adapts package lab to tests: it skips without root (fails
// under CI), builds a lab that is closed by t.Cleanup and logs to the test.
package labtest

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/hapair/hapair/cmd/internal/lab"
)

// RequireRoot skips the test under -short (the lab is no unit test, even as root) and unless it
// runs as root; in the latter case under CI (env CI set) it
// fails instead, so that a CI run never passes by skipping the lab.
func RequireRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("lab test: skipped under -short")
	}
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("lab tests need root (CI is set, so not skipping)")
	}
	t.Skip("lab tests need root")
}

// RequireCommands skips (fails under CI) unless every named program is on
// PATH.
func RequireCommands(t testing.TB, names ...string) {
	t.Helper()
	var missing []string
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "missing commands: " + strings.Join(missing, ", ") + " (make deps)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// Logger writes through t.Log, so that lab and daemon logs show up with the
// test that produced them (and only when it fails or runs with -v).
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// New returns a lab whose directory is a test temp dir and that is closed,
// with its namespaces verified gone, when the test ends. Close errors fail
// the test.
func New(t testing.TB) *lab.Lab {
	return NewWith(t, lab.Options{})
}

// NewWith is New with options; Dir and Log default to t.TempDir() and Logger(t).
func NewWith(t testing.TB, opts lab.Options) *lab.Lab {
	t.Helper()
	RequireRoot(t)
	RequireCommands(t, "ip", "nft")
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Log == nil {
		opts.Log = Logger(t)
	}
	l, err := lab.New(context.Background(), opts)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("lab close: %v", err)
		}
	})
	return l
}

// AddHost adds a host or fails the test.
func AddHost(t testing.TB, l *lab.Lab, name string, addr netip.Prefix) *lab.Host {
	t.Helper()
	h, err := l.AddHost(name, addr)
	if err != nil {
		t.Fatalf("add host %s: %v", name, err)
	}
	return h
}

// Context is a context that ends with the test (or its deadline, less a margin
// to report).
func Context(t testing.TB) context.Context {
	t.Helper()
	ctx := t.Context()
	if tt, ok := t.(*testing.T); ok {
		if dl, ok := tt.Deadline(); ok {
			c, cancel := context.WithDeadline(ctx, dl.Add(-5e9))
			t.Cleanup(cancel)
			return c
		}
	}
	return ctx
}
