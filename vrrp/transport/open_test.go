package transport

import (
	"errors"
	"net"
	"testing"

	"github.com/hapair/hapair/vrrp/internal/nstest"
	"golang.org/x/sys/unix"
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
				go s.serve()
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

// TestReaderStopsWhenClosing: the reader reads full batches for as long as packets keep coming,
// and Close waits for it: under a flood of VRRP packets hapair could not stop. With the socket
// closing, the reader stops after the batch it has.
func TestReaderStopsWhenClosing(t *testing.T) {
	ns := nstest.New(t)
	var s *socket
	if err := ns.Do(func() (err error) {
		s, err = openSocket(NewHub(HubOptions{}), sockKey{family: 4, unicast: true}, nil)
		if err != nil {
			return err
		}
		// Forty packets queued, ten batches' worth.
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, Protocol)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		to := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}
		for range 40 {
			if err := unix.Sendto(fd, []byte{0x31, 51, 100, 1, 0, 100, 0, 0, 10, 0, 0, 1}, 0, to); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	defer func() { go s.serve(); s.close() }() // close waits for the reader
	s.closing.Store(true)
	var stopped bool
	// Control, not Read: a reader that waited for more would wait for ever here.
	if err := s.rc.Control(func(fd uintptr) { stopped = s.recvmmsg(fd) }); err != nil {
		t.Fatal(err)
	}
	if !stopped || !errors.Is(s.rerr, net.ErrClosed) {
		t.Errorf("read while closing: stopped %v, reader error %v; want it to stop with net.ErrClosed", stopped, s.rerr)
	}
	if n := s.reads.Load(); n != 1 {
		t.Errorf("%d batches read while closing, want 1: the reader went on with the queue", n)
	}
}
