package checks

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

func needRoot(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("namespace test: skipped under -short")
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("needs root")
		}
		t.Skip("needs root")
	}
}

// testNetns makes a network namespace with a unique name, removed when the test ends.
func testNetns(t *testing.T) (string, netns.NsHandle) {
	t.Helper()
	needRoot(t)
	b := make([]byte, 4)
	rand.Read(b)
	name := "hapair-chk-" + hex.EncodeToString(b)
	ip(t, "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return name, ns
}

func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func TestInterfaceProbe(t *testing.T) {
	name, ns := testNetns(t)
	ip(t, "-n", name, "link", "add", "va", "type", "veth", "peer", "name", "vb")

	probe := func(ifname string) Result {
		return probeWithTimeout(t, NewInterfaceProbeAt(ifname, ns), time.Second)
	}
	steps := []struct {
		name   string
		setup  []string // ip -n <ns> link set ...
		ifname string
		ok     bool
		want   string
	}{
		{"admin down", nil, "va", false, "interface va is administratively down"},
		{"up but peer down", []string{"va", "up"}, "va", false, "interface va is lower-layer-down"},
		{"both ends up", []string{"vb", "up"}, "va", true, "interface va is up"},
		{"peer down again", []string{"vb", "down"}, "va", false, "interface va is lower-layer-down"},
		{"loopback: state unknown with carrier", []string{"lo", "up"}, "lo", true, "interface lo is up (carrier, state unknown)"},
		{"missing interface", nil, "eth9", false, "interface eth9 not found"},
		{"empty name", nil, "", false, "interface "},
		{"name too long", nil, "a-name-that-is-too-long", false, "interface a-name-that-is-too-long"},
	}
	for _, st := range steps {
		if st.setup != nil {
			ip(t, append([]string{"-n", name, "link", "set"}, st.setup...)...)
		}
		res := probe(st.ifname)
		t.Logf("%s: %s", st.name, res.Output)
		if res.OK != st.ok || res.Output != st.want && !strings.Contains(res.Output, st.want) {
			t.Errorf("%s: result ok=%v %q, want ok=%v %q", st.name, res.OK, res.Output, st.ok, st.want)
		}
	}
}

// TestInterfaceCheckEventDriven runs the interface check in a Runner with an hour
// long interval: every change must come from the netlink subscription.
func TestInterfaceCheckEventDriven(t *testing.T) {
	name, ns := testNetns(t)
	ip(t, "-n", name, "link", "add", "va", "type", "veth", "peer", "name", "vb")
	ip(t, "-n", name, "link", "set", "va", "up")
	ip(t, "-n", name, "link", "set", "vb", "up")

	p := NewInterfaceProbeAt("va", ns)
	r := NewRunner([]Spec{{Name: "link", Interval: time.Hour, Timeout: time.Second, Probe: p}}, nil, nil)
	startRunner(t, r)
	if ev := nextEvent(t, r); !ev.Up {
		t.Fatalf("first event %+v, want up", ev)
	}
	// Let the subscription start before changing anything: link events before it
	// would be missed (the probe at start already covers them in real use).
	waitForSubscription(t, r, name)

	var worst time.Duration
	for i, step := range []struct {
		dev, state string
		up         bool
	}{
		{"vb", "down", false}, {"vb", "up", true}, {"va", "down", false}, {"va", "up", true},
	} {
		start := time.Now()
		ip(t, "-n", name, "link", "set", step.dev, step.state)
		ev := nextEvent(t, r)
		took := time.Since(start)
		worst = max(worst, took)
		if ev.Up != step.up {
			t.Fatalf("step %d (%s %s): event %+v, want up=%v", i, step.dev, step.state, ev, step.up)
		}
	}
	t.Logf("link change (ip link set, including the ip command) -> Event: worst %v", worst)

	ip(t, "-n", name, "link", "del", "va")
	if ev := nextEvent(t, r); ev.Up || !strings.Contains(ev.Result.Output, "not found") {
		t.Errorf("after delete: event %+v, want down, not found", ev)
	}
}

// waitForSubscription changes va's alias (an update about va that leaves its state
// alone) until the runner probes again, i.e. until link events reach it.
func waitForSubscription(t *testing.T, r *Runner, ns string) {
	t.Helper()
	base := r.Status()[1].Last.At
	waitFor(t, "subscription to deliver an event", func() bool {
		ip(t, "-n", ns, "link", "set", "va", "alias", time.Now().Format(time.RFC3339Nano))
		return r.Status()[1].Last.At.After(base)
	})
}
