// Package nspawn boots a throw-away Debian with a real systemd as PID 1 in
// systemd-nspawn, inside a network namespace the caller made, so that tests
// can install hapair's .deb and watch the unit the way a host would run it.
//
// The root file system comes from debootstrap (Debian's debootstrap package,
// from the apt mirror this machine is configured with) and is kept in a cache
// outside the checkout: the first run takes a minute or two, later ones
// seconds. Each boot works on a copy, so nothing a test does reaches the cache.
//
// systemd-nspawn --keep-unit --register=no runs the container in cgroups named
// payload/ and supervisor/ under the cgroup roots, so only one container can
// run at a time on the machine: Boot holds a lock file until Close.
package nspawn

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Packages are installed into the root file system besides debootstrap's
// minbase: a systemd that boots, what hapair's .deb depends on (haproxy,
// iproute2) and what the tests look with (procps, curl).
var Packages = []string{"systemd", "systemd-sysv", "dbus", "haproxy", "iproute2", "procps", "curl", "ca-certificates"}

// Suite is the Debian release the container runs: the one hapair targets.
const Suite = "bookworm"

// DefaultCacheDir holds the cached root file systems.
const DefaultCacheDir = "/var/cache/hapair-test"

// lockPath serialises containers: see the package comment.
const lockPath = "/run/hapair-nspawn.lock"

// Required lists the commands Boot needs on the machine.
var Required = []string{"systemd-nspawn", "debootstrap", "nsenter", "cp"}

// Rootfs returns a cached root file system for Suite with Packages, making it
// with debootstrap when the cache has none. cacheDir "" means DefaultCacheDir.
func Rootfs(ctx context.Context, cacheDir string, logf func(string, ...any)) (string, error) {
	if cacheDir == "" {
		cacheDir = DefaultCacheDir
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	sum := sha256.Sum256([]byte(Suite + " " + strings.Join(Packages, ",")))
	dir := filepath.Join(cacheDir, Suite+"-"+hex.EncodeToString(sum[:6]))
	if _, err := os.Stat(filepath.Join(dir, ".hapair-rootfs-ok")); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("rootfs cache: %w", err)
	}
	unlock, err := lockFile(filepath.Join(cacheDir, ".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(dir, ".hapair-rootfs-ok")); err == nil {
		return dir, nil // another run made it while we waited
	}
	mirror, err := aptMirror()
	if err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(cacheDir, ".debootstrap-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	logf("debootstrap %s from %s into %s (once; cached for later runs)", Suite, mirror, dir)
	start := time.Now()
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase",
		"--include="+strings.Join(Packages, ","), Suite, tmp, mirror)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("debootstrap: %w\n%s", err, tail(out, 20))
	}
	// The root directory of a system is 0755; MkdirTemp made it 0700 (see rootMode).
	if err := os.Chmod(tmp, rootMode); err != nil {
		return "", err
	}
	// Debian's haproxy package enables haproxy.service; on the hosts hapair
	// replaces it, and the .deb says Conflicts=, but a boot should not start
	// it in the first place.
	_ = os.Remove(filepath.Join(tmp, "etc/systemd/system/multi-user.target.wants/haproxy.service"))
	if err := os.WriteFile(filepath.Join(tmp, ".hapair-rootfs-ok"), []byte(mirror+"\n"), 0o644); err != nil {
		return "", err
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return "", fmt.Errorf("rootfs cache: %w", err)
	}
	logf("debootstrap took %s", time.Since(start).Round(time.Second))
	return dir, nil
}

// aptMirror is the first Debian archive URI in this machine's apt sources:
// the machines here reach Debian's packages only through their configured
// mirror.
func aptMirror() (string, error) {
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var uris string
		for _, stanza := range strings.Split(string(b), "\n\n") {
			uris = ""
			suiteOK := false
			for _, line := range strings.Split(stanza, "\n") {
				k, v, ok := strings.Cut(line, ":")
				if !ok || strings.HasPrefix(strings.TrimSpace(line), "#") {
					continue
				}
				switch strings.TrimSpace(k) {
				case "URIs":
					uris = strings.TrimSpace(v)
				case "Suites":
					suiteOK = strings.Contains(" "+v+" ", " "+Suite+" ")
				}
			}
			if uris != "" && suiteOK {
				return strings.Fields(uris)[0], nil
			}
		}
	}
	if b, err := os.ReadFile("/etc/apt/sources.list"); err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) >= 3 && f[0] == "deb" && !strings.Contains(f[1], "security") {
				return f[1], nil
			}
		}
	}
	return "", errors.New("no Debian mirror in /etc/apt/sources.list(.d)")
}

// Options configure one boot.
type Options struct {
	Rootfs string // from Rootfs
	// NetNS is the path of the network namespace the container joins
	// (/run/netns/NAME); its interfaces and addresses are the container's.
	NetNS string
	// Binds are host paths made visible read-only in the container at the same path.
	Binds []string
	// Log receives the container's console output.
	Log string
}

// rootMode is the mode of a root file system's top directory. Made 0700 (MkdirTemp's mode, which
// debootstrap and cp -a keep), it let root alone through "/": dbus-daemon, which runs as
// messagebus, got EACCES for everything, never became ready, and systemd-logind waited for it,
// so the container stayed "starting" past Boot's 90 s (seen on a fresh machine, 2026-12-04).
const rootMode = 0o755

// Machine is one booted container.
type Machine struct {
	nspawn *exec.Cmd
	done   chan struct{}
	pid1   int
	root   string // the copy the container runs on
	unlock func()
}

// Boot copies the root file system, boots it and waits until systemd says the
// system is running. Close powers it off and removes the copy.
func Boot(ctx context.Context, opts Options) (m *Machine, err error) {
	unlock, err := lockFile(lockPath)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil && unlock != nil { // nil once the machine holds the lock (its Close unlocks)
			unlock()
		}
	}()
	removeNspawnCgroups() // a run killed mid-way leaves them behind
	root, err := os.MkdirTemp("", "hapair-nspawn-")
	if err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, "cp", "-a", "--reflink=auto", opts.Rootfs+"/.", root).CombinedOutput(); err != nil {
		os.RemoveAll(root)
		return nil, fmt.Errorf("copy rootfs: %w\n%s", err, out)
	}
	// Also for a cache made before Rootfs set the mode: cp -a gives the copy the cache's.
	if err := os.Chmod(root, rootMode); err != nil {
		os.RemoveAll(root)
		return nil, err
	}
	args := []string{"--boot", "--register=no", "--keep-unit", "--quiet",
		"--network-namespace-path=" + opts.NetNS, "-D", root, "--machine=hapair-test",
		// What PID 1 of a real host has and nspawn withholds unless it made the network
		// itself: CAP_NET_ADMIN for addresses in its own namespace, and an open-files hard
		// limit of fs.nr_open rather than the hard limit of whoever started the test.
		"--capability=CAP_NET_ADMIN", "--rlimit=RLIMIT_NOFILE=1048576"}
	for _, b := range opts.Binds {
		args = append(args, "--bind-ro="+b)
	}
	cmd := exec.Command("systemd-nspawn", args...)
	var logFile *os.File
	if opts.Log != "" {
		if logFile, err = os.Create(opts.Log); err != nil {
			os.RemoveAll(root)
			return nil, err
		}
		cmd.Stdout, cmd.Stderr = logFile, logFile
	}
	if err := cmd.Start(); err != nil {
		os.RemoveAll(root)
		return nil, fmt.Errorf("systemd-nspawn: %w", err)
	}
	// mach, not the result m: a failed boot returns nil for m, and both the goroutine below and
	// the clean-up after a failure must still reach the machine (they found nil and panicked,
	// taking the whole test binary with them, when a boot failed).
	mach := &Machine{nspawn: cmd, done: make(chan struct{}), root: root, unlock: unlock}
	unlock = nil
	go func() {
		cmd.Wait()
		if logFile != nil {
			logFile.Close()
		}
		close(mach.done)
	}()
	defer func() {
		if err != nil {
			mach.Close()
		}
	}()
	deadline := time.Now().Add(90 * time.Second)
	for mach.pid1 == 0 {
		if time.Now().After(deadline) {
			return nil, errors.New("systemd-nspawn: no PID 1 after 90s")
		}
		select {
		case <-mach.done:
			return nil, fmt.Errorf("systemd-nspawn exited: %v", cmd.ProcessState)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		mach.pid1 = childNamed(cmd.Process.Pid, "systemd")
	}
	for {
		out, _ := mach.Exec(ctx, "systemctl", "is-system-running")
		switch state := strings.TrimSpace(string(out)); state {
		case "running", "degraded":
			return mach, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("container did not finish booting in 90s (%s)", strings.TrimSpace(string(out)))
		}
		select {
		case <-mach.done:
			return nil, fmt.Errorf("systemd-nspawn exited: %v", cmd.ProcessState)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Exec runs a command inside the container (all its namespaces) and returns
// its combined output.
func (m *Machine) Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	full := append([]string{"-t", strconv.Itoa(m.pid1), "-a", "--", name}, args...)
	out, err := exec.CommandContext(ctx, "nsenter", full...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail(out, 30))
	}
	return out, nil
}

// WriteFile writes a file inside the container.
func (m *Machine) WriteFile(path string, data []byte, mode os.FileMode) error {
	full := filepath.Join(m.root, path)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return err
	}
	return os.WriteFile(full, data, mode)
}

// Close powers the container off (SIGKILL after 30 s), removes the cgroups
// nspawn leaves behind and the root file system copy. Safe to call twice.
func (m *Machine) Close() error {
	if m.unlock == nil {
		return nil
	}
	select {
	case <-m.done:
	default:
		if m.pid1 != 0 {
			// SIGRTMIN+4 asks systemd for a clean poweroff without needing its bus.
			_ = syscall.Kill(m.pid1, syscall.Signal(34+4))
		} else {
			_ = m.nspawn.Process.Signal(syscall.SIGTERM)
		}
		select {
		case <-m.done:
		case <-time.After(30 * time.Second):
			_ = m.nspawn.Process.Kill()
			<-m.done
		}
	}
	removeNspawnCgroups()
	err := os.RemoveAll(m.root)
	m.unlock()
	m.unlock = nil
	return err
}

// removeNspawnCgroups removes the payload/ and supervisor/ cgroups nspawn
// --keep-unit makes under each cgroup root (deepest first: rmdir only takes
// empty cgroups).
func removeNspawnCgroups() {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	roots = append(roots, "/sys/fs/cgroup")
	for _, r := range roots {
		for _, name := range []string{"payload", "supervisor"} {
			dir := filepath.Join(r, name)
			if _, err := os.Stat(dir); err != nil {
				continue
			}
			var dirs []string
			_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			for i := len(dirs) - 1; i >= 0; i-- {
				_ = os.Remove(dirs[i])
			}
		}
	}
}

func childNamed(parent int, comm string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", parent, parent))
	if err != nil {
		return 0
	}
	for _, f := range strings.Fields(string(b)) {
		pid, _ := strconv.Atoi(f)
		c, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(c)) == comm {
			return pid
		}
	}
	return 0
}

func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
