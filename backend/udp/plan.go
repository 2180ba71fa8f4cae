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
//
// A subnet held by several leases goes to the one with the lowest public
// IP (then the lowest key), whatever order the leases come in: they come
// in the lease source's map order, and "the first" moved the subnet
// between nodes from one pass to the next (issue 19). backend/kernel
// settles contested kernel objects the same way.
func planRoutes(peers []subnet.Lease, port int, ownPublic netip.Addr) (routes []route, skipped map[string]string) {
	skipped = map[string]string{}
	routes = make([]route, 0, len(peers))
	type holder struct {
		i   int // in routes
		key string
	}
	owner := make(map[netip.Prefix]holder, len(peers))
	var lost map[string]netip.Prefix // lease key → the subnet another lease got
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
			r := route{Dst: p, NextHop: netip.AddrPortFrom(l.Attrs.PublicIP, uint16(port))}
			h, dup := owner[p]
			if !dup {
				owner[p] = holder{len(routes), key}
				routes = append(routes, r)
				continue
			}
			loser := key
			if c := r.NextHop.Addr().Compare(routes[h.i].NextHop.Addr()); c < 0 || c == 0 && key < h.key {
				loser = h.key
				routes[h.i] = r
				owner[p] = holder{h.i, key}
			}
			if lost == nil {
				lost = map[string]netip.Prefix{}
			}
			lost[loser] = p
		}
	}
	// The reasons name the final holder, known only now.
	for k, p := range lost {
		h := owner[p]
		skipped[k] = fmt.Sprintf("Ignoring udp lease %s: subnet %s goes to lease %s, whose public IP %s is the lowest",
			k, p, h.key, routes[h.i].NextHop.Addr())
	}
	return routes, skipped
}
