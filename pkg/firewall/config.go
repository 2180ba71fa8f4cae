package firewall

import (
	"fmt"
	"net/netip"
)

// Mode names the packet-filter framework the rules are written to.
type Mode string

const (
	// ModeIPTables writes FLANNEL-POSTRTG (nat) and FLANNEL-FWD (filter) with
	// iptables-restore. It is upstream's default.
	ModeIPTables Mode = "iptables"
	// ModeNFTables writes the tables flannel-ipv4 and flannel-ipv6 with nft
	// (upstream's EnableNFTables).
	ModeNFTables Mode = "nftables"
)

// Other returns the mode whose rules a manager of mode m removes in CleanupOther.
func (m Mode) Other() Mode {
	if m == ModeNFTables {
		return ModeIPTables
	}
	return ModeNFTables
}

// Config is the desired traffic-rule state of one node. The zero prefixes of a
// family disable that family.
type Config struct {
	Network     netip.Prefix // IPv4 flannel network (FLANNEL_NETWORK)
	Subnet      netip.Prefix // this node's IPv4 lease (network address and length)
	IPv6Network netip.Prefix // IPv6 flannel network (FLANNEL_IPV6_NETWORK)
	IPv6Subnet  netip.Prefix // this node's IPv6 lease

	Masq    bool // --ip-masq: install the masquerade chain
	Forward bool // --iptables-forward-rules: install the FORWARD accept chain
	// RandomFully asks for --random-fully (iptables) / fully-random (nft) on
	// the MASQUERADE rules; it is used only where the tools support it.
	// Upstream's --ip-masq-fully-random-disable sets it to false.
	RandomFully bool
}

// Validate reports the first inconsistency, naming the field and the value.
func (c Config) Validate() error {
	if err := validateFamily("Network", "Subnet", c.Network, c.Subnet, false); err != nil {
		return err
	}
	return validateFamily("IPv6Network", "IPv6Subnet", c.IPv6Network, c.IPv6Subnet, true)
}

func validateFamily(netName, subName string, network, subnet netip.Prefix, v6 bool) error {
	if !network.IsValid() {
		if subnet.IsValid() {
			return fmt.Errorf("firewall config: %s %s is set but %s is not", subName, subnet, netName)
		}
		return nil
	}
	if !subnet.IsValid() {
		return fmt.Errorf("firewall config: %s %s is set but %s is not", netName, network, subName)
	}
	for _, p := range []struct {
		name string
		p    netip.Prefix
	}{{netName, network}, {subName, subnet}} {
		if v6 && !p.p.Addr().Is6() || v6 && p.p.Addr().Is4In6() {
			return fmt.Errorf("firewall config: %s %s is not an IPv6 prefix", p.name, p.p)
		}
		if !v6 && !p.p.Addr().Is4() {
			return fmt.Errorf("firewall config: %s %s is not an IPv4 prefix", p.name, p.p)
		}
		// iptables and nft print prefixes masked; an unmasked one would never
		// compare equal to the dump and be rewritten every period.
		if p.p != p.p.Masked() {
			return fmt.Errorf("firewall config: %s %s is not a network address (want %s)", p.name, p.p, p.p.Masked())
		}
	}
	if subnet.Bits() < network.Bits() || !network.Contains(subnet.Addr()) {
		return fmt.Errorf("firewall config: %s %s is not inside %s %s", subName, subnet, netName, network)
	}
	return nil
}

// family is IPv4 or IPv6; most rule text differs only in a few words.
type family int

const (
	ipv4 family = 4
	ipv6 family = 6
)

var families = []family{ipv4, ipv6}

func (f family) String() string {
	if f == ipv6 {
		return "IPv6"
	}
	return "IPv4"
}

// multicast is the destination excluded from masquerading.
func (f family) multicast() string {
	if f == ipv6 {
		return "ff00::/8"
	}
	return "224.0.0.0/4"
}

// prefixes returns the network and subnet of family f; ok is false when the
// family is disabled.
func (c Config) prefixes(f family) (network, subnet netip.Prefix, ok bool) {
	if f == ipv6 {
		return c.IPv6Network, c.IPv6Subnet, c.IPv6Network.IsValid() && c.IPv6Subnet.IsValid()
	}
	return c.Network, c.Subnet, c.Network.IsValid() && c.Subnet.IsValid()
}
