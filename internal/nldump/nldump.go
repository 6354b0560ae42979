// Package nldump retries netlink dumps that the kernel interrupted.
//
// A dump (every address, every link) spans several messages; when the table changes while it
// is read, the kernel marks it NLM_F_DUMP_INTR and vishvananda/netlink returns what it read
// with ErrDumpInterrupted. Reading again gets a consistent table, once the changes stop. They
// may come in a run: keepalived adding its 255 VIPs while hapair started interrupted three
// dumps back to back (make bench-scale), and hapair, which read again at once and gave up
// after three, exited. Retry waits a little longer before each new read, up to about a second.
package nldump

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
)

// Tries is how many times Retry reads before it returns the interruption; with the waits
// between them, about a second in all. Half a second (11 reads) was not always enough in
// TestPrimaryAddrWhileAddressesChange (vrrp/transport) while the rest of the suite loaded the
// machine: 1 of 300 reads gave up.
const Tries = 16

const (
	firstWait = time.Millisecond
	maxWait   = 100 * time.Millisecond
)

// interruptions counts the reads the kernel interrupted, in this process.
var interruptions atomic.Int64

// Interrupted is how many reads the kernel has interrupted in this process: a test of a dump
// under changes shows with it that the changes did interrupt one.
func Interrupted() int64 { return interruptions.Load() }

// Retry runs dump until it is not interrupted, at most Tries times, waiting 1 ms, 2 ms, 4 ms ...
// (at most 100 ms) between reads. Any other error returns at once.
func Retry[T any](dump func() (T, error)) (T, error) {
	wait := firstWait
	for try := 1; ; try++ {
		v, err := dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
		interruptions.Add(1)
		if try == Tries {
			return v, err
		}
		time.Sleep(wait)
		wait = min(2*wait, maxWait)
	}
}
