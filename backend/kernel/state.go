package kernel

import (
	"bytes"
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// RouteProtocol is the rtm_protocol value that marks the routes we install
// (`ip route` shows it as "proto 45"). No kernel header, iproute2 rt_protos
// file or routing daemon we know of uses 45; a packager may add
// "45 flannel" to /etc/iproute2/rt_protos.d/ so `ip route` names it.
const RouteProtocol = 45

// Route protocol numbers from linux/rtnetlink.h that ownership rules need.
const (
	protoKernel = 2 // routes the kernel derives from addresses
	protoBoot   = 3 // `ip route add` without "proto", and upstream flanneld
	protoRA     = 9 // router advertisements
)

// Route metrics the kernel stores for a route added with metric 0: IPv4
// keeps 0, IPv6 turns it into 1024 (IP6_RT_PRIO_USER).
const (
	defaultMetric4 = 0
	defaultMetric6 = 1024
)

// MAC is an Ethernet address. Being an array, it can key a map.
type MAC [6]byte

// ParseMAC parses a 6-byte hardware address such as "a2:2a:fd:9f:55:f3".
func ParseMAC(s string) (MAC, error) {
	hw, err := net.ParseMAC(s)
	if err != nil {
		return MAC{}, err
	}
	return MACFromBytes(hw)
}

// MACFromBytes converts a 6-byte hardware address.
func MACFromBytes(b []byte) (MAC, error) {
	var m MAC
	if len(b) != len(m) {
		return MAC{}, fmt.Errorf("hardware address %x has %d bytes, want 6", b, len(b))
	}
	copy(m[:], b)
	return m, nil
}

// IsZero reports whether m is 00:00:00:00:00:00.
func (m MAC) IsZero() bool { return m == MAC{} }

// HardwareAddr returns m in the form the net and netlink packages use.
func (m MAC) HardwareAddr() net.HardwareAddr { return net.HardwareAddr(m[:]) }

func (m MAC) String() string { return m.HardwareAddr().String() }

// Route is a unicast route in the main table. Routes are keyed by
// destination: two Routes with the same Dst cannot both be wanted.
type Route struct {
	Dst       netip.Prefix
	Gw        netip.Addr
	LinkIndex int
	OnLink    bool
}

func (r Route) String() string {
	var b strings.Builder
	b.WriteString(r.Dst.String())
	if r.Gw.IsValid() {
		b.WriteString(" via ")
		b.WriteString(r.Gw.String())
	}
	fmt.Fprintf(&b, " dev #%d", r.LinkIndex)
	if r.OnLink {
		b.WriteString(" onlink")
	}
	return b.String()
}

// Neigh is a permanent neighbour (ARP/NDP) entry.
type Neigh struct {
	LinkIndex int
	IP        netip.Addr
	MAC       MAC
}

func (n Neigh) String() string {
	return fmt.Sprintf("neigh %s lladdr %s dev #%d", n.IP, n.MAC, n.LinkIndex)
}

// FDB is a permanent forwarding entry of a vxlan device ("bridge fdb ...
// self permanent"): frames for MAC are sent to Dst.
type FDB struct {
	LinkIndex int
	MAC       MAC
	Dst       netip.Addr
}

func (f FDB) String() string {
	return fmt.Sprintf("fdb %s dst %s dev #%d", f.MAC, f.Dst, f.LinkIndex)
}

// Device is a tunnel device a backend owns. Its permanent neighbour and FDB
// entries are all ours, and the Reconciler watches it: deletion, another
// MAC or MTU, the link going down or a wanted address vanishing makes the
// next pass a full one.
type Device struct {
	Index int
	Name  string
	MAC   MAC
	MTU   int
	Addrs []netip.Prefix // addresses the device must keep
}

// State is what a backend wants the kernel to hold.
type State struct {
	Routes  []Route
	Neighs  []Neigh
	FDB     []FDB
	Devices []Device
}

type routeKey struct {
	Dst      netip.Prefix
	Priority int
}

func (k routeKey) String() string { return "route " + k.Dst.String() }

type neighKey struct {
	LinkIndex int
	IP        netip.Addr
}

func (k neighKey) String() string { return fmt.Sprintf("neigh %s dev #%d", k.IP, k.LinkIndex) }

type fdbKey struct {
	LinkIndex int
	MAC       MAC
}

func (k fdbKey) String() string { return fmt.Sprintf("fdb %s dev #%d", k.MAC, k.LinkIndex) }

func keyOfRoute(r Route) routeKey {
	m := defaultMetric4
	if r.Dst.Addr().Is6() {
		m = defaultMetric6
	}
	return routeKey{Dst: r.Dst.Masked(), Priority: m}
}

// index is a State arranged for lookups. The watchers read it from other
// goroutines under Reconciler.ixMu; a full pass replaces it, a delta pass
// changes it in place.
type index struct {
	routes  map[routeKey]Route
	neighs  map[neighKey]MAC
	fdb     map[fdbKey]netip.Addr
	devices map[int]Device
	names   map[string]int

	// Claims beyond the first one of each key, so that a delta pass can
	// drop one lease's rows without dropping a row another lease still
	// wants.
	routeClaims claims[routeKey]
	neighClaims claims[neighKey]
	fdbClaims   claims[fdbKey]
}

// claims records what a table's map cannot: keys claimed more than once.
type claims[K comparable] struct {
	// dups counts further claims with the value the map holds: a peer
	// whose subnet changed has two leases, one still living out its TTL,
	// and both want its FDB entry.
	dups map[K]int
	// contested keys were claimed with different values; the map holds
	// the first. Only a full pass can tell which claim is left when one
	// goes.
	contested map[K]bool
}

// claim adds a claim of k with value v. It returns false, and the value k
// held before, when k was already claimed with another value.
//
// Of claims with different values the smallest by cmpV wins, whatever the
// order they come in: the order of a pass's rows is the order of the lease
// source's map, which changes from pass to pass, and "the first" moved an
// FDB entry shared by cloned machines between their hosts on every pass
// (issue 19). The rule is a function of the set of claims alone, so every
// node picks the same winner, a restart keeps it, and it changes only when
// a claimant comes or goes.
func claim[K, V comparable](m map[K]V, c *claims[K], k K, v V, cmpV func(a, b V) int) (V, bool) {
	old, ok := m[k]
	switch {
	case !ok:
		m[k] = v
		return v, true
	case old == v:
		if c.dups == nil {
			c.dups = map[K]int{}
		}
		c.dups[k]++
		return old, true
	default:
		if c.contested == nil {
			c.contested = map[K]bool{}
		}
		c.contested[k] = true
		if cmpV(v, old) < 0 {
			m[k] = v
			// dups counted claims of the old value; a contested key is
			// never released by a delta, so they are not needed again.
			delete(c.dups, k)
		}
		return old, false
	}
}

// release drops one claim of k with value v. It returns false when the
// index cannot say what k's remaining claims want: k is contested, or it
// is not claimed with v.
func release[K, V comparable](m map[K]V, c *claims[K], k K, v V) bool {
	if c.contested[k] {
		return false
	}
	if old, ok := m[k]; !ok || old != v {
		return false
	}
	switch n := c.dups[k]; {
	case n > 1:
		c.dups[k] = n - 1
	case n == 1:
		delete(c.dups, k)
	default:
		delete(m, k)
	}
	return true
}

// conflict is a kernel object that several wanted rows claim with
// different values (two leases with overlapping subnets or the same MAC):
// the value kept, and the others, sorted.
type conflict struct {
	key  string
	kept string
	lost string
}

// Total orders of row values, for picking the winner of a contested key.
func compareRoutes(a, b Route) int {
	if c := a.Gw.Compare(b.Gw); c != 0 {
		return c
	}
	if c := cmp.Compare(a.LinkIndex, b.LinkIndex); c != 0 {
		return c
	}
	if a.OnLink != b.OnLink {
		if !a.OnLink {
			return -1
		}
		return 1
	}
	return comparePrefix(a.Dst, b.Dst)
}

func compareMACs(a, b MAC) int { return bytes.Compare(a[:], b[:]) }

func compareAddrs(a, b netip.Addr) int { return a.Compare(b) }

// rivals collects, for each contested key of one table, the values that
// claimed it, so that a conflict is reported once per key with its final
// winner.
type rivals[K comparable, V comparable] map[K][]V

func (r rivals[K, V]) add(k K, vs ...V) {
	for _, v := range vs {
		if !slices.Contains(r[k], v) {
			r[k] = append(r[k], v)
		}
	}
}

// conflicts renders the contested keys: what m kept, and the rest.
func (r rivals[K, V]) conflicts(m map[K]V, cmpV func(a, b V) int, key func(K) string, val func(V) string) []conflict {
	out := make([]conflict, 0, len(r))
	for k, vs := range r {
		kept := m[k]
		slices.SortFunc(vs, cmpV)
		var lost []string
		for _, v := range vs {
			if v != kept {
				lost = append(lost, val(v))
			}
		}
		out = append(out, conflict{key: key(k), kept: val(kept), lost: strings.Join(lost, ", ")})
	}
	return out
}

func newIndex(s State) *index {
	return &index{
		routes:  make(map[routeKey]Route, len(s.Routes)),
		neighs:  make(map[neighKey]MAC, len(s.Neighs)),
		fdb:     make(map[fdbKey]netip.Addr, len(s.FDB)),
		devices: make(map[int]Device, len(s.Devices)),
		names:   make(map[string]int, len(s.Devices)),
	}
}

// buildIndex arranges s for lookups. Keys claimed with different values
// keep the smallest (see claim) and are returned as conflicts, one per
// key, sorted by key.
func buildIndex(s State) (*index, []conflict) {
	ix := newIndex(s)
	var (
		routeRivals rivals[routeKey, Route]
		neighRivals rivals[neighKey, MAC]
		fdbRivals   rivals[fdbKey, netip.Addr]
	)
	for _, r := range s.Routes {
		r.Dst = r.Dst.Masked()
		k := keyOfRoute(r)
		if prev, ok := claim(ix.routes, &ix.routeClaims, k, r, compareRoutes); !ok {
			if routeRivals == nil {
				routeRivals = rivals[routeKey, Route]{}
			}
			routeRivals.add(k, prev, r)
		}
	}
	for _, n := range s.Neighs {
		k := neighKey{n.LinkIndex, n.IP}
		if prev, ok := claim(ix.neighs, &ix.neighClaims, k, n.MAC, compareMACs); !ok {
			if neighRivals == nil {
				neighRivals = rivals[neighKey, MAC]{}
			}
			neighRivals.add(k, prev, n.MAC)
		}
	}
	for _, f := range s.FDB {
		k := fdbKey{f.LinkIndex, f.MAC}
		if prev, ok := claim(ix.fdb, &ix.fdbClaims, k, f.Dst, compareAddrs); !ok {
			if fdbRivals == nil {
				fdbRivals = rivals[fdbKey, netip.Addr]{}
			}
			fdbRivals.add(k, prev, f.Dst)
		}
	}
	for _, d := range s.Devices {
		if d.Index <= 0 {
			continue
		}
		ix.devices[d.Index] = d
		ix.names[d.Name] = d.Index
	}
	var conflicts []conflict
	if len(routeRivals)+len(neighRivals)+len(fdbRivals) > 0 {
		conflicts = append(conflicts, routeRivals.conflicts(ix.routes, compareRoutes, routeKey.String, Route.String)...)
		conflicts = append(conflicts, neighRivals.conflicts(ix.neighs, compareMACs, neighKey.String, MAC.String)...)
		dst := func(a netip.Addr) string { return "dst " + a.String() }
		conflicts = append(conflicts, fdbRivals.conflicts(ix.fdb, compareAddrs, fdbKey.String, dst)...)
		slices.SortFunc(conflicts, func(a, b conflict) int { return strings.Compare(a.key, b.key) })
	}
	return ix, conflicts
}

// keys are the rows a delta pass touched.
type keys struct {
	routes map[routeKey]struct{}
	neighs map[neighKey]struct{}
	fdb    map[fdbKey]struct{}
}

// applyDelta releases the claims of gone's rows and adds came's. It
// returns false when the change needs a full pass: a released row the
// index does not hold as claimed, a contested key, a new conflict, or
// devices (which only a full pass checks). The index may then be half
// changed; the caller rebuilds it.
func (ix *index) applyDelta(gone, came State) (keys, bool) {
	t := keys{routes: map[routeKey]struct{}{}, neighs: map[neighKey]struct{}{}, fdb: map[fdbKey]struct{}{}}
	if len(gone.Devices) > 0 || len(came.Devices) > 0 {
		return t, false
	}
	ok := true
	for _, r := range gone.Routes {
		r.Dst = r.Dst.Masked()
		k := keyOfRoute(r)
		t.routes[k] = struct{}{}
		ok = ok && release(ix.routes, &ix.routeClaims, k, r)
	}
	for _, n := range gone.Neighs {
		k := neighKey{n.LinkIndex, n.IP}
		t.neighs[k] = struct{}{}
		ok = ok && release(ix.neighs, &ix.neighClaims, k, n.MAC)
	}
	for _, f := range gone.FDB {
		k := fdbKey{f.LinkIndex, f.MAC}
		t.fdb[k] = struct{}{}
		ok = ok && release(ix.fdb, &ix.fdbClaims, k, f.Dst)
	}
	for _, r := range came.Routes {
		r.Dst = r.Dst.Masked()
		k := keyOfRoute(r)
		t.routes[k] = struct{}{}
		_, claimed := claim(ix.routes, &ix.routeClaims, k, r, compareRoutes)
		ok = ok && claimed
	}
	for _, n := range came.Neighs {
		k := neighKey{n.LinkIndex, n.IP}
		t.neighs[k] = struct{}{}
		_, claimed := claim(ix.neighs, &ix.neighClaims, k, n.MAC, compareMACs)
		ok = ok && claimed
	}
	for _, f := range came.FDB {
		k := fdbKey{f.LinkIndex, f.MAC}
		t.fdb[k] = struct{}{}
		_, claimed := claim(ix.fdb, &ix.fdbClaims, k, f.Dst, compareAddrs)
		ok = ok && claimed
	}
	return t, ok
}

// observedRoute is a main-table route as the kernel reported it.
type observedRoute struct {
	Route
	Protocol int
	Priority int
	// Extra is set when the route carries attributes we never set (a
	// preferred source, several next hops, another type or scope, a TOS,
	// metrics): such a route is not what we want even if the rest matches.
	Extra bool
	Owned bool
}

func (o observedRoute) key() routeKey { return routeKey{o.Dst.Masked(), o.Priority} }

// matches reports whether the kernel route is exactly the wanted one,
// including our protocol mark.
func (o observedRoute) matches(r Route) bool {
	return !o.Extra && o.Protocol == RouteProtocol && o.Route == r
}

type observedNeigh struct {
	MAC       MAC
	Permanent bool
	Owned     bool
}

type observedRemote struct {
	Dst       netip.Addr
	Permanent bool
	Owned     bool
}

// cache is our view of the kernel rows we own or want: filled by a full
// dump and updated by each successful write.
type cache struct {
	routes map[routeKey]observedRoute
	neighs map[neighKey]observedNeigh
	fdb    map[fdbKey][]observedRemote
}

func newCache() *cache {
	return &cache{
		routes: map[routeKey]observedRoute{},
		neighs: map[neighKey]observedNeigh{},
		fdb:    map[fdbKey][]observedRemote{},
	}
}

// owner decides which kernel rows belong to us.
type owner struct {
	networks []netip.Prefix
	extIndex int
}

// inside reports whether dst lies inside one of the overlay networks;
// strict also requires it to be narrower than the network.
func (o owner) inside(dst netip.Prefix, strict bool) bool {
	for _, n := range o.networks {
		if !n.IsValid() || n.Addr().Is4() != dst.Addr().Is4() {
			continue
		}
		if n.Contains(dst.Addr()) && (dst.Bits() > n.Bits() || (!strict && dst.Bits() == n.Bits())) {
			return true
		}
	}
	return false
}

// ownsRoute applies the ownership rules described in the package comment.
// adopt is true during the first full pass only.
func (o owner) ownsRoute(r observedRoute, devices map[int]Device, adopt bool) bool {
	_, onDevice := devices[r.LinkIndex]
	onDevice = onDevice && r.LinkIndex > 0
	if r.Protocol == RouteProtocol {
		// Our mark, on our own device or for a destination inside our
		// networks: a second flanneld on the node (another prefix, VNI
		// and Network) marks its routes the same way, and the two must
		// not delete each other's routes.
		return onDevice || o.inside(r.Dst, false)
	}
	if onDevice {
		return r.Protocol != protoKernel && r.Protocol != protoRA && o.inside(r.Dst, false)
	}
	return adopt && r.Protocol == protoBoot && r.Gw.IsValid() && o.extIndex > 0 &&
		r.LinkIndex == o.extIndex && o.inside(r.Dst, true)
}
