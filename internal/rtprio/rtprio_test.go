package rtprio

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The checks run in a child process of the test binary: making the test process itself real-time
// would outlive a failing test and change how every later test is scheduled.
const childEnv = "HAPAIR_RTPRIO_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		run := child
		if mode == "inherited" {
			run = inheritedChild
		}
		if err := run(); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestRealTimeThreadsNormalChildren(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_NICE) to raise a scheduling policy")
	}
	got := runChild(t, "set", os.Args[0], "-test.run=^$")
	want := map[string]string{
		// Every thread real-time, also those the runtime made after Set.
		"threads after Set":          "SCHED_RR 5",
		"new threads":                ">=1",
		"Priority after Set":         "5",
		"child started with Start":   "SCHED_OTHER 0",
		"child started by cmd.Start": "SCHED_RR 5", // why Start exists: a plain fork inherits
		"child of a script's Start":  "SCHED_OTHER 0",
		"threads after Set(0)":       "SCHED_OTHER 0",
		"child after Set(0)":         "SCHED_OTHER 0",
		"Set(100)":                   "refused",
		"forker thread":              "SCHED_OTHER 0",
	}
	expect(t, got, want)
}

// Started real-time by its unit (CPUSchedulingPolicy=) or by chrt, with no Set: the children
// still run at normal priority.
func TestStartedRealTimeNormalChildren(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_NICE) to raise a scheduling policy")
	}
	if _, err := exec.LookPath("chrt"); err != nil {
		t.Skip("no chrt")
	}
	got := runChild(t, "inherited", "chrt", "-r", "7", os.Args[0], "-test.run=^$")
	want := map[string]string{
		"Priority at start":        "7",
		"threads":                  "SCHED_RR 7",
		"child started with Start": "SCHED_OTHER 0",
		"forker thread":            "SCHED_OTHER 0",
	}
	expect(t, got, want)
}

// expect reports every key whose value is not the one wanted.
func expect(t *testing.T, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
}

// runChild runs the test binary (argv) with childEnv=mode and returns the key=value lines it printed.
func runChild(t *testing.T, mode string, argv ...string) map[string]string {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("child said:\n%s", out)
	got := map[string]string{}
	for l := range strings.Lines(string(out)) {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok {
			got[k] = v
		}
	}
	return got
}

func inheritedChild() error {
	fmt.Printf("Priority at start=%d\n", Priority())
	fmt.Printf("child started with Start=%s\n", childPolicy(Start))
	fmt.Printf("threads=%s\n", threadPolicies())
	fmt.Printf("forker thread=%s\n", forkerPolicy())
	return nil
}

func forkerPolicy() string {
	p, err := statPolicy(fmt.Sprintf("/proc/self/task/%d/stat", forkerTID.Load()))
	if err != nil {
		return err.Error()
	}
	return p
}

func child() error {
	if err := Set(5); err != nil {
		return err
	}
	before, err := threads()
	if err != nil {
		return err
	}
	// Make the runtime start threads after Set: goroutines blocked in system calls hand their
	// P on to a new thread.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			ts := unix.NsecToTimespec(int64(200 * time.Millisecond))
			_, _, _ = syscall.Syscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&ts)), 0, 0)
		})
	}
	wg.Wait()
	after, err := threads()
	if err != nil {
		return err
	}
	fmt.Printf("new threads=%s\n", atLeastOne(len(after)-len(before)))
	fmt.Printf("threads after Set=%s\n", threadPolicies())
	fmt.Printf("Priority after Set=%d\n", Priority())
	fmt.Printf("child started with Start=%s\n", childPolicy(Start))
	fmt.Printf("child started by cmd.Start=%s\n", childPolicy(func(c *exec.Cmd) error { return c.Start() }))
	// A check script's spawn locks its goroutine to its thread (for the parent-death signal):
	// Start must still fork from the normal thread.
	fmt.Printf("child of a script's Start=%s\n", childPolicy(func(c *exec.Cmd) error {
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		return Start(c)
	}))
	if err := Set(0); err != nil {
		return err
	}
	fmt.Printf("threads after Set(0)=%s\n", threadPolicies())
	fmt.Printf("child after Set(0)=%s\n", childPolicy(Start))
	fmt.Printf("forker thread=%s\n", forkerPolicy())
	if Set(100) != nil {
		fmt.Println("Set(100)=refused")
	}
	return nil
}

func atLeastOne(n int) string {
	if n >= 1 {
		return ">=1"
	}
	return strconv.Itoa(n)
}

// threadPolicies is the one policy all threads but the forker share, or a list of them all.
func threadPolicies() string {
	tids, err := threads()
	if err != nil {
		return err.Error()
	}
	seen := map[string][]int{}
	for _, tid := range tids {
		if tid == int(forkerTID.Load()) {
			continue
		}
		p, err := statPolicy(fmt.Sprintf("/proc/self/task/%d/stat", tid))
		if err != nil {
			continue // gone
		}
		seen[p] = append(seen[p], tid)
	}
	if len(seen) == 1 {
		for p := range seen {
			return p
		}
	}
	return fmt.Sprint(seen)
}

// childPolicy starts `cat /proc/self/stat` with start and reads the policy cat ran with.
func childPolicy(start func(*exec.Cmd) error) string {
	cmd := exec.Command("cat", "/proc/self/stat")
	var out strings.Builder
	cmd.Stdout = &out
	if err := start(cmd); err != nil {
		return err.Error()
	}
	if err := cmd.Wait(); err != nil {
		return err.Error()
	}
	p, err := parsePolicy(out.String())
	if err != nil {
		return err.Error()
	}
	return p
}

func statPolicy(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return parsePolicy(string(b))
}

// parsePolicy reads rt_priority and policy, fields 40 and 41 of proc_pid_stat(5).
func parsePolicy(stat string) (string, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return "", fmt.Errorf("no command in %q", stat)
	}
	f := strings.Fields(stat[i+1:]) // from field 3 on
	if len(f) < 39 {
		return "", fmt.Errorf("short stat %q", stat)
	}
	prio, policy := f[40-3], f[41-3]
	names := map[string]string{"0": "SCHED_OTHER", "1": "SCHED_FIFO", "2": "SCHED_RR"}
	return names[policy] + " " + prio, nil
}
