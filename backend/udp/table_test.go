package udp

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func u32(s string) uint32 { return addrUint32(netip.MustParseAddr(s)) }

func TestTableLongestMatch(t *testing.T) {
	tab := newTable([]route{
		{netip.MustParsePrefix("10.5.0.0/16"), netip.MustParseAddrPort("192.0.2.16:8285")},
		{netip.MustParsePrefix("10.5.2.0/24"), netip.MustParseAddrPort("192.0.2.24:8285")},
		{netip.MustParsePrefix("10.5.2.128/25"), netip.MustParseAddrPort("192.0.2.25:8285")},
		{netip.MustParsePrefix("10.6.0.0/24"), netip.MustParseAddrPort("192.0.2.6:8285")},
	})
	for dst, want := range map[string]string{
		"10.5.2.1":   "192.0.2.24:8285",
		"10.5.2.127": "192.0.2.24:8285",
		"10.5.2.128": "192.0.2.25:8285",
		"10.5.2.255": "192.0.2.25:8285",
		"10.5.3.1":   "192.0.2.16:8285",
		"10.5.255.1": "192.0.2.16:8285",
		"10.6.0.200": "192.0.2.6:8285",
		"10.6.1.1":   "",
		"10.4.255.1": "",
		"0.0.0.0":    "",
	} {
		hop, ok := tab.lookup(u32(dst))
		got := ""
		if ok {
			got = hop.String()
		}
		if got != want {
			t.Errorf("lookup %s = %q, want %q", dst, got, want)
		}
	}
	if tab.lens[0] != 25 || tab.lens[len(tab.lens)-1] != 16 {
		t.Errorf("lengths not longest first: %v", tab.lens)
	}
}

func TestTableEmptyAndDefault(t *testing.T) {
	if _, ok := newTable(nil).lookup(u32("10.5.1.1")); ok {
		t.Error("empty table matched")
	}
	def := newTable([]route{{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParseAddrPort("192.0.2.1:1")}})
	if hop, ok := def.lookup(u32("203.0.113.9")); !ok || hop.Port() != 1 {
		t.Error("a /0 entry must match everything")
	}
}

// TestTableAgainstLinearScan compares lookups with a brute-force longest
// match over random tables.
func TestTableAgainstLinearScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 50; round++ {
		var routes []route
		seen := map[netip.Prefix]bool{}
		for i := 0; i < 40; i++ {
			bits := 8 + rng.IntN(25)
			var b [4]byte
			binary.BigEndian.PutUint32(b[:], 0x0a000000|rng.Uint32()&0x00ffffff)
			p := netip.PrefixFrom(netip.AddrFrom4(b), bits).Masked()
			if seen[p] {
				continue
			}
			seen[p] = true
			routes = append(routes, route{p, netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), 8285)})
		}
		tab := newTable(routes)
		for q := 0; q < 500; q++ {
			var b [4]byte
			binary.BigEndian.PutUint32(b[:], 0x0a000000|rng.Uint32()&0x00ffffff)
			if q%2 == 0 { // aim inside an entry half the time
				r := routes[rng.IntN(len(routes))]
				a := addrUint32(r.Dst.Addr()) | rng.Uint32()&^maskOf(r.Dst.Bits())
				binary.BigEndian.PutUint32(b[:], a)
			}
			dst := netip.AddrFrom4(b)
			best, bestBits := netip.AddrPort{}, -1
			for _, r := range routes {
				if r.Dst.Contains(dst) && r.Dst.Bits() > bestBits {
					best, bestBits = r.NextHop, r.Dst.Bits()
				}
			}
			hop, ok := tab.lookup(addrUint32(dst))
			if ok != (bestBits >= 0) || hop != best {
				t.Fatalf("lookup %s = %v %v, want %v (routes %v)", dst, hop, ok, best, routes)
			}
		}
	}
}

func TestTableDiff(t *testing.T) {
	a := newTable([]route{
		{netip.MustParsePrefix("10.5.1.0/24"), netip.MustParseAddrPort("192.0.2.1:8285")},
		{netip.MustParsePrefix("10.5.2.0/24"), netip.MustParseAddrPort("192.0.2.2:8285")},
	})
	b := newTable([]route{
		{netip.MustParsePrefix("10.5.2.0/24"), netip.MustParseAddrPort("192.0.2.22:8285")},
		{netip.MustParsePrefix("10.5.3.0/24"), netip.MustParseAddrPort("192.0.2.3:8285")},
	})
	added, removed := a.diff(b)
	if fmt.Sprint(added) != "[{10.5.2.0/24 192.0.2.22:8285} {10.5.3.0/24 192.0.2.3:8285}]" || fmt.Sprint(removed) != "[10.5.1.0/24]" {
		t.Errorf("diff: added %v removed %v", added, removed)
	}
	if added, removed := b.diff(b); len(added)+len(removed) != 0 {
		t.Errorf("self diff: %v %v", added, removed)
	}
	var none *table
	if added, _ := none.diff(a); len(added) != 2 || none.len() != 0 {
		t.Errorf("diff from nil: %v", added)
	}
}

func BenchmarkTableLookup5000(b *testing.B) {
	routes := make([]route, 5000)
	for i := range routes {
		routes[i] = route{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + i/256), byte(i), 0}), 24), netip.MustParseAddrPort("192.0.2.1:8285")}
	}
	tab := newTable(routes)
	dst := u32("10.110.77.9")
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := tab.lookup(dst); !ok {
			b.Fatal("no match")
		}
	}
}
