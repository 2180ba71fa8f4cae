package udp

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// ipPacket builds an IPv4 packet with a correct header checksum: hl bytes
// of header (options filled with NOPs), protocol proto, and payload.
func ipPacket(src, dst [4]byte, ttl, proto byte, hl int, payload []byte) []byte {
	p := make([]byte, hl+len(payload))
	p[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[4:], 0x1234)
	p[6] = 0x40 // DF
	p[offTTL] = ttl
	p[offProtocol] = proto
	copy(p[offSrc:], src[:])
	copy(p[offDst:], dst[:])
	for i := ipv4MinHeader; i < hl; i++ {
		p[i] = 1 // NOP option
	}
	binary.BigEndian.PutUint16(p[offChecksum:], checksum(p[:hl]))
	copy(p[hl:], payload)
	return p
}

var (
	podA = [4]byte{10, 5, 1, 2}
	podB = [4]byte{10, 5, 2, 3}
)

func TestDecrementTTLMatchesFullChecksum(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	check := func(p []byte) {
		t.Helper()
		hl := int(p[0]&0x0f) * 4
		ttl := p[offTTL]
		ok := decrementTTL(p)
		if ttl <= 1 {
			if ok || p[offTTL] != ttl {
				t.Fatalf("TTL %d: forwarded or modified", ttl)
			}
			return
		}
		if !ok || p[offTTL] != ttl-1 {
			t.Fatalf("TTL %d -> %d ok=%v", ttl, p[offTTL], ok)
		}
		got := binary.BigEndian.Uint16(p[offChecksum:])
		ref := append([]byte(nil), p[:hl]...)
		binary.BigEndian.PutUint16(ref[offChecksum:], 0)
		if want := checksum(ref); got != want {
			t.Fatalf("header %x: incremental checksum %#04x, full recomputation %#04x", p[:hl], got, want)
		}
		if checksum(p[:hl]) != 0 {
			t.Fatalf("header %x does not verify", p[:hl])
		}
	}
	for i := 0; i < 100000; i++ {
		var src, dst [4]byte
		binary.BigEndian.PutUint32(src[:], rng.Uint32())
		binary.BigEndian.PutUint32(dst[:], rng.Uint32())
		p := ipPacket(src, dst, byte(rng.IntN(256)), byte(rng.IntN(256)), 20+4*rng.IntN(11), nil)
		binary.BigEndian.PutUint16(p[4:], uint16(rng.Uint32()))
		binary.BigEndian.PutUint16(p[offChecksum:], 0)
		binary.BigEndian.PutUint16(p[offChecksum:], checksum(p[:int(p[0]&0xf)*4]))
		check(p)
	}
	// The case a naive "checksum += 0x100" gets wrong: a stored checksum
	// of 0xfeff must become 0x0000, not 0xffff.
	found := false
	for id := 0; id < 1<<16 && !found; id++ {
		p := ipPacket(podA, podB, 64, 6, 20, nil)
		binary.BigEndian.PutUint16(p[4:], uint16(id))
		binary.BigEndian.PutUint16(p[offChecksum:], 0)
		binary.BigEndian.PutUint16(p[offChecksum:], checksum(p[:20]))
		if binary.BigEndian.Uint16(p[offChecksum:]) == 0xfeff {
			found = true
			check(p)
			if c := binary.BigEndian.Uint16(p[offChecksum:]); c != 0 {
				t.Fatalf("edge case: checksum %#04x, want 0", c)
			}
		}
	}
	if !found {
		t.Fatal("no header with checksum 0xfeff found")
	}
}

func TestDecrementTTLExpired(t *testing.T) {
	for _, ttl := range []byte{0, 1} {
		p := ipPacket(podA, podB, ttl, 17, 20, nil)
		orig := append([]byte(nil), p...)
		if decrementTTL(p) || !bytes.Equal(p, orig) {
			t.Errorf("TTL %d: forwarded or modified", ttl)
		}
	}
}

func TestNetUnreachableFormat(t *testing.T) {
	udpPayload := []byte{0x30, 0x39, 0x00, 0x35, 0x00, 0x14, 0xab, 0xcd, 'd', 'a', 't', 'a', '!', '!', '!', '!'}
	for _, hl := range []int{20, 24, 60} {
		orig := ipPacket(podA, podB, 63, 17, hl, udpPayload)
		out := make([]byte, maxICMPError)
		n := buildNetUnreachable(out, orig, hl)
		if n != 20+8+hl+8 {
			t.Fatalf("hl %d: length %d", hl, n)
		}
		msg := out[:n]
		h, err := ipv4.ParseHeader(msg)
		if err != nil {
			t.Fatal(err)
		}
		if h.Version != 4 || h.Len != 20 || h.TotalLen != n || h.Protocol != 1 || h.TTL != icmpTTL || h.Flags != 0 || h.FragOff != 0 {
			t.Errorf("header %+v", h)
		}
		if !h.Src.Equal(ipv4Addr(podB)) || !h.Dst.Equal(ipv4Addr(podA)) {
			t.Errorf("src %v dst %v, want %v -> %v", h.Src, h.Dst, ipv4Addr(podB), ipv4Addr(podA))
		}
		if checksum(msg[:20]) != 0 {
			t.Error("IP header checksum does not verify")
		}
		if checksum(msg[20:]) != 0 {
			t.Error("ICMP checksum does not verify")
		}
		m, err := icmp.ParseMessage(1, msg[20:])
		if err != nil {
			t.Fatal(err)
		}
		du, ok := m.Body.(*icmp.DstUnreach)
		if m.Type != ipv4.ICMPTypeDestinationUnreachable || m.Code != 0 || !ok {
			t.Fatalf("message %+v", m)
		}
		if want := orig[:hl+8]; !bytes.Equal(du.Data, want) {
			t.Errorf("quote %x, want the original header and 8 bytes %x", du.Data, want)
		}
	}

	// A packet shorter than header + 8 bytes is quoted whole.
	short := ipPacket(podA, podB, 63, 17, 20, []byte{1, 2, 3})
	out := make([]byte, maxICMPError)
	if n := buildNetUnreachable(out, short, 20); n != 20+8+23 || !bytes.Equal(out[28:n], short) || checksum(out[20:n]) != 0 {
		t.Errorf("short packet: n=%d %x", n, out[:n])
	}
}

func ipv4Addr(a [4]byte) []byte { return a[:] }

func TestNetUnreachableSuppressed(t *testing.T) {
	echo := []byte{8, 0, 0, 0, 0, 1, 0, 1}
	unreach := []byte{3, 1, 0, 0, 0, 0, 0, 0}
	frag := ipPacket(podA, podB, 64, 17, 20, make([]byte, 8))
	binary.BigEndian.PutUint16(frag[offFragment:], 0x2000|185) // MF, offset 1480
	for name, tc := range map[string]struct {
		pkt  []byte
		want bool
	}{
		"udp":               {ipPacket(podA, podB, 64, 17, 20, make([]byte, 8)), true},
		"echo request":      {ipPacket(podA, podB, 64, 1, 20, echo), true},
		"icmp error":        {ipPacket(podA, podB, 64, 1, 20, unreach), false},
		"truncated icmp":    {ipPacket(podA, podB, 64, 1, 20, nil), false},
		"later fragment":    {frag, false},
		"multicast dst":     {ipPacket(podA, [4]byte{239, 1, 1, 1}, 64, 17, 20, make([]byte, 8)), false},
		"broadcast dst":     {ipPacket(podA, [4]byte{255, 255, 255, 255}, 64, 17, 20, make([]byte, 8)), false},
		"unspecified src":   {ipPacket([4]byte{}, podB, 64, 17, 20, make([]byte, 8)), false},
		"first fragment MF": {func() []byte { p := ipPacket(podA, podB, 64, 17, 20, make([]byte, 8)); p[6] |= 0x20; return p }(), true},
	} {
		out := make([]byte, maxICMPError)
		if got := buildNetUnreachable(out, tc.pkt, 20) > 0; got != tc.want {
			t.Errorf("%s: ICMP sent = %v, want %v", name, got, tc.want)
		}
	}
}

func TestIPv4Header(t *testing.T) {
	for name, tc := range map[string]struct {
		pkt  []byte
		hl   int
		want bool
	}{
		"ok":          {ipPacket(podA, podB, 64, 6, 20, nil), 20, true},
		"options":     {ipPacket(podA, podB, 64, 6, 32, nil), 32, true},
		"short":       {make([]byte, 19), 0, false},
		"ipv6":        {append([]byte{0x60}, make([]byte, 39)...), 0, false},
		"ihl too big": {func() []byte { p := ipPacket(podA, podB, 64, 6, 20, nil); p[0] = 0x46; return p }(), 0, false},
		"ihl too low": {func() []byte { p := ipPacket(podA, podB, 64, 6, 20, nil); p[0] = 0x44; return p }(), 0, false},
	} {
		hl, ok := ipv4Header(tc.pkt)
		if ok != tc.want || hl != tc.hl {
			t.Errorf("%s: %d %v", name, hl, ok)
		}
	}
}
