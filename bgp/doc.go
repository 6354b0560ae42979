// Package bgp announces this host's service addresses to routers over BGP (RFC 4271), each
// announcement gated by health: a Gate decides from checks and VRRP states what is announced, and
// a Speaker, the Server (hapair's own: sessions and UPDATEs, encoded with GoBGP's packet
// package), carries it to the peers.
// Graceful withdrawal at stop follows RFC 8326 (GRACEFUL_SHUTDOWN).
package bgp
