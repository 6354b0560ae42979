package checks

import (
	"context"
	"fmt"
	"net"
	"time"
)

// TCPProbe succeeds when a TCP connection to the address opens within the timeout.
type TCPProbe struct {
	addr string
}

// NewTCPProbe probes address (host:port). An address that cannot be dialled
// (configuration validation should have refused it) makes every probe fail with
// the dialler's reason.
func NewTCPProbe(address string) *TCPProbe {
	return &TCPProbe{addr: address}
}

// Probe connects once and closes the connection at once.
func (p *TCPProbe) Probe(ctx context.Context) Result {
	start := time.Now()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", p.addr)
	res := Result{At: start, Duration: time.Since(start)}
	switch {
	case err == nil:
		conn.Close()
		res.OK = true
		res.Output = fmt.Sprintf("connected to %s", p.addr)
	case timedOut(ctx, err):
		res.Output = fmt.Sprintf("connect %s: timed out after %s", p.addr, res.Duration.Round(time.Millisecond))
	default:
		res.Output = fmt.Sprintf("connect %s: %v", p.addr, err)
	}
	return res
}
