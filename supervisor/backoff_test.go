package supervisor

import (
	"testing"
	"time"
)

func TestBackoffSchedule(t *testing.T) {
	const ms = time.Millisecond
	short, long := 10*ms, time.Minute
	tests := []struct {
		name  string
		rand  float64         // the injected random draw, for every step
		ran   []time.Duration // how long each child ran
		waits []time.Duration // want
		fails int             // want after the last step
	}{
		{"doubles to the cap", 0.5, []time.Duration{short, short, short, short, short, short, short},
			[]time.Duration{500 * ms, 1000 * ms, 2000 * ms, 4000 * ms, 4000 * ms, 4000 * ms, 4000 * ms}, 7},
		{"jitter low end is -20%", 0, []time.Duration{short, short}, []time.Duration{400 * ms, 800 * ms}, 2},
		{"jitter high end is +20%", 1, []time.Duration{short, short}, []time.Duration{600 * ms, 1200 * ms}, 2},
		{"a long run resets", 0.5, []time.Duration{short, short, short, long, short},
			[]time.Duration{500 * ms, 1000 * ms, 2000 * ms, 500 * ms, 1000 * ms}, 2},
		{"a run just at reset_after resets", 0.5, []time.Duration{short, 30 * time.Second},
			[]time.Duration{500 * ms, 500 * ms}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &backoff{backoffLimits: backoffLimits{initial: 500 * ms, max: 4 * time.Second, resetAfter: 30 * time.Second},
				rand: func() float64 { return tt.rand }}
			for i, ran := range tt.ran {
				if got := b.next(ran); got != tt.waits[i] {
					t.Errorf("step %d (ran %s): wait %s, want %s", i, ran, got, tt.waits[i])
				}
			}
			if b.failures != tt.fails {
				t.Errorf("failures %d, want %d", b.failures, tt.fails)
			}
		})
	}
}
