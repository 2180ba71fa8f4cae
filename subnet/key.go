package subnet

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
)

// upstream's pattern (pkg/subnet), including its unescaped dots and the
// missing start anchor: keys it accepts, we accept.
var keyRE = regexp.MustCompile(`(\d+\.\d+.\d+.\d+)-(\d+)(?:&([a-f\d:]+)-(\d+))?$`)

var zeroV4 = netip.PrefixFrom(netip.IPv4Unspecified(), 0)

// MakeKey builds the lease key name: "A.B.C.D-LEN", or for dual stack
// "A.B.C.D-LEN&<v6>-LEN6". An IPv6-only lease uses "0.0.0.0-0" as its IPv4
// half, as upstream does.
func MakeKey(v4, v6 netip.Prefix) string {
	if !v4.IsValid() {
		v4 = zeroV4
	}
	k := fmt.Sprintf("%s-%d", v4.Addr(), v4.Bits())
	if v6.IsValid() {
		k += fmt.Sprintf("&%s-%d", v6.Addr(), v6.Bits())
	}
	return k
}

// ParseKey parses a lease key name. The IPv4 half "0.0.0.0-0" of an
// IPv6-only key comes back as an invalid Prefix.
func ParseKey(s string) (v4, v6 netip.Prefix, err error) {
	m := keyRE.FindStringSubmatch(s)
	if m == nil {
		return v4, v6, fmt.Errorf("invalid subnet key %q", s)
	}
	v4, err = parsePrefixParts(m[1], m[2], 32)
	if err != nil || !v4.Addr().Is4() {
		return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("invalid subnet key %q: bad IPv4 part", s)
	}
	if v4 == zeroV4 {
		v4 = netip.Prefix{}
	}
	if m[3] != "" {
		v6, err = parsePrefixParts(m[3], m[4], 128)
		if err != nil || !v6.Addr().Is6() || v6.Addr().Is4In6() {
			return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("invalid subnet key %q: bad IPv6 part", s)
		}
	}
	if !v4.IsValid() && !v6.IsValid() {
		return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("invalid subnet key %q: no subnet", s)
	}
	return v4, v6, nil
}

func parsePrefixParts(addr, bits string, max int) (netip.Prefix, error) {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.Prefix{}, err
	}
	n, err := strconv.Atoi(bits)
	if err != nil || n < 0 || n > max || len(bits) > 3 {
		return netip.Prefix{}, fmt.Errorf("bad prefix length %q", bits)
	}
	p := netip.PrefixFrom(ip, n)
	if p.Masked() != p {
		// upstream stores the network address; a key with host bits set
		// is somebody else's mistake, read as its network.
		p = p.Masked()
	}
	return p, nil
}
