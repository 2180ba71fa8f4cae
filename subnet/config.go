// Package subnet holds the flannel network configuration, the lease model and
// its etcd encodings, subnet allocation math and the subnet.env file format.
// Everything here is pure and OS-independent.
package subnet

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// DefaultBackend is what a config without "Backend" selects. Upstream's docs
// say vxlan, its code says udp; nodes depend on the code.
const DefaultBackend = "udp"

// Config is the network configuration stored at <prefix>/config.
type Config struct {
	EnableIPv4     bool
	EnableIPv6     bool
	EnableNFTables bool

	Network   netip.Prefix
	SubnetLen int
	SubnetMin netip.Addr
	SubnetMax netip.Addr

	IPv6Network   netip.Prefix
	IPv6SubnetLen int
	IPv6SubnetMin netip.Addr
	IPv6SubnetMax netip.Addr

	// BackendType is the lower-cased Backend.Type; DefaultBackend when the
	// config has no Backend at all.
	BackendType string
	// BackendDefaulted is true when the config had no Backend object.
	BackendDefaulted bool
	// Backend is the raw Backend object (nil when absent).
	Backend json.RawMessage
}

type configJSON struct {
	Network        *string
	IPv6Network    *string
	EnableIPv4     *bool
	EnableIPv6     bool
	EnableNFTables bool
	SubnetLen      uint
	SubnetMin      *string
	SubnetMax      *string
	IPv6SubnetLen  uint
	IPv6SubnetMin  *string
	IPv6SubnetMax  *string
	Backend        json.RawMessage
}

// ParseConfig decodes and validates a network config, filling in the
// defaults (SubnetLen, SubnetMin, SubnetMax and their IPv6 twins). Key names
// match case-insensitively and unknown keys are ignored, as upstream's
// encoding/json decoding does. Error texts start with upstream's wording.
func ParseConfig(data []byte) (*Config, error) {
	var j configJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, fmt.Errorf("invalid network config JSON: %w", err)
	}
	c := &Config{
		EnableIPv4:     j.EnableIPv4 == nil || *j.EnableIPv4,
		EnableIPv6:     j.EnableIPv6,
		EnableNFTables: j.EnableNFTables,
		SubnetLen:      int(j.SubnetLen),
		IPv6SubnetLen:  int(j.IPv6SubnetLen),
	}
	if j.SubnetLen > 128 {
		c.SubnetLen = 129 // out of range either way; keep the error path below
	}
	if j.IPv6SubnetLen > 128 {
		c.IPv6SubnetLen = 129
	}
	var err error
	if c.Network, err = parseNet("Network", j.Network, true); err != nil {
		return nil, err
	}
	if c.IPv6Network, err = parseNet("IPv6Network", j.IPv6Network, false); err != nil {
		return nil, err
	}
	if c.SubnetMin, err = parseIP("SubnetMin", j.SubnetMin, true); err != nil {
		return nil, err
	}
	if c.SubnetMax, err = parseIP("SubnetMax", j.SubnetMax, true); err != nil {
		return nil, err
	}
	if c.IPv6SubnetMin, err = parseIP("IPv6SubnetMin", j.IPv6SubnetMin, false); err != nil {
		return nil, err
	}
	if c.IPv6SubnetMax, err = parseIP("IPv6SubnetMax", j.IPv6SubnetMax, false); err != nil {
		return nil, err
	}
	if len(j.Backend) == 0 || string(j.Backend) == "null" {
		c.BackendType = DefaultBackend
		c.BackendDefaulted = true
	} else {
		var bt struct{ Type *string }
		if err := json.Unmarshal(j.Backend, &bt); err != nil {
			return nil, fmt.Errorf("invalid Backend in network config: %w", err)
		}
		if bt.Type != nil {
			c.BackendType = strings.ToLower(*bt.Type)
		}
		c.Backend = compactRaw(j.Backend)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func parseNet(field string, s *string, v4 bool) (netip.Prefix, error) {
	if s == nil || *s == "" {
		return netip.Prefix{}, nil
	}
	p, err := netip.ParsePrefix(*s)
	if err != nil || p.Addr().Zone() != "" {
		if v4 {
			return netip.Prefix{}, fmt.Errorf("invalid IPv4 CIDR format in %s: %q", field, *s)
		}
		return netip.Prefix{}, fmt.Errorf("invalid IPv6 CIDR format in %s: %q", field, *s)
	}
	if v4 != p.Addr().Is4() {
		if v4 {
			return netip.Prefix{}, fmt.Errorf("invalid IPv4 CIDR format in %s: %q is not IPv4", field, *s)
		}
		return netip.Prefix{}, fmt.Errorf("invalid IPv6 CIDR format in %s: %q is not IPv6", field, *s)
	}
	// upstream masks host bits: "10.5.0.5/16" means 10.5.0.0/16.
	return p.Masked(), nil
}

func parseIP(field string, s *string, v4 bool) (netip.Addr, error) {
	if s == nil || *s == "" {
		return netip.Addr{}, nil
	}
	a, err := parseAddr(*s)
	if err != nil || a.Is4() != v4 {
		fam := "IPv6"
		if v4 {
			fam = "IPv4"
		}
		return netip.Addr{}, fmt.Errorf("invalid %s address in %s: %q", fam, field, *s)
	}
	if a.IsUnspecified() {
		return netip.Addr{}, nil // 0.0.0.0 and :: mean "unset"
	}
	return a, nil
}

func (c *Config) validate() error {
	if !c.EnableIPv4 && !c.EnableIPv6 {
		return errors.New("none defined stack: EnableIPv4 and EnableIPv6 are both false")
	}
	if c.EnableIPv4 {
		r, err := checkFamily(family{
			netName: "Network", lenName: "SubnetLen", minName: "SubnetMin", maxName: "SubnetMax",
			total: 32, defaultLen: 24, defaultUpTo: 22, minUseful: 28,
			tooSmall: "network is too small. Minimum useful network prefix is /28",
			noNet:    "please define a correct Network parameter in the flannel config",
		}, c.Network, c.SubnetLen, c.SubnetMin, c.SubnetMax)
		if err != nil {
			return err
		}
		c.SubnetLen, c.SubnetMin, c.SubnetMax = r.len, r.min, r.max
	}
	if c.EnableIPv6 {
		r, err := checkFamily(family{
			netName: "IPv6Network", lenName: "IPv6SubnetLen", minName: "IPv6SubnetMin", maxName: "IPv6SubnetMax",
			total: 128, defaultLen: 64, defaultUpTo: 62, minUseful: 124,
			tooSmall: "IPv6Network is too small. Minimum useful network prefix is /124",
			noNet:    "please define a correct IPv6Network parameter in the flannel config",
		}, c.IPv6Network, c.IPv6SubnetLen, c.IPv6SubnetMin, c.IPv6SubnetMax)
		if err != nil {
			return err
		}
		c.IPv6SubnetLen, c.IPv6SubnetMin, c.IPv6SubnetMax = r.len, r.min, r.max
	}
	return nil
}

type family struct {
	netName, lenName, minName, maxName string
	total, defaultLen, defaultUpTo     int
	minUseful                          int
	tooSmall, noNet                    string
}

type familyResult struct {
	len      int
	min, max netip.Addr
}

func checkFamily(f family, network netip.Prefix, subnetLen int, min, max netip.Addr) (familyResult, error) {
	if !network.IsValid() || network.Bits() == 0 {
		return familyResult{}, errors.New(f.noNet)
	}
	plen := network.Bits()
	if subnetLen > 0 {
		if subnetLen > f.total-2 {
			return familyResult{}, fmt.Errorf("SubnetLen must be less than /%d (%s=%d)", f.total-1, f.lenName, subnetLen)
		}
		if subnetLen < plen+2 {
			return familyResult{}, fmt.Errorf("network must be able to accommodate at least four subnets (%s=%s, %s=%d)", f.netName, network, f.lenName, subnetLen)
		}
	} else {
		switch {
		case plen > f.minUseful:
			return familyResult{}, fmt.Errorf("%s (%s=%s)", f.tooSmall, f.netName, network)
		case plen <= f.defaultUpTo:
			subnetLen = f.defaultLen
		default:
			subnetLen = plen + 2
		}
	}
	v4 := f.total == 32
	hostBits := f.total - subnetLen
	size := pow2(hostBits)
	first, last := prefixRange(network)
	if !min.IsValid() {
		min = first.add(size).addr(v4)
	} else if !network.Contains(min) {
		return familyResult{}, fmt.Errorf("%s is not in the range of the %s (%s=%s, %s=%s)", f.minName, f.netName, f.minName, min, f.netName, network)
	}
	if !max.IsValid() {
		max = last.add(u128{lo: 1}).sub(size).addr(v4)
	} else if !network.Contains(max) {
		return familyResult{}, fmt.Errorf("%s is not in the range of the %s (%s=%s, %s=%s)", f.maxName, f.netName, f.maxName, max, f.netName, network)
	}
	if !toU128(min).isMultiple(hostBits) {
		return familyResult{}, fmt.Errorf("%s is not on a SubnetLen boundary: %s (%s=%d)", f.minName, min, f.lenName, subnetLen)
	}
	if !toU128(max).isMultiple(hostBits) {
		return familyResult{}, fmt.Errorf("%s is not on a SubnetLen boundary: %s (%s=%d)", f.maxName, max, f.lenName, subnetLen)
	}
	if toU128(min).cmp(toU128(max)) > 0 {
		return familyResult{}, fmt.Errorf("%s %s is greater than %s %s: the range holds no subnet", f.minName, min, f.maxName, max)
	}
	return familyResult{len: subnetLen, min: min, max: max}, nil
}

// SizeLike makes the subnet length of each enabled family that of the
// given subnet (an invalid one leaves its family as it is), with the
// default range for it. In kube mode node IPAM sizes the subnets (the
// podCIDRs, the same mask size for every node), not SubnetLen, and the
// peer filter and the subnet gauges must count in that size.
func (c *Config) SizeLike(v4, v6 netip.Prefix) error {
	if c.EnableIPv4 && v4.IsValid() && v4.Bits() != c.SubnetLen {
		r, err := checkFamily(family{netName: "Network", lenName: "SubnetLen", minName: "SubnetMin", maxName: "SubnetMax", total: 32},
			c.Network, v4.Bits(), netip.Addr{}, netip.Addr{})
		if err != nil {
			return fmt.Errorf("subnet size of %s: %w", v4, err)
		}
		c.SubnetLen, c.SubnetMin, c.SubnetMax = r.len, r.min, r.max
	}
	if c.EnableIPv6 && v6.IsValid() && v6.Bits() != c.IPv6SubnetLen {
		r, err := checkFamily(family{netName: "IPv6Network", lenName: "IPv6SubnetLen", minName: "IPv6SubnetMin", maxName: "IPv6SubnetMax", total: 128},
			c.IPv6Network, v6.Bits(), netip.Addr{}, netip.Addr{})
		if err != nil {
			return fmt.Errorf("subnet size of %s: %w", v6, err)
		}
		c.IPv6SubnetLen, c.IPv6SubnetMin, c.IPv6SubnetMax = r.len, r.min, r.max
	}
	return nil
}

// SubnetCount is the number of subnets between SubnetMin and SubnetMax
// (saturating at 1<<62 for huge IPv6 ranges).
func (c *Config) SubnetCount(v6 bool) uint64 {
	min, max, l := c.SubnetMin, c.SubnetMax, c.SubnetLen
	total := 32
	if v6 {
		min, max, l, total = c.IPv6SubnetMin, c.IPv6SubnetMax, c.IPv6SubnetLen, 128
	}
	if !min.IsValid() || !max.IsValid() {
		return 0
	}
	d := toU128(max).sub(toU128(min))
	shift := uint(total - l)
	// d >> shift
	var q u128
	if shift >= 64 {
		q = u128{lo: d.hi >> (shift - 64)}
	} else if shift == 0 {
		q = d
	} else {
		q = u128{hi: d.hi >> shift, lo: d.lo>>shift | d.hi<<(64-shift)}
	}
	if q.hi != 0 || q.lo >= 1<<62 {
		return 1 << 62
	}
	return q.lo + 1
}

// Compatible reports whether a lease's subnets fit this config: inside
// [SubnetMin, SubnetMax] with the configured lengths, and an IPv6 half exactly
// when IPv6 is enabled.
func (c *Config) Compatible(v4, v6 netip.Prefix) bool {
	if c.EnableIPv4 {
		if !v4.IsValid() || v4.Bits() != c.SubnetLen || !inRange(v4.Addr(), c.SubnetMin, c.SubnetMax) {
			return false
		}
	} else if v4.IsValid() {
		return false
	}
	if c.EnableIPv6 {
		if !v6.IsValid() || v6.Bits() != c.IPv6SubnetLen || !inRange(v6.Addr(), c.IPv6SubnetMin, c.IPv6SubnetMax) {
			return false
		}
	} else if v6.IsValid() {
		return false
	}
	return true
}

// CompatibleV4 reports whether p fits the IPv4 range and length.
func (c *Config) CompatibleV4(p netip.Prefix) bool {
	return c.EnableIPv4 && p.IsValid() && p.Bits() == c.SubnetLen && inRange(p.Addr(), c.SubnetMin, c.SubnetMax)
}

// CompatibleV6 reports whether p fits the IPv6 range and length.
func (c *Config) CompatibleV6(p netip.Prefix) bool {
	return c.EnableIPv6 && p.IsValid() && p.Bits() == c.IPv6SubnetLen && inRange(p.Addr(), c.IPv6SubnetMin, c.IPv6SubnetMax)
}

func inRange(a, min, max netip.Addr) bool {
	return a.BitLen() == min.BitLen() && a.Compare(min) >= 0 && a.Compare(max) <= 0
}
