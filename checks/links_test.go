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
	up := linkState{up: true, reason: "interface eth0 is up"}
	adminDown := linkState{up: false, reason: "interface eth0 is administratively down"}

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
		{3, "eth1", linkState{up: false, reason: "interface eth1 is lowerlayerdown"}, true, true, []string{"eth0", "eth1"}, true, "eth1 is lowerlayerdown"},
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

// TestLinksIndexFollowsARecreatedInterface: an interface deleted and created again under its name
// has a new index, which Index gives (the daemon moves its instances onto it), and the new link
// counts as a change even with the same state.
func TestLinksIndexFollowsARecreatedInterface(t *testing.T) {
	l := &Links{state: map[string]linkState{}, names: map[int]string{}}
	up := linkState{up: true, reason: "interface eth0 is up"}
	l.set(2, "eth0", up, true)
	if got := l.Index("eth0"); got != 2 {
		t.Fatalf("Index(eth0) = %d, want 2", got)
	}
	l.set(2, "eth0", up, false)
	if got := l.Index("eth0"); got != 0 {
		t.Fatalf("deleted: Index(eth0) = %d, want 0", got)
	}
	if !l.set(7, "eth0", up, true) {
		t.Fatal("created again: no change reported")
	}
	if got := l.Index("eth0"); got != 7 {
		t.Fatalf("created again: Index(eth0) = %d, want 7", got)
	}
	// Without the delete seen (notifications lost, then a dump): a new index is a change too.
	if !l.set(9, "eth0", up, true) {
		t.Fatal("new index without a delete: no change reported")
	}
	if down, _ := l.Down([]string{"eth0"}); l.Index("eth0") != 9 || down {
		got := l.Index("eth0")
		t.Fatalf("Index(eth0) = %d, down = %v; want 9, up", got, down)
	}
}
