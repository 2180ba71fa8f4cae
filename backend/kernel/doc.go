// Package kernel keeps the kernel's routes, neighbour entries and vxlan FDB
// entries in line with what a backend wants, instead of programming them
// from event handlers as upstream flannel does.
//
// A backend describes the state it wants as rows (State: Route, Neigh, FDB,
// plus the tunnel Devices it owns). The Reconciler compares the rows with
// what the kernel holds and changes only the difference:
//
//   - Ownership. Routes we install carry route protocol RouteProtocol (45),
//     so after a restart our stale routes can be told from other programs'
//     routes; routes that are not ours are never deleted. A marked route is
//     ours only on our own devices or inside our overlay networks: a second
//     flanneld on the node (another overlay) marks its routes the same way. Permanent
//     neighbour and FDB entries on our tunnel devices are all ours. For
//     in-place upgrades from upstream flanneld (whose routes are "proto
//     boot"), two more rules apply: a route on one of our devices whose
//     destination lies inside the overlay network is ours whatever its
//     protocol (except "proto kernel", which the kernel manages), and during
//     the first full pass only, a "proto boot" route through the external
//     interface with a gateway and a destination strictly inside the overlay
//     network (upstream's host-gw and DirectRouting routes) is adopted:
//     deleted if no lease wants it, re-marked with our protocol (an atomic
//     replace) if one does.
//   - Cost. A full pass dumps the kernel tables (one dump per table and
//     family, retried on netlink.ErrDumpInterrupted), diffs and applies. Other
//     passes diff the wanted rows against a cache of the kernel state built
//     from the last dump and our own successful writes, so adding one vxlan
//     peer costs three netlink requests whatever the cluster size. A full
//     pass runs at start, after a kernel notification that contradicts the
//     wanted state (see below), after a failed device check, when the
//     caller asks for one (Resync: the daemon's pass every
//     --reconcile-period), and when FullResyncInterval has passed since
//     the last one.
//   - Repair. The Reconciler subscribes to link, address, route and
//     neighbour notifications in the target namespace. A notification that
//     contradicts the wanted state (one of our rows deleted or changed, an
//     unexpected row we would own, a tunnel device deleted or changed, the
//     external interface changing state) marks the state dirty and signals
//     Changed, so the daemon runs a pass within a second. Echoes of our own
//     writes match the wanted state and are ignored.
//   - Conflicts. Two leases can want one object with different values
//     (cloned machines sharing a VtepMAC, two leases for one subnet). The
//     lowest claim wins (by gateway, MAC or destination address): a
//     function of the set of claims alone, so the winner does not move
//     with the order the lease source hands leases over (map order, new
//     on every pass), and every node picks the same one. Each contested
//     object is logged once, and again when its claimants change.
//   - Errors. A failing kernel call for one row does not stop the others; it
//     is logged once (again only if its error changes), retried on every
//     later pass, and counted in the aggregated error the pass returns.
//
// All kernel access goes through a Handle opened at a namespace path (or
// the current namespace), so tests drive a backend inside a lab namespace
// without switching the test's threads; the Handle counts its netlink
// requests, which is how tests prove that a pass over correct state writes
// nothing.
package kernel
