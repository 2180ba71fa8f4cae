package kernel

import (
	"bytes"
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
	numKinds
)

// opList holds a pass's writes by kind, in execution order: kinds in
// order, and within a kind by object for small passes (a stable order for
// tests and for people reading the log). Bucketing by kind as they are
// planned costs one copy of each op; sorting 15,000 of them (the first
// pass at 5,000 vxlan peers) moved tens of MB and was a tenth of the
// startup CPU.
type opList [numKinds][]op

func (l opList) len() int {
	n := 0
	for k := range l {
		n += len(l[k])
	}
	return n
}

// op is one kernel write. A first pass at 5,000 vxlan peers plans 15,000
// of them, so the fields are shared between kinds to keep it small.
type op struct {
	kind  opKind
	proto int32      // opRouteDel: the kernel route's protocol
	prio  int32      // opRouteDel: its metric
	route Route      // route ops: the wanted route (set) or the kernel's (delete)
	link  int        // neighbour and FDB ops: the device
	ip    netip.Addr // neighbour ops: the neighbour; FDB ops: the remote
	mac   MAC        // opNeighSet: the neighbour's MAC; FDB ops: the entry's MAC
}

func (o *op) nk() neighKey { return neighKey{o.link, o.ip} }
func (o *op) fk() fdbKey   { return fdbKey{o.link, o.mac} }

// oldRt is the route an opRouteDel removes, as the kernel showed it.
func (o *op) oldRt() observedRoute {
	return observedRoute{Route: o.route, Protocol: int(o.proto), Priority: int(o.prio)}
}

// compareOps orders writes by kind, then by the object they write (so a
// pass's writes and log lines come in a stable order).
func compareOps(a, b *op) int {
	if c := cmp.Compare(a.kind, b.kind); c != 0 {
		return c
	}
	switch a.kind {
	case opRouteSet, opRouteDel:
		return comparePrefix(a.route.Dst, b.route.Dst)
	case opNeighSet, opNeighDel:
		if c := cmp.Compare(a.link, b.link); c != 0 {
			return c
		}
		return a.ip.Compare(b.ip)
	default:
		if c := cmp.Compare(a.link, b.link); c != 0 {
			return c
		}
		if c := bytes.Compare(a.mac[:], b.mac[:]); c != 0 {
			return c
		}
		return a.ip.Compare(b.ip)
	}
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

// objectKey names the kernel object an op writes, for once-per-object error
// logging.
func (o op) objectKey() string {
	switch o.kind {
	case opRouteSet:
		return keyOfRoute(o.route).String()
	case opRouteDel:
		return o.oldRt().key().String()
	case opNeighSet, opNeighDel:
		return o.nk().String()
	default:
		return fmt.Sprintf("%s dst %s", o.fk(), o.ip)
	}
}

func (o op) String() string {
	switch o.kind {
	case opRouteSet:
		return "replace route " + o.route.String()
	case opRouteDel:
		return "delete route " + o.oldRt().Route.String()
	case opNeighSet:
		return fmt.Sprintf("replace neigh %s lladdr %s dev #%d", o.ip, o.mac, o.link)
	case opNeighDel:
		return fmt.Sprintf("delete neigh %s dev #%d", o.ip, o.link)
	case opFDBSet:
		return fmt.Sprintf("replace fdb %s dst %s dev #%d", o.mac, o.ip, o.link)
	default:
		return fmt.Sprintf("delete fdb %s dst %s dev #%d", o.mac, o.ip, o.link)
	}
}

// planner collects the writes of a pass.
type planner struct {
	ix  *index
	c   *cache
	ops opList
	// With filtered set, only writes of kind only are kept.
	only     opKind
	filtered bool
}

func (p *planner) add(o op) {
	if p.filtered && o.kind != p.only {
		return
	}
	p.ops[o.kind] = append(p.ops[o.kind], o)
}

// sortAllBelow is the pass size below which writes of one kind are also
// sorted by object.
const sortAllBelow = 1024

func (p *planner) sorted() opList {
	if p.ops.len() < sortAllBelow {
		for k := range p.ops {
			slices.SortFunc(p.ops[k], func(a, b op) int { return compareOps(&a, &b) })
		}
	}
	return p.ops
}

// route plans the write of one route key: set it when wanted and not
// exactly so in the kernel, delete it when unwanted and ours.
func (p *planner) route(k routeKey) {
	want, wanted := p.ix.routes[k]
	have, cached := p.c.routes[k]
	switch {
	case wanted && (!cached || !have.matches(want)):
		p.add(op{kind: opRouteSet, route: want})
	case !wanted && cached && have.Owned:
		p.add(op{kind: opRouteDel, route: have.Route, proto: int32(have.Protocol), prio: int32(have.Priority)})
	}
}

func (p *planner) neigh(k neighKey) {
	mac, wanted := p.ix.neighs[k]
	have, cached := p.c.neighs[k]
	switch {
	case wanted && (!cached || !have.Permanent || have.MAC != mac):
		p.add(op{kind: opNeighSet, link: k.LinkIndex, ip: k.IP, mac: mac})
	case !wanted && cached && have.Owned:
		p.add(op{kind: opNeighDel, link: k.LinkIndex, ip: k.IP})
	}
}

func (p *planner) fdb(k fdbKey) {
	dst, wanted := p.ix.fdb[k]
	remotes := p.c.fdb[k]
	if !wanted {
		for _, r := range remotes {
			if r.Owned {
				p.add(op{kind: opFDBDel, link: k.LinkIndex, mac: k.MAC, ip: r.Dst})
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
		p.add(op{kind: opFDBSet, link: k.LinkIndex, mac: k.MAC, ip: dst})
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
			p.add(op{kind: opFDBDelPre, link: k.LinkIndex, mac: k.MAC, ip: r.Dst})
		}
		if !keep {
			p.add(op{kind: opFDBSet, link: k.LinkIndex, mac: k.MAC, ip: dst})
		}
	}
}

// plan lists the writes that turn the cached kernel state into the wanted
// one. It costs O(wanted + cached) map lookups and no kernel requests.
func plan(ix *index, c *cache) opList {
	var l opList
	for k := range numKinds {
		l[k] = planKind(ix, c, k)
	}
	return l
}

// planKind lists the writes of one kind. A pass plans and applies one
// kind at a time, so only one kind's writes (at most one per peer) are in
// memory at once, not the three per peer of a first vxlan pass.
func planKind(ix *index, c *cache, k opKind) []op {
	p := planner{ix: ix, c: c, only: k, filtered: true}
	switch k {
	case opRouteDel:
		for key := range c.routes {
			if _, wanted := ix.routes[key]; !wanted {
				p.route(key)
			}
		}
	case opRouteSet:
		p.ops[k] = make([]op, 0, max(len(ix.routes)-len(c.routes), 0))
		for key := range ix.routes {
			p.route(key)
		}
	case opNeighSet:
		p.ops[k] = make([]op, 0, max(len(ix.neighs)-len(c.neighs), 0))
		for key := range ix.neighs {
			p.neigh(key)
		}
	case opNeighDel:
		for key := range c.neighs {
			if _, wanted := ix.neighs[key]; !wanted {
				p.neigh(key)
			}
		}
	case opFDBDelPre, opFDBSet:
		if k == opFDBSet {
			p.ops[k] = make([]op, 0, max(len(ix.fdb)-len(c.fdb), 0))
		}
		for key := range ix.fdb {
			p.fdb(key)
		}
	case opFDBDel:
		for key := range c.fdb {
			if _, wanted := ix.fdb[key]; !wanted {
				p.fdb(key)
			}
		}
	}
	return p.sorted()[k]
}

// planKeys is plan for the touched keys only: a delta pass costs what the
// change costs, not what the whole table costs.
func planKeys(ix *index, c *cache, t keys) opList {
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
		delete(c.routes, o.oldRt().key())
	case opNeighSet:
		c.neighs[o.nk()] = observedNeigh{MAC: o.mac, Permanent: true, Owned: true}
	case opNeighDel:
		delete(c.neighs, o.nk())
	case opFDBSet:
		c.fdb[o.fk()] = []observedRemote{{Dst: o.ip, Permanent: true, Owned: true}}
	case opFDBDelPre, opFDBDel:
		remotes := slices.DeleteFunc(c.fdb[o.fk()], func(r observedRemote) bool { return r.Dst == o.ip })
		if len(remotes) == 0 {
			delete(c.fdb, o.fk())
		} else {
			c.fdb[o.fk()] = remotes
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
