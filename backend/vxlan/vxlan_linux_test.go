package vxlan

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/flannelng/flannel/backend/internal/netlab"
	"github.com/flannelng/flannel/backend/kernel"
	"github.com/flannelng/flannel/internal/testns"
	"github.com/flannelng/flannel/subnet"
)

const plainVXLAN = `{"Type":"vxlan"}`

// startLab builds a lab and runs our backend on every host, with every
// host's peers programmed.
func startLab(t *testing.T, o netlab.Options, raw string, v6 bool) (*netlab.Lab, []*node) {
	t.Helper()
	lab := netlab.New(t, o)
	var nodes []*node
	for _, h := range lab.Hosts {
		nodes = append(nodes, startNode(t, lab, h, raw, v6, nil))
	}
	for _, n := range nodes {
		n.reconcile(t, peersOf(nodes, n))
	}
	return lab, nodes
}

// checkPeerObjects asserts the three objects a vxlan peer gets on node a.
func checkPeerObjects(t *testing.T, a, peer *node, v6 bool) {
	t.Helper()
	k := kstate{a.host.NS.Handle(t)}
	dev, sn, pub, data := DeviceName(1), peer.lease.Subnet, peer.attrs.PublicIP, peer.attrs.BackendData
	if v6 {
		dev, sn, pub, data = DeviceNameV6(1), peer.lease.IPv6Subnet, peer.attrs.PublicIPv6, peer.attrs.BackendV6Data
	}
	link := k.link(t, dev)
	idx, mac := link.Attrs().Index, macOf(t, data)

	n, ok := k.neigh(t, idx, sn.Addr().String())
	if !ok || n.HardwareAddr.String() != mac || n.State != netlink.NUD_PERMANENT {
		t.Errorf("%s: neighbour %s on %s = %+v (found %v), want lladdr %s permanent", a.host.NS.Name, sn.Addr(), dev, n, ok, mac)
	}
	f, ok := k.fdb(t, idx)[mac+" "+pub.String()]
	if !ok || f.Flags&netlink.NTF_SELF == 0 || f.State != netlink.NUD_PERMANENT {
		t.Errorf("%s: FDB %s dst %s on %s = %+v (found %v), want self permanent", a.host.NS.Name, mac, pub, dev, f, ok)
	}
	r, ok := k.route(t, sn.String())
	if !ok || r.LinkIndex != idx || r.Gw.String() != sn.Addr().String() || r.Flags&unix.RTNH_F_ONLINK == 0 || r.Protocol != kernel.RouteProtocol {
		t.Errorf("%s: route %s = %+v (found %v), want via %s dev %s onlink proto %d", a.host.NS.Name, sn, r, ok, sn.Addr(), dev, kernel.RouteProtocol)
	}
}

func TestPrivilegedVXLANKernelObjects(t *testing.T) {
	_, nodes := startLab(t, netlab.Options{Hosts: 3}, plainVXLAN, true)
	a := nodes[0]
	k := kstate{a.host.NS.Handle(t)}

	dataRE := regexp.MustCompile(`^\{"VNI":1,"VtepMAC":"([0-9a-f]{2}:){5}[0-9a-f]{2}"\}$`)
	if !dataRE.Match(a.attrs.BackendData) || !dataRE.Match(a.attrs.BackendV6Data) {
		t.Fatalf("BackendData %s / %s", a.attrs.BackendData, a.attrs.BackendV6Data)
	}
	if a.attrs.BackendType != "vxlan" || a.attrs.PublicIP != a.host.Ext.ExtAddr || a.attrs.PublicIPv6 != a.host.Ext.ExtV6Addr {
		t.Fatalf("lease attrs %+v", a.attrs)
	}

	for _, tc := range []struct {
		name  string
		local netip.Addr
		mtu   int
		data  json.RawMessage
		addr  string
		fam   int
	}{
		{DeviceName(1), a.host.Ext.ExtAddr, 1450, a.attrs.BackendData, "10.5.1.0/32", unix.AF_INET},
		{DeviceNameV6(1), a.host.Ext.ExtV6Addr, 1430, a.attrs.BackendV6Data, "fd10:0:0:1::/128", unix.AF_INET6},
	} {
		v := k.link(t, tc.name)
		if v.VxlanId != 1 || v.VtepDevIndex != a.host.Ext.Index || !v.SrcAddr.Equal(tc.local.AsSlice()) ||
			v.Port != 8472 || v.Learning || v.GBP || v.MTU != tc.mtu || v.Flags&net.FlagUp == 0 {
			t.Errorf("%s: id %d dev #%d local %s port %d learning %v gbp %v mtu %d flags %v",
				tc.name, v.VxlanId, v.VtepDevIndex, v.SrcAddr, v.Port, v.Learning, v.GBP, v.MTU, v.Flags)
		}
		if v.HardwareAddr.String() != macOf(t, tc.data) {
			t.Errorf("%s: MAC %s, lease says %s", tc.name, v.HardwareAddr, tc.data)
		}
		addrs, err := k.h.AddrList(v, tc.fam)
		if err != nil {
			t.Fatal(err)
		}
		var global []string
		for _, ad := range addrs {
			if !ad.IP.IsLinkLocalUnicast() {
				global = append(global, ad.IPNet.String())
			}
		}
		if len(global) != 1 || global[0] != tc.addr {
			t.Errorf("%s: addresses %v, want only %s", tc.name, global, tc.addr)
		}
		if out, _ := a.host.NS.Exec("cat", "/proc/sys/net/ipv6/conf/"+tc.name+"/accept_ra"); strings.TrimSpace(out) != "0" {
			t.Errorf("%s: accept_ra = %q", tc.name, out)
		}
	}
	if a.nw.MTU() != 1430 {
		t.Errorf("MTU() = %d, want 1430 (the smaller tunnel MTU)", a.nw.MTU())
	}
	for _, peer := range nodes[1:] {
		checkPeerObjects(t, a, peer, false)
		checkPeerObjects(t, a, peer, true)
	}
	// What an operator sees.
	out := a.host.NS.IP(t, "route", "show", "10.5.2.0/24")
	if !strings.Contains(out, "10.5.2.0/24 via 10.5.2.0 dev flannel.1 proto 45 onlink") {
		t.Errorf("ip route: %q", out)
	}
}

func TestPrivilegedVXLANPing(t *testing.T) {
	_, nodes := startLab(t, netlab.Options{Hosts: 3}, plainVXLAN, true)
	for _, from := range nodes {
		for _, to := range nodes {
			if from == to {
				continue
			}
			if out, err := netlab.Ping(from.host.NS, from.host.PodIP(), to.host.PodIP()); err != nil {
				t.Errorf("ping %s -> %s: %v\n%s", from.host.PodIP(), to.host.PodIP(), err, out)
			}
			if out, err := netlab.Ping(from.host.NS, from.host.PodIP6(), to.host.PodIP6()); err != nil {
				t.Errorf("ping %s -> %s: %v\n%s", from.host.PodIP6(), to.host.PodIP6(), err, out)
			}
		}
	}
}

func TestPrivilegedVXLANDirectRouting(t *testing.T) {
	// Hosts 0 and 1 share the underlay subnet; host 2 sits behind the
	// fabric's router, so it stays on vxlan.
	_, nodes := startLab(t, netlab.Options{Hosts: 3, RoutedLast: true}, `{"Type":"vxlan","DirectRouting":true}`, true)
	a, b, c := nodes[0], nodes[1], nodes[2]
	k := kstate{a.host.NS.Handle(t)}
	for _, tc := range []struct{ dst, gw string }{{"10.5.2.0/24", "172.31.0.2"}, {"fd10:0:0:2::/64", "fd31::2"}} {
		r, ok := k.route(t, tc.dst)
		if !ok || r.Gw.String() != tc.gw || r.LinkIndex != a.host.Ext.Index || r.Protocol != kernel.RouteProtocol {
			t.Errorf("direct route %s = %+v (found %v), want via %s dev eth0 proto 45", tc.dst, r, ok, tc.gw)
		}
	}
	dev := k.link(t, DeviceName(1)).Attrs().Index
	if _, ok := k.neigh(t, dev, "10.5.2.0"); ok {
		t.Error("a direct peer must get no neighbour entry")
	}
	for key := range k.fdb(t, dev) {
		if strings.HasPrefix(key, macOf(t, b.attrs.BackendData)) {
			t.Errorf("a direct peer must get no FDB entry, found %s", key)
		}
	}
	checkPeerObjects(t, a, c, false)
	checkPeerObjects(t, a, c, true)
	if a.log.Count("DirectRouting: peer is on a directly connected network") != 2 ||
		a.log.Count("DirectRouting: peer is not directly reachable") != 2 {
		t.Errorf("DirectRouting decisions must be logged once per peer address:\n%s", a.log.String())
	}
	for _, pair := range [][2]*node{{a, b}, {b, a}, {a, c}, {c, b}} {
		from, to := pair[0], pair[1]
		if out, err := netlab.Ping(from.host.NS, from.host.PodIP(), to.host.PodIP()); err != nil {
			t.Errorf("ping %s -> %s: %v\n%s", from.host.PodIP(), to.host.PodIP(), err, out)
		}
		if out, err := netlab.Ping(from.host.NS, from.host.PodIP6(), to.host.PodIP6()); err != nil {
			t.Errorf("ping %s -> %s: %v\n%s", from.host.PodIP6(), to.host.PodIP6(), err, out)
		}
	}
}

func TestPrivilegedVXLANSecondPassWritesNothing(t *testing.T) {
	_, nodes := startLab(t, netlab.Options{Hosts: 3}, plainVXLAN, true)
	a := nodes[0]
	settle()
	before := a.stats()
	a.reconcile(t, peersOf(nodes, a))
	if d := a.stats(); d.Writes != before.Writes || d.Reads != before.Reads {
		t.Fatalf("second pass made %d writes and %d reads, want none (our own echoes must not force a full pass)",
			d.Writes-before.Writes, d.Reads-before.Reads)
	}
	// A full pass reads the kernel and still writes nothing.
	a.nw.rec.MarkDirty("test")
	before = a.stats()
	a.reconcile(t, peersOf(nodes, a))
	if d := a.stats(); d.Writes != before.Writes || d.Reads == before.Reads {
		t.Fatalf("full pass over correct state: %d writes, %d reads; want 0 writes and some reads",
			d.Writes-before.Writes, d.Reads-before.Reads)
	}
}

func TestPrivilegedVXLANRepairsDrift(t *testing.T) {
	_, nodes := startLab(t, netlab.Options{Hosts: 3}, plainVXLAN, false)
	a, b := nodes[0], nodes[1]
	ns := a.host.NS
	peers := peersOf(nodes, a)
	macB := macOf(t, b.attrs.BackendData)
	settle()

	steps := []struct {
		what string
		do   func()
	}{
		{"deleting a route", func() { ns.IP(t, "route", "del", "10.5.2.0/24") }},
		{"deleting a neighbour", func() { ns.IP(t, "neigh", "del", "10.5.2.0", "dev", "flannel.1") }},
		{"deleting an FDB entry", func() {
			testns.Run(t, "bridge", "-n", ns.Name, "fdb", "del", macB, "dev", "flannel.1", "dst", "172.31.0.2", "self")
		}},
		{"replacing a neighbour's MAC", func() {
			ns.IP(t, "neigh", "replace", "10.5.2.0", "lladdr", "02:11:11:11:11:11", "dev", "flannel.1", "nud", "permanent")
		}},
		{"changing the device MAC (like udev's MACAddressPolicy)", func() {
			ns.IP(t, "link", "set", "flannel.1", "address", "02:22:22:22:22:22")
		}},
		{"deleting the device address", func() { ns.IP(t, "addr", "del", "10.5.1.0/32", "dev", "flannel.1") }},
		{"setting the device down", func() { ns.IP(t, "link", "set", "flannel.1", "down") }},
		{"deleting the vxlan device", func() { ns.IP(t, "link", "del", "flannel.1") }},
	}
	for _, s := range steps {
		drainChanged(a.nw)
		s.do()
		waitChanged(t, a.nw, s.what)
		a.reconcile(t, peers)
		for _, peer := range nodes[1:] {
			checkPeerObjects(t, a, peer, false)
		}
		k := kstate{ns.Handle(t)}
		if got := k.link(t, "flannel.1"); got.HardwareAddr.String() != macOf(t, a.attrs.BackendData) || got.Flags&net.FlagUp == 0 {
			t.Errorf("after %s: device MAC %s flags %v, lease says %s", s.what, got.HardwareAddr, got.Flags, a.attrs.BackendData)
		}
		if t.Failed() {
			t.Fatalf("not repaired after %s", s.what)
		}
	}
	for _, to := range nodes[1:] {
		if out, err := netlab.Ping(ns, a.host.PodIP(), to.host.PodIP()); err != nil {
			t.Errorf("ping after repairs %s -> %s: %v\n%s", a.host.PodIP(), to.host.PodIP(), err, out)
		}
	}
}

func TestPrivilegedVXLANPeerChanges(t *testing.T) {
	_, nodes := startLab(t, netlab.Options{Hosts: 3}, plainVXLAN, false)
	a, b, c := nodes[0], nodes[1], nodes[2]
	k := kstate{a.host.NS.Handle(t)}
	dev := k.link(t, "flannel.1").Attrs().Index

	// Peer c goes away: all three of its objects go.
	a.reconcile(t, []subnet.Lease{b.lease})
	macC := macOf(t, c.attrs.BackendData)
	if _, ok := k.route(t, "10.5.3.0/24"); ok {
		t.Error("route of a removed peer remains")
	}
	if _, ok := k.neigh(t, dev, "10.5.3.0"); ok {
		t.Error("neighbour of a removed peer remains")
	}
	if _, ok := k.fdb(t, dev)[macC+" 172.31.0.3"]; ok {
		t.Error("FDB entry of a removed peer remains")
	}

	// Peer b comes back with a new MAC (its device was recreated).
	oldMAC := macOf(t, b.attrs.BackendData)
	nb := b.lease
	nb.Attrs.BackendData = json.RawMessage(`{"VNI":1,"VtepMAC":"02:aa:bb:cc:dd:ee"}`)
	before := a.stats()
	a.reconcile(t, []subnet.Lease{nb})
	fdb := k.fdb(t, dev)
	if _, ok := fdb[oldMAC+" 172.31.0.2"]; ok {
		t.Error("FDB entry for the old MAC remains")
	}
	if _, ok := fdb["02:aa:bb:cc:dd:ee 172.31.0.2"]; !ok {
		t.Error("no FDB entry for the new MAC")
	}
	if n, _ := k.neigh(t, dev, "10.5.2.0"); n.HardwareAddr.String() != "02:aa:bb:cc:dd:ee" {
		t.Errorf("neighbour still points to %s", n.HardwareAddr)
	}
	if w := a.stats().Writes - before.Writes; w != 3 {
		t.Errorf("MAC change took %d writes, want 3 (neighbour, new FDB, old FDB)", w)
	}

	// Peer b moves to another public IP: its FDB entry follows.
	nb.Attrs.PublicIP = netip.MustParseAddr("172.31.0.99")
	a.reconcile(t, []subnet.Lease{nb})
	fdb = k.fdb(t, dev)
	if _, ok := fdb["02:aa:bb:cc:dd:ee 172.31.0.99"]; !ok || len(fdb) != 1 {
		t.Errorf("FDB after public IP change: %v", fdb)
	}
}

func TestPrivilegedVXLANRestart(t *testing.T) {
	lab, nodes := startLab(t, netlab.Options{Hosts: 3}, plainVXLAN, true)
	a := nodes[0]
	peers := peersOf(nodes, a)
	_ = a.nw.Close()

	// A new process over the programmed namespace: adopts the device, and
	// writes nothing at all.
	a2 := startNode(t, lab, a.host, plainVXLAN, true, &a.attrs)
	a2.reconcile(t, peers)
	if w := a2.stats().Writes; w != 0 {
		t.Fatalf("restart over correct state made %d netlink writes, want 0\n%s", w, a2.log.String())
	}
	if string(a2.attrs.BackendData) != string(a.attrs.BackendData) || string(a2.attrs.BackendV6Data) != string(a.attrs.BackendV6Data) {
		t.Fatalf("restart changed the lease: %s -> %s", a.attrs.BackendData, a2.attrs.BackendData)
	}
	_ = a2.nw.Close()

	// Peer c vanished while we were down: its entries go at start.
	a3 := startNode(t, lab, a.host, plainVXLAN, true, &a.attrs)
	a3.reconcile(t, []subnet.Lease{nodes[1].lease})
	if w := a3.stats().Writes; w != 6 {
		t.Errorf("removing one dual-stack peer at start took %d writes, want 6", w)
	}
	k := kstate{a.host.NS.Handle(t)}
	for _, dst := range []string{"10.5.3.0/24", "fd10:0:0:3::/64"} {
		if _, ok := k.route(t, dst); ok {
			t.Errorf("route %s of a vanished peer remains", dst)
		}
	}
	checkPeerObjects(t, a3, nodes[1], false)
	checkPeerObjects(t, a3, nodes[1], true)
	_ = a3.nw.Close()

	// The device vanished too (a reboot): it comes back with the MAC of
	// our previous lease.
	a.host.NS.IP(t, "link", "del", "flannel.1")
	a.host.NS.IP(t, "link", "del", "flannel-v6.1")
	a4 := startNode(t, lab, a.host, plainVXLAN, true, &a.attrs)
	if string(a4.attrs.BackendData) != string(a.attrs.BackendData) || string(a4.attrs.BackendV6Data) != string(a.attrs.BackendV6Data) {
		t.Fatalf("recreated devices got new MACs: %s %s, want %s %s", a4.attrs.BackendData, a4.attrs.BackendV6Data, a.attrs.BackendData, a.attrs.BackendV6Data)
	}
	a4.reconcile(t, peers)
	for _, to := range nodes[1:] {
		if out, err := netlab.Ping(a.host.NS, a.host.PodIP(), to.host.PodIP()); err != nil {
			t.Errorf("ping %s -> %s: %v\n%s", a.host.PodIP(), to.host.PodIP(), err, out)
		}
	}
}

func TestPrivilegedVXLANUpgradeFromUpstream(t *testing.T) {
	lab := netlab.New(t, netlab.Options{Hosts: 2})
	h := lab.Hosts[0]
	ns := h.NS
	// What upstream flanneld leaves: its device, proto boot routes, one for
	// a live peer and one for a peer that is gone, with their entries.
	ns.IP(t, "link", "add", "flannel.1", "address", "02:00:00:00:01:01", "mtu", "1450", "type", "vxlan", "id", "1",
		"local", "172.31.0.1", "dev", "eth0", "nolearning", "dstport", "8472")
	ns.IP(t, "addr", "add", "10.5.1.0/32", "dev", "flannel.1")
	ns.IP(t, "link", "set", "flannel.1", "up")
	for _, p := range []struct{ sn, vtep, mac, pub string }{
		{"10.5.2.0/24", "10.5.2.0", "02:00:00:00:02:02", "172.31.0.2"},
		{"10.5.9.0/24", "10.5.9.0", "02:00:00:00:09:09", "172.31.0.9"},
	} {
		ns.IP(t, "neigh", "replace", p.vtep, "lladdr", p.mac, "dev", "flannel.1", "nud", "permanent")
		testns.Run(t, "bridge", "-n", ns.Name, "fdb", "replace", p.mac, "dev", "flannel.1", "dst", p.pub, "self", "permanent")
		ns.IP(t, "route", "replace", p.sn, "via", p.vtep, "dev", "flannel.1", "onlink")
	}
	// Routes of other programs stay, whatever they look like.
	ns.IP(t, "route", "add", "192.0.2.0/24", "via", "172.31.0.50", "dev", "eth0", "proto", "static")
	ns.IP(t, "route", "add", "10.5.77.0/24", "via", "172.31.0.50", "dev", "eth0", "proto", "static")
	ns.IP(t, "route", "add", "198.51.100.0/24", "dev", "flannel.1")

	prev := subnet.LeaseAttrs{PublicIP: h.Ext.ExtAddr, BackendType: "vxlan", BackendData: json.RawMessage(`{"VNI":1,"VtepMAC":"02:00:00:00:01:01"}`)}
	a := startNode(t, lab, h, plainVXLAN, false, &prev)
	if string(a.attrs.BackendData) != string(prev.BackendData) {
		t.Fatalf("adopted device must keep its MAC: %s", a.attrs.BackendData)
	}
	peer := subnet.Lease{Subnet: netip.MustParsePrefix("10.5.2.0/24"), Attrs: subnet.LeaseAttrs{
		PublicIP: netip.MustParseAddr("172.31.0.2"), BackendType: "vxlan",
		BackendData: json.RawMessage(`{"VNI":1,"VtepMAC":"02:00:00:00:02:02"}`)}}
	a.reconcile(t, []subnet.Lease{peer})

	k := kstate{ns.Handle(t)}
	dev := k.link(t, "flannel.1").Attrs().Index
	if r, ok := k.route(t, "10.5.2.0/24"); !ok || r.Protocol != kernel.RouteProtocol {
		t.Errorf("live peer's upstream route must be re-marked as ours: %+v", r)
	}
	if _, ok := k.route(t, "10.5.9.0/24"); ok {
		t.Error("route of a peer that is gone must be removed")
	}
	if _, ok := k.neigh(t, dev, "10.5.9.0"); ok {
		t.Error("neighbour of a peer that is gone must be removed")
	}
	if _, ok := k.fdb(t, dev)["02:00:00:00:09:09 172.31.0.9"]; ok {
		t.Error("FDB entry of a peer that is gone must be removed")
	}
	for _, dst := range []string{"192.0.2.0/24", "10.5.77.0/24", "198.51.100.0/24"} {
		if _, ok := k.route(t, dst); !ok {
			t.Errorf("route %s is not ours and must stay", dst)
		}
	}
	// Writes: re-mark 1 route, delete 1 route, 1 neighbour, 1 FDB entry.
	if w := a.stats().Writes; w != 4 {
		t.Errorf("upgrade took %d writes, want 4", w)
	}
	// Later full passes leave other programs' routes alone too.
	a.nw.rec.MarkDirty("test")
	a.reconcile(t, []subnet.Lease{peer})
	for _, dst := range []string{"192.0.2.0/24", "10.5.77.0/24", "198.51.100.0/24"} {
		if _, ok := k.route(t, dst); !ok {
			t.Errorf("route %s is not ours and must stay", dst)
		}
	}
}

func TestPrivilegedVXLANIncompatibleDeviceReplaced(t *testing.T) {
	lab := netlab.New(t, netlab.Options{Hosts: 1})
	h := lab.Hosts[0]
	h.NS.IP(t, "link", "add", "flannel.1", "address", "02:00:00:00:01:01", "type", "vxlan", "id", "1",
		"local", "172.31.0.1", "dev", "eth0", "dstport", "4789")
	prev := subnet.LeaseAttrs{BackendType: "vxlan", BackendData: json.RawMessage(`{"VNI":1,"VtepMAC":"02:00:00:00:01:01"}`)}
	a := startNode(t, lab, h, plainVXLAN, false, &prev)
	if a.log.Count(`flannel.1\" already exists with incompatible configuration: port; recreating device`) != 1 {
		t.Errorf("log:\n%s", a.log.String())
	}
	v := kstate{h.NS.Handle(t)}.link(t, "flannel.1")
	if v.Port != 8472 || v.HardwareAddr.String() != "02:00:00:00:01:01" {
		t.Errorf("recreated device: port %d MAC %s, want 8472 and the previous lease's MAC", v.Port, v.HardwareAddr)
	}
}

func TestPrivilegedVXLANSkipsLoggedOnce(t *testing.T) {
	lab := netlab.New(t, netlab.Options{Hosts: 1})
	a := startNode(t, lab, lab.Hosts[0], plainVXLAN, false, nil)
	peers := []subnet.Lease{
		{Subnet: netip.MustParsePrefix("10.5.2.0/24"), Attrs: subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("172.31.0.2"), BackendType: "host-gw"}},
		{Subnet: netip.MustParsePrefix("10.5.3.0/24"), Attrs: subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("172.31.0.3"), BackendType: "vxlan",
			BackendData: json.RawMessage(`{"VNI":7,"VtepMAC":"02:00:00:00:03:03"}`)}},
	}
	for i := 0; i < 3; i++ {
		a.reconcile(t, peers)
	}
	if n := a.log.Count("ignoring non-vxlan v4Subnet(10.5.2.0/24) v6Subnet(<nil>): type=host-gw"); n != 1 {
		t.Errorf("non-vxlan peer logged %d times, want 1", n)
	}
	if n := a.log.Count("VNI 7 differs from ours (1)"); n != 1 {
		t.Errorf("VNI mismatch logged %d times, want 1", n)
	}
	if _, ok := (kstate{lab.Hosts[0].NS.Handle(t)}).route(t, "10.5.3.0/24"); ok {
		t.Error("a peer with another VNI must not be programmed")
	}
}

func TestPrivilegedVXLANOptions(t *testing.T) {
	lab := netlab.New(t, netlab.Options{Hosts: 1})
	h := lab.Hosts[0]
	a := startNode(t, lab, h, `{"Type":"vxlan","VNI":42,"Port":4789,"GBP":true,"MTU":1400,"ChecksumOffload":"off"}`, false, nil)
	v := kstate{h.NS.Handle(t)}.link(t, "flannel.42")
	if v.VxlanId != 42 || v.Port != 4789 || !v.GBP || v.MTU != 1350 || a.nw.MTU() != 1350 {
		t.Errorf("device: id %d port %d gbp %v mtu %d; MTU() %d", v.VxlanId, v.Port, v.GBP, v.MTU, a.nw.MTU())
	}
	on, err := a.be.(*vxlanBackend).h.TxChecksum("flannel.42")
	if err != nil || on {
		t.Errorf("ChecksumOffload off: tx checksum offload on=%v err=%v", on, err)
	}
	if a.log.Count("VXLAN config: VNI=42 Port=4789 GBP=true Learning=false DirectRouting=false") != 1 {
		t.Errorf("config log line missing:\n%s", a.log.String())
	}
}

func TestPrivilegedVXLANFailingPeerDoesNotBlockOthers(t *testing.T) {
	lab := netlab.New(t, netlab.Options{Hosts: 1})
	a := startNode(t, lab, lab.Hosts[0], plainVXLAN, false, nil)
	good := subnet.Lease{Subnet: netip.MustParsePrefix("10.5.2.0/24"), Attrs: subnet.LeaseAttrs{
		PublicIP: netip.MustParseAddr("172.31.0.2"), BackendType: "vxlan", BackendData: json.RawMessage(`{"VNI":1,"VtepMAC":"02:00:00:00:02:02"}`)}}
	// A multicast subnet: the kernel refuses its route (a multicast
	// gateway), whatever we do.
	bad := subnet.Lease{Subnet: netip.MustParsePrefix("224.0.5.0/24"), Attrs: subnet.LeaseAttrs{
		PublicIP: netip.MustParseAddr("172.31.0.3"), BackendType: "vxlan", BackendData: json.RawMessage(`{"VNI":1,"VtepMAC":"02:00:00:00:03:03"}`)}}
	var errs []error
	for i := 0; i < 3; i++ {
		errs = append(errs, a.nw.Reconcile(context.Background(), []subnet.Lease{bad, good}))
	}
	for i, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "replace route 224.0.5.0/24") {
			t.Fatalf("Reconcile %d error = %v, want one naming the bad peer's route", i, err)
		}
	}
	k := kstate{lab.Hosts[0].NS.Handle(t)}
	dev := k.link(t, "flannel.1").Attrs().Index
	if _, ok := k.neigh(t, dev, "10.5.2.0"); !ok {
		t.Error("the good peer was not programmed")
	}
	if _, ok := k.route(t, "10.5.2.0/24"); !ok {
		t.Error("the good peer's route was not programmed")
	}
	if n := a.log.Count(`op="replace route 224.0.5.0/24`); n != 1 {
		t.Errorf("the failing route write was logged %d times over 3 passes, want 1\n%s", n, a.log.String())
	}
}

// Cloned machines advertise one VtepMAC under two leases. Whatever order
// the leases come in, every full pass sends the MAC's FDB entry to the
// same host (the lowest public IP), writes nothing once it is there, and
// the conflict is logged once. Leases no VTEP can have (an all-zeros MAC,
// which would become the device's default destination) or that carry our
// own public IP are skipped, each with one log line.
func TestPrivilegedVXLANContestedMACStableWinner(t *testing.T) {
	lab := netlab.New(t, netlab.Options{Hosts: 1})
	h := lab.Hosts[0]
	a := startNode(t, lab, h, plainVXLAN, false, nil)
	vx := func(sn, pub, mac string) subnet.Lease {
		return subnet.Lease{Subnet: netip.MustParsePrefix(sn), Attrs: subnet.LeaseAttrs{PublicIP: netip.MustParseAddr(pub), BackendType: "vxlan",
			BackendData: json.RawMessage(`{"VNI":1,"VtepMAC":"` + mac + `"}`)}}
	}
	peers := []subnet.Lease{
		vx("10.5.2.0/24", "172.31.0.9", "02:00:00:00:0c:0c"),
		vx("10.5.3.0/24", "172.31.0.2", "02:00:00:00:0c:0c"),
		vx("10.5.4.0/24", "172.31.0.4", "00:00:00:00:00:00"),
		vx("10.5.5.0/24", h.Ext.ExtAddr.String(), "02:00:00:00:05:05"),
	}
	k := kstate{h.NS.Handle(t)}
	dev := k.link(t, "flannel.1").Attrs().Index
	for pass := range 6 {
		if pass%2 == 1 {
			peers[0], peers[1] = peers[1], peers[0]
		}
		a.nw.rec.MarkDirty("test") // a full pass: the index is rebuilt from this order
		before := a.stats()
		a.reconcile(t, peers)
		if w := a.stats().Writes - before.Writes; pass > 0 && w != 0 {
			t.Errorf("pass %d made %d writes over the state the first pass left", pass, w)
		}
		var dsts []string
		for key := range k.fdb(t, dev) {
			if mac, dst, _ := strings.Cut(key, " "); mac == "02:00:00:00:0c:0c" {
				dsts = append(dsts, dst)
			} else if mac == "00:00:00:00:00:00" || mac == "02:00:00:00:05:05" {
				t.Errorf("pass %d: FDB entry %s programmed", pass, key)
			}
		}
		if len(dsts) != 1 || dsts[0] != "172.31.0.2" {
			t.Fatalf("pass %d: FDB destinations of the shared MAC %v, want only 172.31.0.2 (the lowest)", pass, dsts)
		}
	}
	for msg, want := range map[string]int{
		"several leases want the same kernel object": 1,
		"is all zeros":             1,
		"it has our own public IP": 1,
	} {
		if n := a.log.Count(msg); n != want {
			t.Errorf("%q logged %d times over 6 passes, want %d\n%s", msg, n, want, a.log.String())
		}
	}
}

// Resync, the daemon's pass every --reconcile-period, makes the next pass
// a full one (it reads the kernel) even though our own FullResync clock
// says none is due; over correct state it still writes nothing.
func TestPrivilegedVXLANResyncMakesFullPass(t *testing.T) {
	_, nodes := startLab(t, netlab.Options{Hosts: 2}, plainVXLAN, false)
	a := nodes[0]
	settle()
	before := a.stats()
	a.reconcile(t, peersOf(nodes, a))
	if d := a.stats(); d.Reads != before.Reads {
		t.Fatalf("a pass without Resync read the kernel (%d reads)", d.Reads-before.Reads)
	}
	a.nw.Resync()
	before = a.stats()
	a.reconcile(t, peersOf(nodes, a))
	if d := a.stats(); d.Reads == before.Reads || d.Writes != before.Writes {
		t.Fatalf("pass after Resync: %d reads, %d writes; want a full pass (some reads) writing nothing",
			d.Reads-before.Reads, d.Writes-before.Writes)
	}
	before = a.stats()
	a.reconcile(t, peersOf(nodes, a))
	if d := a.stats(); d.Reads != before.Reads {
		t.Fatal("Resync made more than the next pass a full one")
	}
}
