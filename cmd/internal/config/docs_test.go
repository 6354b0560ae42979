package config

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDocumentedDefaults keeps docs/configuration.md's tables in step with the defaults in code.
func TestDocumentedDefaults(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	defaults := []struct {
		key   string
		value any
	}{
		{"haproxy.command", DefaultHAProxyCommand},
		{"haproxy.config", DefaultHAProxyConfig},
		{"haproxy.runtime_dir", DefaultRuntimeDir},
		{"haproxy.stop_grace", DefaultStopGrace},
		{"haproxy.restart_backoff.initial", DefaultBackoffInitial},
		{"haproxy.restart_backoff.max", DefaultBackoffMax},
		{"haproxy.restart_backoff.reset_after", DefaultBackoffResetAfter},
		{"checks[].interval", DefaultCheckInterval},
		{"checks[].timeout", DefaultCheckTimeout},
		{"checks[].fall", DefaultCheckFall},
		{"checks[].rise", DefaultCheckRise},
		{"checks[].weight", DefaultCheckWeight},
		{"checks[].http.expect_status", DefaultHTTPExpectStatus},
		{"vrrp_instances[].state", DefaultState},
		{"vrrp_instances[].priority", DefaultPriority},
		{"vrrp_instances[].advert_int", DefaultAdvertInt},
		{"vrrp_instances[].version", DefaultVersion},
		{"vrrp_instances[].preempt", DefaultPreempt},
		{"vrrp_instances[].preempt_delay", "0s"},
		{"vrrp_instances[].garp_master_repeat", DefaultGARPMasterRepeat},
		{"vrrp_instances[].garp_master_delay", DefaultGARPMasterDelay},
		{"vrrp_instances[].checksum", DefaultChecksum},
		{"vrrp_instances[].fast_failover", DefaultFastFailover},
		{"notify.timeout", DefaultNotifyTimeout},
		{"notify.script_security", DefaultNotifyScriptSecurity},
		{"status.listen", DefaultStatusListen},
		{"status.keepalived_compat", false},
		{"vrrp_rt_priority", 0},
		{"status.dump_file", DefaultDumpFile},
	}
	for _, d := range defaults {
		row := fmt.Sprintf("| `%s` | `%v` |", d.key, d.value)
		if !strings.Contains(string(doc), row) {
			t.Errorf("docs/configuration.md lacks the row %q", row)
		}
	}
}

// TestEveryKeyDocumented checks that each key of the full example has a row in
// docs/configuration.md.
func TestEveryKeyDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse([]byte(full), "full.yaml", fakeInterfaces())
	if err != nil {
		t.Fatal(err)
	}
	indexRE := regexp.MustCompile(`\[\d+\]`)
	for key := range cfg.lines {
		key = indexRE.ReplaceAllString(key, "[]")
		if strings.HasSuffix(key, "[]") || strings.Contains(key, ".track.") || strings.Contains(key, ".backends.") {
			continue // list entries and map entries, documented with their list or map
		}
		// A section is documented through its keys' rows.
		if !strings.Contains(string(doc), "| `"+key+"` |") && !strings.Contains(string(doc), "| `"+key+".") {
			t.Errorf("docs/configuration.md has no row for %s", key)
		}
	}
}
