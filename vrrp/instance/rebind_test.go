package instance

import (
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
		done := low.inst.Rebind(fresh, low.ann)
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
		case <-low.inst.Rebind(fresh, low.ann):
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
