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

	"github.com/hapair/hapair/internal/nldump"
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
	watch  *Watch // the namespace's addresses, shared with the daemon's other managers; nil: a dump per check
	dumps  int    // address dumps made (present), for tests
}

// UseWatch makes Missing and AllPresent answer from w, the addresses of the Manager's network
// namespace, without a syscall while all is well. Call it before the Manager is used.
func (m *Manager) UseWatch(w *Watch) { m.watch = w }

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
//
// It reads the addresses once, after adding, not before as well: adding one already there costs
// an EEXIST, and reading them costs a dump of every address on the link, which grows with the
// number of instances. At the start of 255 instances, each attaching its VIP to a link that
// holds the others', the reads before made half of the 2 x 255 dumps and their garbage.
func (m *Manager) Attach() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	link, err := m.link()
	if err != nil {
		return fmt.Errorf("attach VIPs to %s: %w", m.ifname, err)
	}
	var errs []error
	failed := make(map[netip.Prefix]bool)
	for _, p := range m.vips {
		err := netlink.AddrAdd(link, toNetlink(p))
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("attach %s to %s: %w", p, m.ifname, err))
			failed[p] = true
			continue
		}
		m.log.Debug("VIP added", "vip", p, "interface", m.ifname)
	}
	present, err := m.present(link)
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
// the caller reconciles with it: a VIP deleted by hand is put back with Attach. With a Watch
// that has them all it makes no syscall and does not allocate; otherwise (a VIP missing, the
// interface's index not known yet, notifications lost) it looks the link up and reads its
// addresses, so that it never reports a VIP missing on the Watch's word alone, which may lag
// a change just made, and the Watch learns the index of an interface made again.
func (m *Manager) Missing() ([]netip.Prefix, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if missing, known := m.watch.missingOf(m.ifname, m.vips); known && len(missing) == 0 {
		return nil, nil
	}
	_, present, err := m.state()
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

// AllPresent reports, from the Watch and without a syscall, that every VIP is on the interface
// and usable. False means missing or not known: Missing says which.
func (m *Manager) AllPresent() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	missing, known := m.watch.missingOf(m.ifname, m.vips)
	return known && len(missing) == 0
}

// state looks up the link and which of our VIPs it holds.
func (m *Manager) state() (netlink.Link, map[netip.Prefix]bool, error) {
	link, err := m.link()
	if err != nil {
		return nil, nil, err
	}
	present, err := m.present(link)
	return link, present, err
}

// link looks up the interface by name; the Watch learns its index.
func (m *Manager) link() (netlink.Link, error) {
	link, err := netlink.LinkByName(m.ifname)
	if err != nil {
		return nil, fmt.Errorf("look up link: %w", err)
	}
	m.watch.learn(m.ifname, link.Attrs().Index)
	return link, nil
}

// present reads the link's addresses and says which of our VIPs are there. Attach and Detach
// verify with it, never with the Watch, which may not have seen their change yet.
func (m *Manager) present(link netlink.Link) (map[netip.Prefix]bool, error) {
	m.dumps++
	addrs, err := nldump.Retry(func() ([]netlink.Addr, error) { return netlink.AddrList(link, netlink.FAMILY_ALL) })
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	present := make(map[netip.Prefix]bool, len(m.vips))
	for _, a := range addrs {
		if p, ok := fromNetlink(a); ok && slices.Contains(m.vips, p) {
			present[p] = usable(a.Flags)
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
