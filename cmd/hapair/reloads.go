package main

import (
	"context"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/hapair/hapair/metrics/status"

	"github.com/hapair/hapair/supervisor"
)

// reloadReporter is what the reload log tells the metrics.
type reloadReporter interface {
	ConfigReload(result supervisor.ReloadResult, at time.Time)
}

// reloadLog records the SIGHUPs received and the outcome of each reload attempt, for /status,
// `hapair status`, the metrics and `hapair reload`, which waits for the attempt that answers its
// signal. A refused reload must be as visible as a good one.
type reloadLog struct {
	rep reloadReporter

	mu       sync.Mutex
	file     string
	loadedAt time.Time
	requests uint64
	last     *status.ConfigReload
}

func newReloadLog(file string, loadedAt time.Time, rep reloadReporter) *reloadLog {
	return &reloadLog{rep: rep, file: file, loadedAt: loadedAt}
}

// request counts one SIGHUP.
func (l *reloadLog) request() {
	l.mu.Lock()
	l.requests++
	l.mu.Unlock()
}

// begin starts an attempt; it answers every request counted so far.
func (l *reloadLog) begin() (request uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.requests
}

// finish records an attempt's outcome.
func (l *reloadLog) finish(request uint64, began, ended time.Time, result supervisor.ReloadResult, err error) {
	r := &status.ConfigReload{Request: request, At: began, Duration: status.Duration(ended.Sub(began)), Result: result}
	if err != nil {
		r.Error = err.Error()
	}
	l.mu.Lock()
	l.last = r
	if result == supervisor.ReloadOK {
		l.loadedAt = ended
	}
	l.mu.Unlock()
	if l.rep != nil {
		l.rep.ConfigReload(result, ended)
	}
}

// status is the configuration part of the status document.
func (l *reloadLog) status() *status.ConfigStatus {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := &status.ConfigStatus{File: l.file, LoadedAt: l.loadedAt, ReloadRequests: l.requests}
	if l.last != nil {
		last := *l.last
		st.LastReload = &last
	}
	return st
}

// signalActions are what `hapair run` does on each signal.
type signalActions struct {
	reload  func()          // SIGHUP: must not block (it only queues a reload)
	dump    func()          // SIGUSR1
	upgrade func()          // SIGUSR2: must not block
	stop    func(os.Signal) // SIGTERM, SIGINT
}

// dispatchSignals acts on each signal as it comes, until signals is closed. Nothing here waits
// for a reload: a reload stuck on a file or on a hung HAProxy master must not delay SIGTERM or
// SIGUSR1, so SIGHUP only queues the reload for reloader.
func dispatchSignals(signals <-chan os.Signal, a signalActions) {
	for sig := range signals {
		switch sig {
		case syscall.SIGHUP:
			a.reload()
		case syscall.SIGUSR1:
			a.dump()
		case syscall.SIGUSR2:
			if a.upgrade != nil {
				a.upgrade()
			}
		default:
			a.stop(sig)
		}
	}
}

// reloader runs the reloads queued on requests one at a time until ctx is done. requests has
// room for one: SIGHUPs that arrive during a reload are answered together by the next attempt,
// which reads the file as it is then.
type reloader struct {
	log      *reloadLog
	requests chan struct{}
	reload   func(ctx context.Context) (result supervisor.ReloadResult, err error)
	now      func() time.Time
}

func newReloader(log *reloadLog, reload func(ctx context.Context) (supervisor.ReloadResult, error)) *reloader {
	return &reloader{log: log, requests: make(chan struct{}, 1), reload: reload, now: time.Now}
}

// request counts a SIGHUP and queues a reload; it never blocks.
func (r *reloader) request() {
	r.log.request()
	select {
	case r.requests <- struct{}{}:
	default: // one is queued already; it will answer this request too
	}
}

func (r *reloader) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.requests:
		}
		req := r.log.begin()
		began := r.now()
		result, err := r.reload(ctx)
		r.log.finish(req, began, r.now(), result, err)
	}
}
