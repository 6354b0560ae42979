package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/hapair/hapair/cmd/internal/config"
	"github.com/hapair/hapair/metrics/status"
)

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

// statusTimeout bounds one request to the status listener.
const statusTimeout = 5 * time.Second

// fetchStatus asks the running hapair at addr for its status document.
func fetchStatus(ctx context.Context, addr string) (status.Status, error) {
	var st status.Status
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, fmt.Errorf("is hapair running? %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("%s/status answered %s", addr, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("decoding the status of %s: %w", addr, err)
	}
	return st, nil
}
