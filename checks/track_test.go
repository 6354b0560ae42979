package checks

import (
	"slices"
	"testing"
)

func TestTrackerFallRise(t *testing.T) {
	// seq: results in order; want: the tracked status after each, "P" never appears
	// because the first result decides; changes: indexes at which step reported a change.
	tests := []struct {
		name       string
		fall, rise int
		seq        string // '+' success, '-' failure
		want       string // 'U' up, 'D' down after each result
		changes    []int
	}{
		{"first success is enough even with rise 3", 2, 3, "+", "U", []int{0}},
		{"first failure is enough even with fall 3", 3, 2, "-", "D", []int{0}},
		{"fall 2 needs two consecutive failures", 2, 2, "+-+--", "UUUUD", []int{0, 4}},
		{"rise 2 needs two consecutive successes", 2, 2, "-+-++", "DDDDU", []int{0, 4}},
		{"seed chk_haproxy fall 2 rise 2 round trip", 2, 2, "++--++", "UUUDDU", []int{0, 3, 5}},
		{"fall 1 rise 1 follows every result", 1, 1, "+-+-", "UDUD", []int{0, 1, 2, 3}},
		{"zero fall and rise mean 1", 0, 0, "+-", "UD", []int{0, 1}},
		{"long failure run stays down without repeated changes", 1, 3, "+----++-+++", "UDDDDDDDDDU", []int{0, 1, 10}},
		{"interrupted rise restarts counting", 1, 3, "-++-+++", "DDDDDDU", []int{0, 6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTracker(tt.fall, tt.rise)
			var got []byte
			var changes []int
			for i, c := range tt.seq {
				var changed bool
				tr, changed = tr.step(c == '+')
				if changed {
					changes = append(changes, i)
				}
				if tr.up {
					got = append(got, 'U')
				} else {
					got = append(got, 'D')
				}
			}
			if string(got) != tt.want {
				t.Errorf("status sequence = %s, want %s", got, tt.want)
			}
			if !slices.Equal(changes, tt.changes) {
				t.Errorf("changes at %v, want %v", changes, tt.changes)
			}
		})
	}
}

func TestTrackerPendingUntilFirstResult(t *testing.T) {
	tr := newTracker(2, 2)
	if tr.started || tr.up {
		t.Fatalf("new tracker started=%v up=%v, want pending and not up", tr.started, tr.up)
	}
}
