package vrrp

// MaxAddrs is the most virtual addresses one advert carries: its count field is one byte.
const MaxAddrs = maxAddrs

// IP header lengths of an advert: VRRP sends no IP options, and IPv6 no extension headers.
const (
	ipv4HeaderLen = 20
	ipv6HeaderLen = 40
)

// AdvertPacketLen is the length of the IP packet carrying an advert with n addresses: what must
// fit in the interface's MTU, since an advert is never fragmented (TTL 255, one link).
func AdvertPacketLen(version int, ipv6 bool, n int) int {
	if ipv6 {
		return ipv6HeaderLen + headerLen + 16*n
	}
	l := ipv4HeaderLen + headerLen + 4*n
	if version == 2 {
		l += authLen
	}
	return l
}
