package metrics

import (
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"github.com/hapair/hapair/supervisor"

	"github.com/hapair/hapair/vrrp"
)

// TestDesignContract checks every metric DESIGN.md names, with its type and
// exactly its label set, plus the metrics added by issue 4.
func TestDesignContract(t *testing.T) {
	m := New(BuildInfo{Version: "1.2.3", Commit: "abc1234"})
	m.EnableKeepalivedCompat()
	populate(t, m)
	mfs := gather(t, m)

	tests := []struct {
		name   string
		typ    dto.MetricType
		labels string // sorted, comma separated
	}{
		// DESIGN.md's table: dashboards and alert rules depend on these.
		{"hapair_vrrp_state", dto.MetricType_GAUGE, "instance,interface,vrid"},
		{"hapair_vrrp_transitions_total", dto.MetricType_COUNTER, "from,instance,to"},
		{"hapair_vrrp_priority", dto.MetricType_GAUGE, "instance"},
		{"hapair_vrrp_takeover_seconds", dto.MetricType_HISTOGRAM, "instance"},
		{"hapair_vrrp_adverts_sent_total", dto.MetricType_COUNTER, "instance"},
		{"hapair_vrrp_adverts_received_total", dto.MetricType_COUNTER, "instance"},
		{"hapair_vrrp_packets_dropped_total", dto.MetricType_COUNTER, "instance,reason"},
		{"hapair_haproxy_up", dto.MetricType_GAUGE, ""},
		{"hapair_haproxy_restarts_total", dto.MetricType_COUNTER, ""},
		{"hapair_haproxy_reloads_total", dto.MetricType_COUNTER, "result"},
		{"hapair_check_up", dto.MetricType_GAUGE, "check"},
		// Additions.
		{"hapair_build_info", dto.MetricType_GAUGE, "commit,goversion,version"},
		{"hapair_vrrp_release_seconds", dto.MetricType_HISTOGRAM, "instance"},
		{"hapair_vrrp_last_takeover_seconds", dto.MetricType_GAUGE, "instance"},
		{"hapair_vrrp_priority_zero_sent_total", dto.MetricType_COUNTER, "instance"},
		{"hapair_vrrp_priority_zero_received_total", dto.MetricType_COUNTER, "instance"},
		{"hapair_vrrp_garp_sent_total", dto.MetricType_COUNTER, "instance"},
		{"hapair_vrrp_address_list_mismatches_total", dto.MetricType_COUNTER, "instance"},
		{"hapair_vrrp_vip_errors_total", dto.MetricType_COUNTER, "instance,op"},
		{"hapair_vrrp_advert_send_errors_total", dto.MetricType_COUNTER, "instance"},
		{"hapair_haproxy_last_exit_status", dto.MetricType_GAUGE, ""},
		{"hapair_check_results_total", dto.MetricType_COUNTER, "check,result"},
		{"hapair_check_duration_seconds", dto.MetricType_HISTOGRAM, "check"},
		{"hapair_config_reloads_total", dto.MetricType_COUNTER, "result"},
		{"hapair_config_last_reload_successful", dto.MetricType_GAUGE, ""},
		{"hapair_config_last_reload_success_timestamp_seconds", dto.MetricType_GAUGE, ""},
		// keepalived exporter compatibility.
		{"keepalived_up", dto.MetricType_GAUGE, ""},
		{"keepalived_vrrp_state", dto.MetricType_GAUGE, "iname,intf,ip_address,vrid"},
		{"keepalived_advertisements_received_total", dto.MetricType_COUNTER, "iname,intf,vrid"},
		{"keepalived_advertisements_sent_total", dto.MetricType_COUNTER, "iname,intf,vrid"},
		{"keepalived_become_master_total", dto.MetricType_COUNTER, "iname,intf,vrid"},
		{"keepalived_release_master_total", dto.MetricType_COUNTER, "iname,intf,vrid"},
		{"keepalived_priority_zero_sent_total", dto.MetricType_COUNTER, "iname,intf,vrid"},
		{"keepalived_priority_zero_received_total", dto.MetricType_COUNTER, "iname,intf,vrid"},
		{"keepalived_ip_ttl_errors_total", dto.MetricType_COUNTER, "iname,intf,vrid"},
		{"keepalived_packet_length_errors_total", dto.MetricType_COUNTER, "iname,intf,vrid"},
		{"keepalived_authentication_failure_total", dto.MetricType_COUNTER, "iname,intf,vrid"},
		// Go and process collectors.
		{"go_goroutines", dto.MetricType_GAUGE, ""},
		{"process_resident_memory_bytes", dto.MetricType_GAUGE, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mf, ok := mfs[tt.name]
			if !ok {
				t.Fatalf("%s not exported", tt.name)
			}
			if mf.GetType() != tt.typ {
				t.Errorf("type = %v, want %v", mf.GetType(), tt.typ)
			}
			if got := joined(labelNames(mf)); got != tt.labels {
				t.Errorf("labels = %q, want %q", got, tt.labels)
			}
		})
	}
	// hapair_build_info carries the build and is 1.
	if v, ok := value(t, m, "hapair_build_info", labels("version", "1.2.3", "commit", "abc1234")); !ok || v != 1 {
		t.Errorf("hapair_build_info = %v (present %v), want 1", v, ok)
	}
	if _, ok := value(t, m, "hapair_build_info", labels("goversion", "")); ok {
		t.Error("hapair_build_info goversion empty, want runtime.Version()")
	}
}

func TestPromlintClean(t *testing.T) {
	m := New(BuildInfo{Version: "dev", Commit: "none"})
	m.EnableKeepalivedCompat()
	populate(t, m)
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestPreinitialised: before any event, the label sets an operator alerts on
// exist with 0, so increase() sees the first event and panels show zeros.
func TestPreinitialised(t *testing.T) {
	m := New(BuildInfo{})
	m.EnableKeepalivedCompat()
	m.Instance("VI_LOGS", "eth0", 51)
	tests := []struct {
		name   string
		labels map[string]string
		count  int
	}{
		{"hapair_haproxy_reloads_total", labels("result", "ok"), 1},
		{"hapair_haproxy_reloads_total", labels("result", "refused"), 1},
		{"hapair_haproxy_reloads_total", labels("result", "failed"), 1},
		{"hapair_config_reloads_total", labels("result", "ok"), 1},
		{"hapair_config_reloads_total", labels("result", "refused"), 1},
		{"hapair_config_reloads_total", labels("result", "failed"), 1},
		{"hapair_haproxy_restarts_total", nil, 1},
		{"hapair_haproxy_up", nil, 1},
		{"hapair_vrrp_packets_dropped_total", labels("instance", "VI_LOGS"), len(dropReasons())},
		{"hapair_vrrp_packets_dropped_total", labels("instance", "VI_LOGS", "reason", "ttl"), 1},
		{"hapair_vrrp_transitions_total", labels("instance", "VI_LOGS"), 12},
		{"hapair_vrrp_transitions_total", labels("instance", "VI_LOGS", "from", "BACKUP", "to", "MASTER"), 1},
		{"hapair_vrrp_vip_errors_total", labels("instance", "VI_LOGS", "op", "attach"), 1},
		{"hapair_vrrp_vip_errors_total", labels("instance", "VI_LOGS", "op", "detach"), 1},
		{"hapair_vrrp_state", labels("instance", "VI_LOGS", "interface", "eth0", "vrid", "51"), 1},
		{"hapair_vrrp_takeover_seconds", labels("instance", "VI_LOGS"), 1},
		{"hapair_vrrp_release_seconds", labels("instance", "VI_LOGS"), 1},
		{"hapair_vrrp_priority_zero_sent_total", labels("instance", "VI_LOGS"), 1},
		{"hapair_vrrp_garp_sent_total", labels("instance", "VI_LOGS"), 1},
		{"hapair_vrrp_address_list_mismatches_total", labels("instance", "VI_LOGS"), 1},
		{"hapair_vrrp_advert_send_errors_total", labels("instance", "VI_LOGS"), 1},
		{"keepalived_vrrp_state", labels("iname", "VI_LOGS", "ip_address", ""), 1},
		{"keepalived_become_master_total", labels("iname", "VI_LOGS", "intf", "eth0", "vrid", "51"), 1},
		// Absent until it happens: there is no honest value before the first exit.
		{"hapair_haproxy_last_exit_status", nil, 0},
	}
	for _, tt := range tests {
		if got := seriesCount(t, m, tt.name, tt.labels); got != tt.count {
			t.Errorf("%s%v: %d series, want %d", tt.name, tt.labels, got, tt.count)
		}
		if tt.count > 0 {
			if v, _ := value(t, m, tt.name, tt.labels); v != 0 {
				t.Errorf("%s%v = %v, want 0", tt.name, tt.labels, v)
			}
		}
	}
}

func TestInstanceMetrics(t *testing.T) {
	m := New(BuildInfo{})
	m.EnableKeepalivedCompat()
	vi := labels("instance", "VI_LOGS")
	im := m.Instance("VI_LOGS", "eth0", 51, netip.MustParsePrefix("10.0.0.10/24"), netip.MustParsePrefix("10.0.0.20/24"))

	im.SetState(vrrp.Backup)
	im.Transition(vrrp.Backup, vrrp.Master)
	im.Transition(vrrp.Master, vrrp.Fault)
	im.Transition(vrrp.Fault, vrrp.Backup)
	im.Transition(vrrp.Backup, vrrp.Master)
	im.SetPriority(90)
	im.AdvertSent(110)
	im.AdvertSent(110)
	im.AdvertSent(0)
	im.AdvertSendError()
	im.AdvertSendError()
	im.AdvertSendError()
	im.AdvertSendError()
	im.AdvertReceived(100)
	im.AdvertReceived(0)
	im.Dropped(vrrp.DropTTL)
	im.Dropped(vrrp.DropTTL)
	im.Dropped(vrrp.DropChecksum)
	im.Dropped(vrrp.DropReason("something-new"))
	im.GARPSent(5)
	im.GARPSent(0)
	im.GARPSent(-1)
	im.AddrListMismatch()
	im.AddrListMismatch()
	im.VIPError(vrrp.ActDetachVIPs)
	im.ObserveTakeover(1500 * time.Millisecond)
	im.ObserveTakeover(300 * time.Millisecond)
	im.ObserveRelease(time.Millisecond)

	kl := labels("iname", "VI_LOGS", "intf", "eth0", "vrid", "51")
	tests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"hapair_vrrp_state", vi, float64(vrrp.Master)}, // Transition sets the gauge
		{"hapair_vrrp_transitions_total", labels("instance", "VI_LOGS", "from", "BACKUP", "to", "MASTER"), 2},
		{"hapair_vrrp_transitions_total", labels("instance", "VI_LOGS", "from", "MASTER", "to", "FAULT"), 1},
		{"hapair_vrrp_transitions_total", labels("instance", "VI_LOGS", "from", "MASTER", "to", "BACKUP"), 0},
		{"hapair_vrrp_priority", vi, 90},
		{"hapair_vrrp_adverts_sent_total", vi, 3}, // a failed advert is not one sent
		{"hapair_vrrp_advert_send_errors_total", vi, 4},
		{"hapair_vrrp_priority_zero_sent_total", vi, 1},
		{"hapair_vrrp_adverts_received_total", vi, 2},
		{"hapair_vrrp_priority_zero_received_total", vi, 1},
		{"hapair_vrrp_packets_dropped_total", labels("instance", "VI_LOGS", "reason", "ttl"), 2},
		{"hapair_vrrp_packets_dropped_total", labels("instance", "VI_LOGS", "reason", "checksum"), 1},
		{"hapair_vrrp_packets_dropped_total", labels("instance", "VI_LOGS", "reason", "something-new"), 1},
		{"hapair_vrrp_garp_sent_total", vi, 5},
		{"hapair_vrrp_address_list_mismatches_total", vi, 2},
		{"hapair_vrrp_vip_errors_total", labels("instance", "VI_LOGS", "op", "detach"), 1},
		{"hapair_vrrp_takeover_seconds", vi, 2}, // sample count
		{"hapair_vrrp_last_takeover_seconds", vi, 0.3},
		{"hapair_vrrp_release_seconds", vi, 1},
		{"keepalived_vrrp_state", labels("iname", "VI_LOGS", "ip_address", "10.0.0.10"), float64(vrrp.Master)},
		{"keepalived_vrrp_state", labels("iname", "VI_LOGS", "ip_address", "10.0.0.20"), float64(vrrp.Master)},
		{"keepalived_become_master_total", kl, 2},
		{"keepalived_release_master_total", kl, 1},
		{"keepalived_advertisements_sent_total", kl, 3}, // no failed one among them
		{"keepalived_advertisements_received_total", kl, 2},
		{"keepalived_priority_zero_sent_total", kl, 1},
		{"keepalived_priority_zero_received_total", kl, 1},
		{"keepalived_ip_ttl_errors_total", kl, 2},
		{"keepalived_packet_length_errors_total", kl, 0},
	}
	for _, tt := range tests {
		if got, ok := value(t, m, tt.name, tt.labels); !ok || got != tt.want {
			t.Errorf("%s%v = %v (present %v), want %v", tt.name, tt.labels, got, ok, tt.want)
		}
	}
	if n := seriesCount(t, m, "keepalived_vrrp_state", labels("iname", "VI_LOGS")); n != 2 {
		t.Errorf("keepalived_vrrp_state: %d series, want one per VIP (2)", n)
	}

	// Takeover histogram buckets: 0.3 s falls in le=0.5, 1.5 s only from le=2.
	mf := gather(t, m)["hapair_vrrp_takeover_seconds"]
	buckets := map[float64]uint64{}
	for _, b := range mf.GetMetric()[0].GetHistogram().GetBucket() {
		buckets[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	for le, want := range map[float64]uint64{0.001: 0, 0.25: 0, 0.5: 1, 1: 1, 2: 2, 10: 2} {
		if buckets[le] != want {
			t.Errorf("takeover bucket le=%v = %d, want %d", le, buckets[le], want)
		}
	}
}

func TestSetVIPsReplacesCompatSeries(t *testing.T) {
	m := New(BuildInfo{})
	im := m.Instance("VI_LOGS", "eth0", 51, netip.MustParsePrefix("10.0.0.10/24"))
	im.SetState(vrrp.Master)
	m.EnableKeepalivedCompat() // after Instance: order must not matter
	im.SetVIPs([]netip.Prefix{netip.MustParsePrefix("10.0.0.30/24"), netip.MustParsePrefix("2001:db8::1/64")})

	if n := seriesCount(t, m, "keepalived_vrrp_state", labels("ip_address", "10.0.0.10")); n != 0 {
		t.Errorf("old VIP still labelled: %d series", n)
	}
	for _, a := range []string{"10.0.0.30", "2001:db8::1"} {
		if v, ok := value(t, m, "keepalived_vrrp_state", labels("ip_address", a)); !ok || v != float64(vrrp.Master) {
			t.Errorf("keepalived_vrrp_state{ip_address=%q} = %v (present %v), want %d carried over", a, v, ok, vrrp.Master)
		}
	}
	im.SetVIPs(nil)
	if n := seriesCount(t, m, "keepalived_vrrp_state", nil); n != 1 {
		t.Errorf("without VIPs: %d series, want one with ip_address=\"\"", n)
	}
}

func TestInstanceReuseAndRemove(t *testing.T) {
	m := New(BuildInfo{})
	m.EnableKeepalivedCompat()
	a := m.Instance("VI_LOGS", "eth0", 51)
	if b := m.Instance("VI_LOGS", "eth0", 51); a != b {
		t.Error("same name, interface and VRID: want the same *InstanceMetrics")
	}
	a.AdvertSent(100)
	m.Instance("VI_OTHER", "eth1", 52).AdvertSent(100)

	// Moved to another interface: the old state series must go, or a
	// dashboard would show two states for one instance.
	c := m.Instance("VI_LOGS", "eth1", 51)
	if c == a {
		t.Error("changed interface: want a new *InstanceMetrics")
	}
	if n := seriesCount(t, m, "hapair_vrrp_state", labels("instance", "VI_LOGS")); n != 1 {
		t.Errorf("hapair_vrrp_state{instance=VI_LOGS}: %d series, want 1", n)
	}
	if v, _ := value(t, m, "hapair_vrrp_adverts_sent_total", labels("instance", "VI_LOGS")); v != 0 {
		t.Errorf("recreated instance counter = %v, want 0", v)
	}

	m.RemoveInstance("VI_LOGS")
	for _, name := range []string{"hapair_vrrp_state", "hapair_vrrp_transitions_total", "hapair_vrrp_packets_dropped_total", "hapair_vrrp_takeover_seconds"} {
		if n := seriesCount(t, m, name, labels("instance", "VI_LOGS")); n != 0 {
			t.Errorf("%s: %d series left after RemoveInstance", name, n)
		}
	}
	if n := seriesCount(t, m, "keepalived_advertisements_sent_total", labels("iname", "VI_LOGS")); n != 0 {
		t.Errorf("keepalived series left after RemoveInstance: %d", n)
	}
	if v, ok := value(t, m, "hapair_vrrp_adverts_sent_total", labels("instance", "VI_OTHER")); !ok || v != 1 {
		t.Errorf("other instance touched: %v (present %v)", v, ok)
	}
}

func TestHAProxyReporter(t *testing.T) {
	m := New(BuildInfo{})
	m.HAProxyUp(true)
	m.HAProxyExit(139)
	m.HAProxyUp(false)
	m.HAProxyRestart()
	m.HAProxyRestart()
	m.HAProxyReload(supervisor.ReloadOK)
	m.HAProxyReload(supervisor.ReloadRefused)
	m.HAProxyReload(supervisor.ReloadRefused)
	tests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"hapair_haproxy_up", nil, 0},
		{"hapair_haproxy_last_exit_status", nil, 139},
		{"hapair_haproxy_restarts_total", nil, 2},
		{"hapair_haproxy_reloads_total", labels("result", "ok"), 1},
		{"hapair_haproxy_reloads_total", labels("result", "refused"), 2},
		{"hapair_haproxy_reloads_total", labels("result", "failed"), 0},
	}
	for _, tt := range tests {
		if got, ok := value(t, m, tt.name, tt.labels); !ok || got != tt.want {
			t.Errorf("%s%v = %v (present %v), want %v", tt.name, tt.labels, got, ok, tt.want)
		}
	}
}

func TestCheckReporter(t *testing.T) {
	m := New(BuildInfo{})
	m.DeclareCheck("tcp")
	if n := seriesCount(t, m, "hapair_check_results_total", labels("check", "tcp")); n != 2 {
		t.Errorf("declared check: %d result series, want ok and fail", n)
	}
	// Raw results drive hapair_check_up until a tracked status arrives...
	m.CheckResult("stats", false, 20*time.Millisecond)
	if v, _ := value(t, m, "hapair_check_up", labels("check", "stats")); v != 0 {
		t.Errorf("after failing result: check_up = %v, want 0", v)
	}
	m.CheckUp("stats", true)
	// ...then a single failing probe (fall not reached) must not flip it.
	m.CheckResult("stats", false, 30*time.Millisecond)
	m.CheckResult("stats", true, 10*time.Millisecond)
	tests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"hapair_check_up", labels("check", "stats"), 1},
		{"hapair_check_results_total", labels("check", "stats", "result", "fail"), 2},
		{"hapair_check_results_total", labels("check", "stats", "result", "ok"), 1},
		{"hapair_check_duration_seconds", labels("check", "stats"), 3},
	}
	for _, tt := range tests {
		if got, ok := value(t, m, tt.name, tt.labels); !ok || got != tt.want {
			t.Errorf("%s%v = %v (present %v), want %v", tt.name, tt.labels, got, ok, tt.want)
		}
	}
}

func TestEnableKeepalivedCompatIdempotent(t *testing.T) {
	m := New(BuildInfo{})
	if _, ok := gather(t, m)["keepalived_up"]; ok {
		t.Error("keepalived_up exported before EnableKeepalivedCompat")
	}
	m.EnableKeepalivedCompat()
	m.EnableKeepalivedCompat()
	if v, ok := value(t, m, "keepalived_up", nil); !ok || v != 1 {
		t.Errorf("keepalived_up = %v (present %v), want 1", v, ok)
	}
}

// TestStateValues: hapair_vrrp_state carries the values of vrrp.State, which must stay the
// numbers the keepalived exporters use (dashboards and alert rules compare with them).
func TestStateValues(t *testing.T) {
	for s, want := range map[vrrp.State]string{0: "INIT", 1: "BACKUP", 2: "MASTER", 3: "FAULT"} {
		if s.String() != want {
			t.Errorf("vrrp.State(%d) is %s, want %s", int(s), s, want)
		}
	}
}

// TestConcurrentReporting runs every reporter from several goroutines while
// gathering; run with -race.
func TestConcurrentReporting(t *testing.T) {
	m := New(BuildInfo{})
	m.EnableKeepalivedCompat()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				im := m.Instance("VI_LOGS", "eth0", 51, netip.MustParsePrefix("10.0.0.10/24"))
				im.AdvertSent(uint8(i % 2))
				im.Transition(vrrp.Backup, vrrp.Master)
				im.SetVIPs([]netip.Prefix{netip.MustParsePrefix("10.0.0.10/24")})
				m.CheckResult("c", i%2 == 0, time.Millisecond)
				m.CheckUp("c", true)
				m.HAProxyUp(i%2 == 0)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 20; i++ {
			if _, err := m.Registry().Gather(); err != nil {
				t.Errorf("gather: %v", err)
				return
			}
		}
	}()
	wg.Wait()
	if v, _ := value(t, m, "hapair_vrrp_adverts_sent_total", labels("instance", "VI_LOGS")); v != 800 {
		t.Errorf("adverts sent = %v, want 800", v)
	}
	if v, _ := value(t, m, "hapair_check_up", labels("check", "c")); v != 1 {
		t.Errorf("check_up = %v, want 1 (tracked)", v)
	}
}

func TestWithoutHAProxy(t *testing.T) {
	m := New(BuildInfo{Version: "test"})
	m.WithoutHAProxy()
	m.HAProxyUp(false) // reporting still works, it just is not exported
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "hapair_haproxy_") {
			t.Errorf("%s exported by a hapair without HAProxy", f.GetName())
		}
	}
}

// TestConfigReload: like Prometheus' prometheus_config_last_reload_successful, the gauge says
// whether the last attempt worked, and the timestamp moves only on success.
func TestConfigReload(t *testing.T) {
	m := New(BuildInfo{})
	// The start loaded a configuration: successful until an attempt says otherwise.
	if v, _ := value(t, m, "hapair_config_last_reload_successful", nil); v != 1 {
		t.Errorf("hapair_config_last_reload_successful at start = %v, want 1", v)
	}
	if v, _ := value(t, m, "hapair_config_last_reload_success_timestamp_seconds", nil); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("hapair_config_last_reload_success_timestamp_seconds at start = %v, want about now", v)
	}
	at := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	m.ConfigReload(supervisor.ReloadOK, at)
	m.ConfigReload(supervisor.ReloadRefused, at.Add(time.Minute))
	check := func(name string, l map[string]string, want float64) {
		t.Helper()
		if v, ok := value(t, m, name, l); !ok || v != want {
			t.Errorf("%s%v = %v (present %v), want %v", name, l, v, ok, want)
		}
	}
	check("hapair_config_reloads_total", labels("result", "ok"), 1)
	check("hapair_config_reloads_total", labels("result", "refused"), 1)
	check("hapair_config_reloads_total", labels("result", "failed"), 0)
	check("hapair_config_last_reload_successful", nil, 0)
	check("hapair_config_last_reload_success_timestamp_seconds", nil, float64(at.Unix()))
	m.ConfigReload(supervisor.ReloadFailed, at.Add(2*time.Minute))
	check("hapair_config_last_reload_successful", nil, 0)
	m.ConfigReload(supervisor.ReloadOK, at.Add(3*time.Minute))
	check("hapair_config_last_reload_successful", nil, 1)
	check("hapair_config_last_reload_success_timestamp_seconds", nil, float64(at.Add(3*time.Minute).Unix()))
}

// TestConfigReloadsHelpFailedAppliesNothing: a failed reload applies nothing. cmd/hapair's
// reload answers ReloadFailed when HAProxy's reload fails, before it touches hapair's settings,
// and docs/metrics.md says so; the HELP said "applied, but HAProxy's reload failed".
func TestConfigReloadsHelpFailedAppliesNothing(t *testing.T) {
	help := gather(t, New(BuildInfo{}))["hapair_config_reloads_total"].GetHelp()
	_, failed, ok := strings.Cut(help, "failed (")
	if !ok || strings.Contains(failed, "applied") || !strings.Contains(failed, "hapair's settings stay as they were") {
		t.Errorf("HELP = %q\nwant failed described as docs/metrics.md does: HAProxy's reload failed and hapair's settings stay as they were", help)
	}
}
