package checks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// InterfaceProbe succeeds while a network interface is up: administratively up
// and with its operational state UP, or, for drivers that do not report an
// operational state (loopback, dummy, some tunnels: state UNKNOWN), with carrier
// (IFF_LOWER_UP). It is also a Watcher: a netlink link subscription makes the
// Runner probe at once on every change of the interface, so the interval is only
// a fallback.
type InterfaceProbe struct {
	name string
	ns   *netns.NsHandle // nil: the current network namespace
}

// NewInterfaceProbe watches the named interface in hapair's own network namespace.
// A name that no interface has makes every probe fail with "not found".
func NewInterfaceProbe(name string) *InterfaceProbe {
	return &InterfaceProbe{name: name}
}

// NewInterfaceProbeAt watches an interface in another network namespace (labs and
// tests); the caller keeps ns open while the probe is in use.
func NewInterfaceProbeAt(name string, ns netns.NsHandle) *InterfaceProbe {
	return &InterfaceProbe{name: name, ns: &ns}
}

// Probe reads the link state once.
func (p *InterfaceProbe) Probe(ctx context.Context) Result {
	start := time.Now()
	ok, out := p.state()
	return Result{OK: ok, Output: out, At: start, Duration: time.Since(start)}
}

func (p *InterfaceProbe) state() (bool, string) {
	h, err := p.handle()
	if err != nil {
		return false, fmt.Sprintf("interface %s: %v", p.name, err)
	}
	defer h.Close()
	link, err := h.LinkByName(p.name)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return false, fmt.Sprintf("interface %s not found", p.name)
	}
	if err != nil {
		return false, fmt.Sprintf("interface %s: %v", p.name, err)
	}
	return linkUp(link.Attrs())
}

func (p *InterfaceProbe) handle() (*netlink.Handle, error) {
	if p.ns == nil {
		return netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	return netlink.NewHandleAt(*p.ns, unix.NETLINK_ROUTE)
}

// linkUp decides from the kernel's view of a link. keepalived's track_interface
// looks at IFF_UP and IFF_RUNNING; the operational state says the same more
// precisely (a veth whose peer is down reads LOWERLAYERDOWN, a cable pulled DOWN).
func linkUp(a *netlink.LinkAttrs) (bool, string) {
	if a.Flags&net.FlagUp == 0 {
		return false, fmt.Sprintf("interface %s is administratively down", a.Name)
	}
	switch a.OperState {
	case netlink.OperUp:
		return true, fmt.Sprintf("interface %s is up", a.Name)
	case netlink.OperUnknown:
		if a.RawFlags&unix.IFF_LOWER_UP != 0 {
			return true, fmt.Sprintf("interface %s is up (carrier, state unknown)", a.Name)
		}
		return false, fmt.Sprintf("interface %s has no carrier", a.Name)
	}
	return false, fmt.Sprintf("interface %s is %s", a.Name, a.OperState)
}

// Watch subscribes to link changes and calls changed for every update about this
// interface (by name, so that a link deleted and created again is followed).
func (p *InterfaceProbe) Watch(ctx context.Context, changed func()) error {
	err := watchLinks(ctx, p.ns, 64, func() error { return nil }, func(u netlink.LinkUpdate) {
		if u.Link.Attrs().Name == p.name {
			changed()
		}
	})
	if err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	return nil
}

var _ Watcher = (*InterfaceProbe)(nil)
