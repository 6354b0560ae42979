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

	"gopkg.in/yaml.v3"
)

// LoadOption changes how Load, Parse and Check validate.
type LoadOption func(*options)

type options struct {
	// interfaceExists reports whether a network interface exists; nil skips the check.
	interfaceExists func(name string) error
	hostname        func() (string, error)
}

func defaultOptions() options {
	return options{
		interfaceExists: func(name string) error {
			_, err := net.InterfaceByName(name)
			return err
		},
		hostname: os.Hostname,
	}
}

// SkipInterfaceCheck leaves out the check that every interface named in the file exists on this
// host: for converting, for tests, and for checking a file meant for another host. `keepalived -t`
// does check, and so does `hapair check` by default.
func SkipInterfaceCheck() LoadOption {
	return func(o *options) { o.interfaceExists = nil }
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

// StatusListen reads only status.listen from the file at path, leniently, for commands that talk
// to the running hapair (`hapair reload`) and must find it even when the file is broken: that is
// when the daemon's own answer (the reload refused, and why) matters most. A file that is not
// YAML at all, or has no status.listen, gives the default; "" means the listener is disabled.
func StatusListen(path string) (string, error) {
	data, err := readFile(path)
	if err != nil {
		return "", err
	}
	var doc struct {
		Status struct {
			Listen *string `yaml:"listen"`
		} `yaml:"status"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil || doc.Status.Listen == nil {
		return DefaultStatusListen, nil
	}
	return *doc.Status.Listen, nil
}

// readFile reads a configuration file.
func readFile(path string) ([]byte, error) {
	return os.ReadFile(path)
}
