package config

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/hapair/hapair/internal/nldump"
	"golang.org/x/sys/unix"

	"github.com/hapair/hapair/vrrp"
)

// HostNetwork is what the checks against the live host read: each link's MTU and every address.
type HostNetwork interface {
	MTU(ifname string) (int, error)
	Addrs() ([]HostAddr, error)
}

// HostAddr is one address configured on the host.
type HostAddr struct {
	Interface string
	Prefix    netip.Prefix
	// Secondary (IFA_F_SECONDARY) marks an IPv4 address added in a subnet the link already had
	// one in: how a VIP sits beside the host's own address.
	Secondary bool
	// NoDAD (IFA_F_NODAD) marks an IPv6 address added without duplicate address detection:
	// hapair adds its IPv6 VIPs so, the host's own addresses are not.
	NoDAD bool
}

// WithHostNetwork replaces the live host (netlink) as the source of MTUs and addresses;
// SkipInterfaceCheck leaves the host out.
func WithHostNetwork(h HostNetwork) LoadOption {
	return func(o *options) { o.hostNetwork = h }
}

// liveHost reads the host through netlink.
type liveHost struct{}

func (liveHost) MTU(ifname string) (int, error) {
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return 0, err
	}
	return link.Attrs().MTU, nil
}

func (liveHost) Addrs() ([]HostAddr, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var out []HostAddr
	for _, l := range links {
		addrs, err := nldump.Retry(func() ([]netlink.Addr, error) { return netlink.AddrList(l, netlink.FAMILY_ALL) })
		if err != nil {
			return nil, fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err)
		}
		for _, a := range addrs {
			if a.IPNet == nil {
				continue
			}
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok {
				continue
			}
			ones, _ := a.Mask.Size()
			out = append(out, HostAddr{
				Interface: l.Attrs().Name,
				Prefix:    netip.PrefixFrom(ip.Unmap(), ones),
				Secondary: a.Flags&unix.IFA_F_SECONDARY != 0,
				NoDAD:     a.Flags&unix.IFA_F_NODAD != 0,
			})
		}
	}
	return out, nil
}

// validateHost checks the instances against the live host, before anything is touched: at
// `hapair check`, at start and on reload.
//
// A VIP must not be an address the host has of its own: hapair would remove it as a "stale VIP"
// at start (leaving the host without that address) or when it gives up the VIP. A VIP is taken
// for hapair's own (held now, or left by a crash) only when it sits where hapair puts its VIPs:
// on the instance's interface, with the configured prefix, and, for IPv4, not as the interface's
// primary address (hapair's VIPs join the subnet of the host's own address as secondaries; the
// primary is the address hapair sends its adverts from) and, for IPv6, added without duplicate
// address detection as hapair adds them.
//
// Every advert carries all of the instance's VIPs and is never fragmented: it must fit in the
// interface's MTU.
func (d *decoder) validateHost(cfg *Config, h HostNetwork) {
	addrs, err := h.Addrs()
	if err != nil {
		d.add(0, "", "reading this host's addresses: %v", err)
		return
	}
	for i := range cfg.Instances {
		in := &cfg.Instances[i]
		p := index("vrrp_instances", i)
		k := p + ".virtual_ipaddress"
		primary := primaryIPv4(addrs, in.Interface)
		for j, vip := range in.VIPs {
			line := d.lineOf(k)
			if j < len(d.vipLines[i]) {
				line = d.vipLines[i][j]
			}
			for _, a := range addrs {
				if a.Prefix.Addr() != vip.Addr() {
					continue
				}
				ours := a.Interface == in.Interface && a.Prefix == vip &&
					(vip.Addr().Is4() && a.Prefix.Addr() != primary || vip.Addr().Is6() && a.NoDAD)
				if !ours {
					d.add(line, k, "%s is this host's own address on %s (%s): a VIP moves between hosts and is removed when released", vip.Addr(), a.Interface, a.Prefix)
				}
				break
			}
		}
		if in.Interface == "" || len(in.VIPs) == 0 {
			continue
		}
		mtu, err := h.MTU(in.Interface)
		if err != nil {
			continue // a missing interface is reported by the interface check
		}
		if n := vrrp.AdvertPacketLen(in.Version, in.Family() == 6, len(in.VIPs)); n > mtu {
			d.add(d.lineOf(k), k, "%d addresses make a %d-byte advert, larger than the MTU of %s (%d): split them between instances",
				len(in.VIPs), n, in.Interface, mtu)
		}
	}
}

// primaryIPv4 is the first IPv4 address of ifname that is not a secondary: the one hapair sends
// from (transport.PrimaryAddr's rule).
func primaryIPv4(addrs []HostAddr, ifname string) netip.Addr {
	for _, a := range addrs {
		if a.Interface == ifname && a.Prefix.Addr().Is4() && !a.Secondary {
			return a.Prefix.Addr()
		}
	}
	return netip.Addr{}
}
