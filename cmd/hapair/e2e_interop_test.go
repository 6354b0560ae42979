package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/hapair/hapair/cmd/internal/lab"
)

// interopCase is one VRRP flavour both implementations must agree on.
type interopCase struct {
	name      string
	version   int
	advertInt time.Duration
	authPass  string
	unicast   bool
}

var interopCases = []interopCase{
	{name: "v2_pass_multicast", version: 2, advertInt: time.Second, authPass: "1a2b3c4d"},
	{name: "v3_multicast_100ms", version: 3, advertInt: 100 * time.Millisecond},
	{name: "v2_unicast", version: 2, advertInt: time.Second, authPass: "1a2b3c4d", unicast: true},
}

// TestKeepalivedInterop puts hapair and Debian's keepalived in one VRRP group, each way round:
// the higher priority is elected, only it holds the VIP, and when it dies the other takes over.
func TestKeepalivedInterop(t *testing.T) {
	for _, tc := range interopCases {
		for _, hapairMaster := range []bool{true, false} {
			role := "hapair_master"
			if !hapairMaster {
				role = "keepalived_master"
			}
			t.Run(tc.name+"/"+role, func(t *testing.T) {
				// hapair MASTER at 1 s adverts bounds nothing closer than keepalived's
				// Master_Down_Interval (3.6 s) and its takeover + 2 s: those cases run side by
				// side, after the others (a takeover timed, or adverts at 100 ms) ran alone.
				if hapairMaster && tc.advertInt >= time.Second {
					t.Parallel()
				}
				runInterop(t, tc, hapairMaster)
			})
		}
	}
}

func runInterop(t *testing.T, tc interopCase, hapairMaster bool) {
	p := newPair(t)
	hHost, kHost := p.lb1, p.lb2 // hapair on lb1, keepalived on lb2
	hPrio, kPrio := 100, 110
	if hapairMaster {
		hPrio, kPrio = 110, 100
	}
	node := labNode{Priority: hPrio, Version: tc.version, AdvertInt: tc.advertInt.String(), AuthPass: tc.authPass}
	kcfg := lab.KeepalivedConfig{
		Priority: kPrio, Version: tc.version, AuthPass: tc.authPass, VIPs: []string{vipCIDR},
		AdvertInt: strconv.FormatFloat(tc.advertInt.Seconds(), 'f', -1, 64),
	}
	if tc.unicast {
		node.UnicastSrc, node.UnicastPeers = hHost.IP().String(), []string{kHost.IP().String()}
		kcfg.UnicastSrc, kcfg.UnicastPeers = kHost.IP().String(), []string{hHost.IP().String()}
	}
	masterDown := 3*tc.advertInt + time.Duration(256-100)*tc.advertInt/256
	if tc.version == 2 {
		masterDown = 3*tc.advertInt + time.Duration(256-100)*time.Second/256
	}

	h := startDaemon(t, hHost, node)
	k, err := kHost.StartKeepalived(context.Background(), kcfg, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- keepalived log ---\n%s", k.Output())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()

	if hapairMaster {
		h.waitState(0, "MASTER", 10*time.Second)
		if _, err := k.WaitState(ctx, 0, "BACKUP"); err != nil {
			t.Fatalf("keepalived never entered BACKUP: %v", err)
		}
		waitVIP(t, 3*time.Second, hHost, hHost, kHost)
		assertStable(t, 3*tc.advertInt+500*time.Millisecond, hHost, hHost, kHost)

		kFrom := k.LineCount()
		killed := h.kill()
		if _, err := k.WaitState(ctx, kFrom, "MASTER"); err != nil {
			t.Fatalf("keepalived did not take over: %v", err)
		}
		took := waitVIPOn(t, kHost, masterDown+2*time.Second)
		t.Logf("%s: hapair MASTER SIGKILLed, keepalived owns the VIP after %s (Master_Down_Interval %s)",
			tc.name, took.Sub(killed).Round(time.Millisecond), masterDown)
		return
	}

	if _, err := k.WaitState(ctx, 0, "MASTER"); err != nil {
		t.Fatalf("keepalived never entered MASTER: %v", err)
	}
	h.waitState(0, "BACKUP", 10*time.Second)
	waitVIP(t, 3*time.Second, kHost, hHost, kHost)
	assertStable(t, 3*tc.advertInt+500*time.Millisecond, kHost, hHost, kHost)

	// SIGKILL to the whole process group: keepalived's VRRP child would otherwise see its
	// parent die and leave gracefully with a priority-0 advert, which is not a hard failure.
	hFrom := h.lines()
	killed := time.Now()
	if err := k.Kill(); err != nil {
		t.Fatal(err)
	}
	h.waitState(hFrom, "MASTER", masterDown+2*time.Second)
	took := waitVIPOn(t, hHost, masterDown+2*time.Second)
	t.Logf("%s: keepalived MASTER SIGKILLed, hapair owns the VIP after %s (Master_Down_Interval %s)",
		tc.name, took.Sub(killed).Round(time.Millisecond), masterDown)
	if d := took.Sub(killed); d > masterDown+500*time.Millisecond {
		t.Errorf("hapair took %s to take over, want within Master_Down_Interval %s + 500ms", d, masterDown)
	}
}

// assertStable checks for a while that only want holds the VIP (no flapping, no split brain).
func assertStable(t *testing.T, d time.Duration, want *lab.Host, hosts ...*lab.Host) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if h := vipHolders(t, hosts...); len(h) != 1 || h[0] != want.Name {
			t.Fatalf("VIP held by %v, want only %s", h, want.Name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestKeepalivedWrongPassword: different passwords keep hapair and keepalived from forming one
// group (both end up MASTER), and hapair counts the authentication failures.
func TestKeepalivedWrongPassword(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	h := startDaemon(t, p.lb1, labNode{Priority: 110, AuthPass: "1a2b3c4d", Listen: "127.0.0.1:9479"})
	k, err := p.lb2.StartKeepalived(context.Background(), lab.KeepalivedConfig{
		Priority: 100, AuthPass: "deadbeef", VIPs: []string{vipCIDR},
	}, "")
	if err != nil {
		t.Fatal(err)
	}
	h.waitState(0, "MASTER", 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := k.WaitState(ctx, 0, "MASTER"); err != nil {
		t.Fatalf("keepalived with another password should not hear hapair and become MASTER: %v", err)
	}
	authDrops := regexp.MustCompile(`(?m)^hapair_vrrp_packets_dropped_total\{instance="VI_LOGS",reason="auth"\} (\d+)`)
	deadline := time.Now().Add(5 * time.Second)
	for {
		body := scrape(t, p.lb1, "127.0.0.1:9479")
		if m := authDrops.FindStringSubmatch(body); m != nil && m[1] != "0" {
			t.Logf("hapair counted %s authentication failures", m[1])
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no authentication drops counted:\n%s", grepLines(body, "dropped"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// scrape fetches /metrics from inside a host's namespace.
func scrape(t testing.TB, h *lab.Host, addr string) string {
	t.Helper()
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: h.DialContext}}
	resp, err := client.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s on %s: %v", addr, h.Name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func grepLines(s, sub string) string {
	var out []byte
	for _, l := range regexp.MustCompile(`(?m)^.*`+regexp.QuoteMeta(sub)+`.*$`).FindAllString(s, -1) {
		out = append(out, l...)
		out = append(out, '\n')
	}
	return string(out)
}

// TestKeepalivedInteropGracefulStop: a stopping MASTER sends priority 0 and the other
// implementation takes over after its skew time, each way round (VRRPv2, PASS, multicast).
func TestKeepalivedInteropGracefulStop(t *testing.T) {
	const skewAt100 = 609 * time.Millisecond
	t.Run("hapair_master", func(t *testing.T) {
		p := newPair(t)
		h := startDaemon(t, p.lb1, labNode{Priority: 110, AuthPass: "1a2b3c4d"})
		k, err := p.lb2.StartKeepalived(context.Background(), lab.KeepalivedConfig{Priority: 100, AuthPass: "1a2b3c4d", VIPs: []string{vipCIDR}}, "")
		if err != nil {
			t.Fatal(err)
		}
		h.waitState(0, "MASTER", 10*time.Second)
		waitVIP(t, 3*time.Second, p.lb1, p.lb1, p.lb2)
		stopped := h.terminate()
		took := waitVIPOn(t, p.lb2, 3*time.Second)
		t.Logf("hapair MASTER SIGTERMed, keepalived owns the VIP after %s (skew time %s)", took.Sub(stopped).Round(time.Millisecond), skewAt100)
		if d := took.Sub(stopped); d > skewAt100+500*time.Millisecond {
			t.Errorf("keepalived took %s after hapair's priority 0", d)
		}
		if k.State() != "MASTER" {
			t.Errorf("keepalived state %q", k.State())
		}
	})
	t.Run("keepalived_master", func(t *testing.T) {
		p := newPair(t)
		h := startDaemon(t, p.lb1, labNode{Priority: 100, AuthPass: "1a2b3c4d"})
		k, err := p.lb2.StartKeepalived(context.Background(), lab.KeepalivedConfig{Priority: 110, AuthPass: "1a2b3c4d", VIPs: []string{vipCIDR}}, "")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if _, err := k.WaitState(ctx, 0, "MASTER"); err != nil {
			t.Fatal(err)
		}
		h.waitState(0, "BACKUP", 10*time.Second)
		waitVIP(t, 3*time.Second, p.lb2, p.lb1, p.lb2)
		from := h.lines()
		stopped := time.Now()
		if err := k.Stop(10 * time.Second); err != nil {
			t.Logf("keepalived stop: %v", err)
		}
		h.waitState(from, "MASTER", 3*time.Second)
		took := waitVIP(t, 3*time.Second, p.lb1, p.lb1, p.lb2)
		t.Logf("keepalived MASTER SIGTERMed, hapair owns the VIP after %s (skew time %s)", took.Sub(stopped).Round(time.Millisecond), skewAt100)
		// The clock starts at SIGTERM: keepalived itself takes a few hundred ms to send its
		// priority-0 advert, so the bound is looser than the skew time.
		if d := took.Sub(stopped); d > skewAt100+time.Second {
			t.Errorf("hapair took %s after keepalived's SIGTERM", d)
		}
	})
}
