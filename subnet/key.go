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
	m, ok := splitKey(s)
	if !ok {
		// Anything but the plain form goes through upstream's pattern, so
		// every key upstream accepts is read the way it reads it.
		m = keyRE.FindStringSubmatch(s)
	}
	return parseKeyParts(s, m)
}

// splitKey splits a key of the plain form "A.B.C.D-N" or
// "A.B.C.D-N&<hex and colons>-N" into the submatches keyRE would return
// (FuzzParseKey compares the two). It spares the daemon a regexp match,
// and its garbage, per lease and per listing.
func splitKey(s string) (m []string, ok bool) {
	v4, v6, dual := s, "", false
	if i := indexByte(s, '&'); i >= 0 {
		v4, v6, dual = s[:i], s[i+1:], true
	}
	a4, b4, ok := cutLast(v4, '-')
	if !ok || !isDottedQuad(a4) || !isDigits(b4) {
		return nil, false
	}
	m = []string{s, a4, b4, "", ""}
	if dual {
		a6, b6, ok := cutLast(v6, '-')
		if !ok || a6 == "" || !isDigits(b6) {
			return nil, false
		}
		for i := 0; i < len(a6); i++ {
			if c := a6[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c == ':') {
				return nil, false
			}
		}
		m[3], m[4] = a6, b6
	}
	return m, true
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func cutLast(s string, c byte) (before, after string, ok bool) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == c {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isDottedQuad reports whether s is four runs of digits joined by dots.
func isDottedQuad(s string) bool {
	parts := 0
	for len(s) > 0 {
		i := indexByte(s, '.')
		field := s
		if i >= 0 {
			field, s = s[:i], s[i+1:]
			if s == "" {
				return false
			}
		} else {
			s = ""
		}
		if !isDigits(field) {
			return false
		}
		parts++
	}
	return parts == 4
}

// parseKeyParts turns keyRE's submatches of s into prefixes.
func parseKeyParts(s string, m []string) (v4, v6 netip.Prefix, err error) {
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
