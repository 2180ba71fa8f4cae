package main

import (
	"fmt"
	"net"
	"net/netip"
)

// defaultBridge is the bridge plugin's default "bridge" name.
const defaultBridge = "cni0"

// staleBridge says why the bridge delegate must be told forceAddress: the
// bridge it will use already holds an IPv4 address outside FLANNEL_SUBNET,
// left from a subnet this node no longer leases (a lease that expired
// while the node was down, a changed Network or SubnetLen). The bridge
// plugin refuses to add a second IPv4 address ("cni0" already has an IP
// address different from ...), so every new pod on the node would fail
// until someone deletes cni0 by hand; with forceAddress it replaces the
// address. Pods still on the old subnet were cut off when the lease moved.
//
// It returns "" (leave the delegate as upstream renders it) for other
// delegates, when the user set forceAddress either way, without a gateway
// address to set, and when the bridge does not exist yet or is in order.
// IPv6 needs nothing: the bridge plugin keeps several IPv6 addresses as
// long as their subnets do not overlap, and subnets of one network never
// do.
func staleBridge(d map[string]any, env *subnetEnv, addrsOf func(bridge string) ([]netip.Prefix, error)) string {
	if d["type"] != "bridge" || !env.Subnet.IsValid() {
		return ""
	}
	if _, set := d["forceAddress"]; set {
		return ""
	}
	if gw, _ := d["isGateway"].(bool); !gw {
		return ""
	}
	name, _ := d["bridge"].(string)
	if name == "" {
		name = defaultBridge
	}
	addrs, err := addrsOf(name)
	if err != nil {
		return "" // no bridge yet: the delegate creates it
	}
	for _, a := range addrs {
		if a.Addr().Is4() && a.Masked() != env.Subnet {
			return fmt.Sprintf("bridge %s has address %s, outside FLANNEL_SUBNET %s", name, a, env.Subnet)
		}
	}
	return ""
}

// bridgeAddrs lists the addresses of a link in the plugin's (the host's)
// network namespace. The standard library's view is enough here and keeps
// the netlink package out of a binary the runtime starts for every pod.
func bridgeAddrs(name string) ([]netip.Prefix, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return nil, err
	}
	addrs, err := ifc.Addrs()
	if err != nil {
		return nil, err
	}
	out := make([]netip.Prefix, 0, len(addrs))
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		ones, _ := ipn.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return out, nil
}
