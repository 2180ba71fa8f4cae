package udp

import "encoding/binary"

// IPv4 header offsets and values used by the relay.
const (
	ipv4MinHeader = 20
	offTotalLen   = 2
	offFragment   = 6
	offTTL        = 8
	offProtocol   = 9
	offChecksum   = 10
	offSrc        = 12
	offDst        = 16

	protoICMP = 1

	icmpHeaderLen       = 8
	icmpDestUnreachable = 3
	icmpNetUnreachable  = 0

	// icmpTTL is the TTL of the ICMP errors we generate (the kernel's
	// default; upstream uses 8, enough for a packet that only goes back
	// into the local host).
	icmpTTL = 64

	// maxICMPError is the largest ICMP error we build: our header, the
	// ICMP header, and the quote of an offending header with 40 bytes of
	// options plus 8 bytes of its payload.
	maxICMPError = ipv4MinHeader + icmpHeaderLen + 60 + 8
)

// ipv4Header checks that pkt starts with a plausible IPv4 header and
// returns its length. The kernel validates the rest (checksum, total
// length) when the packet goes back into it.
func ipv4Header(pkt []byte) (int, bool) {
	if len(pkt) < ipv4MinHeader || pkt[0]>>4 != 4 {
		return 0, false
	}
	hl := int(pkt[0]&0x0f) * 4
	if hl < ipv4MinHeader || hl > len(pkt) {
		return 0, false
	}
	return hl, true
}

// decrementTTL lowers the TTL of the IPv4 header in pkt by one and patches
// the header checksum incrementally (RFC 1624, equation 3, which never
// produces the 0xffff a naive "add 0x100" can). It reports false, leaving
// the packet alone, when the TTL is 0 or 1: the packet must not be
// forwarded. (Upstream tests the TTL after decrementing it, so a TTL of 0
// wraps to 255 and the packet goes on.)
func decrementTTL(pkt []byte) bool {
	ttl := pkt[offTTL]
	if ttl <= 1 {
		return false
	}
	old := binary.BigEndian.Uint16(pkt[offTTL:])
	pkt[offTTL] = ttl - 1
	updated := binary.BigEndian.Uint16(pkt[offTTL:])
	hc := binary.BigEndian.Uint16(pkt[offChecksum:])
	sum := uint32(^hc) + uint32(^old) + uint32(updated)
	sum = (sum & 0xffff) + (sum >> 16)
	sum = (sum & 0xffff) + (sum >> 16)
	binary.BigEndian.PutUint16(pkt[offChecksum:], ^uint16(sum))
	return true
}

// checksum is the Internet checksum (RFC 1071) of b.
func checksum(b []byte) uint16 {
	var sum uint32
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = (sum & 0xffff) + (sum >> 16)
	}
	return ^uint16(sum)
}

// isICMPError reports whether the ICMP message starting at payload is an
// error (destination unreachable, source quench, redirect, time exceeded,
// parameter problem), about which no error may be sent (RFC 1122 3.2.2).
// A message too short to tell counts as an error.
func isICMPError(payload []byte) bool {
	if len(payload) < 1 {
		return true
	}
	switch payload[0] {
	case 3, 4, 5, 11, 12:
		return true
	}
	return false
}

// buildNetUnreachable writes into out (at least maxICMPError bytes) an ICMP
// destination-network-unreachable (type 3 code 0) answering the IPv4 packet
// pkt, whose header is hl bytes, and returns its length; 0 means no error
// may be sent for pkt (RFC 1122 3.2.2: not about an ICMP error, a fragment
// other than the first, or a packet from an unspecified, broadcast or
// multicast source or to a broadcast or multicast destination).
//
// The answer comes from the address the packet was sent to: upstream uses
// flannel0's address, which is local, so the kernel drops upstream's
// answer as a martian (a packet arriving on an interface with a local
// source) and it never reaches the sender. The destination address is not
// local (no lease holds it) and routes back through flannel0, so it passes
// reverse-path filtering too.
func buildNetUnreachable(out, pkt []byte, hl int) int {
	if binary.BigEndian.Uint16(pkt[offFragment:])&0x1fff != 0 {
		return 0
	}
	src, dst := pkt[offSrc:offSrc+4], pkt[offDst:offDst+4]
	if src[0] == 0 || src[0] >= 224 || dst[0] >= 224 {
		return 0
	}
	if pkt[offProtocol] == protoICMP && isICMPError(pkt[hl:]) {
		return 0
	}
	quote := hl + 8
	if quote > len(pkt) {
		quote = len(pkt)
	}
	n := ipv4MinHeader + icmpHeaderLen + quote
	h := out[:ipv4MinHeader]
	h[0] = 0x45 // version 4, 5 words
	h[1] = 0    // TOS, as upstream
	binary.BigEndian.PutUint16(h[offTotalLen:], uint16(n))
	binary.BigEndian.PutUint32(h[4:], 0) // ID, flags, fragment offset
	h[offTTL] = icmpTTL
	h[offProtocol] = protoICMP
	binary.BigEndian.PutUint16(h[offChecksum:], 0)
	copy(h[offSrc:offSrc+4], dst)
	copy(h[offDst:offDst+4], src)
	binary.BigEndian.PutUint16(h[offChecksum:], checksum(h))

	m := out[ipv4MinHeader:n]
	m[0] = icmpDestUnreachable
	m[1] = icmpNetUnreachable
	binary.BigEndian.PutUint16(m[2:], 0)
	binary.BigEndian.PutUint32(m[4:], 0) // unused
	copy(m[icmpHeaderLen:], pkt[:quote])
	binary.BigEndian.PutUint16(m[2:], checksum(m))
	return n
}
