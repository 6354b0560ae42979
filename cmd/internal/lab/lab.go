// Package lab builds a throw-away network of Linux network namespaces on this
// machine: a "switch" namespace holding a bridge, and host namespaces joined to
// it by veth pairs. End-to-end tests, the failover benchmark and `hapair demo`
// run real hapair, keepalived and HAProxy processes inside it.
//
// Nothing is created in the machine's own (root) network namespace: the veth
// pairs are made inside the host namespaces and their peers moved straight into
// the switch namespace. Every namespace name carries a random part, and a marker
// file under MarkerDir records the creating process so that CleanupStale can
// remove what a crashed run left behind.
//
// The lab needs root and the iproute2 and nftables commands.
package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// MarkerDir holds one "<namespace>.pid" file per namespace the lab created; it
// names the creating process (pid and start time) for CleanupStale.
const MarkerDir = "/run/hapair-lab"

// BridgeName is the bridge inside the switch namespace.
const BridgeName = "br0"

// HostInterface is the name of every host's interface towards the switch.
const HostInterface = "eth0"

// DefaultSubnet is the address range hosts use unless Options.Subnet says
// otherwise. It only exists inside the lab's namespaces, so it may overlap with
// anything on the machine's own network; it matches the seed guide.
var DefaultSubnet = netip.MustParsePrefix("10.0.0.0/24")

// Options configure a Lab. The zero value is usable.
type Options struct {
	// Prefix goes into every namespace name: "hp" + Prefix + 6 random hex
	// digits, then "-sw" or "-<host>". The random part keeps two labs apart;
	// the "hp" start is what CleanupStale looks for.
	Prefix string
	// Subnet is the range host addresses come from (see Lab.Addr).
	Subnet netip.Prefix
	// Dir holds configuration files and logs of processes started through
	// the lab. Default: a new temporary directory, removed by Close unless
	// KeepDir is set. A given Dir is never removed.
	Dir     string
	KeepDir bool
	// Log receives one line per namespace created or removed; default: discard.
	Log *slog.Logger
}

// Lab is one switch with the hosts attached to it. Its methods are safe for
// concurrent use.
type Lab struct {
	prefix  string
	subnet  netip.Prefix
	dir     string
	ownsDir bool
	log     *slog.Logger
	sw      string // switch namespace

	mu       sync.Mutex
	hosts    []*Host
	procs    []*Proc
	clients  []*Client
	cleanups []func() error // run by Close once every process has exited
	closed   bool
	closeMu  sync.Mutex // serialises Close
	done     bool
}

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9_]{0,31}$`)

// New creates the switch namespace with its bridge. It first removes what
// earlier runs of dead processes left behind (CleanupStale).
func New(ctx context.Context, opts Options) (*Lab, error) {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("lab: network namespaces need root")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("lab: %s not found (apt-get install iproute2 nftables): %w", tool, err)
		}
	}
	if removed, err := cleanupStale(ctx); err != nil {
		log.Warn("lab: cleaning up stale namespaces", "err", err)
	} else if len(removed) > 0 {
		log.Info("lab: removed stale namespaces", "namespaces", removed)
	}

	prefix := opts.Prefix
	if prefix != "" && !validName.MatchString(prefix) {
		return nil, fmt.Errorf("lab: prefix %q: want lower-case letters, digits and _", prefix)
	}
	prefix = "hp" + prefix + randomHex(3)
	subnet := opts.Subnet
	if !subnet.IsValid() {
		subnet = DefaultSubnet
	}
	l := &Lab{prefix: prefix, subnet: subnet.Masked(), log: log, sw: prefix + "-sw"}

	if opts.Dir != "" {
		if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("lab: create dir: %w", err)
		}
		l.dir = opts.Dir
	} else {
		d, err := os.MkdirTemp("", prefix+"-")
		if err != nil {
			return nil, fmt.Errorf("lab: create dir: %w", err)
		}
		l.dir, l.ownsDir = d, !opts.KeepDir
	}

	if err := l.addNamespace(ctx, l.sw); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	steps := [][]string{
		{"-n", l.sw, "link", "set", "lo", "up"},
		// No STP and no forwarding delay: ports forward the moment they are
		// up. No multicast snooping: VRRP's 224.0.0.18 and ff02::12 must reach
		// every port whether or not anybody sent an IGMP/MLD report.
		{"-n", l.sw, "link", "add", BridgeName, "type", "bridge",
			"stp_state", "0", "forward_delay", "0", "mcast_snooping", "0"},
		{"-n", l.sw, "link", "set", BridgeName, "up"},
	}
	for _, args := range steps {
		if err := runIP(ctx, args...); err != nil {
			return nil, errors.Join(err, l.Close())
		}
	}
	log.Info("lab: switch ready", "namespace", l.sw, "bridge", BridgeName, "dir", l.dir)
	return l, nil
}

// Prefix is the common start of the lab's namespace names.
func (l *Lab) Prefix() string { return l.prefix }

// Switch is the name of the switch namespace.
func (l *Lab) Switch() string { return l.sw }

// Subnet is the lab's address range.
func (l *Lab) Subnet() netip.Prefix { return l.subnet }

// Dir is the lab's directory for configuration files and logs.
func (l *Lab) Dir() string { return l.dir }

// Addr returns the n-th address of the lab's subnet with its prefix length,
// e.g. Addr(11) = 10.0.0.11/24 for the default subnet.
func (l *Lab) Addr(n int) netip.Prefix {
	a := l.subnet.Addr()
	for range n {
		a = a.Next()
	}
	return netip.PrefixFrom(a, l.subnet.Bits())
}

// Namespaces lists the namespaces the lab created and has not yet removed.
func (l *Lab) Namespaces() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	names := []string{l.sw}
	for _, h := range l.hosts {
		names = append(names, h.NS)
	}
	return names
}

// Hosts returns the hosts in the order they were added.
func (l *Lab) Hosts() []*Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.hosts)
}

// Host returns the host called name, or nil.
func (l *Lab) Host(name string) *Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, h := range l.hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// AddHost creates namespace "<prefix>-<name>" with loopback up and an
// interface "eth0" holding addr, whose veth peer is a port of the switch's
// bridge. IPv6 duplicate address detection is off in the host so that
// link-local and added IPv6 addresses are usable at once.
func (l *Lab) AddHost(name string, addr netip.Prefix) (*Host, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !validName.MatchString(name) || name == "sw" {
		return nil, fmt.Errorf("lab: host name %q: want 1-32 lower-case letters, digits and _ (not \"sw\")", name)
	}
	if !addr.IsValid() {
		return nil, fmt.Errorf("lab: host %s: invalid address", name)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errors.New("lab: closed")
	}
	for _, h := range l.hosts {
		if h.Name == name {
			l.mu.Unlock()
			return nil, fmt.Errorf("lab: host %s exists", name)
		}
	}
	// The switch-side port name only has to be unique inside the switch
	// namespace; the index keeps it unique when long names are cut to
	// the 15 characters an interface name may have.
	port := fmt.Sprintf("p%d-%s", len(l.hosts), name)
	if len(port) > 15 {
		port = port[:15]
	}
	h := &Host{Name: name, NS: l.prefix + "-" + name, Addr: addr, lab: l, port: port}
	l.hosts = append(l.hosts, h) // reserve the name; Close removes the namespace even if setup fails below
	l.mu.Unlock()

	if err := l.addNamespace(ctx, h.NS); err != nil {
		return nil, err
	}
	if err := runCmd(ctx, "ip", "netns", "exec", h.NS, "sysctl", "-q", "-w",
		"net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"); err != nil {
		return nil, fmt.Errorf("lab: host %s: %w", name, err)
	}
	steps := [][]string{
		{"-n", h.NS, "link", "set", "lo", "up"},
		{"-n", h.NS, "link", "add", HostInterface, "type", "veth", "peer", "name", port, "netns", l.sw},
		{"-n", l.sw, "link", "set", port, "master", BridgeName},
		{"-n", l.sw, "link", "set", port, "up"},
		{"-n", h.NS, "addr", "add", addr.String(), "dev", HostInterface},
		{"-n", h.NS, "link", "set", HostInterface, "up"},
	}
	for _, args := range steps {
		if err := runIP(ctx, args...); err != nil {
			return nil, fmt.Errorf("lab: host %s: %w", name, err)
		}
	}
	if err := h.open(); err != nil {
		return nil, fmt.Errorf("lab: host %s: %w", name, err)
	}
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed { // Close ran meanwhile and may have missed the namespace
		h.close()
		return nil, errors.Join(errors.New("lab: closed"), removeNamespace(ctx, h.NS))
	}
	l.log.Info("lab: host ready", "host", name, "namespace", h.NS, "addr", addr, "mac", h.MAC().String())
	return h, nil
}

// WaitFor polls cond every 10 ms until it reports true, the timeout passes or
// ctx ends. The error then names the last error cond returned, if any.
func (l *Lab) WaitFor(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	return WaitFor(ctx, timeout, cond)
}

// WaitFor polls cond every 10 ms until it reports true, the timeout passes or
// ctx ends. The error then names the last error cond returned, if any.
func WaitFor(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		ok, err := cond()
		if err == nil && ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("lab: condition not met within %v: %w (last error: %w)", timeout, ctx.Err(), last)
			}
			return fmt.Errorf("lab: condition not met within %v: %w", timeout, ctx.Err())
		case <-tick.C:
		}
	}
}

// Close stops every process and client started through the lab, removes all
// of its namespaces and checks that they are gone. It is idempotent; later
// calls return nil.
func (l *Lab) Close() error {
	l.closeMu.Lock()
	defer l.closeMu.Unlock()
	if l.done {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	l.mu.Lock()
	l.closed = true
	hosts, procs, clients := slices.Clone(l.hosts), slices.Clone(l.procs), slices.Clone(l.clients)
	cleanups := slices.Clone(l.cleanups)
	l.mu.Unlock()

	var errs []error
	for _, c := range clients {
		c.Stop()
	}
	for _, p := range procs {
		p.killGroup()
	}
	names := []string{}
	for _, h := range hosts {
		h.close()
		names = append(names, h.NS)
	}
	names = append(names, l.sw)
	for _, ns := range names {
		if err := removeNamespace(ctx, ns); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("lab: %s did not exit", p))
		}
	}
	for _, f := range cleanups {
		if err := f(); err != nil {
			errs = append(errs, fmt.Errorf("lab: %w", err))
		}
	}
	left, err := listNamespaces(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	for _, ns := range names {
		if slices.Contains(left, ns) {
			errs = append(errs, fmt.Errorf("lab: namespace %s still present after delete", ns))
		}
	}
	if l.ownsDir {
		if err := os.RemoveAll(l.dir); err != nil {
			errs = append(errs, fmt.Errorf("lab: remove %s: %w", l.dir, err))
		}
	}
	l.done = true
	l.log.Info("lab: removed", "namespaces", names)
	return errors.Join(errs...)
}

// track and trackClient register a process or a client for Close to stop; a closed lab refuses.
func (l *Lab) track(p *Proc) error { return trackOpen(l, &l.procs, p) }

func (l *Lab) trackClient(c *Client) error { return trackOpen(l, &l.clients, c) }

// trackOpen appends x to *list under the lab's lock unless the lab is closed.
func trackOpen[T any](l *Lab, list *[]T, x T) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("lab: closed")
	}
	*list = append(*list, x)
	return nil
}

// onClose registers f to run when the lab closes, after its processes have exited (such as
// removing a directory a process kept its sockets in). Registered after Close, f runs never.
func (l *Lab) onClose(f func() error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cleanups = append(l.cleanups, f)
}

// addNamespace writes the marker first, so that a crash between the two
// steps still leaves something for CleanupStale to find.
func (l *Lab) addNamespace(ctx context.Context, ns string) error {
	if err := writeMarker(ns); err != nil {
		return err
	}
	if err := runCmd(ctx, "ip", "netns", "add", ns); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	l.log.Debug("lab: namespace added", "namespace", ns)
	return nil
}

// removeNamespace kills whatever still runs in ns, deletes it and its marker.
// A namespace that does not exist (any more) is not an error.
func removeNamespace(ctx context.Context, ns string) error {
	names, err := listNamespaces(ctx)
	if err != nil {
		return err
	}
	if slices.Contains(names, ns) {
		err := killNamespace(ctx, ns)
		if err == nil {
			err = runCmd(ctx, "ip", "netns", "delete", ns)
		}
		if err != nil {
			// Somebody else (a CleanupStale elsewhere) may have deleted it
			// meanwhile: only a namespace still there is a failure.
			if names, lerr := listNamespaces(ctx); lerr != nil || slices.Contains(names, ns) {
				return fmt.Errorf("lab: remove namespace %s: %w", ns, err)
			}
		}
	}
	if err := os.Remove(markerPath(ns)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("lab: remove marker of %s: %w", ns, err)
	}
	return nil
}

// listNamespaces returns the names `ip netns list` shows.
func listNamespaces(ctx context.Context) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("lab: ip netns list: %w", err)
	}
	var names []string
	for line := range strings.Lines(string(out)) {
		// "name (id: 3)" or just "name"
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names, nil
}

func runIP(ctx context.Context, args ...string) error {
	if err := runCmd(ctx, "ip", args...); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}

// runCmd runs a command in the caller's namespace and folds its output into
// the error.
func runCmd(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails: crypto/rand crashes the program instead
	return hex.EncodeToString(b)
}

func markerPath(ns string) string { return filepath.Join(MarkerDir, ns+".pid") }
