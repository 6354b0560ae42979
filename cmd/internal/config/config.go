// Package config reads and validates hapair's YAML configuration (gopkg.in/yaml.v3). Keys follow
// keepalived.conf's words so that a keepalived setup maps one to one. Decoding is strict: unknown
// keys are errors, and every problem found is reported with its file, line and key path.
package config

import (
	"net/netip"
	"time"

	"github.com/hapair/hapair/checks"
	"github.com/hapair/hapair/cmd/internal/notify"
	"github.com/hapair/hapair/metrics/status"
	"github.com/hapair/hapair/supervisor"
)

// Defaults. docs/configuration.md lists the same values; TestDocumentedDefaults keeps the two in
// step. A default that the package doing the work also applies to a zero value is that
// package's constant, written once.
const (
	DefaultHAProxyCommand    = "/usr/sbin/haproxy"
	DefaultHAProxyConfig     = "/etc/haproxy/haproxy.cfg"
	DefaultRuntimeDir        = "/run/hapair"
	DefaultStopGrace         = supervisor.DefaultStopGrace
	DefaultBackoffInitial    = supervisor.DefaultBackoffInitial
	DefaultBackoffMax        = supervisor.DefaultBackoffMax
	DefaultBackoffResetAfter = supervisor.DefaultBackoffResetAfter

	DefaultCheckInterval = checks.DefaultInterval // 2s, not keepalived's 1s: see there
	DefaultCheckTimeout  = checks.DefaultTimeout  // or the interval when that is shorter
	DefaultCheckFall     = checks.DefaultFall
	DefaultCheckRise     = checks.DefaultRise
	DefaultCheckWeight   = 0 // keepalived's default: a failure puts tracking instances in FAULT
	// MaxCheckWeight bounds weights (checks[].weight, track) to -253..253, keepalived's rule.
	MaxCheckWeight = checks.MaxWeight

	DefaultHTTPExpectStatus = 200

	DefaultState            = StateBackup
	DefaultPriority         = 100
	DefaultAdvertInt        = 1 * time.Second
	DefaultVersion          = 2 // keepalived's default vrrp_version
	DefaultPreempt          = true
	DefaultGARPMasterRepeat = 5
	DefaultGARPMasterDelay  = 5 * time.Second
	DefaultChecksum         = ChecksumKeepalived
	DefaultFastFailover     = true

	DefaultNotifyTimeout        = notify.DefaultTimeout
	DefaultNotifyScriptSecurity = true

	DefaultStatusListen = status.DefaultListen
	DefaultDumpFile     = "/run/hapair/hapair.data"

	// BuiltinHAProxyCheck is the name of the built-in HAProxy liveness check. It exists whenever the
	// haproxy section does, is fed by the supervisor's exit events (no polling), and cannot be
	// declared under checks.
	BuiltinHAProxyCheck = "haproxy"
)

// Config is one hapair configuration file, defaults applied and validated.
type Config struct {
	// File is the path the configuration was read from (or the name given to Parse).
	File string

	// RouterID (router_id) names this host in logs and status. Default: the hostname.
	RouterID string

	// RuntimeDir (runtime_dir) is hapair's own directory: the lock that allows one hapair per
	// directory and the state record a restarted hapair resumes from. Default: haproxy.runtime_dir
	// when that is set, else /run/hapair. It must belong to hapair's user and be writable by
	// nobody else; it is created mode 0700 when missing, never chmodded.
	RuntimeDir string

	// VRRPRTPriority (vrrp_rt_priority, keepalived's word) runs hapair's threads SCHED_RR at this
	// priority, 1 to 99, so that adverts leave and master-down timers fire on time on a host whose
	// cores are busy; HAProxy, checks and notify hooks still run at normal priority (package
	// internal/rtprio). 0, the default: hapair keeps the policy it was started with.
	VRRPRTPriority int

	// HAProxy (haproxy) is nil when the section is absent: hapair then runs VRRP alone and the
	// built-in "haproxy" check does not exist. An empty section (`haproxy: {}` or `haproxy:`)
	// enables supervision with every default.
	HAProxy *HAProxy

	// Checks (checks) are the tracked checks besides the built-in "haproxy" check.
	Checks []CheckConfig

	// Instances (vrrp_instances): at least one.
	Instances []Instance

	Notify Notify
	Status Status

	// BGP (bgp) is nil when the section is absent. With it, vrrp_instances may be empty (an
	// anycast node).
	BGP *BGP

	// Warnings are doubtful but accepted settings (such as a check timeout longer than its
	// interval). `hapair check` prints them; `hapair run` logs them.
	Warnings Problems

	// lines maps key paths to the line they were written on, for Reloadable and later messages.
	lines map[string]int
}

// HAProxy is the supervised HAProxy child (section haproxy).
type HAProxy struct {
	Command        string        // command: default /usr/sbin/haproxy
	Config         string        // config: default /etc/haproxy/haproxy.cfg
	RuntimeDir     string        // runtime_dir: default the top-level runtime_dir; holds the master CLI socket
	StopGrace      time.Duration // stop_grace: default 10s between the soft stop (SIGUSR1) and SIGTERM
	RestartBackoff Backoff       // restart_backoff
}

// Backoff is the jittered exponential backoff between HAProxy restarts (haproxy.restart_backoff).
type Backoff struct {
	Initial    time.Duration // initial: default 500ms
	Max        time.Duration // max: default 30s
	ResetAfter time.Duration // reset_after: default 30s of uptime resets the backoff to initial
}

// CheckConfig is one tracked check (an entry of checks). Exactly one of HTTP, Script, TCP and Interface
// is set.
type CheckConfig struct {
	Name     string        // name: unique, [A-Za-z0-9_.-]+, "haproxy" is reserved
	Interval time.Duration // interval: default 2s
	Timeout  time.Duration // timeout: default 1s, or the interval when that is shorter
	Fall     int           // fall: consecutive failures before the check counts as down; default 1
	Rise     int           // rise: consecutive successes before it counts as up again; default 1
	// Weight (weight, -253..253, default 0) is added to the priority of tracking instances:
	// a negative weight while the check is down, a positive one while it is up. Weight 0 puts
	// tracking instances in FAULT while the check is down (keepalived's semantics).
	Weight int

	HTTP      *HTTPCheck
	Script    *ScriptCheck
	TCP       *TCPCheck
	Interface *InterfaceCheck
}

// Kind is the probe kind: "http", "script", "tcp" or "interface".
func (c *CheckConfig) Kind() string {
	switch {
	case c.HTTP != nil:
		return "http"
	case c.Script != nil:
		return "script"
	case c.TCP != nil:
		return "tcp"
	case c.Interface != nil:
		return "interface"
	}
	return ""
}

// HTTPCheck gets a URL, typically HAProxy's stats page as CSV (checks[].http).
type HTTPCheck struct {
	URL          string // url: required, http or https
	ExpectStatus int    // expect_status: default 200
	// Frontends (frontends) must read OPEN in the stats CSV.
	Frontends []string
	// Backends (backends) maps a backend to the least number of active servers that must be UP.
	Backends map[string]int
}

// ScriptCheck runs a command; exit status 0 is a success (checks[].script). A command that cannot
// be executed counts as a failure, unlike keepalived.
type ScriptCheck struct {
	Command string // command: program and arguments, split on blanks (double quotes group words)
	User    string // user: default notify.user
}

// TCPCheck connects to an address (checks[].tcp).
type TCPCheck struct {
	Address string // address: host:port
}

// InterfaceCheck follows a link's state (checks[].interface).
type InterfaceCheck struct {
	Name string // name: the interface
}

// State is the initial role hint of an instance.
type State string

const (
	StateMaster State = "MASTER"
	StateBackup State = "BACKUP"
)

// ChecksumMode selects how VRRPv3 IPv4 checksums are sent (received adverts are accepted in
// either form).
type ChecksumMode string

const (
	// ChecksumKeepalived includes the IPv4 pseudo-header, as keepalived does by default.
	ChecksumKeepalived ChecksumMode = "keepalived"
	// ChecksumRFC9568 leaves it out, as RFC 9568, Cisco and Juniper do (keepalived's v3_checksum_as_v2).
	ChecksumRFC9568 ChecksumMode = "rfc9568"
)

// Instance is one VRRP instance (an entry of vrrp_instances).
type Instance struct {
	Name      string // name: unique
	Interface string // interface: required; must exist unless the interface check is skipped
	// State (state: MASTER|BACKUP, default BACKUP) is a hint shown in status: like keepalived with a
	// priority below 255, hapair starts every instance in BACKUP and lets the election decide.
	State     State
	VRID      uint8         // virtual_router_id: required, 1..255
	Priority  uint8         // priority: 1..255, default 100; 255 = address owner
	AdvertInt time.Duration // advert_int: default 1s; v2: whole seconds 1..255s; v3: 10ms steps, 10ms..40.95s
	Version   int           // version: 2 or 3, default 2
	Preempt   bool          // preempt: default true (keepalived's nopreempt = false)
	// PreemptDelay (preempt_delay, 0..1000s, default 0) delays preemption after start or after
	// seeing a lower priority master.
	PreemptDelay time.Duration
	// Authentication (authentication) is v2 only; nil means none.
	Authentication *Authentication
	// VIPs (virtual_ipaddress): at least one; a bare address means /32 or /128. All IPv4, or all
	// IPv6 with version 3.
	VIPs         []netip.Prefix
	UnicastSrcIP netip.Addr   // unicast_src_ip: source of adverts (multicast or unicast); default the interface's primary address
	UnicastPeers []netip.Addr // unicast_peer: when non-empty, adverts go to each peer instead of the multicast group
	// Track (track) maps a check name to the weight it applies to this instance: the weight given
	// here, or the check's own when none is given. "haproxy" is the built-in liveness check.
	Track map[string]int
	// TrackInterfaces (track_interface): a link down puts the instance in FAULT.
	TrackInterfaces []string
	// DontTrackPrimary (dont_track_primary, default false): the instance's own interface is
	// tracked like a track_interface entry (link down: FAULT, VIPs released), as keepalived
	// does; true turns that off, as keepalived's dont_track_primary does.
	DontTrackPrimary bool
	GARPMasterRepeat int           // garp_master_repeat: gratuitous ARPs / NAs per burst, default 5
	GARPMasterDelay  time.Duration // garp_master_delay: second burst this long after becoming MASTER, default 5s, 0 = none
	Checksum         ChecksumMode  // checksum: keepalived|rfc9568, default keepalived
	// FastFailover (fast_failover, default true): a BACKUP with preempt that hears its master
	// advertise a lower priority than its own takes over after its skew time rather than after
	// the full master-down interval. See docs/configuration.md.
	FastFailover bool
	Notify       InstanceNotify
}

// Family is 4 or 6, the address family of the instance's virtual addresses.
func (in *Instance) Family() int {
	if len(in.VIPs) > 0 && in.VIPs[0].Addr().Is6() {
		return 6
	}
	return 4
}

// Authentication is VRRPv2's simple text password (authentication).
type Authentication struct {
	Type string // auth_type: PASS (default); AH is refused as unsupported
	Pass string // auth_pass: 1..8 characters
}

// InstanceNotify holds keepalived's notify_* commands for one instance. Each is a command line run
// on the transition; All (notify) gets the arguments INSTANCE <name> <state> <priority>.
type InstanceNotify struct {
	Master string // notify_master
	Backup string // notify_backup
	Fault  string // notify_fault
	Stop   string // notify_stop
	All    string // notify
}

// Notify holds the global settings of notify and script check commands (section notify).
type Notify struct {
	// User (user) runs notify commands and script checks that name no user; default "", the user
	// hapair runs as (root under the shipped systemd unit).
	User string
	// Timeout (timeout, default 10s) kills a notify command that runs longer.
	Timeout time.Duration
	// ScriptSecurity (script_security, default true) refuses, when running as root, to run a
	// command that a user other than root could modify (keepalived's enable_script_security).
	ScriptSecurity bool
}

// Status is the status listener and dump (section status).
type Status struct {
	// Listen (listen, default 127.0.0.1:9479) serves /metrics, /status and /healthz; "" disables it.
	Listen string
	// KeepalivedCompat (keepalived_compat, default false) also exports keepalived_* series for
	// dashboards built on a keepalived exporter.
	KeepalivedCompat bool
	// DumpFile (dump_file, default /run/hapair/hapair.data) receives the state dump on SIGUSR1.
	DumpFile string
}

// Line returns the line a key path such as "vrrp_instances[0].priority" was written on; for a key
// left to its default, the line of its nearest written parent; 0 when there is none.
func (c *Config) Line(key string) int {
	return lineOf(c.lines, key)
}
