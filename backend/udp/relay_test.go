package udp

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

func testForwarder(t testing.TB) *forwarder {
	t.Helper()
	f := newForwarder(netip.MustParsePrefix("10.5.0.0/16"))
	routes, _ := planRoutes(subnets4{
		{"10.5.2.0/24", "172.31.0.2"},
		{"10.5.3.0/24", "172.31.0.3"},
	}.leases(), DefaultPort, netip.MustParseAddr("172.31.0.1"))
	f.routes.Store(newTable(routes))
	return f
}

func TestFromTUN(t *testing.T) {
	f := newForwarder(netip.MustParsePrefix("10.5.0.0/16"))
	icmp := make([]byte, maxICMPError)

	// Before the first Reconcile: silent drop, no ICMP.
	pkt := ipPacket(podA, podB, 64, 17, 20, make([]byte, 8))
	if v, _, _ := f.fromTUN(pkt, icmp); v != drop || f.st.notReady.Load() != 1 {
		t.Fatalf("before Reconcile: verdict %v", v)
	}

	f = testForwarder(t)
	pkt = ipPacket(podA, podB, 64, 17, 20, make([]byte, 8))
	v, hop, _ := f.fromTUN(pkt, icmp)
	if v != forward || hop != netip.MustParseAddrPort("172.31.0.2:8285") || pkt[offTTL] != 63 || checksum(pkt[:20]) != 0 {
		t.Fatalf("forward: %v %v ttl %d", v, hop, pkt[offTTL])
	}

	// No lease: ICMP net unreachable built from the packet as read.
	nowhere := ipPacket(podA, [4]byte{10, 5, 77, 1}, 64, 6, 20, make([]byte, 20))
	v, _, n := f.fromTUN(nowhere, icmp)
	if v != reply || n != 20+8+28 || icmp[20] != 3 || icmp[21] != 0 || nowhere[offTTL] != 64 {
		t.Fatalf("unreachable: %v n=%d %x", v, n, icmp[:n])
	}

	// TTL 1: dropped.
	if v, _, _ := f.fromTUN(ipPacket(podA, podB, 1, 17, 20, nil), icmp); v != drop || f.st.ttlOut.Load() != 1 {
		t.Fatalf("ttl 1: %v", v)
	}
	// Not IPv4.
	if v, _, _ := f.fromTUN(append([]byte{0x60}, make([]byte, 47)...), icmp); v != drop || f.st.notIPv4.Load() != 1 {
		t.Fatalf("ipv6: %v", v)
	}
	st := f.st.snapshot()
	if st.TUNRead != 4 || st.Unreachable != 1 || st.ICMPSent != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestFromUDP(t *testing.T) {
	f := testForwarder(t)
	in := ipPacket(podB, podA, 64, 17, 20, make([]byte, 8))
	if v := f.fromUDP(in); v != forward || in[offTTL] != 63 || checksum(in[:20]) != 0 {
		t.Fatalf("deliver: %v ttl %d", v, in[offTTL])
	}
	outside := ipPacket(podB, [4]byte{192, 168, 1, 1}, 64, 17, 20, nil)
	if v := f.fromUDP(outside); v != drop {
		t.Error("a packet for outside the overlay network was accepted")
	}
	if v := f.fromUDP([]byte("hello, not a packet at all")); v != drop {
		t.Error("garbage accepted")
	}
	if v := f.fromUDP(ipPacket(podB, podA, 1, 17, 20, nil)); v != drop {
		t.Error("TTL 1 accepted")
	}
	st := f.st.snapshot()
	if st.Received != 4 || st.Rejected != 2 || st.TTLExpired != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestRelayPathDoesNotAllocate counts allocations of the per-packet
// decisions: forwarding to a peer, answering "network unreachable", and
// accepting a datagram. The I/O calls around them (os.File Read/Write,
// UDPConn Read/WriteToUDPAddrPort) are measured with real descriptors by
// BenchmarkPrivilegedRelay.
func TestRelayPathDoesNotAllocate(t *testing.T) {
	f := testForwarder(t)
	icmp := make([]byte, maxICMPError)
	out := ipPacket(podA, podB, 64, 17, 20, make([]byte, 1400))
	nowhere := ipPacket(podA, [4]byte{10, 5, 77, 1}, 64, 6, 20, make([]byte, 20))
	in := ipPacket(podB, podA, 64, 17, 20, make([]byte, 1400))
	for name, fn := range map[string]func(){
		"to peer": func() {
			out[offTTL] = 64
			if v, _, _ := f.fromTUN(out, icmp); v != forward {
				t.Fatal("not forwarded")
			}
		},
		"unreachable": func() {
			if v, _, _ := f.fromTUN(nowhere, icmp); v != reply {
				t.Fatal("no reply")
			}
		},
		"from peer": func() {
			in[offTTL] = 64
			if f.fromUDP(in) != forward {
				t.Fatal("not delivered")
			}
		},
	} {
		if a := testing.AllocsPerRun(10000, fn); a != 0 {
			t.Errorf("%s: %v allocations per packet, want 0", name, a)
		} else {
			t.Logf("%s: %v allocations per packet", name, a)
		}
	}
}

func BenchmarkFromTUN(b *testing.B) {
	f := testForwarder(b)
	icmp := make([]byte, maxICMPError)
	pkt := ipPacket(podA, podB, 64, 17, 20, make([]byte, 1400))
	b.ReportAllocs()
	for b.Loop() {
		pkt[offTTL] = 64
		binary.BigEndian.PutUint16(pkt[offChecksum:], 0)
		f.fromTUN(pkt, icmp)
	}
}

// FuzzForwarder feeds arbitrary bytes to both directions: no panic, a
// forwarded packet keeps a valid header checksum if it had one, and every
// ICMP error built verifies.
func FuzzForwarder(f *testing.F) {
	f.Add(ipPacket(podA, podB, 64, 17, 20, make([]byte, 8)))
	f.Add(ipPacket(podA, [4]byte{10, 5, 77, 1}, 64, 6, 24, make([]byte, 20)))
	f.Add(ipPacket(podA, [4]byte{10, 5, 77, 1}, 2, 1, 20, []byte{8, 0, 0, 0}))
	f.Add([]byte{0x45})
	fw := testForwarder(f)
	icmp := make([]byte, maxICMPError)
	f.Fuzz(func(t *testing.T, data []byte) {
		pkt := append([]byte(nil), data...)
		hl, isIP := ipv4Header(pkt)
		valid := isIP && checksum(pkt[:hl]) == 0
		v, _, n := fw.fromTUN(pkt, icmp)
		switch v {
		case forward:
			if valid && checksum(pkt[:hl]) != 0 {
				t.Fatalf("checksum broken by the TTL rewrite: %x", pkt[:hl])
			}
		case reply:
			if n < 28 || checksum(icmp[:20]) != 0 || checksum(icmp[20:n]) != 0 {
				t.Fatalf("bad ICMP error %x", icmp[:n])
			}
		}
		pkt = append(pkt[:0], data...)
		if fw.fromUDP(pkt) == forward && valid && checksum(pkt[:hl]) != 0 {
			t.Fatalf("checksum broken by the TTL rewrite: %x", pkt[:hl])
		}
	})
}
