package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/hapair/hapair/internal/spawn"
	"github.com/hapair/hapair/vrrp"
)

var checkNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

func (d *decoder) validate(cfg *Config, o options) {
	if cfg.RouterID == "" && !d.isSet("router_id") && o.hostname != nil {
		if h, err := o.hostname(); err == nil {
			cfg.RouterID = h
		}
	}
	// Unset, it is the default or haproxy.runtime_dir, which is checked below.
	if d.isSet("runtime_dir") && !path.IsAbs(cfg.RuntimeDir) {
		d.add(d.lineOf("runtime_dir"), "runtime_dir", "%q is not an absolute path", cfg.RuntimeDir)
	}
	if cfg.HAProxy != nil {
		d.validateHAProxy(cfg.HAProxy)
	}
	if cfg.Notify.Timeout <= 0 {
		d.add(d.lineOf("notify.timeout"), "notify.timeout", "must be longer than 0")
	}
	if l := cfg.Status.Listen; l != "" {
		if err := validateHostPort(l); err != nil {
			d.add(d.lineOf("status.listen"), "status.listen", "%q: %v", l, err)
		}
	}
	if cfg.Status.DumpFile == "" {
		d.add(d.lineOf("status.dump_file"), "status.dump_file", "needs a file name")
	}
	checks := d.validateChecks(cfg, o)
	d.validateInstances(cfg, o, checks)
	d.validateDumpFile(cfg)
	if o.hostNetwork != nil {
		d.validateHost(cfg, o.hostNetwork)
	}
	if cfg.BGP != nil {
		d.validateBGP(cfg, o, checks)
	}
}

func (d *decoder) validateHAProxy(h *HAProxy) {
	if strings.TrimSpace(h.Command) == "" {
		d.add(d.lineOf("haproxy.command"), "haproxy.command", "needs the HAProxy program")
	}
	if strings.TrimSpace(h.Config) == "" {
		d.add(d.lineOf("haproxy.config"), "haproxy.config", "needs the HAProxy configuration file")
	}
	if !path.IsAbs(h.RuntimeDir) {
		d.add(d.lineOf("haproxy.runtime_dir"), "haproxy.runtime_dir", "%q is not an absolute path", h.RuntimeDir)
	}
	if h.StopGrace <= 0 {
		d.add(d.lineOf("haproxy.stop_grace"), "haproxy.stop_grace", "must be longer than 0")
	}
	b := h.RestartBackoff
	const bp = "haproxy.restart_backoff"
	if b.Initial <= 0 {
		d.add(d.lineOf(bp+".initial"), bp+".initial", "must be longer than 0")
	}
	if b.Max < b.Initial {
		d.add(d.lineOf(bp+".max"), bp+".max", "%v is shorter than initial (%v)", b.Max, b.Initial)
	}
}

// validateChecks validates checks and returns their weights by name.
func (d *decoder) validateChecks(cfg *Config, o options) map[string]int {
	weights := map[string]int{}
	firstLine := map[string]int{}
	for i := range cfg.Checks {
		c := &cfg.Checks[i]
		p := index("checks", i)
		switch {
		case !d.isSet(p + ".name"):
			d.add(d.lineOf(p), p, "name is required")
		case !checkNameRE.MatchString(c.Name):
			d.add(d.lineOf(p+".name"), p+".name", "%q may hold only letters, digits, _ . and -", c.Name)
		case c.Name == BuiltinHAProxyCheck:
			d.add(d.lineOf(p+".name"), p+".name", "%q is the built-in HAProxy liveness check: choose another name (it exists whenever the haproxy section does)", c.Name)
		default:
			if first, dup := firstLine[c.Name]; dup {
				d.add(d.lineOf(p+".name"), p+".name", "%q is already the name of the check at line %d", c.Name, first)
			} else {
				firstLine[c.Name] = d.lineOf(p + ".name")
				weights[c.Name] = c.Weight
			}
		}

		var kinds []string
		for _, k := range []struct {
			name string
			set  bool
		}{{"http", c.HTTP != nil}, {"script", c.Script != nil}, {"tcp", c.TCP != nil}, {"interface", c.Interface != nil}} {
			if k.set {
				kinds = append(kinds, k.name)
			}
		}
		switch len(kinds) {
		case 0:
			d.add(d.lineOf(p), p, "needs one probe: http, script, tcp or interface")
		case 1:
		default:
			last := 0 // the line of the probe written last, the one most likely added by mistake
			for _, k := range kinds {
				last = max(last, d.lineOf(p+"."+k))
			}
			d.add(last, p, "has %s: a check has exactly one probe", strings.Join(kinds, " and "))
		}

		if c.Interval < 10*time.Millisecond {
			d.add(d.lineOf(p+".interval"), p+".interval", "%v is shorter than 10ms", c.Interval)
		}
		if !d.isSet(p + ".timeout") {
			c.Timeout = min(DefaultCheckTimeout, c.Interval)
		} else if c.Timeout <= 0 {
			d.add(d.lineOf(p+".timeout"), p+".timeout", "must be longer than 0")
		} else if c.Timeout > c.Interval {
			d.warn(d.lineOf(p+".timeout"), p+".timeout", "%v is longer than the interval (%v): a probe still running when the next is due delays it", c.Timeout, c.Interval)
		}

		if h := c.HTTP; h != nil {
			d.validateHTTP(h, p+".http")
		}
		if s := c.Script; s != nil {
			sp := p + ".script"
			if strings.TrimSpace(s.Command) == "" {
				d.add(d.lineOf(sp+".command"), sp+".command", "needs the command to run")
			} else if _, err := spawn.Split(s.Command); err != nil {
				d.add(d.lineOf(sp+".command"), sp+".command", "%v", err)
			}
			if s.User == "" {
				s.User = cfg.Notify.User
			}
		}
		if t := c.TCP; t != nil {
			tp := p + ".tcp.address"
			if err := validateHostPort(t.Address); err != nil {
				d.add(d.lineOf(tp), tp, "%q: %v", t.Address, err)
			}
		}
		if ic := c.Interface; ic != nil {
			np := p + ".interface.name"
			if ic.Name == "" {
				d.add(d.lineOf(np), np, "needs the interface to follow")
			} else {
				d.interfaceExists(o, ic.Name, d.lineOf(np), np)
			}
		}
	}
	return weights
}

func (d *decoder) validateHTTP(h *HTTPCheck, p string) {
	u, err := url.Parse(h.URL)
	switch {
	case h.URL == "":
		d.add(d.lineOf(p+".url"), p+".url", "needs the URL to get")
	case err != nil:
		d.add(d.lineOf(p+".url"), p+".url", "%q is not a URL: %v", h.URL, errors.Unwrap(err))
	case u.Scheme != "http" && u.Scheme != "https":
		d.add(d.lineOf(p+".url"), p+".url", "%q: only http and https URLs can be checked", h.URL)
	case u.Host == "":
		d.add(d.lineOf(p+".url"), p+".url", "%q has no host", h.URL)
	}
	seen := map[string]bool{}
	for i, fe := range h.Frontends {
		fp := index(p+".frontends", i)
		if fe == "" {
			d.add(d.lineOf(fp), fp, "an empty frontend name")
		} else if seen[fe] {
			d.add(d.lineOf(fp), fp, "%q is listed twice", fe)
		}
		seen[fe] = true
	}
}

func validateHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("not host:port")
	}
	_ = host // an empty host means every address, as in net.Listen
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not 1..65535", port)
	}
	return nil
}

func (d *decoder) interfaceExists(o options, name string, line int, key string) {
	if o.interfaceExists == nil {
		return
	}
	if err := o.interfaceExists(name); err != nil {
		d.add(line, key, "interface %q does not exist on this host (check it, or validate with the interface check off for another host)", name)
	}
}

type vridKey struct {
	iface  string
	family int
	vrid   uint8
}

func (d *decoder) validateInstances(cfg *Config, o options, checks map[string]int) {
	if len(cfg.Instances) == 0 && cfg.BGP == nil && !d.hasProblem("vrrp_instances") {
		d.add(d.lineOf("vrrp_instances"), "vrrp_instances", "at least one VRRP instance is required (or a bgp section, for an anycast node)")
	}
	names := map[string]int{}
	vrids := map[vridKey]string{}
	for i := range cfg.Instances {
		in := &cfg.Instances[i]
		p := index("vrrp_instances", i)
		at := func(key string) (int, string) { return d.lineOf(p + "." + key), p + "." + key }

		switch {
		case !d.isSet(p + ".name"):
			d.add(d.lineOf(p), p, "name is required")
		case in.Name == "" || strings.IndexFunc(in.Name, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) >= 0:
			l, k := at("name")
			d.add(l, k, "%q: a name is one word of printable characters", in.Name)
		default:
			if first, dup := names[in.Name]; dup {
				l, k := at("name")
				d.add(l, k, "%q is already the name of the instance at line %d", in.Name, first)
			} else {
				names[in.Name] = d.lineOf(p + ".name")
			}
		}
		if in.Interface == "" {
			d.add(d.lineOf(p), p, "interface is required")
		} else {
			l, k := at("interface")
			d.interfaceExists(o, in.Interface, l, k)
		}
		if !d.isSet(p + ".virtual_router_id") {
			d.add(d.lineOf(p), p, "virtual_router_id is required (1..255, the same on every peer)")
		}

		d.validateAdvertInt(in, p)
		if in.PreemptDelay > 1000*time.Second {
			l, k := at("preempt_delay")
			d.add(l, k, "%v is outside 0..1000s", in.PreemptDelay)
		}
		if !in.Preempt && in.State == StateMaster {
			l, k := at("preempt")
			d.warn(l, k, "false with state MASTER: like keepalived's nopreempt, it only holds when the other routers start as BACKUP")
		}
		if in.Checksum == ChecksumRFC9568 && in.Version == 2 {
			l, k := at("checksum")
			d.warn(l, k, "rfc9568 only changes VRRPv3 IPv4 checksums; this instance runs version 2")
		}
		if a := in.Authentication; a != nil {
			d.validateAuth(in, a, p+".authentication")
		}
		d.validateVIPs(i, in, p)
		d.validateUnicast(i, in, p)
		d.resolveTrack(cfg, i, in, p, checks)
		seenIf := map[string]bool{}
		for _, it := range d.trackIfs[i] {
			k := p + ".track_interface"
			switch {
			case it.val == "":
				d.add(it.line, k, "an empty interface name")
			case seenIf[it.val]:
				d.add(it.line, k, "%q is listed twice", it.val)
			default:
				seenIf[it.val] = true
				in.TrackInterfaces = append(in.TrackInterfaces, it.val)
				d.interfaceExists(o, it.val, it.line, k)
			}
		}

		if in.Interface != "" && in.VRID != 0 && len(in.VIPs) > 0 {
			key := vridKey{in.Interface, in.Family(), in.VRID}
			if other, dup := vrids[key]; dup {
				l, k := at("virtual_router_id")
				d.add(l, k, "%d is already used by instance %s on %s (IPv%d): a VRID is unique per interface and family", in.VRID, other, in.Interface, in.Family())
			} else {
				vrids[key] = in.Name
			}
		}
	}
}

func (d *decoder) validateAdvertInt(in *Instance, p string) {
	k := p + ".advert_int"
	l := d.lineOf(k)
	a := in.AdvertInt
	if in.Version != 2 && in.Version != 3 {
		return // reported on the version key
	}
	if err := vrrp.CheckAdvertInterval(in.Version, a); err != nil {
		d.add(l, k, "%v", err)
	}
}

func (d *decoder) validateAuth(in *Instance, a *Authentication, p string) {
	if in.Version == 3 {
		d.add(d.lineOf(p), p, "VRRPv3 (RFC 5798) has no authentication: remove it or use version: 2")
		return
	}
	switch t := strings.ToUpper(a.Type); t {
	case "PASS":
		a.Type = t
	case "AH":
		d.add(d.lineOf(p+".auth_type"), p+".auth_type", "AH is not supported by hapair: use PASS, or no authentication")
	default:
		d.add(d.lineOf(p+".auth_type"), p+".auth_type", "%q is not PASS", a.Type)
	}
	switch n := len(a.Pass); {
	case !d.isSet(p + ".auth_pass"):
		d.add(d.lineOf(p), p, "auth_pass is required with authentication")
	case n == 0:
		d.add(d.lineOf(p+".auth_pass"), p+".auth_pass", "is empty")
	case n > 8:
		d.add(d.lineOf(p+".auth_pass"), p+".auth_pass", "is %d characters long: VRRPv2 carries at most 8 (keepalived silently used the first 8)", n)
	}
}

func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q has a zone: the interface is given by interface", s)
	}
	return a.Unmap(), nil
}

// ParseVIP reads a virtual_ipaddress entry: address/prefix, or a bare address meaning /32 (IPv4)
// or /128 (IPv6). The address keeps its host bits: 10.0.0.10/24 is address 10.0.0.10 on a /24.
func ParseVIP(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := parseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	pf, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if pf.Addr().Is4In6() {
		// The prefix counts the 96 bits of ::ffff:0:0/96 first: a shorter one reaches into other
		// IPv6 addresses and has no IPv4 prefix to become.
		if pf.Bits() < 96 {
			return netip.Prefix{}, errMappedShortPrefix
		}
		pf = netip.PrefixFrom(pf.Addr().Unmap(), pf.Bits()-96)
	}
	return pf, nil
}

var errMappedShortPrefix = errors.New("an IPv4-mapped address needs a prefix of /96 or longer (96 + the IPv4 prefix): write the IPv4 address instead")

func (d *decoder) validateVIPs(i int, in *Instance, p string) {
	k := p + ".virtual_ipaddress"
	if len(d.vips[i]) == 0 {
		d.add(d.lineOf(k), k, "at least one virtual address is required")
		return
	}
	seen := map[netip.Addr]bool{}
	var first netip.Addr
	for _, it := range d.vips[i] {
		pf, err := ParseVIP(it.val)
		if errors.Is(err, errMappedShortPrefix) {
			d.add(it.line, k, "%q: %v", it.val, err)
			continue
		} else if err != nil {
			d.add(it.line, k, "%q is not an address or address/prefix", it.val)
			continue
		}
		a := pf.Addr()
		owner, taken := d.vipOwner[a]
		switch {
		case a.IsUnspecified() || a.IsMulticast() || a.IsLoopback():
			d.add(it.line, k, "%s cannot be a virtual address (unspecified, multicast or loopback)", a)
			continue
		case a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
			d.add(it.line, k, "%s is the broadcast address: it cannot be a virtual address", a)
			continue
		case pf.Bits() == 0:
			d.add(it.line, k, "%s: a prefix of length 0 would route every address to this link", pf)
			continue
		case seen[a]:
			d.add(it.line, k, "%s is listed twice", a)
			continue
		case taken:
			// Two instances would attach and detach the same address on their own elections.
			d.add(it.line, k, "%s is already a virtual address of instance %s (line %d)", a, owner.instance, owner.line)
			continue
		case first.IsValid() && first.Is4() != a.Is4():
			d.add(it.line, k, "%s and %s: the addresses of one instance are all IPv4 or all IPv6", first, a)
			continue
		case a.Is6() && in.Version == 2:
			d.add(it.line, k, "%s: IPv6 needs version: 3", a)
			continue
		}
		if !first.IsValid() {
			first = a
		}
		if len(in.VIPs) == vrrp.MaxAddrs {
			d.add(it.line, k, "%d addresses: one VRRP advert carries at most %d (split them between instances)", len(d.vips[i]), vrrp.MaxAddrs)
			return
		}
		seen[a] = true
		d.vipOwner[a] = vipUse{in.Name, it.line}
		in.VIPs = append(in.VIPs, pf)
		d.vipLines[i] = append(d.vipLines[i], it.line)
	}
}

func (d *decoder) validateUnicast(i int, in *Instance, p string) {
	fam := func(a netip.Addr) int {
		if a.Is4() {
			return 4
		}
		return 6
	}
	haveVIPs := len(in.VIPs) > 0
	if src := in.UnicastSrcIP; src.IsValid() && haveVIPs && fam(src) != in.Family() {
		k := p + ".unicast_src_ip"
		d.add(d.lineOf(k), k, "%s is IPv%d but the virtual addresses are IPv%d", src, fam(src), in.Family())
	}
	k := p + ".unicast_peer"
	seen := map[netip.Addr]bool{}
	for _, it := range d.peers[i] {
		a, err := parseAddr(it.val)
		switch {
		case err != nil:
			d.add(it.line, k, "%q is not an IP address", it.val)
		case haveVIPs && fam(a) != in.Family():
			d.add(it.line, k, "%s is IPv%d but the virtual addresses are IPv%d", a, fam(a), in.Family())
		case seen[a]:
			d.add(it.line, k, "%s is listed twice", a)
		case a == in.UnicastSrcIP:
			d.add(it.line, k, "%s is this router's own unicast_src_ip", a)
		case a.IsUnspecified() || a.IsMulticast():
			d.add(it.line, k, "%s cannot be a unicast peer", a)
		default:
			seen[a] = true
			in.UnicastPeers = append(in.UnicastPeers, a)
		}
	}
}

func (d *decoder) resolveTrack(cfg *Config, i int, in *Instance, p string, checks map[string]int) {
	for _, ref := range d.tracks[i] {
		var own int
		switch {
		case ref.name == BuiltinHAProxyCheck:
			if cfg.HAProxy == nil {
				d.add(ref.line, ref.path, "the built-in haproxy check needs the haproxy section")
				continue
			}
			own = DefaultCheckWeight
		default:
			w, ok := checks[ref.name]
			if !ok {
				d.add(ref.line, ref.path, "no check is named %q (%s)", ref.name, knownChecks(cfg, checks))
				continue
			}
			own = w
		}
		if ref.weight != nil {
			own = *ref.weight
		}
		in.Track[ref.name] = own
	}
}

func knownChecks(cfg *Config, checks map[string]int) string {
	var names []string
	if cfg.HAProxy != nil {
		names = append(names, BuiltinHAProxyCheck)
	}
	for n := range checks {
		names = append(names, n)
	}
	if len(names) == 0 {
		return "no checks are defined"
	}
	sort.Strings(names)
	return "known: " + strings.Join(names, ", ")
}

func (d *decoder) hasProblem(key string) bool {
	for _, p := range d.probs {
		if p.Key == key {
			return true
		}
	}
	return false
}
