package udp

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"
)

// maxPacket bounds what one read from the TUN or the socket returns: the
// largest IPv4 packet. The TUN only hands out packets up to its MTU (no
// offloads are enabled), but a buffer of the protocol maximum means no
// packet is ever truncated whatever the MTU.
const maxPacket = 65535

// verdict says what the relay does with a packet.
type verdict uint8

const (
	drop    verdict = iota
	forward         // send it on: to the peer (from the TUN) or into the TUN (from the socket)
	reply           // write the ICMP error built in the reply buffer into the TUN
)

// Stats counts the relay's packets. Drops are split by reason.
type Stats struct {
	TUNRead      uint64 // packets read from flannel0
	Sent         uint64 // datagrams sent to peers
	SendErrors   uint64 // datagrams the socket refused
	Unreachable  uint64 // packets for a subnet no lease holds (ICMP net unreachable sent when allowed)
	NotReady     uint64 // packets dropped before the first Reconcile filled the table
	TTLExpired   uint64 // packets whose TTL was 0 or 1 (both directions)
	NotIPv4      uint64 // packets from flannel0 that are not IPv4 (IPv6 neighbour discovery, ...)
	Received     uint64 // datagrams received
	Rejected     uint64 // datagrams that are not an IPv4 packet for the overlay network
	Delivered    uint64 // packets written into flannel0
	TUNErrors    uint64 // writes into flannel0 that failed (or found no device)
	ICMPSent     uint64 // ICMP errors written into flannel0
	DeviceLosses uint64 // times flannel0 went away under the relay
}

// counters are the relay's statistics. Each direction's counters sit on
// their own cache lines: the two relay goroutines run on different cores.
type counters struct {
	tunRead, sent, sendErrors, unreachable, notReady, ttlOut, notIPv4, icmp atomic.Uint64
	_                                                                       [64]byte
	received, rejected, delivered, tunErrors, ttlIn, deviceLosses           atomic.Uint64
	_                                                                       [64]byte
}

func (c *counters) snapshot() Stats {
	return Stats{
		TUNRead: c.tunRead.Load(), Sent: c.sent.Load(), SendErrors: c.sendErrors.Load(),
		Unreachable: c.unreachable.Load(), NotReady: c.notReady.Load(),
		TTLExpired: c.ttlOut.Load() + c.ttlIn.Load(), NotIPv4: c.notIPv4.Load(),
		Received: c.received.Load(), Rejected: c.rejected.Load(), Delivered: c.delivered.Load(),
		TUNErrors: c.tunErrors.Load(), ICMPSent: c.icmp.Load(), DeviceLosses: c.deviceLosses.Load(),
	}
}

// forwarder holds the per-packet decisions of the relay, apart from any I/O
// so that they can be tested (and their allocations counted) without a
// kernel.
type forwarder struct {
	netAddr, netMask uint32 // the overlay network
	// routes is nil until the first Reconcile: until then a packet without
	// a route is dropped silently rather than answered with "network
	// unreachable", which a restarted daemon would otherwise send for
	// every peer in the moment before it has read the leases.
	routes atomic.Pointer[table]
	st     counters
}

func newForwarder(network netip.Prefix) *forwarder {
	network = network.Masked()
	return &forwarder{netAddr: addrUint32(network.Addr()), netMask: maskOf(network.Bits())}
}

// fromTUN decides the fate of a packet read from flannel0. forward: send
// pkt (its TTL decremented) to the returned address. reply: write the
// first n bytes of icmp into flannel0.
func (f *forwarder) fromTUN(pkt, icmp []byte) (v verdict, hop netip.AddrPort, n int) {
	f.st.tunRead.Add(1)
	hl, ok := ipv4Header(pkt)
	if !ok {
		f.st.notIPv4.Add(1)
		return drop, hop, 0
	}
	t := f.routes.Load()
	if t == nil {
		f.st.notReady.Add(1)
		return drop, hop, 0
	}
	hop, ok = t.lookup(binary.BigEndian.Uint32(pkt[offDst:]))
	if !ok {
		f.st.unreachable.Add(1)
		if n = buildNetUnreachable(icmp, pkt, hl); n > 0 {
			f.st.icmp.Add(1)
			return reply, hop, n
		}
		return drop, hop, 0
	}
	if !decrementTTL(pkt) {
		// Upstream drops these too (its TODO: time exceeded).
		f.st.ttlOut.Add(1)
		return drop, hop, 0
	}
	return forward, hop, 0
}

// fromUDP decides the fate of a datagram's payload: forward means write
// pkt (its TTL decremented, as upstream does) into flannel0. Only IPv4
// packets addressed into the overlay network are accepted, so the socket
// cannot be used to inject packets for the host's other networks.
func (f *forwarder) fromUDP(pkt []byte) verdict {
	f.st.received.Add(1)
	if _, ok := ipv4Header(pkt); !ok || binary.BigEndian.Uint32(pkt[offDst:])&f.netMask != f.netAddr {
		f.st.rejected.Add(1)
		return drop
	}
	if !decrementTTL(pkt) {
		f.st.ttlIn.Add(1)
		return drop
	}
	return forward
}
