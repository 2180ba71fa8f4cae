package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// subnetEnv is what the daemon tells the plugin about this node through
// subnet.env. Absent keys stay at their zero value (an invalid prefix, a nil
// slice, a false has* flag).
type subnetEnv struct {
	networks    []netip.Prefix // FLANNEL_NETWORK, deduplicated, file order
	subnet      netip.Prefix   // FLANNEL_SUBNET reduced to its network
	ip6Networks []netip.Prefix // FLANNEL_IPV6_NETWORK
	ip6Subnet   netip.Prefix   // FLANNEL_IPV6_SUBNET reduced to its network
	mtu         uint
	hasMTU      bool
	ipMasq      bool
	hasIPMasq   bool
}

// loadSubnetEnv reads and parses the subnet.env file at path. Errors from
// here are wrapped by the callers in upstream's wording, which runbooks grep
// for, so they must name the path but not repeat "subnet.env".
func loadSubnetEnv(path string) (*subnetEnv, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseSubnetEnv(data, path)
}

// parseSubnetEnv parses subnet.env content. name is the file path used in
// error messages.
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
// "true" as false, we reject values that are neither true nor false.
func parseSubnetEnv(data []byte, name string) (*subnetEnv, error) {
	se := &subnetEnv{}
	s := bufio.NewScanner(bytes.NewReader(data))
	lineNo := 0
	for s.Scan() {
		lineNo++
		line := s.Text()
		key, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		key = strings.TrimSpace(key)
		value = unquote(strings.TrimSpace(value))

		var err error
		switch key {
		case "FLANNEL_NETWORK":
			se.networks, err = parseCIDRList(value)
		case "FLANNEL_IPV6_NETWORK":
			se.ip6Networks, err = parseCIDRList(value)
		case "FLANNEL_SUBNET":
			se.subnet, err = parseCIDR(value)
		case "FLANNEL_IPV6_SUBNET":
			se.ip6Subnet, err = parseCIDR(value)
		case "FLANNEL_MTU":
			var mtu uint64
			mtu, err = strconv.ParseUint(value, 10, 32)
			se.mtu, se.hasMTU = uint(mtu), err == nil
		case "FLANNEL_IPMASQ":
			se.ipMasq, err = parseBool(value)
			se.hasIPMasq = err == nil
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s line %d: %s: %w", name, lineNo, key, err)
		}
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	if m := se.missing(); m != "" {
		return nil, fmt.Errorf("%s is missing %s", name, m)
	}
	return se, nil
}

// missing lists the required keys that are absent, in upstream's order and
// wording ("FLANNEL_NETWORK, FLANNEL_IPV6_NETWORK, ...").
func (se *subnetEnv) missing() string {
	var m []string
	if len(se.networks) == 0 && len(se.ip6Networks) == 0 {
		m = append(m, "FLANNEL_NETWORK", "FLANNEL_IPV6_NETWORK")
	}
	if !se.subnet.IsValid() && !se.ip6Subnet.IsValid() {
		m = append(m, "FLANNEL_SUBNET", "FLANNEL_IPV6_SUBNET")
	}
	if !se.hasMTU {
		m = append(m, "FLANNEL_MTU")
	}
	if !se.hasIPMasq {
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
