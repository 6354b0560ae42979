package vip

import (
	"net/netip"
	"testing"
	"time"

	"github.com/hapair/hapair/vrrp/internal/nstest"
)

// TestSharedDumps: managers sharing Dumps see each other's Attach and Detach at once, and a VIP
// removed by hand once the shared dump is older than its age.
func TestSharedDumps(t *testing.T) {
	p := nstest.NewPair(t)
	now := time.Now()
	d := NewDumps(time.Second)
	d.clock = func() time.Time { return now }
	va, vb := netip.MustParsePrefix("10.201.0.100/32"), netip.MustParsePrefix("10.201.0.101/32")
	a, err := NewManager(p.AIf, []netip.Prefix{va}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewManager(p.AIf, []netip.Prefix{vb}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.ShareDumps(d)
	b.ShareDumps(d)
	missing := func(m *Manager) int {
		t.Helper()
		got, err := inNS(t, p.A, m.Missing)
		if err != nil {
			t.Fatal(err)
		}
		return len(got)
	}

	if n := missing(a); n != 1 {
		t.Fatalf("a: %d missing before Attach, want 1", n)
	}
	p.A.MustDo(t, a.Attach)
	if n := missing(b); n != 1 {
		t.Fatalf("b: %d missing, want 1", n)
	}
	// Within the dump's age, and b's check just dumped: a's own Attach voided the old dump,
	// so a sees its VIP.
	if n := missing(a); n != 0 {
		t.Fatalf("a: %d missing right after its Attach, want 0", n)
	}
	p.A.MustDo(t, b.Attach)
	if n := missing(b); n != 0 {
		t.Fatalf("b: %d missing right after its Attach, want 0", n)
	}

	// Removed by hand: the shared dump still has it until it is a second old.
	p.A.IP(t, "addr", "del", va.String(), "dev", p.AIf)
	if n := missing(a); n != 0 {
		t.Fatalf("a: %d missing within the dump's age, want 0 (the dump is shared)", n)
	}
	now = now.Add(time.Second)
	if n := missing(a); n != 1 {
		t.Fatalf("a: %d missing once the dump is a second old, want 1", n)
	}
	p.A.MustDo(t, b.Detach)
}
