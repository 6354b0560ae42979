package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/hapair/hapair/vrrp/record"
)

// exitConfig is what `hapair run` exits with when it refuses its configuration (EX_CONFIG in
// sysexits.h): its file, HAProxy's, or a runtime_dir that is not hapair's own. The unit names it
// in RestartPreventExitStatus: restarting cannot mend a file, and a restart loop on one would
// end with the unit failed for good (start-limit-hit).
const exitConfig = 78

// exitAborted is the status of a hapair that ended on SIGABRT (128 + 6, as the shell reports it).
const exitAborted = 134

// abortStacksFile is where the goroutine stacks of a watchdog abort go, in the runtime dir.
const abortStacksFile = "abort-stacks.txt"

// handleAbort answers SIGABRT, which systemd's watchdog sends to a hapair whose loops stopped
// turning. Go's own answer is a trace of every goroutine on stderr: hundreds of lines in the
// journal around the one that matters. Instead the stacks go to a file in the runtime dir, the
// journal gets one line, and hapair exits as a crash: HAProxy is not stopped, so the hapair that
// systemd starts next adopts it.
func handleAbort(log *slog.Logger, runtimeDir string) (stop func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGABRT)
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
			return
		case <-ch:
		}
		// A hapair the watchdog aborts has not turned its loops for WatchdogSec, longer than
		// its peers' Master_Down_Interval: they have taken over, or would have. Its state
		// records go, so the next start is a normal one rather than a resume. Without this,
		// whether it resumed would hang on a race: once continued, the loop may send one last
		// advert, and rewrite its record, before this goroutine runs.
		records, _ := filepath.Glob(record.Path(runtimeDir, "*"))
		for _, r := range records {
			_ = os.Remove(r)
		}
		path := filepath.Join(runtimeDir, abortStacksFile)
		where := "written to " + path
		if err := os.WriteFile(path, allStacks(), 0o600); err != nil {
			where = fmt.Sprintf("not written: %v", err)
		}
		log.Error("Received SIGABRT (watchdog timeout?): exiting at once; HAProxy is left for the next start to adopt, the state records are removed so that it starts without resuming",
			"stacks", where)
		os.Exit(exitAborted)
	}()
	return func() { signal.Stop(ch); close(done) }
}

func allStacks() []byte {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) || len(buf) >= 64<<20 {
			return buf[:n]
		}
		buf = make([]byte, 2*len(buf))
	}
}
