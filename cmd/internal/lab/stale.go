package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A marker says which process created a namespace: "<pid> <start time>\n",
// the start time being field 22 of /proc/<pid>/stat, so that a recycled pid
// is not mistaken for the creator.
type marker struct {
	PID   int
	Start uint64
}

var markerName = regexp.MustCompile(`^(hp[a-z0-9_]*-[a-z0-9_]+)\.pid$`)

// CleanupStale removes the namespaces of earlier lab runs whose creating
// process no longer exists, after killing whatever still runs inside them.
// Namespaces without a marker are never touched. New calls it.
func CleanupStale() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := cleanupStale(ctx)
	return err
}

func cleanupStale(ctx context.Context) ([]string, error) {
	// Test binaries of several packages start labs at the same time; one
	// sweep at a time keeps them from deleting the same namespace twice.
	unlock, err := lockMarkers()
	if err != nil {
		return nil, err
	}
	defer unlock()
	entries, err := os.ReadDir(MarkerDir)
	if err != nil {
		return nil, fmt.Errorf("lab: read %s: %w", MarkerDir, err)
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		m := markerName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		ns := m[1]
		mk, err := readMarker(filepath.Join(MarkerDir, e.Name()))
		if err == nil && processAlive(mk) {
			continue
		}
		// An unreadable marker is treated as stale: markers are written
		// atomically, so a live lab never leaves a half-written one.
		if err := removeNamespace(ctx, ns); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, ns)
	}
	return removed, errors.Join(errs...)
}

// lockMarkers takes an exclusive flock on MarkerDir/.lock.
func lockMarkers() (unlock func(), err error) {
	if err := os.MkdirAll(MarkerDir, 0o755); err != nil {
		return nil, fmt.Errorf("lab: create %s: %w", MarkerDir, err)
	}
	f, err := os.OpenFile(filepath.Join(MarkerDir, ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lab: lock %s: %w", MarkerDir, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lab: lock %s: %w", MarkerDir, err)
	}
	return func() { f.Close() }, nil // closing releases the lock
}

func writeMarker(ns string) error {
	start, err := processStart(os.Getpid())
	if err != nil {
		return fmt.Errorf("lab: marker for %s: %w", ns, err)
	}
	return writeMarkerFor(ns, marker{PID: os.Getpid(), Start: start})
}

func writeMarkerFor(ns string, mk marker) error {
	if err := os.MkdirAll(MarkerDir, 0o755); err != nil {
		return fmt.Errorf("lab: create %s: %w", MarkerDir, err)
	}
	path := markerPath(ns)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, fmt.Appendf(nil, "%d %d\n", mk.PID, mk.Start), 0o644); err != nil {
		return fmt.Errorf("lab: write marker: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("lab: write marker: %w", err)
	}
	return nil
}

func readMarker(path string) (marker, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return marker{}, fmt.Errorf("read marker: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return marker{}, fmt.Errorf("marker %s: want \"pid start\", got %q", path, b)
	}
	pid, err1 := strconv.Atoi(f[0])
	start, err2 := strconv.ParseUint(f[1], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return marker{}, fmt.Errorf("marker %s: %w", path, err)
	}
	return marker{PID: pid, Start: start}, nil
}

func processAlive(mk marker) bool {
	start, err := processStart(mk.PID)
	return err == nil && start == mk.Start
}

// processStart returns field 22 (starttime, clock ticks since boot) of
// /proc/<pid>/stat.
func processStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces or
	// parentheses itself: fields are counted after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(s[i+1:])
	const startField = 22 - 3 // f[0] is field 3
	if len(f) <= startField {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	return strconv.ParseUint(f[startField], 10, 64)
}

// killNamespace SIGKILLs every process whose network namespace is ns (never
// this process itself) and waits until none is left.
func killNamespace(ctx context.Context, ns string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	self := os.Getpid()
	for {
		out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output()
		if err != nil {
			return fmt.Errorf("lab: ip netns pids %s: %w", ns, err)
		}
		var left []int
		for _, f := range strings.Fields(string(out)) {
			pid, err := strconv.Atoi(f)
			if err != nil || pid == self {
				continue
			}
			left = append(left, pid)
			// ESRCH: it exited meanwhile, which is what we want.
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if len(left) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("lab: processes %v in %s survive SIGKILL: %w", left, ns, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
