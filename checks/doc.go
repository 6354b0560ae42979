// Package checks runs hapair's tracked checks (HAProxy liveness, HTTP with HAProxy
// stats CSV conditions, scripts, TCP connect, interface link state) and turns their
// results into a VRRP effective priority, as keepalived's vrrp_script and
// track_interface do.
//
// Semantics, and where they differ from keepalived 2.2.7:
//
//   - Start: a check is pending until its first result. Pending is not failing: it
//     lowers no priority (Up leaves it out), and hapair holds an instance back from
//     contending for MASTER until its tracked checks have results (Pending), so a
//     host can neither win MASTER on checks that have not run yet nor lose it for
//     them. Every periodic check runs once at once when the Runner starts (after its
//     start gate, WithStartGate: hapair opens it when HAProxy is up), and that first result
//     sets the tracked status directly (one success is enough to be up, one failure
//     to be down), as keepalived's initial "INIT" script state does. From then on
//     fall consecutive failures take a check down and rise consecutive successes
//     bring it back.
//   - A script that is missing, cannot be executed, or runs past its timeout is a
//     failure (keepalived counts a script it cannot run as a success).
//   - The built-in "haproxy" check is event driven (fed by the supervisor) and has
//     no fall/rise delay either way: a dead HAProxy is dead at once, and a restarted
//     one is up at once; a flapping HAProxy is damped by the supervisor's backoff.
//   - An address owner (base priority 255) drops to at most 254 as soon as a failing
//     check's negative weight applies (keepalived ignores weights for an owner).
//   - A probe that does not return at its timeout is abandoned after a grace period
//     and counted as failed; the check is not probed again until it has returned.
//     Each check runs in its own goroutine, so a slow probe delays no other check.
//   - A tracked name that is not a known check is ignored by EffectivePriority;
//     configuration validation is where such a name is refused.
package checks
