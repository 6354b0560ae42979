package instance

import (
	"fmt"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hapair/hapair/vrrp"
)

// TestRebindKeepsABackupHearingItsMaster: the BACKUP's interface is created again, and its old
// socket hears nothing any more. Moved onto a socket on the new interface (Rebind), it hears
// its MASTER there and stays BACKUP; the old socket is closed, and the channel says when.
// Without the move it takes over (the first half shows it does, on the dead socket).
func TestRebindKeepsABackupHearingItsMaster(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		high, low := pair(t)
		old := low.conn
		old.Close() // deaf, as a socket on an interface that is gone
		masterDown := 3*advertInt + advertInt*(256-100)/256
		settle(advertInt)
		fresh := low.conn.bus.conn(low.conn.addr)
		done := low.inst.Rebind(fresh, low.ann, netip.Addr{})
		settle(0)
		select {
		case <-done:
		default:
			t.Fatal("Rebind: its channel is not closed after the instance's turn")
		}
		settle(10 * masterDown)
		if st := low.inst.Status().State; st != vrrp.Backup {
			t.Fatalf("after Rebind the BACKUP is %s; want BACKUP, hearing its MASTER on the new socket", st)
		}
		if st := high.inst.Status().State; st != vrrp.Master {
			t.Fatalf("MASTER is %s", st)
		}
	})
}

// TestWithoutRebindADeafBackupTakesOver is the control for the test above: the same deaf
// socket, not replaced, makes a second MASTER.
func TestWithoutRebindADeafBackupTakesOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, low := pair(t)
		low.conn.Close()
		settle(10 * advertInt)
		if st := low.inst.Status().State; st != vrrp.Master {
			t.Fatalf("a deaf BACKUP is %s after 10 intervals; want MASTER (the case Rebind is for)", st)
		}
	})
}

// TestRebindAfterTheEnd: once the instance has stopped, Rebind closes its channel at once and
// leaves the new socket to its caller, open.
func TestRebindAfterTheEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, low := pair(t)
		low.stop()
		fresh := low.conn.bus.conn(low.conn.addr)
		select {
		case <-low.inst.Rebind(fresh, low.ann, netip.Addr{}):
		case <-time.After(time.Second):
			t.Fatal("Rebind after the end: the channel was not closed")
		}
		select {
		case <-fresh.closed:
			t.Fatal("Rebind after the end closed the caller's new socket")
		default:
		}
		fresh.Close()
	})
}

// TestRebindToANewSource: the MASTER's interface is renumbered in place (Rebind with a source
// and no new socket). Its adverts leave from the new address, with a VRRPv3 checksum computed
// over it, so its BACKUP keeps hearing it and names it as MASTER; a checksum still over the old
// address would be dropped, and the BACKUP would take over.
func TestRebindToANewSource(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		high, low := pair(t)
		renumbered := netip.MustParseAddr("10.0.0.21")
		done := high.inst.Rebind(nil, nil, renumbered)
		settle(0)
		select {
		case <-done:
		default:
			t.Fatal("Rebind: its channel is not closed after the instance's turn")
		}
		masterDown := 3*advertInt + advertInt*(256-100)/256
		settle(10 * masterDown)
		if st := low.inst.Status(); st.State != vrrp.Backup || st.MasterAddr != renumbered {
			t.Fatalf("after the MASTER's renumbering its BACKUP is %s following %s; want BACKUP following %s", st.State, st.MasterAddr, renumbered)
		}
		if st := high.inst.Status(); st.State != vrrp.Master || st.MasterAddr != renumbered {
			t.Fatalf("the renumbered MASTER is %s and names %s as MASTER; want MASTER, %s", st.State, st.MasterAddr, renumbered)
		}
		low.rep.mu.Lock()
		dropped := fmt.Sprint(low.rep.dropped)
		low.rep.mu.Unlock()
		if dropped != "map[]" {
			t.Errorf("the BACKUP dropped adverts: %s", dropped)
		}
	})
}
