package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/hapair/hapair/internal/nldump"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/hapair/hapair/internal/spawn"
)

// Host is one network namespace attached to the lab's switch.
type Host struct {
	Name string       // as given to AddHost
	NS   string       // network namespace name, for `ip netns exec`
	Addr netip.Prefix // primary address on eth0

	lab  *Lab
	port string // veth peer in the switch namespace

	mu  sync.Mutex // guards the netlink handle, whose sockets are not shared safely
	nsh netns.NsHandle
	nl  *netlink.Handle
	mac net.HardwareAddr
}

func (h *Host) String() string { return h.Name }

// IP is the host's primary address without prefix length.
func (h *Host) IP() netip.Addr { return h.Addr.Addr() }

// Interface is the host's interface towards the switch ("eth0").
func (h *Host) Interface() string { return HostInterface }

// Dir is the host's directory under the lab's directory (created on demand
// by the Start helpers).
func (h *Host) Dir() string { return filepath.Join(h.lab.dir, h.Name) }

// MAC is the hardware address of the host's eth0.
func (h *Host) MAC() net.HardwareAddr { return h.mac }

func (h *Host) open() error {
	nsh, err := netns.GetFromName(h.NS)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", h.NS, err)
	}
	nl, err := netlink.NewHandleAt(nsh, unix.NETLINK_ROUTE)
	if err != nil {
		nsh.Close()
		return fmt.Errorf("netlink in %s: %w", h.NS, err)
	}
	link, err := nl.LinkByName(HostInterface)
	if err != nil {
		nl.Close()
		nsh.Close()
		return fmt.Errorf("%s in %s: %w", HostInterface, h.NS, err)
	}
	h.mu.Lock()
	h.nsh, h.nl, h.mac = nsh, nl, link.Attrs().HardwareAddr
	h.mu.Unlock()
	return nil
}

func (h *Host) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.nl != nil {
		h.nl.Close()
		h.nl = nil
	}
	if h.nsh.IsOpen() {
		h.nsh.Close()
		h.nsh = netns.None()
	}
}

// netlinkDo runs f with the host's netlink handle, retrying dumps the kernel
// interrupted because the table changed meanwhile.
func (h *Host) netlinkDo(f func(*netlink.Handle) error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.nl == nil {
		return fmt.Errorf("host %s: closed", h.Name)
	}
	_, err := nldump.Retry(func() (struct{}, error) { return struct{}{}, f(h.nl) })
	return err
}

// Command prepares name with args to run inside the host's namespace, via
// `ip netns exec`, in a process group of its own and with SIGKILL for the
// whole group when ctx ends or this process dies. The environment is this
// process's minus systemd's notify and watchdog variables, so that a child
// never talks to the service manager of whatever runs the lab. Lab.Close
// kills anything still running in the namespace.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return killGroup(cmd.Process.Pid) }
	cmd.WaitDelay = 2 * time.Second
	cmd.Env = spawn.Env(os.Environ())
	return cmd
}

// Run runs name inside the namespace and returns its combined output; the
// error carries the output too.
func (h *Host) Run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := h.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %s %s: %w: %s", h.Name, name, strings.Join(args, " "), err,
			strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Addrs lists the addresses on the host's eth0 (IPv4 and IPv6).
func (h *Host) Addrs() ([]netip.Prefix, error) {
	var out []netip.Prefix
	err := h.netlinkDo(func(nl *netlink.Handle) error {
		link, err := nl.LinkByName(HostInterface)
		if err != nil {
			return err
		}
		addrs, err := nl.AddrList(link, netlink.FAMILY_ALL)
		if err != nil {
			return err
		}
		out = out[:0]
		for _, a := range addrs {
			if p, ok := prefixOf(a.IPNet); ok {
				out = append(out, p)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: list addresses: %w", h.Name, err)
	}
	return out, nil
}

// HasAddr tells whether ip is on the host's eth0, as the kernel sees it.
func (h *Host) HasAddr(ip netip.Addr) (bool, error) {
	addrs, err := h.Addrs()
	if err != nil {
		return false, err
	}
	for _, p := range addrs {
		if p.Addr() == ip.Unmap() {
			return true, nil
		}
	}
	return false, nil
}

// HasAddrOn reports whether ip is one of the addresses of the host's interface ifname (such as
// "lo", where an anycast node puts its service address).
func (h *Host) HasAddrOn(ifname string, ip netip.Addr) (bool, error) {
	var found bool
	err := h.netlinkDo(func(nl *netlink.Handle) error {
		link, err := nl.LinkByName(ifname)
		if err != nil {
			return err
		}
		addrs, err := nl.AddrList(link, netlink.FAMILY_ALL)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if p, ok := prefixOf(a.IPNet); ok && p.Addr() == ip {
				found = true
			}
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("%s: addresses of %s: %w", h.Name, ifname, err)
	}
	return found, nil
}

// AddAddr adds another address to eth0 (IPv6 without duplicate address
// detection, so it is usable at once).
func (h *Host) AddAddr(p netip.Prefix) error {
	err := h.netlinkDo(func(nl *netlink.Handle) error {
		link, err := nl.LinkByName(HostInterface)
		if err != nil {
			return err
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		if p.Addr().Is6() {
			a.Flags = unix.IFA_F_NODAD
		}
		return nl.AddrAdd(link, a)
	})
	if err != nil {
		return fmt.Errorf("%s: add %s: %w", h.Name, p, err)
	}
	return nil
}

// LinkLocal returns the IPv6 link-local address of eth0.
func (h *Host) LinkLocal() (netip.Addr, error) {
	addrs, err := h.Addrs()
	if err != nil {
		return netip.Addr{}, err
	}
	for _, p := range addrs {
		if p.Addr().Is6() && p.Addr().IsLinkLocalUnicast() {
			return p.Addr(), nil
		}
	}
	return netip.Addr{}, fmt.Errorf("%s: no IPv6 link-local address on %s", h.Name, HostInterface)
}

// Neighbor returns the hardware address the host's neighbour table holds
// for ip, in any state but FAILED and INCOMPLETE; an error if there is none.
func (h *Host) Neighbor(ip netip.Addr) (net.HardwareAddr, error) {
	family := netlink.FAMILY_V4
	if ip.Is6() && !ip.Is4In6() {
		family = netlink.FAMILY_V6
	}
	var mac net.HardwareAddr
	err := h.netlinkDo(func(nl *netlink.Handle) error {
		neighs, err := nl.NeighList(0, family)
		if err != nil {
			return err
		}
		mac = nil
		for _, n := range neighs {
			a, ok := netip.AddrFromSlice(n.IP)
			if !ok || a.Unmap() != ip.Unmap() || len(n.HardwareAddr) == 0 {
				continue
			}
			if n.State&(netlink.NUD_FAILED|netlink.NUD_INCOMPLETE) != 0 {
				continue
			}
			mac = n.HardwareAddr
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: neighbours: %w", h.Name, err)
	}
	if mac == nil {
		return nil, fmt.Errorf("%s: no neighbour entry for %s", h.Name, ip)
	}
	return mac, nil
}

// FlushNeighbors empties the host's neighbour table, e.g. to see which MAC a
// client learns afresh after a failover.
func (h *Host) FlushNeighbors(ctx context.Context) error {
	return runIP(ctx, "-n", h.NS, "neigh", "flush", "all")
}

// SetLink sets eth0 administratively up or down (the host sees its link go
// away, unlike Isolate).
func (h *Host) SetLink(ctx context.Context, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	return runIP(ctx, "-n", h.NS, "link", "set", HostInterface, state)
}

// RecreateLink deletes the host's eth0, waits gone, and creates it again as it was: same name,
// MAC address, switch port and address, up. To the host it is a new interface (a new index), as
// when ifupdown or networkd tear an interface down and bring it back (a VLAN, a bond).
func (h *Host) RecreateLink(ctx context.Context, gone time.Duration) error {
	return h.RecreateLinkAs(ctx, gone, h.Addr)
}

// RecreateLinkAs is RecreateLink with another address on the new eth0 (Host.Addr and IP still
// name the first one).
func (h *Host) RecreateLinkAs(ctx context.Context, gone time.Duration, addr netip.Prefix) error {
	if err := runIP(ctx, "-n", h.NS, "link", "del", HostInterface); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(gone):
	}
	steps := [][]string{
		{"-n", h.NS, "link", "add", HostInterface, "address", h.mac.String(), "type", "veth", "peer", "name", h.port, "netns", h.lab.sw},
		{"-n", h.lab.sw, "link", "set", h.port, "master", BridgeName},
		{"-n", h.lab.sw, "link", "set", h.port, "up"},
		{"-n", h.NS, "addr", "add", addr.String(), "dev", HostInterface},
		{"-n", h.NS, "link", "set", HostInterface, "up"},
	}
	for _, args := range steps {
		if err := runIP(ctx, args...); err != nil {
			return fmt.Errorf("lab: host %s: recreate %s: %w", h.Name, HostInterface, err)
		}
	}
	return nil
}

// SetCable connects or disconnects the switch side of the host's veth: the
// host sees its carrier go (NO-CARRIER) while eth0 stays administratively up.
func (h *Host) SetCable(ctx context.Context, connected bool) error {
	state := "down"
	if connected {
		state = "up"
	}
	return runIP(ctx, "-n", h.lab.sw, "link", "set", h.port, state)
}

// Do runs f on an OS thread that is inside the host's network namespace, so
// that sockets f opens belong to the host. f must not start goroutines that
// open sockets: they would run elsewhere.
func (h *Host) Do(f func() error) error {
	// A duplicate of the descriptor, so that Lab.Close closing the host's
	// own cannot pull it away (or recycle its number) under a running f.
	h.mu.Lock()
	var target netns.NsHandle = -1
	var err error
	if h.nsh.IsOpen() {
		var fd int
		fd, err = unix.Dup(int(h.nsh))
		target = netns.NsHandle(fd)
	}
	h.mu.Unlock()
	if err != nil {
		return fmt.Errorf("host %s: %w", h.Name, err)
	}
	if !target.IsOpen() {
		return fmt.Errorf("host %s: closed", h.Name)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter %s: %w", h.NS, err)
			return
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			// Stay locked: the runtime then ends this thread with the
			// goroutine instead of reusing a thread in the wrong namespace.
			errc <- errors.Join(ferr, fmt.Errorf("leave %s: %w", h.NS, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// DialContext dials from inside the host's namespace; it fits
// net/http.Transport.DialContext.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := h.Do(func() error {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		conn = c
		return err
	})
	return conn, err
}

// WaitTCP waits until a TCP connection from this host to addr ("ip:port")
// succeeds, e.g. until a server started in some host listens.
func (h *Host) WaitTCP(ctx context.Context, addr string, timeout time.Duration) error {
	err := WaitFor(ctx, timeout, func() (bool, error) {
		dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		c, err := h.DialContext(dctx, "tcp", addr)
		if err != nil {
			return false, err
		}
		return true, c.Close()
	})
	if err != nil {
		return fmt.Errorf("%s: connect to %s: %w", h.Name, addr, err)
	}
	return nil
}

func killGroup(pid int) error {
	if pid <= 0 {
		return nil
	}
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}
