package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/hapair/hapair/cmd/internal/config"
	"github.com/hapair/hapair/metrics/status"
)

// statusFlags declares --config and --addr, the flags that find the running hapair's status
// listener (`hapair status`, `hapair reload`). The returned parse parses args with fs and resolves
// them with statusAddr; when it cannot, it returns the command's exit code instead (2 for bad
// flags, 1 with the reason on stderr).
func statusFlags(fs *flag.FlagSet, stderr io.Writer) (parse func(args []string) (listen string, code int)) {
	path := fs.String("config", defaultConfig, "configuration file (for status.listen)")
	addr := fs.String("addr", "", "status listener address (default: status.listen of the configuration)")
	return func(args []string) (string, int) {
		if err := fs.Parse(args); err != nil {
			return "", 2
		}
		listen, err := statusAddr(*path, *addr)
		if err != nil {
			fmt.Fprintf(stderr, "hapair: %v\n", err)
			return "", 1
		}
		return listen, 0
	}
}

// statusAddr is the status listener named by --addr, else by the configuration's status.listen,
// read leniently: `hapair status` and `hapair reload` must find the running hapair even when the
// file on disk is broken (its reload refused), which is when the daemon's own answer matters most.
func statusAddr(path, addr string) (string, error) {
	if addr != "" {
		return addr, nil
	}
	listen, err := config.StatusListen(path)
	if err != nil {
		return "", err
	}
	if listen == "" {
		return "", fmt.Errorf("the status listener is disabled (status.listen is empty in %s)", path)
	}
	return listen, nil
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

// fetchStatus asks the running hapair at addr for its status document.
func fetchStatus(ctx context.Context, addr string) (status.Status, error) {
	var st status.Status
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return st, err
	}
	resp, err := statusClient.Do(req)
	if err != nil {
		return st, fmt.Errorf("is hapair running? %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("%s/status answered %s", addr, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxStatusBytes+1))
	if err != nil {
		return st, fmt.Errorf("reading the status of %s: %w", addr, err)
	}
	if len(body) > maxStatusBytes {
		return st, fmt.Errorf("%s/status answered more than %d bytes, larger than any status of hapair: is it hapair listening there?", addr, maxStatusBytes)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("decoding the status of %s: %w", addr, err)
	}
	return st, nil
}
