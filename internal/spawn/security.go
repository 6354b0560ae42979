package spawn

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// ErrInsecure is returned for a program that a user other than root could change.
var ErrInsecure = errors.New("a user other than root can change the script")

// CheckSecure applies keepalived's script_security rule to the program at path: the file and
// every directory above it must be owned by root and must not be writable by anyone but root.
// Like keepalived, a group-writable entry is fine when its group is root's, and a world-writable
// directory is fine when it is sticky (/tmp: nobody can rename or remove root's entries in it).
// Unlike keepalived, symbolic links on the way are followed explicitly: a link must be owned by
// root, and its target is held to the same rule, so a link in a sticky directory cannot be
// pointed elsewhere by its owner.
//
// The rule matters only for a program that runs as root (see Program.RunsAsRoot).
func CheckSecure(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	if err := checkChain(abs); err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return err
	}
	if real != abs {
		return checkChain(real)
	}
	return nil
}

// checkChain checks abs, then each directory above it up to "/": the first culprit named is the
// one closest to the script.
func checkChain(abs string) error {
	for p := abs; ; p = filepath.Dir(p) {
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		if err := secureEntry(p, fi); err != nil {
			return err
		}
		if p == "/" {
			return nil
		}
	}
}

// secureEntry is keepalived's test for one entry (check_script_secure in lib/notify.c).
func secureEntry(p string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no ownership information", p)
	}
	if st.Uid != 0 {
		return fmt.Errorf("%w: %s is owned by uid %d", ErrInsecure, p, st.Uid)
	}
	mode := fi.Mode()
	if mode&fs.ModeSymlink != 0 {
		return nil // a link's own mode means nothing; its target is checked on its own
	}
	if mode.IsDir() && mode&fs.ModeSticky != 0 {
		return nil
	}
	switch perm := mode.Perm(); {
	case perm&0o002 != 0:
		return fmt.Errorf("%w: %s is writable by others (mode %s)", ErrInsecure, p, perm)
	case perm&0o020 != 0 && st.Gid != 0:
		return fmt.Errorf("%w: %s is writable by group %d (mode %s)", ErrInsecure, p, st.Gid, perm)
	}
	return nil
}
