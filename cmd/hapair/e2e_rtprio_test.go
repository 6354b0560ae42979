package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hapair/hapair/cmd/internal/lab"
	"github.com/hapair/hapair/cmd/internal/lab/labtest"
)

// TestRealTimePriority: with vrrp_rt_priority every thread of hapair runs SCHED_RR at that
// priority but one (the thread children are forked from), and what hapair starts (HAProxy's
// master and worker, a notify hook) runs SCHED_OTHER; a reload without the key returns hapair
// to SCHED_OTHER. Without internal/rtprio's Start, the children inherited SCHED_RR 10.
func TestRealTimePriority(t *testing.T) {
	t.Parallel()
	labtest.RequireCommands(t, "haproxy")
	p := newPair(t)
	hook := filepath.Join(p.lb1.Dir(), "hook-stat")
	cfg := haproxyConfigFile(t, p.lb1, lab.HAProxyConfig{Name: "lb1"}.Render())
	n := labNode{Priority: 110, AuthPass: "1a2b3c4d", HAProxyConfig: cfg, Extra: "vrrp_rt_priority: 10\n",
		ExtraInstance: []string{fmt.Sprintf(`notify_master: "/bin/sh -c 'cat /proc/self/stat > %s'"`, hook)}}
	d := startDaemon(t, p.lb1, n)
	d.waitState(0, "MASTER", 15*time.Second)

	threads := threadPolicies(t, d.proc.PID())
	if threads["SCHED_OTHER 0"] != 1 || threads["SCHED_RR 10"] < 3 || len(threads) != 2 {
		t.Errorf("hapair's threads: %v, want all SCHED_RR 10 but the one that forks (SCHED_OTHER 0)", threads)
	}
	master := haproxyMasterPID(t, d)
	if got := procPolicy(t, fmt.Sprintf("/proc/%d/stat", master)); got != "SCHED_OTHER 0" {
		t.Errorf("HAProxy master: %s, want SCHED_OTHER 0", got)
	}
	workers := childrenOf(t, master)
	if len(workers) == 0 {
		t.Errorf("HAProxy master %d has no worker", master)
	}
	for _, w := range workers {
		if got := procPolicy(t, fmt.Sprintf("/proc/%d/stat", w)); got != "SCHED_OTHER 0" {
			t.Errorf("HAProxy worker %d: %s, want SCHED_OTHER 0", w, got)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(hook)
		if err == nil && len(b) > 0 {
			if got := parseStatPolicy(t, string(b)); got != "SCHED_OTHER 0" {
				t.Errorf("notify hook: %s, want SCHED_OTHER 0", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("notify master hook did not run: %v\n%s", err, d.proc.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Reloaded without the key: normal priority again, for every thread.
	n = d.node // with startDaemon's defaults
	n.Extra = ""
	if err := os.WriteFile(d.cfgPath, []byte(n.YAML()), 0o600); err != nil {
		t.Fatal(err)
	}
	from := d.lines()
	if err := d.proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := d.proc.WaitForLineAfter(ctx, from, regexp.MustCompile(`Configuration reloaded`)); err != nil {
		t.Fatalf("no reload: %v\n%s", err, d.proc.Output())
	}
	if threads := threadPolicies(t, d.proc.PID()); len(threads) != 1 || threads["SCHED_OTHER 0"] == 0 {
		t.Errorf("hapair's threads after a reload without vrrp_rt_priority: %v, want all SCHED_OTHER 0", threads)
	}
}

// threadPolicies counts a process's threads by "policy priority".
func threadPolicies(t *testing.T, pid int) map[string]int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for _, e := range ents {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, e.Name()))
		if err != nil {
			continue // the thread ended meanwhile
		}
		n[parseStatPolicy(t, string(b))]++
	}
	return n
}

func procPolicy(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parseStatPolicy(t, string(b))
}

// parseStatPolicy reads rt_priority and policy, fields 40 and 41 of proc_pid_stat(5).
func parseStatPolicy(t *testing.T, stat string) string {
	t.Helper()
	i := strings.LastIndexByte(stat, ')')
	f := strings.Fields(stat[i+1:]) // fields 3 on
	if i < 0 || len(f) < 41-2 {
		t.Fatalf("not a stat line: %q", stat)
	}
	names := map[string]string{"0": "SCHED_OTHER", "1": "SCHED_FIFO", "2": "SCHED_RR", "3": "SCHED_BATCH", "5": "SCHED_IDLE"}
	return names[f[41-3]] + " " + f[40-3]
}

// childrenOf lists the pids of a process's children.
func childrenOf(t *testing.T, pid int) []int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		var c int
		fmt.Sscan(f, &c)
		pids = append(pids, c)
	}
	return pids
}
