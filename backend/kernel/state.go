package kernel

import (
	"fmt"
	"net"
	"net/netip"
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

// index is a State arranged for lookups. The watcher reads the published
// index from other goroutines, so it is never modified once built.
type index struct {
	routes  map[routeKey]Route
	neighs  map[neighKey]MAC
	fdb     map[fdbKey]netip.Addr
	devices map[int]Device
	names   map[string]int
}

// conflict is a wanted row that another wanted row with the same key
// already claimed (two leases with overlapping subnets or the same MAC).
type conflict struct {
	key  string
	kept string
	lost string
}

func buildIndex(s State) (*index, []conflict) {
	ix := &index{
		routes:  make(map[routeKey]Route, len(s.Routes)),
		neighs:  make(map[neighKey]MAC, len(s.Neighs)),
		fdb:     make(map[fdbKey]netip.Addr, len(s.FDB)),
		devices: make(map[int]Device, len(s.Devices)),
		names:   make(map[string]int, len(s.Devices)),
	}
	var conflicts []conflict
	for _, r := range s.Routes {
		r.Dst = r.Dst.Masked()
		k := keyOfRoute(r)
		if old, ok := ix.routes[k]; ok {
			if old != r {
				conflicts = append(conflicts, conflict{k.String(), old.String(), r.String()})
			}
			continue
		}
		ix.routes[k] = r
	}
	for _, n := range s.Neighs {
		k := neighKey{n.LinkIndex, n.IP}
		if old, ok := ix.neighs[k]; ok {
			if old != n.MAC {
				conflicts = append(conflicts, conflict{k.String(), old.String(), n.MAC.String()})
			}
			continue
		}
		ix.neighs[k] = n.MAC
	}
	for _, f := range s.FDB {
		k := fdbKey{f.LinkIndex, f.MAC}
		if old, ok := ix.fdb[k]; ok {
			if old != f.Dst {
				conflicts = append(conflicts, conflict{k.String(), "dst " + old.String(), "dst " + f.Dst.String()})
			}
			continue
		}
		ix.fdb[k] = f.Dst
	}
	for _, d := range s.Devices {
		if d.Index <= 0 {
			continue
		}
		ix.devices[d.Index] = d
		ix.names[d.Name] = d.Index
	}
	return ix, conflicts
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
