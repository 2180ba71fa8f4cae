package subnet

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// u128 is an address as a 128-bit number, so IPv4 and IPv6 allocation share
// one implementation. IPv4 addresses use the low 32 bits.
type u128 struct{ hi, lo uint64 }

func toU128(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{lo: uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return u128{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:])}
}

func (u u128) addr(v4 bool) netip.Addr {
	if v4 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(u.lo))
		return netip.AddrFrom4(b)
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], u.hi)
	binary.BigEndian.PutUint64(b[8:], u.lo)
	return netip.AddrFrom16(b)
}

func (u u128) add(v u128) u128 {
	lo, c := bits.Add64(u.lo, v.lo, 0)
	hi, _ := bits.Add64(u.hi, v.hi, c)
	return u128{hi, lo}
}

func (u u128) sub(v u128) u128 {
	lo, b := bits.Sub64(u.lo, v.lo, 0)
	hi, _ := bits.Sub64(u.hi, v.hi, b)
	return u128{hi, lo}
}

func (u u128) cmp(v u128) int {
	switch {
	case u.hi < v.hi:
		return -1
	case u.hi > v.hi:
		return 1
	case u.lo < v.lo:
		return -1
	case u.lo > v.lo:
		return 1
	}
	return 0
}

// pow2 returns 2^n for n in [0,127].
func pow2(n int) u128 {
	if n >= 64 {
		return u128{hi: 1 << (n - 64)}
	}
	return u128{lo: 1 << n}
}

// isMultiple reports whether u is a multiple of 2^n.
func (u u128) isMultiple(n int) bool {
	m := pow2(n).sub(u128{lo: 1})
	return u.hi&m.hi == 0 && u.lo&m.lo == 0
}

// prefixRange returns the first and last address of p as numbers.
func prefixRange(p netip.Prefix) (first, last u128) {
	first = toU128(p.Masked().Addr())
	total := 32
	if p.Addr().Is6() {
		total = 128
	}
	host := total - p.Bits()
	if host >= 128 {
		return first, u128{^uint64(0), ^uint64(0)}
	}
	return first, first.add(pow2(host)).sub(u128{lo: 1})
}
