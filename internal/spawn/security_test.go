package spawn

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestRunsAsRoot(t *testing.T) {
	for _, tt := range []struct {
		name         string
		cred         *syscall.Credential
		hapairIsRoot bool
		want         bool
	}{
		{"own user, hapair root", nil, true, true},
		{"own user, hapair not root", nil, false, false},
		{"user nobody", &syscall.Credential{Uid: 65534, Gid: 65534}, true, false},
		{"uid 0", &syscall.Credential{Uid: 0, Gid: 65534}, true, true},
		{"gid 0", &syscall.Credential{Uid: 65534, Gid: 0}, true, true},
	} {
		p := &Program{Args: []string{"/bin/true"}, Cred: tt.cred}
		if got := p.RunsAsRoot(tt.hapairIsRoot); got != tt.want {
			t.Errorf("%s: RunsAsRoot = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// secureBase makes a directory whose ancestors are all root's and safe (/run is 0755 root).
func secureBase(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("ownership cases need root")
	}
	base, err := os.MkdirTemp("/run", "hapair-spawn-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	return base
}

// mkdir makes a directory, writeFile a script, with the owner and mode given.
func mkdir(t *testing.T, path string, uid, gid int, mode os.FileMode) string {
	t.Helper()
	return own(t, path, os.Mkdir(path, 0o700), uid, gid, mode)
}

func writeFile(t *testing.T, path string, uid, gid int, mode os.FileMode) string {
	t.Helper()
	return own(t, path, os.WriteFile(path, []byte("#!/bin/sh\nexit 0\n"), 0o700), uid, gid, mode)
}

func own(t *testing.T, path string, made error, uid, gid int, mode os.FileMode) string {
	t.Helper()
	if made != nil {
		t.Fatal(made)
	}
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCheckSecureKeepalivedRule: keepalived's check_script_secure, entry by entry.
func TestCheckSecureKeepalivedRule(t *testing.T) {
	base := secureBase(t)
	const nobody, nogroup = 65534, 65534
	tests := []struct {
		name   string
		dir    func(string) string // makes the directory holding the script
		file   func(string) string // makes the script in it
		secure bool
	}{
		{"root 0755 dir, root 0755 file",
			func(p string) string { return mkdir(t, p, 0, 0, 0o755) },
			func(p string) string { return writeFile(t, p, 0, 0, 0o755) }, true},
		{"root:root 0775 dir (group root may write)",
			func(p string) string { return mkdir(t, p, 0, 0, 0o775) },
			func(p string) string { return writeFile(t, p, 0, 0, 0o755) }, true},
		{"root:nogroup 0775 dir",
			func(p string) string { return mkdir(t, p, 0, nogroup, 0o775) },
			func(p string) string { return writeFile(t, p, 0, 0, 0o755) }, false},
		{"root 0777 dir",
			func(p string) string { return mkdir(t, p, 0, 0, 0o777) },
			func(p string) string { return writeFile(t, p, 0, 0, 0o755) }, false},
		{"root 1777 dir (sticky, like /tmp)",
			func(p string) string { return mkdir(t, p, 0, 0, 0o777|os.ModeSticky) },
			func(p string) string { return writeFile(t, p, 0, 0, 0o755) }, true},
		{"dir owned by nobody",
			func(p string) string { return mkdir(t, p, nobody, 0, 0o755) },
			func(p string) string { return writeFile(t, p, 0, 0, 0o755) }, false},
		{"file owned by nobody",
			func(p string) string { return mkdir(t, p, 0, 0, 0o755) },
			func(p string) string { return writeFile(t, p, nobody, 0, 0o755) }, false},
		{"file root:nogroup 0775",
			func(p string) string { return mkdir(t, p, 0, 0, 0o755) },
			func(p string) string { return writeFile(t, p, 0, nogroup, 0o775) }, false},
		{"file 0757 in a sticky dir (a file is never excused by the sticky bit)",
			func(p string) string { return mkdir(t, p, 0, 0, 0o777|os.ModeSticky) },
			func(p string) string { return writeFile(t, p, 0, 0, 0o757) }, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.dir(filepath.Join(base, string(rune('a'+i))))
			script := tt.file(filepath.Join(dir, "s.sh"))
			err := CheckSecure(script)
			if tt.secure && err != nil {
				t.Errorf("refused: %v", err)
			}
			if !tt.secure && !errors.Is(err, ErrInsecure) {
				t.Errorf("err = %v, want ErrInsecure", err)
			}
		})
	}
}

// TestCheckSecureSymlinks: a link on the way must be root's, and its target is held to the rule.
func TestCheckSecureSymlinks(t *testing.T) {
	base := secureBase(t)
	safe := mkdir(t, filepath.Join(base, "safe"), 0, 0, 0o755)
	script := writeFile(t, filepath.Join(safe, "s.sh"), 0, 0, 0o755)
	open := mkdir(t, filepath.Join(base, "open"), 0, 0, 0o777)
	openScript := writeFile(t, filepath.Join(open, "s.sh"), 0, 0, 0o755)
	sticky := mkdir(t, filepath.Join(base, "sticky"), 0, 0, 0o777|os.ModeSticky)

	rootLink := filepath.Join(sticky, "root-link")
	if err := os.Symlink(script, rootLink); err != nil {
		t.Fatal(err)
	}
	if err := CheckSecure(rootLink); err != nil {
		t.Errorf("root's link to a safe script refused: %v", err)
	}
	userLink := filepath.Join(sticky, "user-link")
	if err := os.Symlink(script, userLink); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(userLink, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := CheckSecure(userLink); !errors.Is(err, ErrInsecure) {
		t.Errorf("nobody's link in a sticky directory: err = %v, want ErrInsecure", err)
	}
	toOpen := filepath.Join(safe, "to-open")
	if err := os.Symlink(openScript, toOpen); err != nil {
		t.Fatal(err)
	}
	if err := CheckSecure(toOpen); !errors.Is(err, ErrInsecure) {
		t.Errorf("root's link to a script in a world-writable directory: err = %v, want ErrInsecure", err)
	}
}

// TestCheckSecureSymlinkChain: every link of a chain is held to the rule, not only the first and
// the end. Root's link points at a link in a directory any user can write (not sticky), which
// points at a safe script: that user can re-point the middle link at a program of their own.
func TestCheckSecureSymlinkChain(t *testing.T) {
	base := secureBase(t)
	safe := mkdir(t, filepath.Join(base, "safe"), 0, 0, 0o755)
	script := writeFile(t, filepath.Join(safe, "real"), 0, 0, 0o755)
	open := mkdir(t, filepath.Join(base, "open"), 0, 0, 0o777)
	links := mkdir(t, filepath.Join(base, "links"), 0, 0, 0o755)

	symlink := func(target, link string) string {
		t.Helper()
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		return link
	}
	middle := symlink(script, filepath.Join(open, "check"))
	first := symlink(middle, filepath.Join(safe, "check"))
	if err := CheckSecure(first); !errors.Is(err, ErrInsecure) {
		t.Errorf("middle link in a world-writable directory: err = %v, want ErrInsecure", err)
	}

	// A relative target resolves against the link's own directory: "../safe/real" from
	// links/ is the safe script, from anywhere else it is not.
	rel := symlink("../safe/real", filepath.Join(links, "rel"))
	if err := CheckSecure(rel); err != nil {
		t.Errorf("relative link to a safe script refused: %v", err)
	}
	writeFile(t, filepath.Join(open, "real"), 0, 0, 0o755)
	relOpen := symlink("../open/real", filepath.Join(links, "rel-open"))
	if err := CheckSecure(relOpen); !errors.Is(err, ErrInsecure) {
		t.Errorf("relative link to a script in a world-writable directory: err = %v, want ErrInsecure", err)
	}
	// Through a linked directory, ".." in a relative target is taken from where the link really
	// is (as the kernel does), not from the path as written.
	sub := mkdir(t, filepath.Join(open, "sub"), 0, 0, 0o755)
	symlink("../real", filepath.Join(sub, "up"))
	viaDir := symlink(sub, filepath.Join(links, "dir"))
	if err := CheckSecure(filepath.Join(viaDir, "up")); !errors.Is(err, ErrInsecure) {
		t.Errorf("link reached through a linked directory, in a world-writable one: err = %v, want ErrInsecure", err)
	}

	loop := symlink("loop", filepath.Join(links, "loop"))
	if err := CheckSecure(loop); err == nil || errors.Is(err, ErrInsecure) {
		t.Errorf("a link to itself: err = %v, want a loop error", err)
	}
}
