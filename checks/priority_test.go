package checks

import "testing"

func TestEffectivePriority(t *testing.T) {
	tests := []struct {
		name      string
		base      uint8
		track     map[string]int
		up        map[string]bool
		wantPrio  uint8
		wantFault bool
		wantBy    string
	}{
		{"seed master, haproxy up", 110, map[string]int{"haproxy": -20}, map[string]bool{"haproxy": true}, 110, false, ""},
		{"seed master, haproxy down", 110, map[string]int{"haproxy": -20}, map[string]bool{"haproxy": false}, 90, false, ""},
		{"seed backup stays 100", 100, map[string]int{"haproxy": -20}, map[string]bool{"haproxy": true}, 100, false, ""},
		{"both checks down add up", 110, map[string]int{"haproxy": -20, "haproxy_stats": -20},
			map[string]bool{"haproxy": false, "haproxy_stats": false}, 70, false, ""},
		{"positive weight applies while passing", 100, map[string]int{"link": 15}, map[string]bool{"link": true}, 115, false, ""},
		{"positive weight does nothing while failing", 100, map[string]int{"link": 15}, map[string]bool{"link": false}, 100, false, ""},
		{"negative weight does nothing while passing", 100, map[string]int{"x": -50}, map[string]bool{"x": true}, 100, false, ""},
		{"clamped to 1", 10, map[string]int{"x": -254}, map[string]bool{"x": false}, 1, false, ""},
		{"non-owner clamped to 254", 250, map[string]int{"x": 10}, map[string]bool{"x": true}, 254, false, ""},
		{"owner untouched stays 255", 255, map[string]int{"haproxy": -20}, map[string]bool{"haproxy": true}, 255, false, ""},
		{"owner with positive weight stays 255", 255, map[string]int{"x": 10}, map[string]bool{"x": true}, 255, false, ""},
		{"owner with a failing check drops", 255, map[string]int{"haproxy": -20}, map[string]bool{"haproxy": false}, 235, false, ""},
		{"owner with tiny negative weight capped at 254", 255, map[string]int{"a": -1, "b": 5}, map[string]bool{"a": false, "b": true}, 254, false, ""},
		{"weight 0 failing means fault", 110, map[string]int{"haproxy": 0}, map[string]bool{"haproxy": false}, 110, true, "haproxy"},
		{"weight 0 passing is no fault", 110, map[string]int{"haproxy": 0}, map[string]bool{"haproxy": true}, 110, false, ""},
		{"first faulting check in name order", 110, map[string]int{"zz": 0, "aa": 0, "x": -20},
			map[string]bool{"zz": false, "aa": false, "x": false}, 90, true, "aa"},
		{"unknown check ignored", 110, map[string]int{"nope": -20, "gone": 0}, map[string]bool{"haproxy": false}, 110, false, ""},
		{"no tracking", 100, nil, nil, 100, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prio, fault, by := EffectivePriority(tt.base, tt.track, tt.up)
			if prio != tt.wantPrio || fault != tt.wantFault || by != tt.wantBy {
				t.Errorf("EffectivePriority(%d, %v, %v) = %d, %v, %q; want %d, %v, %q",
					tt.base, tt.track, tt.up, prio, fault, by, tt.wantPrio, tt.wantFault, tt.wantBy)
			}
		})
	}
}
