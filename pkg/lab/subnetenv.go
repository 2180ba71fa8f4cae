package lab

import (
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/flannelng/flannel/subnet"
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

// ParseSubnetEnv parses subnet.env the way upstream's flannel CNI plugin
// splits it (subnet.ParseEnvFileExact: lines split on the first '=', exact
// keys, no trimming, the last value wins), then requires a pod subnet and an
// MTU a link can have.
func ParseSubnetEnv(b []byte) (SubnetEnv, error) {
	f, err := subnet.ParseEnvFileExact(b, "")
	if ee := (*subnet.EnvError)(nil); errors.As(err, &ee) {
		return SubnetEnv{}, fmt.Errorf("%s=%q: %w", ee.Key, ee.Value, ee.Err)
	}
	if err != nil {
		return SubnetEnv{}, err
	}
	env := SubnetEnv{Subnet: f.Subnet, Subnet6: f.IPv6Subnet, MTU: int(f.MTU)}
	if env.Subnet.IsValid() && !env.Subnet.Addr().Is4() {
		return SubnetEnv{}, fmt.Errorf("FLANNEL_SUBNET=%s is not an IPv4 prefix", env.Subnet)
	}
	if env.Subnet6.IsValid() && !env.Subnet6.Addr().Is6() {
		return SubnetEnv{}, fmt.Errorf("FLANNEL_IPV6_SUBNET=%s is not an IPv6 prefix", env.Subnet6)
	}
	if !env.Subnet.IsValid() && !env.Subnet6.IsValid() {
		return SubnetEnv{}, fmt.Errorf("no FLANNEL_SUBNET or FLANNEL_IPV6_SUBNET")
	}
	if !f.HasMTU {
		return SubnetEnv{}, fmt.Errorf("no FLANNEL_MTU")
	}
	if env.MTU < 68 || env.MTU > 65535 {
		return SubnetEnv{}, fmt.Errorf("FLANNEL_MTU=%d is not an MTU between 68 and 65535", env.MTU)
	}
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
