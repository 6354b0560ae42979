package spawn

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrInsecure is returned for a program that a user other than root could change.
var ErrInsecure = errors.New("a user other than root can change the script")

// CheckSecure applies keepalived's script_security rule to the program at path: the file and
// every directory above it must be owned by root and must not be writable by anyone but root.
// Like keepalived, a group-writable entry is fine when its group is root's, and a world-writable
// directory is fine when it is sticky (/tmp: nobody can rename or remove root's entries in it).
// Unlike keepalived, symbolic links on the way are followed explicitly, one by one: every link of
// a chain must be owned by root, and the directories above each link, as well as the target at
// the end, are held to the same rule, so no link on the way can be pointed elsewhere by another
// user.
//
// The rule matters only for a program that runs as root (see Program.RunsAsRoot).
func CheckSecure(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	walked, err := walk(abs)
	if err != nil {
		return err
	}
	// Backwards, so that the first culprit named is the one closest to the script.
	for i := len(walked) - 1; i >= 0; i-- {
		if err := secureEntry(walked[i].path, walked[i].fi); err != nil {
			return err
		}
	}
	return nil
}

// maxLinks is how many links one walk follows, as the kernel does (MAXSYMLINKS).
const maxLinks = 40

type entry struct {
	path string
	fi   fs.FileInfo
}

// walk resolves abs one name at a time, as the kernel does, and returns every entry it passed:
// "/", each directory, each link of every chain, and the program. Checking only the path as
// written and where it ends (filepath.EvalSymlinks) would miss a link in the middle of a chain,
// or a directory above it, that another user can re-point; and a relative target is taken from
// the directory the link really is in, so ".." cannot be resolved on the path as written.
func walk(abs string) ([]entry, error) {
	fi, err := os.Lstat("/")
	if err != nil {
		return nil, err
	}
	walked := []entry{{"/", fi}}
	dir := "/" // resolved so far: no links in it, each of its entries in walked
	rest := strings.Split(abs, "/")
	links := 0
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			dir = filepath.Dir(dir)
			continue
		}
		p := filepath.Join(dir, name)
		fi, err := os.Lstat(p)
		if err != nil {
			return nil, err
		}
		walked = append(walked, entry{p, fi})
		if fi.Mode()&fs.ModeSymlink == 0 {
			dir = p
			continue
		}
		if links++; links > maxLinks {
			return nil, &fs.PathError{Op: "resolve", Path: abs, Err: syscall.ELOOP}
		}
		target, err := os.Readlink(p)
		if err != nil {
			return nil, err
		}
		if filepath.IsAbs(target) {
			dir = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return walked, nil
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
