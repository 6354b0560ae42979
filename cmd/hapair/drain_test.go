package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hapair/hapair/cmd/internal/config"
	"github.com/hapair/hapair/metrics"
)

func TestDrainedFileRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if drainedOnDisk(dir) {
		t.Fatal("a fresh runtime dir reads drained")
	}
	if err := recordDrained(dir, true); err != nil {
		t.Fatal(err)
	}
	if !drainedOnDisk(dir) {
		t.Fatal("not drained after recordDrained(true)")
	}
	if fi, err := os.Stat(filepath.Join(dir, drainedFileName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("drained file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	for range 2 { // undraining twice is no error
		if err := recordDrained(dir, false); err != nil {
			t.Fatal(err)
		}
	}
	if drainedOnDisk(dir) {
		t.Fatal("still drained after recordDrained(false)")
	}
	if err := recordDrained(filepath.Join(dir, "missing"), true); err == nil {
		t.Fatal("recordDrained into a missing dir: no error")
	}
}

func TestDrainText(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rep    drainReport
		ok     bool
		substr string
	}{
		{"drain handed over", drainReport{Drained: true, Instances: []drainOutcome{{Name: "VI_LOGS", HandedOver: true, State: "BACKUP", Master: "10.0.0.12"}}},
			true, "(VI_LOGS) handed over: MASTER is now 10.0.0.12"},
		{"drain of a BACKUP", drainReport{Drained: true, Instances: []drainOutcome{{Name: "VI_LOGS", State: "BACKUP", Master: "10.0.0.12"}}},
			true, "(VI_LOGS) BACKUP: MASTER is 10.0.0.12"},
		{"drain nobody took", drainReport{Drained: true, Instances: []drainOutcome{{Name: "VI_LOGS", State: "MASTER", Master: "10.0.0.11", Us: true}}},
			false, "no peer took over: this node is still MASTER"},
		{"undrain preempted back", drainReport{Instances: []drainOutcome{{Name: "VI_LOGS", State: "MASTER", Master: "10.0.0.11", Us: true}}},
			true, "(VI_LOGS) MASTER is now 10.0.0.11 (this node)"},
		{"undrain stays BACKUP", drainReport{Instances: []drainOutcome{{Name: "VI_LOGS", State: "BACKUP"}}},
			true, "(VI_LOGS) BACKUP: MASTER is unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text, ok := drainText(tc.rep)
			if ok != tc.ok || !strings.Contains(text, tc.substr) {
				t.Errorf("drainText = %v,\n%s\nwant %v and %q", ok, text, tc.ok, tc.substr)
			}
		})
	}
}

// TestControlSocketDrainsAndUndrains drives the control socket of a daemon without instances:
// the drain is recorded on disk, in the metric and in the status, and undone.
func TestControlSocketDrainsAndUndrains(t *testing.T) {
	dir := t.TempDir()
	d := &daemon{cfg: &config.Config{RuntimeDir: dir}, log: slog.New(slog.DiscardHandler),
		metrics: metrics.New(metrics.BuildInfo{Version: "test"})}
	c, err := startControl(dir, d, d.log)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	sock := filepath.Join(dir, controlSocketName)
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	if _, err := startControl(dir, d, d.log); err == nil || !strings.Contains(err.Error(), "another hapair") {
		t.Fatalf("a second control socket in the same dir: %v, want refused", err)
	}
	gauge := func() float64 {
		mfs, err := d.metrics.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "hapair_drained" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no hapair_drained series")
		return -1
	}

	rep, err := requestDrain(context.Background(), sock, "drain")
	if err != nil || !rep.Drained {
		t.Fatalf("drain: %+v, %v", rep, err)
	}
	if !drainedOnDisk(dir) || gauge() != 1 || !d.drained.Load() {
		t.Fatalf("after drain: on disk %v, hapair_drained %v, status %v; want all drained", drainedOnDisk(dir), gauge(), d.drained.Load())
	}
	rep, err = requestDrain(context.Background(), sock, "undrain")
	if err != nil || rep.Drained {
		t.Fatalf("undrain: %+v, %v", rep, err)
	}
	if drainedOnDisk(dir) || gauge() != 0 || d.drained.Load() {
		t.Fatalf("after undrain: on disk %v, hapair_drained %v, status %v; want none", drainedOnDisk(dir), gauge(), d.drained.Load())
	}
	// GET (what anyone who can read metrics could send) changes nothing.
	req, _ := http.NewRequest(http.MethodGet, "http://hapair/drain", nil)
	resp, err := controlClient(sock).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || drainedOnDisk(dir) {
		t.Fatalf("GET /drain answered %s, drained %v; want 405 and nothing drained", resp.Status, drainedOnDisk(dir))
	}
}
