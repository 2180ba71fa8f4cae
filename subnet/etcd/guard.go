package etcd

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"strconv"
	"strings"

	"github.com/flannelng/flannel/subnet"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The create transaction's guard: it must fail when a lease overlapping
// the candidate was written after the listing the candidate was picked
// from (the listing showed every older one). Guarding the whole subnets
// prefix does that, and makes every join conflict with every other.
// Instead the transaction guards, by ModRevision > listing's revision,
// only the key ranges where an overlapping lease's key can be. A lease
// overlaps the candidate P when its IPv4 half is inside P or contains it:
//
//   - inside P (as long as P, or longer): its key starts with the dotted
//     quad of an address in P. The first Bits/8 octets are P's; those
//     keys start with P's "a.b.c." (the candidate's key-string block).
//     A partial octet (a /23: the third octet is 52 or 53) adds its
//     values one prefix each, "a.b.52." and "a.b.53." (up to 16 of them;
//     beyond, the block of the whole octet);
//   - containing P, of length l < Bits: its key is exactly "<P masked to
//     l>-<l>", with or without an IPv6 half after "&": one prefix per
//     shorter length.
//
// IPv6 halves: a key's IPv6 half follows its IPv4 half ("10.5.3.0-24&
// fd00:10::-64"; an IPv6-only key is "0.0.0.0-0&fd00:10::-64"), so keys
// whose IPv6 half could overlap ours are spread over the whole key space
// and no key range selects them. A candidate with an IPv6 half therefore
// guards the whole prefix, as every candidate did before; only IPv4-only
// joins, the common case, are spared. (Narrowing it would take a marker
// key per IPv6 block, which upstream nodes and flannelctl do not write.)
//
// Every writer of ours guards the same way, so of two overlapping
// candidates written concurrently the later transaction sees the
// earlier's key in its ranges and fails: for P inside Q, P's key is in
// Q's block and Q's key is one of P's shorter prefixes. An update of an
// existing key (a renewal's adoption) may trip a guard too: a retry,
// never an overlap. TestJoinNeverOverlaps checks it against a real etcd.

// maxBlockPrefixes bounds the prefixes a partial octet is spelled out in.
const maxBlockPrefixes = 16

// guardPrefixes returns the key-name prefixes (below <prefix>/subnets/)
// that hold every key that could overlap a candidate; "" is every key.
func guardPrefixes(v4, v6 netip.Prefix) []string {
	if v6.IsValid() || !v4.IsValid() {
		return []string{""}
	}
	a := v4.Addr().As4()
	n := v4.Bits()
	full, part := n/8, n%8
	octets := make([]string, 0, 4)
	for _, o := range a[:full] {
		octets = append(octets, strconv.Itoa(int(o)))
	}
	head := strings.Join(octets, ".")
	var out []string
	switch {
	case full == 4:
		out = append(out, head+"-")
	case full > 0:
		head += "."
	}
	if full < 4 {
		sep := "."
		if full == 3 {
			sep = "-"
		}
		if values := 1 << (8 - part); part > 0 && values <= maxBlockPrefixes {
			for v := int(a[full]); v < int(a[full])+values; v++ {
				out = append(out, head+strconv.Itoa(v)+sep)
			}
		} else {
			out = append(out, head) // "" at full == 0: every key
		}
	}
	for l := n - 1; l >= 1; l-- {
		p := netip.PrefixFrom(v4.Addr(), l).Masked()
		out = append(out, p.Addr().String()+"-"+strconv.Itoa(l))
	}
	return out
}

// overlapGuards are the create transaction's conditions that no key
// which could overlap the candidate changed after rev.
func (m *Manager) overlapGuards(v4, v6 netip.Prefix, rev int64) []clientv3.Cmp {
	prefixes := guardPrefixes(v4, v6)
	out := make([]clientv3.Cmp, 0, len(prefixes)+2)
	for _, p := range prefixes {
		out = append(out, clientv3.Compare(clientv3.ModRevision(m.subnets+p), "<", rev+1).WithPrefix())
	}
	return out
}

// pickTries is how many random subnets pick tries before it takes the
// first free ones instead.
const pickTries = 32

// pick chooses a free subnet of one family at random over the whole range
// between SubnetMin and SubnetMax. Upstream picks among the first 100 free
// ones from SubnetMin, so joiners starting together pick the same few
// subnets and lose races to each other; spread over the range, and with
// transactions that only guard what could overlap, they rarely meet. A
// range too full for pickTries random tries falls back to upstream's way.
func (m *Manager) pick(cfg *subnet.Config, v6 bool, taken []netip.Prefix, leases int) (netip.Prefix, error) {
	first, size := cfg.SubnetMin, cfg.SubnetLen
	if v6 {
		first, size = cfg.IPv6SubnetMin, cfg.IPv6SubnetLen
	}
	m.rndM.Lock()
	defer m.rndM.Unlock()
	if n := cfg.SubnetCount(v6); n > 0 {
		for range pickTries {
			p := nthSubnet(first, size, m.rnd.Uint64N(n))
			if !subnet.Overlaps(p, taken) {
				return p, nil
			}
		}
	}
	return cfg.PickFamily(v6, taken, leases, m.rnd)
}

// nthSubnet is the i-th subnet of length size from first (aligned to it):
// first + i<<(address bits - size).
func nthSubnet(first netip.Addr, size int, i uint64) netip.Prefix {
	shift := first.BitLen() - size
	var b [16]byte
	if first.Is4() {
		a := first.As4()
		copy(b[12:], a[:])
	} else {
		b = first.As16()
	}
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	var addHi, addLo uint64
	switch {
	case shift >= 64:
		addHi = i << (shift - 64)
	case shift == 0:
		addLo = i
	default:
		addHi, addLo = i>>(64-shift), i<<shift
	}
	lo, carry := bits.Add64(lo, addLo, 0)
	hi, _ = bits.Add64(hi, addHi, carry)
	binary.BigEndian.PutUint64(b[:8], hi)
	binary.BigEndian.PutUint64(b[8:], lo)
	if first.Is4() {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte(b[12:])), size)
	}
	return netip.PrefixFrom(netip.AddrFrom16(b), size)
}
