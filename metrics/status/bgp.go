package status

import (
	"bufio"
	"fmt"
	"text/tabwriter"
	"time"
)

// BGPStatus is the bgp part of /status (absent without a bgp section).
type BGPStatus struct {
	LocalASN uint32            `json:"local_asn"`
	RouterID string            `json:"router_id"`
	Peers    []BGPPeerStatus   `json:"peers"`
	Prefixes []BGPPrefixStatus `json:"prefixes"`
}

// BGPPeerStatus is one BGP neighbour.
type BGPPeerStatus struct {
	Address string    `json:"address"`
	ASN     uint32    `json:"asn"`
	State   string    `json:"state"` // IDLE, CONNECT, ACTIVE, OPENSENT, OPENCONFIRM, ESTABLISHED
	Up      bool      `json:"up"`
	Since   time.Time `json:"since"`
	Reason  string    `json:"reason,omitempty"`
}

// BGPPrefixStatus is one announced (or withheld) service address.
type BGPPrefixStatus struct {
	Prefix    string    `json:"prefix"`
	Announced bool      `json:"announced"`
	Draining  bool      `json:"draining"` // announced with GRACEFUL_SHUTDOWN while stopping
	GatedBy   string    `json:"gated_by"`
	Reason    string    `json:"reason"`
	Since     time.Time `json:"since"`
}

// writeBGPTables renders the bgp part of `hapair status`.
func writeBGPTables(w *bufio.Writer, b *BGPStatus) {
	w.WriteString("\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "BGP PEER (AS %d, ID %s)\tASN\tSTATE\tSINCE\tLAST DOWN\n", b.LocalASN, clean(b.RouterID, 0))
	if len(b.Peers) == 0 {
		fmt.Fprintln(tw, "(none)")
	}
	for _, p := range b.Peers {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", clean(p.Address, 0), p.ASN, clean(p.State, 0), formatTime(p.Since), orDash(clean(p.Reason, maxOutput)))
	}
	tw.Flush()
	w.WriteString("\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PREFIX\tANNOUNCED\tGATED BY\tSINCE\tWHY")
	for _, p := range b.Prefixes {
		ann := yesNo(p.Announced)
		if p.Draining {
			ann += " (draining)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", clean(p.Prefix, 0), ann, clean(p.GatedBy, 0), formatTime(p.Since), clean(p.Reason, maxOutput))
	}
	tw.Flush()
}
