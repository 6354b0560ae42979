package lab

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// The lab's own nftables tables inside a host namespace. Each helper replaces
// its table as a whole; Heal deletes them all.
const (
	vrrpTable    = "hapair_lab_vrrp"
	isolateTable = "hapair_lab_isolate"
)

// NFT loads ruleset into the host's nftables (`nft -f -`), atomically.
func (h *Host) NFT(ruleset string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := h.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: nft -f: %w: %s", h.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// replaceTable returns a ruleset that deletes table (if it exists) and, with
// a non-empty body, defines it anew, in one transaction.
func replaceTable(family, table, body string) string {
	// Declaring the table first makes the delete valid when it does not exist.
	s := fmt.Sprintf("table %s %s\ndelete table %s %s\n", family, table, family, table)
	if body != "" {
		s += fmt.Sprintf("table %s %s {\n%s}\n", family, table, body)
	}
	return s
}

// DropVRRP makes the host lose percent of the VRRP packets (IP protocol 112,
// IPv4 and IPv6) it sends and receives, at random for 1..99 (nftables numgen:
// the kernel here has no netem). 100 cuts VRRP completely in both directions,
// which alone splits the brain of a pair; 0 removes the rule.
func (h *Host) DropVRRP(percent int) error {
	if percent < 0 || percent > 100 {
		return fmt.Errorf("%s: drop VRRP: percent %d out of 0..100", h.Name, percent)
	}
	body := ""
	if percent > 0 {
		match := "drop"
		if percent < 100 {
			match = fmt.Sprintf("numgen random mod 100 < %d drop", percent)
		}
		for _, hook := range []string{"input", "output"} {
			body += fmt.Sprintf("\tchain %s {\n\t\ttype filter hook %s priority -10; policy accept;\n"+
				"\t\tmeta nfproto ipv4 ip protocol 112 %s\n"+
				"\t\tmeta nfproto ipv6 meta l4proto 112 %s\n\t}\n", hook, hook, match, match)
		}
	}
	return h.NFT(replaceTable("inet", vrrpTable, body))
}

// Isolate cuts the host off the switch without taking its link down: every
// frame on eth0 is dropped both ways, so that to the others it looks dead while
// its own processes see nothing but silence. The drop sits on the device's
// netdev ingress and egress hooks rather than in the IP and ARP tables: frames
// sent on packet sockets (the gratuitous ARPs of keepalived and hapair) bypass
// those, and an "isolated" host's ARPs used to reach the clients.
func (h *Host) Isolate() error {
	body := ""
	for _, hook := range []string{"ingress", "egress"} {
		body += fmt.Sprintf("\tchain %s {\n\t\ttype filter hook %s device %q priority 0; policy drop;\n\t}\n",
			hook, hook, HostInterface)
	}
	return h.NFT(replaceTable("netdev", isolateTable, body))
}

// Heal removes what DropVRRP and Isolate put in place.
func (h *Host) Heal() error {
	return h.NFT(replaceTable("inet", vrrpTable, "") + replaceTable("netdev", isolateTable, ""))
}
