package doctor

import (
	"net/netip"
	"strings"
)

// Facts is what one node holds, read once from the kernel, the packet
// filter, /proc/sys and the CNI directories. Gather fills it; Run compares
// it with the state the leases require. Tests build Facts by hand.
type Facts struct {
	// KernelErr is set when links, addresses or routes could not be read;
	// the data-plane checks are then reported as failed, not guessed.
	KernelErr error
	Links     []Link
	Addrs     []Addr
	Routes    []Route // main table, IPv4 and IPv6
	Neighs    []Neigh // neighbour entries of the links named in Request.Devices
	FDB       []FDB   // FDB entries of the links named in Request.Devices
	// Direct maps a peer's public IP to the link it is directly reachable
	// through (one route, no gateway: the daemon's DirectRouting test). Only
	// filled when the config asks for DirectRouting.
	Direct map[netip.Addr]int

	// Forwarding is net.ipv4.ip_forward / net.ipv6.conf.all.forwarding;
	// nil when unread.
	Forward4, Forward6 *bool

	Firewall FirewallFacts
	CNI      CNIFacts
}

// Link is a network device.
type Link struct {
	Index int
	Name  string
	Type  string // netlink kind: vxlan, veth, bridge, ...
	Up    bool   // administratively up
	MTU   int
	MAC   string // lower case, colon separated
	VXLAN *VXLAN // set for vxlan devices
	// Tunnel is set for ipip devices.
	Tunnel *Tunnel
}

// Tunnel holds an ipip device's endpoints (invalid or unspecified: any).
type Tunnel struct {
	Local, Remote netip.Addr
}

// VXLAN holds a vxlan device's attributes.
type VXLAN struct {
	VNI       int
	Port      int // destination UDP port
	Local     netip.Addr
	Learning  bool
	VtepIndex int // the underlay link (`dev` in `ip -d link`)
}

// Addr is an address on a link.
type Addr struct {
	LinkIndex int
	Prefix    netip.Prefix // the address with its prefix length
}

// Route is a main-table route.
type Route struct {
	Dst       netip.Prefix
	Gw        netip.Addr
	LinkIndex int
	OnLink    bool
	Protocol  int // rtm_protocol: 2 kernel, 3 boot, 45 flanneld-ng
	Unicast   bool
}

// Neigh is a neighbour (ARP/NDP) entry.
type Neigh struct {
	LinkIndex int
	IP        netip.Addr
	MAC       string
	Permanent bool
}

// FDB is a vxlan forwarding entry: frames for MAC go to Dst.
type FDB struct {
	LinkIndex int
	MAC       string
	Dst       netip.Addr
	Permanent bool
}

// FirewallFacts are the packet-filter dumps the masquerade check reads.
type FirewallFacts struct {
	// Tool names what was read: "iptables-nft-save -t nat", "nft".
	Tool string
	// NAT4/NAT6 are `iptables-save -t nat` (ip6tables-save) outputs; in
	// nftables mode `nft list table ip flannel-ipv4` (ip6 flannel-ipv6).
	NAT4, NAT6       string
	NAT4Err, NAT6Err error
	// Absent4/Absent6: in nftables mode, the table does not exist.
	Absent4, Absent6 bool
}

// CNIFacts describe the CNI plugin and config directories.
type CNIFacts struct {
	BinDirs []string
	// Plugins maps a plugin name to the path found first in BinDirs, ""
	// when none; NotExec lists those found but not executable.
	Plugins map[string]string
	NotExec map[string]bool
	ConfDir string
	ConfErr error
	Confs   []CNIConf // sorted by file name, as container runtimes load them
}

// CNIConf is one network config file in the CNI config directory.
type CNIConf struct {
	Name    string
	Flannel bool  // a plugin of type "flannel" is in it
	Err     error // unreadable or not JSON
}

func (f *Facts) linkByName(name string) *Link {
	for i := range f.Links {
		if f.Links[i].Name == name {
			return &f.Links[i]
		}
	}
	return nil
}

func (f *Facts) linkByIndex(idx int) *Link {
	for i := range f.Links {
		if f.Links[i].Index == idx {
			return &f.Links[i]
		}
	}
	return nil
}

func (f *Facts) linkName(idx int) string {
	if l := f.linkByIndex(idx); l != nil {
		return l.Name
	}
	if idx == 0 {
		return "?"
	}
	return "#" + itoa(idx)
}

// localAddrs are every address configured on the node.
func (f *Facts) localAddrs() map[netip.Addr]int {
	m := map[netip.Addr]int{}
	for _, a := range f.Addrs {
		m[a.Prefix.Addr()] = a.LinkIndex
	}
	return m
}

func (f *Facts) hasAddr(link int, p netip.Prefix) bool {
	for _, a := range f.Addrs {
		if a.LinkIndex == link && a.Prefix == p {
			return true
		}
	}
	return false
}

func (f *Facts) routeTo(dst netip.Prefix) []Route {
	var out []Route
	for _, r := range f.Routes {
		if r.Dst == dst {
			out = append(out, r)
		}
	}
	return out
}

// describe renders a route like `ip route` does.
func (f *Facts) describe(r Route) string {
	var b strings.Builder
	if !r.Unicast {
		b.WriteString("(not unicast) ")
	}
	b.WriteString(r.Dst.String())
	if r.Gw.IsValid() {
		b.WriteString(" via " + r.Gw.String())
	}
	b.WriteString(" dev " + f.linkName(r.LinkIndex))
	if r.OnLink {
		b.WriteString(" onlink")
	}
	return b.String()
}
