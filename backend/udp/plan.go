package udp

import (
	"fmt"
	"net/netip"

	"github.com/flannelng/flannel/subnet"
)

// planRoutes turns the remote leases into relay table entries: subnet →
// PublicIP:port. skipped maps a lease key to why it was left out, so that
// each is logged once.
//
// Leases with BackendType "udp" and with no BackendType (what upstream's
// udp backend writes) are used; upstream uses every lease whatever its
// type. A lease carrying our own public IP is skipped: sending to it would
// loop packets through this node until their TTL ran out.
func planRoutes(peers []subnet.Lease, port int, ownPublic netip.Addr) (routes []route, skipped map[string]string) {
	skipped = map[string]string{}
	routes = make([]route, 0, len(peers))
	owner := make(map[netip.Prefix]string, len(peers))
	for _, l := range peers {
		key := l.Key()
		switch {
		case l.Attrs.BackendType != BackendType && l.Attrs.BackendType != "":
			skipped[key] = fmt.Sprintf("Ignoring non-udp subnet %s: type=%v", key, l.Attrs.BackendType)
		case !l.Subnet.IsValid() || !l.Subnet.Addr().Is4() || l.Subnet.Bits() == 0:
			skipped[key] = fmt.Sprintf("Ignoring udp lease %s: no IPv4 subnet", key)
		case !l.Attrs.PublicIP.Is4() || l.Attrs.PublicIP.IsUnspecified():
			skipped[key] = fmt.Sprintf("Ignoring udp lease %s: no IPv4 public IP", key)
		case l.Attrs.PublicIP == ownPublic:
			skipped[key] = fmt.Sprintf("Ignoring udp lease %s: it has our own public IP %s", key, ownPublic)
		default:
			p := l.Subnet.Masked()
			if first, dup := owner[p]; dup {
				skipped[key] = fmt.Sprintf("Ignoring udp lease %s: subnet %s is already routed to lease %s", key, p, first)
				continue
			}
			owner[p] = key
			routes = append(routes, route{Dst: p, NextHop: netip.AddrPortFrom(l.Attrs.PublicIP, uint16(port))})
		}
	}
	return routes, skipped
}
