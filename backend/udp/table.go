package udp

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// table maps remote subnets to the UDP address of the node holding them.
// It is built once per change and never modified afterwards, so the relay
// reads it without locks through an atomic pointer.
//
// Lookup is a longest-prefix match done as one hash lookup per distinct
// prefix length, longest first. A flannel network normally has one subnet
// length, so a lookup costs one map access whatever the cluster size
// (upstream scans a list).
type table struct {
	lens    []int                       // distinct prefix lengths, longest first
	masks   []uint32                    // the netmask of lens[i]
	byLen   []map[uint32]netip.AddrPort // network address → next hop, per lens[i]
	entries map[netip.Prefix]netip.AddrPort
}

// route is one table entry.
type route struct {
	Dst     netip.Prefix // IPv4 subnet
	NextHop netip.AddrPort
}

// newTable builds a table. Each Dst must be a masked IPv4 prefix and appear
// once; the caller resolves duplicates.
func newTable(routes []route) *table {
	t := &table{entries: make(map[netip.Prefix]netip.AddrPort, len(routes))}
	idx := map[int]int{}
	for _, r := range routes {
		t.entries[r.Dst] = r.NextHop
		if _, ok := idx[r.Dst.Bits()]; !ok {
			idx[r.Dst.Bits()] = -1
			t.lens = append(t.lens, r.Dst.Bits())
		}
	}
	slices.SortFunc(t.lens, func(a, b int) int { return b - a })
	t.masks = make([]uint32, len(t.lens))
	t.byLen = make([]map[uint32]netip.AddrPort, len(t.lens))
	for i, l := range t.lens {
		idx[l] = i
		t.masks[i] = maskOf(l)
		t.byLen[i] = map[uint32]netip.AddrPort{}
	}
	for p, hop := range t.entries {
		i := idx[p.Bits()]
		t.byLen[i][addrUint32(p.Addr())] = hop
	}
	return t
}

// lookup returns the next hop for dst (a big-endian IPv4 address).
func (t *table) lookup(dst uint32) (netip.AddrPort, bool) {
	for i, m := range t.masks {
		if hop, ok := t.byLen[i][dst&m]; ok {
			return hop, true
		}
	}
	return netip.AddrPort{}, false
}

// len is the number of entries.
func (t *table) len() int {
	if t == nil {
		return 0
	}
	return len(t.entries)
}

// diff lists the subnets added or changed and those removed going from t
// to u (t may be nil).
func (t *table) diff(u *table) (added []route, removed []netip.Prefix) {
	var old map[netip.Prefix]netip.AddrPort
	if t != nil {
		old = t.entries
	}
	for p, hop := range u.entries {
		if prev, ok := old[p]; !ok || prev != hop {
			added = append(added, route{p, hop})
		}
	}
	for p := range old {
		if _, ok := u.entries[p]; !ok {
			removed = append(removed, p)
		}
	}
	slices.SortFunc(added, func(a, b route) int { return a.Dst.Addr().Compare(b.Dst.Addr()) })
	slices.SortFunc(removed, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return added, removed
}

func maskOf(bits int) uint32 {
	if bits <= 0 {
		return 0
	}
	return ^uint32(0) << (32 - bits)
}

func addrUint32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}
