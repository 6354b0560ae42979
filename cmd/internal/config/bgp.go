package config

import (
	"errors"
	"net/netip"
	"time"

	"gopkg.in/yaml.v3"
)

// BGP defaults. docs/configuration.md lists the same values; TestDocumentedBGPDefaults keeps the
// two in step.
const (
	DefaultBGPListenPort = 179
	DefaultBGPPeerPort   = 179
	// DefaultBGPHoldTime is 9s (keepalives every 3s) rather than BGP's customary 90s or 180s: a
	// node that dies without a word must leave the routers' ECMP set within the hold time.
	DefaultBGPHoldTime = 9 * time.Second
	// DefaultBGPDrainTime is how long a stopping hapair announces its prefixes with the
	// GRACEFUL_SHUTDOWN community (RFC 8326) before it withdraws them.
	DefaultBGPDrainTime = 2 * time.Second
	DefaultBGPLoopback  = "lo"
)

// BGP is the optional bgp section: this host announces service addresses to routers over BGP
// (hapair's own speaker, package bgp), each announcement gated by checks or by a VRRP instance's state.
type BGP struct {
	LocalASN uint32 // local_asn: required, 1..4294967295
	// RouterID (router_id, IPv4) is the BGP identifier; invalid (absent) means the primary
	// address of the interface toward the first peer, resolved when hapair starts.
	RouterID netip.Addr
	// ListenPort (listen_port, default 179) is where hapair accepts sessions from passive peers'
	// routers; hapair listens only when a peer is passive.
	ListenPort int
	// Loopback (loopback, default lo) receives each announced address as a /32 or /128 so that
	// HAProxy accepts the traffic routed to it.
	Loopback string
	// DrainTime (drain_time, default 2s): at stop, prefixes are re-announced with the
	// GRACEFUL_SHUTDOWN community for this long, then withdrawn, then HAProxy stops.
	DrainTime time.Duration
	Peers     []BGPPeer     // peers: at least one
	Announce  []BGPAnnounce // announce: at least one
}

// BGPPeer is one BGP neighbour (bgp.peers[]).
type BGPPeer struct {
	Address  netip.Addr    // address: required
	ASN      uint32        // asn: required; equal to local_asn means iBGP
	HoldTime time.Duration // hold_time: whole seconds, 0 (no keepalives) or 3s..65535s; default 9s
	Port     int           // port: the peer's TCP port, default 179
	Password string        // password: TCP MD5 signature (RFC 2385); "" = none
	Passive  bool          // passive: wait for the peer to connect instead of connecting
	// Multihop (multihop, 0..255, default 0): the TTL of eBGP packets for a peer that is not
	// directly connected; 0 keeps eBGP's TTL of 1.
	Multihop int
}

// BGPAnnounce is one announced service address (bgp.announce[]). Exactly one of Checks and
// VRRPInstance is set.
type BGPAnnounce struct {
	// Prefix (prefix) is a host route, /32 or /128; a bare address means the same.
	Prefix netip.Prefix
	// Checks (checks): announced once each has a first result, withdrawn while any is down.
	Checks []string
	// VRRPInstance (vrrp_instance): announced while that instance is MASTER.
	VRRPInstance string
}

// Family is 4 or 6.
func (a *BGPAnnounce) Family() int {
	if a.Prefix.Addr().Is4() {
		return 4
	}
	return 6
}

// bgpRaw keeps what needs the rest of the file (checks, instances) until validation.
type bgpRaw struct {
	announceChecks map[int][]item
	prefixes       map[int]item
	peerAddrs      map[int]item
	routerID       *item
}

func (d *decoder) bgp(n *yaml.Node, path string) *BGP {
	b := &BGP{ListenPort: DefaultBGPListenPort, Loopback: DefaultBGPLoopback, DrainTime: DefaultBGPDrainTime}
	d.bgpRaw = bgpRaw{announceChecks: map[int][]item{}, prefixes: map[int]item{}, peerAddrs: map[int]item{}}
	scalarItem := func(v *yaml.Node, p string) (item, bool) {
		var s string
		d.str(v, p, &s)
		return item{val: s, line: d.at(v, p)}, s != ""
	}
	d.mapping(n, path, fields{
		"local_asn": func(v *yaml.Node, p string) {
			d.intRange(v, p, 1, 4294967295, func(x int64) { b.LocalASN = uint32(x) })
		},
		"router_id": func(v *yaml.Node, p string) {
			if it, ok := scalarItem(v, p); ok {
				d.bgpRaw.routerID = &it
			}
		},
		"listen_port": func(v *yaml.Node, p string) { d.intRange(v, p, 1, 65535, func(x int64) { b.ListenPort = int(x) }) },
		"loopback":    func(v *yaml.Node, p string) { d.str(v, p, &b.Loopback) },
		"drain_time":  func(v *yaml.Node, p string) { d.duration(v, p, &b.DrainTime) },
		"peers": func(v *yaml.Node, p string) {
			d.sequence(v, p, func(i int, e *yaml.Node, ep string) {
				peer := BGPPeer{HoldTime: DefaultBGPHoldTime, Port: DefaultBGPPeerPort}
				if e.Kind != yaml.MappingNode {
					d.add(d.at(e, ep), ep, "must be a mapping with address and asn, not %s", describe(e))
				}
				d.mapping(e, ep, fields{
					"address": func(v *yaml.Node, p string) {
						if it, ok := scalarItem(v, p); ok {
							d.bgpRaw.peerAddrs[i] = it
						}
					},
					"asn":       func(v *yaml.Node, p string) { d.intRange(v, p, 1, 4294967295, func(x int64) { peer.ASN = uint32(x) }) },
					"hold_time": func(v *yaml.Node, p string) { d.duration(v, p, &peer.HoldTime) },
					"port":      func(v *yaml.Node, p string) { d.intRange(v, p, 1, 65535, func(x int64) { peer.Port = int(x) }) },
					"password":  func(v *yaml.Node, p string) { d.str(v, p, &peer.Password) },
					"passive":   func(v *yaml.Node, p string) { d.boolean(v, p, &peer.Passive) },
					"multihop":  func(v *yaml.Node, p string) { d.intRange(v, p, 0, 255, func(x int64) { peer.Multihop = int(x) }) },
				})
				b.Peers = append(b.Peers, peer)
			})
		},
		"announce": func(v *yaml.Node, p string) {
			d.sequence(v, p, func(i int, e *yaml.Node, ep string) {
				var a BGPAnnounce
				if e.Kind != yaml.MappingNode {
					d.add(d.at(e, ep), ep, "must be a mapping with prefix and checks or vrrp_instance, not %s", describe(e))
				}
				d.mapping(e, ep, fields{
					"prefix": func(v *yaml.Node, p string) {
						if it, ok := scalarItem(v, p); ok {
							d.bgpRaw.prefixes[i] = it
						}
					},
					"checks":        func(v *yaml.Node, p string) { d.bgpRaw.announceChecks[i] = d.list(v, p) },
					"vrrp_instance": func(v *yaml.Node, p string) { d.str(v, p, &a.VRRPInstance) },
				})
				b.Announce = append(b.Announce, a)
			})
		},
	})
	return b
}

func (d *decoder) validateBGP(cfg *Config, o options, checks map[string]int) {
	b := cfg.BGP
	const p = "bgp"
	if !d.isSet(p + ".local_asn") {
		d.add(d.lineOf(p), p, "local_asn is required")
	}
	if it := d.bgpRaw.routerID; it != nil {
		a, err := parseAddr(it.val)
		switch {
		case err != nil || !a.Is4():
			d.add(it.line, p+".router_id", "%q is not an IPv4 address (a BGP identifier is written as one)", it.val)
		case a.IsUnspecified():
			d.add(it.line, p+".router_id", "0.0.0.0 is not a usable BGP identifier")
		default:
			b.RouterID = a
		}
	}
	if b.Loopback == "" {
		d.add(d.lineOf(p+".loopback"), p+".loopback", "needs an interface name")
	} else {
		d.interfaceExists(o, b.Loopback, d.lineOf(p+".loopback"), p+".loopback")
	}

	if len(b.Peers) == 0 && !d.hasProblem(p+".peers") {
		d.add(d.lineOf(p+".peers"), p+".peers", "at least one peer is required")
	}
	families := map[int]bool{}
	seenPeer := map[netip.Addr]int{}
	for i := range b.Peers {
		peer := &b.Peers[i]
		pp := index(p+".peers", i)
		it, ok := d.bgpRaw.peerAddrs[i]
		if !ok {
			if !d.isSet(pp + ".address") {
				d.add(d.lineOf(pp), pp, "address is required")
			}
		} else if a, err := parseAddr(it.val); err != nil {
			d.add(it.line, pp+".address", "%q is not an IP address", it.val)
		} else if a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
			d.add(it.line, pp+".address", "%s cannot be a BGP peer", a)
		} else if first, dup := seenPeer[a]; dup {
			d.add(it.line, pp+".address", "%s is already the peer at line %d", a, first)
		} else {
			seenPeer[a] = it.line
			peer.Address = a
			families[familyOf(a)] = true
		}
		if !d.isSet(pp+".asn") && !d.hasProblem(pp) {
			d.add(d.lineOf(pp), pp, "asn is required")
		}
		if h := peer.HoldTime; h%time.Second != 0 || (h != 0 && (h < 3*time.Second || h > 65535*time.Second)) {
			d.add(d.lineOf(pp+".hold_time"), pp+".hold_time", "%v: BGP carries whole seconds, 0 or 3..65535 (RFC 4271 4.2)", h)
		}
		if peer.Multihop == 1 {
			d.warn(d.lineOf(pp+".multihop"), pp+".multihop", "1 is eBGP's own TTL: leave it out (0) for a directly connected peer")
		}
	}

	if len(b.Announce) == 0 && !d.hasProblem(p+".announce") {
		d.add(d.lineOf(p+".announce"), p+".announce", "at least one prefix to announce is required")
	}
	instances := map[string]bool{}
	for _, in := range cfg.Instances {
		instances[in.Name] = true
	}
	seenPrefix := map[netip.Prefix]int{}
	for i := range b.Announce {
		a := &b.Announce[i]
		ap := index(p+".announce", i)
		if it, ok := d.bgpRaw.prefixes[i]; !ok {
			if !d.isSet(ap + ".prefix") {
				d.add(d.lineOf(ap), ap, "prefix is required")
			}
		} else if pf, err := ParseVIP(it.val); errors.Is(err, errMappedShortPrefix) {
			d.add(it.line, ap+".prefix", "%q: %v", it.val, err)
		} else if err != nil {
			d.add(it.line, ap+".prefix", "%q is not an address or address/prefix", it.val)
		} else if pf.Bits() != pf.Addr().BitLen() {
			d.add(it.line, ap+".prefix", "%s: announce a host route (/%d): it is put on %s so that HAProxy accepts its traffic", pf, pf.Addr().BitLen(), b.Loopback)
		} else if a := pf.Addr(); a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() || a.IsLinkLocalUnicast() {
			d.add(it.line, ap+".prefix", "%s cannot be a service address (unspecified, multicast, loopback or link-local)", a)
		} else if first, dup := seenPrefix[pf]; dup {
			d.add(it.line, ap+".prefix", "%s is already announced at line %d", pf, first)
		} else if len(families) > 0 && !families[familyOf(pf.Addr())] {
			d.add(it.line, ap+".prefix", "%s is IPv%d but no peer is: a prefix goes to peers of its own family, with this host's address toward them as next hop", pf, familyOf(pf.Addr()))
		} else {
			seenPrefix[pf] = it.line
			b.Announce[i].Prefix = pf
		}

		checkItems := d.bgpRaw.announceChecks[i]
		switch {
		case len(checkItems) > 0 && a.VRRPInstance != "":
			d.add(d.lineOf(ap+".vrrp_instance"), ap, "has checks and vrrp_instance: an announcement follows one or the other")
		case len(checkItems) == 0 && a.VRRPInstance == "" && !d.hasProblem(ap):
			d.add(d.lineOf(ap), ap, "needs checks (announced while they pass) or vrrp_instance (announced while it is MASTER)")
		}
		seen := map[string]bool{}
		for _, it := range checkItems {
			k := ap + ".checks"
			switch {
			case seen[it.val]:
				d.add(it.line, k, "%q is listed twice", it.val)
				continue
			case it.val == BuiltinHAProxyCheck && cfg.HAProxy == nil:
				d.add(it.line, k, "the built-in haproxy check needs the haproxy section")
				continue
			case it.val != BuiltinHAProxyCheck:
				if _, ok := checks[it.val]; !ok {
					d.add(it.line, k, "no check is named %q (%s)", it.val, knownChecks(cfg, checks))
					continue
				}
			}
			seen[it.val] = true
			a.Checks = append(a.Checks, it.val)
		}
		if a.VRRPInstance != "" && !instances[a.VRRPInstance] {
			d.add(d.lineOf(ap+".vrrp_instance"), ap+".vrrp_instance", "no VRRP instance is named %q", a.VRRPInstance)
		}
	}
}

func familyOf(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

// reloadBGP sorts bgp changes: peers, announcements and drain_time apply in place (a peer added,
// removed or changed leaves the other sessions up); the speaker's identity and the loopback need a
// restart.
func (r *reloadDiff) bgp(o, n *BGP) {
	switch {
	case o == nil && n == nil:
		return
	case o == nil:
		r.needRestart = append(r.needRestart, "bgp: section added")
		return
	case n == nil:
		r.needRestart = append(r.needRestart, "bgp: section removed")
		return
	}
	r.cmp(&r.needRestart, "bgp.local_asn", o.LocalASN, n.LocalASN)
	r.cmp(&r.needRestart, "bgp.router_id", o.RouterID, n.RouterID)
	r.cmp(&r.needRestart, "bgp.listen_port", o.ListenPort, n.ListenPort)
	r.cmp(&r.needRestart, "bgp.loopback", o.Loopback, n.Loopback)
	r.cmp(&r.changes, "bgp.drain_time", o.DrainTime, n.DrainTime)

	// A changed peer is shown without its password.
	diffByKey(&r.changes, "bgp.peers", o.Peers, n.Peers, func(p BGPPeer) netip.Addr { return p.Address }, "changed (session reset)", "removed")
	diffByKey(&r.changes, "bgp.announce", o.Announce, n.Announce, func(a BGPAnnounce) netip.Prefix { return a.Prefix }, "changed", "withdrawn")
}
