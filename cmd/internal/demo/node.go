package demo

import (
	"fmt"
	"strings"
)

// Node is the configuration of one hapair host in the lab (`hapair demo`, the end-to-end tests
// and the failover benchmark): the seed's loglb setup, with knobs for the variations they need.
type Node struct {
	RouterID     string
	Interface    string // default eth0
	Priority     int
	Version      int    // default 2
	AdvertInt    string // default "1s"
	NoPreempt    bool
	AuthPass     string // v2 PASS when set
	VIPs         []string
	UnicastSrc   string
	UnicastPeers []string
	// HAProxyConfig, when set, adds the haproxy section with this config file and the built-in
	// haproxy check tracked with weight -20 (the seed's chk_haproxy).
	HAProxyConfig string
	// RuntimeDir is hapair's runtime_dir (lock, state record, HAProxy's master socket); every
	// hapair on one machine needs its own. Default /run/hapair.
	RuntimeDir string
	// StatsURL, when set, adds the seed-style stats check (interval 2s, fall 2, rise 2, weight -20).
	StatsURL      string
	StatsBackends map[string]int
	StatsInterval string // default "2s"
	Listen        string // status listener; default 127.0.0.1:9479
	DumpFile      string
	GARPDelay     string // default "5s"
	Compat        bool
	// ExtraInstance is raw YAML appended to the instance (indented by the caller's 4 spaces).
	ExtraInstance []string
	// Extra is raw YAML appended at the top level, e.g. a bgp section.
	Extra string
}

// YAML renders the node's hapair.yaml.
func (n Node) YAML() string {
	var b strings.Builder
	fmt.Fprintf(&b, "router_id: %s\n", n.RouterID)
	if n.RuntimeDir != "" {
		fmt.Fprintf(&b, "runtime_dir: %s\n", n.RuntimeDir)
	}
	if n.HAProxyConfig != "" {
		fmt.Fprintf(&b, "haproxy:\n  config: %s\n  stop_grace: 3s\n", n.HAProxyConfig)
		b.WriteString("  restart_backoff: {initial: 500ms, max: 8s, reset_after: 10s}\n")
	}
	if n.StatsURL != "" {
		fmt.Fprintf(&b, "checks:\n  - name: haproxy_stats\n    interval: %s\n    timeout: 1s\n    fall: 2\n    rise: 2\n    weight: -20\n", orDefault(n.StatsInterval, "2s"))
		fmt.Fprintf(&b, "    http:\n      url: %q\n", n.StatsURL)
		if len(n.StatsBackends) > 0 {
			b.WriteString("      backends:\n")
			for be, min := range n.StatsBackends {
				fmt.Fprintf(&b, "        %s: %d\n", be, min)
			}
		}
	}
	b.WriteString("vrrp_instances:\n  - name: VI_LOGS\n")
	fmt.Fprintf(&b, "    interface: %s\n", orDefault(n.Interface, "eth0"))
	state := "BACKUP"
	if n.Priority >= 110 {
		state = "MASTER"
	}
	fmt.Fprintf(&b, "    state: %s\n    virtual_router_id: 51\n    priority: %d\n", state, n.Priority)
	version := n.Version
	if version == 0 {
		version = 2
	}
	fmt.Fprintf(&b, "    version: %d\n    advert_int: %s\n", version, orDefault(n.AdvertInt, "1s"))
	fmt.Fprintf(&b, "    preempt: %t\n", !n.NoPreempt)
	if n.AuthPass != "" {
		fmt.Fprintf(&b, "    authentication: {auth_type: PASS, auth_pass: %q}\n", n.AuthPass)
	}
	fmt.Fprintf(&b, "    virtual_ipaddress: [%s]\n", strings.Join(n.VIPs, ", "))
	if n.UnicastSrc != "" {
		fmt.Fprintf(&b, "    unicast_src_ip: %s\n", n.UnicastSrc)
	}
	if len(n.UnicastPeers) > 0 {
		fmt.Fprintf(&b, "    unicast_peer: [%s]\n", strings.Join(n.UnicastPeers, ", "))
	}
	fmt.Fprintf(&b, "    garp_master_delay: %s\n", orDefault(n.GARPDelay, "5s"))
	var track []string
	if n.HAProxyConfig != "" {
		track = append(track, "haproxy: -20")
	}
	if n.StatsURL != "" {
		track = append(track, "haproxy_stats: -20")
	}
	if len(track) > 0 {
		fmt.Fprintf(&b, "    track: {%s}\n", strings.Join(track, ", "))
	}
	for _, l := range n.ExtraInstance {
		fmt.Fprintf(&b, "    %s\n", l)
	}
	fmt.Fprintf(&b, "status:\n  listen: %s\n  keepalived_compat: %t\n", orDefault(n.Listen, "127.0.0.1:9479"), n.Compat)
	if n.DumpFile != "" {
		fmt.Fprintf(&b, "  dump_file: %s\n", n.DumpFile)
	}
	b.WriteString(n.Extra)
	return b.String()
}

// orDefault is v, or d when v is empty: the lab nodes' YAML fills what a test leaves out.
func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}
