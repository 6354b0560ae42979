package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hapair/hapair/cmd/hapair/internal/earlysignals"
	"github.com/hapair/hapair/cmd/internal/config"
	"github.com/hapair/hapair/cmd/internal/rundir"
	"github.com/hapair/hapair/internal/spawn"
	"github.com/hapair/hapair/supervisor"
	"golang.org/x/sys/unix"
)

// An in-place upgrade (SIGUSR2, `hapair upgrade`) re-executes the hapair binary now on disk at
// the path this process was started from, in this process: same PID (systemd's MainPID), HAProxy
// stays a child (execve keeps children), the runtime dir's lock is handed over as an open
// descriptor, and each instance hands its state to the new image through its state record (a
// MASTER sends one last advert first and keeps its VIPs; the new image resumes it with
// vrrp.Machine.Resume). The new binary's `check` runs first: a binary that cannot run, or
// refuses the configuration, leaves this process running as it was.

// upgradeStatusFile, in the runtime dir, tells `hapair upgrade` the outcome: written by the old
// image when it refuses, by the new one once its instances have started.
const upgradeStatusFile = "upgrade.status"

// upgradeEnv marks the new image's environment: it reports its outcome when settled, and its
// signals are caught from package initialization.
const upgradeEnv = earlysignals.UpgradeEnv

// stopAfterUpgradeEnv, in the new image's environment, says a stop came while the old image
// handed over: the new image resumes what it was handed and stops at once, as a stop does (the
// VIPs to the peer, HAProxy stopped).
const stopAfterUpgradeEnv = "HAPAIR_STOP_AFTER_UPGRADE"

// stopAfterUpgrade reports (once) whether the previous image asked this one to stop.
func stopAfterUpgrade() bool {
	_, ok := os.LookupEnv(stopAfterUpgradeEnv)
	os.Unsetenv(stopAfterUpgradeEnv)
	return ok
}

// upgradeCheckTimeout bounds the new binary's `check` (it runs `haproxy -c` too).
const upgradeCheckTimeout = 60 * time.Second

// errHandover ends serve for an upgrade: the instances were handed over, HAProxy left running.
var errHandover = errors.New("handing over to the new image")

// selfPath is where this binary was started from: /proc/self/exe, without the " (deleted)" the
// kernel appends once a package upgrade has replaced the file.
func selfPath() (string, error) {
	p, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return "", fmt.Errorf("own binary: %w", err)
	}
	return strings.TrimSuffix(p, " (deleted)"), nil
}

// outputKeeper is the supervisor's side of an upgrade: HAProxy's output pipe goes along.
type outputKeeper interface {
	KeepOutputAcrossExec() string
	InheritOutput(*os.File)
}

var _ outputKeeper = (*supervisor.Supervisor)(nil)

// upgrader carries an in-place upgrade out for `hapair run`.
type upgrader struct {
	exe        string // the path this binary was started from
	configPath string
	runtimeDir string
	log        *slog.Logger
	busy       chan struct{} // one upgrade at a time
}

func newUpgrader(exe, configPath, runtimeDir string, log *slog.Logger) *upgrader {
	return &upgrader{exe: exe, configPath: configPath, runtimeDir: runtimeDir, log: log, busy: make(chan struct{}, 1)}
}

// request runs on SIGUSR2: it checks the new binary and, when it accepts the configuration,
// calls handover (which makes serve return errHandover). It never blocks the signal loop.
func (u *upgrader) request(handover func()) {
	select {
	case u.busy <- struct{}{}:
	default:
		u.log.Warn("Upgrade already under way, SIGUSR2 ignored")
		return
	}
	go func() {
		u.log.Info("Received SIGUSR2: upgrading in place", "binary", u.exe)
		if err := u.checkNew(); err != nil {
			u.log.Error("Upgrade refused, this hapair keeps running", "err", err)
			u.writeStatus("refused: " + err.Error())
			<-u.busy
			return
		}
		handover()
	}()
}

// checkNew runs the new binary's `check` on the running configuration, as every program hapair
// starts is run (package spawn): its process group, with the `haproxy -c` it starts, is killed at
// the timeout, and its output is capped.
func (u *upgrader) checkNew() error {
	ctx, cancel := context.WithTimeout(context.Background(), upgradeCheckTimeout)
	defer cancel()
	prog := &spawn.Program{Args: []string{u.exe, "check", "--config", u.configPath}}
	// In hapair's own directory, where a relative --config was given.
	res := prog.Run(ctx, spawn.Options{MaxOutput: 2000, Dir: "."})
	msg := strings.ToValidUTF8(res.Output, "")
	switch {
	case res.Err != nil:
		return fmt.Errorf("%s check: %w", u.exe, res.Err)
	case res.TimedOut:
		return fmt.Errorf("%s check: did not finish within %s: %s", u.exe, upgradeCheckTimeout, msg)
	case !res.Success() && msg == "":
		return fmt.Errorf("%s check: %s", u.exe, res.State)
	case !res.Success():
		return fmt.Errorf("%s check: %s: %s", u.exe, res.State, msg)
	}
	return nil
}

// exec replaces this process with the new image. It returns only when both the new binary and,
// as a fallback, the running one (/proc/self/exe still names it when its file is gone) failed to
// execute. stopRequested is asked last, just before the execve: when it says yes, the new image
// stops as soon as it has resumed what it was handed.
func (u *upgrader) exec(lock *rundir.Lock, stopRequested func() bool, extraEnv ...string) error {
	// The whole environment, NOTIFY_SOCKET and WATCHDOG_* included: the new image is the service.
	env := os.Environ()
	keep, err := lock.KeepAcrossExec()
	if err != nil {
		return err
	}
	env = append(env, keep, upgradeEnv+"="+version)
	for _, e := range extraEnv {
		if e != "" {
			env = append(env, e)
		}
	}
	u.log.Info("Re-executing", "binary", u.exe, "pid", os.Getpid())
	if stopRequested() {
		env = append(env, stopAfterUpgradeEnv+"=1")
	}
	err = syscall.Exec(u.exe, os.Args, env)
	u.log.Error("Upgrade: executing the new binary failed, re-executing the running one", "binary", u.exe, "err", err)
	err2 := syscall.Exec("/proc/self/exe", os.Args, env)
	return fmt.Errorf("execute %s: %w; and the running binary: %w", u.exe, err, err2)
}

func (u *upgrader) writeStatus(text string) {
	path := filepath.Join(u.runtimeDir, upgradeStatusFile)
	if err := os.WriteFile(path, []byte(text+"\n"), 0o600); err != nil {
		u.log.Warn("Writing the upgrade status failed", "err", err)
	}
}

// upgradedFrom returns the version the previous image ran when this process was just
// re-executed by an upgrade ("" otherwise), and drops the marker from the environment.
func upgradedFrom() string {
	v, ok := os.LookupEnv(upgradeEnv)
	if !ok {
		return ""
	}
	os.Unsetenv(upgradeEnv)
	if v == "" {
		v = "unknown"
	}
	return v
}

// cmdUpgrade is `hapair upgrade`: it finds the running `hapair run` through the lock in its
// runtime dir, sends it SIGUSR2 and waits for the outcome.
func cmdUpgrade(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("upgrade", stderr)
	path := fs.String("config", defaultConfig, "configuration file (for runtime_dir)")
	timeout := fs.Duration("timeout", 90*time.Second, "how long to wait for the outcome")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.Load(*path, config.SkipInterfaceCheck())
	if err != nil {
		fmt.Fprintf(stderr, "hapair: %s is not valid:\n%v\n", *path, err)
		return 1
	}
	pid, err := runningPID(cfg.RuntimeDir)
	if err != nil {
		fmt.Fprintf(stderr, "hapair: %v\n", err)
		return 1
	}
	statusPath := filepath.Join(cfg.RuntimeDir, upgradeStatusFile)
	if err := os.Remove(statusPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(stderr, "hapair: %v\n", err)
		return 1
	}
	if err := syscall.Kill(pid, syscall.SIGUSR2); err != nil {
		fmt.Fprintf(stderr, "hapair: signal hapair (pid %d): %v\n", pid, err)
		return 1
	}
	deadline := time.Now().Add(*timeout)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(statusPath)
		if err == nil && bytes.HasSuffix(b, []byte("\n")) {
			text := strings.TrimSpace(string(b))
			if strings.HasPrefix(text, "ok") {
				fmt.Fprintf(stdout, "hapair (pid %d) upgraded in place: %s\n", pid, text)
				return 0
			}
			fmt.Fprintf(stderr, "hapair (pid %d) %s\n", pid, text)
			return 1
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Fprintf(stderr, "hapair: no outcome from hapair (pid %d) within %s: see its log (journalctl -u hapair)\n", pid, *timeout)
	return 1
}

// runningPID is the pid of the hapair that holds the runtime dir's lock.
func runningPID(dir string) (int, error) {
	path := filepath.Join(dir, rundir.LockFile)
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("is hapair running? %w", err)
	}
	defer f.Close()
	// A lock we can take is held by nobody.
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err == nil {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return 0, fmt.Errorf("no hapair is running with runtime dir %s", dir)
	}
	b, err := io.ReadAll(io.LimitReader(f, 64))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s names no pid: %q", path, b)
	}
	return pid, nil
}
