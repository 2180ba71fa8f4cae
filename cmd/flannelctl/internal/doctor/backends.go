package doctor

import (
	"fmt"
	"net/netip"

	"github.com/flannelng/flannel/backend/extension"
	"github.com/flannelng/flannel/backend/ipip"
	"github.com/flannelng/flannel/backend/wireguard"
	"github.com/flannelng/flannel/subnet"
)

// The checks of the backends issue 16 added: ipip (device and routes, as
// for host-gw), extension (only what flanneld itself sets: the lease and
// FLANNEL_MTU; the data plane is its commands') and wireguard (the devices;
// peers live in the WireGuard device, which `wg show` reads).

// extLink is the interface holding our public IP (extension and ipip use
// the interface's own address), or nil.
func extLink(f *Facts, own subnet.Lease) *Link {
	idx, ok := f.localAddrs()[own.Attrs.PublicIP]
	if !ok {
		return nil
	}
	return f.linkByIndex(idx)
}

// checkEnvMTU compares FLANNEL_MTU with what the backend sets.
func checkEnvMTU(r *report, in Input, envOK bool, want int, what string) {
	if !envOK {
		return
	}
	if in.Env.MTU != want {
		r.fail(fmt.Sprintf("restart flanneld so it rewrites %s, then recreate pods (they take FLANNEL_MTU)", in.SubnetFile),
			"subnet.env has FLANNEL_MTU=%d but %s", in.Env.MTU, what)
		return
	}
	r.ok("FLANNEL_MTU=%d matches %s", in.Env.MTU, what)
}

// checkOverlayAddr checks that dev holds exactly our subnet's network
// address among the overlay's addresses.
func checkOverlayAddr(r *report, f *Facts, dev *Link, fam family) {
	want := netip.PrefixFrom(fam.own.Addr(), fam.own.Addr().BitLen())
	if f.hasAddr(dev.Index, want) {
		r.ok("%s has address %s", dev.Name, want)
	} else {
		r.fail(fmt.Sprintf("ip addr add %s dev %s", want, dev.Name), "%s lacks address %s (our subnet's network address)", dev.Name, want)
	}
	for _, a := range f.Addrs {
		if a.LinkIndex == dev.Index && a.Prefix != want && fam.network.Contains(a.Prefix.Addr()) {
			r.fail(fmt.Sprintf("ip addr del %s dev %s", a.Prefix, dev.Name), "%s also has %s, inside the overlay network but not our subnet (an old lease?)", dev.Name, a.Prefix)
		}
	}
}

func checkUp(r *report, dev *Link) {
	if dev.Up {
		r.ok("%s is up", dev.Name)
	} else {
		r.fail("ip link set "+dev.Name+" up", "%s is down", dev.Name)
	}
}

func checkIPIP(r *report, in Input, own subnet.Lease, envOK bool) {
	f := &in.Facts
	opts, err := ipip.ParseOptions(in.Config.Backend)
	if err != nil {
		r.fail("fix the Backend object with `flannelctl config set`", "network config: %v", err)
		return
	}
	peers := peersOf(r, in, own, ipip.BackendType)
	fams := families(in.Config, own)
	if len(fams) == 0 || fams[0].v6 {
		r.fail("set EnableIPv4 (and not EnableIPv6) in the network config, or choose another backend", "the ipip backend carries IPv4 only")
		return
	}
	fam := fams[0]
	if !fam.own.IsValid() {
		r.fail("restart flanneld on this node", "our lease %s has no IPv4 subnet", own)
		return
	}
	dev := f.linkByName(ipip.DeviceName)
	switch {
	case dev == nil:
		r.fail(`restart flanneld: it creates the device (the kernel needs module "ipip")`,
			"ipip device %s is missing: no traffic to other nodes", ipip.DeviceName)
		return
	case dev.Type != "ipip":
		r.fail(fmt.Sprintf("ip link del %s, then restart flanneld", ipip.DeviceName), "%s exists but is a %s device, not ipip", ipip.DeviceName, orNone(dev.Type))
		return
	}
	locals := f.localAddrs()
	if t := dev.Tunnel; t != nil {
		if _, local := locals[t.Local]; !local || (t.Remote.IsValid() && !t.Remote.IsUnspecified()) {
			r.fail(fmt.Sprintf("ip link del %s, then restart flanneld", ipip.DeviceName),
				"%s: local %s remote %s, want this node's interface address and any remote", ipip.DeviceName, addrOrNone(t.Local), addrOrNone(t.Remote))
		} else {
			r.ok("%s: ipip local %s remote any", ipip.DeviceName, t.Local)
		}
	}
	checkUp(r, dev)
	checkOverlayAddr(r, f, dev, fam)
	if ext := extLink(f, own); ext != nil {
		if want := ext.MTU - ipip.Overhead; dev.MTU != want {
			r.fail("restart flanneld so it sets the MTU", "%s MTU is %d, want %d (%s MTU %d - %d for ipip)", dev.Name, dev.MTU, want, ext.Name, ext.MTU, ipip.Overhead)
		} else {
			r.ok("%s MTU %d fits %s MTU %d", dev.Name, dev.MTU, ext.Name, ext.MTU)
		}
	}
	checkEnvMTU(r, in, envOK, dev.MTU, fmt.Sprintf("%s has MTU %d", dev.Name, dev.MTU))

	want := map[netip.Prefix]bool{}
	for _, p := range peers {
		sn, pub, _ := fam.peer(p)
		if !sn.IsValid() || sn == fam.own {
			continue
		}
		label := "peer " + addrOrNone(pub)
		if !pub.IsValid() {
			r.fail("restart flanneld on that node", "lease %s has no public IP: no traffic to %s", p, sn)
			continue
		}
		want[sn] = true
		route := Route{Dst: sn, Gw: pub, LinkIndex: dev.Index, OnLink: true, Unicast: true}
		if opts.DirectRouting {
			if link, ok := f.Direct[pub]; ok && link > 0 {
				route.LinkIndex = link
				label += ", direct routing"
			} else if direct := directRoute(f, sn, pub); direct != nil {
				// Which way the daemon chose depends on the kernel's
				// route to the peer, unknown here: a route via the
				// peer on another link is the DirectRouting one.
				route.LinkIndex = direct.LinkIndex
				label += ", direct routing"
			}
		}
		checkRoute(r, f, route, label)
	}
	checkStaleRoutes(r, f, fam, dev.Index, want)
}

// directRoute returns a unicast route to sn via pub, onlink, or nil.
func directRoute(f *Facts, sn netip.Prefix, pub netip.Addr) *Route {
	for _, rt := range f.routeTo(sn) {
		if rt.Unicast && rt.Gw == pub && rt.OnLink {
			return &rt
		}
	}
	return nil
}

func checkExtension(r *report, in Input, own subnet.Lease, envOK bool) {
	f := &in.Facts
	if _, err := extension.ParseOptions(in.Config.Backend); err != nil {
		r.fail("fix the Backend object with `flannelctl config set`", "network config: %v", err)
		return
	}
	peersOf(r, in, own, extension.BackendType)
	if ext := extLink(f, own); ext != nil {
		checkEnvMTU(r, in, envOK, ext.MTU, fmt.Sprintf("%s has MTU %d", ext.Name, ext.MTU))
	} else {
		r.fail("restart flanneld: the extension backend advertises the interface's own address",
			"our public IP %s is not configured on this node", addrOrNone(own.Attrs.PublicIP))
	}
	r.skip("backend extension: the data plane is whatever its commands build; flannelctl does not check it")
}

func checkWireGuard(r *report, in Input, own subnet.Lease, envOK bool) {
	f := &in.Facts
	opts, err := wireguard.ParseOptions(in.Config.Backend)
	if err != nil {
		r.fail("fix the Backend object with `flannelctl config set`", "network config: %v", err)
		return
	}
	peersOf(r, in, own, wireguard.BackendType)
	mtu, mtuDev := 0, ""
	for _, fam := range families(in.Config, own) {
		if !fam.own.IsValid() {
			r.fail("restart flanneld on this node: it acquires a lease with both families", "our lease %s has no %s subnet but the network config enables %s", own, fam.name(), fam.name())
			continue
		}
		name := wireguard.DeviceName
		if fam.v6 && opts.Mode == wireguard.ModeSeparate {
			name = wireguard.DeviceNameV6
		}
		dev := f.linkByName(name)
		switch {
		case dev == nil:
			r.fail("restart flanneld: it creates the device", "wireguard device %s is missing: no %s traffic to other nodes", name, fam.name())
			continue
		case dev.Type != "wireguard" && dev.Type != "tun":
			r.fail(fmt.Sprintf("ip link del %s, then restart flanneld", name), "%s exists but is a %s device, not wireguard", name, orNone(dev.Type))
			continue
		}
		kind := "kernel WireGuard"
		if dev.Type == "tun" {
			kind = "userspace WireGuard (TUN)"
		}
		r.ok("%s is a %s device", name, kind)
		checkUp(r, dev)
		checkOverlayAddr(r, f, dev, fam)
		if mtu == 0 || dev.MTU < mtu {
			mtu, mtuDev = dev.MTU, name
		}
	}
	if mtu > 0 {
		checkEnvMTU(r, in, envOK, mtu, fmt.Sprintf("%s has MTU %d", mtuDev, mtu))
	}
	r.skip("wireguard peers: flannelctl does not read them; `wg show` lists each peer's key, endpoint and allowed IPs")
}
