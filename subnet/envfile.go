package subnet

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// EnvFile is what a subnet.env says, key by key: the one parse of the
// file, shared by the daemon (ParseEnv, ReadEnvFile), the CNI plugin and
// the doctor. Absent keys stay at their zero value (an invalid prefix, a
// nil slice, a false Has* flag). It uses the standard library only, so the
// CNI plugin imports it without netlink.
type EnvFile struct {
	Networks     []netip.Prefix // FLANNEL_NETWORK, deduplicated, file order
	Subnet       netip.Prefix   // FLANNEL_SUBNET reduced to its network
	IPv6Networks []netip.Prefix // FLANNEL_IPV6_NETWORK
	IPv6Subnet   netip.Prefix   // FLANNEL_IPV6_SUBNET reduced to its network
	MTU          uint
	HasMTU       bool
	IPMasq       bool
	HasIPMasq    bool
}

// ParseEnvFile parses subnet.env content. name is the file path used in
// error messages ("" for none). It does not require any key: the CNI
// plugin checks Missing, the daemon reads what is there.
//
// Upstream splits every line on the first '=' and compares keys and values
// byte for byte, so "FLANNEL_MTU = 1450" or "FLANNEL_IPMASQ=True" silently
// turn into "missing FLANNEL_MTU" or "ipmasq false". We trim blanks around
// keys and values, accept one pair of matching quotes around a value (what a
// shell or systemd EnvironmentFile would accept), and take booleans in any
// case. A value that means nothing (an MTU that is not a number, a boolean
// that is neither true nor false) is an error naming the key, never a silent
// default. Everything upstream accepts parses to the same result here, with
// one exception: upstream treats any FLANNEL_IPMASQ other than exactly
// "true" as false, we reject values that are neither true nor false. Lines
// without '=' (comments among them) and unknown keys are ignored; the last
// value of a key wins.
func ParseEnvFile(data []byte, name string) (*EnvFile, error) {
	return parseEnvFile(data, name, false)
}

// ParseEnvFileExact parses subnet.env content as upstream's CNI plugin
// splits it: keys and values byte for byte, no blanks trimmed and no quotes
// removed (so "FLANNEL_MTU = 1450" sets nothing). Values are then read as
// ParseEnvFile reads them.
func ParseEnvFileExact(data []byte, name string) (*EnvFile, error) {
	return parseEnvFile(data, name, true)
}

// An EnvError is a subnet.env value that means nothing.
type EnvError struct {
	File  string // "" when the caller gave no name
	Line  int
	Key   string
	Value string
	Err   error
}

func (e *EnvError) Error() string {
	if e.File == "" {
		return fmt.Sprintf("line %d: %s: %v", e.Line, e.Key, e.Err)
	}
	return fmt.Sprintf("%s line %d: %s: %v", e.File, e.Line, e.Key, e.Err)
}

func (e *EnvError) Unwrap() error { return e.Err }

func parseEnvFile(data []byte, name string, exact bool) (*EnvFile, error) {
	e := &EnvFile{}
	s := bufio.NewScanner(bytes.NewReader(data))
	lineNo := 0
	for s.Scan() {
		lineNo++
		line := s.Text()
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if !exact {
			key = strings.TrimSpace(key)
			value = unquote(strings.TrimSpace(value))
		}

		var err error
		switch key {
		case "FLANNEL_NETWORK":
			e.Networks, err = parseCIDRList(value)
		case "FLANNEL_IPV6_NETWORK":
			e.IPv6Networks, err = parseCIDRList(value)
		case "FLANNEL_SUBNET":
			e.Subnet, err = parseCIDR(value)
		case "FLANNEL_IPV6_SUBNET":
			e.IPv6Subnet, err = parseCIDR(value)
		case "FLANNEL_MTU":
			var mtu uint64
			mtu, err = strconv.ParseUint(value, 10, 32)
			e.MTU, e.HasMTU = uint(mtu), err == nil
		case "FLANNEL_IPMASQ":
			e.IPMasq, err = parseBool(value)
			e.HasIPMasq = err == nil
		default:
			continue
		}
		if err != nil {
			return nil, &EnvError{File: name, Line: lineNo, Key: key, Value: value, Err: err}
		}
	}
	if err := s.Err(); err != nil {
		if name == "" {
			return nil, err
		}
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	return e, nil
}

// Missing lists the keys upstream's CNI plugin requires that are absent, in
// upstream's order and wording ("FLANNEL_NETWORK, FLANNEL_IPV6_NETWORK,
// ..."), or "" when none is.
func (e *EnvFile) Missing() string {
	var m []string
	if len(e.Networks) == 0 && len(e.IPv6Networks) == 0 {
		m = append(m, "FLANNEL_NETWORK", "FLANNEL_IPV6_NETWORK")
	}
	if !e.Subnet.IsValid() && !e.IPv6Subnet.IsValid() {
		m = append(m, "FLANNEL_SUBNET", "FLANNEL_IPV6_SUBNET")
	}
	if !e.HasMTU {
		m = append(m, "FLANNEL_MTU")
	}
	if !e.HasIPMasq {
		m = append(m, "FLANNEL_IPMASQ")
	}
	return strings.Join(m, ", ")
}

// unquote strips one pair of matching single or double quotes.
func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return strings.TrimSpace(v[1 : len(v)-1])
	}
	return v
}

func parseBool(v string) (bool, error) {
	switch {
	case strings.EqualFold(v, "true"):
		return true, nil
	case strings.EqualFold(v, "false"):
		return false, nil
	}
	return false, fmt.Errorf("invalid boolean %q: want true or false", v)
}

// parseCIDRList parses comma-separated CIDRs, keeping the file order and
// dropping exact duplicates (same network and length), as upstream does.
// Blanks around elements and empty elements ("a, b,") are tolerated.
func parseCIDRList(v string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for elem := range strings.SplitSeq(v, ",") {
		elem = strings.TrimSpace(elem)
		if elem == "" {
			continue
		}
		p, err := parseCIDR(elem)
		if err != nil {
			return nil, err
		}
		dup := false
		for _, q := range out {
			if q == p {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("empty value: want one or more CIDRs separated by commas")
	}
	return out, nil
}

// parseCIDR parses a CIDR and returns its network (host bits cleared).
//
// It goes through net.ParseCIDR rather than netip.ParsePrefix on purpose:
// that is what upstream uses, so the accepted syntax (leading zeros in the
// length, IPv4-mapped IPv6) and the error text ("invalid CIDR address: x")
// stay the same. An IPv4-mapped network such as ::ffff:10.0.0.0/104 is
// unmapped to 10.0.0.0/8, which is what upstream's net.IPNet.String() prints.
func parseCIDR(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, errors.New("empty value: want a CIDR")
	}
	_, ipn, err := net.ParseCIDR(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	addr, ok := netip.AddrFromSlice(ipn.IP)
	if !ok {
		return netip.Prefix{}, &net.ParseError{Type: "CIDR address", Text: s}
	}
	ones, _ := ipn.Mask.Size()
	if addr.Is4In6() && ones >= 96 {
		addr, ones = addr.Unmap(), ones-96
	}
	return netip.PrefixFrom(addr, ones).Masked(), nil
}
