package subnet

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
)

// candidates is how many free subnets upstream collects before picking one
// at random, which spreads concurrent joiners over different keys.
const candidates = 100

// ErrNoFreeSubnet is wrapped by Pick when a family's range is full.
type ErrNoFreeSubnet struct {
	Family   string
	Min, Max netip.Addr
	Len      int
	Leases   int
}

func (e *ErrNoFreeSubnet) Error() string {
	return fmt.Sprintf("out of subnets: no free %s /%d subnet in range %s ... %s (%d leases exist); delete unused leases or enlarge the Network",
		e.Family, e.Len, e.Min, e.Max, e.Leases)
}

type span struct{ first, last u128 }

// spans returns the address ranges of the taken prefixes of one family,
// sorted by start.
func spans(taken []netip.Prefix, v4 bool) []span {
	out := make([]span, 0, len(taken))
	for _, p := range taken {
		if !p.IsValid() || p.Addr().Is4() != v4 {
			continue
		}
		f, l := prefixRange(p)
		out = append(out, span{f, l})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].first.cmp(out[j].first) < 0 })
	return out
}

// FreeSubnets returns up to n subnets of length bits, walking from min to max,
// that overlap none of the taken prefixes (whatever their length). It costs
// O(t log t + n) for t taken prefixes: overlapping spans are skipped whole.
func FreeSubnets(min, max netip.Addr, bits int, taken []netip.Prefix, n int) []netip.Prefix {
	if !min.IsValid() || !max.IsValid() || n <= 0 {
		return nil
	}
	v4 := min.Is4()
	total := 32
	if !v4 {
		total = 128
	}
	size := pow2(total - bits)
	sp := spans(taken, v4)
	var out []netip.Prefix
	c, end := toU128(min), toU128(max)
	i := 0
	for c.cmp(end) <= 0 && len(out) < n {
		last := c.add(size).sub(u128{lo: 1})
		for i < len(sp) && sp[i].last.cmp(c) < 0 {
			i++
		}
		// Find any span overlapping [c, last]; spans are sorted by start,
		// but a long span earlier in the list may still cover c.
		overlap := -1
		for j := i; j < len(sp) && sp[j].first.cmp(last) <= 0; j++ {
			if sp[j].last.cmp(c) >= 0 {
				overlap = j
				break
			}
		}
		if overlap < 0 {
			out = append(out, netip.PrefixFrom(c.addr(v4), bits))
			next := c.add(size)
			if next.cmp(c) <= 0 {
				break // wrapped at the top of the address space
			}
			c = next
			continue
		}
		// Jump to the first aligned subnet after the overlapping span.
		after := sp[overlap].last.add(u128{lo: 1})
		if after.cmp(sp[overlap].last) <= 0 {
			break
		}
		if !after.isMultiple(total - bits) {
			m := size.sub(u128{lo: 1})
			after = u128{after.hi &^ m.hi, after.lo &^ m.lo}.add(size)
		}
		if after.cmp(c) <= 0 {
			break
		}
		c = after
	}
	return out
}

// Overlaps reports whether p overlaps any of the taken prefixes.
func Overlaps(p netip.Prefix, taken []netip.Prefix) bool {
	for _, t := range taken {
		if t.IsValid() && t.Overlaps(p) {
			return true
		}
	}
	return false
}

// Taken lists every subnet (both families) held by the given leases.
func Taken(leases []Lease) []netip.Prefix {
	out := make([]netip.Prefix, 0, 2*len(leases))
	for _, l := range leases {
		if l.Subnet.IsValid() {
			out = append(out, l.Subnet)
		}
		if l.IPv6Subnet.IsValid() {
			out = append(out, l.IPv6Subnet)
		}
	}
	return out
}

// Pick chooses a free subnet for each enabled family, at random among the
// first free ones from SubnetMin, as upstream does.
func (c *Config) Pick(leases []Lease, rnd *rand.Rand) (v4, v6 netip.Prefix, err error) {
	taken := Taken(leases)
	if c.EnableIPv4 {
		if v4, err = c.PickFamily(false, taken, len(leases), rnd); err != nil {
			return v4, v6, err
		}
	}
	if c.EnableIPv6 {
		if v6, err = c.PickFamily(true, taken, len(leases), rnd); err != nil {
			return v4, v6, err
		}
	}
	return v4, v6, nil
}

// PickFamily chooses one free subnet of a family; leases is only used in the
// error message.
func (c *Config) PickFamily(v6 bool, taken []netip.Prefix, leases int, rnd *rand.Rand) (netip.Prefix, error) {
	fam, min, max, bits := "IPv4", c.SubnetMin, c.SubnetMax, c.SubnetLen
	if v6 {
		fam, min, max, bits = "IPv6", c.IPv6SubnetMin, c.IPv6SubnetMax, c.IPv6SubnetLen
	}
	free := FreeSubnets(min, max, bits, taken, candidates)
	if len(free) == 0 {
		return netip.Prefix{}, &ErrNoFreeSubnet{fam, min, max, bits, leases}
	}
	return free[rnd.IntN(len(free))], nil
}
