// Package ip chooses the external interface and converts addresses between
// net/netip and the kernel's types.
package ip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"sort"
	"strings"

	"github.com/flannelng/flannel/pkg/nldump"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// SelectOptions mirror the --iface* and --public-ip* flags.
type SelectOptions struct {
	Ifaces     []string // names or IPs, tried in order
	Regexes    []string // tried against addresses, then names
	CanReach   string   // pick the interface routing to this IP
	PublicIP   netip.Addr
	PublicIPv6 netip.Addr
	V4, V6     bool // families the network uses
}

// Selection is the chosen interface and its addresses.
type Selection struct {
	Iface  net.Interface
	V4, V6 netip.Addr
}

// Select picks the external interface as upstream does, but reports every
// interface it considered when nothing matches.
func Select(o SelectOptions) (Selection, error) {
	var tried []string
	try := func(desc string, f func() (Selection, error)) (Selection, bool) {
		s, err := f()
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s: %v", desc, err))
			return Selection{}, false
		}
		return s, true
	}
	if len(o.Ifaces) == 0 && len(o.Regexes) == 0 && o.CanReach == "" {
		switch {
		case o.PublicIP.IsValid() && o.V4:
			if s, ok := try("--public-ip "+o.PublicIP.String(), func() (Selection, error) { return byIP(o.PublicIP, o) }); ok {
				return s, nil
			}
		case o.PublicIPv6.IsValid() && o.V6 && !o.V4:
			if s, ok := try("--public-ipv6 "+o.PublicIPv6.String(), func() (Selection, error) { return byIP(o.PublicIPv6, o) }); ok {
				return s, nil
			}
		default:
			if s, ok := try("default route", func() (Selection, error) { return byDefaultRoute(o) }); ok {
				return s, nil
			}
		}
		return Selection{}, fmt.Errorf("Failed to find any valid interface to use: %s (interfaces: %s)", strings.Join(tried, "; "), listInterfaces())
	}
	for _, v := range o.Ifaces {
		if a, err := netip.ParseAddr(v); err == nil {
			if s, ok := try("--iface "+v, func() (Selection, error) { return byIP(a, o) }); ok {
				return s, nil
			}
			continue
		}
		if s, ok := try("--iface "+v, func() (Selection, error) { return byName(v, o) }); ok {
			return s, nil
		}
	}
	for _, r := range o.Regexes {
		if s, ok := try("--iface-regex "+r, func() (Selection, error) { return byRegex(r, o) }); ok {
			return s, nil
		}
	}
	if o.CanReach != "" {
		if s, ok := try("--iface-can-reach "+o.CanReach, func() (Selection, error) { return byReach(o.CanReach, o) }); ok {
			return s, nil
		}
	}
	return Selection{}, fmt.Errorf("Failed to find interface to use that matches the interfaces and/or regexes provided: %s (interfaces: %s)", strings.Join(tried, "; "), listInterfaces())
}

func listInterfaces() string {
	ifs, err := net.Interfaces()
	if err != nil {
		return "unknown: " + err.Error()
	}
	var out []string
	for _, i := range ifs {
		addrs, _ := ifaceAddrs(i.Index)
		var as []string
		for _, a := range addrs {
			as = append(as, a.String())
		}
		out = append(out, fmt.Sprintf("%s[%s]", i.Name, strings.Join(as, " ")))
	}
	return strings.Join(out, ", ")
}

// ifaceAddrs lists usable addresses in upstream's preference order: global
// before link-local, permanent before dynamic, non-temporary before
// temporary; deprecated addresses are skipped.
func ifaceAddrs(index int) ([]netip.Addr, error) {
	link, err := netlink.LinkByIndex(index)
	if err != nil {
		return nil, err
	}
	list, err := nldump.Retry("list addresses of "+link.Attrs().Name, func() ([]netlink.Addr, error) {
		return netlink.AddrList(link, netlink.FAMILY_ALL)
	})
	if err != nil {
		return nil, err
	}
	type cand struct {
		a    netip.Addr
		rank int
	}
	var cs []cand
	for _, a := range list {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if a.Flags&unix.IFA_F_DEPRECATED != 0 || ip.IsLoopback() || ip.IsMulticast() {
			continue
		}
		if !ip.IsGlobalUnicast() && !ip.IsLinkLocalUnicast() {
			continue
		}
		rank := 0
		if ip.IsLinkLocalUnicast() {
			rank += 4
		}
		if a.Flags&unix.IFA_F_PERMANENT == 0 && ip.Is6() {
			rank += 2
		}
		if a.Flags&unix.IFA_F_TEMPORARY != 0 {
			rank++
		}
		cs = append(cs, cand{ip, rank})
	}
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].rank < cs[j].rank })
	out := make([]netip.Addr, len(cs))
	for i, c := range cs {
		out[i] = c.a
	}
	return out, nil
}

// fill completes a selection for an interface: the first address of each
// needed family.
func fill(iface net.Interface, o SelectOptions, v4, v6 netip.Addr) (Selection, error) {
	if iface.MTU == 0 {
		return Selection{}, fmt.Errorf("interface %s has MTU 0", iface.Name)
	}
	addrs, err := ifaceAddrs(iface.Index)
	if err != nil {
		return Selection{}, err
	}
	for _, a := range addrs {
		if a.Is4() && !v4.IsValid() {
			v4 = a
		}
		if a.Is6() && !v6.IsValid() && !a.IsLinkLocalUnicast() {
			v6 = a
		}
	}
	if o.V4 && !v4.IsValid() {
		return Selection{}, fmt.Errorf("interface %s has no IPv4 address", iface.Name)
	}
	if o.V6 && !v6.IsValid() {
		return Selection{}, fmt.Errorf("interface %s has no global IPv6 address", iface.Name)
	}
	if !o.V4 {
		v4 = netip.Addr{}
	}
	if !o.V6 {
		v6 = netip.Addr{}
	}
	return Selection{Iface: iface, V4: v4, V6: v6}, nil
}

func byName(name string, o SelectOptions) (Selection, error) {
	iface, err := net.InterfaceByName(name)
	if err != nil {
		return Selection{}, fmt.Errorf("no interface named %s", name)
	}
	return fill(*iface, o, netip.Addr{}, netip.Addr{})
}

func byIP(a netip.Addr, o SelectOptions) (Selection, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return Selection{}, err
	}
	for _, i := range ifs {
		addrs, err := ifaceAddrs(i.Index)
		if err != nil {
			continue
		}
		for _, x := range addrs {
			if x == a {
				var v4, v6 netip.Addr
				if a.Is4() {
					v4 = a
				} else {
					v6 = a
				}
				return fill(i, o, v4, v6)
			}
		}
	}
	return Selection{}, fmt.Errorf("error looking up interface %s: no interface with given IP found", a)
}

func byRegex(expr string, o SelectOptions) (Selection, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return Selection{}, fmt.Errorf("invalid regex: %w", err)
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return Selection{}, err
	}
	for _, i := range ifs {
		addrs, _ := ifaceAddrs(i.Index)
		for _, a := range addrs {
			if re.MatchString(a.String()) && ((a.Is4() && o.V4) || (a.Is6() && o.V6)) {
				var v4, v6 netip.Addr
				if a.Is4() {
					v4 = a
				} else {
					v6 = a
				}
				if s, err := fill(i, o, v4, v6); err == nil {
					return s, nil
				}
			}
		}
	}
	for _, i := range ifs {
		if re.MatchString(i.Name) {
			if s, err := fill(i, o, netip.Addr{}, netip.Addr{}); err == nil {
				return s, nil
			}
		}
	}
	return Selection{}, errors.New("no interface address or name matches")
}

func byReach(target string, o SelectOptions) (Selection, error) {
	a, err := netip.ParseAddr(target)
	if err != nil {
		return Selection{}, fmt.Errorf("invalid IP: %w", err)
	}
	routes, err := netlink.RouteGet(a.AsSlice())
	if err != nil || len(routes) == 0 {
		return Selection{}, fmt.Errorf("no route to %s: %v", a, err)
	}
	iface, err := net.InterfaceByIndex(routes[0].LinkIndex)
	if err != nil {
		return Selection{}, err
	}
	var v4, v6 netip.Addr
	if src, ok := netip.AddrFromSlice(routes[0].Src); ok {
		if src = src.Unmap(); src.Is4() {
			v4 = src
		} else {
			v6 = src
		}
	}
	return fill(*iface, o, v4, v6)
}

func byDefaultRoute(o SelectOptions) (Selection, error) {
	find := func(family int) (int, error) {
		routes, err := nldump.Retry("list routes", func() ([]netlink.Route, error) {
			return netlink.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		})
		if err != nil {
			return 0, err
		}
		for _, r := range routes {
			if r.Dst == nil || r.Dst.IP.IsUnspecified() && isZeroMask(r.Dst.Mask) {
				if r.LinkIndex > 0 {
					return r.LinkIndex, nil
				}
				for _, nh := range r.MultiPath {
					return nh.LinkIndex, nil
				}
			}
		}
		return 0, errors.New("no default route")
	}
	var idx4, idx6 int
	var err error
	if o.V4 {
		if idx4, err = find(netlink.FAMILY_V4); err != nil {
			return Selection{}, fmt.Errorf("IPv4: %w", err)
		}
	}
	if o.V6 {
		if idx6, err = find(netlink.FAMILY_V6); err != nil {
			return Selection{}, fmt.Errorf("IPv6: %w", err)
		}
	}
	if o.V4 && o.V6 && idx4 != idx6 {
		return Selection{}, fmt.Errorf("v6 default route interface index %d must be the same with v4 default route interface index %d", idx6, idx4)
	}
	idx := idx4
	if !o.V4 {
		idx = idx6
	}
	iface, err := net.InterfaceByIndex(idx)
	if err != nil {
		return Selection{}, err
	}
	return fill(*iface, o, netip.Addr{}, netip.Addr{})
}

func isZeroMask(m net.IPMask) bool {
	for _, b := range m {
		if b != 0 {
			return false
		}
	}
	return true
}
