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

// planner collects the writes of a pass.
type planner struct {
	ix  *index
	c   *cache
	ops []op
}

func (p *planner) add(o op, sortBy string) {
	o.sortBy = sortBy
	p.ops = append(p.ops, o)
}

// sorted returns the writes in execution order.
func (p *planner) sorted() []op {
	slices.SortFunc(p.ops, func(a, b op) int {
		if c := cmp.Compare(a.kind, b.kind); c != 0 {
			return c
		}
		return cmp.Compare(a.sortBy, b.sortBy)
	})
	return p.ops
}

// route plans the write of one route key: set it when wanted and not
// exactly so in the kernel, delete it when unwanted and ours.
func (p *planner) route(k routeKey) {
	want, wanted := p.ix.routes[k]
	have, cached := p.c.routes[k]
	switch {
	case wanted && (!cached || !have.matches(want)):
		p.add(op{kind: opRouteSet, route: want}, k.Dst.String())
	case !wanted && cached && have.Owned:
		p.add(op{kind: opRouteDel, oldRt: have}, k.Dst.String())
	}
}

func (p *planner) neigh(k neighKey) {
	mac, wanted := p.ix.neighs[k]
	have, cached := p.c.neighs[k]
	switch {
	case wanted && (!cached || !have.Permanent || have.MAC != mac):
		p.add(op{kind: opNeighSet, nk: k, mac: mac}, k.String())
	case !wanted && cached && have.Owned:
		p.add(op{kind: opNeighDel, nk: k}, k.String())
	}
}

func (p *planner) fdb(k fdbKey) {
	dst, wanted := p.ix.fdb[k]
	remotes := p.c.fdb[k]
	if !wanted {
		for _, r := range remotes {
			if r.Owned {
				p.add(op{kind: opFDBDel, fk: k, dst: r.Dst}, k.String()+" "+r.Dst.String())
			}
		}
		return
	}
	switch {
	case len(remotes) == 1 && remotes[0].Dst == dst && remotes[0].Permanent:
		// Already right.
	case len(remotes) <= 1:
		// Creates the entry, or replaces its only remote in place
		// (NLM_F_REPLACE rewrites the first remote atomically).
		p.add(op{kind: opFDBSet, fk: k, dst: dst}, k.String())
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
			p.add(op{kind: opFDBDelPre, fk: k, dst: r.Dst}, k.String()+" "+r.Dst.String())
		}
		if !keep {
			p.add(op{kind: opFDBSet, fk: k, dst: dst}, k.String())
		}
	}
}

// plan lists the writes that turn the cached kernel state into the wanted
// one. It costs O(wanted + cached) map lookups and no kernel requests.
func plan(ix *index, c *cache) []op {
	p := planner{ix: ix, c: c}
	// Each table is scanned twice: wanted rows against the cache, then
	// cached rows that are not wanted, for deletions. The second scan is
	// skipped when every cached row turned out to be wanted (nothing to
	// delete: the common case of leases added or unchanged), which halves
	// the map lookups of a pass at 5,000 vxlan peers.
	found := 0
	for k := range ix.routes {
		if _, ok := c.routes[k]; ok {
			found++
		}
		p.route(k)
	}
	if found < len(c.routes) {
		for k := range c.routes {
			if _, wanted := ix.routes[k]; !wanted {
				p.route(k)
			}
		}
	}
	found = 0
	for k := range ix.neighs {
		if _, ok := c.neighs[k]; ok {
			found++
		}
		p.neigh(k)
	}
	if found < len(c.neighs) {
		for k := range c.neighs {
			if _, wanted := ix.neighs[k]; !wanted {
				p.neigh(k)
			}
		}
	}
	found = 0
	for k := range ix.fdb {
		if _, ok := c.fdb[k]; ok {
			found++
		}
		p.fdb(k)
	}
	if found < len(c.fdb) {
		for k := range c.fdb {
			if _, wanted := ix.fdb[k]; !wanted {
				p.fdb(k)
			}
		}
	}
	return p.sorted()
}

// planKeys is plan for the touched keys only: a delta pass costs what the
// change costs, not what the whole table costs.
func planKeys(ix *index, c *cache, t keys) []op {
	p := planner{ix: ix, c: c}
	for k := range t.routes {
		p.route(k)
	}
	for k := range t.neighs {
		p.neigh(k)
	}
	for k := range t.fdb {
		p.fdb(k)
	}
	return p.sorted()
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
