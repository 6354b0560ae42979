package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// LoadOption changes how Load, Parse and Check validate.
type LoadOption func(*options)

type options struct {
	// interfaceExists reports whether a network interface exists; nil skips the check.
	interfaceExists func(name string) error
	hostname        func() (string, error)
	// hostNetwork gives the live host's MTUs and addresses; nil skips the checks against them.
	hostNetwork HostNetwork
}

func defaultOptions() options {
	return options{
		interfaceExists: func(name string) error {
			_, err := net.InterfaceByName(name)
			return err
		},
		hostname:    os.Hostname,
		hostNetwork: liveHost{},
	}
}

// SkipInterfaceCheck leaves out the check that every interface named in the file exists on this
// host: for converting, for tests, and for checking a file meant for another host. `keepalived -t`
// does check, and so does `hapair check` by default.
func SkipInterfaceCheck() LoadOption {
	return func(o *options) { o.interfaceExists, o.hostNetwork = nil, nil }
}

// WithInterfaceLookup replaces net.InterfaceByName as the test of whether an interface exists.
func WithInterfaceLookup(exists func(name string) error) LoadOption {
	return func(o *options) { o.interfaceExists = exists }
}

// WithHostname replaces os.Hostname as the source of the default router_id.
func WithHostname(hostname func() (string, error)) LoadOption {
	return func(o *options) { o.hostname = hostname }
}

// Load reads, decodes and validates the configuration file at path. On failure the error is a
// Problems value listing every problem found, each with file:line and key.
func Load(path string, opts ...LoadOption) (*Config, error) {
	cfg, probs := load(path, opts)
	if len(probs) > 0 {
		return nil, probs
	}
	return cfg, nil
}

// Parse decodes and validates a configuration held in memory; filename is used in messages only.
// On failure the error is a Problems value.
func Parse(data []byte, filename string, opts ...LoadOption) (*Config, error) {
	cfg, probs := parse(data, filename, opts)
	if len(probs) > 0 {
		return nil, probs
	}
	return cfg, nil
}

func load(path string, opts []LoadOption) (*Config, Problems) {
	data, err := readFile(path)
	if err != nil {
		return nil, Problems{{File: path, Msg: fmt.Sprintf("read configuration: %v", unwrapPathError(err))}}
	}
	return parse(data, path, opts)
}

// unwrapPathError drops the path that *os.PathError repeats, since Problem already names the file.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// parse returns the best-effort configuration even when there are problems, so that Check can
// still run HAProxy's own check on a file with unrelated mistakes.
func parse(data []byte, filename string, opts []LoadOption) (*Config, Problems) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	d := newDecoder(filename)
	root, ok := d.document(data)
	cfg := d.config(root)
	if ok {
		d.validate(cfg, o)
	}
	d.sort()
	cfg.Warnings = d.warns
	return cfg, d.probs
}

var yamlErrLine = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)

// yamlParserProblems are the messages of yaml.v3's parser, as opposed to its scanner. yaml.v3
// reports a parser error's line 0-based (and leaves line 1 out entirely), a scanner error's
// 1-based; this corrects the first.
var yamlParserProblems = []string{
	"did not find expected", "found duplicate %", "found incompatible YAML document", "found undefined tag handle",
}

// document parses the YAML text into its root node; nil with no problem for an empty file.
func (d *decoder) document(data []byte) (*yaml.Node, bool) {
	if line, col, ok := invalidUTF8(data); !ok {
		d.add(line, "", "not valid UTF-8 (column %d): save the file as UTF-8", col)
		return nil, false
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, true
		}
		d.syntaxError(err)
		return nil, false
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		d.add(extra.Line, "", "a second YAML document: hapair reads one document per file")
		return nil, false
	} else if !errors.Is(err, io.EOF) {
		d.syntaxError(err)
		return nil, false
	}
	if len(doc.Content) == 0 {
		return nil, true
	}
	return doc.Content[0], true
}

// invalidUTF8 finds the first byte that is not UTF-8, as a 1-based line and column (in bytes); ok
// when there is none. yaml.v3 reports such a byte without its line.
func invalidUTF8(data []byte) (line, col int, ok bool) {
	if utf8.Valid(data) {
		return 0, 0, true
	}
	line, start := 1, 0
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size <= 1 {
			return line, i - start + 1, false
		}
		if r == '\n' {
			line, start = line+1, i+1
		}
		i += size
	}
	return line, 0, false
}

func (d *decoder) syntaxError(err error) {
	msg := err.Error()
	m := yamlErrLine.FindStringSubmatch(msg)
	if m == nil {
		d.add(0, "", "YAML syntax: %s", msg)
		return
	}
	line, _ := strconv.Atoi(m[1]) // 0 when absent
	for _, p := range yamlParserProblems {
		if strings.HasPrefix(m[2], p) {
			line++
			break
		}
	}
	d.add(line, "", "YAML syntax: %s", m[2])
}

// Endpoints are where the commands that talk to the running hapair find it.
type Endpoints struct {
	StatusListen string // the status listener's address; "" when it is disabled
	RuntimeDir   string // hapair's runtime dir: its lock and its control socket
}

// ReadEndpoints reads only status.listen and the runtime directories from the file at path,
// leniently, for the commands that talk to the running hapair (`hapair status`, `reload`,
// `drain`, `upgrade`): they must find it even when the file on disk is broken, which is when the
// daemon's own answer (the reload refused, and why) matters most. What the file does not give,
// or gives so broken that it cannot be read (not YAML at all, a list where a section goes),
// takes the default.
func ReadEndpoints(path string) (Endpoints, error) {
	data, err := readFile(path)
	if err != nil {
		return Endpoints{}, err
	}
	var status struct {
		Status struct {
			Listen *string `yaml:"listen"`
		} `yaml:"status"`
	}
	var dirs struct {
		RuntimeDir string `yaml:"runtime_dir"`
		HAProxy    struct {
			RuntimeDir string `yaml:"runtime_dir"`
		} `yaml:"haproxy"`
	}
	// Decoded apart, so that one broken section leaves the other's value: yaml.v3 fills what it
	// can around a type mismatch and reports it, which is ignored here.
	_ = yaml.Unmarshal(data, &status)
	_ = yaml.Unmarshal(data, &dirs)
	ep := Endpoints{StatusListen: DefaultStatusListen}
	if status.Status.Listen != nil {
		ep.StatusListen = *status.Status.Listen
	}
	cfg := Config{RuntimeDir: dirs.RuntimeDir, HAProxy: &HAProxy{RuntimeDir: dirs.HAProxy.RuntimeDir}}
	resolveRuntimeDirs(&cfg)
	ep.RuntimeDir = cfg.RuntimeDir
	return ep, nil
}

// MaxFileSize bounds a configuration file. The largest sensible file (255 instances of 20 VIPs,
// every check and notify command) is well under 1 MiB; the bound keeps a mistaken path such as a
// log file or /dev/zero from eating memory.
const MaxFileSize = 4 << 20

// readFile reads a configuration file: a regular file of at most MaxFileSize bytes. It is opened
// without blocking, so that a FIFO given by mistake is refused rather than waited on for ever (it
// would hold up `hapair check`, the start and every reload), and a device such as /dev/zero is
// refused before a byte is read.
func readFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, &os.PathError{Op: "read", Path: path, Err: fmt.Errorf("%s, not a regular file", fileKind(fi.Mode()))}
	}
	if fi.Size() > MaxFileSize {
		return nil, &os.PathError{Op: "read", Path: path, Err: fmt.Errorf("%d bytes, larger than the %d a configuration may have", fi.Size(), MaxFileSize)}
	}
	// The file may grow between Stat and the read: read one byte past the bound to tell.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, &os.PathError{Op: "read", Path: path, Err: fmt.Errorf("larger than the %d bytes a configuration may have", MaxFileSize)}
	}
	return data, nil
}

// fileKind names what a path is, for a refusal.
func fileKind(m os.FileMode) string {
	switch {
	case m.IsDir():
		return "is a directory"
	case m&os.ModeNamedPipe != 0:
		return "is a named pipe (FIFO)"
	case m&os.ModeSocket != 0:
		return "is a socket"
	case m&os.ModeDevice != 0:
		return "is a device"
	}
	return "is " + m.Type().String()
}
