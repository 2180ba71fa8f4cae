package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/netip"

	"github.com/containernetworking/cni/pkg/types"
)

// buildDelegate renders the delegated plugin's config from the user's
// "delegate" object, the top-level keys and subnet.env, applying upstream's
// Linux rules in upstream's order. n is not modified.
//
// The result is what gets JSON-encoded, saved and sent: it must stay byte
// for byte what upstream renders for the same inputs, because the saved
// file is shared with upstream's DEL on mixed-version nodes and operators
// diff it. Numbers from the user's JSON are float64 here, as in upstream.
func buildDelegate(n *netConf, env *subnetEnv) (map[string]any, error) {
	if err := validateDelegate(n.Delegate); err != nil {
		return nil, err
	}
	d := maps.Clone(n.Delegate)
	if d == nil {
		d = map[string]any{}
	}
	if n.RuntimeConfig != nil {
		d["runtimeConfig"] = n.RuntimeConfig
	}
	d["name"] = n.Name
	if _, ok := d["type"]; !ok {
		d["type"] = "bridge"
	}
	if _, ok := d["ipMasq"]; !ok {
		// If the daemon masquerades pod traffic leaving the network, the
		// bridge must not do it a second time, and the other way round.
		d["ipMasq"] = !env.IPMasq
	}
	if _, ok := d["mtu"]; !ok {
		d["mtu"] = env.MTU
	}
	if d["type"] == "bridge" {
		if _, ok := d["isGateway"]; !ok {
			d["isGateway"] = true
		}
	}
	if n.CNIVersion != "" {
		d["cniVersion"] = n.CNIVersion
	}
	ipam, err := delegateIPAM(n.IPAM, env)
	if err != nil {
		return nil, fmt.Errorf("failed to assemble Delegate IPAM: %w", err)
	}
	d["ipam"] = ipam
	return d, nil
}

// delegateIPAM builds the delegate's ipam object: the user's ipam keys, type
// host-local unless set, ranges always from subnet.env (IPv4 first), and
// routes = the user's routes then one per flannel network, without a
// gateway (the bridge gateway is used).
func delegateIPAM(user map[string]any, env *subnetEnv) (map[string]any, error) {
	ipam := maps.Clone(user)
	if ipam == nil {
		ipam = map[string]any{}
	}
	if _, ok := ipam["type"]; !ok {
		ipam["type"] = "host-local"
	}

	var ranges [][]map[string]any
	for _, sn := range []netip.Prefix{env.Subnet, env.IPv6Subnet} {
		if sn.IsValid() {
			ranges = append(ranges, []map[string]any{{"subnet": sn.String()}})
		}
	}
	ipam["ranges"] = ranges

	routes, err := userRoutes(user)
	if err != nil {
		return nil, fmt.Errorf("failed to read IPAM routes: %w", err)
	}
	for _, nw := range env.Networks {
		routes = append(routes, types.Route{Dst: ipNet(nw)})
	}
	for _, nw := range env.IPv6Networks {
		routes = append(routes, types.Route{Dst: ipNet(nw)})
	}
	ipam["routes"] = routes
	return ipam, nil
}

// userRoutes decodes ipam.routes as CNI routes. Going through types.Route,
// as upstream does, normalises them (unknown route keys are dropped).
func userRoutes(ipam map[string]any) ([]types.Route, error) {
	routes := []types.Route{}
	v, ok := ipam["routes"]
	if !ok {
		return routes, nil
	}
	buf, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("failed to parse ipam.routes: %w", err)
	}
	if err := json.Unmarshal(buf, &routes); err != nil {
		return nil, fmt.Errorf("failed to parse ipam.routes: %w", err)
	}
	return routes, nil
}

// ipNet converts at the boundary to the type CNI's Route uses.
func ipNet(p netip.Prefix) net.IPNet {
	return net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
