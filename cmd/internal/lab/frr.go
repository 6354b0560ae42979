package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
)

// FRRDir holds Debian's FRR daemons.
const FRRDir = "/usr/lib/frr"

// FRRConfig describes the lab's upstream router: FRR's bgpd accepting the BGP sessions the nodes
// open from a listen range (dynamic neighbours), installing up to MaximumPaths equal routes as one
// multipath kernel route through zebra.
type FRRConfig struct {
	ASN         uint32       // default 65000
	RouterID    netip.Addr   // default the host's address
	ListenRange netip.Prefix // default the lab's subnet
	// ListenRange6, when set, also accepts IPv6 sessions from it (peer group nodes6), for IPv6
	// unicast routes.
	ListenRange6 netip.Prefix
	NodeASN      uint32 // remote-as of the listen range; default 65010
	MaximumPaths int    // default 8
	// Keepalive and Hold are the router's BGP timers (the lower hold time of both sides wins);
	// default 1s and 3s.
	Keepalive, Hold time.Duration
	// Password, when set, is the TCP MD5 signature (RFC 2385) the nodes' sessions must carry.
	Password string
	Extra    string // appended to the `router bgp` block verbatim
}

func (c FRRConfig) withDefaults(h *Host) FRRConfig {
	if c.ASN == 0 {
		c.ASN = 65000
	}
	if !c.RouterID.IsValid() {
		c.RouterID = h.IP()
	}
	if !c.ListenRange.IsValid() {
		c.ListenRange = h.lab.subnet
	}
	if c.NodeASN == 0 {
		c.NodeASN = 65010
	}
	if c.MaximumPaths == 0 {
		c.MaximumPaths = 8
	}
	if c.Keepalive == 0 {
		c.Keepalive = time.Second
	}
	if c.Hold == 0 {
		c.Hold = 3 * time.Second
	}
	return c
}

// Render returns bgpd's configuration.
func (c FRRConfig) Render() string {
	password := ""
	if c.Password != "" {
		password = " neighbor nodes password " + c.Password + "\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, `frr defaults traditional
hostname router
log stdout informational
!
router bgp %d
 bgp router-id %s
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 timers bgp %d %d
 neighbor nodes peer-group
 neighbor nodes remote-as %d
 bgp listen range %s peer-group nodes
%s address-family ipv4 unicast
  neighbor nodes activate
  maximum-paths %d
 exit-address-family
`, c.ASN, c.RouterID, int(c.Keepalive/time.Second), int(c.Hold/time.Second), c.NodeASN, c.ListenRange, password, c.MaximumPaths)
	if c.ListenRange6.IsValid() {
		fmt.Fprintf(&b, ` neighbor nodes6 peer-group
 neighbor nodes6 remote-as %d
%s bgp listen range %s peer-group nodes6
 address-family ipv6 unicast
  neighbor nodes6 activate
  maximum-paths %d
 exit-address-family
`, c.NodeASN, strings.ReplaceAll(password, "nodes ", "nodes6 "), c.ListenRange6, c.MaximumPaths)
	}
	if c.Extra != "" {
		b.WriteString(c.Extra + "\n")
	}
	b.WriteString("!\n")
	return b.String()
}

// FRR is zebra and bgpd running in a host, with pid files, vty sockets and the zebra API socket in
// a directory of their own: nothing touches /run/frr or the machine's own FRR, if any.
type FRR struct {
	Zebra, BGPd *Proc
	// StateDir holds the sockets and pid files; FRR drops to the frr user, which owns it.
	StateDir string
	host     *Host
}

// StartFRR starts zebra, waits for its API socket, then bgpd. The host forwards IPv4, sends no
// ICMP redirects (a client on the same switch must keep going through the router, not be told
// to go to a node directly) and hashes multipath routes on ports as well as addresses, so that
// one client's connections spread over the nodes.
func (h *Host) StartFRR(ctx context.Context, cfg FRRConfig) (*FRR, error) {
	cfg = cfg.withDefaults(h)
	if _, err := os.Stat(filepath.Join(FRRDir, "bgpd")); err != nil {
		return nil, fmt.Errorf("%s: FRR not installed (apt-get install frr): %w", h.Name, err)
	}
	if _, err := h.Run(ctx, "sysctl", "-q", "-w",
		"net.ipv4.ip_forward=1", "net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.default.send_redirects=0",
		"net.ipv4.conf."+HostInterface+".send_redirects=0", "net.ipv4.fib_multipath_hash_policy=1",
		"net.ipv6.conf.all.forwarding=1", "net.ipv6.fib_multipath_hash_policy=1"); err != nil {
		return nil, err
	}
	frrUser, err := user.Lookup("frr")
	if err != nil {
		return nil, fmt.Errorf("%s: FRR's user: %w", h.Name, err)
	}
	uid, _ := strconv.Atoi(frrUser.Uid)
	gid, _ := strconv.Atoi(frrUser.Gid)
	// Outside the lab's directory, whose test temp parents the frr user cannot enter.
	state, err := os.MkdirTemp("", h.lab.prefix+"-frr-")
	if err != nil {
		return nil, fmt.Errorf("%s: FRR state dir: %w", h.Name, err)
	}
	h.lab.onClose(func() error { return os.RemoveAll(state) })
	if err := os.Chown(state, uid, gid); err != nil {
		return nil, fmt.Errorf("%s: FRR state dir: %w", h.Name, err)
	}
	dir := filepath.Join(h.Dir(), "frr")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%s: %w", h.Name, err)
	}
	zconf, bconf := filepath.Join(state, "zebra.conf"), filepath.Join(state, "bgpd.conf")
	if err := os.WriteFile(zconf, []byte("hostname router\nlog stdout informational\n"), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(bconf, []byte(cfg.Render()), 0o644); err != nil {
		return nil, err
	}
	common := func(daemon string) []string {
		return []string{"-f", filepath.Join(state, daemon+".conf"), "-i", filepath.Join(state, daemon+".pid"),
			"-z", filepath.Join(state, "zserv.api"), "--vty_socket", state, "-P", "0", "-u", "frr", "-g", "frr", "--log", "stdout"}
	}
	f := &FRR{StateDir: state, host: h}
	f.Zebra, err = h.StartWith(ctx, ProcOptions{LogPath: filepath.Join(dir, "zebra.log"), Dir: dir},
		filepath.Join(FRRDir, "zebra"), common("zebra")...)
	if err != nil {
		return nil, err
	}
	if err := WaitFor(ctx, 10*time.Second, func() (bool, error) {
		_, err := os.Stat(filepath.Join(state, "zserv.api"))
		return err == nil, nil
	}); err != nil {
		return nil, fmt.Errorf("%s: zebra's API socket: %w\n%s", h.Name, err, f.Zebra.Output())
	}
	f.BGPd, err = h.StartWith(ctx, ProcOptions{LogPath: filepath.Join(dir, "bgpd.log"), Dir: dir},
		filepath.Join(FRRDir, "bgpd"), common("bgpd")...)
	if err != nil {
		return nil, err
	}
	if _, err := f.BGPd.WaitForLine(ctx, regexp.MustCompile(`bgpd \S+ starting`)); err != nil {
		return nil, fmt.Errorf("%s: bgpd did not start: %w\n%s", h.Name, err, f.BGPd.Output())
	}
	return f, nil
}

// Vtysh runs one vtysh command against this FRR's daemons.
func (f *FRR) Vtysh(ctx context.Context, command string) (string, error) {
	return f.host.Run(ctx, "vtysh", "--vty_socket", f.StateDir, "-c", command)
}

// Nexthops returns the gateways of the host's kernel route to dst (exact prefix), one per path of
// a multipath route; none when there is no such route.
func (h *Host) Nexthops(dst netip.Prefix) ([]netip.Addr, error) {
	var routes []netlink.Route
	family := netlink.FAMILY_V4
	if dst.Addr().Is6() {
		family = netlink.FAMILY_V6
	}
	err := h.netlinkDo(func(nl *netlink.Handle) error {
		var err error
		routes, err = nl.RouteListFiltered(family, &netlink.Route{
			Dst: &net.IPNet{IP: dst.Addr().AsSlice(), Mask: net.CIDRMask(dst.Bits(), dst.Addr().BitLen())},
		}, netlink.RT_FILTER_DST)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: routes to %s: %w", h.Name, dst, err)
	}
	var out []netip.Addr
	for _, r := range routes {
		if r.Gw != nil {
			a, _ := netip.AddrFromSlice(r.Gw)
			out = append(out, a.Unmap())
		}
		for _, p := range r.MultiPath {
			a, _ := netip.AddrFromSlice(p.Gw)
			out = append(out, a.Unmap())
		}
	}
	return out, nil
}
