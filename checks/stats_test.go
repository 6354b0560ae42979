package checks

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readStats(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "haproxy-2.6-stats-"+name+".csv"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseStatsCSVHAProxy26(t *testing.T) {
	type row struct {
		proxy, service, status string
		act                    int
	}
	tests := []struct {
		file string
		want []row
	}{
		{"up", []row{
			{"fe_logs", "FRONTEND", "OPEN", -1},
			{"be_empty", "BACKEND", "UP", 0}, // no servers, still UP
			{"be_one", "BACKEND", "UP", 1},
			{"be_two", "s3", "DOWN", 0}, // backup server: act 0
			{"be_two", "BACKEND", "UP", 2},
		}},
		{"partial", []row{
			{"be_two", "s2", "DOWN", 1}, // a DOWN active server still reads act 1
			{"be_two", "BACKEND", "UP", 1},
		}},
		{"down", []row{
			{"fe_logs", "FRONTEND", "PAUSED", -1},
			{"be_one", "BACKEND", "DOWN", 0},
			{"be_two", "BACKEND", "DOWN", 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			st, err := ParseStatsCSV(readStats(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Rows) != 10 {
				t.Errorf("%d rows, want 10", len(st.Rows))
			}
			for _, w := range tt.want {
				got, ok := st.Find(w.proxy, w.service)
				if !ok {
					t.Errorf("%s/%s not found", w.proxy, w.service)
					continue
				}
				if got.Status != w.status || got.Active != w.act {
					t.Errorf("%s/%s = %s act %d, want %s act %d", w.proxy, w.service, got.Status, got.Active, w.status, w.act)
				}
			}
		})
	}
}

func TestParseStatsCSVColumnsByName(t *testing.T) {
	// Columns in another order, an extra unknown one, no trailing comma, CRLF.
	in := "# status,act,foo,svname,pxname\r\nOPEN,,x,FRONTEND,fe\r\nUP,3,y,BACKEND,be\r\n"
	st, err := ParseStatsCSV([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	fe, _ := st.Find("fe", "FRONTEND")
	be, _ := st.Find("be", "BACKEND")
	if fe.Status != "OPEN" || be.Active != 3 || be.Status != "UP" {
		t.Errorf("fe %+v be %+v", fe, be)
	}
}

func TestParseStatsCSVGarbage(t *testing.T) {
	up := string(readStats(t, "up"))
	header, _, _ := strings.Cut(up, "\n")
	tests := []struct {
		name   string
		in     string
		want   string
		notCSV bool
	}{
		{"empty", "", "first line", true},
		{"html stats page", "<!DOCTYPE HTML PUBLIC>\n<html><head><title>Statistics Report for HAProxy</title>\n", "first line \"<!DOCTYPE", true},
		{"json", `{"status":"ok"}` + "\n", "first line", true},
		{"header without newline", header, "first line", true},
		{"header missing act", "# pxname,svname,status\nfe,FRONTEND,OPEN\n", `no "act" column`, true},
		{"truncated mid line", up[:len(up)-40], "truncated", false},
		{"short row", header + "\nfe,FRONTEND,OPEN\n", "wrong number of fields", false},
		{"act not a number", "# pxname,svname,status,act\nbe,BACKEND,UP,lots\n", `line 2: act "lots" is not a count`, false},
		{"negative act", "# pxname,svname,status,act\nbe,BACKEND,UP,-1\n", "not a count", false},
		{"bare quote", "# pxname,svname,status,act\nb\"e,BACKEND,UP,1\n", "line 2", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseStatsCSV([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
			if errors.Is(err, ErrNotStatsCSV) != tt.notCSV {
				t.Errorf("errors.Is(ErrNotStatsCSV) = %v, want %v", !tt.notCSV, tt.notCSV)
			}
		})
	}
}

func TestStatsConditions(t *testing.T) {
	tests := []struct {
		name string
		file string
		cond StatsConditions
		want string // substring of the summary, or of the error when wantErr
		err  bool
	}{
		{"all up", "up", StatsConditions{Frontends: []string{"fe_logs"}, Backends: map[string]int{"be_one": 1, "be_two": 2}},
			"frontend fe_logs OPEN, backend be_one 1 up, backend be_two 2 up", false},
		{"backend without servers is not up", "up", StatsConditions{Backends: map[string]int{"be_empty": 1}},
			"backend be_empty has 0 active servers up, need 1", true},
		{"zero minimum only needs the backend", "up", StatsConditions{Backends: map[string]int{"be_empty": 0}}, "be_empty 0 up", false},
		{"one of two servers down, need 2", "partial", StatsConditions{Backends: map[string]int{"be_two": 2}},
			"backend be_two has 1 active servers up, need 2", true},
		{"one of two servers down, need 1", "partial", StatsConditions{Backends: map[string]int{"be_two": 1}}, "be_two 1 up", false},
		{"paused frontend", "down", StatsConditions{Frontends: []string{"fe_logs"}}, "frontend fe_logs is PAUSED", true},
		{"every failure listed", "down", StatsConditions{Frontends: []string{"fe_logs", "fe_nope"}, Backends: map[string]int{"be_one": 1, "be_nope": 1}},
			"frontend fe_logs is PAUSED; frontend fe_nope not found; backend be_nope not found; backend be_one has 0 active servers up, need 1", true},
		{"a server row is not a backend", "up", StatsConditions{Backends: map[string]int{"s1": 1}}, "backend s1 not found", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := ParseStatsCSV(readStats(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			summary, err := tt.cond.Check(st)
			if tt.err {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("error %v, want one containing %q", err, tt.want)
				}
				return
			}
			if err != nil || !strings.Contains(summary, tt.want) {
				t.Errorf("summary %q, error %v; want %q", summary, err, tt.want)
			}
		})
	}
}

func FuzzParseStatsCSV(f *testing.F) {
	for _, name := range []string{"up", "partial", "down"} {
		b := readStats(f, name)
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add([]byte("# pxname,svname,status,act\n"))
	f.Add([]byte("# pxname,svname,status,act\nfe,FRONTEND,OPEN,\n\"a\"\"b\",BACKEND,UP,2\n"))
	f.Add([]byte("<html></html>"))
	f.Add([]byte("# \n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := ParseStatsCSV(data)
		if err != nil {
			if len(st.Rows) != 0 {
				t.Errorf("rows returned with error %v", err)
			}
			return
		}
		for _, r := range st.Rows {
			if r.Active < -1 {
				t.Errorf("row %+v: act below -1", r)
			}
		}
		cond := StatsConditions{Frontends: []string{"fe"}, Backends: map[string]int{"be": 1}}
		if _, err := cond.Check(st); err != nil && err.Error() == "" {
			t.Error("condition failure without a reason")
		}
	})
}
