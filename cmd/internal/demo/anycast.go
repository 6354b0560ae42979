package demo

import (
	"fmt"
	"strings"
)

// AnycastNode is the configuration of one hapair in the BGP lab (`hapair demo --bgp` and the
// end-to-end tests): HAProxy, no VRRP instance, one service address announced to the router
// while HAProxy lives.
type AnycastNode struct {
	RouterID      string
	HAProxyConfig string
	RuntimeDir    string
	DumpFile      string
	Router        string // the BGP peer's address
	Prefix        string // the service address, e.g. 10.77.9.10/32
	HoldTime      string // default 3s
	DrainTime     string // default 1s
	Listen        string // status listener; default 127.0.0.1:9479
	Password      string // TCP MD5 password of the session, if any
}

// YAML renders the node's hapair.yaml.
func (n AnycastNode) YAML() string {
	var b strings.Builder
	fmt.Fprintf(&b, "router_id: %s\n", n.RouterID)
	fmt.Fprintf(&b, "haproxy:\n  config: %s\n  runtime_dir: %s\n  stop_grace: 3s\n", n.HAProxyConfig, orDefault(n.RuntimeDir, "/run/hapair"))
	b.WriteString("  restart_backoff: {initial: 500ms, max: 8s, reset_after: 10s}\n")
	b.WriteString("bgp:\n  local_asn: 65010\n")
	fmt.Fprintf(&b, "  drain_time: %s\n", orDefault(n.DrainTime, "1s"))
	password := ""
	if n.Password != "" {
		password = fmt.Sprintf(", password: %q", n.Password)
	}
	fmt.Fprintf(&b, "  peers:\n    - {address: %s, asn: 65000, hold_time: %s%s}\n", n.Router, orDefault(n.HoldTime, "3s"), password)
	fmt.Fprintf(&b, "  announce:\n    - {prefix: %s, checks: [haproxy]}\n", n.Prefix)
	fmt.Fprintf(&b, "status:\n  listen: %s\n", orDefault(n.Listen, "127.0.0.1:9479"))
	if n.DumpFile != "" {
		fmt.Fprintf(&b, "  dump_file: %s\n", n.DumpFile)
	}
	return b.String()
}
