package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/hapair/hapair/cmd/hapair/internal/earlysignals"
	"github.com/hapair/hapair/cmd/internal/config"
	"github.com/hapair/hapair/cmd/internal/convert"
	"github.com/hapair/hapair/cmd/internal/rundir"
	"github.com/hapair/hapair/internal/gcpace"
	"github.com/hapair/hapair/metrics/status"
	"github.com/hapair/hapair/supervisor"
)

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("hapair "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// gcPaceEnv, set to 0, leaves the Go runtime's collections to GOGC and its two-minute timer
// (package gcpace).
const gcPaceEnv = "HAPAIR_GC_PACE"

// cmdRun is `hapair run`: the appliance.
func cmdRun(args []string, stderr io.Writer) int {
	fs := newFlags("run", stderr)
	path := fs.String("config", defaultConfig, "configuration file")
	debug := fs.Bool("debug", false, "log dropped packets and other detail")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	// Under systemd the journal stamps each line; elsewhere (a terminal, a test) the time helps.
	log := slog.New(newLineHandler(stderr, level, os.Getenv("JOURNAL_STREAM") == ""))

	if os.Getenv(upgradeEnv) != "" {
		// This image runs under the watchdog of the one it replaced in place: a ping now, before
		// `haproxy -c` and the start, and the daemon pings from the moment it serves.
		_ = sdNotify("WATCHDOG=1")
	}
	// Signals are caught from the start and acted on once the daemon serves: a SIGTERM during
	// the start (`haproxy -c` may take seconds) would otherwise kill hapair at once, and in the
	// image an upgrade started that is with the VIPs it resumed still attached.
	// In an upgraded image the subscription dates from package initialization (earlysignals).
	signals := earlysignals.Subscribe()
	defer signal.Stop(signals)
	// The stop signals once more, read only at an upgrade's execve (stopCaughtJustNow).
	lateStops := make(chan os.Signal, 1)
	signal.Notify(lateStops, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(lateStops)

	// A refused configuration exits with exitConfig, which the unit does not restart on; what a
	// restart may get past (another hapair still exiting, a busy port) exits 1.
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "hapair: %s is not valid:\n%v\n", *path, err)
		return exitConfig
	}
	for _, w := range cfg.Warnings.Strings() {
		log.Warn(w)
	}
	if err := haproxyPresent(cfg.HAProxy); err != nil {
		fmt.Fprintf(stderr, "hapair: %v\n", err)
		return exitConfig
	}
	if err := haproxyValid(cfg.HAProxy); err != nil {
		fmt.Fprintf(stderr, "hapair: %v\n", err)
		return exitConfig
	}
	// One hapair per runtime dir, checked before anything touches a VIP, a socket or HAProxy: a
	// second hapair would remove the running MASTER's VIPs as stale, or become a second MASTER.
	lock, err := lockRuntimeDir(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "hapair: %v\n", err)
		// A directory that is not hapair's own stays so until the operator changes it or
		// runtime_dir: a refused configuration. A lock held by another hapair is not: it may be
		// the one this start replaces, still exiting, and a restart a second later takes it.
		if errors.Is(err, rundir.ErrUnfit) {
			return exitConfig
		}
		return 1
	}
	defer lock.Release()
	defer handleAbort(log, cfg.RuntimeDir)()
	exe, err := selfPath()
	if err != nil {
		log.Warn("In-place upgrades (SIGUSR2) will not work", "err", err)
	}
	from := upgradedFrom()
	if from != "" {
		log.Info("Starting hapair in place of the previous binary", "version", version, "from", from, "router_id", cfg.RouterID, "pid", os.Getpid())
	} else {
		log.Info("Starting hapair", "version", version, "router_id", cfg.RouterID)
	}
	if cfg.VRRPRTPriority > 0 {
		setRTPriority(cfg.VRRPRTPriority, log) // before HAProxy, the sockets and the timers start
	}
	// Collections paced by allocation, without the runtime's one every two minutes (package
	// gcpace); HAPAIR_GC_PACE=0 keeps the runtime's own pacing.
	if os.Getenv(gcPaceEnv) != "0" {
		defer gcpace.Start(func() {
			log.Warn("Garbage collections came back to back under the paced memory limit: the Go runtime paces them again (GOGC)")
		}).Stop()
	}
	haproxyOutput := supervisor.InheritedOutput() // after an upgrade: the adopted master's output
	d, err := newDaemon(cfg, log)
	if err != nil {
		log.Error(err.Error())
		return 1
	}
	if haproxyOutput != nil {
		if k, ok := d.sup.(outputKeeper); ok {
			k.InheritOutput(haproxyOutput)
		} else {
			haproxyOutput.Close()
		}
	}
	up := newUpgrader(exe, *path, cfg.RuntimeDir, log)
	if from != "" {
		d.onSettled = func() {
			log.Info("Upgrade complete: every instance resumed or started", "from", from)
			up.writeStatus(fmt.Sprintf("ok: hapair %s in place of %s, pid %d", version, from, os.Getpid()))
		}
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var srv *status.Server
	if cfg.Status.Listen != "" {
		srv = status.NewServer(cfg.Status.Listen, d.metrics.Handler(), d)
		if err := srv.Start(); err != nil {
			log.Error("Status listener failed", "err", err)
			// 1, not exitConfig, even for an address in use: the port may be held by the hapair
			// this start replaces, still exiting, and the unit's restart a second later binds it.
			return 1
		}
		log.Info("Serving /metrics, /status and /healthz", "listen", srv.Addr())
	}

	control, err := startControl(cfg.RuntimeDir, d, log)
	if err != nil {
		log.Error(err.Error())
		return 1
	}
	defer control.close()

	reloads := newReloader(d.reloads, func(ctx context.Context) (supervisor.ReloadResult, error) { return d.reload(ctx, *path) })
	go reloads.run(ctx)
	// A stop and an upgrade's hand-over exclude each other: a stop before the hand-over
	// abandons the upgrade; one after it goes along to the new image, which stops at once.
	var lifecycle sync.Mutex
	stopping := false
	stopNow := func(why string, args ...any) {
		lifecycle.Lock()
		stopping = true
		lifecycle.Unlock()
		log.Info(why, args...)
		_ = sdNotify("STOPPING=1")
		stop()
	}
	go dispatchSignals(signals, signalActions{
		reload: reloads.request,
		dump:   d.dump,
		upgrade: func() {
			up.request(func() {
				lifecycle.Lock()
				defer lifecycle.Unlock()
				if stopping {
					log.Warn("Upgrade abandoned: hapair is stopping")
					return
				}
				d.beginHandover()
				stop()
			})
		},
		stop: func(sig os.Signal) { stopNow("Received a signal, stopping", "signal", sig) },
	})
	if stopAfterUpgrade() {
		stopNow("Stopping: a stop was requested while the previous image handed over")
	}

	err = d.serve(ctx)
	if srv != nil {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = srv.Shutdown(shutdownCtx)
		cancel()
	}
	if errors.Is(err, errHandover) {
		var output string
		if k, ok := d.sup.(outputKeeper); ok {
			output = k.KeepOutputAcrossExec()
		}
		_ = d.notify("WATCHDOG=1") // the new image starts with a whole watchdog timeout ahead
		// Too late to call the upgrade off: the instances are handed over. A stop goes along to
		// the new image, looked for as the last thing before the execve (a stop caught a moment
		// ago may not have reached stopNow yet), with the lock held from the look on so that
		// stopNow cannot come between.
		lifecycle.Lock()
		stopRequested := func() bool { return stopping || stopCaughtJustNow(lateStops) }
		err = up.exec(lock, stopRequested, output) // returns only on failure: then exit, and the next start resumes
		lifecycle.Unlock()
		log.Error("Upgrade failed", "err", err)
		return 1
	}
	if err != nil {
		log.Error(err.Error())
		return 1
	}
	log.Info("Stopped hapair")
	return 0
}

// signalSettle is how long the upgrade waits, just before its execve, for a stop signal caught a
// moment ago to come out of the Go runtime's signal queue (see stopCaughtJustNow).
const signalSettle = 2 * time.Millisecond

// stopCaughtJustNow reports whether a SIGTERM or SIGINT has come to late, a subscription of its
// own that nothing else reads. A signal goes from the runtime's handler through os/signal's
// goroutine to every subscriber at once, then through dispatchSignals to stopNow: a SIGTERM
// caught while the upgrade's last steps ran could still be on that way when the old image
// decided it had no stop to pass on, and the execve dropped it (the new image ran on, with the
// VIPs: seen as a flake of TestStopDuringUpgrade under load, 1 run in 12). Waiting signalSettle
// gives os/signal's goroutine its turn; late then holds any stop caught before the wait. What
// is left is a signal caught during the last microseconds before the execve itself: lost with
// the old image, or pending across the execve and fatal to the new one before its runtime
// installs a handler (see package earlysignals for the moments after).
func stopCaughtJustNow(late <-chan os.Signal) bool {
	time.Sleep(signalSettle)
	select {
	case <-late:
		return true
	default:
		return false
	}
}

// cmdCheck is `hapair check`, the `keepalived -t` of hapair: silent and 0 when valid.
func cmdCheck(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", stderr)
	path := fs.String("config", defaultConfig, "configuration file")
	skipIfaces := fs.Bool("skip-interface-check", false, "do not require the interfaces to exist on this host (checking a file meant for another host)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var opts []config.LoadOption
	if *skipIfaces {
		opts = append(opts, config.SkipInterfaceCheck())
	}
	warnings, problems := config.Check(*path, opts...)
	for _, w := range warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	if problems != nil {
		fmt.Fprintf(stderr, "%v\n", problems)
		return 1
	}
	return 0
}

// cmdStatus is `hapair status`: asks the running daemon, through its control socket or its
// status listener (findDaemon).
func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("status", stderr)
	parse := statusFlags(fs, stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	ep, code := parse(args)
	if code != 0 {
		return code
	}
	st, err := fetchStatus(context.Background(), ep)
	if err != nil {
		fmt.Fprintf(stderr, "hapair: %v\n", err)
		return 1
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return 1
		}
		return 0
	}
	if err := status.WriteText(stdout, st); err != nil {
		return 1
	}
	return 0
}

// cmdConvert is `hapair convert keepalived.conf`: YAML on stdout, what was not carried over on stderr.
func cmdConvert(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("convert", stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: hapair convert /etc/keepalived/keepalived.conf")
		return 2
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "hapair: %v\n", err)
		return 1
	}
	defer f.Close()
	out, notes, err := convert.Convert(f, fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "hapair: %v\n", err)
		return 1
	}
	if _, err := stdout.Write(out); err != nil {
		return 1
	}
	if len(notes) > 0 {
		fmt.Fprintf(stderr, "hapair: %d keyword(s) not carried over:\n", len(notes))
		for _, n := range notes {
			fmt.Fprintf(stderr, "  %s\n", n)
		}
	}
	return 0
}

// lockRuntimeDir takes hapair's runtime dir (after an in-place upgrade: the lock the previous
// image held) and checks that HAProxy's, when it is another directory, is hapair's own too.
func lockRuntimeDir(cfg *config.Config) (*rundir.Lock, error) {
	lock, err := rundir.Inherited()
	if err != nil {
		return nil, err
	}
	if lock == nil {
		if lock, err = rundir.Acquire(cfg.RuntimeDir); err != nil {
			return nil, err
		}
	}
	if cfg.HAProxy != nil && cfg.HAProxy.RuntimeDir != cfg.RuntimeDir {
		if err := rundir.Check(cfg.HAProxy.RuntimeDir); err != nil {
			lock.Release()
			return nil, fmt.Errorf("haproxy.%w", err)
		}
	}
	return lock, nil
}

// haproxyPresent refuses to start without the HAProxy binary or its configuration file: hapair
// would otherwise sit in a restart loop that only the log explains. (`hapair check` also runs
// `haproxy -c`; a file HAProxy rejects is left to the supervisor, which keeps retrying, so that
// fixing the file is enough to recover.)
// haproxyValid runs `haproxy -c` on the HAProxy configuration before anything starts, as
// `hapair check` does: the unit has no ExecStartPre for it, since systemd restarts a unit whose
// ExecStartPre failed whatever its exit status, and a broken file would loop.
func haproxyValid(h *config.HAProxy) error {
	if h == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), config.CheckTimeout)
	defer cancel()
	if _, err := supervisor.Validate(ctx, h.Command, h.Config); err != nil {
		return fmt.Errorf("haproxy.config %s: %w", h.Config, err)
	}
	return nil
}

func haproxyPresent(h *config.HAProxy) error {
	if h == nil {
		return nil
	}
	if _, err := exec.LookPath(h.Command); err != nil {
		return fmt.Errorf("haproxy.command: %w (apt-get install haproxy, or set haproxy.command)", err)
	}
	fi, err := os.Stat(h.Config)
	if err != nil {
		return fmt.Errorf("haproxy.config: %w", err)
	}
	if !fi.Mode().IsRegular() { // HAProxy would wait on a FIFO for ever
		return fmt.Errorf("haproxy.config: %s is not a regular file (%s)", h.Config, fi.Mode().Type())
	}
	return nil
}
