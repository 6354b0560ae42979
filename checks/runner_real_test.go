package checks

import (
	"strings"
	"testing"
	"time"
)

// TestRunnerRealProbes runs real probes on the wall clock: a script that hangs
// must be killed at its timeout and counted as failed, while a quick TCP check
// keeps its own pace meanwhile.
func TestRunnerRealProbes(t *testing.T) {
	tcp := NewTCPProbe(listenTCP(t))
	hang, err := NewScriptProbe(writeScript(t, "echo checking; sleep 30", 0o755), "", false)
	if err != nil {
		t.Fatal(err)
	}
	rep := &recorder{}
	const timeout = 300 * time.Millisecond
	r := NewRunner([]Spec{
		{Name: "script", Interval: time.Second, Timeout: timeout, Fall: 1, Rise: 1, Weight: -20, Probe: hang},
		{Name: "tcp", Interval: 20 * time.Millisecond, Timeout: time.Second, Probe: tcp},
	}, rep, nil)
	startRunner(t, r)

	seen := map[string]Event{}
	for len(seen) < 2 {
		ev := nextEvent(t, r)
		seen[ev.Name] = ev
	}
	ev := seen["script"]
	if ev.Up || !strings.Contains(ev.Result.Output, "process group killed: checking") {
		t.Errorf("script event %+v, want a timeout failure with its output", ev)
	}
	if d := ev.Result.Duration; d < timeout || d > timeout+time.Second {
		t.Errorf("script took %v with a %v timeout", d, timeout)
	}
	if !seen["tcp"].Up {
		t.Errorf("tcp event %+v, want up", seen["tcp"])
	}
	// The TCP check ran on while the script hung (300 ms at a 20 ms interval).
	if n := rep.count("tcp"); n < 5 {
		t.Errorf("tcp reported %d results while the script hung, want at least 5", n)
	}
	t.Logf("script timeout result after %v: %q; tcp results meanwhile: %d", ev.Result.Duration, ev.Result.Output, rep.count("tcp"))
	prio, _, _ := EffectivePriority(110, map[string]int{"script": -20, "tcp": -20}, r.Up())
	if prio != 90 {
		t.Errorf("effective priority %d, want 90", prio)
	}
}
