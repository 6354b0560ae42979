package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hapair/hapair/cmd/internal/config"
	"github.com/hapair/hapair/metrics/status"
	"github.com/hapair/hapair/vrrp"
	"github.com/hapair/hapair/vrrp/instance"
)

// Planned maintenance: `hapair drain` hands this node's VIPs to its peers make-before-break
// (vrrp.Machine.SetDrained) and keeps HAProxy serving; `hapair undrain` ends it. The drained
// state is a file in the runtime dir, so a restarted hapair starts drained (keepalived users
// get the same from a track_file), and it shows in /status, `hapair status` and hapair_drained.
//
// The two commands reach the running hapair through a unix socket in its runtime dir, not through
// the status listener: whoever can read /metrics (a Prometheus on another host, any local user
// on the loopback) must not be able to move the VIPs. The runtime dir is hapair's own and not
// writable by others (rundir), and the socket is 0600: only hapair's user (root) may drain.
const (
	drainedFileName   = "drained"
	controlSocketName = "control.sock"
)

// drainedOnDisk says whether the runtime dir records a drain.
func drainedOnDisk(runtimeDir string) bool {
	_, err := os.Stat(filepath.Join(runtimeDir, drainedFileName))
	return err == nil
}

// recordDrained writes or removes the drained file, synced, so that a crash right after the
// command still restarts drained (or not).
func recordDrained(runtimeDir string, drained bool) error {
	path := filepath.Join(runtimeDir, drainedFileName)
	if !drained {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("undrain: %w", err)
		}
		return nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	_, err = fmt.Fprintf(f, "drained at %s by hapair drain; hapair undrain removes this file\n", time.Now().UTC().Format(time.RFC3339))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("drain: write %s: %w", path, err)
	}
	return nil
}

// drainReport is the answer of POST /drain and /undrain on the control socket.
type drainReport struct {
	Drained   bool           `json:"drained"`
	Instances []drainOutcome `json:"instances"`
}

// drainOutcome is one VRRP instance after a drain or undrain.
type drainOutcome struct {
	Name       string `json:"name"`
	HandedOver bool   `json:"handed_over"` // it was MASTER and a new MASTER took over
	State      string `json:"state"`
	Master     string `json:"master"` // the MASTER now, "" when unknown
	Us         bool   `json:"us"`     // the MASTER is this node
}

// undrainSettle bounds how long an undrain waits for this node to take the VIPs back (preempt
// after Skew_Time, or the next advert of the MASTER): only to say who is MASTER then.
func undrainSettle(advertInt time.Duration) time.Duration { return advertInt + time.Second }

// setDrained drains or undrains every instance, records it in the runtime dir and waits for
// the outcome: the end of each MASTER's handover (drain), or a short while for this node to
// preempt back (undrain).
func (d *daemon) setDrained(ctx context.Context, drained bool) (drainReport, error) {
	d.drainMu.Lock()
	defer d.drainMu.Unlock()
	d.mu.Lock()
	runtimeDir, instances := d.cfg.RuntimeDir, d.instances
	d.mu.Unlock()
	if err := recordDrained(runtimeDir, drained); err != nil {
		return drainReport{}, err
	}
	d.drained.Store(drained)
	d.metrics.SetDrained(drained)
	if drained {
		d.log.Info("Drained by hapair drain: handing the VIPs to the peers, HAProxy keeps serving")
	} else {
		d.log.Info("Undrained by hapair undrain: back at the tracked priorities")
	}
	bgpDone := d.drainBGP(drained)
	defer func() { <-bgpDone }()
	replies := make([]<-chan instance.HandoverResult, len(instances))
	for i, vi := range instances {
		replies[i] = vi.run.SetDrained(drained)
	}
	rep := drainReport{Drained: drained}
	for i, vi := range instances {
		var res instance.HandoverResult
		select {
		case res = <-replies[i]:
		case <-vi.run.Done():
		case <-ctx.Done():
			return rep, ctx.Err()
		}
		if !drained {
			res.State, res.MasterAddr = d.awaitMaster(ctx, vi, undrainSettle(vi.advertInt))
		}
		out := drainOutcome{Name: vi.name, HandedOver: res.HandedOver, State: res.State.String()}
		if res.MasterAddr.IsValid() {
			out.Master = res.MasterAddr.String()
			out.Us = res.State == vrrp.Master
		}
		rep.Instances = append(rep.Instances, out)
	}
	return rep, nil
}

// awaitMaster waits up to d for vi to become MASTER and returns its state and MASTER then.
func (d *daemon) awaitMaster(ctx context.Context, vi *vrrpInstance, wait time.Duration) (vrrp.State, netip.Addr) {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		st := vi.run.Status()
		if st.State == vrrp.Master {
			return st.State, st.MasterAddr
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			return st.State, st.MasterAddr
		case <-ctx.Done():
			return st.State, st.MasterAddr
		case <-vi.run.Done():
			return st.State, st.MasterAddr
		}
	}
}

// controlServer serves POST /drain, POST /undrain and GET /status on the unix socket in the
// runtime dir.
type controlServer struct {
	path string
	srv  *http.Server
	ln   net.Listener
}

// startControl listens on <runtimeDir>/control.sock. A socket file left by a hapair that died is
// replaced; one another hapair answers on is not (the runtime dir lock should have said so).
func startControl(runtimeDir string, d *daemon, log *slog.Logger) (*controlServer, error) {
	path := filepath.Join(runtimeDir, controlSocketName)
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another hapair answers on it", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// The runtime dir already keeps others out; the mode says so on the socket itself.
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	mux := http.NewServeMux()
	for route, drained := range map[string]bool{"POST /drain": true, "POST /undrain": false} {
		mux.HandleFunc(route, func(w http.ResponseWriter, r *http.Request) {
			rep, err := d.setDrained(r.Context(), drained)
			if err != nil {
				log.Error(err.Error())
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(rep)
		})
	}
	// The status too, for `hapair status` and `hapair reload` run as root: they need no status
	// listener then (status.listen may be ""), and nothing else can answer in hapair's place.
	mux.Handle("GET /status", status.StatusHandler(d))
	c := &controlServer{path: path, ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}}
	go func() { _ = c.srv.Serve(ln) }()
	return c, nil
}

// close stops serving and removes the socket.
func (c *controlServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = c.srv.Shutdown(ctx)
	_ = os.Remove(c.path)
}

// cmdDrain is `hapair drain` (drained true) and `hapair undrain`.
func cmdDrain(args []string, drained bool, stdout, stderr io.Writer) int {
	name := "undrain"
	if drained {
		name = "drain"
	}
	fl := newFlags(name, stderr)
	path := fl.String("config", defaultConfig, "configuration file (for runtime_dir)")
	runtimeDir := fl.String("runtime-dir", "", "hapair's runtime dir (default: runtime_dir of the configuration)")
	timeout := fl.Duration("timeout", 5*time.Minute, "how long to wait for the outcome")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *runtimeDir == "" {
		// Leniently: a drain is wanted most when something is wrong, a half-edited file included.
		ep, err := config.ReadEndpoints(*path)
		if err != nil {
			fmt.Fprintf(stderr, "hapair: %v (give --runtime-dir)\n", err)
			return 1
		}
		*runtimeDir = ep.RuntimeDir
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	rep, err := requestDrain(ctx, filepath.Join(*runtimeDir, controlSocketName), name)
	if err != nil {
		fmt.Fprintf(stderr, "hapair: %s: %v\n", name, err)
		return 1
	}
	text, ok := drainText(rep)
	fmt.Fprint(stdout, text)
	if !ok {
		return 1
	}
	return 0
}

// requestDrain posts /drain or /undrain to the control socket.
func requestDrain(ctx context.Context, socket, what string) (drainReport, error) {
	var rep drainReport
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://hapair/"+what, nil)
	if err != nil {
		return rep, err
	}
	resp, err := controlClient(socket).Do(req)
	if err != nil {
		return rep, fmt.Errorf("is hapair running? (%s needs root) %w", socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return rep, fmt.Errorf("hapair answered %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		return rep, fmt.Errorf("decoding hapair's answer: %w", err)
	}
	return rep, nil
}

// controlClient speaks HTTP over the control socket.
func controlClient(socket string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", socket)
		},
	}}
}

// drainText says what a drain or undrain came to, one line per instance, and whether it did
// what was asked: a drain fails while an instance of this node is still MASTER (nobody took
// over); an undrain always succeeds, whoever is MASTER.
func drainText(rep drainReport) (string, bool) {
	var b strings.Builder
	ok := true
	if rep.Drained {
		b.WriteString("hapair: drained (kept across restarts; hapair undrain ends it); HAProxy keeps serving\n")
	} else {
		b.WriteString("hapair: undrained\n")
	}
	for _, in := range rep.Instances {
		master := in.Master
		if master == "" {
			master = "unknown"
		}
		switch {
		case rep.Drained && in.HandedOver:
			fmt.Fprintf(&b, "(%s) handed over: MASTER is now %s\n", in.Name, master)
		case rep.Drained && in.State == "MASTER":
			ok = false
			fmt.Fprintf(&b, "(%s) no peer took over: this node is still MASTER (priority 1)\n", in.Name)
		case in.Us:
			fmt.Fprintf(&b, "(%s) MASTER is now %s (this node)\n", in.Name, master)
		default:
			fmt.Fprintf(&b, "(%s) %s: MASTER is %s\n", in.Name, in.State, master)
		}
	}
	if len(rep.Instances) == 0 {
		b.WriteString("(no VRRP instances)\n")
	}
	return b.String(), ok
}
