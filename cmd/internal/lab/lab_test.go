package lab_test

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hapair/hapair/cmd/internal/lab"
	"github.com/hapair/hapair/cmd/internal/lab/labtest"
	"github.com/hapair/hapair/internal/testenv"
)

var vip = netip.MustParseAddr("10.0.0.10")

func ping(ctx context.Context, from *lab.Host, to netip.Addr) error {
	_, err := from.Run(ctx, "ping", "-c", "1", "-W", "1", to.String())
	return err
}

func TestHostsReachEachOtherOverTheBridge(t *testing.T) {
	t.Parallel()
	labtest.RequireCommands(t, "ping")
	l := labtest.New(t)
	ctx := labtest.Context(t)
	a := labtest.AddHost(t, l, "a", l.Addr(1))
	b := labtest.AddHost(t, l, "b", l.Addr(2))
	c := labtest.AddHost(t, l, "c", l.Addr(3))

	for _, h := range []*lab.Host{a, b, c} {
		if ok, err := h.HasAddr(h.IP()); err != nil || !ok {
			t.Fatalf("%s: own address %s on eth0: %v, %v", h, h.IP(), ok, err)
		}
		if len(h.MAC()) != 6 {
			t.Fatalf("%s: MAC %v", h, h.MAC())
		}
		if _, err := h.LinkLocal(); err != nil {
			t.Fatalf("link-local (DAD off, so usable at once): %v", err)
		}
	}
	for _, from := range []*lab.Host{a, b, c} {
		for _, to := range []*lab.Host{a, b, c} {
			if from == to {
				continue
			}
			if err := ping(ctx, from, to.IP()); err != nil {
				t.Fatalf("ping %s -> %s: %v", from, to, err)
			}
			mac, err := from.Neighbor(to.IP())
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(mac, to.MAC()) {
				t.Fatalf("%s learned %v for %s, want %v", from, mac, to.IP(), to.MAC())
			}
		}
	}

	// Isolate: the others cannot reach c, and c's link stays up.
	if err := c.Isolate(); err != nil {
		t.Fatal(err)
	}
	if err := ping(ctx, a, c.IP()); err == nil {
		t.Fatal("ping a -> isolated c succeeded")
	}
	if out, err := c.Run(ctx, "ip", "-br", "link", "show", "eth0"); err != nil || !strings.Contains(out, "UP") {
		t.Fatalf("isolated c's eth0 should stay up: %q %v", out, err)
	}
	if err := c.Heal(); err != nil {
		t.Fatal(err)
	}
	if err := ping(ctx, a, c.IP()); err != nil {
		t.Fatalf("ping after Heal: %v", err)
	}
	// Heal is idempotent and DropVRRP's random form loads.
	if err := c.Heal(); err != nil {
		t.Fatal(err)
	}
	if err := c.DropVRRP(30); err != nil {
		t.Fatal(err)
	}
	out, err := c.Run(ctx, "nft", "list", "ruleset")
	if err != nil || !strings.Contains(out, "numgen random mod 100 < 30") {
		t.Fatalf("ruleset after DropVRRP(30): %v\n%s", err, out)
	}

	// Addresses added later show up; the client dials from inside the host.
	extra := netip.MustParsePrefix("fd00::3/64")
	if err := c.AddAddr(extra); err != nil {
		t.Fatal(err)
	}
	if ok, err := c.HasAddr(extra.Addr()); err != nil || !ok {
		t.Fatalf("HasAddr(%s) = %v, %v", extra, ok, err)
	}
	if ok, err := a.HasAddr(extra.Addr()); err != nil || ok {
		t.Fatalf("a has c's address: %v, %v", ok, err)
	}
}

// keepalivedPair starts the seed's pair (v2, PASS, advert_int 1, 110/100)
// on lb1 and lb2 and waits until lb1 is MASTER and holds the VIP.
//
// Tests that time keepalived do not run in parallel: on a busy two-core
// machine keepalived's adverts come late enough to trigger spurious
// takeovers, which says nothing about the lab.
func keepalivedPair(t *testing.T, ctx context.Context, l *lab.Lab, track1, track2 *lab.Script) (lb1, lb2 *lab.Host, k1, k2 *lab.Keepalived) {
	t.Helper()
	labtest.RequireCommands(t, "keepalived")
	lb1 = labtest.AddHost(t, l, "lb1", l.Addr(11))
	lb2 = labtest.AddHost(t, l, "lb2", l.Addr(12))
	cfg := lab.KeepalivedConfig{AuthPass: "1a2b3c4d", VIPs: []string{"10.0.0.10/24"}}
	c1, c2 := cfg, cfg
	c1.State, c1.Priority, c1.TrackScript = "MASTER", 110, track1
	c2.State, c2.Priority, c2.TrackScript = "BACKUP", 100, track2
	var err error
	if k1, err = lb1.StartKeepalived(ctx, c1, ""); err != nil {
		t.Fatal(err)
	}
	if k2, err = lb2.StartKeepalived(ctx, c2, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := k1.WaitState(ctx, 0, "MASTER"); err != nil {
		t.Fatal(err)
	}
	if _, err := k2.WaitState(ctx, 0, "BACKUP"); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitFor(ctx, 5*time.Second, func() (bool, error) { return lb1.HasAddr(vip) }); err != nil {
		t.Fatalf("VIP on MASTER lb1: %v", err)
	}
	return lb1, lb2, k1, k2
}

// vipHolders lists the hosts holding the VIP.
func vipHolders(t *testing.T, hosts ...*lab.Host) []string {
	t.Helper()
	var on []string
	for _, h := range hosts {
		ok, err := h.HasAddr(vip)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			on = append(on, h.Name)
		}
	}
	return on
}

// assertHolderFor checks for d that the VIP is on want and nowhere else.
func assertHolderFor(t *testing.T, d time.Duration, want string, hosts ...*lab.Host) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if on := vipHolders(t, hosts...); !slices.Equal(on, []string{want}) {
			t.Fatalf("VIP on %v, want only on %s", on, want)
		}
	}
}

func TestKeepalivedElectsOneMasterAndFailsOver(t *testing.T) {
	// Not parallel: keepalived's timing is measured (see keepalivedPair).
	l := labtest.New(t)
	ctx := labtest.Context(t)
	lb1, lb2, k1, k2 := keepalivedPair(t, ctx, l, nil, nil)

	// Multicast adverts cross the bridge: for longer than the master-down
	// interval (3 x 1 s + skew) lb2 stays BACKUP and the VIP stays on lb1.
	assertHolderFor(t, 4*time.Second, "lb1", lb1, lb2)
	if s := k2.State(); s != "BACKUP" {
		t.Fatalf("lb2 state %q", s)
	}

	// The master's keepalived dies without a word: lb2 takes over after the
	// master-down interval, 3*1s + (256-100)/256 s = 3.61 s after the last advert.
	mark := k2.LineCount()
	killed := time.Now()
	if err := k1.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitFor(ctx, 6*time.Second, func() (bool, error) { return lb2.HasAddr(vip) }); err != nil {
		t.Fatalf("VIP on lb2 after killing lb1's keepalived: %v", err)
	}
	took := time.Since(killed)
	line, err := k2.WaitState(ctx, mark, "MASTER")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("keepalived: master killed -> VIP on backup in %v (logged MASTER after %v)", took.Round(time.Millisecond),
		line.At.Sub(killed).Round(time.Millisecond))
	// At most one advert interval less (the kill may land just before an
	// advert was due), at most the interval plus slack for a busy machine.
	if took < 2*time.Second || took > 6*time.Second {
		t.Fatalf("takeover after %v, want the master-down interval of about 3.6 s", took)
	}
	// keepalived killed with SIGKILL cannot take its VIP away: lb1 keeps a
	// stale copy (what hapair's start-up stale VIP removal is about).
	if on := vipHolders(t, lb1, lb2); !slices.Equal(on, []string{"lb1", "lb2"}) {
		t.Fatalf("VIP on %v after failover, want the new master lb2 and the stale copy on lb1", on)
	}
}

// TestKeepalivedTakesOverFromIsolatedMaster: the master host drops off the
// network (link up, nothing passes), as when a machine hangs.
func TestKeepalivedTakesOverFromIsolatedMaster(t *testing.T) {
	// Not parallel: keepalived's timing is measured (see keepalivedPair).
	l := labtest.New(t)
	ctx := labtest.Context(t)
	lb1, lb2, _, k2 := keepalivedPair(t, ctx, l, nil, nil)
	mark := k2.LineCount()
	isolated := time.Now()
	if err := lb1.Isolate(); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitFor(ctx, 6*time.Second, func() (bool, error) { return lb2.HasAddr(vip) }); err != nil {
		t.Fatalf("VIP on lb2 after isolating lb1: %v", err)
	}
	took := time.Since(isolated)
	if _, err := k2.WaitState(ctx, mark, "MASTER"); err != nil {
		t.Fatal(err)
	}
	t.Logf("keepalived: master isolated -> VIP on backup in %v", took.Round(time.Millisecond))
	if took < 2*time.Second || took > 6*time.Second {
		t.Fatalf("takeover after %v, want the master-down interval of about 3.6 s", took)
	}
	// Back on the network, lb1 (110, preempting) wins again and lb2 lets go.
	mark = k2.LineCount()
	if err := lb1.Heal(); err != nil {
		t.Fatal(err)
	}
	if _, err := k2.WaitState(ctx, mark, "BACKUP"); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitFor(ctx, 3*time.Second, func() (bool, error) {
		return slices.Equal(vipHolders(t, lb1, lb2), []string{"lb1"}), nil
	}); err != nil {
		t.Fatalf("after Heal the VIP should be on lb1 only: %v (on %v)", err, vipHolders(t, lb1, lb2))
	}
}

func TestDroppedVRRPSplitsTheBrainAndHealMends(t *testing.T) {
	// Not parallel: keepalived's timing is measured (see keepalivedPair).
	l := labtest.New(t)
	ctx := labtest.Context(t)
	lb1, lb2, k1, k2 := keepalivedPair(t, ctx, l, nil, nil)

	mark2 := k2.LineCount()
	if err := lb2.DropVRRP(100); err != nil {
		t.Fatal(err)
	}
	if _, err := k2.WaitState(ctx, mark2, "MASTER"); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitFor(ctx, 3*time.Second, func() (bool, error) {
		return len(vipHolders(t, lb1, lb2)) == 2, nil
	}); err != nil {
		t.Fatalf("split brain: VIP on both: %v (on %v)", err, vipHolders(t, lb1, lb2))
	}
	if s := k1.State(); s != "MASTER" {
		t.Fatalf("lb1 state %q during split brain", s)
	}

	mark2 = k2.LineCount()
	if err := lb2.Heal(); err != nil {
		t.Fatal(err)
	}
	if _, err := k2.WaitState(ctx, mark2, "BACKUP"); err != nil {
		t.Fatal(err)
	}
	if err := l.WaitFor(ctx, 3*time.Second, func() (bool, error) {
		return slices.Equal(vipHolders(t, lb1, lb2), []string{"lb1"}), nil
	}); err != nil {
		t.Fatalf("after Heal the VIP should be on lb1 only: %v (on %v)", err, vipHolders(t, lb1, lb2))
	}
}

// TestClientSeesHAProxyFailover runs the seed's setup: HAProxy on both load
// balancers, keepalived tracking it with weight -20, a client on the VIP.
// Killing lb1's HAProxy moves the VIP to lb2, and the client's statistics
// show the outage and the change of server.
func TestClientSeesHAProxyFailover(t *testing.T) {
	// Not parallel: keepalived's timing is measured (see keepalivedPair).
	labtest.RequireCommands(t, "haproxy", "keepalived", "pgrep")
	l := labtest.New(t)
	ctx := labtest.Context(t)
	lb1 := labtest.AddHost(t, l, "lb1", l.Addr(11))
	lb2 := labtest.AddHost(t, l, "lb2", l.Addr(12))
	client := labtest.AddHost(t, l, "client", l.Addr(50))
	hp1, err := lb1.StartHAProxy(ctx, lab.HAProxyConfig{Name: "loglb01"}.Render(), "")
	if err != nil {
		t.Fatal(err)
	}
	hp2, err := lb2.StartHAProxy(ctx, lab.HAProxyConfig{Name: "loglb02"}.Render(), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []*lab.Host{lb1, lb2} {
		if err := h.WaitTCP(ctx, h.IP().String()+":80", 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	cfg := lab.KeepalivedConfig{AuthPass: "1a2b3c4d", VIPs: []string{"10.0.0.10/24"}}
	c1, c2 := cfg, cfg
	c1.State, c1.Priority, c1.TrackScript = "MASTER", 110, hp1.TrackScript(-20)
	c2.Priority, c2.TrackScript = 100, hp2.TrackScript(-20)
	k1, err := lb1.StartKeepalived(ctx, c1, "")
	if err != nil {
		t.Fatal(err)
	}
	k2, err := lb2.StartKeepalived(ctx, c2, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k1.WaitState(ctx, 0, "MASTER"); err != nil {
		t.Fatal(err)
	}
	scriptOK := regexp.MustCompile(`VRRP_Script\(chk_haproxy\) succeeded`)
	scriptFailed := regexp.MustCompile(`VRRP_Script\(chk_haproxy\) failed`)
	for _, k := range []*lab.Keepalived{k1, k2} {
		if _, err := k.WaitForLine(ctx, scriptOK); err != nil {
			t.Fatal(err)
		}
	}

	cl, err := client.StartClient(ctx, "http://"+vip.String()+"/", 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitServedBy(ctx, time.Time{}, "loglb01"); err != nil {
		t.Fatal(err)
	}

	mark1, mark2 := k1.LineCount(), k2.LineCount()
	killed := time.Now()
	if err := hp1.Kill(); err != nil {
		t.Fatal(err)
	}
	// Why the track script uses lb1's own pid file: the seed's plain pgrep
	// in lb1 still finds lb2's HAProxy, as all hosts share one pid namespace.
	if _, err := lb1.Run(ctx, "pgrep", "-x", "haproxy"); err != nil {
		t.Errorf("expected `pgrep -x haproxy` in lb1 to see lb2's HAProxy: %v", err)
	}
	if _, err := lb1.Run(ctx, "pgrep", "-F", hp1.PIDFile, "-x", "haproxy"); err == nil {
		t.Error("pgrep -F on lb1's pid file still finds a HAProxy")
	}
	if _, err := k1.WaitForLineAfter(ctx, mark1, scriptFailed); err != nil {
		t.Fatal(err)
	}
	if _, err := k2.WaitState(ctx, mark2, "MASTER"); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitServedBy(ctx, killed, "loglb02"); err != nil {
		t.Fatal(err)
	}
	took := time.Since(killed)
	st := cl.Stop()
	t.Logf("keepalived + pgrep -F track script: HAProxy killed -> client served by lb2 after %v; %s",
		took.Round(time.Millisecond), st)
	if st.OK == 0 || st.Failed == 0 {
		t.Fatalf("client should see successes and failures: %s", st)
	}
	if st.Responses["loglb01"] == 0 || st.Responses["loglb02"] == 0 {
		t.Fatalf("client should have been served by both: %s", st)
	}
	if len(st.Changes) != 1 || st.Changes[0].From != "loglb01" || st.Changes[0].To != "loglb02" {
		t.Fatalf("changes %+v, want one from loglb01 to loglb02", st.Changes)
	}
	// The outage: from HAProxy's death (first refused request) until lb2
	// answers on the VIP; with interval 2 fall 2 and the master-down interval
	// it lasts several seconds (the seed measured 7.6-8.6 s).
	var w lab.Window
	for _, x := range st.Windows {
		if x.Duration() > w.Duration() {
			w = x
		}
	}
	if w.Start.Before(killed.Add(-200*time.Millisecond)) || w.End.IsZero() || w.Duration() < 2*time.Second || w.Duration() > took+100*time.Millisecond {
		t.Fatalf("failure window %v..%v (%v), killed at %v, served by lb2 %v later", w.Start, w.End, w.Duration(), killed, took)
	}
	if w.End.Before(st.Changes[0].At) {
		t.Fatalf("window ended %v before the change of server %v", w.End, st.Changes[0].At)
	}
	// lb2's own HAProxy kept running, so its script never failed.
	for _, line := range k2.Lines() {
		if scriptFailed.MatchString(line.Text) {
			t.Fatalf("lb2's track script failed: %s", line.Text)
		}
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	t.Parallel()
	labtest.RequireRoot(t)
	labtest.RequireCommands(t, "ip", "nft")
	ctx := labtest.Context(t)
	dir := filepath.Join(t.TempDir(), "lab")
	l, err := lab.New(ctx, lab.Options{Dir: dir, Log: labtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			l.Close()
		}
	})
	h1 := labtest.AddHost(t, l, "one", l.Addr(1))
	labtest.AddHost(t, l, "two", l.Addr(2))
	p, err := h1.Start(ctx, "", "sleep", "600")
	if err != nil {
		t.Fatal(err)
	}
	// A process started by hand through Command, in a process group of its
	// own, not known to the lab except by its namespace.
	cmd := h1.Command(ctx, "sh", "-c", "sleep 600 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	names := l.Namespaces()
	if len(names) != 3 {
		t.Fatalf("namespaces %v", names)
	}

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range names {
		if strings.Contains(string(out), ns) {
			t.Errorf("namespace %s still listed:\n%s", ns, out)
		}
		if _, err := os.Stat(filepath.Join(lab.MarkerDir, ns+".pid")); !os.IsNotExist(err) {
			t.Errorf("marker of %s: %v", ns, err)
		}
	}
	if !p.Exited() {
		t.Error("process started through the lab still runs")
	}
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Error("process started with Command still runs")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("a given Dir is kept: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := l.AddHost("three", l.Addr(3)); err == nil {
		t.Error("AddHost after Close succeeded")
	}
}

func TestKeepalivedConfigRender(t *testing.T) {
	tests := []struct {
		name string
		cfg  lab.KeepalivedConfig
		want []string
		not  []string
	}{
		{
			name: "seed master",
			cfg: lab.KeepalivedConfig{RouterID: "loglb01", State: "MASTER", Priority: 110, AuthPass: "1a2b3c4d",
				VIPs: []string{"10.0.0.10/24"}, TrackScript: &lab.Script{Cmd: "/usr/bin/pgrep -x haproxy", Weight: -20}},
			want: []string{"router_id loglb01", "vrrp_script chk_haproxy {", `script "/usr/bin/pgrep -x haproxy"`,
				"interval 2", "weight -20", "fall 2", "rise 2", "vrrp_instance VI_LOGS {", "state MASTER",
				"interface eth0", "virtual_router_id 51", "priority 110", "advert_int 1", "version 2",
				"auth_type PASS", "auth_pass 1a2b3c4d", "10.0.0.10/24", "track_script {\n        chk_haproxy"},
			not: []string{"nopreempt", "unicast", "v3_checksum_as_v2"},
		},
		{
			name: "v3 unicast nopreempt",
			cfg: lab.KeepalivedConfig{Version: 3, AdvertInt: "0.05", Nopreempt: true, UnicastSrc: "10.0.0.12",
				UnicastPeers: []string{"10.0.0.11"}, VIPs: []string{"fd00::10/64"}, ChecksumAsV2: true},
			want: []string{"version 3", "advert_int 0.05", "nopreempt", "unicast_src_ip 10.0.0.12",
				"unicast_peer {\n        10.0.0.11\n    }", "fd00::10/64", "v3_checksum_as_v2", "state BACKUP", "priority 100"},
			not: []string{"authentication", "vrrp_script", "track_script"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.cfg.Render()
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("missing %q in\n%s", w, got)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(got, n) {
					t.Errorf("unexpected %q in\n%s", n, got)
				}
			}
		})
	}

	// keepalived itself accepts what Render writes.
	if _, err := exec.LookPath("keepalived"); err != nil || os.Geteuid() != 0 {
		testenv.SkipOrFail(t, "keepalived -t needs keepalived and root")
	}
	conf := filepath.Join(t.TempDir(), "keepalived.conf")
	if err := os.WriteFile(conf, []byte(tests[0].cfg.Render()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("keepalived", "-t", "-f", conf).CombinedOutput(); err != nil {
		t.Fatalf("keepalived -t: %v\n%s", err, out)
	}
}

func TestHAProxyConfigRender(t *testing.T) {
	got := lab.HAProxyConfig{Name: "loglb01"}.Render()
	for _, w := range []string{"bind :80", `string "loglb01\n"`, "bind 127.0.0.1:8404", "stats uri /stats", "monitor-uri /healthz"} {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in\n%s", w, got)
		}
	}
	if _, err := exec.LookPath("haproxy"); err != nil {
		testenv.SkipOrFail(t, "haproxy not installed")
	}
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfg, []byte(got), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("haproxy", "-c", "-f", cfg).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
}
