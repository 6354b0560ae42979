// Package bgp announces this host's service addresses to routers over BGP (RFC 4271), each
// announcement gated by health: a Gate decides from checks and VRRP states what is announced, and
// a Speaker, an embedded GoBGP server (github.com/osrg/gobgp/v4), carries it to the peers.
// Graceful withdrawal at stop follows RFC 8326 (GRACEFUL_SHUTDOWN).
package bgp
