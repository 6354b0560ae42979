// Package vip puts virtual IP addresses on an interface and takes them off again through
// netlink, and announces them to the link with gratuitous ARP (RFC 5227 section 3, IPv4) and
// unsolicited neighbour advertisements (RFC 4861 section 7.2.6, IPv6), as a VRRP master must
// (RFC 5798 section 6.4.1).
//
// Every change is verified by reading the interface's addresses back: a VIP "added" that is
// not there, or "removed" that still is, is an error rather than a log line.
package vip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrNotVerified is wrapped by Attach and Detach when the addresses read back after the change
// do not show it.
var ErrNotVerified = errors.New("not verified by reading addresses back")

// Manager attaches and detaches one instance's VIPs on one interface. Its methods use netlink
// sockets opened per call in the calling thread's network namespace, so a Manager follows the
// interface through link re-creation (it looks the link up by name every time). It is safe for
// concurrent use; operations are serialised.
type Manager struct {
	ifname string
	vips   []netip.Prefix
	log    *slog.Logger
	mu     sync.Mutex
	dumps  *Dumps // shared with the daemon's other managers; nil: a dump per check
}

// ShareDumps makes Missing reuse address dumps shared with other managers (see Dumps). Call it
// before the Manager is used.
func (m *Manager) ShareDumps(d *Dumps) { m.dumps = d }

// NewManager checks the VIPs and returns a Manager for them. Each VIP keeps its configured
// prefix length (keepalived's behaviour: "10.0.0.10/24" is added as a /24, a bare address as
// /32 or /128 by the caller's config). A VIP is identified by address and prefix length, as
// the kernel does: 10.0.0.10/32 on the interface does not count as 10.0.0.10/24.
func NewManager(ifname string, vips []netip.Prefix, log *slog.Logger) (*Manager, error) {
	if ifname == "" {
		return nil, errors.New("new VIP manager: empty interface name")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{ifname: ifname, log: log}
	for _, p := range vips {
		if !p.IsValid() {
			return nil, fmt.Errorf("new VIP manager for %s: invalid VIP %v", ifname, p)
		}
		if a := p.Addr(); a.Is4In6() {
			// ::ffff:10.0.0.1/120 is 10.0.0.1/24.
			if p.Bits() < 96 {
				return nil, fmt.Errorf("new VIP manager for %s: invalid VIP %v", ifname, p)
			}
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		p = netip.PrefixFrom(p.Addr().WithZone(""), p.Bits())
		if p.Addr().IsMulticast() || p.Addr().IsUnspecified() || p.Addr().IsLoopback() {
			return nil, fmt.Errorf("new VIP manager for %s: %v cannot be a VIP", ifname, p)
		}
		if !slices.Contains(m.vips, p) {
			m.vips = append(m.vips, p)
		}
	}
	return m, nil
}

// VIPs returns the managed VIPs in configured order.
func (m *Manager) VIPs() []netip.Prefix { return slices.Clone(m.vips) }

// Attach adds the VIPs that are missing and verifies that all of them are present. A VIP
// already there (EEXIST) is fine. IPv6 VIPs are added with IFA_F_NODAD so that they are usable
// at once: duplicate address detection would hold them tentative for a second or more, and
// VRRP, not DAD, decides who owns a VIP.
func (m *Manager) Attach() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.dumps.forget(m.ifname)
	link, present, err := m.state()
	if err != nil {
		return fmt.Errorf("attach VIPs to %s: %w", m.ifname, err)
	}
	var errs []error
	tried := 0
	failed := make(map[netip.Prefix]bool)
	for _, p := range m.vips {
		if present[p] {
			continue
		}
		tried++
		if err := netlink.AddrAdd(link, toNetlink(p)); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("attach %s to %s: %w", p, m.ifname, err))
			failed[p] = true
			continue
		}
		m.log.Debug("VIP added", "vip", p, "interface", m.ifname)
	}
	if tried == 0 {
		return nil
	}
	present, err = m.present(link)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("verify VIPs on %s: %w", m.ifname, err))...)
	}
	for _, p := range m.vips {
		if !present[p] && !failed[p] {
			errs = append(errs, fmt.Errorf("attach %s to %s: %w", p, m.ifname, ErrNotVerified))
		}
	}
	return errors.Join(errs...)
}

// Detach removes the VIPs and verifies that none is left. A VIP already gone (ENOENT,
// EADDRNOTAVAIL) is fine.
func (m *Manager) Detach() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, err := m.detach("VIP removed", slog.LevelDebug)
	return err
}

// RemoveStale removes VIPs left on the interface by a previous run that ended without
// releasing them (a crash, SIGKILL), so that a backup does not answer for addresses it does
// not own. Run it once at start, before PrimaryAddr. Each VIP removed is logged.
func (m *Manager) RemoveStale() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, err := m.detach("removed stale VIP", slog.LevelInfo)
	return err
}

func (m *Manager) detach(msg string, level slog.Level) (int, error) {
	defer m.dumps.forget(m.ifname)
	link, present, err := m.state()
	if err != nil {
		if isNoLink(err) {
			return 0, nil // no interface, no VIPs on it
		}
		return 0, fmt.Errorf("detach VIPs from %s: %w", m.ifname, err)
	}
	var errs []error
	tried, removed := 0, 0
	failed := make(map[netip.Prefix]bool)
	for _, p := range m.vips {
		if !present[p] {
			continue
		}
		tried++
		err := netlink.AddrDel(link, toNetlink(p))
		if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("detach %s from %s: %w", p, m.ifname, err))
			failed[p] = true
			continue
		}
		removed++
		m.log.Log(context.Background(), level, msg, "vip", p, "interface", m.ifname)
	}
	if tried == 0 {
		return 0, nil
	}
	present, err = m.present(link)
	if err != nil {
		return removed, errors.Join(append(errs, fmt.Errorf("verify VIPs on %s: %w", m.ifname, err))...)
	}
	for _, p := range m.vips {
		if present[p] && !failed[p] {
			errs = append(errs, fmt.Errorf("detach %s from %s: %w", p, m.ifname, ErrNotVerified))
		}
	}
	return removed, errors.Join(errs...)
}

// Missing returns the VIPs that are not on the interface, in configured order. While master,
// the caller reconciles with it: a VIP deleted by hand is put back with Attach.
func (m *Manager) Missing() ([]netip.Prefix, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	lookup := func() (netlink.Link, error) {
		l, err := netlink.LinkByName(m.ifname)
		if err != nil {
			return nil, fmt.Errorf("look up link: %w", err)
		}
		return l, nil
	}
	present, err := m.presentIn(m.dumps, lookup)
	if err != nil {
		return nil, fmt.Errorf("check VIPs on %s: %w", m.ifname, err)
	}
	var missing []netip.Prefix
	for _, p := range m.vips {
		if !present[p] {
			missing = append(missing, p)
		}
	}
	return missing, nil
}

// state looks up the link and which of our VIPs it holds.
func (m *Manager) state() (netlink.Link, map[netip.Prefix]bool, error) {
	link, err := netlink.LinkByName(m.ifname)
	if err != nil {
		return nil, nil, fmt.Errorf("look up link: %w", err)
	}
	present, err := m.present(link)
	return link, present, err
}

// present reads the link's addresses and says which of our VIPs are there.
// present is presentIn with a dump of our own: Attach and Detach never trust a shared one,
// and a change they make voids it for the others.
func (m *Manager) present(link netlink.Link) (map[netip.Prefix]bool, error) {
	m.dumps.forget(m.ifname)
	return m.presentIn(nil, func() (netlink.Link, error) { return link, nil })
}

func (m *Manager) presentIn(dumps *Dumps, link func() (netlink.Link, error)) (map[netip.Prefix]bool, error) {
	all, err := dumps.present(m.ifname, link)
	if err != nil {
		return nil, err
	}
	present := make(map[netip.Prefix]bool, len(m.vips))
	for _, p := range m.vips {
		if usable, ok := all[p]; ok {
			present[p] = usable
		}
	}
	return present, nil
}

func isNoLink(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

func toNetlink(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{
		IP:   p.Addr().AsSlice(),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

func fromNetlink(a netlink.Addr) (netip.Prefix, bool) {
	if a.IPNet == nil {
		return netip.Prefix{}, false
	}
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := a.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), ones), true
}
