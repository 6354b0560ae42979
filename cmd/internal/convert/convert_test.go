package convert

import (
	"errors"
	"flag"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hapair/hapair/cmd/internal/config"
	"github.com/hapair/hapair/internal/spawn"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func convertString(t *testing.T, in string) (string, []Note) {
	t.Helper()
	out, notes, err := Convert(strings.NewReader(in), "keepalived.conf")
	if err != nil {
		t.Fatalf("Convert: %v\ninput:\n%s\noutput:\n%s", err, in, out)
	}
	return string(out), notes
}

func parseConverted(t *testing.T, out string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(out), "converted.yaml", config.SkipInterfaceCheck())
	if err != nil {
		t.Fatalf("config.Parse refused the converted file: %v\n%s", err, out)
	}
	return cfg
}

// TestSeed converts the seed guide's two keepalived.conf files and checks the result against
// golden files and, key by key, against the seed's meaning.
func TestSeed(t *testing.T) {
	for _, host := range []struct {
		name     string
		state    config.State
		priority uint8
	}{{"loglb01", config.StateMaster, 110}, {"loglb02", config.StateBackup, 100}} {
		t.Run(host.name, func(t *testing.T) {
			src := filepath.Join("testdata", host.name+".conf")
			f, err := os.Open(src)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			out, notes, err := Convert(f, host.name+".conf")
			if err != nil {
				t.Fatalf("Convert: %v\n%s", err, out)
			}
			golden := filepath.Join("testdata", host.name+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != string(want) {
				t.Errorf("output differs from %s (go test -update rewrites it):\n%s", golden, out)
			}

			// The only note: pgrep became the built-in check.
			if len(notes) != 1 || notes[0].Line != 10 || notes[0].Keyword != "vrrp_script chk_haproxy" ||
				!strings.Contains(notes[0].Why, "built-in haproxy check") {
				t.Errorf("notes = %v, want one about chk_haproxy at line 10", notes)
			}

			cfg := parseConverted(t, string(out))
			if cfg.RouterID != host.name {
				t.Errorf("router_id = %q", cfg.RouterID)
			}
			if cfg.HAProxy == nil || cfg.HAProxy.Command != "/usr/sbin/haproxy" || cfg.HAProxy.Config != "/etc/haproxy/haproxy.cfg" {
				t.Errorf("haproxy = %+v, want the default section", cfg.HAProxy)
			}
			if len(cfg.Checks) != 0 {
				t.Errorf("checks = %+v, want none (pgrep is the built-in check)", cfg.Checks)
			}
			if cfg.Notify.User != "root" || !cfg.Notify.ScriptSecurity {
				t.Errorf("notify = %+v, want user root, script_security true", cfg.Notify)
			}
			in := cfg.Instances[0]
			want1 := config.Instance{
				Name: "VI_LOGS", Interface: "eth0", State: host.state, VRID: 51, Priority: host.priority,
				AdvertInt: time.Second, Version: 2, Preempt: true,
				Authentication:   &config.Authentication{Type: "PASS", Pass: "1a2b3c4d"},
				VIPs:             []netip.Prefix{netip.MustParsePrefix("10.0.0.10/24")},
				Track:            map[string]int{"haproxy": -20},
				GARPMasterRepeat: 5, GARPMasterDelay: 5 * time.Second,
				Checksum: config.ChecksumKeepalived, FastFailover: true,
			}
			if !reflect.DeepEqual(in, want1) {
				t.Errorf("instance =\n%+v\nwant\n%+v", in, want1)
			}
		})
	}
}

// TestConvert runs the cases in testdata/cases, one file each: the case's title, optional lines
// saying why, then sections "-- want --" (substrings of the YAML, one a line, \n for a line
// break), "-- not want --", "-- notes --" ("line: keyword" of each note, in order) and
// "-- keepalived.conf --", the input, to the end of the file. Every converted file must also be
// one that hapair accepts.
func TestConvert(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "cases", "*.txt"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no cases in testdata/cases: %v", err)
	}
	for _, file := range files {
		tt := readCase(t, file)
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Logf("%s", tt.name)
			out, notes := convertString(t, tt.in)
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			body := out[strings.Index(out, "\n"+firstKey(out)):] // past the header, which repeats the notes
			for _, w := range tt.notWant {
				if strings.Contains(body, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
			var got []string
			for _, n := range notes {
				got = append(got, n.String())
			}
			if len(got) != len(tt.wantNotes) {
				t.Errorf("%d notes, want %d:\n%s", len(got), len(tt.wantNotes), strings.Join(got, "\n"))
			}
			for i, w := range tt.wantNotes {
				if i < len(got) && !strings.HasPrefix(got[i], "keepalived.conf:"+w) && !strings.HasPrefix(got[i], "keepalived.conf: "+strings.TrimPrefix(w, "0: ")) {
					t.Errorf("note %d = %q, want it to start with %q", i, got[i], w)
				}
			}
			for _, n := range notes {
				if !strings.Contains(out, n.Why) {
					t.Errorf("the YAML header does not repeat the note %q", n.Why)
				}
			}
			parseConverted(t, out)
		})
	}
}

type convertCase struct {
	name      string
	in        string
	want      []string
	notWant   []string
	wantNotes []string
}

// readCase reads one file of testdata/cases (see TestConvert).
func readCase(t *testing.T, file string) convertCase {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	head, in, ok := strings.Cut(string(data), "-- keepalived.conf --\n")
	if !ok {
		t.Fatalf("%s: no -- keepalived.conf -- section", file)
	}
	tc := convertCase{in: in}
	var section *[]string
	for i, line := range strings.Split(strings.TrimSuffix(head, "\n"), "\n") {
		switch {
		case i == 0:
			tc.name = line
		case line == "-- want --":
			section = &tc.want
		case line == "-- not want --":
			section = &tc.notWant
		case line == "-- notes --":
			section = &tc.wantNotes
		case strings.HasPrefix(line, "-- "):
			t.Fatalf("%s:%d: unknown section %q", file, i+1, line)
		case section != nil:
			*section = append(*section, strings.ReplaceAll(line, `\n`, "\n"))
		}
	}
	return tc
}

// firstKey returns the first top-level key of the YAML, past the comment header.
func firstKey(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, " ") {
			return l
		}
	}
	return ""
}

func TestConvertSyntaxErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"unterminated quote", "vrrp_script x {\n    script \"/bin/true\n}\n", "k.conf:2: unterminated double quote"},
		{"stray closing brace", "vrrp_instance VI_1 {\n}\n}\n", "k.conf:3: '}' without a matching '{'"},
		{"block never closed", "global_defs {\n    router_id x\nvrrp_instance VI_1 {\n    interface eth0\n}\n", "k.conf:1: the block of global_defs opened here is never closed"},
		{"brace without keyword", "{\n}\n", "k.conf:1: '{' without a keyword before it"},
		{"not UTF-8", "global_defs {\n    router_id lb\xf8\n}\n", "k.conf:2: not UTF-8 text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, notes, err := Convert(strings.NewReader(tt.in), "k.conf")
			var se *SyntaxError
			if !errors.As(err, &se) || err.Error() != tt.want {
				t.Errorf("err = %v, want SyntaxError %q", err, tt.want)
			}
			if out != nil || notes != nil {
				t.Errorf("output with a syntax error: %q %v", out, notes)
			}
		})
	}
}

func TestConvertInvalidResult(t *testing.T) {
	// keepalived -t refuses a VRID of 300 too; the YAML still comes back, with config's problems.
	in := "vrrp_instance VI_1 {\n    interface eth0\n    virtual_router_id 300\n    virtual_ipaddress {\n        10.0.0.7\n    }\n}\n"
	out, notes, err := Convert(strings.NewReader(in), "k.conf")
	var probs config.Problems
	if !errors.As(err, &probs) {
		t.Fatalf("err = %v, want wrapped config.Problems", err)
	}
	if !strings.Contains(err.Error(), "virtual_router_id is required") || out == nil {
		t.Errorf("err = %v, out = %q", err, out)
	}
	if len(notes) != 1 || notes[0].Line != 3 || !strings.Contains(notes[0].Why, "1..255") {
		t.Errorf("notes = %v, want the skipped virtual_router_id 300", notes)
	}
}

func TestIsHAProxyLiveness(t *testing.T) {
	tests := []struct {
		cmd  string
		want bool
	}{
		{"pgrep haproxy", true},
		{"/usr/bin/pgrep -x haproxy", true},
		{"pgrep -f ^haproxy$", true},
		{"killall -0 haproxy", true},
		{"/usr/bin/killall -q -0 haproxy", true},
		{"pkill -0 haproxy", true},
		{"killall -s 0 haproxy", true},
		{"pidof haproxy", true},
		{"/bin/pidof -s haproxy", true},
		{"systemctl is-active haproxy", true},
		{"systemctl is-active --quiet haproxy.service", true},
		{"killall haproxy", false}, // sends SIGTERM: a stop, not a check
		{"pkill haproxy", false},
		{"pgrep nginx", false},
		{"pgrep -u haproxy nginx", false},
		{"pgrep haproxy nginx", false},
		{"/usr/local/bin/check_haproxy.sh", false},
		{"systemctl restart haproxy", false},
		{"curl -sf http://127.0.0.1:8404/haproxy", false},
		{"haproxy", false},
	}
	for _, tt := range tests {
		argv, err := spawn.Split(tt.cmd)
		if err != nil {
			t.Fatal(err)
		}
		if got := isHAProxyLiveness(argv); got != tt.want {
			t.Errorf("isHAProxyLiveness(%q) = %v, want %v", tt.cmd, got, tt.want)
		}
	}
}

// TestKeepalivedSamples converts every sample Debian's keepalived package ships: none may be a
// syntax error, and those with VRRP instances must convert to a valid hapair file.
func TestKeepalivedSamples(t *testing.T) {
	samples, _ := filepath.Glob("/usr/share/doc/keepalived/samples/keepalived.conf.*")
	if len(samples) == 0 {
		t.Skip("keepalived's samples are not installed")
	}
	converted := 0
	for _, s := range samples {
		text, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		out, notes, err := Convert(strings.NewReader(string(text)), filepath.Base(s))
		var se *SyntaxError
		if errors.As(err, &se) {
			t.Errorf("%s: %v", s, err)
			continue
		}
		if !strings.Contains(string(text), "vrrp_instance") {
			continue
		}
		if err != nil {
			t.Errorf("%s: %v\n%s", s, err, out)
			continue
		}
		for _, n := range notes {
			if n.Why == "" || n.Keyword == "" {
				t.Errorf("%s: empty note %+v", s, n)
			}
		}
		converted++
	}
	if converted < 5 {
		t.Errorf("only %d samples with instances converted", converted)
	}
}

func FuzzConvert(f *testing.F) {
	for _, name := range []string{"loglb01.conf", "loglb02.conf"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("vrrp_instance x { virtual_ipaddress { 1.2.3.4 dev } track_script { a weight } }")
	f.Add("vrrp_script \"a\\\" { script \"\\\" }\n@x {\n}")
	f.Fuzz(func(t *testing.T, in string) {
		out, _, err := Convert(strings.NewReader(in), "fuzz.conf")
		var se *SyntaxError
		if errors.As(err, &se) {
			return
		}
		if out == nil {
			t.Fatalf("no output and err %v", err)
		}
		if err == nil {
			if _, perr := config.Parse(out, "fuzz.yaml", config.SkipInterfaceCheck()); perr != nil {
				t.Fatalf("Convert passed a file config.Parse refuses: %v\n%s", perr, out)
			}
		}
	})
}

// TestSeedIsValidKeepalived has keepalived itself check the seed files kept in testdata, in a
// network namespace of its own (unshare -n: it vanishes with the process) holding an eth0.
func TestSeedIsValidKeepalived(t *testing.T) {
	keepalived, err := exec.LookPath("keepalived")
	if err != nil {
		t.Skip("keepalived is not installed")
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("needs root for a network namespace")
		}
		t.Skip("needs root for a network namespace")
	}
	for _, name := range []string{"loglb01.conf", "loglb02.conf"} {
		abs, err := filepath.Abs(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		script := `ip link add eth0 type veth peer name eth0p && ip link set eth0 up && exec "$0" -t --log-console -D -f "$1"`
		cmd := exec.Command("unshare", "-n", "sh", "-c", script, keepalived, abs)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("keepalived -t %s: %v\n%s", name, err, out)
		}
	}
}
