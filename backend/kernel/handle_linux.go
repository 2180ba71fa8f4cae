package kernel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/flannelng/flannel/pkg/nldump"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// requestTimeout bounds one netlink request, so a wedged socket turns into
// an error instead of a hung daemon.
const requestTimeout = 10 * time.Second

// Handle is the one door to the kernel of a network namespace. It counts
// its netlink requests (Stats), retries interrupted dumps, and treats
// "already gone" as success for deletes.
type Handle struct {
	nl     *netlink.Handle
	ns     netns.NsHandle // target namespace; netns.None() for our own
	nsPath string

	reads  atomic.Uint64
	writes atomic.Uint64

	bwMu     sync.Mutex
	bw       *batchWriter // opened on first use
	bwFailed bool
}

// Stats counts the netlink requests a Handle made.
type Stats struct {
	Reads  uint64 // dumps and gets (a retried dump counts once per attempt)
	Writes uint64 // requests that change kernel state
}

// Open returns a Handle for the network namespace at nsPath (a
// /var/run/netns or /proc/PID/ns/net path), or for the caller's namespace
// when nsPath is empty. No thread changes namespace for the requests: the
// netlink socket is created inside the namespace once.
func Open(nsPath string) (*Handle, error) {
	h := &Handle{ns: netns.None(), nsPath: nsPath}
	var err error
	if nsPath == "" {
		h.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	} else {
		h.ns, err = netns.GetFromPath(nsPath)
		if err != nil {
			return nil, fmt.Errorf("open network namespace %s: %w", nsPath, err)
		}
		h.nl, err = netlink.NewHandleAt(h.ns, unix.NETLINK_ROUTE)
	}
	if err != nil {
		if h.ns.IsOpen() {
			h.ns.Close()
		}
		return nil, fmt.Errorf("open netlink socket in %s: %w", h.nsName(), err)
	}
	if err := h.nl.SetSocketTimeout(requestTimeout); err != nil {
		h.Close()
		return nil, fmt.Errorf("set netlink socket timeout: %w", err)
	}
	return h, nil
}

func (h *Handle) nsName() string {
	if h.nsPath == "" {
		return "the current network namespace"
	}
	return h.nsPath
}

// NetnsPath is the namespace path the Handle was opened at ("" for the
// caller's namespace).
func (h *Handle) NetnsPath() string { return h.nsPath }

// Close releases the netlink socket and the namespace reference.
func (h *Handle) Close() {
	h.bwMu.Lock()
	if h.bw != nil {
		h.bw.close()
		h.bw = nil
	}
	h.bwMu.Unlock()
	if h.nl != nil {
		h.nl.Close()
		h.nl = nil
	}
	if h.ns.IsOpen() {
		h.ns.Close()
		h.ns = netns.None()
	}
}

// Stats returns the request counters.
func (h *Handle) Stats() Stats { return Stats{Reads: h.reads.Load(), Writes: h.writes.Load()} }

// dump runs a netlink dump through nldump, which retries it when the kernel
// reports the dump was interrupted by a concurrent change (results are then
// incomplete), and counts each attempt as a read.
func dump[T any](h *Handle, what string, f func() ([]T, error)) ([]T, error) {
	return nldump.Retry(what, func() ([]T, error) {
		h.reads.Add(1)
		return f()
	})
}

// RouteList dumps the main routing table of one family.
func (h *Handle) RouteList(family int) ([]netlink.Route, error) {
	return dump(h, "list routes", func() ([]netlink.Route, error) {
		return h.nl.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	})
}

// NeighList dumps the neighbour table of a family (AF_BRIDGE: the FDB),
// for one link or for all links when linkIndex is 0.
func (h *Handle) NeighList(linkIndex, family int) ([]netlink.Neigh, error) {
	return dump(h, "list neighbours", func() ([]netlink.Neigh, error) {
		return h.nl.NeighList(linkIndex, family)
	})
}

// AddrList dumps the addresses of a link.
func (h *Handle) AddrList(link netlink.Link, family int) ([]netlink.Addr, error) {
	return dump(h, "list addresses of "+link.Attrs().Name, func() ([]netlink.Addr, error) {
		return h.nl.AddrList(link, family)
	})
}

// LinkByName looks a link up; a missing link gives an error that
// IsNotFound recognises.
func (h *Handle) LinkByName(name string) (netlink.Link, error) {
	h.reads.Add(1)
	l, err := h.nl.LinkByName(name)
	if errors.Is(err, netlink.ErrDumpInterrupted) {
		h.reads.Add(1)
		l, err = h.nl.LinkByName(name)
	}
	return l, err
}

// LinkByIndex looks a link up by index.
func (h *Handle) LinkByIndex(index int) (netlink.Link, error) {
	h.reads.Add(1)
	return h.nl.LinkByIndex(index)
}

// RouteGet asks the kernel which route it would use for dst.
func (h *Handle) RouteGet(dst netip.Addr) ([]netlink.Route, error) {
	h.reads.Add(1)
	return h.nl.RouteGet(dst.AsSlice())
}

// IsNotFound reports whether err means the object does not exist.
func IsNotFound(err error) bool {
	var lnf netlink.LinkNotFoundError
	return errors.As(err, &lnf) ||
		errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.ENODEV)
}

// write counts one state-changing request.
func (h *Handle) write(f func() error) error {
	h.writes.Add(1)
	return f()
}

// LinkAdd creates a link.
func (h *Handle) LinkAdd(l netlink.Link) error {
	return h.write(func() error { return h.nl.LinkAdd(l) })
}

// LinkDel deletes a link.
func (h *Handle) LinkDel(l netlink.Link) error {
	return h.write(func() error { return h.nl.LinkDel(l) })
}

// LinkSetUp sets a link administratively up.
func (h *Handle) LinkSetUp(l netlink.Link) error {
	return h.write(func() error { return h.nl.LinkSetUp(l) })
}

// LinkSetMTU changes a link's MTU.
func (h *Handle) LinkSetMTU(l netlink.Link, mtu int) error {
	return h.write(func() error { return h.nl.LinkSetMTU(l, mtu) })
}

// LinkSetHardwareAddr changes a link's MAC.
func (h *Handle) LinkSetHardwareAddr(l netlink.Link, mac MAC) error {
	return h.write(func() error { return h.nl.LinkSetHardwareAddr(l, mac.HardwareAddr()) })
}

// AddrAdd adds an address to a link.
func (h *Handle) AddrAdd(l netlink.Link, p netip.Prefix) error {
	return h.write(func() error { return h.nl.AddrAdd(l, &netlink.Addr{IPNet: ipNet(p)}) })
}

// AddrDel removes an address from a link; an address already gone is not
// an error.
func (h *Handle) AddrDel(l netlink.Link, p netip.Prefix) error {
	err := h.write(func() error { return h.nl.AddrDel(l, &netlink.Addr{IPNet: ipNet(p)}) })
	if errors.Is(err, syscall.EADDRNOTAVAIL) || IsNotFound(err) {
		return nil
	}
	return err
}

// RouteReplace installs r in the main table with our protocol mark,
// replacing any route with the same destination and metric.
func (h *Handle) RouteReplace(r Route) error {
	return h.write(func() error { return h.nl.RouteReplace(toNetlinkRoute(r)) })
}

// routeDel deletes the kernel route o, matching it by the attributes the
// kernel reported, so a route that is not o is never hit. Already gone is
// success.
func (h *Handle) routeDel(o observedRoute) error {
	nr := toNetlinkRoute(o.Route)
	nr.Protocol = netlink.RouteProtocol(o.Protocol)
	nr.Priority = o.Priority
	if !o.Gw.IsValid() {
		nr.Gw = nil
	}
	if o.LinkIndex == 0 {
		nr.LinkIndex = 0
	}
	// Let the kernel match type, scope and flags: we only name the route.
	nr.Flags = 0
	nr.Type = 0
	nr.Scope = netlink.SCOPE_NOWHERE
	err := h.write(func() error { return h.nl.RouteDel(nr) })
	if IsNotFound(err) {
		return nil
	}
	return err
}

// neighSet adds or replaces a permanent neighbour entry.
func (h *Handle) neighSet(n Neigh) error {
	return h.write(func() error {
		return h.nl.NeighSet(&netlink.Neigh{
			LinkIndex:    n.LinkIndex,
			State:        netlink.NUD_PERMANENT,
			Type:         unix.RTN_UNICAST,
			IP:           n.IP.AsSlice(),
			HardwareAddr: n.MAC.HardwareAddr(),
		})
	})
}

// neighDel deletes a neighbour entry; already gone is success.
func (h *Handle) neighDel(k neighKey) error {
	err := h.write(func() error {
		return h.nl.NeighDel(&netlink.Neigh{LinkIndex: k.LinkIndex, IP: k.IP.AsSlice()})
	})
	if IsNotFound(err) {
		return nil
	}
	return err
}

// fdbSet adds the FDB entry, or replaces the first remote of an existing
// entry for the MAC, in place.
func (h *Handle) fdbSet(f FDB) error {
	return h.write(func() error {
		return h.nl.NeighSet(&netlink.Neigh{
			LinkIndex:    f.LinkIndex,
			Family:       unix.AF_BRIDGE,
			Flags:        netlink.NTF_SELF,
			State:        netlink.NUD_PERMANENT,
			IP:           f.Dst.AsSlice(),
			HardwareAddr: f.MAC.HardwareAddr(),
		})
	})
}

// fdbDel deletes one remote of an FDB entry (the whole entry when it was
// the last); already gone is success.
func (h *Handle) fdbDel(f FDB) error {
	err := h.write(func() error {
		return h.nl.NeighDel(&netlink.Neigh{
			LinkIndex:    f.LinkIndex,
			Family:       unix.AF_BRIDGE,
			Flags:        netlink.NTF_SELF,
			IP:           f.Dst.AsSlice(),
			HardwareAddr: f.MAC.HardwareAddr(),
		})
	})
	if IsNotFound(err) {
		return nil
	}
	return err
}

func toNetlinkRoute(r Route) *netlink.Route {
	nr := &netlink.Route{
		Dst:       ipNet(r.Dst.Masked()),
		LinkIndex: r.LinkIndex,
		Protocol:  RouteProtocol,
		Table:     unix.RT_TABLE_MAIN,
		Type:      unix.RTN_UNICAST,
		Scope:     netlink.SCOPE_UNIVERSE,
	}
	if r.Gw.IsValid() {
		nr.Gw = r.Gw.AsSlice()
	} else {
		// A route without gateway is a connected route.
		nr.Scope = netlink.SCOPE_LINK
	}
	if r.OnLink {
		nr.Flags = int(netlink.FLAG_ONLINK)
	}
	return nr
}

// observeRoute converts a dumped or notified route.
func observeRoute(nr netlink.Route) observedRoute {
	o := observedRoute{
		Route: Route{
			Gw:        addrFromIP(nr.Gw),
			LinkIndex: nr.LinkIndex,
			OnLink:    nr.Flags&int(netlink.FLAG_ONLINK) != 0,
		},
		Protocol: int(nr.Protocol),
		Priority: nr.Priority,
	}
	if nr.Dst != nil {
		o.Dst = prefixFromIPNet(nr.Dst)
	} else if nr.Family == unix.AF_INET6 {
		o.Dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	} else {
		o.Dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	wantScope := netlink.SCOPE_UNIVERSE
	if !o.Gw.IsValid() {
		wantScope = netlink.SCOPE_LINK
	}
	o.Extra = nr.Src != nil || len(nr.MultiPath) > 0 || nr.Type != unix.RTN_UNICAST ||
		(nr.Scope != wantScope && o.Dst.Addr().Is4()) || nr.Tos != 0 || nr.Encap != nil || nr.Via != nil ||
		nr.MTU != 0 || nr.AdvMSS != 0 || nr.Realm != 0
	return o
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func addrFromIP(ip net.IP) netip.Addr {
	if v4 := ip.To4(); v4 != nil && len(ip) == net.IPv4len {
		return netip.AddrFrom4([4]byte(v4))
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	return a
}

func prefixFromIPNet(n *net.IPNet) netip.Prefix {
	ones, bits := n.Mask.Size()
	ip := n.IP
	if bits == 32 {
		ip = ip.To4()
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(a, ones).Masked()
}

// AddrFromIP converts a net.IP from netlink: 4-byte and IPv4-mapped 16-byte
// forms become IPv4 addresses when want4 is set. An unset IP gives the zero
// Addr.
func AddrFromIP(ip net.IP, want4 bool) netip.Addr {
	if want4 {
		if v4 := ip.To4(); v4 != nil {
			return netip.AddrFrom4([4]byte(v4))
		}
	}
	return addrFromIP(ip)
}

// PrefixFromIPNet converts a netlink address or route destination.
func PrefixFromIPNet(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.Prefix{}
	}
	return prefixFromIPNet(n)
}

// IPNet converts a prefix for netlink.
func IPNet(p netip.Prefix) *net.IPNet { return ipNet(p) }
