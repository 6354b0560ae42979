package rundir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestCheckCreatesMissingPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "run")
	if err := Check(dir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		t.Errorf("created mode %04o, want 0700", perm)
	}
}

// TestCheckRefusesSharedWithoutChmod: `runtime_dir: /tmp` used to make /tmp 0700. A directory
// others can write is refused and keeps its mode.
func TestCheckRefusesSharedWithoutChmod(t *testing.T) {
	for _, mode := range []os.FileMode{os.ModeSticky | 0o777, 0o777, 0o770, 0o702} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "shared")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, mode); err != nil {
				t.Fatal(err)
			}
			err := Check(dir)
			if !errors.Is(err, ErrUnfit) || !strings.Contains(err.Error(), "writable by others") {
				t.Errorf("Check = %v, want a refusal (ErrUnfit) naming the mode", err)
			}
			fi, _ := os.Stat(dir)
			if got := fi.Mode() & (os.ModePerm | os.ModeSticky); got != mode {
				t.Errorf("mode after Check = %04o, want %04o untouched", got, mode)
			}
		})
	}
}

func TestCheckAcceptsSystemdMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := Check(dir); err != nil {
		t.Errorf("RuntimeDirectoryMode=0750: %v", err)
	}
	fi, _ := os.Stat(dir)
	if fi.Mode().Perm() != 0o750 {
		t.Errorf("mode changed to %04o", fi.Mode().Perm())
	}
}

func TestCheckRefusesForeignOwner(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "foreign")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(dir, 65534, 65534); err != nil {
			t.Fatal(err)
		}
	} else {
		dir = "/" // root's, and not ours
	}
	err := Check(dir)
	if !errors.Is(err, ErrUnfit) || !strings.Contains(err.Error(), "belongs to uid") {
		t.Errorf("Check(%s) = %v, want a refusal (ErrUnfit) naming the owner", dir, err)
	}
}

func TestCheckRefusesSymlinkAndFile(t *testing.T) {
	base := t.TempDir()
	real := filepath.Join(base, "real")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{link, file} {
		if err := Check(p); !errors.Is(err, ErrUnfit) || !strings.Contains(err.Error(), "not a directory") {
			t.Errorf("Check(%s) = %v, want not a directory (ErrUnfit)", p, err)
		}
	}
}

// TestSecondAcquireRefused: one hapair per runtime dir; the refusal names the holder.
func TestSecondAcquireRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	first, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(dir)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Acquire = %v, want ErrLocked", err)
	}
	if errors.Is(err, ErrUnfit) {
		t.Errorf("second Acquire = %v: ErrUnfit, but the holder may be a hapair still exiting", err)
	}
	if want := fmt.Sprintf("pid %d", os.Getpid()); !strings.Contains(err.Error(), want) {
		t.Errorf("refusal %q does not name %s", err, want)
	}
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	again, err := Acquire(dir)
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	again.Release()
}

func TestKeepAcrossExecAndInherit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	l, err := Acquire(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	env, err := l.KeepAcrossExec()
	if err != nil {
		t.Fatal(err)
	}
	k, v, _ := strings.Cut(env, "=")
	t.Setenv(k, v)
	got, err := Inherited()
	if err != nil || got == nil {
		t.Fatalf("Inherited = %v, %v", got, err)
	}
	if _, still := os.LookupEnv(LockFDEnv); still {
		t.Errorf("%s left in the environment for children", LockFDEnv)
	}
	if got.f.Fd() != l.f.Fd() {
		t.Errorf("inherited fd %d, want %d", got.f.Fd(), l.f.Fd())
	}
}

// TestCheckRefusesWhatOnlyTheOperatorMends: a runtime dir that cannot be created for a reason
// that lasts (a file where a parent directory goes; a read-only file system, as under a unit's
// ProtectSystem=) is refused as unfit, so that `hapair run` exits as for a bad configuration
// instead of being restarted against it; a passing one (no space) is not.
func TestCheckRefusesWhatOnlyTheOperatorMends(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := Check(filepath.Join(file, "run", "hapair"))
	if !errors.Is(err, ErrUnfit) || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("Check under a file = %v, want unfit, not a directory", err)
	}
	for _, tt := range []struct {
		errno syscall.Errno
		unfit bool
	}{
		{syscall.EROFS, true}, {syscall.EACCES, true}, {syscall.ENOSPC, false}, {syscall.EIO, false},
	} {
		err := pathError("/run/x", &os.PathError{Op: "mkdir", Path: "/run/x", Err: tt.errno})
		if errors.Is(err, ErrUnfit) != tt.unfit || !strings.Contains(err.Error(), tt.errno.Error()) {
			t.Errorf("pathError(%v) = %v, unfit %v; want unfit %v with the reason", tt.errno, err, errors.Is(err, ErrUnfit), tt.unfit)
		}
	}
}
