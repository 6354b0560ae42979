package checks

import (
	"strings"
	"testing"
)

// TestLinksFollowUpdates: Down answers from the updates Watch applies; a missing interface
// counts as down, a rename or delete is followed, and updates that change nothing are not
// reported as changes (so that a busy host's link statistics do not re-evaluate instances).
func TestLinksFollowUpdates(t *testing.T) {
	l := &Links{state: map[string]linkState{}, names: map[int]string{}}
	up := linkState{true, "interface eth0 is up"}
	adminDown := linkState{false, "interface eth0 is administratively down"}

	if down, why := l.Down([]string{"eth0"}); !down || !strings.Contains(why, "not found") {
		t.Fatalf("unknown interface: Down = %v, %q; want down, not found", down, why)
	}
	if down, _ := l.Down(nil); down {
		t.Fatal("no tracked link: Down = true")
	}
	steps := []struct {
		index   int
		name    string
		s       linkState
		exists  bool
		changed bool
		track   []string
		down    bool
		why     string
	}{
		{2, "eth0", up, true, true, []string{"eth0"}, false, ""},
		{2, "eth0", up, true, false, []string{"eth0"}, false, ""},
		{2, "eth0", adminDown, true, true, []string{"eth0"}, true, "administratively down"},
		{2, "eth0", up, true, true, []string{"eth0"}, false, ""},
		{3, "eth1", linkState{false, "interface eth1 is lowerlayerdown"}, true, true, []string{"eth0", "eth1"}, true, "eth1 is lowerlayerdown"},
		{2, "wan0", up, true, true, []string{"eth0"}, true, "eth0 not found"},  // renamed
		{2, "wan0", up, false, true, []string{"wan0"}, true, "wan0 not found"}, // deleted
	}
	for i, s := range steps {
		if got := l.set(s.index, s.name, s.s, s.exists); got != s.changed {
			t.Errorf("step %d: set(%d, %s) changed = %v, want %v", i, s.index, s.name, got, s.changed)
		}
		down, why := l.Down(s.track)
		if down != s.down || !strings.Contains(why, s.why) {
			t.Errorf("step %d: Down(%v) = %v, %q; want %v, %q", i, s.track, down, why, s.down, s.why)
		}
	}
}
