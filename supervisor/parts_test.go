package supervisor

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"testing"
)

const showProc26 = `#<PID>          <type>          <reloads>       <uptime>        <version>      
5213            master          3 [failed: 1]   0d00h10m23s     2.6.12-1+deb12u4
# workers
21069           worker          1               0d00h00m07s     2.6.12-1+deb12u4
# old workers
23462           worker          2               0d00h00m01s     2.6.12-1+deb12u4
# programs

`

func TestParseShowProc(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    procList
		wantErr bool
	}{
		{"2.6 after a failed reload, one old worker", showProc26, procList{master: 5213, reloads: 3, failed: 1,
			workers: []proc{{21069, 1}}, oldWorkers: []proc{{23462, 2}}}, false},
		{"fresh master, no failed field", "#<PID> <type> <reloads>\n7 master 0 0d00h00m01s 2.4\n# workers\n8 worker 0 0d 2.4\n",
			procList{master: 7, workers: []proc{{8, 0}}}, false},
		{"master without workers yet", "#<PID> <type>\n7 master 0 [failed: 0] 0d00h00m00s v\n# workers\n# programs\n",
			procList{master: 7}, false},
		{"programs are not workers", "1 master 0\n# programs\n9 worker 0\n", procList{master: 1}, false},
		{"garbage", "garbage\n", procList{}, true},
		{"empty (socket closed early)", "", procList{}, true},
		{"bad pid skipped", "x master 1\n", procList{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseShowProc(tt.text)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %t", err, tt.wantErr)
			}
			if err == nil && (got.master != tt.want.master || got.reloads != tt.want.reloads || got.failed != tt.want.failed ||
				!slices.Equal(got.workers, tt.want.workers) || !slices.Equal(got.oldWorkers, tt.want.oldWorkers)) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestNewWorker(t *testing.T) {
	before := procList{workers: []proc{{10, 0}}, oldWorkers: []proc{{9, 1}}}
	tests := []struct {
		after procList
		want  int
	}{
		{procList{workers: []proc{{11, 0}}, oldWorkers: []proc{{10, 1}}}, 11},
		{procList{workers: []proc{{10, 1}}}, 0}, // failed reload: the old worker, one reload older
		{procList{workers: []proc{{9, 0}}}, 0},
	}
	for _, tt := range tests {
		if got := tt.after.newWorker(before); got != tt.want {
			t.Errorf("newWorker(%+v) = %d, want %d", tt.after, got, tt.want)
		}
	}
}

func FuzzParseShowProc(f *testing.F) {
	f.Add(showProc26)
	f.Add("1 master 0 [failed: \n")
	f.Add("1 master 0 [failed: x]\n# workers\n2 worker -1\n")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseShowProc(s)
		if err == nil && p.master <= 0 {
			t.Errorf("accepted %q with master pid %d", s, p.master)
		}
	})
}

func TestCopyLines(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ring := &lineRing{max: 3}
	long := strings.Repeat("x", maxLine+10)
	in := "[NOTICE]   (1) : New worker (2) forked\n[WARNING]  (1) : Former worker (3) exited\n" +
		"[ALERT]    (1) : Binding [h.cfg:10]: cannot bind socket\n\n" + long + "\nno newline at the end"
	copyLines(strings.NewReader(in), log, ring)
	out := buf.String()
	for _, want := range []string{
		`level=INFO msg="haproxy: [NOTICE]   (1) : New worker (2) forked"`,
		`level=WARN msg="haproxy: [WARNING]  (1) : Former worker (3) exited"`,
		`level=ERROR msg="haproxy: [ALERT]    (1) : Binding [h.cfg:10]: cannot bind socket"`,
		`msg="haproxy: no newline at the end"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "x"); n < maxLine+10 {
		t.Errorf("a line longer than the buffer lost bytes: %d x's logged", n)
	}
	if ring.next != 6 || len(ring.lines) != 3 {
		t.Errorf("ring counted %d lines, kept %d", ring.next, len(ring.lines))
	}
	if got := ring.since(0, "[ALERT]"); len(got) != 0 {
		t.Errorf("the alert fell out of a 3-line ring, yet since returned %v", got)
	}
	ring2 := &lineRing{max: 10}
	ring2.add("[ALERT] old")
	mark := ring2.mark()
	ring2.add("[NOTICE] x")
	ring2.add("[ALERT] new")
	if got := ring2.since(mark, "[ALERT]"); !slices.Equal(got, []string{"[ALERT] new"}) {
		t.Errorf("since(mark) = %v", got)
	}
}
