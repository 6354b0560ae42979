// Package spawntest helps tests of programs started through package spawn: whether a process
// still runs, waiting for processes to end, and reading the pids a test script wrote.
package spawntest

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Alive reports whether pid runs. A zombie (ended, waiting for its parent to reap it) is dead.
func Alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) S ...: the state follows the last ')', since comm may hold one.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

// WaitGone fails the test unless every pid ends within a generous while (the machine may be
// loaded; nothing here is a timing bound), and kills the survivors so that nothing is left behind.
func WaitGone(t testing.TB, what string, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for Alive(pid) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if Alive(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("%s: process %d still runs", what, pid)
		}
	}
}

// ReadPids waits until file holds at least n whitespace-separated pids and returns the first n.
// Scripts should write it whole (write a temporary file, then mv) so that no half line is read.
func ReadPids(t testing.TB, file string, n int) []int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _ := os.ReadFile(file)
		if fields := strings.Fields(string(data)); len(fields) >= n {
			pids := make([]int, n)
			for i := range pids {
				pid, err := strconv.Atoi(fields[i])
				if err != nil {
					t.Fatalf("%s holds %q: %v", file, data, err)
				}
				pids[i] = pid
			}
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s holds %q, want %d pids", file, data, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
