package convert

import (
	"bytes"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"gopkg.in/yaml.v3"

	"github.com/hapair/hapair/cmd/internal/config"
)

// yamlValue is a node of the YAML being written. Building yaml.Node values (rather than text)
// leaves quoting to yaml.v3: a password such as 12345678 comes out quoted, as a string.
type yamlValue = *yaml.Node

func str(s string) yamlValue { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }
func num(i int) yamlValue {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(i)}
}
func boolean(b bool) yamlValue {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(b)}
}
func dur(d time.Duration) yamlValue { return str(formatDuration(d)) }

// formatDuration writes "1s", "500ms", "1m" rather than time.Duration's "1m0s".
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func flowSeq(items []string) yamlValue {
	n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
	for _, it := range items {
		n.Content = append(n.Content, str(it))
	}
	return n
}

// mapping builds a mapping from alternating keys and values; nil values are left out.
func mapping(kv ...any) yamlValue {
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for i := 0; i+1 < len(kv); i += 2 {
		v, _ := kv[i+1].(yamlValue)
		if v == nil {
			continue
		}
		n.Content = append(n.Content, str(kv[i].(string)), v)
	}
	return n
}

func (m *mapNode) add(key string, v yamlValue) {
	if v != nil {
		m.Content = append(m.Content, str(key), v)
	}
}

type mapNode struct{ *yaml.Node }

func newMap() *mapNode { return &mapNode{&yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}} }

var checkNameBad = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// checkName turns a vrrp_script name into a unique hapair check name; script is the
// vrrp_script's name for the note when the name had to change ("" for a generated name).
func (c *converter) checkName(name string, script string) string {
	out := checkNameBad.ReplaceAllString(name, "_")
	if out == config.BuiltinHAProxyCheck {
		out += "_script"
	}
	base := out
	for i := 2; c.usedNames[out]; i++ {
		out = fmt.Sprintf("%s_%d", base, i)
	}
	c.usedNames[out] = true
	if out != name && script != "" {
		vs := c.scripts[script]
		c.note(vs.line, "vrrp_script "+name, "named %s in hapair (check names are [A-Za-z0-9_.-]+, unique, and haproxy is the built-in check)", out)
	}
	return out
}

// build assembles the YAML document.
func (c *converter) build() yamlValue {
	root := newMap()
	if c.routerID != "" {
		root.add("router_id", str(c.routerID))
	}
	if c.rtPriority > 0 {
		root.add("vrrp_rt_priority", num(c.rtPriority))
	}

	// Scripts whose names are already valid keep them; only the others are renamed around them.
	c.usedNames = map[string]bool{config.BuiltinHAProxyCheck: true}
	for _, vs := range c.scriptOrder {
		if !vs.haproxy && vs.name != config.BuiltinHAProxyCheck && !checkNameBad.MatchString(vs.name) {
			vs.outName = vs.name
			c.usedNames[vs.name] = true
		}
	}

	var instances []yamlValue
	var checks []yamlValue
	for _, in := range c.instances {
		instances = append(instances, c.buildInstance(in, &checks))
	}

	// Script checks in the order keepalived.conf defines them, each once.
	var scriptChecks []yamlValue
	for _, vs := range c.scriptOrder {
		switch {
		case !vs.used:
			c.note(vs.line, "vrrp_script "+vs.name, "no vrrp_instance tracks it (keepalived does not run it either): not converted")
		case !vs.carried:
			// Every entry tracking it was left out, and noted.
		case vs.haproxy:
			why := fmt.Sprintf("%q became hapair's built-in haproxy check: hapair runs HAProxy itself and sees it exit at once", vs.command)
			if len(vs.ignoredHAProxyKw) > 0 {
				why += fmt.Sprintf(", so its settings (%s) no longer apply", strings.Join(vs.ignoredHAProxyKw, ", "))
			}
			c.note(vs.line, "vrrp_script "+vs.name, "%s; stop and disable haproxy.service: hapair starts HAProxy", why)
		default:
			scriptChecks = append(scriptChecks, c.buildScriptCheck(vs))
		}
	}
	checks = append(scriptChecks, checks...)

	if c.usesHAProxy {
		root.add("haproxy", mapping("command", str(config.DefaultHAProxyCommand), "config", str(config.DefaultHAProxyConfig)))
	}
	if len(checks) > 0 {
		root.add("checks", &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Content: checks})
	}
	root.add("vrrp_instances", &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Content: instances})

	notify := newMap()
	if c.scriptUser != "" {
		notify.add("user", str(c.scriptUser))
	}
	if c.scriptSecurity {
		notify.add("script_security", boolean(true))
	} else if c.runsCommands() {
		c.note(0, "enable_script_security", "not set, so keepalived ran scripts without checking who can change them; hapair checks by default (notify.script_security: true) and refuses unsafe ones: `hapair check` lists them")
	}
	if len(notify.Content) > 0 {
		root.add("notify", notify.Node)
	}
	return root.Node
}

func (c *converter) runsCommands() bool {
	for _, vs := range c.scriptOrder {
		if vs.used && !vs.haproxy {
			return true
		}
	}
	for _, in := range c.instances {
		for _, f := range in.fields {
			if strings.HasPrefix(f.key, "notify") {
				return true
			}
		}
	}
	return false
}

func (c *converter) buildScriptCheck(vs *vscript) yamlValue {
	timeout := vs.timeout
	if !vs.timeoutSet {
		// keepalived gives a script without timeout the interval to finish in.
		timeout = vs.interval
	}
	script := mapping("command", str(vs.command))
	if vs.user != "" {
		script.Content = append(script.Content, str("user"), str(vs.user))
	}
	script.Style = yaml.FlowStyle
	return mapping(
		"name", str(vs.outName),
		"script", script,
		"interval", dur(vs.interval),
		"timeout", dur(timeout),
		"fall", num(vs.fall),
		"rise", num(vs.rise),
		"weight", num(vs.weight),
	)
}

// buildInstance writes one vrrp_instance in hapair's order of keys, noting what it cannot carry.
func (c *converter) buildInstance(in *vinst, checks *[]yamlValue) yamlValue {
	ctx := "vrrp_instance " + in.name + ": "
	m := newMap()
	m.HeadComment = printable(fmt.Sprintf("from %s:%d", c.file, in.line))
	m.add("name", str(in.name))
	in.copyFields(m, "interface", "state", "virtual_router_id", "priority")
	version := c.instanceVersion(in, ctx)
	if in.advertInt != "" {
		if d, ok := seconds(in.advertInt); !ok {
			c.note(in.advertLn, ctx+"advert_int "+in.advertInt, "is not a number of seconds: the default 1s applies")
		} else {
			m.add("advert_int", dur(c.roundAdvert(d, version, in.advertLn, ctx)))
		}
	}
	m.add("version", num(version))
	in.copyFields(m, "preempt", "preempt_delay")
	c.buildAuth(m, in, version, ctx)
	if len(in.vips) > 0 {
		m.add("virtual_ipaddress", flowSeq(c.uniqueVIPs(in, ctx)))
	}
	c.buildSource(m, in, ctx)
	if len(in.peers) > 0 {
		m.add("unicast_peer", flowSeq(in.peers))
	}
	if track := c.buildTrack(in, checks, ctx); len(track.Content) > 0 {
		m.add("track", track.Node)
	}
	if len(in.trackIfs) > 0 {
		m.add("track_interface", flowSeq(in.trackIfs))
	}
	in.copyFields(m, "dont_track_primary")
	c.garp(m, "garp_master_repeat", in.garpRep, in.garpRepLn, c.globalGARPRep, ctx)
	c.garp(m, "garp_master_delay", in.garpDelay, in.garpDlyLn, c.globalGARPDly, ctx)
	in.copyFields(m, "notify_master", "notify_backup", "notify_fault", "notify_stop", "notify")
	return m.Node
}

// copyFields adds the instance's fields carried as they were, in the order of keys.
func (in *vinst) copyFields(m *mapNode, keys ...string) {
	for _, k := range keys {
		for _, f := range in.fields {
			if f.key == k {
				m.add(k, f.node)
			}
		}
	}
}

// instanceVersion is the instance's VRRP version, else the global one, else 2; an instance with
// IPv6 addresses runs version 3, as keepalived runs it whatever it says.
func (c *converter) instanceVersion(in *vinst, ctx string) int {
	version := in.version
	if version == 0 {
		version = c.globalVersion
	}
	if version == 0 {
		version = 2
	}
	if in.hasV6 && version == 2 {
		if in.version == 2 {
			c.note(in.versionLn, ctx+"version 2", "keepalived runs IPv6 instances as version 3 whatever this says: written as version 3")
		}
		version = 3
	}
	return version
}

// buildAuth carries PASS authentication (its first 8 characters, as keepalived uses them) and
// notes what it cannot carry.
func (c *converter) buildAuth(m *mapNode, in *vinst, version int, ctx string) {
	a := in.auth
	switch {
	case a == nil:
	case version == 3:
		c.note(in.authLine, ctx+"authentication", "VRRPv3 has no authentication (keepalived ignored it too): not carried")
	case a.Type == "AH":
		c.note(in.authLine, ctx+"authentication auth_type AH", "AH is not supported by hapair: converted without authentication, so the peers must drop it too")
	case a.Type != "PASS":
		c.note(in.authLine, ctx+"authentication auth_type "+a.Type, "is neither PASS nor AH: not carried")
	default:
		pass := a.Pass
		if len(pass) > 8 {
			c.note(in.authLine, ctx+"authentication auth_pass", "is %d characters long; keepalived used the first 8, and so does the converted file", len(pass))
			pass = pass[:8]
		}
		auth := mapping("auth_type", str("PASS"), "auth_pass", str(pass))
		auth.Style = yaml.FlowStyle
		m.add("authentication", auth)
	}
}

// buildSource writes the source address: unicast_src_ip, else mcast_src_ip, which hapair uses
// for multicast adverts too.
func (c *converter) buildSource(m *mapNode, in *vinst, ctx string) {
	src := in.src
	if in.mcastSrc != "" {
		if src == "" {
			src = in.mcastSrc
			c.note(in.mcastLn, ctx+"mcast_src_ip "+in.mcastSrc, "written as unicast_src_ip, which hapair uses as the source of multicast adverts too")
		} else {
			c.note(in.mcastLn, ctx+"mcast_src_ip "+in.mcastSrc, "unicast_src_ip is set as well and is the source hapair uses: not carried")
		}
	}
	if src != "" {
		m.add("unicast_src_ip", str(src))
	}
}

// buildTrack turns track_script and weighted track_interface entries into the instance's track
// map: a HAProxy liveness script becomes the built-in haproxy check, an interface gets one
// interface check shared by the instances that track it (added to checks).
func (c *converter) buildTrack(in *vinst, checks *[]yamlValue, ctx string) *mapNode {
	track := newMap()
	track.Style = yaml.FlowStyle
	seen := map[string]bool{}
	for _, ref := range in.tracks {
		vs := c.scripts[ref.name]
		if vs == nil {
			c.note(ref.line, ctx+"track_script "+ref.name, "no vrrp_script has this name (keepalived ignores it too): not carried")
			continue
		}
		vs.used = true
		weight := vs.weight
		if ref.weight != nil {
			weight = *ref.weight
		}
		reverse := vs.reverse
		if ref.reverse != nil {
			reverse = *ref.reverse
		}
		if reverse {
			instead := "a check whose script succeeds while " + ref.name + "'s fails (its command after \"! \" in /bin/sh -c)"
			if vs.haproxy {
				instead = "a script check that succeeds while HAProxy is not running"
			}
			c.noteReversed(ref.line, ref.what, weight, ref.name, "succeeds", "fails", instead)
			continue
		}
		vs.carried = true
		key := config.BuiltinHAProxyCheck
		if vs.haproxy {
			c.usesHAProxy = true
		} else {
			if vs.outName == "" {
				vs.outName = c.checkName(vs.name, vs.name)
			}
			key = vs.outName
		}
		if seen[key] {
			c.note(ref.line, ctx+"track_script "+ref.name, "tracks the same check as an entry above (%s): only the first is carried", key)
			continue
		}
		seen[key] = true
		track.add(key, num(weight))
	}
	for _, ic := range in.ifChecks {
		// One interface check per interface, shared by the instances that track it; the track
		// entry carries each instance's own weight.
		name, ok := c.ifChecks[ic.iface]
		if !ok {
			name = c.checkName("if_"+ic.iface, "")
			c.ifChecks[ic.iface] = name
			iface := mapping("name", str(ic.iface))
			iface.Style = yaml.FlowStyle
			*checks = append(*checks, mapping("name", str(name), "interface", iface, "weight", num(ic.weight)))
		}
		if seen[name] {
			continue
		}
		seen[name] = true
		track.add(name, num(ic.weight))
	}
	return track
}

func (c *converter) roundAdvert(d time.Duration, version, line int, ctx string) time.Duration {
	step, lowest := 10*time.Millisecond, 10*time.Millisecond
	if version == 2 {
		step, lowest = time.Second, time.Second
	}
	r := max(time.Duration(math.Round(float64(d)/float64(step)))*step, lowest)
	if r != d {
		c.note(line, ctx+"advert_int", "VRRPv%d carries %s steps: %v rounded to %v, as keepalived does", version, formatDuration(step), d, formatDuration(r))
	}
	return r
}

// garp writes an instance's garp_master_* key: its own value (read at line), or else the global
// one, which global_defs accepted only when valid.
func (c *converter) garp(m *mapNode, key, own string, line int, global, ctx string) {
	v := own
	if v == "" {
		v = global
	}
	if v == "" {
		return
	}
	node, why := garpValue(key, v)
	if why != "" {
		c.note(line, ctx+key+" "+v, "%s", why)
		return
	}
	m.add(key, node)
}

// garpValue reads a garp_master_repeat or garp_master_delay value; why says what is wrong with it.
func garpValue(key, v string) (node yamlValue, why string) {
	if key == "garp_master_repeat" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 255 {
			return nil, "is not within 1..255: the default applies"
		}
		return num(n), ""
	}
	d, ok := seconds(v)
	if !ok {
		return nil, "is not a number of seconds: the default applies"
	}
	return dur(d), ""
}

// render writes the document with a header that repeats the notes, so that they travel with
// the file when the output is redirected.
func render(root yamlValue, notes []Note, file string) ([]byte, error) {
	var head strings.Builder
	fmt.Fprintf(&head, "hapair configuration converted from %s by `hapair convert`.\n", file)
	head.WriteString("Validate it on the target host with `hapair check` (interfaces, haproxy -c, scripts).\n")
	head.WriteString("Every key and default: docs/configuration.md.")
	if len(notes) > 0 {
		head.WriteString("\n\nNot carried over, or not as written:")
		for _, n := range notes {
			line := "-"
			if n.Line > 0 {
				line = strconv.Itoa(n.Line)
			}
			fmt.Fprintf(&head, "\n  line %s: %s: %s", line, n.Keyword, n.Why)
		}
	}
	root.HeadComment = printable(head.String())
	doc := &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root}}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// uniqueVIPs drops a repeated address (keepalived's samples list one twice, once with a label).
func (c *converter) uniqueVIPs(in *vinst, ctx string) []string {
	var out []string
	seen := map[string]bool{}
	for i, v := range in.vips {
		key := v
		if p, err := config.ParseVIP(v); err == nil {
			key = p.Addr().String()
		}
		if seen[key] {
			c.note(in.vipLines[i], ctx+"virtual_ipaddress "+v, "%s is listed twice: written once", key)
			continue
		}
		seen[key] = true
		out = append(out, v)
	}
	return out
}

// printable keeps comments to printable text: they quote the input, and yaml.v3 cannot write
// control characters in a comment.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || unicode.IsPrint(r) {
			return r
		}
		return '?'
	}, s)
}
