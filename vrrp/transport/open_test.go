package transport

import (
	"net"
	"testing"

	"github.com/hapair/hapair/vrrp/internal/nstest"
)

// TestOpenSocketFailureIsAnError: a socket whose set-up fails after it was built (here the
// multicast join, on an interface that is gone: a network restart while hapair starts or reloads)
// is an error from Join, not a panic. The cleanup read the named result, which the failing
// return had just set to nil.
func TestOpenSocketFailureIsAnError(t *testing.T) {
	ns := nstest.New(t)
	gone := &net.Interface{Index: 999999, Name: "gone0"}
	for _, family := range []int{4, 6} {
		err := ns.Do(func() error {
			s, err := openSocket(NewHub(HubOptions{}), sockKey{ifindex: gone.Index, family: family}, gone)
			if err == nil {
				s.close()
				t.Errorf("IPv%d: a socket on an interface that does not exist opened", family)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestDispatchBeforeTheFirstMember: the reader starts as soon as the socket is open, and a packet
// already queued may reach dispatch before Join has added the socket's first member. It is a
// stray then, not a nil table indexed.
func TestDispatchBeforeTheFirstMember(t *testing.T) {
	strays := &countingCounter{}
	h := NewHub(HubOptions{Strays: func(string) Counter { return strays }})
	s := newSocket(h, sockKey{ifindex: 0, family: 4}, nil)
	ip := []byte{0x45, 0, 0, 32, 0, 0, 0, 0, 255, Protocol, 0, 0, 10, 0, 0, 2, 224, 0, 0, 18}
	advert := []byte{0x31, 51, 100, 1, 0, 100, 0, 0, 10, 0, 0, 1}
	n := copy(s.rx[0].buf[:], append(ip, advert...))
	s.mmsg[0].len = uint32(n)
	s.dispatch(0)
	if strays.n != 1 {
		t.Errorf("%d strays counted, want the packet counted as one", strays.n)
	}
}

type countingCounter struct{ n int }

func (c *countingCounter) Inc() { c.n++ }
