package config

import (
	"fmt"
	"math"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// decoder walks the yaml.Node tree by hand rather than through yaml.Unmarshal: that keeps the line
// of every key, lets it report all unknown keys and type errors in one pass with their key path,
// and lets it tell a key that was written from one that was defaulted.
type decoder struct {
	file  string
	probs Problems
	warns Problems
	lines map[string]int // key path -> line of its value, for keys written in the file

	// tracks holds each instance's track entries until every check is known.
	tracks map[int][]trackRef
	// vips holds each instance's virtual_ipaddress entries with their lines.
	vips map[int][]item
	// vipLines holds the line of each accepted VIP, in the order of Instance.VIPs.
	vipLines map[int][]int
	// vipOwner tells which instance (and line) first listed an address.
	vipOwner map[netip.Addr]vipUse
	// peers holds each instance's unicast_peer entries with their lines.
	peers map[int][]item
	// trackIfs holds each instance's track_interface entries with their lines.
	trackIfs map[int][]item
	// bgpRaw holds the bgp entries that need checks and instances to be known.
	bgpRaw bgpRaw
}

type vipUse struct {
	instance string
	line     int
}

type trackRef struct {
	name   string
	weight *int // nil: the check's own weight
	line   int
	path   string
}

// item is a scalar list element with the line it was written on.
type item struct {
	val  string
	line int
}

func newDecoder(file string) *decoder {
	return &decoder{
		file:     file,
		lines:    map[string]int{},
		tracks:   map[int][]trackRef{},
		vips:     map[int][]item{},
		vipLines: map[int][]int{},
		vipOwner: map[netip.Addr]vipUse{},
		peers:    map[int][]item{},
		trackIfs: map[int][]item{},
	}
}

func (d *decoder) add(line int, key, format string, args ...any) {
	d.probs = append(d.probs, Problem{File: d.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) warn(line int, key, format string, args ...any) {
	d.warns = append(d.warns, Problem{File: d.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// sort orders problems by line so that the output reads top to bottom; problems of the same line
// keep the order they were found in.
func (d *decoder) sort() {
	for _, ps := range []Problems{d.probs, d.warns} {
		sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
	}
}

// lineOf returns the line of a key path, or of its nearest written parent.
func (d *decoder) lineOf(path string) int { return lineOf(d.lines, path) }

func lineOf(lines map[string]int, path string) int {
	for path != "" {
		if l, ok := lines[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return 0
}

func (d *decoder) isSet(path string) bool {
	_, ok := d.lines[path]
	return ok
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			return "empty"
		}
		return fmt.Sprintf("%q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	}
	return "unexpected YAML"
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// noAlias refuses anchors' aliases: following them by hand could expand a small file into a huge
// tree (the "billion laughs"), and a configuration gains little from them.
func (d *decoder) noAlias(n *yaml.Node, path string) bool {
	if n.Kind == yaml.AliasNode {
		d.add(d.at(n, path), path, "YAML aliases (*%s) are not supported: write the value out", n.Value)
		return false
	}
	return true
}

// fields maps the keys a mapping accepts to the function decoding each value.
type fields map[string]func(v *yaml.Node, path string)

// keepalivedHints answers keepalived's words that hapair spells differently.
var keepalivedHints = map[string]string{
	"nopreempt":                  "hapair spells it preempt: false",
	"track_script":               "hapair spells it track: {check_name: weight}",
	"vrrp_script":                "hapair spells it checks: (a list)",
	"vrrp_instance":              "hapair spells it vrrp_instances: (a list)",
	"global_defs":                "hapair has no global_defs: router_id is a top-level key, script_user is notify.user",
	"mcast_src_ip":               "hapair uses unicast_src_ip as the source of multicast adverts too",
	"unicast_peers":              "the key is unicast_peer",
	"virtual_ipaddresses":        "the key is virtual_ipaddress",
	"vrid":                       "the key is virtual_router_id",
	"enable_script_security":     "hapair spells it notify.script_security: true",
	"script_user":                "hapair spells it notify.user",
	"virtual_ipaddress_excluded": "hapair does not carry excluded addresses: list them under virtual_ipaddress or attach them otherwise",
}

func (d *decoder) mapping(n *yaml.Node, path string, f fields) {
	if !d.noAlias(n, path) {
		return
	}
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.add(d.at(n, path), path, "must be a mapping (key: value), not %s", describe(n))
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.add(k.Line, path, "a key must be a plain word, not %s", describe(k))
			continue
		}
		kp := join(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.add(k.Line, kp, "written twice (first at line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		fn, known := f[k.Value]
		if !known {
			d.add(k.Line, kp, "unknown key%s", suggest(k.Value, f))
			continue
		}
		// The key's line, not the value's: a section's value starts on the line below its key.
		d.lines[kp] = k.Line
		if !d.noAlias(v, kp) {
			continue
		}
		fn(v, kp)
	}
}

// suggest returns a hint for an unknown key: keepalived's spelling, or a close known key.
func suggest(key string, f fields) string {
	if h, ok := keepalivedHints[key]; ok {
		return " (" + h + ")"
	}
	best, bestDist := "", 3
	for k := range f {
		if dist := editDistance(key, k); dist < bestDist || (dist == bestDist && k < best) {
			best, bestDist = k, dist
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %s?)", best)
	}
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return " (known keys: " + strings.Join(keys, ", ") + ")"
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// scalar checks that n is a single written value.
func (d *decoder) scalar(n *yaml.Node, path string) bool {
	if isNull(n) {
		d.add(d.at(n, path), path, "needs a value")
		return false
	}
	if n.Kind != yaml.ScalarNode {
		d.add(d.at(n, path), path, "must be a single value, not %s", describe(n))
		return false
	}
	return true
}

// str accepts any scalar verbatim (so that auth_pass: 12345678 is the text "12345678").
func (d *decoder) str(n *yaml.Node, path string, out *string) {
	if d.scalar(n, path) {
		*out = n.Value
	}
}

func (d *decoder) integer(n *yaml.Node, path string) (int64, bool) {
	if !d.scalar(n, path) {
		return 0, false
	}
	if n.ShortTag() != "!!int" {
		d.add(d.at(n, path), path, "%s is not a whole number", describe(n))
		return 0, false
	}
	var v int64
	if err := n.Decode(&v); err != nil {
		d.add(d.at(n, path), path, "%s is not a whole number", describe(n))
		return 0, false
	}
	return v, true
}

// intRange decodes a whole number within lo..hi.
func (d *decoder) intRange(n *yaml.Node, path string, lo, hi int64, out func(int64)) {
	v, ok := d.integer(n, path)
	if !ok {
		return
	}
	if v < lo || v > hi {
		d.add(d.at(n, path), path, "%d is outside %d..%d", v, lo, hi)
		return
	}
	out(v)
}

func (d *decoder) boolean(n *yaml.Node, path string, out *bool) {
	if !d.scalar(n, path) {
		return
	}
	if n.ShortTag() != "!!bool" {
		d.add(d.at(n, path), path, "%s is not true or false", describe(n))
		return
	}
	if err := n.Decode(out); err != nil {
		d.add(d.at(n, path), path, "%s is not true or false", describe(n))
	}
}

// duration accepts a Go duration ("1s", "150ms") or a plain number of seconds (keepalived's
// "advert_int 0.1"), never negative.
func (d *decoder) duration(n *yaml.Node, path string, out *time.Duration) {
	if !d.scalar(n, path) {
		return
	}
	v, err := parseDuration(n.Value)
	if err != nil {
		d.add(d.at(n, path), path, "%s: %v", describe(n), err)
		return
	}
	*out = v
}

func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	var v time.Duration
	if dur, err := time.ParseDuration(s); err == nil {
		v = dur
	} else {
		secs, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil {
			return 0, fmt.Errorf("not a duration (write 1s, 250ms or a number of seconds)")
		}
		if math.IsNaN(secs) || math.IsInf(secs, 0) || math.Abs(secs) > math.MaxInt64/float64(time.Second) {
			return 0, fmt.Errorf("not a usable number of seconds")
		}
		v = time.Duration(math.Round(secs * float64(time.Second)))
	}
	if v < 0 {
		return 0, fmt.Errorf("is negative")
	}
	return v, nil
}

// list accepts a list of scalars, or a single scalar as a one-element list.
func (d *decoder) list(n *yaml.Node, path string) []item {
	if isNull(n) {
		return nil
	}
	if n.Kind == yaml.ScalarNode {
		return []item{{val: n.Value, line: n.Line}}
	}
	if n.Kind != yaml.SequenceNode {
		d.add(d.at(n, path), path, "must be a list, not %s", describe(n))
		return nil
	}
	var out []item
	for i, e := range n.Content {
		ep := index(path, i)
		if !d.noAlias(e, ep) || !d.scalar(e, ep) {
			continue
		}
		out = append(out, item{val: e.Value, line: e.Line})
	}
	return out
}

func (d *decoder) sequence(n *yaml.Node, path string, each func(i int, e *yaml.Node, path string)) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.add(d.at(n, path), path, "must be a list (entries starting with -), not %s", describe(n))
		return
	}
	for i, e := range n.Content {
		ep := index(path, i)
		d.lines[ep] = e.Line
		if d.noAlias(e, ep) {
			each(i, e, ep)
		}
	}
}

func (d *decoder) config(root *yaml.Node) *Config {
	cfg := &Config{
		File:   d.file,
		Notify: Notify{Timeout: DefaultNotifyTimeout, ScriptSecurity: DefaultNotifyScriptSecurity},
		Status: Status{Listen: DefaultStatusListen, DumpFile: DefaultDumpFile},
		lines:  d.lines,
	}
	if root == nil {
		return cfg
	}
	d.mapping(root, "", fields{
		"router_id":   func(v *yaml.Node, p string) { d.str(v, p, &cfg.RouterID) },
		"runtime_dir": func(v *yaml.Node, p string) { d.str(v, p, &cfg.RuntimeDir) },
		"vrrp_rt_priority": func(v *yaml.Node, p string) {
			d.intRange(v, p, 0, 99, func(x int64) { cfg.VRRPRTPriority = int(x) })
		},
		"haproxy": func(v *yaml.Node, p string) { cfg.HAProxy = d.haproxy(v, p) },
		"bgp":     func(v *yaml.Node, p string) { cfg.BGP = d.bgp(v, p) },
		"checks": func(v *yaml.Node, p string) {
			d.sequence(v, p, func(_ int, e *yaml.Node, ep string) { cfg.Checks = append(cfg.Checks, d.check(e, ep)) })
		},
		"vrrp_instances": func(v *yaml.Node, p string) {
			d.sequence(v, p, func(i int, e *yaml.Node, ep string) { cfg.Instances = append(cfg.Instances, d.instance(i, e, ep)) })
		},
		"notify": func(v *yaml.Node, p string) {
			d.mapping(v, p, fields{
				"user":            func(v *yaml.Node, p string) { d.str(v, p, &cfg.Notify.User) },
				"timeout":         func(v *yaml.Node, p string) { d.duration(v, p, &cfg.Notify.Timeout) },
				"script_security": func(v *yaml.Node, p string) { d.boolean(v, p, &cfg.Notify.ScriptSecurity) },
			})
		},
		"status": func(v *yaml.Node, p string) {
			d.mapping(v, p, fields{
				"listen": func(v *yaml.Node, p string) {
					if isNull(v) { // an explicit empty listen disables the listener
						cfg.Status.Listen = ""
						return
					}
					d.str(v, p, &cfg.Status.Listen)
				},
				"keepalived_compat": func(v *yaml.Node, p string) { d.boolean(v, p, &cfg.Status.KeepalivedCompat) },
				"dump_file":         func(v *yaml.Node, p string) { d.str(v, p, &cfg.Status.DumpFile) },
			})
		},
	})
	resolveRuntimeDirs(cfg)
	return cfg
}

// resolveRuntimeDirs fills in the runtime directories left unset: hapair's own follows
// haproxy.runtime_dir when only that is given (one directory, as before the top-level key
// existed), and HAProxy's follows hapair's.
func resolveRuntimeDirs(cfg *Config) {
	if cfg.RuntimeDir == "" {
		cfg.RuntimeDir = DefaultRuntimeDir
		if cfg.HAProxy != nil && cfg.HAProxy.RuntimeDir != "" {
			cfg.RuntimeDir = cfg.HAProxy.RuntimeDir
		}
	}
	if cfg.HAProxy != nil && cfg.HAProxy.RuntimeDir == "" {
		cfg.HAProxy.RuntimeDir = cfg.RuntimeDir
	}
}

func (d *decoder) haproxy(n *yaml.Node, path string) *HAProxy {
	h := &HAProxy{
		Command:   DefaultHAProxyCommand,
		Config:    DefaultHAProxyConfig,
		StopGrace: DefaultStopGrace,
		RestartBackoff: Backoff{
			Initial:    DefaultBackoffInitial,
			Max:        DefaultBackoffMax,
			ResetAfter: DefaultBackoffResetAfter,
		},
	}
	d.mapping(n, path, fields{
		"command":     func(v *yaml.Node, p string) { d.str(v, p, &h.Command) },
		"config":      func(v *yaml.Node, p string) { d.str(v, p, &h.Config) },
		"runtime_dir": func(v *yaml.Node, p string) { d.str(v, p, &h.RuntimeDir) },
		"stop_grace":  func(v *yaml.Node, p string) { d.duration(v, p, &h.StopGrace) },
		"restart_backoff": func(v *yaml.Node, p string) {
			d.mapping(v, p, fields{
				"initial":     func(v *yaml.Node, p string) { d.duration(v, p, &h.RestartBackoff.Initial) },
				"max":         func(v *yaml.Node, p string) { d.duration(v, p, &h.RestartBackoff.Max) },
				"reset_after": func(v *yaml.Node, p string) { d.duration(v, p, &h.RestartBackoff.ResetAfter) },
			})
		},
	})
	return h
}

func (d *decoder) check(n *yaml.Node, path string) CheckConfig {
	c := CheckConfig{
		Interval: DefaultCheckInterval,
		Fall:     DefaultCheckFall,
		Rise:     DefaultCheckRise,
		Weight:   DefaultCheckWeight,
	}
	if n.Kind != yaml.MappingNode {
		d.add(d.at(n, path), path, "must be a mapping with name, a probe and its settings, not %s", describe(n))
		return c
	}
	d.mapping(n, path, fields{
		"name":     func(v *yaml.Node, p string) { d.str(v, p, &c.Name) },
		"interval": func(v *yaml.Node, p string) { d.duration(v, p, &c.Interval) },
		"timeout":  func(v *yaml.Node, p string) { d.duration(v, p, &c.Timeout) },
		"fall":     func(v *yaml.Node, p string) { d.intRange(v, p, 1, 1000, func(x int64) { c.Fall = int(x) }) },
		"rise":     func(v *yaml.Node, p string) { d.intRange(v, p, 1, 1000, func(x int64) { c.Rise = int(x) }) },
		"weight": func(v *yaml.Node, p string) {
			d.intRange(v, p, -MaxCheckWeight, MaxCheckWeight, func(x int64) { c.Weight = int(x) })
		},
		"http": func(v *yaml.Node, p string) {
			h := &HTTPCheck{ExpectStatus: DefaultHTTPExpectStatus}
			c.HTTP = h
			d.mapping(v, p, fields{
				"url":           func(v *yaml.Node, p string) { d.str(v, p, &h.URL) },
				"expect_status": func(v *yaml.Node, p string) { d.intRange(v, p, 100, 599, func(x int64) { h.ExpectStatus = int(x) }) },
				"frontends": func(v *yaml.Node, p string) {
					for _, it := range d.list(v, p) {
						h.Frontends = append(h.Frontends, it.val)
					}
				},
				"backends": func(v *yaml.Node, p string) {
					h.Backends = map[string]int{}
					if isNull(v) {
						return
					}
					if v.Kind != yaml.MappingNode {
						d.add(d.at(v, p), p, "must map backend names to the least number of servers UP, not %s", describe(v))
						return
					}
					for i := 0; i+1 < len(v.Content); i += 2 {
						k, val := v.Content[i], v.Content[i+1]
						bp := join(p, k.Value)
						if _, dup := h.Backends[k.Value]; dup {
							d.add(k.Line, bp, "written twice")
							continue
						}
						d.intRange(val, bp, 1, 100000, func(x int64) { h.Backends[k.Value] = int(x) })
					}
				},
			})
		},
		"script": func(v *yaml.Node, p string) {
			s := &ScriptCheck{}
			c.Script = s
			d.mapping(v, p, fields{
				"command": func(v *yaml.Node, p string) { d.str(v, p, &s.Command) },
				"user":    func(v *yaml.Node, p string) { d.str(v, p, &s.User) },
			})
		},
		"tcp": func(v *yaml.Node, p string) {
			t := &TCPCheck{}
			c.TCP = t
			d.mapping(v, p, fields{
				"address": func(v *yaml.Node, p string) { d.str(v, p, &t.Address) },
			})
		},
		"interface": func(v *yaml.Node, p string) {
			ic := &InterfaceCheck{}
			c.Interface = ic
			d.mapping(v, p, fields{
				"name": func(v *yaml.Node, p string) { d.str(v, p, &ic.Name) },
			})
		},
	})
	return c
}

func (d *decoder) instance(i int, n *yaml.Node, path string) Instance {
	in := Instance{
		State:            DefaultState,
		Priority:         DefaultPriority,
		AdvertInt:        DefaultAdvertInt,
		Version:          DefaultVersion,
		Preempt:          DefaultPreempt,
		GARPMasterRepeat: DefaultGARPMasterRepeat,
		GARPMasterDelay:  DefaultGARPMasterDelay,
		Checksum:         DefaultChecksum,
		FastFailover:     DefaultFastFailover,
		Track:            map[string]int{},
	}
	if n.Kind != yaml.MappingNode {
		d.add(d.at(n, path), path, "must be a mapping with name, interface, virtual_router_id, ..., not %s", describe(n))
		return in
	}
	notify := func(out *string) func(v *yaml.Node, p string) {
		return func(v *yaml.Node, p string) { d.str(v, p, out) }
	}
	d.mapping(n, path, fields{
		"name":      func(v *yaml.Node, p string) { d.str(v, p, &in.Name) },
		"interface": func(v *yaml.Node, p string) { d.str(v, p, &in.Interface) },
		"state": func(v *yaml.Node, p string) {
			var s string
			d.str(v, p, &s)
			switch st := State(strings.ToUpper(s)); st {
			case StateMaster, StateBackup:
				in.State = st
			case "":
			default:
				d.add(d.at(v, p), p, "%q is neither MASTER nor BACKUP", s)
			}
		},
		"virtual_router_id": func(v *yaml.Node, p string) { d.intRange(v, p, 1, 255, func(x int64) { in.VRID = uint8(x) }) },
		"priority":          func(v *yaml.Node, p string) { d.intRange(v, p, 1, 255, func(x int64) { in.Priority = uint8(x) }) },
		"advert_int":        func(v *yaml.Node, p string) { d.duration(v, p, &in.AdvertInt) },
		"version":           func(v *yaml.Node, p string) { d.intRange(v, p, 2, 3, func(x int64) { in.Version = int(x) }) },
		"preempt":           func(v *yaml.Node, p string) { d.boolean(v, p, &in.Preempt) },
		"preempt_delay":     func(v *yaml.Node, p string) { d.duration(v, p, &in.PreemptDelay) },
		"authentication": func(v *yaml.Node, p string) {
			a := &Authentication{Type: "PASS"}
			in.Authentication = a
			d.mapping(v, p, fields{
				"auth_type": func(v *yaml.Node, p string) { d.str(v, p, &a.Type) },
				"auth_pass": func(v *yaml.Node, p string) { d.str(v, p, &a.Pass) },
			})
		},
		"virtual_ipaddress": func(v *yaml.Node, p string) { d.vips[i] = d.list(v, p) },
		"unicast_src_ip": func(v *yaml.Node, p string) {
			var s string
			d.str(v, p, &s)
			if s == "" {
				return
			}
			a, err := parseAddr(s)
			if err != nil {
				d.add(d.at(v, p), p, "%q is not an IP address", s)
				return
			}
			in.UnicastSrcIP = a
		},
		"unicast_peer":       func(v *yaml.Node, p string) { d.peers[i] = d.list(v, p) },
		"track":              func(v *yaml.Node, p string) { d.tracks[i] = d.track(v, p) },
		"track_interface":    func(v *yaml.Node, p string) { d.trackIfs[i] = d.list(v, p) },
		"dont_track_primary": func(v *yaml.Node, p string) { d.boolean(v, p, &in.DontTrackPrimary) },
		"garp_master_repeat": func(v *yaml.Node, p string) { d.intRange(v, p, 1, 255, func(x int64) { in.GARPMasterRepeat = int(x) }) },
		"garp_master_delay":  func(v *yaml.Node, p string) { d.duration(v, p, &in.GARPMasterDelay) },
		"checksum": func(v *yaml.Node, p string) {
			var s string
			d.str(v, p, &s)
			switch m := ChecksumMode(strings.ToLower(s)); m {
			case ChecksumKeepalived, ChecksumRFC9568:
				in.Checksum = m
			case "":
			default:
				d.add(d.at(v, p), p, "%q is neither keepalived nor rfc9568", s)
			}
		},
		"fast_failover": func(v *yaml.Node, p string) { d.boolean(v, p, &in.FastFailover) },
		"notify_master": notify(&in.Notify.Master),
		"notify_backup": notify(&in.Notify.Backup),
		"notify_fault":  notify(&in.Notify.Fault),
		"notify_stop":   notify(&in.Notify.Stop),
		"notify":        notify(&in.Notify.All),
	})
	return in
}

// track accepts a mapping of check names to weights (an empty weight keeps the check's own), or a
// list of check names.
func (d *decoder) track(n *yaml.Node, path string) []trackRef {
	if isNull(n) {
		return nil
	}
	var refs []trackRef
	switch n.Kind {
	case yaml.SequenceNode:
		for _, it := range d.list(n, path) {
			refs = append(refs, trackRef{name: it.val, line: it.line, path: join(path, it.val)})
		}
	case yaml.MappingNode:
		seen := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			tp := join(path, k.Value)
			if seen[k.Value] {
				d.add(k.Line, tp, "written twice")
				continue
			}
			seen[k.Value] = true
			ref := trackRef{name: k.Value, line: k.Line, path: tp}
			if !isNull(v) {
				ok := false
				d.intRange(v, tp, -MaxCheckWeight, MaxCheckWeight, func(x int64) {
					w := int(x)
					ref.weight, ok = &w, true
				})
				if !ok {
					continue
				}
			}
			refs = append(refs, ref)
		}
	default:
		d.add(d.at(n, path), path, "must map check names to weights, or list check names, not %s", describe(n))
	}
	return refs
}

// at is the line to report a problem of node n at key path: the key's line when the key was
// written on a line of its own, else the node's.
func (d *decoder) at(n *yaml.Node, path string) int {
	if l, ok := d.lines[path]; ok {
		return l
	}
	return n.Line
}
