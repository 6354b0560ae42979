package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Script is a keepalived vrrp_script.
type Script struct {
	Name     string // default "chk_haproxy"
	Cmd      string // the command line keepalived runs (no shell)
	Interval int    // seconds, default 2
	Weight   int
	Fall     int // default 2 (as in the seed guide)
	Rise     int // default 2
}

// KeepalivedConfig is one keepalived with one VRRP instance, enough for
// interop tests and for the side-by-side benchmark with the seed's settings.
type KeepalivedConfig struct {
	RouterID  string // default: the host name
	Instance  string // default "VI_LOGS"
	Interface string // default "eth0"
	State     string // MASTER or BACKUP (initial role only); default BACKUP
	VRID      int    // default 51
	Priority  int    // default 100
	AdvertInt string // seconds as keepalived writes them ("1", "0.05"); default "1"
	Version   int    // 2 or 3; default 2
	AuthPass  string // v2 PASS authentication when set
	VIPs      []string
	// UnicastSrc and UnicastPeers switch the instance to unicast adverts.
	UnicastSrc   string
	UnicastPeers []string
	Nopreempt    bool
	TrackScript  *Script
	// ChecksumAsV2 leaves the IPv4 pseudo-header out of VRRPv3 checksums
	// (RFC 9568 style). keepalived 2.2.7, Debian 12's, does not know the
	// keyword yet (it arrived in a later 2.x) and rejects the config.
	ChecksumAsV2 bool
	// Extra lines go verbatim into the vrrp_instance block.
	Extra []string
	// RTPriority, when > 0, is global_defs' vrrp_rt_priority (with vrrp_rlimit_rttime 1 s).
	RTPriority int
}

func (c KeepalivedConfig) withDefaults(host string) KeepalivedConfig {
	if c.RouterID == "" {
		c.RouterID = host
	}
	if c.Instance == "" {
		c.Instance = "VI_LOGS"
	}
	if c.Interface == "" {
		c.Interface = HostInterface
	}
	if c.State == "" {
		c.State = "BACKUP"
	}
	if c.VRID == 0 {
		c.VRID = 51
	}
	if c.Priority == 0 {
		c.Priority = 100
	}
	if c.AdvertInt == "" {
		c.AdvertInt = "1"
	}
	if c.Version == 0 {
		c.Version = 2
	}
	if s := c.TrackScript; s != nil {
		sc := *s
		if sc.Name == "" {
			sc.Name = "chk_haproxy"
		}
		if sc.Interval == 0 {
			sc.Interval = 2
		}
		if sc.Fall == 0 {
			sc.Fall = 2
		}
		if sc.Rise == 0 {
			sc.Rise = 2
		}
		c.TrackScript = &sc
	}
	return c
}

// Render writes the configuration in keepalived.conf syntax, laid out like the
// seed guide's. Unset fields take the defaults documented on the type
// (RouterID falls back to "lab").
func (c KeepalivedConfig) Render() string {
	c = c.withDefaults("lab")
	var b strings.Builder
	fmt.Fprintf(&b, "global_defs {\n    router_id %s\n    enable_script_security\n    script_user root\n", c.RouterID)
	if c.RTPriority > 0 {
		// A second, not the default 10 ms: that limit's SIGKILL is not what a test measures
		// (see scaleKeepalivedConf in cmd/hapair).
		fmt.Fprintf(&b, "    vrrp_rt_priority %d\n    vrrp_rlimit_rttime 1000000\n", c.RTPriority)
	}
	b.WriteString("}\n\n")
	if s := c.TrackScript; s != nil {
		fmt.Fprintf(&b, "vrrp_script %s {\n    script %s\n    interval %d\n    weight %d\n    fall %d\n    rise %d\n}\n\n",
			s.Name, strconv.Quote(s.Cmd), s.Interval, s.Weight, s.Fall, s.Rise)
	}
	fmt.Fprintf(&b, "vrrp_instance %s {\n", c.Instance)
	fmt.Fprintf(&b, "    state %s\n    interface %s\n    virtual_router_id %d\n    priority %d\n    advert_int %s\n    version %d\n",
		c.State, c.Interface, c.VRID, c.Priority, c.AdvertInt, c.Version)
	if c.ChecksumAsV2 {
		b.WriteString("    v3_checksum_as_v2\n")
	}
	if c.Nopreempt {
		b.WriteString("    nopreempt\n")
	}
	if c.AuthPass != "" {
		fmt.Fprintf(&b, "    authentication {\n        auth_type PASS\n        auth_pass %s\n    }\n", c.AuthPass)
	}
	if c.UnicastSrc != "" {
		fmt.Fprintf(&b, "    unicast_src_ip %s\n", c.UnicastSrc)
	}
	if len(c.UnicastPeers) > 0 {
		b.WriteString("    unicast_peer {\n")
		for _, p := range c.UnicastPeers {
			fmt.Fprintf(&b, "        %s\n", p)
		}
		b.WriteString("    }\n")
	}
	b.WriteString("    virtual_ipaddress {\n")
	for _, v := range c.VIPs {
		fmt.Fprintf(&b, "        %s\n", v)
	}
	b.WriteString("    }\n")
	if c.TrackScript != nil {
		fmt.Fprintf(&b, "    track_script {\n        %s\n    }\n", c.TrackScript.Name)
	}
	for _, l := range c.Extra {
		fmt.Fprintf(&b, "    %s\n", l)
	}
	b.WriteString("}\n")
	return b.String()
}

// Keepalived is a keepalived running in a host, VRRP subsystem only.
type Keepalived struct {
	*Proc
	Config     KeepalivedConfig // with defaults filled in
	Dir        string
	ConfigPath string
}

var keepalivedState = regexp.MustCompile(`\((\S+)\) Entering (\S+) STATE`)

// StartKeepalived writes cfg to dir/keepalived.conf (dir default
// <host dir>/keepalived), checks it with `keepalived -t` and starts
// `keepalived -n -l -D -G -P` in the host with pid files of its own in dir, so
// that any number of keepalived run side by side on one machine. Its log
// (console logging, no syslog) is dir/keepalived.log and Proc's lines.
func (h *Host) StartKeepalived(ctx context.Context, cfg KeepalivedConfig, dir string) (*Keepalived, error) {
	cfg = cfg.withDefaults(h.Name)
	if dir == "" {
		dir = filepath.Join(h.Dir(), "keepalived")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%s: keepalived dir: %w", h.Name, err)
	}
	conf := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(conf, []byte(cfg.Render()), 0o600); err != nil {
		return nil, fmt.Errorf("%s: write keepalived.conf: %w", h.Name, err)
	}
	if out, err := h.Run(ctx, "keepalived", "-t", "-f", conf); err != nil {
		return nil, fmt.Errorf("%s: keepalived -t rejects %s: %w\n%s", h.Name, conf, err, out)
	}
	p, err := h.StartWith(ctx, ProcOptions{LogPath: filepath.Join(dir, "keepalived.log"), Dir: dir},
		"keepalived", "--dont-fork", "--log-console", "--log-detail", "--no-syslog", "--vrrp",
		"--use-file", conf,
		"--pid", filepath.Join(dir, "keepalived.pid"),
		"--vrrp_pid", filepath.Join(dir, "vrrp.pid"),
		"--checkers_pid", filepath.Join(dir, "checkers.pid"))
	if err != nil {
		return nil, err
	}
	return &Keepalived{Proc: p, Config: cfg, Dir: dir, ConfigPath: conf}, nil
}

// StateLine matches the log line keepalived writes on entering state
// ("MASTER", "BACKUP", "FAULT") for this instance.
func (k *Keepalived) StateLine(state string) *regexp.Regexp {
	return regexp.MustCompile(`\(` + regexp.QuoteMeta(k.Config.Instance) + `\) Entering ` + regexp.QuoteMeta(state) + ` STATE`)
}

// WaitState waits for keepalived to log entering state at or after line from.
func (k *Keepalived) WaitState(ctx context.Context, from int, state string) (Line, error) {
	return k.WaitForLineAfter(ctx, from, k.StateLine(state))
}

// State is the state keepalived last logged entering for its instance ("" if
// none yet).
func (k *Keepalived) State() string {
	lines := k.Lines()
	for i := len(lines) - 1; i >= 0; i-- {
		if m := keepalivedState.FindStringSubmatch(lines[i].Text); m != nil && m[1] == k.Config.Instance {
			return m[2]
		}
	}
	return ""
}
