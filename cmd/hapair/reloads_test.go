package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hapair/hapair/metrics/status"

	"github.com/hapair/hapair/supervisor"
)

type fakeReloadReporter struct {
	mu      sync.Mutex
	results []supervisor.ReloadResult
}

func (f *fakeReloadReporter) ConfigReload(result supervisor.ReloadResult, _ time.Time) {
	f.mu.Lock()
	f.results = append(f.results, result)
	f.mu.Unlock()
}

// TestStuckReloadDelaysNoSignal: a reload that does not end (a FIFO, a hung HAProxy master) must
// not hold up SIGUSR1 or SIGTERM, and SIGHUPs that arrive meanwhile are answered by one attempt.
func TestStuckReloadDelaysNoSignal(t *testing.T) {
	log := newReloadLog("/etc/hapair/hapair.yaml", time.Now(), &fakeReloadReporter{})
	started := make(chan struct{}, 4)
	release := make(chan struct{})
	r := newReloader(log, func(ctx context.Context) (supervisor.ReloadResult, error) {
		started <- struct{}{}
		select {
		case <-release:
		case <-ctx.Done():
		}
		return supervisor.ReloadRefused, errors.New("stuck")
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.run(ctx)

	signals := make(chan os.Signal)
	dumped, stopped := make(chan struct{}, 1), make(chan os.Signal, 1)
	go dispatchSignals(signals, signalActions{
		reload: r.request,
		dump:   func() { dumped <- struct{}{} },
		stop:   func(sig os.Signal) { stopped <- sig },
	})
	send := func(sig os.Signal) {
		t.Helper()
		select {
		case signals <- sig:
		case <-time.After(10 * time.Second):
			t.Fatalf("%v not taken: the signal loop is blocked", sig)
		}
	}
	send(syscall.SIGHUP)
	<-started // the reload is now stuck
	send(syscall.SIGHUP)
	send(syscall.SIGHUP)
	send(syscall.SIGUSR1)
	select {
	case <-dumped:
	case <-time.After(10 * time.Second):
		t.Fatal("SIGUSR1 not acted on while a reload is stuck")
	}
	send(syscall.SIGTERM)
	select {
	case sig := <-stopped:
		if sig != syscall.SIGTERM {
			t.Fatalf("stop got %v", sig)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SIGTERM not acted on while a reload is stuck")
	}
	close(signals)

	if got := log.status().ReloadRequests; got != 3 {
		t.Errorf("reload requests = %d, want 3", got)
	}
	close(release) // the first attempt ends; the two SIGHUPs that came during it make one more
	<-started
	deadline := time.Now().Add(10 * time.Second)
	for {
		if last := log.status().LastReload; last != nil && last.Request == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("second attempt, answering requests 2 and 3, not recorded: %+v", log.status().LastReload)
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case <-started:
		t.Fatal("three SIGHUPs made three attempts; the two during the first should make one")
	case <-time.After(100 * time.Millisecond):
	}
}

// TestReloadLogRecordsEveryOutcome: a refused reload shows in the status and the metrics as
// plainly as a good one; the loaded time moves only on success.
func TestReloadLogRecordsEveryOutcome(t *testing.T) {
	start := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	rep := &fakeReloadReporter{}
	log := newReloadLog("/etc/hapair/hapair.yaml", start, rep)
	if st := log.status(); st.LastReload != nil || !st.LoadedAt.Equal(start) || st.File != "/etc/hapair/hapair.yaml" {
		t.Fatalf("before any reload: %+v", st)
	}
	log.request()
	req := log.begin()
	log.finish(req, start.Add(time.Minute), start.Add(time.Minute+time.Second), supervisor.ReloadRefused, errors.New("hapair.yaml:3: priority: 999 is outside 1..255"))
	st := log.status()
	if st.LastReload == nil || st.LastReload.Result != supervisor.ReloadRefused || !strings.Contains(st.LastReload.Error, "999") ||
		st.LastReload.Request != 1 || time.Duration(st.LastReload.Duration) != time.Second || !st.LoadedAt.Equal(start) {
		t.Fatalf("after a refused reload: %+v / %+v", st, st.LastReload)
	}
	log.request()
	req = log.begin()
	log.finish(req, start.Add(2*time.Minute), start.Add(2*time.Minute+time.Second), supervisor.ReloadOK, nil)
	st = log.status()
	if st.LastReload.Result != supervisor.ReloadOK || st.LastReload.Error != "" || !st.LoadedAt.Equal(start.Add(2*time.Minute+time.Second)) {
		t.Fatalf("after a good reload: %+v / %+v", st, st.LastReload)
	}
	if !slices.Equal(rep.results, []supervisor.ReloadResult{supervisor.ReloadRefused, supervisor.ReloadOK}) {
		t.Errorf("reported %v, want refused then ok", rep.results)
	}
}

// fakeDaemonStatus serves /status like a running hapair whose SIGHUP is hup.
type fakeDaemonStatus struct {
	mu  sync.Mutex
	st  status.Status
	log *reloadLog
}

func (f *fakeDaemonStatus) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	st := f.st
	f.mu.Unlock()
	st.Config = f.log.status()
	json.NewEncoder(w).Encode(st)
}

// TestRequestReloadWaitsForItsAttempt: `hapair reload` returns the attempt that answers its own
// signal, not the one before it, and reports a refusal with its error.
func TestRequestReloadWaitsForItsAttempt(t *testing.T) {
	log := newReloadLog("/etc/hapair/hapair.yaml", time.Now(), nil)
	// An earlier, refused attempt is what /status shows when the command starts.
	log.request()
	log.finish(log.begin(), time.Now(), time.Now(), supervisor.ReloadRefused, errors.New("old error"))
	f := &fakeDaemonStatus{st: status.Status{PID: 4242}, log: log}
	srv := httptest.NewServer(f)
	defer srv.Close()
	listen := listenerEndpoint(strings.TrimPrefix(srv.URL, "http://"))

	var signalled []int
	hup := func(pid int) error {
		signalled = append(signalled, pid)
		log.request()
		go func() {
			time.Sleep(3 * reloadPoll) // the outcome comes a few polls later
			log.finish(log.begin(), time.Now(), time.Now(), supervisor.ReloadOK, nil)
		}()
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := requestReload(ctx, listen, hup)
	if err != nil {
		t.Fatal(err)
	}
	if len(signalled) != 1 || signalled[0] != 4242 {
		t.Fatalf("signalled %v, want [4242]", signalled)
	}
	if r.Result != supervisor.ReloadOK || r.Request != 2 {
		t.Fatalf("got attempt %+v, want the ok one answering request 2", r)
	}

	// A daemon that restarts instead of answering is an error, not a hang.
	hupRestart := func(pid int) error {
		f.mu.Lock()
		f.st.PID = 5000
		f.mu.Unlock()
		return nil
	}
	if _, err := requestReload(ctx, listen, hupRestart); err == nil || !strings.Contains(err.Error(), "restarted") {
		t.Fatalf("daemon restarted: err = %v", err)
	}
	// No answer at all: the deadline ends the wait.
	short, cancelShort := context.WithTimeout(context.Background(), 3*reloadPoll)
	defer cancelShort()
	if _, err := requestReload(short, listen, func(int) error { return nil }); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("no outcome: err = %v", err)
	}
}

// TestSignalPIDOnlySignalsHapair: whatever squats on the status port could name any pid; SIGHUP
// would end most programs. Only a process running the same program is signalled.
func TestSignalPIDOnlySignalsHapair(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	err := signalPID(cmd.Process.Pid)
	if err == nil || !strings.Contains(err.Error(), `runs "sleep"`) {
		t.Fatalf("signalPID(sleep) = %v, want refused", err)
	}
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("sleep was signalled: %v", err)
	}
}
