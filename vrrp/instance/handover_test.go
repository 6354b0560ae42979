package instance

import (
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hapair/hapair/vrrp"
)

// advertFrom writes one VRRPv3 advert of prio from peer onto the bus, as another router would.
func advertFrom(t *testing.T, peer *fakeConn, prio uint8) {
	t.Helper()
	a := vrrp.Advert{Version: 3, VRID: 51, Priority: prio, Interval: advertInt, Addrs: []netip.Addr{vipPrefix.Addr()}}
	payload, err := a.Marshal(peer.addr, group, vrrp.ChecksumWithPseudoHeader)
	if err != nil {
		t.Fatal(err)
	}
	if err := peer.WriteAdvert(payload); err != nil {
		t.Fatal(err)
	}
}

func returned(n *node) bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

func TestStopKeepsTheVIPsUntilTheNewMasterAdvertises(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &bus{}
		high := startNode(t, b, "10.0.0.11", 110, "")
		peer := b.conn(netip.MustParseAddr("10.0.0.12")) // a router we speak for by hand
		settle(time.Second)
		if high.inst.Status().State != vrrp.Master || !high.vips.has() {
			t.Fatal("no MASTER with the VIP")
		}
		high.cancel()
		// LongestMasterDown is 3*50ms + Skew_Time at priority 1 (40ms) = 190ms: well before it,
		// nobody has advertised, so the VIP stays and Run goes on.
		settle(120 * time.Millisecond)
		high.rep.mu.Lock()
		zero := high.rep.zeroSent
		high.rep.mu.Unlock()
		if zero != 3 { // at once, then at each Adver_Timer (50ms, 100ms)
			t.Fatalf("%d priority-0 adverts in 120ms, want 3", zero)
		}
		if returned(high) || !high.vips.has() {
			t.Fatalf("before a new MASTER advertised: Run returned %v, VIP kept %v; want false, true", returned(high), high.vips.has())
		}
		advertFrom(t, peer, 100)
		synctest.Wait()
		if !returned(high) || high.vips.has() {
			t.Fatalf("after the new MASTER's advert: Run returned %v, VIP kept %v; want true, false", returned(high), high.vips.has())
		}
		if st := high.inst.Status(); st.State != vrrp.Init {
			t.Fatalf("state %v after the stop, want INIT", st.State)
		}
	})
}

func TestStopWithoutAPeerReleasesAfterLongestMasterDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &bus{}
		high := startNode(t, b, "10.0.0.11", 110, "")
		settle(time.Second)
		high.cancel()
		settle(190*time.Millisecond - time.Nanosecond)
		if returned(high) || !high.vips.has() {
			t.Fatalf("just before LongestMasterDown: Run returned %v, VIP kept %v; want false, true", returned(high), high.vips.has())
		}
		settle(time.Nanosecond)
		if !returned(high) || high.vips.has() {
			t.Fatalf("at LongestMasterDown: Run returned %v, VIP kept %v; want true, false", returned(high), high.vips.has())
		}
	})
}

func TestDrainHandsOverAndUndrainTakesBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		high, low := pair(t)
		drained := high.inst.SetDrained(true)
		// The BACKUP takes over Skew_Time (30ms) after the priority 0; its advert ends the drain.
		settle(31 * time.Millisecond)
		var res HandoverResult
		select {
		case res = <-drained:
		default:
			t.Fatal("no drain result after the BACKUP's takeover")
		}
		if !res.HandedOver || res.State != vrrp.Backup || res.MasterAddr != netip.MustParseAddr("10.0.0.12") {
			t.Fatalf("drain result %+v, want handed over, BACKUP, master 10.0.0.12", res)
		}
		if high.vips.has() || !low.vips.has() {
			t.Fatalf("after the drain: VIP on high %v, low %v; want low only", high.vips.has(), low.vips.has())
		}
		if st := high.inst.Status(); !st.Drained || st.Priority != 1 {
			t.Fatalf("status after the drain: drained %v priority %d, want true, 1", st.Drained, st.Priority)
		}
		// A drained node stays BACKUP whatever its checks say.
		high.inst.SetPriority(120)
		settle(5 * advertInt)
		if high.vips.has() {
			t.Fatal("the drained node took the VIP back")
		}
		undrained := high.inst.SetDrained(false)
		synctest.Wait()
		select {
		case res = <-undrained:
		default:
			t.Fatal("no undrain result")
		}
		if res.HandedOver || res.State != vrrp.Backup {
			t.Fatalf("undrain result %+v, want nothing handed over, still BACKUP", res)
		}
		// Preempt with fast failover: Skew_Time at 120 (26ms) after the undrain.
		settle(27 * time.Millisecond)
		if !high.vips.has() || low.vips.has() {
			t.Fatalf("after the undrain: VIP on high %v, low %v; want high only", high.vips.has(), low.vips.has())
		}
		if st := high.inst.Status(); st.Drained || st.Priority != 120 {
			t.Fatalf("status after the undrain: drained %v priority %d, want false, 120", st.Drained, st.Priority)
		}
	})
}

func TestDrainOfABackupAnswersAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		high, low := pair(t)
		res, ok := <-low.inst.SetDrained(true)
		if !ok || res.HandedOver || res.State != vrrp.Backup || res.MasterAddr != netip.MustParseAddr("10.0.0.11") {
			t.Fatalf("drain result %+v (%v), want nothing handed over, BACKUP under 10.0.0.11", res, ok)
		}
		settle(time.Second)
		if !high.vips.has() || low.vips.has() {
			t.Fatal("draining the BACKUP moved the VIP")
		}
	})
}

func TestDrainAfterRunReturnedAppliesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		high, _ := pair(t)
		high.stop()
		if _, ok := <-high.inst.SetDrained(true); ok {
			t.Fatal("a drain after Run returned got a result")
		}
	})
}

func TestStartedDrainedNeverContends(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &bus{}
		high := startNodeWith(t, b, "10.0.0.11", 110, func(c *Config) { c.Drained = true })
		low := startNode(t, b, "10.0.0.12", 100, "")
		settle(time.Second)
		if st := high.inst.Status(); st.State != vrrp.Backup || !st.Drained || st.Priority != 1 || high.vips.has() || !low.vips.has() {
			t.Fatalf("started drained: %s, drained %v, priority %d, VIP %v (low: %v); want BACKUP, true, 1, false (true)",
				st.State, st.Drained, st.Priority, high.vips.has(), low.vips.has())
		}
	})
}
