package doctor

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/flannelng/flannel/pkg/nldump"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// dump runs a netlink dump through nldump, which retries it while the
// kernel reports it interrupted by a concurrent change.
func dump[T any](what string, f func() ([]T, error)) ([]T, error) {
	return nldump.Retry(what, f)
}

// gatherKernel reads links, addresses, main-table routes and the neighbour
// and FDB entries of the requested devices from the current network
// namespace.
func gatherKernel(req Request) Facts {
	var f Facts
	h, err := netlink.NewHandle()
	if err != nil {
		f.KernelErr = fmt.Errorf("open netlink: %w", err)
		return f
	}
	defer h.Close()
	links, err := dump("list links", h.LinkList)
	if err != nil {
		f.KernelErr = err
		return f
	}
	for _, l := range links {
		a := l.Attrs()
		lk := Link{Index: a.Index, Name: a.Name, Type: l.Type(), Up: a.Flags&net.FlagUp != 0, MTU: a.MTU, MAC: a.HardwareAddr.String()}
		if vx, ok := l.(*netlink.Vxlan); ok {
			lk.VXLAN = &VXLAN{VNI: vx.VxlanId, Port: vx.Port, Local: addrOf(vx.SrcAddr), Learning: vx.Learning, VtepIndex: vx.VtepDevIndex}
		}
		if t, ok := l.(*netlink.Iptun); ok {
			lk.Tunnel = &Tunnel{Local: addrOf(t.Local), Remote: addrOf(t.Remote)}
		}
		f.Links = append(f.Links, lk)
	}
	addrs, err := dump("list addresses", func() ([]netlink.Addr, error) { return h.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		f.KernelErr = err
		return f
	}
	for _, a := range addrs {
		if a.IPNet == nil {
			continue
		}
		ones, _ := a.Mask.Size()
		if ip := addrOf(a.IP); ip.IsValid() {
			f.Addrs = append(f.Addrs, Addr{LinkIndex: a.LinkIndex, Prefix: netip.PrefixFrom(ip, ones)})
		}
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := dump("list routes", func() ([]netlink.Route, error) {
			return h.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		})
		if err != nil {
			f.KernelErr = err
			return f
		}
		for _, r := range routes {
			f.Routes = append(f.Routes, routeOf(r, fam))
		}
	}
	for _, name := range req.Devices {
		var idx int
		for _, l := range f.Links {
			if l.Name == name {
				idx = l.Index
			}
		}
		if idx == 0 {
			continue
		}
		for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
			ns, err := dump("list neighbours of "+name, func() ([]netlink.Neigh, error) { return h.NeighList(idx, fam) })
			if err != nil {
				f.KernelErr = err
				return f
			}
			for _, n := range ns {
				if ip := addrOf(n.IP); ip.IsValid() {
					f.Neighs = append(f.Neighs, Neigh{LinkIndex: n.LinkIndex, IP: ip, MAC: n.HardwareAddr.String(), Permanent: n.State&netlink.NUD_PERMANENT != 0})
				}
			}
		}
		fdb, err := dump("list FDB of "+name, func() ([]netlink.Neigh, error) { return h.NeighList(idx, unix.AF_BRIDGE) })
		if err != nil {
			f.KernelErr = err
			return f
		}
		for _, n := range fdb {
			f.FDB = append(f.FDB, FDB{LinkIndex: n.LinkIndex, MAC: n.HardwareAddr.String(), Dst: addrOf(n.IP), Permanent: n.State&netlink.NUD_PERMANENT != 0})
		}
	}
	if len(req.DirectIPs) > 0 {
		f.Direct = map[netip.Addr]int{}
		for _, ip := range req.DirectIPs {
			// The daemon's test: exactly one route, without a gateway,
			// means the peer is on a directly connected network.
			rs, err := h.RouteGet(ip.AsSlice())
			if err == nil && len(rs) == 1 && rs[0].Gw == nil {
				f.Direct[ip] = rs[0].LinkIndex
			}
		}
	}
	return f
}

func addrOf(ip net.IP) netip.Addr {
	if v4 := ip.To4(); v4 != nil {
		return netip.AddrFrom4([4]byte(v4))
	}
	a, _ := netip.AddrFromSlice(ip)
	return a
}

func routeOf(r netlink.Route, fam int) Route {
	out := Route{
		Gw:        addrOf(r.Gw),
		LinkIndex: r.LinkIndex,
		OnLink:    r.Flags&int(netlink.FLAG_ONLINK) != 0,
		Protocol:  int(r.Protocol),
		Unicast:   r.Type == unix.RTN_UNICAST && len(r.MultiPath) == 0,
	}
	switch {
	case r.Dst != nil:
		ones, _ := r.Dst.Mask.Size()
		out.Dst = netip.PrefixFrom(addrOf(r.Dst.IP), ones).Masked()
	case fam == netlink.FAMILY_V6:
		out.Dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
	default:
		out.Dst = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	return out
}
