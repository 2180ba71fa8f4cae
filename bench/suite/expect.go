package suite

import "net/netip"

// Expect is the kernel state a set of peers needs.
type Expect struct {
	routes map[netip.Prefix]netip.Addr // destination → gateway
	neighs map[netip.Addr][6]byte      // vxlan: subnet address → VTEP MAC
	fdb    map[[6]byte]netip.Addr      // vxlan: VTEP MAC → public IP
}

// Expecting lists the entries of peers: for vxlan, a permanent neighbour
// (the subnet's network address → VTEP MAC), an FDB entry (VTEP MAC → public
// IP) and a route (subnet via its network address, onlink); for host-gw, a
// route (subnet via the public IP).
func Expecting(backend string, peers []Peer) *Expect {
	e := &Expect{routes: make(map[netip.Prefix]netip.Addr, len(peers))}
	if backend == VXLAN {
		e.neighs = make(map[netip.Addr][6]byte, len(peers))
		e.fdb = make(map[[6]byte]netip.Addr, len(peers))
	}
	for _, p := range peers {
		if backend == VXLAN {
			e.routes[p.Subnet] = p.Subnet.Addr()
			e.neighs[p.Subnet.Addr()] = p.MAC
			e.fdb[p.MAC] = p.PublicIP
		} else {
			e.routes[p.Subnet] = p.PublicIP
		}
	}
	return e
}

// Counts are the expected entries found, per table. Clean is false when a
// dump was interrupted by concurrent writes (the counts may then be off).
type Counts struct {
	Routes, Neighs, FDB int
	Clean               bool
}

// Has reports whether every table holds exactly n of the expected entries
// (n = all of them: programmed; n = 0: removed), from clean dumps.
func (c Counts) Has(backend string, n int) bool {
	if !c.Clean || c.Routes != n {
		return false
	}
	return backend != VXLAN || (c.Neighs == n && c.FDB == n)
}
