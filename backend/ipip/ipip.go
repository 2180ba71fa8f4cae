// Package ipip is flannel's ipip backend: one IPv4-in-IPv4 tunnel device,
// flannel.ipip (local = the external interface's address, any remote), and
// per remote lease a route `<subnet> via <public IP> dev flannel.ipip
// onlink`: the kernel encapsulates towards the route's gateway. With
// DirectRouting, a peer on a directly connected network gets the route
// through the external interface instead, without encapsulation (onlink
// kept, as upstream).
//
// Device, MTU and routes are upstream's, so mixed clusters work. The routes
// are rows of package backend/kernel, as host-gw's: marked with our route
// protocol, repaired within a second when deleted, stale ones removed at
// start. The device's MTU, address and link state go through package
// netdev like every tunnel backend's.
//
// Where upstream writes its lease and then fails on a kernel without ipip,
// leaving the lease behind, Prepare creates the device before the daemon
// acquires a lease, so a missing module stops the daemon with nothing of
// ours left in the host.
package ipip

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"

	"github.com/flannelng/flannel/backend"
	"github.com/flannelng/flannel/backend/kernel"
	"github.com/flannelng/flannel/subnet"
)

// BackendType is the lease BackendType of this backend.
const BackendType = "ipip"

// DeviceName is upstream's fixed tunnel device name.
const DeviceName = "flannel.ipip"

// Overhead is the outer IPv4 header: the device MTU is the external
// interface's minus this.
const Overhead = 20

// Options is the "Backend" object. upstream has no MTU key; one given is
// ignored, like any unknown key.
type Options struct {
	DirectRouting bool
}

// ParseOptions decodes the Backend object as upstream does
// (encoding/json: case-insensitive keys, a type mismatch is fatal).
func ParseOptions(raw json.RawMessage) (Options, error) {
	var o Options
	if len(raw) > 0 && string(raw) != "null" {
		if err := json.Unmarshal(raw, &o); err != nil {
			return Options{}, fmt.Errorf("error decoding IPIP backend config: %w", err)
		}
	}
	return o, nil
}

// checkConfig refuses what ipip cannot carry. Upstream accepts EnableIPv6
// and then panics on the first lease with an IPv6 half.
func checkConfig(cfg backend.Config) error {
	if !cfg.EnableIPv4 {
		return errors.New("ipip backend: IPv4 is not enabled; ipip carries IPv4 only (use vxlan, host-gw or wireguard for IPv6)")
	}
	if cfg.EnableIPv6 {
		return errors.New("ipip backend: carries IPv4 only, set EnableIPv6 to false or use vxlan, host-gw or wireguard for IPv6")
	}
	if cfg.Ext.Index <= 0 || !cfg.Ext.IfaceAddr.Is4() {
		return errors.New("ipip backend: the external interface has no IPv4 address")
	}
	if cfg.Ext.MTU <= Overhead {
		return fmt.Errorf("MTU %d of iface %s is too small for ipip mode to work", cfg.Ext.MTU, cfg.Ext.Name)
	}
	return nil
}

// planner turns leases into routes.
type planner struct {
	own      netip.Prefix // our subnet, never routed
	devIndex int          // flannel.ipip
	// directRouting asks direct whether a public IP is on a directly
	// connected network, and through which link.
	directRouting bool
	direct        func(netip.Addr) (link int, ok bool)
}

// state computes the routes for the remote leases; skipped maps a lease key
// to why it was not programmed.
func (p planner) state(peers []subnet.Lease) (st kernel.State, skipped map[string]string) {
	skipped = map[string]string{}
	st.Routes = make([]kernel.Route, 0, len(peers))
	for _, l := range peers {
		switch {
		case l.Attrs.BackendType != BackendType:
			skipped[l.Key()] = fmt.Sprintf("Ignoring non-ipip subnet: type=%v", l.Attrs.BackendType)
			continue
		case !l.Subnet.IsValid() || l.Subnet.Masked() == p.own.Masked():
			continue
		case !l.Attrs.PublicIP.Is4() || l.Attrs.PublicIP.IsUnspecified():
			skipped[l.Key()] = fmt.Sprintf("ignoring ipip lease %s: no public IP", l.Key())
			continue
		}
		r := kernel.Route{Dst: l.Subnet.Masked(), Gw: l.Attrs.PublicIP, LinkIndex: p.devIndex, OnLink: true}
		if p.directRouting && p.direct != nil {
			if link, ok := p.direct(l.Attrs.PublicIP); ok {
				r.LinkIndex = link
			}
		}
		st.Routes = append(st.Routes, r)
	}
	return st, skipped
}
