package metrics

import (
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"testing"

	"github.com/hapair/hapair/vrrp"
)

// TestFixedLabelSetsFollowVRRP: the counter series made at start are vrrp's whole lists, so a
// state or drop reason added there starts at 0 here too.
func TestFixedLabelSetsFollowVRRP(t *testing.T) {
	if !slices.Equal(dropReasonNames[:], vrrp.DropReasons()) {
		t.Errorf("drop reasons %v, vrrp has %v", dropReasonNames, vrrp.DropReasons())
	}
	var states []string
	for _, s := range vrrp.States() {
		states = append(states, s.String())
	}
	if !slices.Equal(stateNames[:], states) {
		t.Errorf("states %v, vrrp has %v", stateNames, states)
	}
	for s := range vrrp.States() {
		if stateIndex(vrrp.States()[s]) != s {
			t.Errorf("stateIndex(%v) = %d, want %d", vrrp.States()[s], stateIndex(vrrp.States()[s]), s)
		}
	}
}

// TestInstanceMetricsAreSmall holds an instance's metrics to a few KiB of heap: with a
// client_golang child per series (49 counters with their label pairs) it was about 28 KiB, the
// larger part of hapair's heap at 255 instances.
func TestInstanceMetricsAreSmall(t *testing.T) {
	const n = 255
	m := New(BuildInfo{Version: "v", Commit: "c"})
	m.EnableKeepalivedCompat()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ims := make([]*InstanceMetrics, n)
	for i := range ims {
		ims[i] = m.Instance(fmt.Sprintf("VI_%d", i), "eth0", uint8(i), netip.MustParsePrefix("10.0.0.1/32"))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(ims)
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n
	t.Logf("%d bytes of heap per instance", per)
	// 5.7 KiB with client_golang children for the gauges and histograms; 1.3 KiB with every
	// series a plain value exported when scraped; 0.7 KiB without label pairs kept for the
	// registry.
	if per > 1<<10 {
		t.Fatalf("%d bytes of heap per instance, want at most 1 KiB", per)
	}
}
