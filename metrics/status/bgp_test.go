package status

import (
	"bytes"
	"strings"
	"testing"
)

func TestWriteTextBGP(t *testing.T) {
	st := Status{RouterID: "n1", BGP: &BGPStatus{
		LocalASN: 65010, RouterID: "10.0.0.11",
		Peers: []BGPPeerStatus{{Address: "10.0.0.1", ASN: 65000, State: "ESTABLISHED", Up: true}},
		Prefixes: []BGPPrefixStatus{
			{Prefix: "10.77.9.10/32", Announced: false, GatedBy: "checks haproxy", Reason: "check haproxy down"},
			{Prefix: "10.77.9.20/32", Announced: true, Draining: true, GatedBy: "vrrp_instance VI_LOGS", Reason: "stopping"},
		},
	}}
	var buf bytes.Buffer
	if err := WriteText(&buf, st); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"BGP PEER (AS 65010, ID 10.0.0.11)",
		"10.0.0.1",
		"ESTABLISHED",
		"check haproxy down",
		"yes (draining)",
		"vrrp_instance VI_LOGS",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
	buf.Reset()
	st.BGP = nil
	if err := WriteText(&buf, st); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "BGP") {
		t.Errorf("BGP tables without a bgp section:\n%s", buf.String())
	}
}
