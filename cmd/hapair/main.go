// Command hapair replaces the haproxy and keepalived units on a load-balancer pair: it runs HAProxy
// as its own child, turns HAProxy's health into a VRRP priority, and owns the virtual IP with VRRP.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/hapair/hapair/cmd/internal/demo"
)

// Set by the Makefile through -ldflags.
var (
	version = "dev"
	commit  = "unknown"
)

const defaultConfig = "/etc/hapair/hapair.yaml"

const usage = `hapair: HAProxy supervision and VRRP in one binary

Usage:
  hapair run     [--config FILE]           run the appliance (default config ` + defaultConfig + `)
  hapair check   [--config FILE]           validate like keepalived -t (also runs haproxy -c)
  hapair status  [--json] [--config FILE]  ask the running daemon for its state
  hapair reload  [--config FILE]           reload the running daemon (SIGHUP) and wait for the outcome
  hapair upgrade [--config FILE]           re-execute the binary on disk in place (SIGUSR2) and wait for the outcome
  hapair drain   [--config FILE]           hand the VIPs to the peers for maintenance (HAProxy keeps serving)
  hapair undrain [--config FILE]           end a drain
  hapair convert FILE                      print a keepalived.conf as hapair YAML
  hapair demo    [flags]                   run the failover scenario in a lab of network namespaces (--bgp: the BGP scale-out one)
  hapair version                           print version information
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a subcommand and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(rest, stderr)
	case "check":
		return cmdCheck(rest, stdout, stderr)
	case "upgrade":
		return cmdUpgrade(rest, stdout, stderr)
	case "status":
		return cmdStatus(rest, stdout, stderr)
	case "drain":
		return cmdDrain(rest, true, stdout, stderr)
	case "undrain":
		return cmdDrain(rest, false, stdout, stderr)
	case "reload":
		return cmdReload(rest, stdout, stderr)
	case "convert":
		return cmdConvert(rest, stdout, stderr)
	case "demo":
		return demo.Run(rest, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "hapair %s (commit %s, %s, %s/%s)\n", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "hapair: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}
