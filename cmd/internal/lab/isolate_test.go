package lab_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/hapair/hapair/cmd/internal/lab"
	"github.com/hapair/hapair/cmd/internal/lab/labtest"
	vipnet "github.com/hapair/hapair/vrrp/vip"
)

// TestIsolateStopsGratuitousARP: an isolated host's gratuitous ARPs, sent on a packet socket
// as keepalived and hapair send them, must not reach the others. Before Isolate dropped frames
// at the device, they passed beside its IP and ARP tables and moved a client's neighbour entry
// to a host that was supposed to be cut off.
func TestIsolateStopsGratuitousARP(t *testing.T) {
	l := labtest.New(t)
	owner := labtest.AddHost(t, l, "owner", l.Addr(11))
	cut := labtest.AddHost(t, l, "cut", l.Addr(12))
	cli := labtest.AddHost(t, l, "cli", l.Addr(50))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := netip.PrefixFrom(vip, 24)
	if err := owner.AddAddr(p); err != nil {
		t.Fatal(err)
	}
	if out, err := cli.Run(ctx, "ping", "-c", "1", "-W", "2", vip.String()); err != nil {
		t.Fatalf("ping the VIP: %v\n%s", err, out)
	}
	if mac, err := cli.Neighbor(vip); err != nil || mac.String() != owner.MAC().String() {
		t.Fatalf("client's entry for the VIP: %v (%v), want the owner's %v", mac, err, owner.MAC())
	}
	time.Sleep(1100 * time.Millisecond) // past the kernel's ARP locktime (1 s)

	if err := cut.Isolate(); err != nil {
		t.Fatal(err)
	}
	if err := cut.AddAddr(p); err != nil {
		t.Fatal(err)
	}
	err := cut.Do(func() error {
		a, err := vipnet.NewAnnouncer("eth0")
		if err != nil {
			return err
		}
		defer a.Close()
		for range 3 {
			// The device's egress drop may show as ENOBUFS to the sender; what matters is
			// that nothing arrives.
			_, _ = a.Announce([]netip.Prefix{p})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if mac, err := cli.Neighbor(vip); err != nil || mac.String() != owner.MAC().String() {
		t.Fatalf("after the isolated host's gratuitous ARPs the client's entry is %v (%v), want still the owner's %v", mac, err, owner.MAC())
	}
	// Healed, the same announcements do arrive: the test can see them.
	if err := cut.Heal(); err != nil {
		t.Fatal(err)
	}
	err = cut.Do(func() error {
		a, err := vipnet.NewAnnouncer("eth0")
		if err != nil {
			return err
		}
		defer a.Close()
		_, err = a.Announce([]netip.Prefix{p})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := lab.WaitFor(ctx, 3*time.Second, func() (bool, error) {
		mac, err := cli.Neighbor(vip)
		return err == nil && mac.String() == cut.MAC().String(), nil
	}); err != nil {
		t.Fatalf("healed, the announcement did not move the client's entry: %v", err)
	}
}
