// Package spawn runs the programs hapair starts: script checks, notify hooks, `haproxy -c` and
// HAProxy itself. It holds, once, keepalived's rules for them: how a command line splits into
// words (Split), which of hapair's environment a child must not see (Env), whose user and groups it
// runs with (LookupUser), which programs may be run as root (CheckSecure, keepalived's
// script_security), and how a run is bounded: its own process group killed at the timeout, a
// parent-death signal so that it dies with hapair, and a cap on the output kept (Program.Run).
package spawn
