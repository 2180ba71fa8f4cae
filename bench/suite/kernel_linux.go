//go:build linux

package suite

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// vxlanDevice is the device of VNI 1, the default.
const vxlanDevice = "flannel.1"

// Kernel reads the tables of a lab host's namespace through a netlink
// socket opened inside it (no thread switches namespace for the reads).
type Kernel struct {
	backend string
	ns      netns.NsHandle
	h       *netlink.Handle
	get     *nl.SocketHandle // for single-entry gets the netlink package lacks
	ext     int              // eth0: the link of host-gw routes
	dev     int              // flannel.1, once it exists
}

// OpenKernel opens the namespace ns for the checks of backend.
func OpenKernel(ns, backend string) (*Kernel, error) {
	nsh, err := netns.GetFromName(ns)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", ns, err)
	}
	h, err := netlink.NewHandleAt(nsh, unix.NETLINK_ROUTE)
	if err != nil {
		nsh.Close()
		return nil, fmt.Errorf("netlink socket in %s: %w", ns, err)
	}
	k := &Kernel{backend: backend, ns: nsh, h: h}
	sock, err := nl.GetNetlinkSocketAt(nsh, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		k.Close()
		return nil, fmt.Errorf("netlink socket in %s: %w", ns, err)
	}
	k.get = &nl.SocketHandle{Socket: sock}
	tv := unix.NsecToTimeval(int64(5 * time.Second))
	if err := sock.SetReceiveTimeout(&tv); err != nil {
		k.Close()
		return nil, fmt.Errorf("netlink socket timeout: %w", err)
	}
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		k.Close()
		return nil, fmt.Errorf("eth0 in %s: %w", ns, err)
	}
	k.ext = eth0.Attrs().Index
	return k, nil
}

// Close releases the socket and the namespace handle.
func (k *Kernel) Close() {
	if k.get != nil {
		k.get.Close()
	}
	k.h.Close()
	k.ns.Close()
}

// device returns flannel.1's index, 0 while it does not exist.
func (k *Kernel) device() (int, error) {
	if k.dev > 0 {
		return k.dev, nil
	}
	l, err := k.h.LinkByName(vxlanDevice)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("look up %s: %w", vxlanDevice, err)
	}
	k.dev = l.Attrs().Index
	return k.dev, nil
}

// Count dumps the tables and counts the expected entries. It dumps the
// routes first and stops there when they do not number want (use -1 to
// always dump everything), which keeps polling cheap while the daemon is
// still writing.
func (k *Kernel) Count(e *Expect, want int) (Counts, error) {
	c := Counts{Clean: true}
	interrupted := func(err error) (bool, error) {
		if errors.Is(err, netlink.ErrDumpInterrupted) {
			c.Clean = false
			return true, nil
		}
		return false, err
	}
	routes, err := k.h.RouteListFiltered(unix.AF_INET, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if _, err := interrupted(err); err != nil {
		return c, fmt.Errorf("dump routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		dst := prefixOf(r.Dst)
		gw, ok := e.routes[dst]
		if ok && addrOf(r.Gw) == gw {
			c.Routes++
		}
	}
	if e.neighs == nil || (want >= 0 && c.Routes != want) {
		return c, nil
	}
	dev, err := k.device()
	if err != nil || dev == 0 {
		return c, err
	}
	neighs, err := k.h.NeighList(dev, unix.AF_INET)
	if _, err := interrupted(err); err != nil {
		return c, fmt.Errorf("dump neighbours: %w", err)
	}
	for _, n := range neighs {
		mac, ok := e.neighs[addrOf(n.IP)]
		if ok && n.LinkIndex == dev && n.State&netlink.NUD_PERMANENT != 0 && len(n.HardwareAddr) == 6 && [6]byte(n.HardwareAddr) == mac {
			c.Neighs++
		}
	}
	fdb, err := k.h.NeighList(dev, unix.AF_BRIDGE)
	if _, err := interrupted(err); err != nil {
		return c, fmt.Errorf("dump FDB: %w", err)
	}
	for _, n := range fdb {
		if n.LinkIndex != dev || len(n.HardwareAddr) != 6 {
			continue
		}
		dst, ok := e.fdb[[6]byte(n.HardwareAddr)]
		if ok && addrOf(n.IP) == dst {
			c.FDB++
		}
	}
	return c, nil
}

// RouteInstalled asks the kernel which route it would take to the first
// address of the peer's subnet and reports whether it is the route the
// backend installs (before, the default route via the fabric answers). One
// request, whatever the table size.
func (k *Kernel) RouteInstalled(p Peer) (bool, error) {
	link, gw := k.ext, p.PublicIP
	if k.backend == VXLAN {
		dev, err := k.device()
		if err != nil || dev == 0 {
			return false, err
		}
		link, gw = dev, p.Subnet.Addr()
	}
	rs, err := k.h.RouteGet(p.Subnet.Addr().Next().AsSlice())
	if err != nil {
		return false, fmt.Errorf("route get %s: %w", p.Subnet.Addr().Next(), err)
	}
	for _, r := range rs {
		if r.LinkIndex == link && addrOf(r.Gw) == gw {
			return true, nil
		}
	}
	return false, nil
}

// Present reports whether every kernel entry of the peer exists as the
// backend installs it (want true) or none does (want false), asking for
// each entry alone: the route (RouteInstalled), and for vxlan the
// neighbour and the FDB entry (RTM_GETNEIGH, Linux 5.0+). Three requests,
// whatever the table size.
func (k *Kernel) Present(p Peer, want bool) (bool, error) {
	ok, err := k.RouteInstalled(p)
	if err != nil || ok != want || k.backend != VXLAN {
		return ok == want, err
	}
	dev, err := k.device()
	if err != nil || dev == 0 {
		return false, err
	}
	n, err := k.getNeigh(&netlink.Ndmsg{Family: unix.AF_INET, Index: uint32(dev)},
		nl.NewRtAttr(netlink.NDA_DST, p.Subnet.Addr().AsSlice()))
	if err != nil {
		return false, fmt.Errorf("get neighbour %s: %w", p.Subnet.Addr(), err)
	}
	ok = n != nil && n.State&netlink.NUD_PERMANENT != 0 && len(n.HardwareAddr) == 6 && [6]byte(n.HardwareAddr) == p.MAC
	if ok != want {
		return false, nil
	}
	f, err := k.getNeigh(&netlink.Ndmsg{Family: unix.AF_BRIDGE, Index: uint32(dev), Flags: netlink.NTF_SELF},
		nl.NewRtAttr(netlink.NDA_LLADDR, p.MAC[:]))
	if err != nil {
		return false, fmt.Errorf("get FDB entry %s: %w", p.MACString(), err)
	}
	ok = f != nil && addrOf(f.IP) == p.PublicIP
	return ok == want, nil
}

// getNeigh asks for one neighbour or FDB entry; nil when there is none.
func (k *Kernel) getNeigh(msg *netlink.Ndmsg, attr *nl.RtAttr) (*netlink.Neigh, error) {
	req := nl.NewNetlinkRequest(unix.RTM_GETNEIGH, 0)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: k.get}
	req.AddData(msg)
	req.AddData(attr)
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWNEIGH)
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		return nil, nil
	}
	return netlink.NeighDeserialize(msgs[0])
}

func addrOf(ip net.IP) netip.Addr {
	if v4 := ip.To4(); v4 != nil {
		return netip.AddrFrom4([4]byte(v4))
	}
	a, _ := netip.AddrFromSlice(ip)
	return a
}

func prefixOf(n *net.IPNet) netip.Prefix {
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(addrOf(n.IP), ones)
}
