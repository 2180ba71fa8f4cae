// Package hostgw is flannel's host-gw backend: no tunnel, just a route
// `<remote subnet> via <remote public IP> dev <external interface>` per
// remote lease (IPv4, and IPv6 through PublicIPv6), as upstream programs
// it. It needs every node on one L2 segment and the public IP to be the
// interface's own address.
//
// Routes are reconciled by package backend/kernel: marked with our route
// protocol, restored within a second when deleted or when the external
// interface comes back up (the kernel drops IPv4 routes of a downed link
// silently), stale ones removed at start, and nothing rewritten that is
// already right.
package hostgw

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/flannelng/flannel/backend"
	"github.com/flannelng/flannel/backend/kernel"
	"github.com/flannelng/flannel/subnet"
)

// BackendType is the lease BackendType of this backend.
const BackendType = "host-gw"

// errNAT is upstream's message, word for word.
var errNAT = errors.New("your PublicIP differs from interface IP, meaning that probably you're on a NAT, which is not supported by host-gw backend")

// checkConfig refuses what host-gw cannot route.
func checkConfig(cfg backend.Config) error {
	if !cfg.EnableIPv4 && !cfg.EnableIPv6 {
		return errors.New("host-gw backend: neither IPv4 nor IPv6 is enabled")
	}
	if cfg.Ext.Index <= 0 {
		return errors.New("host-gw backend: no external interface")
	}
	if cfg.EnableIPv4 && cfg.Ext.ExtAddr != cfg.Ext.IfaceAddr {
		return errNAT
	}
	if cfg.EnableIPv6 && cfg.Ext.ExtV6Addr != cfg.Ext.IfaceV6Addr {
		return errNAT
	}
	return nil
}

// planner turns leases into routes.
type planner struct {
	v4, v6     bool
	own4, own6 netip.Prefix
	extIndex   int
}

// state computes the routes for the remote leases; skipped maps a lease key
// to why (part of) it was not programmed.
func (p planner) state(peers []subnet.Lease) (st kernel.State, skipped map[string]string) {
	skipped = map[string]string{}
	st.Routes = make([]kernel.Route, 0, len(peers))
	for _, l := range peers {
		if l.Attrs.BackendType != BackendType {
			skipped[l.Key()] = fmt.Sprintf("Ignoring non-host-gw subnet: type=%v", l.Attrs.BackendType)
			continue
		}
		if p.v4 && l.Subnet.IsValid() && l.Subnet.Masked() != p.own4.Masked() {
			if l.Attrs.PublicIP.Is4() {
				st.Routes = append(st.Routes, kernel.Route{Dst: l.Subnet.Masked(), Gw: l.Attrs.PublicIP, LinkIndex: p.extIndex})
			} else {
				skipped[l.Key()] = fmt.Sprintf("ignoring IPv4 part of host-gw lease %s: no public IP", l.Key())
			}
		}
		if p.v6 && l.IPv6Subnet.IsValid() && l.IPv6Subnet.Masked() != p.own6.Masked() {
			if l.Attrs.PublicIPv6.Is6() {
				st.Routes = append(st.Routes, kernel.Route{Dst: l.IPv6Subnet.Masked(), Gw: l.Attrs.PublicIPv6, LinkIndex: p.extIndex})
			} else if _, done := skipped[l.Key()]; !done {
				skipped[l.Key()] = fmt.Sprintf("ignoring IPv6 part of host-gw lease %s: no public IPv6", l.Key())
			}
		}
	}
	return st, skipped
}
