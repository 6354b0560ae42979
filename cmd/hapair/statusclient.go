package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hapair/hapair/cmd/internal/config"
	"github.com/hapair/hapair/metrics/status"
)

// statusFlags declares --config and --addr, the flags that find the running hapair (`hapair
// status`, `hapair reload`). The returned parse parses args with fs and resolves them with
// findDaemon; when it cannot, it returns the command's exit code instead (2 for bad flags, 1 with
// the reason on stderr).
func statusFlags(fs *flag.FlagSet, stderr io.Writer) (parse func(args []string) (daemonEndpoint, int)) {
	path := fs.String("config", defaultConfig, "configuration file (for runtime_dir and status.listen)")
	addr := fs.String("addr", "", "status listener address (default: the control socket in runtime_dir when run as root, else status.listen of the configuration)")
	return func(args []string) (daemonEndpoint, int) {
		if err := fs.Parse(args); err != nil {
			return daemonEndpoint{}, 2
		}
		ep, err := findDaemon(*path, *addr)
		if err != nil {
			fmt.Fprintf(stderr, "hapair: %v\n", err)
			return daemonEndpoint{}, 1
		}
		return ep, 0
	}
}

// daemonEndpoint is where the running hapair answers GET /status.
type daemonEndpoint struct {
	where  string // for messages: the socket's path or the listener's address
	base   string // the requests' URL up to the path
	client *http.Client
}

func listenerEndpoint(addr string) daemonEndpoint {
	return daemonEndpoint{where: addr, base: "http://" + addr, client: statusClient}
}

func socketEndpoint(socket string) daemonEndpoint {
	return daemonEndpoint{where: socket, base: "http://hapair", client: controlClient(socket)}
}

// findDaemon is where the running hapair answers: the status listener named by --addr; else its
// control socket in the runtime dir when this user may open it (root: the dir is hapair's own),
// which needs no listener and which nothing else can squat on; else the configuration's
// status.listen. The file is read leniently (config.ReadEndpoints): `hapair status` and
// `hapair reload` must find the running hapair even when the file on disk is broken.
func findDaemon(path, addr string) (daemonEndpoint, error) {
	if addr != "" {
		return listenerEndpoint(addr), nil
	}
	ep, err := config.ReadEndpoints(path)
	if err != nil {
		return daemonEndpoint{}, err
	}
	socket := filepath.Join(ep.RuntimeDir, controlSocketName)
	socketErr := unix.Access(socket, unix.W_OK) // connecting to a unix socket needs write permission
	if socketErr == nil {
		return socketEndpoint(socket), nil
	}
	if ep.StatusListen == "" {
		return daemonEndpoint{}, fmt.Errorf("cannot reach the running hapair: its control socket %s: %v (is hapair running? the socket needs root), and the status listener is disabled (status.listen is empty in %s)", socket, socketErr, path)
	}
	return listenerEndpoint(ep.StatusListen), nil
}

// statusClient speaks to the status listener directly, never through the proxy of an
// operator's http_proxy: hapair's listener is on this node (a host address, when not loopback,
// which Go never proxies), and a proxy cannot reach it or answers for something else.
var statusClient = &http.Client{Transport: &http.Transport{Proxy: nil}}

// statusTimeout bounds one request to the status listener.
const statusTimeout = 5 * time.Second

// maxStatusBytes bounds the status document read from the listener. The largest real one (255
// instances of 255 VIPs, every check's output) is a few MiB; something else squatting on the port
// could send without end (938 MB were read from one).
const maxStatusBytes = 16 << 20

// fetchStatus asks the running hapair at ep for its status document.
func fetchStatus(ctx context.Context, ep daemonEndpoint) (status.Status, error) {
	var st status.Status
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep.base+"/status", nil)
	if err != nil {
		return st, err
	}
	resp, err := ep.client.Do(req)
	if err != nil {
		return st, fmt.Errorf("is hapair running? %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("%s/status answered %s", ep.where, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStatusBytes+1))
	if err != nil {
		return st, fmt.Errorf("reading the status of %s: %w", ep.where, err)
	}
	if len(body) > maxStatusBytes {
		return st, fmt.Errorf("%s/status answered more than %d bytes, larger than any status of hapair: is it hapair listening there?", ep.where, maxStatusBytes)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("decoding the status of %s: %w", ep.where, err)
	}
	return st, nil
}
