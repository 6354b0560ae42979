package checks

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// listenTCP returns the address of a loopback port that accepts every connection and closes it
// at once, until the test ends.
func listenTCP(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return l.Addr().String()
}

func TestTCPProbe(t *testing.T) {
	open := listenTCP(t)
	tests := []struct {
		name string
		addr string
		ok   bool
		want string
	}{
		{"open port", open, true, "connected to"},
		{"closed port", closedPort(t), false, "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := probeWithTimeout(t, NewTCPProbe(tt.addr), time.Second)
			if res.OK != tt.ok || !strings.Contains(res.Output, tt.want) || res.At.IsZero() {
				t.Errorf("result %+v; want ok=%v containing %q", res, tt.ok, tt.want)
			}
			t.Logf("%s: %s in %v", tt.name, res.Output, res.Duration)
		})
	}
}

func TestTCPProbeTimeout(t *testing.T) {
	// A listener with backlog 0 that never accepts: once its accept queue is full
	// the kernel drops further SYNs, so a connect hangs.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	p := NewTCPProbe(fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port))
	const timeout = 200 * time.Millisecond
	var res Result
	for range 10 {
		if res = probeWithTimeout(t, p, timeout); !res.OK {
			break
		}
	}
	if res.OK || !strings.Contains(res.Output, "timed out after") || res.Duration < timeout-20*time.Millisecond {
		t.Errorf("result %+v, want a connect timeout", res)
	}
	t.Logf("%s", res.Output)
}

func TestTCPProbeBadAddress(t *testing.T) {
	for _, addr := range []string{"", "127.0.0.1", "::1:80"} {
		res := probeWithTimeout(t, NewTCPProbe(addr), time.Second)
		if res.OK || !strings.Contains(res.Output, "address") {
			t.Errorf("NewTCPProbe(%q): result %+v, want a failure naming the address problem", addr, res)
		}
	}
}
