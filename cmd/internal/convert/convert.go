// Package convert turns a keepalived.conf into the equivalent hapair YAML configuration and lists
// every keyword it could not carry over, so that nothing is dropped silently.
package convert

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hapair/hapair/cmd/internal/config"
	"github.com/hapair/hapair/internal/spawn"
)

// Note is a keepalived keyword that was not carried over, or not quite as written.
type Note struct {
	File    string // the keepalived.conf, as given to Convert
	Line    int    // its line; 0 when the note is about something missing
	Keyword string // the keyword, with its block's name when that helps: "vrrp_instance VI_1: use_vmac"
	Why     string
}

func (n Note) String() string {
	if n.Line > 0 {
		return fmt.Sprintf("%s:%d: %s: %s", n.File, n.Line, n.Keyword, n.Why)
	}
	return fmt.Sprintf("%s: %s: %s", n.File, n.Keyword, n.Why)
}

// Convert reads a keepalived.conf and returns the equivalent hapair YAML and the notes on what was
// not carried over, in line order. The YAML is meant for config.Parse (validated with the
// interface check off, since the file is usually converted on another host).
//
// err is a *SyntaxError when the file cannot be read as keepalived words and blocks (yamlText is
// then nil). When the converted configuration does not validate, yamlText and the notes are still
// returned and err wraps the config.Problems (they cite lines of yamlText): the keepalived.conf
// itself is usually wrong then, as `keepalived -t` would say.
func Convert(r io.Reader, filename string) (yamlText []byte, unconverted []Note, err error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", filename, err)
	}
	if !utf8.Valid(data) {
		line := 1 + bytes.Count(data[:firstInvalidUTF8(data)], []byte("\n"))
		return nil, nil, &SyntaxError{File: filename, Line: line, Msg: "not UTF-8 text"}
	}
	toks, err := lex(string(data), filename)
	if err != nil {
		return nil, nil, err
	}
	stmts, err := parse(toks, filename)
	if err != nil {
		return nil, nil, err
	}
	c := &converter{file: filename, scripts: map[string]*vscript{}, ifChecks: map[string]string{}}
	c.read(c.unconditional(stmts))
	out := c.build()
	sort.SliceStable(c.notes, func(i, j int) bool { return c.notes[i].Line < c.notes[j].Line })
	yamlText, err = render(out, c.notes, filename)
	if err != nil {
		return nil, nil, fmt.Errorf("write the converted configuration: %w", err)
	}
	if _, perr := config.Parse(yamlText, "converted "+path.Base(filename), config.SkipInterfaceCheck(),
		config.WithHostname(func() (string, error) { return "converted", nil })); perr != nil {
		return yamlText, c.notes, fmt.Errorf("the converted configuration does not validate:\n%w", perr)
	}
	return yamlText, c.notes, nil
}

// vscript is a vrrp_script block.
type vscript struct {
	name, outName    string
	line             int
	argv             []string
	command          string
	interval         time.Duration
	timeout          time.Duration
	timeoutSet       bool
	weight           int
	reverse          bool // "weight N reverse": the entries that track it inherit it
	fall, rise       int
	user             string
	haproxy          bool     // a process test of HAProxy, replaced by the built-in check
	used             bool     // tracked by an instance, so keepalived runs it
	carried          bool     // tracked by an instance in the converted file
	ignoredHAProxyKw []string // interval, fall, rise... that the built-in check makes moot
}

// vinst is a vrrp_instance block.
type vinst struct {
	name      string
	line      int
	fields    []field // single-value keys as read; buildInstance writes them in a fixed order
	version   int     // 0: not written
	versionLn int
	advertInt string
	advertLn  int
	auth      *config.Authentication
	authLine  int
	vips      []string
	vipLines  []int
	hasV6     bool
	src       string
	mcastSrc  string
	mcastLn   int
	peers     []string
	tracks    []trackRef
	trackIfs  []string
	ifChecks  []ifCheck
	garpDelay string
	garpDlyLn int
	garpRep   string
	garpRepLn int
}

// field is one output key of an instance.
type field struct {
	key  string
	node yamlValue
}

type trackRef struct {
	name    string
	weight  *int
	reverse *bool // nil: the vrrp_script's
	line    int
	what    string // the entry as written, for notes
}

type ifCheck struct {
	iface  string
	weight int
}

type converter struct {
	file  string
	notes []Note

	routerID       string
	scriptSecurity bool
	scriptUser     string
	globalVersion  int
	globalGARPDly  string
	globalGARPRep  string
	rtPriority     int
	hasGlobalDefs  bool

	scripts     map[string]*vscript
	scriptOrder []*vscript
	instances   []*vinst
	usesHAProxy bool
	usedNames   map[string]bool
	ifChecks    map[string]string // interface -> its check's name
}

func (c *converter) note(line int, keyword, format string, args ...any) {
	c.notes = append(c.notes, Note{File: c.file, Line: line, Keyword: keyword, Why: fmt.Sprintf(format, args...)})
}

// read walks the top level. Scripts are read before instances so that a track_script may name a
// vrrp_script written further down, as keepalived allows.
func (c *converter) read(stmts []*stmt) {
	for _, s := range stmts {
		if s.keyword() == "vrrp_script" {
			c.vrrpScript(s)
		}
	}
	for _, s := range stmts {
		kw := s.keyword()
		switch {
		case kw == "vrrp_script":
		case kw == "global_defs":
			c.globalDefs(s)
		case kw == "vrrp_instance":
			c.vrrpInstance(s)
		case strings.HasPrefix(kw, "include"):
			c.note(s.line, kw+" "+s.argText(), "the included file was not read: convert it too and merge the result by hand")
		case kw == "vrrp_sync_group":
			c.note(s.line, kw+" "+s.argText(), "hapair has no sync groups: each instance fails over on its own (track the same checks in each to keep them together)")
		case kw == "virtual_server" || kw == "virtual_server_group" || kw == "real_server":
			c.note(s.line, kw+" "+s.argText(), "LVS (IPVS) load balancing is not part of hapair: HAProxy does the balancing")
		case kw == "static_ipaddress" || kw == "static_routes" || kw == "static_rules":
			c.note(s.line, kw, "hapair does not manage static addresses, routes or rules: configure them with the system's network configuration")
		case strings.HasPrefix(kw, "$"):
			c.note(s.line, kw, "keepalived's configuration variables are not converted: the definition was skipped, and ${...} uses stay as written")
		default:
			c.note(s.line, kw, "not carried over: hapair has no equivalent")
		}
	}
}

func (c *converter) globalDefs(s *stmt) {
	c.hasGlobalDefs = true
	for _, g := range s.block {
		kw := g.keyword()
		args := g.args()
		switch kw {
		case "router_id":
			if len(args) > 0 {
				c.routerID = args[0].text
			}
		case "enable_script_security":
			c.scriptSecurity = true
		case "script_user":
			if len(args) > 0 {
				c.scriptUser = args[0].text
			}
			if len(args) > 1 {
				c.note(g.line, "script_user "+g.argText(), "the group %s was not carried: commands run with the user's own group", args[1].text)
			}
		case "vrrp_version":
			if v, ok := c.intArg(g, 2, 3); ok {
				c.globalVersion = v
			}
		case "vrrp_garp_master_delay", "vrrp_garp_master_repeat":
			if len(args) == 0 {
				break
			}
			// Noted here, once: the instances without their own value then take the default.
			if _, why := garpValue(strings.TrimPrefix(kw, "vrrp_"), args[0].text); why != "" {
				c.note(g.line, "global_defs: "+kw+" "+args[0].text, "%s", why)
			} else if kw == "vrrp_garp_master_delay" {
				c.globalGARPDly = args[0].text
			} else {
				c.globalGARPRep = args[0].text
			}
		case "vrrp_rt_priority":
			if v, ok := c.intArg(g, 1, 99); ok {
				c.rtPriority = v
			}
		default:
			c.note(g.line, "global_defs: "+kw, "%s", globalWhy(kw))
		}
	}
}

func globalWhy(kw string) string {
	switch {
	case strings.HasPrefix(kw, "notification_email") || strings.HasPrefix(kw, "smtp_"):
		return "hapair sends no mail: alert from Prometheus (deploy/prometheus rules) or from a notify command"
	case kw == "vrrp_rlimit_rttime" || kw == "checker_rlimit_rttime" || kw == "bfd_rlimit_rttime":
		return "hapair sets no CPU-time limit on its real-time threads (docs/configuration.md, vrrp_rt_priority); GOMAXPROCS=1 in the unit keeps it to one core"
	case kw == "vrrp_priority":
		return "hapair has no nice setting: use vrrp_rt_priority, or Nice= in a drop-in for hapair.service"
	case kw == "vrrp_strict":
		return "hapair always follows the RFCs' packet checks; strict mode's other effects (no accept mode, no authentication) are not carried"
	case kw == "vrrp_skip_check_adv_addr":
		return "hapair does not compare the advertised address list with its own"
	case strings.HasPrefix(kw, "vrrp_mcast_group"):
		return "hapair uses the standard groups 224.0.0.18 and ff02::12"
	case strings.HasPrefix(kw, "lvs_") || strings.HasPrefix(kw, "checker_"):
		return "LVS and its checkers are not part of hapair"
	case strings.HasPrefix(kw, "enable_snmp") || strings.HasPrefix(kw, "snmp_") || strings.HasPrefix(kw, "enable_dbus"):
		return "hapair exports Prometheus metrics instead (status.listen)"
	}
	return "not carried over: hapair has no equivalent"
}

// intArg reads the first argument of s as a whole number within lo..hi, noting why it cannot.
func (c *converter) intArg(s *stmt, lo, hi int) (int, bool) {
	if len(s.args()) == 0 {
		c.note(s.line, s.keyword(), "has no value: skipped")
		return 0, false
	}
	v, err := strconv.Atoi(s.args()[0].text)
	if err != nil || v < lo || v > hi {
		c.note(s.line, s.keyword()+" "+s.argText(), "is not a number within %d..%d: skipped", lo, hi)
		return 0, false
	}
	return v, true
}

// seconds reads keepalived's decimal seconds.
func seconds(s string) (time.Duration, bool) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) || f > 1e6 {
		return 0, false
	}
	return time.Duration(math.Round(f * float64(time.Second))), true
}

func (c *converter) secondsArg(s *stmt) (time.Duration, bool) {
	if len(s.args()) == 0 {
		c.note(s.line, s.keyword(), "has no value: skipped")
		return 0, false
	}
	d, ok := seconds(s.args()[0].text)
	if !ok {
		c.note(s.line, s.keyword()+" "+s.argText(), "is not a number of seconds: skipped")
	}
	return d, ok
}

func (c *converter) vrrpScript(s *stmt) {
	if len(s.args()) == 0 {
		c.note(s.line, "vrrp_script", "has no name: skipped")
		return
	}
	vs := &vscript{name: s.args()[0].text, line: s.line, interval: time.Second, fall: 1, rise: 1}
	if _, dup := c.scripts[vs.name]; dup {
		c.note(s.line, "vrrp_script "+vs.name, "defined twice: the first definition is kept")
		return
	}
	c.scripts[vs.name] = vs
	c.scriptOrder = append(c.scriptOrder, vs)
	for _, g := range s.block {
		kw := g.keyword()
		switch kw {
		case "script":
			var argv []string
			raw := g.argText() // the words as written, quotes removed: what a shell would get
			for _, w := range g.args() {
				if w.quoted {
					split, err := spawn.Split(w.text)
					if err != nil {
						c.note(g.line, "vrrp_script "+vs.name+": script", "%v", err)
						continue
					}
					argv = append(argv, split...)
				} else {
					argv = append(argv, w.text)
				}
			}
			if len(argv) > 0 && needsShell(argv) {
				c.note(g.line, "vrrp_script "+vs.name+": script", "hapair runs commands without a shell: wrapped in /bin/sh -c")
				argv = []string{"/bin/sh", "-c", raw}
			}
			vs.argv = argv
			vs.command = spawn.Join(argv)
		case "interval":
			if d, ok := c.secondsArg(g); ok && d > 0 {
				vs.interval = d
			}
			vs.ignoredHAProxyKw = append(vs.ignoredHAProxyKw, "interval "+g.argText())
		case "timeout":
			if d, ok := c.secondsArg(g); ok && d > 0 {
				vs.timeout, vs.timeoutSet = d, true
			}
			vs.ignoredHAProxyKw = append(vs.ignoredHAProxyKw, "timeout "+g.argText())
		case "weight":
			if w, ok := c.intArg(g, -config.MaxCheckWeight, config.MaxCheckWeight); ok {
				vs.weight = w
			}
			if len(g.args()) > 1 {
				// Noted on the track_script entries that inherit it, which are left out.
				vs.reverse = g.args()[1].text == "reverse"
				if !vs.reverse {
					c.note(g.line, "vrrp_script "+vs.name+": weight "+g.argText(), "%q is not reverse: keepalived ignores it, and so does hapair", g.args()[1].text)
				}
			}
		case "fall":
			if v, ok := c.intArg(g, 1, 1000); ok {
				vs.fall = v
			}
			vs.ignoredHAProxyKw = append(vs.ignoredHAProxyKw, "fall "+g.argText())
		case "rise":
			if v, ok := c.intArg(g, 1, 1000); ok {
				vs.rise = v
			}
			vs.ignoredHAProxyKw = append(vs.ignoredHAProxyKw, "rise "+g.argText())
		case "user":
			if len(g.args()) > 0 {
				vs.user = g.args()[0].text
			}
			if len(g.args()) > 1 {
				c.note(g.line, "vrrp_script "+vs.name+": user "+g.argText(), "the group %s was not carried: the command runs with the user's own group", g.args()[1].text)
			}
		default:
			c.note(g.line, "vrrp_script "+vs.name+": "+kw, "not carried over: hapair checks have no equivalent")
		}
	}
	if len(vs.argv) == 0 {
		c.note(s.line, "vrrp_script "+vs.name, "has no script: skipped")
		delete(c.scripts, vs.name)
		c.scriptOrder = c.scriptOrder[:len(c.scriptOrder)-1]
		return
	}
	vs.haproxy = isHAProxyLiveness(vs.argv)
}

var haproxyPattern = regexp.MustCompile(`^\^?haproxy(\.service)?\$?$`)

// isHAProxyLiveness recognises the usual "is HAProxy running" scripts: pgrep, pidof, killall -0,
// pkill -0 and systemctl is-active on haproxy. hapair supervises HAProxy itself and learns of its
// exit at once, so these become the built-in "haproxy" check.
func isHAProxyLiveness(argv []string) bool {
	if len(argv) < 2 {
		return false
	}
	prog := path.Base(argv[0])
	args := argv[1:]
	target := args[len(args)-1]
	flags := args[:len(args)-1]
	if !haproxyPattern.MatchString(target) {
		return false
	}
	allowed := func(ok ...string) bool {
		for _, f := range flags {
			found := false
			for _, o := range ok {
				if f == o {
					found = true
				}
			}
			if !found {
				return false
			}
		}
		return true
	}
	hasSignal0 := func() bool {
		for i, f := range flags {
			if f == "-0" || f == "--signal=0" || ((f == "-s" || f == "--signal") && i+1 < len(flags) && flags[i+1] == "0") {
				return true
			}
		}
		return false
	}
	switch prog {
	case "pgrep":
		return allowed("-x", "--exact", "-f", "--full", "-c", "--count", "-o", "--oldest", "-n", "--newest")
	case "pidof":
		return allowed("-s", "-x", "-q")
	case "killall", "pkill":
		// Only with signal 0, which tests; any other signal would be a stop, not a check.
		return hasSignal0() && allowed("-0", "-q", "--quiet", "-e", "--exact", "-x", "-s", "--signal", "0", "--signal=0")
	case "systemctl":
		return len(flags) >= 1 && flags[0] == "is-active" && allowed("is-active", "-q", "--quiet")
	}
	return false
}

var vrrpKeywordsWhy = map[string]string{
	"smtp_alert":                 "hapair sends no mail: alert from Prometheus or from a notify command",
	"use_vmac":                   "hapair does not create VRRP virtual MAC interfaces: the VIPs use the interface's own MAC, announced by gratuitous ARP",
	"vmac_xmit_base":             "hapair does not create VRRP virtual MAC interfaces",
	"native_ipv6":                "hapair picks the family from the virtual addresses",
	"virtual_ipaddress_excluded": "hapair has no excluded addresses: list them under virtual_ipaddress (they are then advertised) or attach them otherwise",
	"virtual_routes":             "hapair does not manage routes: add them from a notify_master command or the system's network configuration",
	"virtual_rules":              "hapair does not manage routing rules: add them from a notify_master command",
	"track_file":                 "hapair has no file tracking: use a script check that tests the file",
	"track_process":              "hapair has no process tracking besides HAProxy's: use a script check (pgrep)",
	"track_bfd":                  "hapair has no BFD",
	"accept":                     "hapair leaves the VIPs reachable (accept mode) as keepalived does by default",
	"no_accept":                  "hapair has no no_accept mode: the VIPs are reachable on the MASTER",
	"strict_mode":                "hapair always follows the RFCs' packet checks; strict mode's other effects are not carried",
	"mcast_dst_ip":               "hapair uses the standard groups 224.0.0.18 and ff02::12",
	"notify_master_rx_lower_pri": "hapair has no such notification",
	"notify_deleted":             "hapair has no such notification",
	"debug":                      "hapair logs with its own levels",
}

func (c *converter) vrrpInstance(s *stmt) {
	if len(s.args()) == 0 {
		c.note(s.line, "vrrp_instance", "has no name: skipped")
		return
	}
	in := &vinst{name: s.args()[0].text, line: s.line}
	c.instances = append(c.instances, in)
	ctx := "vrrp_instance " + in.name + ": "
	// set keeps a single-value key, the last one written as keepalived does.
	set := func(key string, n yamlValue, line int) {
		for i, f := range in.fields {
			if f.key == key {
				c.note(line, ctx+key, "written twice: the last value is used, as keepalived does")
				in.fields[i].node = n
				return
			}
		}
		in.fields = append(in.fields, field{key, n})
	}
	for _, g := range s.block {
		kw := g.keyword()
		args := g.args()
		first := ""
		if len(args) > 0 {
			first = args[0].text
		}
		switch kw {
		case "state":
			switch st := strings.ToUpper(first); st {
			case "MASTER", "BACKUP":
				set("state", str(st), g.line)
			default:
				c.note(g.line, ctx+"state "+g.argText(), "is neither MASTER nor BACKUP: skipped (BACKUP is the default)")
			}
		case "interface":
			if first != "" {
				set("interface", str(first), g.line)
			}
		case "virtual_router_id":
			if v, ok := c.intArg(g, 1, 255); ok {
				set("virtual_router_id", num(v), g.line)
			}
		case "priority":
			if v, ok := c.intArg(g, 1, 255); ok {
				set("priority", num(v), g.line)
			}
		case "advert_int":
			in.advertInt, in.advertLn = first, g.line
		case "version":
			if v, ok := c.intArg(g, 2, 3); ok {
				in.version, in.versionLn = v, g.line
			}
		case "authentication":
			c.authentication(in, g, ctx)
		case "virtual_ipaddress":
			c.virtualIPAddresses(in, g, ctx)
		case "unicast_src_ip":
			in.src = first
		case "mcast_src_ip":
			in.mcastSrc, in.mcastLn = first, g.line
		case "unicast_peer":
			c.unicastPeers(in, g, ctx)
		case "nopreempt":
			set("preempt", boolean(false), g.line)
		case "dont_track_primary":
			set("dont_track_primary", boolean(true), g.line)
		case "preempt":
			// keepalived's backward-compatible no-op: preempting is the default in both.
		case "preempt_delay":
			if d, ok := c.secondsArg(g); ok {
				set("preempt_delay", dur(d), g.line)
			}
		case "track_script":
			c.trackScripts(in, g, ctx)
		case "track_interface":
			c.trackInterfaces(in, g, ctx)
		case "notify_master", "notify_backup", "notify_fault", "notify_stop", "notify":
			c.notify(g, ctx, set)
		case "garp_master_delay":
			in.garpDelay, in.garpDlyLn = first, g.line
		case "garp_master_repeat":
			in.garpRep, in.garpRepLn = first, g.line
		default:
			why, ok := vrrpKeywordsWhy[kw]
			if !ok {
				why = "not carried over: hapair has no equivalent"
			}
			c.note(g.line, ctx+kw, "%s", why)
		}
	}
}

func (c *converter) virtualIPAddresses(in *vinst, g *stmt, ctx string) {
	for _, v := range g.block {
		addr := v.keyword()
		in.vips = append(in.vips, addr)
		in.vipLines = append(in.vipLines, v.line)
		if strings.Contains(addr, ":") {
			in.hasV6 = true
		}
		c.vipOptions(in, v, ctx)
	}
	if len(g.args()) > 0 {
		c.note(g.line, ctx+"virtual_ipaddress "+g.argText(), "words before the block were skipped")
	}
}

func (c *converter) unicastPeers(in *vinst, g *stmt, ctx string) {
	for _, p := range g.block {
		in.peers = append(in.peers, p.keyword())
		if len(p.args()) > 0 {
			c.note(p.line, ctx+"unicast_peer "+p.keyword()+" "+p.argText(), "per-peer TTL limits are not carried: hapair accepts adverts with TTL 255 only, from listed peers only")
		}
	}
}

// trackWeight reads the "weight N" that may follow a tracked name. given says whether the words
// start with "weight"; ok whether N is a weight hapair accepts; rest is what follows.
func trackWeight(ta []word) (w int, given, ok bool, rest []word) {
	if len(ta) < 2 || ta[0].text != "weight" {
		return 0, false, false, ta
	}
	w, err := strconv.Atoi(ta[1].text)
	ok = err == nil && w >= -config.MaxCheckWeight && w <= config.MaxCheckWeight
	return w, true, ok, ta[2:]
}

// trackReverse reads what follows a track entry's weight: keepalived's "reverse" or "noreverse"
// (nil when neither is written); another word is noted, as keepalived ignores it.
func (c *converter) trackReverse(t *stmt, what string, rest []word) *bool {
	if len(rest) == 0 {
		return nil
	}
	switch rest[0].text {
	case "reverse", "noreverse":
		r := rest[0].text == "reverse"
		return &r
	}
	c.note(t.line, what, "%q is not reverse or noreverse: keepalived ignores it, and so does hapair", joinWords(rest))
	return nil
}

// noteReversed notes a track entry left out for its reversed weight w. keepalived applies it
// the other way round, so carried without reverse it would do the opposite; the same priorities
// come from tracking the opposite condition (instead: a check that succeeds while the subject is
// down or fails) with weight -w.
func (c *converter) noteReversed(line int, what string, w int, subject, up, down, instead string) {
	var does string
	switch {
	case w > 0:
		does = fmt.Sprintf("lowers the priority by %d while %s %s", w, subject, up)
	case w < 0:
		does = fmt.Sprintf("raises the priority by %d while %s %s", -w, subject, down)
	default:
		does = fmt.Sprintf("puts the instance in FAULT while %s %s", subject, up)
	}
	c.note(line, what, "left out, as hapair has no reverse: keepalived %s, and the weight without reverse would do the opposite. "+
		"To keep that, track %s, with weight %d", does, instead, -w)
}

func (c *converter) trackScripts(in *vinst, g *stmt, ctx string) {
	for _, t := range g.block {
		what := strings.TrimSuffix(ctx+"track_script "+t.keyword()+" "+t.argText(), " ")
		ref := trackRef{name: t.keyword(), line: t.line, what: what}
		w, given, ok, rest := trackWeight(t.args())
		switch {
		case ok:
			ref.weight = &w
		case given:
			c.note(t.line, what, "weight is not within -%d..%d: the script's own weight applies", config.MaxCheckWeight, config.MaxCheckWeight)
		}
		ref.reverse = c.trackReverse(t, what, rest)
		in.tracks = append(in.tracks, ref)
	}
}

// trackInterfaces: an interface tracked without weight (or with weight 0) puts the instance in
// FAULT when it goes down (track_interface); one with a weight becomes an interface check.
func (c *converter) trackInterfaces(in *vinst, g *stmt, ctx string) {
	for _, t := range g.block {
		name := t.keyword()
		what := ctx + "track_interface " + name + " " + t.argText()
		w, given, ok, rest := trackWeight(t.args())
		if r := c.trackReverse(t, what, rest); r != nil && *r {
			if !ok {
				w = 0 // keepalived's weight for a value out of range
			}
			c.noteReversed(t.line, what, w, name, "is up", "is down", "a script check that succeeds while "+name+" is down")
			continue
		}
		switch {
		case given && !ok:
			c.note(t.line, what, "weight is not within -%d..%d: tracked without weight (down = FAULT)", config.MaxCheckWeight, config.MaxCheckWeight)
			in.trackIfs = append(in.trackIfs, name)
		case ok && w != 0:
			in.ifChecks = append(in.ifChecks, ifCheck{iface: name, weight: w})
		default:
			in.trackIfs = append(in.trackIfs, name)
		}
	}
}

func joinWords(ws []word) string {
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = w.text
	}
	return strings.Join(parts, " ")
}

func (c *converter) authentication(in *vinst, g *stmt, ctx string) {
	in.authLine = g.line
	a := &config.Authentication{}
	for _, a2 := range g.block {
		v := ""
		if len(a2.args()) > 0 {
			v = a2.args()[0].text
		}
		switch a2.keyword() {
		case "auth_type":
			a.Type = strings.ToUpper(v)
		case "auth_pass":
			a.Pass = v
		default:
			c.note(a2.line, ctx+"authentication: "+a2.keyword(), "not carried over: hapair has no equivalent")
		}
	}
	in.auth = a
}

// vipOptions notes what follows a virtual address: hapair carries the address only.
func (c *converter) vipOptions(in *vinst, v *stmt, ctx string) {
	opts := v.args()
	if len(opts) == 0 {
		return
	}
	for i := 0; i < len(opts); i++ {
		o := opts[i].text
		val := ""
		if i+1 < len(opts) && vipOptionHasValue(o) {
			val = opts[i+1].text
			i++
		}
		kw := ctx + "virtual_ipaddress " + v.keyword() + " " + strings.TrimSpace(o+" "+val)
		switch o {
		case "dev":
			c.note(v.line, kw, "hapair attaches every address of an instance to the instance's interface; keepalived put this one on %s", val)
		case "label":
			c.note(v.line, kw, "address labels are not carried: the address is attached without one")
		case "brd":
			c.note(v.line, kw, "the broadcast address is not carried: the kernel derives it")
		case "scope":
			c.note(v.line, kw, "the scope is not carried: addresses are attached with global scope")
		default:
			c.note(v.line, kw, "not carried: hapair attaches the address with its prefix only")
		}
	}
}

func vipOptionHasValue(o string) bool {
	switch o {
	case "dev", "label", "brd", "scope", "peer", "preferred_lft", "track_group", "use_vmac":
		return true
	}
	return false
}

// notify reads notify_* <command>|"<command>" [username [groupname]].
func (c *converter) notify(g *stmt, ctx string, set func(string, yamlValue, int)) {
	args := g.args()
	if len(args) == 0 {
		c.note(g.line, ctx+g.keyword(), "has no command: skipped")
		return
	}
	// keepalived: a quoted command may hold blanks, an unquoted one is a single word; either may be
	// followed by the user (and group) to run it as.
	cmd := args[0].text
	if len(args) > 1 {
		c.note(g.line, ctx+g.keyword()+" "+g.argText(), "runs as user %s in keepalived: hapair runs every notify command as notify.user", joinWords(args[1:]))
	}
	set(g.keyword(), str(cmd), g.line)
}

// needsShell reports whether a command relies on shell syntax (redirections, pipes, variables,
// globs), which hapair's direct execution would pass to the program as plain words.
func needsShell(argv []string) bool {
	switch path.Base(argv[0]) {
	case "sh", "bash", "dash", "zsh", "ksh", "busybox":
		return false // already a shell, or a shell's applet runner
	}
	for _, a := range argv {
		if strings.ContainsAny(a, "<>|&;$`*?(){}~") {
			return true
		}
	}
	return false
}

// unconditional drops keepalived's conditional lines (@id or @^id prefixes, chosen by
// keepalived -i at start) at every depth, noting each: which ones apply is known on the host only.
func (c *converter) unconditional(stmts []*stmt) []*stmt {
	var out []*stmt
	for _, s := range stmts {
		if kw := s.keyword(); strings.HasPrefix(kw, "@") {
			c.note(s.line, kw+" "+s.argText(), "conditional on `keepalived -i %s`: skipped (the converted file holds only unconditional lines; add the ones this host uses by hand)", strings.TrimPrefix(strings.TrimPrefix(kw, "@"), "^"))
			continue
		}
		s.block = c.unconditional(s.block)
		out = append(out, s)
	}
	return out
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return len(b)
}
