package doctor

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/flannelng/flannel/backend/extension"
	"github.com/flannelng/flannel/backend/ipip"
	"github.com/flannelng/flannel/backend/vxlan"
	"github.com/flannelng/flannel/backend/wireguard"
	"github.com/flannelng/flannel/subnet"
)

// Route protocols (linux/rtnetlink.h) the stale-route check looks at.
const (
	protoKernel = 2
	protoBoot   = 3  // `ip route add` without proto, and upstream flanneld
	protoStatic = 4  // `ip route add ... proto static`
	protoOurs   = 45 // flanneld-ng (backend/kernel.RouteProtocol)
)

// vxlan overheads: outer IPv4 (20) or IPv6 (40), UDP 8, VXLAN 8, inner Ethernet 14.
const (
	vxlanOverhead4 = 50
	vxlanOverhead6 = 70
	vxlanPort      = 8472 // the kernel's default, and upstream's
)

func checkDataPlane(r *report, in Input, own subnet.Lease, envOK bool) {
	cfg := in.Config
	if in.Facts.KernelErr != nil {
		r.fail("run flannelctl doctor as root inside the node's network namespace",
			"read kernel state: %v", in.Facts.KernelErr)
		return
	}
	// alloc leases carry no BackendType (upstream's alloc writes none);
	// upstream's udp leases may lack it too.
	want := cfg.BackendType
	if want == "alloc" || want == "udp" && own.Attrs.BackendType == "" {
		want = ""
	}
	if own.Attrs.BackendType != want {
		r.fail("restart flanneld on this node: it re-advertises the configured backend",
			"our lease advertises backend %s but the network config says %s", orNone(own.Attrs.BackendType), cfg.BackendType)
	}
	switch cfg.BackendType {
	case vxlan.BackendType:
		checkVXLAN(r, in, own, envOK)
	case "host-gw":
		checkHostGW(r, in, own, envOK)
	case ipip.BackendType:
		checkIPIP(r, in, own, envOK)
	case extension.BackendType:
		checkExtension(r, in, own, envOK)
	case wireguard.BackendType:
		checkWireGuard(r, in, own, envOK)
	case "alloc":
		r.skip("backend alloc: no data plane to check")
	default:
		r.skip("backend %s: flannelctl does not check its data plane", cfg.BackendType)
	}
}

// peersOf returns the other leases of backend typ; leases of another backend
// are failures (no traffic flows between them), leases without a backend
// (reservations of nodes not yet up, alloc) are skipped.
func peersOf(r *report, in Input, own subnet.Lease, typ string) []subnet.Lease {
	var out []subnet.Lease
	for _, l := range in.Leases {
		if l.Key() == own.Key() {
			continue
		}
		ip := ipOrNone(l.Attrs.PublicIP, l.Attrs.PublicIPv6)
		switch l.Attrs.BackendType {
		case typ:
			out = append(out, l)
		case "":
			kind := "lease"
			if in.Reservations[l.Key()] {
				kind = "reservation"
			}
			r.skip("%s %s (public IP %s) advertises no backend: nothing to program until its node runs flanneld", kind, l, ip)
		default:
			r.fail(fmt.Sprintf("restart flanneld on %s so it uses the current network config (backend %s)", ip, typ),
				"lease %s (public IP %s) uses backend %s, this node %s: no traffic flows between them", l, ip, l.Attrs.BackendType, typ)
		}
	}
	return out
}

// family is one address family of the overlay, as the checks need it.
type family struct {
	v6        bool
	network   netip.Prefix
	own       netip.Prefix // our subnet (masked); invalid when our lease lacks it
	public    netip.Addr   // our public IP of this family
	ownData   json.RawMessage
	subnetLen int
}

func families(cfg *subnet.Config, own subnet.Lease) []family {
	var fs []family
	if cfg.EnableIPv4 {
		fs = append(fs, family{network: cfg.Network, own: own.Subnet.Masked(), public: own.Attrs.PublicIP, ownData: own.Attrs.BackendData, subnetLen: cfg.SubnetLen})
	}
	if cfg.EnableIPv6 {
		fs = append(fs, family{v6: true, network: cfg.IPv6Network, own: own.IPv6Subnet.Masked(), public: own.Attrs.PublicIPv6, ownData: own.Attrs.BackendV6Data, subnetLen: cfg.IPv6SubnetLen})
	}
	return fs
}

func (f family) name() string {
	if f.v6 {
		return "IPv6"
	}
	return "IPv4"
}

// peer returns a lease's subnet, public IP and backend data of this family.
func (f family) peer(l subnet.Lease) (netip.Prefix, netip.Addr, json.RawMessage) {
	if f.v6 {
		return l.IPv6Subnet.Masked(), l.Attrs.PublicIPv6, l.Attrs.BackendV6Data
	}
	return l.Subnet.Masked(), l.Attrs.PublicIP, l.Attrs.BackendData
}

// decodeVXLAN reads a vxlan BackendData. vni is -1 when it has none:
// flannel v0.11 writes only {"VtepMAC":...} and never reads a VNI, and
// v0.28 ignores the one it writes (spec etcd-v2 1.2, 5), so such a peer
// is on whatever VNI its device has.
func decodeVXLAN(raw json.RawMessage) (vni int, mac string, err error) {
	if len(raw) == 0 {
		return 0, "", fmt.Errorf("no BackendData")
	}
	p, err := subnet.DecodeVXLANData(raw)
	if me := (*subnet.VtepMACError)(nil); errors.As(err, &me) {
		return 0, "", fmt.Errorf("BackendData %s: bad VtepMAC %q", raw, me.VtepMAC)
	}
	if err != nil {
		return 0, "", fmt.Errorf("BackendData %s: %v", raw, errors.Unwrap(err))
	}
	if !p.HasVNI {
		return -1, p.VtepMAC(), nil
	}
	return int(p.VNI), p.VtepMAC(), nil
}

type fdbKey struct {
	mac string
	dst netip.Addr
}

func checkVXLAN(r *report, in Input, own subnet.Lease, envOK bool) {
	f := &in.Facts
	opts, err := vxlan.ParseOptions(in.Config.Backend)
	if err != nil {
		r.fail("fix the Backend object with `flannelctl config set`", "network config: %v", err)
		return
	}
	port := opts.Port
	if port == 0 {
		port = vxlanPort
	}
	peers := peersOf(r, in, own, vxlan.BackendType)
	minMTU, devName := 0, ""
	for _, fam := range families(in.Config, own) {
		name := vxlan.DeviceName(opts.VNI)
		if fam.v6 {
			name = vxlan.DeviceNameV6(opts.VNI)
		}
		if !fam.own.IsValid() {
			r.fail("restart flanneld on this node: it acquires a lease with both families", "our lease %s has no %s subnet but the network config enables %s", own, fam.name(), fam.name())
			continue
		}
		dev := f.linkByName(name)
		if dev == nil {
			r.fail("restart flanneld: it creates the device with the MAC our lease advertises",
				"vxlan device %s is missing: no %s traffic to other nodes", name, fam.name())
			continue
		}
		if dev.VXLAN == nil {
			r.fail(fmt.Sprintf("ip link del %s, then restart flanneld", name), "%s exists but is a %s device, not vxlan", name, orNone(dev.Type))
			continue
		}
		checkDevice(r, f, dev, fam, opts, port)
		if minMTU == 0 || dev.MTU < minMTU {
			minMTU, devName = dev.MTU, name
		}
		checkVXLANPeers(r, f, dev, fam, opts, peers)
	}
	if envOK && minMTU > 0 {
		if in.Env.MTU != minMTU {
			r.fail(fmt.Sprintf("restart flanneld so it rewrites %s, then recreate pods (they take FLANNEL_MTU)", in.SubnetFile),
				"subnet.env has FLANNEL_MTU=%d but %s has MTU %d", in.Env.MTU, devName, minMTU)
		} else {
			r.ok("FLANNEL_MTU=%d matches %s", in.Env.MTU, devName)
		}
	}
}

func checkDevice(r *report, f *Facts, dev *Link, fam family, opts vxlan.Options, port int) {
	name, vx := dev.Name, dev.VXLAN
	recreate := fmt.Sprintf("ip link del %s, then restart flanneld: it recreates the device with the MAC our lease advertises", name)
	var bad []string
	if vx.VNI != opts.VNI {
		bad = append(bad, fmt.Sprintf("VNI %d, want %d", vx.VNI, opts.VNI))
	}
	if vx.Port != port {
		bad = append(bad, fmt.Sprintf("dstport %d, want %d", vx.Port, port))
	}
	if vx.Local != fam.public {
		bad = append(bad, fmt.Sprintf("local %s, want our public IP %s", addrOrNone(vx.Local), addrOrNone(fam.public)))
	}
	if vx.Learning != opts.Learning {
		bad = append(bad, fmt.Sprintf("learning %t, want %t", vx.Learning, opts.Learning))
	}
	learning := "nolearning"
	if opts.Learning {
		learning = "learning"
	}
	if len(bad) > 0 {
		r.fail(recreate, "%s: %s", name, strings.Join(bad, ", "))
	} else {
		r.ok("%s: vxlan id %d local %s dstport %d %s", name, vx.VNI, vx.Local, vx.Port, learning)
	}
	if dev.Up {
		r.ok("%s is up", name)
	} else {
		r.fail("ip link set "+name+" up", "%s is down", name)
	}
	if _, mac, err := decodeVXLAN(fam.ownData); err != nil {
		r.fail("restart flanneld on this node: it re-advertises the device's MAC", "our lease's %s vxlan data is unusable: %v", fam.name(), err)
	} else if dev.MAC != mac {
		r.fail(fmt.Sprintf("ip link set dev %s address %s", name, mac),
			"%s has MAC %s but our lease advertises VtepMAC %s: peers send to the wrong MAC", name, orNone(dev.MAC), mac)
	} else {
		r.ok("%s MAC %s is the VtepMAC our lease advertises", name, mac)
	}
	want := netip.PrefixFrom(fam.own.Addr(), fam.own.Addr().BitLen())
	if f.hasAddr(dev.Index, want) {
		r.ok("%s has address %s", name, want)
	} else {
		r.fail(fmt.Sprintf("ip addr add %s dev %s", want, name), "%s lacks address %s (our subnet's network address)", name, want)
	}
	for _, a := range f.Addrs {
		if a.LinkIndex == dev.Index && a.Prefix != want && fam.network.Contains(a.Prefix.Addr()) {
			r.fail(fmt.Sprintf("ip addr del %s dev %s", a.Prefix, name), "%s also has %s, inside the overlay network but not our subnet (an old lease?)", name, a.Prefix)
		}
	}
	// The tunnel must fit in the underlay: the device MTU is the underlay
	// MTU (Backend.MTU, else the external interface's) minus the overhead.
	overhead := vxlanOverhead4
	if fam.public.Is6() {
		overhead = vxlanOverhead6
	}
	under := f.linkByIndex(vx.VtepIndex)
	if under == nil {
		if idx, ok := f.localAddrs()[fam.public]; ok {
			under = f.linkByIndex(idx)
		}
	}
	underMTU, what := opts.MTU, "Backend.MTU"
	if underMTU == 0 && under != nil {
		underMTU, what = under.MTU, under.Name+" MTU"
	}
	if underMTU > 0 {
		if wantMTU := underMTU - overhead; dev.MTU != wantMTU {
			r.fail("restart flanneld so it sets the MTU and rewrites subnet.env, then recreate pods (they take FLANNEL_MTU)",
				"%s MTU is %d, want %d (%s %d - %d for vxlan over %s)", name, dev.MTU, wantMTU, what, underMTU, overhead, ipFamily(fam.public))
		} else {
			r.ok("%s MTU %d fits %s %d", name, dev.MTU, what, underMTU)
		}
	}
}

func ipFamily(a netip.Addr) string {
	if a.Is6() {
		return "IPv6"
	}
	return "IPv4"
}

func addrOrNone(a netip.Addr) string {
	if !a.IsValid() {
		return "none"
	}
	return a.String()
}

func checkVXLANPeers(r *report, f *Facts, dev *Link, fam family, opts vxlan.Options, peers []subnet.Lease) {
	wantRoutes := map[netip.Prefix]bool{}
	wantNeigh := map[netip.Addr]bool{}
	wantFDB := map[fdbKey]bool{}
	for _, p := range peers {
		sn, pub, data := fam.peer(p)
		if !sn.IsValid() || sn == fam.own {
			continue
		}
		label := "peer " + addrOrNone(pub)
		if !pub.IsValid() {
			r.fail("restart flanneld on that node", "lease %s has no %s public IP: no traffic to %s", p, fam.name(), sn)
			continue
		}
		vni, mac, err := decodeVXLAN(data)
		if err != nil {
			r.fail(fmt.Sprintf("restart flanneld on %s: it re-advertises its vxlan data", pub), "%s: %v", label, err)
			continue
		}
		if vni >= 0 && vni != opts.VNI {
			r.fail(fmt.Sprintf("restart flanneld on %s so it uses the current network config", pub),
				"%s uses VNI %d, this node %d: no traffic flows between them", label, vni, opts.VNI)
			continue
		}
		wantRoutes[sn] = true
		if opts.DirectRouting {
			if link, ok := f.Direct[pub]; ok && link > 0 {
				checkRoute(r, f, Route{Dst: sn, Gw: pub, LinkIndex: link, Unicast: true}, label+", direct routing")
				continue
			}
		}
		wantNeigh[sn.Addr()] = true
		wantFDB[fdbKey{mac, pub}] = true
		checkRoute(r, f, Route{Dst: sn, Gw: sn.Addr(), LinkIndex: dev.Index, OnLink: true, Unicast: true}, label)
		checkNeigh(r, f, dev, sn.Addr(), mac, label)
		checkFDB(r, f, dev, mac, pub, label)
	}
	for _, e := range f.FDB {
		if e.LinkIndex != dev.Index || !e.Dst.IsValid() || wantFDB[fdbKey{e.MAC, e.Dst}] {
			continue
		}
		r.fail(fmt.Sprintf("bridge fdb del %s dev %s dst %s self", e.MAC, dev.Name, e.Dst),
			"stale FDB entry %s dst %s on %s: no lease advertises this MAC at this public IP", e.MAC, e.Dst, dev.Name)
	}
	for _, n := range f.Neighs {
		if n.LinkIndex != dev.Index || !n.Permanent || wantNeigh[n.IP] {
			continue
		}
		r.fail(fmt.Sprintf("ip neigh del %s dev %s", n.IP, dev.Name),
			"stale neighbour entry %s lladdr %s on %s: no lease holds that subnet", n.IP, n.MAC, dev.Name)
	}
	checkStaleRoutes(r, f, fam, dev.Index, wantRoutes)
}

func checkRoute(r *report, f *Facts, want Route, label string) {
	wantText := f.describe(want)
	got := f.routeTo(want.Dst)
	for _, g := range got {
		if g.Unicast && g.Gw == want.Gw && g.LinkIndex == want.LinkIndex && (g.OnLink || !want.OnLink) {
			r.ok("route %s (%s)", wantText, label)
			return
		}
	}
	fix := "ip route replace " + wantText
	if len(got) == 0 {
		r.fail(fix, "route to %s is missing: want %s (a running flanneld restores it within a second)", label, wantText)
		return
	}
	r.fail(fix, "route to %s is `%s`, want `%s`", label, f.describe(got[0]), wantText)
}

func checkNeigh(r *report, f *Facts, dev *Link, ip netip.Addr, mac, label string) {
	fix := fmt.Sprintf("ip neigh replace %s lladdr %s dev %s nud permanent", ip, mac, dev.Name)
	for _, n := range f.Neighs {
		if n.LinkIndex != dev.Index || n.IP != ip {
			continue
		}
		switch {
		case n.MAC != mac:
			r.fail(fix, "neighbour %s on %s has lladdr %s, want %s (%s)", ip, dev.Name, orNone(n.MAC), mac, label)
		case !n.Permanent:
			r.fail(fix, "neighbour %s lladdr %s on %s is not permanent (%s)", ip, mac, dev.Name, label)
		default:
			r.ok("neighbour %s lladdr %s on %s permanent (%s)", ip, mac, dev.Name, label)
		}
		return
	}
	r.fail(fix, "neighbour entry %s lladdr %s on %s is missing (%s)", ip, mac, dev.Name, label)
}

func checkFDB(r *report, f *Facts, dev *Link, mac string, dst netip.Addr, label string) {
	fix := fmt.Sprintf("bridge fdb replace %s dev %s dst %s self permanent", mac, dev.Name, dst)
	var others []string
	for _, e := range f.FDB {
		if e.LinkIndex != dev.Index || e.MAC != mac {
			continue
		}
		if e.Dst == dst {
			if !e.Permanent {
				r.fail(fix, "FDB entry %s dst %s on %s is not permanent (%s)", mac, dst, dev.Name, label)
			} else {
				r.ok("FDB entry %s dst %s on %s (%s)", mac, dst, dev.Name, label)
			}
			return
		}
		others = append(others, addrOrNone(e.Dst))
	}
	if len(others) > 0 {
		r.fail(fix, "FDB entry %s on %s points to %s, want %s (%s)", mac, dev.Name, strings.Join(others, ","), dst, label)
		return
	}
	r.fail(fix, "FDB entry %s dst %s on %s is missing (%s)", mac, dst, dev.Name, label)
}

// checkStaleRoutes reports routes that flannel would have installed for a
// subnet no lease holds any more: any non-kernel route on our tunnel device
// (dev > 0), and elsewhere routes with a gateway to a prefix strictly inside
// the overlay network that `ip route` or a flanneld put there.
func checkStaleRoutes(r *report, f *Facts, fam family, dev int, want map[netip.Prefix]bool) {
	for _, rt := range f.Routes {
		if rt.Protocol == protoKernel || rt.Dst.Addr().Is6() != fam.v6 || want[rt.Dst] {
			continue
		}
		onDev := dev > 0 && rt.LinkIndex == dev
		inside := fam.network.Contains(rt.Dst.Addr()) && rt.Dst.Bits() > fam.network.Bits() && rt.Gw.IsValid() &&
			(rt.Protocol == protoBoot || rt.Protocol == protoStatic || rt.Protocol == protoOurs)
		if !onDev && (!inside || rt.Dst == fam.own) {
			continue
		}
		r.fail("ip route del "+f.describe(rt), "stale route %s: no lease holds %s", f.describe(rt), rt.Dst)
	}
}

func checkHostGW(r *report, in Input, own subnet.Lease, envOK bool) {
	f := &in.Facts
	peers := peersOf(r, in, own, "host-gw")
	locals := f.localAddrs()
	mtuChecked := false
	for _, fam := range families(in.Config, own) {
		if !fam.own.IsValid() {
			r.fail("restart flanneld on this node: it acquires a lease with both families", "our lease %s has no %s subnet but the network config enables %s", own, fam.name(), fam.name())
			continue
		}
		idx, ok := locals[fam.public]
		ext := f.linkByIndex(idx)
		if !ok || ext == nil {
			r.fail("host-gw needs the public IP on the node's own interface (no NAT): fix --public-ip/--iface and restart flanneld",
				"our public IP %s is not configured on this node", addrOrNone(fam.public))
			continue
		}
		r.ok("public IP %s is on %s", fam.public, ext.Name)
		if envOK && !mtuChecked {
			mtuChecked = true
			if in.Env.MTU != ext.MTU {
				r.fail(fmt.Sprintf("restart flanneld so it rewrites %s, then recreate pods (they take FLANNEL_MTU)", in.SubnetFile),
					"subnet.env has FLANNEL_MTU=%d but %s has MTU %d", in.Env.MTU, ext.Name, ext.MTU)
			} else {
				r.ok("FLANNEL_MTU=%d matches %s", in.Env.MTU, ext.Name)
			}
		}
		want := map[netip.Prefix]bool{}
		for _, p := range peers {
			sn, pub, _ := fam.peer(p)
			if !sn.IsValid() || sn == fam.own {
				continue
			}
			label := "peer " + addrOrNone(pub)
			if !pub.IsValid() {
				r.fail("restart flanneld on that node", "lease %s has no %s public IP: no traffic to %s", p, fam.name(), sn)
				continue
			}
			want[sn] = true
			checkRoute(r, f, Route{Dst: sn, Gw: pub, LinkIndex: ext.Index, Unicast: true}, label)
		}
		checkStaleRoutes(r, f, fam, 0, want)
	}
}
