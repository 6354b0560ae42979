package config

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// loadWithin runs Load and fails the test when it does not return in time: reading a FIFO used to
// block for ever.
func loadWithin(t *testing.T, path string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := Load(path, fakeInterfaces(), fakeHost())
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		// Unblock the reader so that the goroutine ends with the test.
		if f, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
		t.Fatalf("Load(%s) did not return within 5s", path)
		return nil
	}
}

// TestLoadRefusesWhatIsNotARegularFile: a FIFO would block check, run and reload until someone
// writes to it; /dev/zero would be read until memory runs out. Both are refused at once.
func TestLoadRefusesWhatIsNotARegularFile(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "hapair.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path, want string
	}{
		{fifo, "is a named pipe (FIFO), not a regular file"},
		{"/dev/zero", "is a device, not a regular file"},
		{t.TempDir(), "is a directory, not a regular file"},
	} {
		err := loadWithin(t, tt.path)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), tt.path+": ") {
			t.Errorf("Load(%s) = %v, want %q", tt.path, err, tt.want)
		}
	}
	// `hapair status`, `reload`, `drain` and `upgrade` read their endpoints from the same file.
	if _, err := ReadEndpoints(fifo); err == nil || !strings.Contains(err.Error(), "named pipe") {
		t.Errorf("ReadEndpoints(fifo) = %v, want a refusal", err)
	}
}

// TestLoadRefusesAHugeFile: the size is bounded before anything is parsed.
func TestLoadRefusesAHugeFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "hapair.yaml")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(minimal); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxFileSize + 1); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	f.Close()
	err = loadWithin(t, p)
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Load of a %d-byte file = %v, want refused as too large", MaxFileSize+1, err)
	}
	// At the limit it is read (and here refused for its NUL bytes, not its size).
	if err := os.Truncate(p, MaxFileSize); err != nil {
		t.Fatal(err)
	}
	if err := loadWithin(t, p); err == nil || strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Load of a file of exactly MaxFileSize = %v, want read and refused for its content", err)
	}
}

// TestNonUTF8NamesItsLine: yaml.v3 says only "invalid leading UTF-8 octet"; the operator needs the
// line.
func TestNonUTF8NamesItsLine(t *testing.T) {
	text := strings.Replace(minimal, "interface: eth0", "interface: eth\xff0", 1)
	_, err := Parse([]byte(text), "t.yaml", fakeInterfaces(), fakeHost())
	if err == nil || !strings.Contains(err.Error(), "t.yaml:3: ") || !strings.Contains(err.Error(), "UTF-8") {
		t.Fatalf("Parse of a file with a bad byte on line 3 = %v, want t.yaml:3: ... UTF-8", err)
	}
	if !strings.Contains(err.Error(), "column 19") {
		t.Errorf("the error does not say the column: %v", err)
	}
}

// TestReadEndpointsIsLenient: the commands that talk to the running hapair find it through the
// file on disk even when that file is broken, the moment an operator most needs them.
func TestReadEndpointsIsLenient(t *testing.T) {
	for _, tt := range []struct {
		name, yaml string
		want       Endpoints
	}{
		{"empty", "", Endpoints{DefaultStatusListen, DefaultRuntimeDir}},
		{"both given", "runtime_dir: /run/lb\nstatus: {listen: '10.0.0.1:9479'}\n", Endpoints{"10.0.0.1:9479", "/run/lb"}},
		{"listener disabled", "status: {listen: ''}\n", Endpoints{"", DefaultRuntimeDir}},
		{"only haproxy's dir", "haproxy: {runtime_dir: /run/old}\n", Endpoints{DefaultStatusListen, "/run/old"}},
		{"a broken instance elsewhere", "runtime_dir: /run/lb\nvrrp_instances: [{priority: high}]\nstatus: {listen: ''}\n", Endpoints{"", "/run/lb"}},
		{"a broken status section", "runtime_dir: /run/lb\nstatus: [1, 2]\n", Endpoints{DefaultStatusListen, "/run/lb"}},
		{"not YAML", "runtime_dir: [\n", Endpoints{DefaultStatusListen, DefaultRuntimeDir}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "hapair.yaml")
			if err := os.WriteFile(p, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := ReadEndpoints(p)
			if err != nil || got != tt.want {
				t.Errorf("ReadEndpoints(%q) = %+v, %v; want %+v", tt.yaml, got, err, tt.want)
			}
		})
	}
}
