package transport

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hapair/hapair/vrrp"
	"github.com/hapair/hapair/vrrp/internal/nstest"
)

// keepalivedConf is a backup (priority 100) for three virtual routers: VRRPv2 multicast with
// PASS authentication, VRRPv3 over IPv6, and VRRPv3 unicast.
const keepalivedConf = `global_defs {
  router_id interop
}
vrrp_instance V4 {
  state BACKUP
  interface vb
  virtual_router_id 51
  priority 100
  advert_int 1
  authentication {
    auth_type PASS
    auth_pass secret1
  }
  virtual_ipaddress {
    10.201.0.100/24
  }
}
vrrp_instance V6 {
  state BACKUP
  interface vb
  virtual_router_id 52
  priority 100
  advert_int 1
  version 3
  virtual_ipaddress {
    fd00:201::100/64
  }
}
vrrp_instance V4U {
  state BACKUP
  interface vb
  virtual_router_id 53
  priority 100
  advert_int 1
  version 3
  unicast_src_ip 10.201.0.2
  unicast_peer {
    10.201.0.1
  }
  virtual_ipaddress {
    10.201.0.101/24
  }
}
`

// syncBuffer is a bytes.Buffer safe for keepalived's output and the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestKeepalivedInterop runs keepalived 2.2.7 as backup in namespace B. While adverts built by
// package vrrp and sent through this package arrive from A with a higher priority, keepalived
// must stay backup; when they stop, it takes over, and its adverts must read back through this
// package and parse (checksums included).
func TestKeepalivedInterop(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 9 s")
	}
	path, err := exec.LookPath("keepalived")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("keepalived not installed (make deps installs it)")
		}
		t.Skip("keepalived not installed")
	}
	p := nstest.NewPair(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(conf, []byte(keepalivedConf), 0o644); err != nil {
		t.Fatal(err)
	}
	var log syncBuffer
	cmd := exec.Command("ip", "netns", "exec", p.B.Name, path, "--dont-fork", "--log-console", "--log-detail",
		"--vrrp", "-f", conf, "-p", filepath.Join(dir, "keepalived.pid"), "-r", filepath.Join(dir, "vrrp.pid"))
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	})

	var auth [8]byte
	copy(auth[:], "secret1")
	type router struct {
		c   *testConn
		adv vrrp.Advert
	}
	hub := NewHub(HubOptions{}) // one Hub, as the daemon has
	routers := []router{
		{joinIn(t, p.A, hub, Options{Interface: p.AIf, Family: 4}, 51),
			vrrp.Advert{Version: 2, VRID: 51, Priority: 200, Interval: time.Second, AuthType: 1, AuthData: auth,
				Addrs: []netip.Addr{netip.MustParseAddr("10.201.0.100")}}},
		{joinIn(t, p.A, hub, Options{Interface: p.AIf, Family: 6}, 52),
			vrrp.Advert{Version: 3, VRID: 52, Priority: 200, Interval: time.Second,
				Addrs: []netip.Addr{netip.MustParseAddr("fd00:201::100")}}},
		{joinIn(t, p.A, hub, Options{Interface: p.AIf, Family: 4, SourceAddr: p.A4.Addr(), Peers: []netip.Addr{p.B4.Addr()}}, 53),
			vrrp.Advert{Version: 3, VRID: 53, Priority: 200, Interval: time.Second,
				Addrs: []netip.Addr{netip.MustParseAddr("10.201.0.101")}}},
	}
	nstest.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(log.String(), "(V4U) Entering BACKUP STATE") {
			return fmt.Errorf("keepalived not in BACKUP yet:\n%s", log.String())
		}
		return nil
	})
	// Five advert intervals: longer than keepalived's master down interval (3 x 1 s + skew).
	for range 5 {
		for _, r := range routers {
			ep := r.c
			for _, d := range ep.Destinations() {
				b, err := r.adv.Marshal(ep.Source(), d, vrrp.ChecksumWithPseudoHeader)
				if err != nil {
					t.Fatal(err)
				}
				if err := ep.WriteAdvertTo(b, d); err != nil {
					t.Fatal(err)
				}
			}
		}
		time.Sleep(time.Second) // the advert interval itself
	}
	if strings.Contains(log.String(), "Entering MASTER STATE") {
		t.Fatalf("keepalived became master while hearing priority 200:\n%s", log.String())
	}

	wantSrc := []netip.Addr{p.B4.Addr(), p.BLinkLocal, p.B4.Addr()}
	wantDst := []netip.Addr{Group(4), Group(6), p.A4.Addr()}
	for i, r := range routers {
		got := readWithin(t, r.c, 10*time.Second)
		a, err := vrrp.Parse(got.payload, got.src, got.dst)
		if err != nil {
			t.Errorf("VRID %d: keepalived's advert does not parse: %v", r.adv.VRID, err)
			continue
		}
		if a.VRID != r.adv.VRID || a.Priority != 100 || got.ttl != TTL || got.src != wantSrc[i] || got.dst != wantDst[i] {
			t.Errorf("VRID %d: got VRID %d priority %d TTL %d from %v to %v", r.adv.VRID, a.VRID, a.Priority, got.ttl, got.src, got.dst)
		}
	}
}
