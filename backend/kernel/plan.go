package kernel

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// opKind orders the kernel writes of a pass. New forwarding state is built
// bottom-up as upstream does (neighbour, FDB, then the route that uses
// them) and torn down top-down (route first), so a peer's traffic never
// meets a route whose next hop is not resolved yet.
type opKind uint8

const (
	opRouteDel  opKind = iota // stale routes
	opFDBDelPre               // extra remotes of an FDB entry we are about to set
	opNeighSet                // add or replace
	opFDBSet                  // add or replace
	opRouteSet                // add or replace (RouteReplace)
	opNeighDel                // stale neighbours
	opFDBDel                  // stale FDB remotes
)

// op is one kernel write.
type op struct {
	kind   opKind
	route  Route         // opRouteSet
	oldRt  observedRoute // opRouteDel: the kernel route, attributes as seen
	nk     neighKey      // opNeighSet, opNeighDel
	mac    MAC           // opNeighSet
	fk     fdbKey        // FDB ops
	dst    netip.Addr    // FDB ops
	sortBy string
}

// objectKey names the kernel object an op writes, for once-per-object error
// logging.
func (o op) objectKey() string {
	switch o.kind {
	case opRouteSet:
		return keyOfRoute(o.route).String()
	case opRouteDel:
		return o.oldRt.key().String()
	case opNeighSet, opNeighDel:
		return o.nk.String()
	default:
		return fmt.Sprintf("%s dst %s", o.fk, o.dst)
	}
}

func (o op) String() string {
	switch o.kind {
	case opRouteSet:
		return "replace route " + o.route.String()
	case opRouteDel:
		return "delete route " + o.oldRt.Route.String()
	case opNeighSet:
		return fmt.Sprintf("replace neigh %s lladdr %s dev #%d", o.nk.IP, o.mac, o.nk.LinkIndex)
	case opNeighDel:
		return fmt.Sprintf("delete neigh %s dev #%d", o.nk.IP, o.nk.LinkIndex)
	case opFDBSet:
		return fmt.Sprintf("replace fdb %s dst %s dev #%d", o.fk.MAC, o.dst, o.fk.LinkIndex)
	default:
		return fmt.Sprintf("delete fdb %s dst %s dev #%d", o.fk.MAC, o.dst, o.fk.LinkIndex)
	}
}

// plan lists the writes that turn the cached kernel state into the wanted
// one. It costs O(wanted + cached) map lookups and no kernel requests.
func plan(ix *index, c *cache) []op {
	var ops []op
	add := func(o op, sortBy string) {
		o.sortBy = sortBy
		ops = append(ops, o)
	}

	// Each table is scanned twice: wanted rows against the cache, then
	// cached rows against the wanted ones for deletions. The second scan is
	// skipped when every cached row turned out to be wanted (nothing to
	// delete: the common case of leases added or unchanged). Every pass
	// runs this over all rows, so at 5,000 vxlan peers it halves the map
	// lookups of each lease change.
	found := 0
	for k, want := range ix.routes {
		have, ok := c.routes[k]
		if ok {
			found++
		}
		if !ok || !have.matches(want) {
			add(op{kind: opRouteSet, route: want}, k.Dst.String())
		}
	}
	if found < len(c.routes) {
		for k, have := range c.routes {
			if _, wanted := ix.routes[k]; !wanted && have.Owned {
				add(op{kind: opRouteDel, oldRt: have}, k.Dst.String())
			}
		}
	}

	found = 0
	for k, mac := range ix.neighs {
		have, ok := c.neighs[k]
		if ok {
			found++
		}
		if !ok || !have.Permanent || have.MAC != mac {
			add(op{kind: opNeighSet, nk: k, mac: mac}, k.String())
		}
	}
	if found < len(c.neighs) {
		for k, have := range c.neighs {
			if _, wanted := ix.neighs[k]; !wanted && have.Owned {
				add(op{kind: opNeighDel, nk: k}, k.String())
			}
		}
	}

	found = 0
	for k, dst := range ix.fdb {
		remotes, ok := c.fdb[k]
		if ok {
			found++
		}
		switch {
		case len(remotes) == 1 && remotes[0].Dst == dst && remotes[0].Permanent:
			// Already right.
		case len(remotes) <= 1:
			// Creates the entry, or replaces its only remote in place
			// (NLM_F_REPLACE rewrites the first remote atomically).
			add(op{kind: opFDBSet, fk: k, dst: dst}, k.String())
		default:
			// Several remotes (someone appended): drop the others first, so
			// the replace below acts on the right one.
			keep := false
			for _, r := range remotes {
				if r.Dst == dst && r.Permanent {
					keep = true
					continue
				}
				if r.Dst == dst {
					continue
				}
				add(op{kind: opFDBDelPre, fk: k, dst: r.Dst}, k.String()+" "+r.Dst.String())
			}
			if !keep {
				add(op{kind: opFDBSet, fk: k, dst: dst}, k.String())
			}
		}
	}
	if found < len(c.fdb) {
		for k, remotes := range c.fdb {
			if _, wanted := ix.fdb[k]; wanted {
				continue
			}
			for _, r := range remotes {
				if r.Owned {
					add(op{kind: opFDBDel, fk: k, dst: r.Dst}, k.String()+" "+r.Dst.String())
				}
			}
		}
	}

	slices.SortFunc(ops, func(a, b op) int {
		if c := cmp.Compare(a.kind, b.kind); c != 0 {
			return c
		}
		return cmp.Compare(a.sortBy, b.sortBy)
	})
	return ops
}

// record updates the cache after op succeeded.
func (c *cache) record(o op) {
	switch o.kind {
	case opRouteSet:
		k := keyOfRoute(o.route)
		c.routes[k] = observedRoute{Route: o.route, Protocol: RouteProtocol, Priority: k.Priority, Owned: true}
	case opRouteDel:
		delete(c.routes, o.oldRt.key())
	case opNeighSet:
		c.neighs[o.nk] = observedNeigh{MAC: o.mac, Permanent: true, Owned: true}
	case opNeighDel:
		delete(c.neighs, o.nk)
	case opFDBSet:
		c.fdb[o.fk] = []observedRemote{{Dst: o.dst, Permanent: true, Owned: true}}
	case opFDBDelPre, opFDBDel:
		remotes := slices.DeleteFunc(c.fdb[o.fk], func(r observedRemote) bool { return r.Dst == o.dst })
		if len(remotes) == 0 {
			delete(c.fdb, o.fk)
		} else {
			c.fdb[o.fk] = remotes
		}
	}
}

// maxJoinedErrors bounds the errors a pass returns in full; the rest are
// counted.
const maxJoinedErrors = 5

// summarize aggregates the errors of a pass.
func summarize(errs []error, nOps int) error {
	switch {
	case len(errs) == 0:
		return nil
	case len(errs) <= maxJoinedErrors:
		return errors.Join(errs...)
	default:
		return fmt.Errorf("%d of %d kernel updates failed, first ones: %w",
			len(errs), nOps, errors.Join(errs[:maxJoinedErrors]...))
	}
}
