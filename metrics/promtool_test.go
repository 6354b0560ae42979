package metrics

import (
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hapair/hapair/metrics/promtest"
)

// deployDir is where the Prometheus files shipped with hapair live.
var deployDir = filepath.Join("..", "deploy", "prometheus")

func TestPromtoolRules(t *testing.T) {
	rules, _ := filepath.Abs(filepath.Join(deployDir, "hapair.rules.yml"))
	tests, _ := filepath.Abs(filepath.Join(deployDir, "hapair.rules.test.yml"))
	out, err := promtest.Promtool(t, nil, "check", "rules", rules)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool check rules: %s", out)
	}
	out, err = promtest.Promtool(t, nil, "test", "rules", tests)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool test rules: %s", out)
	}
}

// TestPromtoolCheckMetrics lints what a populated hapair actually serves,
// Go and process collectors and keepalived compatibility included.
func TestPromtoolCheckMetrics(t *testing.T) {
	m := New(BuildInfo{Version: "1.2.3", Commit: "abc1234"})
	m.EnableKeepalivedCompat()
	populate(t, m)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.Bytes()
	if !strings.Contains(string(body), "hapair_vrrp_takeover_seconds_bucket") {
		t.Fatalf("exposition lacks the takeover histogram:\n%.500s", body)
	}
	out, err := promtest.Promtool(t, body, "check", "metrics")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) != "" {
		t.Errorf("promtool check metrics found problems:\n%s", out)
	}
}
