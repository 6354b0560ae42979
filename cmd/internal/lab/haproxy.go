package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// HAProxyConfig renders a self-contained HAProxy configuration for the lab:
// a frontend that answers every request itself with Name (no backend servers
// needed, so the client sees which load balancer served it), and a stats
// frontend with HAProxy's CSV and a monitor URI.
type HAProxyConfig struct {
	Name      string // response body (plus newline); default "haproxy"
	Bind      string // default ":80"
	StatsBind string // default "127.0.0.1:8404"; stats at /stats, health at /healthz
	Extra     string // appended verbatim
}

// Render returns the configuration text.
func (c HAProxyConfig) Render() string {
	if c.Name == "" {
		c.Name = "haproxy"
	}
	if c.Bind == "" {
		c.Bind = ":80"
	}
	if c.StatsBind == "" {
		c.StatsBind = "127.0.0.1:8404"
	}
	var b strings.Builder
	fmt.Fprintf(&b, `global
    maxconn 2000

defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s
    timeout http-request 5s

frontend www
    bind %s
    http-request return status 200 content-type text/plain string %s

frontend stats
    bind %s
    stats enable
    stats uri /stats
    stats refresh 5s
    monitor-uri /healthz
`, c.Bind, strconv.Quote(c.Name+"\n"), c.StatsBind)
	if c.Extra != "" {
		b.WriteString("\n" + c.Extra + "\n")
	}
	return b.String()
}

// HAProxy is an HAProxy master (-W) running in a host, the way the seed runs
// it beside keepalived.
type HAProxy struct {
	*Proc
	Dir        string
	ConfigPath string
	// PIDFile holds the master's pid, written by the lab right after start.
	PIDFile string
}

// TrackScriptNote says why HAProxy.TrackScript does not use the seed's
// `pgrep -x haproxy`; benchmarks print it with their results.
const TrackScriptNote = "keepalived track script: `pgrep -F <pidfile> -x haproxy` on the host's own HAProxy master pid " +
	"instead of the seed's `pgrep -x haproxy`: the lab's hosts share one pid namespace, so a plain " +
	"pgrep on one host also sees every other host's HAProxy and would never fail"

// StartHAProxy writes cfg to dir/haproxy.cfg (dir default <host dir>/haproxy),
// checks it with `haproxy -c` and starts `haproxy -W -db -f` in the host. The
// master's pid goes to dir/haproxy.pid for the track script.
func (h *Host) StartHAProxy(ctx context.Context, cfg string, dir string) (*HAProxy, error) {
	if dir == "" {
		dir = filepath.Join(h.Dir(), "haproxy")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%s: haproxy dir: %w", h.Name, err)
	}
	conf := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		return nil, fmt.Errorf("%s: write haproxy.cfg: %w", h.Name, err)
	}
	if out, err := h.Run(ctx, "haproxy", "-c", "-q", "-f", conf); err != nil {
		return nil, fmt.Errorf("%s: haproxy -c rejects %s: %w\n%s", h.Name, conf, err, out)
	}
	p, err := h.StartWith(ctx, ProcOptions{LogPath: filepath.Join(dir, "haproxy.log"), Dir: dir},
		"haproxy", "-W", "-db", "-f", conf)
	if err != nil {
		return nil, err
	}
	pidFile := filepath.Join(dir, "haproxy.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(p.PID())+"\n"), 0o644); err != nil {
		p.Kill()
		return nil, fmt.Errorf("%s: write haproxy pid file: %w", h.Name, err)
	}
	return &HAProxy{Proc: p, Dir: dir, ConfigPath: conf, PIDFile: pidFile}, nil
}

// TrackScript is the keepalived vrrp_script that checks this HAProxy with the
// seed's timing (interval 2, fall 2, rise 2) and the given weight; see
// TrackScriptNote.
func (hp *HAProxy) TrackScript(weight int) *Script {
	return &Script{
		Name:     "chk_haproxy",
		Cmd:      "/usr/bin/pgrep -F " + hp.PIDFile + " -x haproxy",
		Interval: 2, Weight: weight, Fall: 2, Rise: 2,
	}
}
