package main

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hapair/hapair/cmd/internal/lab/labtest"
)

// TestDemoRunsWithoutTerminal runs `hapair demo --quick` as `make demo` would, with no terminal,
// and checks that it shows the election, the failover timeline and the recovery, and leaves no
// namespace behind.
func TestDemoRunsWithoutTerminal(t *testing.T) {
	t.Parallel()
	labtest.RequireRoot(t)
	labtest.RequireCommands(t, "haproxy", "ip", "nft")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, hapairBin, "demo", "--quick")
	out, err := cmd.CombinedOutput()
	t.Logf("hapair demo:\n%s", out)
	if err != nil {
		t.Fatalf("hapair demo failed: %v", err)
	}
	wants := []string{
		"(VI_LOGS) Entering MASTER STATE",
		"HAProxy killed",
		"takeover measured by lb2",
		"now answered by lb2",
		"answered by lb1 again",
		"/metrics 200",
		"/status 200",
		"/healthz 200",
		"Lab torn down",
	}
	checkDemoOutput(t, string(out), wants)
}

// TestDemoRefusesWithoutRoot: one clear sentence and a non-zero exit.
func TestDemoRefusesWithoutRoot(t *testing.T) {
	labtest.RequireRoot(t) // to drop to nobody
	cmd := exec.Command(hapairBin, "demo")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("demo as nobody exited 0:\n%s", out)
	}
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "needs root") {
		t.Fatalf("demo as nobody said %q, want one sentence about root", out)
	}
}

func namespaces(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	var ns []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			ns = append(ns, f[0])
		}
	}
	return ns
}

// TestDemoBGP runs `hapair demo --bgp --quick`: the router's route has the three nodes, each
// failure takes one out, the graceful stop loses no request, and no namespace is left behind.
func TestDemoBGP(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireCommands(t, "haproxy", "ip", "nft", "vtysh")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, hapairBin, "demo", "--bgp", "--quick").CombinedOutput()
	t.Logf("hapair demo --bgp:\n%s", out)
	if err != nil {
		t.Fatalf("hapair demo --bgp failed: %v", err)
	}
	wants := []string{
		"nexthop via 10.0.0.11",
		"nexthop via 10.0.0.12",
		"nexthop via 10.0.0.13",
		"BGP: withdrawing 10.77.9.10/32 (check haproxy down)",
		"kernel route: n2 n3 (n1 gone)",
		"announced again, kernel route n1 n2 n3",
		"BGP: draining 10.77.9.10/32 (GRACEFUL_SHUTDOWN)",
		"0 requests failed across the stop",
		"kernel route: n1 only",
		"/metrics 200",
		"Lab torn down",
	}
	checkDemoOutput(t, string(out), wants)
}

// checkDemoOutput fails unless the demo's output holds every one of wants and every namespace
// the demo says it removed is gone.
func checkDemoOutput(t *testing.T, out string, wants []string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	m := regexp.MustCompile(`Lab torn down: namespaces (.*) removed`).FindStringSubmatch(out)
	if m == nil {
		t.Fatal("demo did not say which namespaces it removed")
	}
	live := map[string]bool{}
	for _, ns := range namespaces(t) {
		live[ns] = true
	}
	for _, ns := range strings.Fields(m[1]) {
		if live[ns] {
			t.Errorf("namespace %s left behind", ns)
		}
	}
}
