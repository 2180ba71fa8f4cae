package lab

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// SubnetEnv is what the lab needs from a host's subnet.env to wire pods by
// hand: the host's pod subnets and the MTU.
type SubnetEnv struct {
	Subnet   netip.Prefix // FLANNEL_SUBNET, masked to the network; invalid if absent
	Subnet6  netip.Prefix // FLANNEL_IPV6_SUBNET, masked; invalid if absent
	MTU      int          // FLANNEL_MTU
	Gateway  netip.Addr   // first address of Subnet (the cni0 address), if Subnet is set
	Gateway6 netip.Addr   // first address of Subnet6, if Subnet6 is set
}

// ReadSubnetEnv reads and parses a subnet.env file.
func ReadSubnetEnv(path string) (SubnetEnv, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return SubnetEnv{}, fmt.Errorf("read subnet.env: %w", err)
	}
	env, err := ParseSubnetEnv(b)
	if err != nil {
		return SubnetEnv{}, fmt.Errorf("%s: %w", path, err)
	}
	return env, nil
}

// ParseSubnetEnv parses subnet.env the way the flannel CNI plugin does: lines
// split on the first '=', exact keys, no trimming, the last value wins.
func ParseSubnetEnv(b []byte) (SubnetEnv, error) {
	var env SubnetEnv
	var haveMTU bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch key {
		case "FLANNEL_SUBNET", "FLANNEL_IPV6_SUBNET":
			p, err := netip.ParsePrefix(val)
			if err != nil {
				return SubnetEnv{}, fmt.Errorf("%s: %w", key, err)
			}
			if key == "FLANNEL_SUBNET" {
				if !p.Addr().Is4() {
					return SubnetEnv{}, fmt.Errorf("%s=%s is not an IPv4 prefix", key, val)
				}
				env.Subnet = p.Masked()
			} else {
				if !p.Addr().Is6() || p.Addr().Is4In6() {
					return SubnetEnv{}, fmt.Errorf("%s=%s is not an IPv6 prefix", key, val)
				}
				env.Subnet6 = p.Masked()
			}
		case "FLANNEL_MTU":
			mtu, err := strconv.Atoi(val)
			if err != nil || mtu < 68 || mtu > 65535 {
				return SubnetEnv{}, fmt.Errorf("FLANNEL_MTU=%q is not an MTU between 68 and 65535", val)
			}
			env.MTU, haveMTU = mtu, true
		}
	}
	if err := sc.Err(); err != nil {
		return SubnetEnv{}, err
	}
	if !env.Subnet.IsValid() && !env.Subnet6.IsValid() {
		return SubnetEnv{}, fmt.Errorf("no FLANNEL_SUBNET or FLANNEL_IPV6_SUBNET")
	}
	if !haveMTU {
		return SubnetEnv{}, fmt.Errorf("no FLANNEL_MTU")
	}
	var err error
	if env.Subnet.IsValid() {
		if env.Gateway, err = nthAddr(env.Subnet, 1); err != nil {
			return SubnetEnv{}, fmt.Errorf("FLANNEL_SUBNET: %w", err)
		}
	}
	if env.Subnet6.IsValid() {
		if env.Gateway6, err = nthAddr(env.Subnet6, 1); err != nil {
			return SubnetEnv{}, fmt.Errorf("FLANNEL_IPV6_SUBNET: %w", err)
		}
	}
	return env, nil
}
