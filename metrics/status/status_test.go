package status

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
)

func sampleStatus() Status {
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	exit := 139
	return Status{
		RouterID:    "loglb01",
		Version:     "1.2.3",
		GeneratedAt: at.Add(90 * time.Second),
		Instances: []InstanceStatus{{
			Name: "VI_LOGS", Interface: "eth0", VRID: 51, Version: 2, State: "MASTER",
			BasePriority: 110, EffectivePriority: 110, MasterAddress: "10.0.0.11",
			VIPs: []string{"10.0.0.10/24"}, Since: at, InState: Duration(90 * time.Second),
			LastTransition: &Transition{From: "BACKUP", To: "MASTER", Reason: "master down", At: at},
		}, {
			Name: "VI_WEB", Interface: "eth1", VRID: 52, Version: 3, State: "BACKUP",
			BasePriority: 100, EffectivePriority: 80, MasterAddress: "10.0.1.12",
			VIPs: []string{"10.0.1.10/24", "2001:db8::10/64"}, Since: at, InState: Duration(1500 * time.Millisecond),
		}},
		HAProxy: HAProxyStatus{
			PID: 4242, Up: true, Restarts: 1, LastExit: &exit,
			LastReload: &ReloadStatus{At: at, Result: "refused", Error: "[ALERT] parsing error"},
			Backoff:    0,
		},
		Checks: []CheckStatus{
			{Name: "haproxy", Up: true, LastOK: true, Output: "running", Duration: 0, At: at},
			{Name: "haproxy_stats", Up: false, LastOK: false, Output: "backend be_logs: 0 servers UP\n\x1b[31mred", Duration: Duration(3 * time.Millisecond), At: at},
		},
	}
}

// TestStatusJSONShape pins the field names: `hapair status --json` users and
// scripts depend on them.
func TestStatusJSONShape(t *testing.T) {
	b, err := json.Marshal(sampleStatus())
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	keys := func(v any) string {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("not an object: %T", v)
		}
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		return strings.Join(ks, ",")
	}
	first := func(v any) any {
		a, ok := v.([]any)
		if !ok || len(a) == 0 {
			t.Fatalf("not a non-empty array: %v", v)
		}
		return a[0]
	}
	inst := first(doc["instances"]).(map[string]any)
	tests := []struct {
		what string
		got  string
		want string
	}{
		{"status", keys(doc), "checks,drained,generated_at,haproxy,instances,router_id,version"},
		{"instance", keys(inst), "base_priority,effective_priority,in_state,interface,last_transition,master_address,name,since,state,version,vips,vrid"},
		{"last_transition", keys(inst["last_transition"]), "at,from,reason,to"},
		{"haproxy", keys(doc["haproxy"]), "backoff,last_exit,last_reload,pid,restarts,up"},
		{"last_reload", keys(doc["haproxy"].(map[string]any)["last_reload"]), "at,error,result"},
		{"check", keys(first(doc["checks"])), "at,duration,last_ok,name,output,up"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s keys = %s, want %s", tt.what, tt.got, tt.want)
		}
	}
	if inst["in_state"] != "1m30s" || inst["vrid"] != float64(51) || inst["state"] != "MASTER" {
		t.Errorf("instance values: in_state %v vrid %v state %v", inst["in_state"], inst["vrid"], inst["state"])
	}
	if doc["haproxy"].(map[string]any)["last_exit"] != float64(139) {
		t.Errorf("last_exit = %v", doc["haproxy"].(map[string]any)["last_exit"])
	}
}

func TestStatusJSONRoundTrip(t *testing.T) {
	st := sampleStatus()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var back Status
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(st, back) {
		t.Errorf("round trip differs:\n got %+v\nwant %+v", back, st)
	}
	// Nothing known yet: nulls, not missing keys.
	b, _ = json.Marshal(Status{})
	for _, want := range []string{`"last_exit":null`, `"last_reload":null`, `"instances":null`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("empty status %s lacks %s", b, want)
		}
	}
}

func TestDurationJSON(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{`"1.5s"`, 1500 * time.Millisecond, false},
		{`"250ms"`, 250 * time.Millisecond, false},
		{`0.1`, 100 * time.Millisecond, false},
		{`2`, 2 * time.Second, false},
		{`"soon"`, 0, true},
		{`true`, 0, true},
		{`1e300`, 0, true},
		{`-1e300`, 0, true},
	}
	for _, tt := range tests {
		var d Duration
		err := json.Unmarshal([]byte(tt.in), &d)
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: err = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if !tt.wantErr && time.Duration(d) != tt.want {
			t.Errorf("%s = %v, want %v", tt.in, time.Duration(d), tt.want)
		}
	}
}

func TestWriteText(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteText(&buf, sampleStatus()); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	lines := strings.Split(out, "\n")

	// What operators grep in keepalived's dump, exactly.
	for _, want := range []string{
		" VRRP Instance = VI_LOGS",
		"   State = MASTER",
		" VRRP Instance = VI_WEB",
		"   State = BACKUP",
		"   Virtual Router ID = 51",
		"   Effective priority = 80",
		"     2001:db8::10/64 dev eth1",
		" Router ID = loglb01",
	} {
		if !contains(lines, want) {
			t.Errorf("no line %q in\n%s", want, out)
		}
	}
	// The seed's `grep -A2 "VRRP Instance"` must show the state.
	for i, l := range lines {
		if strings.Contains(l, "VRRP Instance") {
			if i+2 >= len(lines) || !strings.HasPrefix(lines[i+1], "   State = ") {
				t.Errorf("line after %q is %q, want the state", l, lines[i+1])
			}
		}
	}
	// Table rows.
	for _, want := range []string{"VI_LOGS", "MASTER", "10.0.0.11", "1m30s", "BACKUP->MASTER (master down)", "4242", "139", "refused at 2025-03-01T12:00:00Z: [ALERT] parsing error"} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q", want)
		}
	}
	// Check output carried an escape sequence and a newline: both escaped.
	if strings.ContainsRune(out, '\x1b') {
		t.Error("text carries a raw ESC from check output")
	}
	if !strings.Contains(out, `0 servers UP\n\x1b[31mred`) {
		t.Errorf("check output not escaped visibly:\n%s", out)
	}
}

func TestWriteTextEmpty(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteText(&buf, Status{}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "------< VRRP Topology >------") {
		t.Errorf("empty status text:\n%s", buf.String())
	}
}

func TestClean(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"plain", 0, "plain"},
		{"a\nb", 0, `a\nb`},
		{"\x1b[2J", 0, `\x1b[2J`},
		{"abcdef", 3, "abc..."},
		{"héllo", 0, "héllo"},
		{"\xff", 0, "\ufffd"}, // invalid UTF-8 becomes U+FFFD, never a raw byte
	}
	for _, tt := range tests {
		if got := clean(tt.in, tt.max); got != tt.want {
			t.Errorf("clean(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
		}
	}
}

func contains(lines []string, want string) bool {
	for _, l := range lines {
		if l == want {
			return true
		}
	}
	return false
}

func TestWriteDump(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "hapair.data")
	if err := WriteDump(path, sampleStatus()); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Errorf("dump mode = %v, want regular 0600", fi.Mode())
	}
	b, _ := os.ReadFile(path)
	if !bytes.Contains(b, []byte("\n VRRP Instance = VI_LOGS\n   State = MASTER\n")) {
		t.Errorf("dump content:\n%s", b)
	}

	// A second dump replaces the first (and a wider mode) entirely.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	st := sampleStatus()
	st.Instances = st.Instances[:1]
	st.Instances[0].State = "FAULT"
	if err := WriteDump(path, st); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	if !bytes.Contains(b, []byte("   State = FAULT")) || bytes.Contains(b, []byte("VI_WEB")) {
		t.Errorf("second dump not a full replacement:\n%s", b)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("replaced dump mode = %v, want 0600", fi.Mode().Perm())
	}
	assertNoTemp(t, dir, "hapair.data")
}

func TestWriteDumpRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		setup func(path string) error
	}{
		{"symlink to file", func(p string) error { return os.Symlink(victim, p) }},
		{"dangling symlink", func(p string) error { return os.Symlink(filepath.Join(dir, "nowhere"), p) }},
		{"directory", func(p string) error { return os.Mkdir(p, 0o755) }},
		{"fifo", func(p string) error { return syscall.Mkfifo(p, 0o600) }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "dump"+string(rune('a'+i)))
			if err := tt.setup(path); err != nil {
				t.Fatal(err)
			}
			err := WriteDump(path, sampleStatus())
			if !errors.Is(err, ErrNotRegular) {
				t.Fatalf("err = %v, want ErrNotRegular", err)
			}
			if b, _ := os.ReadFile(victim); string(b) != "precious" {
				t.Errorf("symlink target written: %q", b)
			}
			if _, err := os.Stat(filepath.Join(dir, "nowhere")); err == nil {
				t.Error("dangling symlink target created")
			}
			assertNoTemp(t, dir, filepath.Base(path))
		})
	}
}

func TestWriteDumpMissingDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "hapair.data")
	if err := WriteDump(path, Status{}); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("err = %v, want an error naming %s", err, path)
	}
}

func assertNoTemp(t *testing.T, dir, base string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "."+base+".") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

func TestWriteTextSaysDrained(t *testing.T) {
	for _, drained := range []bool{false, true} {
		var b strings.Builder
		if err := WriteText(&b, Status{RouterID: "lb1", Drained: drained}); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(b.String(), "This node is drained"); got != drained {
			t.Errorf("drained %v: text says drained %v:\n%s", drained, got, b.String())
		}
	}
}
