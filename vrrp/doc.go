// Package vrrp implements the Virtual Router Redundancy Protocol, versions 2 (RFC 3768) and 3 (RFC 5798):
// its wire format and its state machine, without any I/O.
//
// The codec (Advert, Marshal, Parse) and the receive filter (Filter.Check) follow what
// keepalived 2.2.7 sends and accepts, so that hapair and keepalived can share a virtual router
// during a migration:
//
//   - VRRPv2 is IPv4 only and always carries the 8-byte authentication field, also with
//     authentication type 0 (keepalived's non-standard VRRPv2 over IPv6 is not supported).
//   - A VRRPv3/IPv4 checksum is sent with the IPv4 pseudo-header by default, as keepalived does,
//     or without it (ChecksumWithoutPseudoHeader: RFC 9568, Cisco, Juniper, and the
//     v3_checksum_as_v2 of keepalived releases after 2.2.7, which does not know that keyword).
//     Parse accepts either form, and also the form of keepalived up to 1.3.6 (and of later ones
//     set to old_unicast_checksum) that puts 224.0.0.18 in the pseudo-header of unicast adverts.
//   - The payload length must match the address count exactly, as keepalived requires.
//
// Parse and Filter.Check are on the receive path of every advert: they do not allocate when
// the packet is accepted (Advert.Unmarshal reuses the address slice) and never panic.
package vrrp
