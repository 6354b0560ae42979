// Package rundir guards hapair's runtime directory: it must be hapair's own (owned by hapair's
// user, writable by nobody else), and the running hapair holds a lock in it, so that a second
// `hapair run` on the same host refuses to start before it touches a VIP, a socket or HAProxy.
package rundir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// LockFile is the name of the lock inside the runtime directory. It holds the pid of the hapair
// that locked it, for the refusal message only: the lock is the flock, not the file.
const LockFile = "hapair.lock"

// LockFDEnv carries the lock's descriptor across an in-place upgrade (execve): the new image
// inherits the locked open file rather than racing for a fresh lock.
const LockFDEnv = "HAPAIR_LOCK_FD"

// ErrLocked says another hapair holds the runtime directory.
var ErrLocked = errors.New("another hapair is running")

// ErrUnfit says Check refused a directory as it is: not a directory, or not hapair's own (another
// owner, writable by others). Only the operator mends that, by changing the directory or
// runtime_dir; trying again cannot, so `hapair run` exits as for a refused configuration.
var ErrUnfit = errors.New("not fit to be a runtime directory")

// unfitError is a refusal that wraps ErrUnfit and keeps its own words: the message says what is
// wrong with the directory and what to do.
type unfitError struct{ msg string }

func (e *unfitError) Error() string { return e.msg }
func (e *unfitError) Unwrap() error { return ErrUnfit }

func unfit(format string, args ...any) error {
	return &unfitError{msg: fmt.Sprintf(format, args...)}
}

// Check makes sure dir is fit to be a runtime directory: a directory (not a symlink) owned by the
// effective user and writable by no one else; one that is not is refused with an error that wraps
// ErrUnfit. A missing dir is created mode 0700 (its parents must exist or are created 0755, as
// mkdir -p would). An existing one is never chmodded: under systemd its mode is
// RuntimeDirectoryMode, and a shared directory such as /tmp must not be tightened behind its
// owner's back.
func Check(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return pathError(dir, err)
		}
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return pathError(dir, err)
		}
		fi, err = os.Lstat(dir)
	}
	if err != nil {
		return pathError(dir, err)
	}
	if !fi.IsDir() {
		return unfit("runtime dir %s: not a directory (%s)", dir, fi.Mode().Type())
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("runtime dir %s: cannot read its owner", dir)
	}
	if uid := os.Geteuid(); int(st.Uid) != uid {
		return unfit("runtime dir %s belongs to uid %d, not to hapair's user (uid %d): use a directory of hapair's own (runtime_dir)", dir, st.Uid, uid)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return unfit("runtime dir %s is writable by others (mode %04o): use a directory of hapair's own (runtime_dir); hapair does not chmod it", dir, perm)
	}
	return nil
}

// pathError is a failure to look at or create dir. What only the operator can mend (a read-only
// file system, as under a unit's ProtectSystem= without ReadWritePaths=; a file where a
// directory goes; no permission) is a refusal that wraps ErrUnfit, so that hapair is not
// restarted in a loop against it; anything else (no space, an I/O error) may pass.
func pathError(dir string, err error) error {
	for _, errno := range []syscall.Errno{syscall.EROFS, syscall.ENOTDIR, syscall.EACCES, syscall.EPERM, syscall.ELOOP, syscall.ENAMETOOLONG} {
		if errors.Is(err, errno) {
			return unfit("runtime dir %s: %v: use a directory hapair may create and write (runtime_dir; under systemd, one the unit makes writable: RuntimeDirectory= or ReadWritePaths=)", dir, err)
		}
	}
	return fmt.Errorf("runtime dir %s: %w", dir, err)
}

// Lock is the held lock of one runtime directory. It lasts as long as the process (and across an
// in-place upgrade); Release is for tests.
type Lock struct {
	f *os.File
}

// Acquire checks dir and takes its lock without waiting. When another hapair holds it, the error
// wraps ErrLocked and names that hapair's pid.
func Acquire(dir string) (*Lock, error) {
	if err := Check(dir); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			holder := "another process"
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
					holder = fmt.Sprintf("pid %d", pid)
				}
			}
			return nil, fmt.Errorf("%w with runtime dir %s (%s holds %s): stop it first, or give this one a runtime_dir of its own", ErrLocked, dir, holder, path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := writePID(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// Inherited returns the lock a previous image of this process held before an in-place upgrade,
// from LockFDEnv; nil without it. The variable is removed so that no child inherits it.
func Inherited() (*Lock, error) {
	v, ok := os.LookupEnv(LockFDEnv)
	if !ok {
		return nil, nil
	}
	os.Unsetenv(LockFDEnv)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("%s=%q: not a descriptor", LockFDEnv, v)
	}
	unix.CloseOnExec(fd)
	return &Lock{f: os.NewFile(uintptr(fd), LockFile)}, nil
}

// KeepAcrossExec clears close-on-exec on the lock and returns the LockFDEnv entry for the new
// image's environment.
func (l *Lock) KeepAcrossExec() (string, error) {
	fd := int(l.f.Fd())
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if err != nil {
		return "", fmt.Errorf("lock descriptor: %w", err)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, flags&^unix.FD_CLOEXEC); err != nil {
		return "", fmt.Errorf("lock descriptor: %w", err)
	}
	return fmt.Sprintf("%s=%d", LockFDEnv, fd), nil
}

// Release drops the lock.
func (l *Lock) Release() error { return l.f.Close() }

func writePID(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return err
}
