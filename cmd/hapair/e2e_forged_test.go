package main

import (
	"context"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hapair/hapair/cmd/internal/lab"
	"github.com/hapair/hapair/cmd/internal/lab/labtest"
	"github.com/hapair/hapair/vrrp"
)

// forgedAdvert is a VRRPv2 advert with the pair's password, as a host that knows it (a
// misconfigured pair on our VRID, or an attacker who sniffed it) would send.
func forgedAdvert(t testing.TB, src netip.Addr, prio uint8, pass string, addrs ...string) []byte {
	t.Helper()
	a := vrrp.Advert{Version: 2, VRID: 51, Priority: prio, Interval: time.Second, AuthType: vrrp.AuthSimple}
	copy(a.AuthData[:], pass)
	for _, s := range addrs {
		a.Addrs = append(a.Addrs, netip.MustParseAddr(s))
	}
	b, err := a.Marshal(src, netip.MustParseAddr("224.0.0.18"), vrrp.ChecksumWithPseudoHeader)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// forgedPass is the pair's VRRPv2 password, which the forger knows.
const forgedPass = "1a2b3c4d"

// startForgedPair starts an elected pair (lb1 MASTER with the VIP, lb2 BACKUP, VRRPv2 with
// forgedPass) and a third host, evil, with a forger on the same switch; the forger is closed
// when the test ends.
func startForgedPair(t *testing.T) (p *pair, evil *lab.Host, f *lab.Forger, lb1, lb2 *daemonHost) {
	t.Helper()
	p = newPair(t)
	evil = labtest.AddHost(t, p.lab, "evil", p.lab.Addr(66))
	lb1 = startDaemon(t, p.lb1, labNode{Priority: 110, AuthPass: forgedPass})
	lb2 = startDaemon(t, p.lb2, labNode{Priority: 100, AuthPass: forgedPass})
	lb1.waitState(0, "MASTER", 10*time.Second)
	lb2.waitState(0, "BACKUP", 10*time.Second)
	waitVIP(t, 3*time.Second, p.lb1, p.lb1, p.lb2)
	f, err := evil.NewForger()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return p, evil, f, lb1, lb2
}

// TestForgedAddressListKeepsTheVIP (issue 9 item 1): a third host sends adverts with the right
// password and a higher priority but an address list that shares nothing with ours, or lists
// our VIP twice. The MASTER keeps its VIP (before, it went BACKUP and nobody held the VIP for
// about 8 s), counts the drops and logs once per sender and list, not per packet.
func TestForgedAddressListKeepsTheVIP(t *testing.T) {
	t.Parallel()
	p, evil, f, lb1, lb2 := startForgedPair(t)
	foreign := forgedAdvert(t, evil.IP(), 254, forgedPass, "10.0.0.99")
	twice := forgedAdvert(t, evil.IP(), 254, forgedPass, vip.String(), vip.String())
	from1, from2 := lb1.lines(), lb2.lines()
	const rounds = 40 // 4 s: longer than Master_Down_Interval
	for i := range rounds {
		for _, pkt := range [][]byte{foreign, twice} {
			if err := f.Send(pkt, 255); err != nil {
				t.Fatal(err)
			}
		}
		if h := vipHolders(t, p.lb1, p.lb2); len(h) != 1 || h[0] != p.lb1.Name {
			t.Fatalf("after %d rounds of forged adverts the VIP is on %v, want lb1 alone\n%s", i, h, lb1.proc.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if h := vipHolders(t, p.lb1, p.lb2); len(h) != 1 || h[0] != p.lb1.Name {
		t.Fatalf("after the forged adverts the VIP is on %v, want lb1 alone", h)
	}
	for _, d := range []*daemonHost{lb1, lb2} {
		var transitions, ignored int
		for _, l := range d.proc.Lines()[map[*daemonHost]int{lb1: from1, lb2: from2}[d]:] {
			if strings.Contains(l.Text, "Entering") {
				transitions++
			}
			if strings.Contains(l.Text, "ignoring adverts") && strings.Contains(l.Text, "from="+evil.IP().String()) {
				ignored++
			}
		}
		if transitions != 0 {
			t.Errorf("%s changed state %d times under forged adverts\n%s", d.host.Name, transitions, d.proc.Output())
		}
		// Two forged lists: two lines, whatever the number of packets.
		if ignored != 2 {
			t.Errorf("%s logged %d lines about the forger's %d adverts, want 2 (one per list)\n%s", d.host.Name, ignored, 2*rounds, d.proc.Output())
		}
		got := scrapeCounter(t, d.host, `hapair_vrrp_packets_dropped_total{instance="VI_LOGS",reason="addresses"}`)
		if got < 2*rounds {
			t.Errorf("%s counted %v address drops, want at least %d", d.host.Name, got, 2*rounds)
		}
	}
}

// TestUnicastAdvertToAMulticastPairIsDropped: a third host sends lb1, by unicast to its own
// address, adverts with the right password, the pair's VIP and a higher priority. The pair runs
// multicast (no unicast_peer): like keepalived ("Expected multicast packet but received unicast
// packet"), lb1 drops them and counts them as reason="destination". Before, it took them and
// gave the VIP up for as long as they came, with no host holding it.
func TestUnicastAdvertToAMulticastPairIsDropped(t *testing.T) {
	t.Parallel()
	p, evil, f, lb1, _ := startForgedPair(t)
	higher := forgedAdvert(t, evil.IP(), 254, forgedPass, vip.String()) // VRRPv2: no destination in its checksum
	from := lb1.lines()
	const rounds = 40 // 4 s: longer than Master_Down_Interval
	for i := range rounds {
		if err := f.SendTo(higher, p.lb1.IP(), 255); err != nil {
			t.Fatal(err)
		}
		if h := vipHolders(t, p.lb1, p.lb2); len(h) != 1 || h[0] != p.lb1.Name {
			t.Fatalf("after %d unicast adverts of priority 254 the VIP is on %v, want lb1 alone\n%s", i, h, lb1.proc.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, l := range lb1.proc.Lines()[from:] {
		if strings.Contains(l.Text, "Entering") {
			t.Errorf("lb1 changed state under unicast adverts: %s", l.Text)
		}
	}
	if got := scrapeCounter(t, p.lb1, `hapair_vrrp_packets_dropped_total{instance="VI_LOGS",reason="destination"}`); got < rounds {
		t.Errorf("lb1 counted %v destination drops, want at least %d", got, rounds)
	}

	// The same advert to the group is obeyed: only the destination made the difference.
	from = lb1.lines()
	if err := f.Send(higher, 255); err != nil {
		t.Fatal(err)
	}
	lb1.waitState(from, "BACKUP", 5*time.Second)
}

// scrapeCounter reads one sample of the daemon's /metrics on 127.0.0.1:9479 inside host h.
func scrapeCounter(t testing.TB, h *lab.Host, series string) float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := h.Run(ctx, "curl", "-sf", "http://127.0.0.1:9479/metrics")
	if err != nil {
		t.Fatalf("%s: scrape: %v", h.Name, err)
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`)
	m := re.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("%s: no %s in /metrics", h.Name, series)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestRollingVIPChangeKeepsThePair (issue 9 item 1): the MASTER is reloaded with a second VIP
// before the BACKUP. Their lists now differ but overlap: the BACKUP keeps accepting the
// MASTER's adverts (counted as a mismatch, logged once) and stays BACKUP, where keepalived 2.2.7
// drops them and both hosts become MASTER until both are reloaded.
func TestRollingVIPChangeKeepsThePair(t *testing.T) {
	t.Parallel()
	p, lb1, lb2 := startElectedPair(t)

	good, err := os.ReadFile(lb1.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	withTwo := strings.Replace(string(good), "virtual_ipaddress: [10.0.0.10/24]", "virtual_ipaddress: [10.0.0.10/24, 10.0.0.20/24]", 1)
	if err := os.WriteFile(lb1.cfgPath, []byte(withTwo), 0o600); err != nil {
		t.Fatal(err)
	}
	from2 := lb2.lines()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := p.lb1.Run(ctx, hapairBin, "reload", "--config", lb1.cfgPath); err != nil {
		t.Fatalf("reload of lb1: %v\n%s", err, out)
	}
	// Longer than Master_Down_Interval: a BACKUP that dropped the adverts would take over.
	time.Sleep(seedMasterDown + time.Second)
	if h := vipHolders(t, p.lb1, p.lb2); len(h) != 1 || h[0] != p.lb1.Name {
		t.Fatalf("during the rolling change the VIP is on %v, want lb1 alone", h)
	}
	var transitions, noted int
	for _, l := range lb2.proc.Lines()[from2:] {
		if strings.Contains(l.Text, "Entering") {
			transitions++
		}
		if strings.Contains(l.Text, "address list differs") {
			noted++
		}
	}
	if transitions != 0 || noted != 1 {
		t.Errorf("lb2 during the rolling change: %d transitions (want 0), %d lines about the list (want 1)\n%s", transitions, noted, lb2.proc.Output())
	}
	if got := scrapeCounter(t, p.lb2, `hapair_vrrp_address_list_mismatches_total{instance="VI_LOGS"}`); got < 3 {
		t.Errorf("lb2 counted %v address-list mismatches, want one per advert (at least 3)", got)
	}
}
