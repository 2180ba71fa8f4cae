package hostgw

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/backend"
	"github.com/flannelng/flannel/backend/internal/netlab"
	"github.com/flannelng/flannel/backend/kernel"
	"github.com/flannelng/flannel/subnet"
)

type node struct {
	host  *netlab.Host
	lease subnet.Lease
	nw    *network
	log   *netlab.LogBuf
}

func startNode(t *testing.T, lab *netlab.Lab, h *netlab.Host) *node {
	t.Helper()
	n := &node{host: h, log: &netlab.LogBuf{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of %s:\n%s", h.NS.Name, n.log.String())
		}
	})
	be, err := New(backend.Config{
		EnableIPv4: true, EnableIPv6: true,
		Network: lab.Network, IPv6Network: lab.Network6,
		Raw: []byte(`{"Type":"host-gw"}`), Ext: h.Ext, NetnsPath: h.NS.Path, Log: n.log.Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	attrs, err := be.Prepare(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if attrs.BackendType != "host-gw" || attrs.BackendData != nil || attrs.PublicIP != h.Ext.ExtAddr || attrs.PublicIPv6 != h.Ext.ExtV6Addr {
		t.Fatalf("lease attrs %+v", attrs)
	}
	n.lease = subnet.Lease{Subnet: h.Subnet, IPv6Subnet: h.Subnet6, Attrs: attrs}
	nw, err := be.Configure(ctx, n.lease)
	if err != nil {
		t.Fatal(err)
	}
	if nw.MTU() != h.Ext.MTU {
		t.Fatalf("MTU() = %d, want the external MTU %d", nw.MTU(), h.Ext.MTU)
	}
	n.nw = nw.(*network)
	t.Cleanup(func() { _ = nw.Close() })
	return n
}

func peersOf(nodes []*node, self *node) []subnet.Lease {
	var ls []subnet.Lease
	for _, n := range nodes {
		if n != self {
			ls = append(ls, n.lease)
		}
	}
	return ls
}

func waitChanged(t *testing.T, nw *network, what string) {
	t.Helper()
	select {
	case <-nw.Changed():
	case <-time.After(3 * time.Second):
		t.Fatalf("Changed did not fire after %s", what)
	}
}

func drainChanged(nw *network) {
	for {
		select {
		case <-nw.Changed():
		default:
			return
		}
	}
}

func checkRoutes(t *testing.T, a *node, peer *node) {
	t.Helper()
	h := a.host.NS.Handle(t)
	for _, tc := range []struct{ dst, gw string }{
		{peer.lease.Subnet.String(), peer.host.Ext.ExtAddr.String()},
		{peer.lease.IPv6Subnet.String(), peer.host.Ext.ExtV6Addr.String()},
	} {
		r, ok := netlab.FindRoute(t, h, tc.dst)
		if !ok || r.Gw.String() != tc.gw || r.LinkIndex != a.host.Ext.Index || r.Protocol != kernel.RouteProtocol {
			t.Errorf("%s: route %s = %+v (found %v), want via %s dev eth0 proto %d", a.host.NS.Name, tc.dst, r, ok, tc.gw, kernel.RouteProtocol)
		}
	}
}

func TestPrivilegedHostGW(t *testing.T) {
	// Host 2 is behind a router: host-gw cannot reach it, and that must
	// not stop hosts 0 and 1 from reaching each other.
	lab := netlab.New(t, netlab.Options{Hosts: 3, RoutedLast: true})
	var nodes []*node
	for _, h := range lab.Hosts {
		nodes = append(nodes, startNode(t, lab, h))
	}
	a, b, c := nodes[0], nodes[1], nodes[2]
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		err := a.nw.Reconcile(ctx, peersOf(nodes, a))
		if err == nil || !strings.Contains(err.Error(), "10.5.3.0/24") || !strings.Contains(err.Error(), "fd10:0:0:3::/64") {
			t.Fatalf("pass %d: error %v, want one naming the unreachable peer's routes", i, err)
		}
	}
	if n := a.log.Count("kernel update failed; will retry"); n != 2 {
		t.Errorf("failures logged %d times over 3 passes, want 2 (one per failing route)", n)
	}
	if err := b.nw.Reconcile(ctx, []subnet.Lease{a.lease}); err != nil {
		t.Fatal(err)
	}
	checkRoutes(t, a, b)
	checkRoutes(t, b, a)
	out := a.host.NS.IP(t, "route", "show", "10.5.2.0/24")
	if !strings.Contains(out, "10.5.2.0/24 via 172.31.0.2 dev eth0 proto 45") {
		t.Errorf("ip route: %q", out)
	}
	for _, pair := range [][2]*node{{a, b}, {b, a}} {
		from, to := pair[0], pair[1]
		if out, err := netlab.Ping(from.host.NS, from.host.PodIP(), to.host.PodIP()); err != nil {
			t.Errorf("ping %s -> %s: %v\n%s", from.host.PodIP(), to.host.PodIP(), err, out)
		}
		if out, err := netlab.Ping(from.host.NS, from.host.PodIP6(), to.host.PodIP6()); err != nil {
			t.Errorf("ping %s -> %s: %v\n%s", from.host.PodIP6(), to.host.PodIP6(), err, out)
		}
	}

	// Once the unreachable peer is gone, passes are clean and the second
	// one writes nothing.
	if err := a.nw.Reconcile(ctx, []subnet.Lease{b.lease}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	before := a.nw.rec.Stats()
	if err := a.nw.Reconcile(ctx, []subnet.Lease{b.lease}); err != nil {
		t.Fatal(err)
	}
	if after := a.nw.rec.Stats(); after != before {
		t.Errorf("second pass: %+v -> %+v, want no requests", before, after)
	}
	_ = c
}

func TestPrivilegedHostGWRepairs(t *testing.T) {
	lab := netlab.New(t, netlab.Options{Hosts: 2})
	a, b := startNode(t, lab, lab.Hosts[0]), startNode(t, lab, lab.Hosts[1])
	ns := a.host.NS
	peers := []subnet.Lease{b.lease}
	ctx := context.Background()
	if err := a.nw.Reconcile(ctx, peers); err != nil {
		t.Fatal(err)
	}
	if err := b.nw.Reconcile(ctx, []subnet.Lease{a.lease}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)

	steps := []struct {
		what string
		do   func()
	}{
		{"deleting the route", func() { ns.IP(t, "route", "del", "10.5.2.0/24") }},
		{"deleting the IPv6 route", func() { ns.IP(t, "-6", "route", "del", "fd10:0:0:2::/64") }},
		{"replacing the route with another gateway", func() {
			ns.IP(t, "route", "replace", "10.5.2.0/24", "via", "172.31.0.77", "dev", "eth0")
		}},
		// The kernel drops IPv4 routes of a link that goes down without
		// telling anyone; the link coming back up triggers the repair.
		{"flapping the external interface", func() {
			ns.IP(t, "link", "set", "eth0", "down")
			ns.IP(t, "link", "set", "eth0", "up")
			// IPv6 drops its addresses on link down (keep_addr_on_down=0);
			// a network manager puts them back.
			ns.IP(t, "-6", "addr", "replace", a.host.Ext.IfaceV6Addr.String()+"/64", "dev", "eth0", "nodad")
		}},
	}
	for _, s := range steps {
		drainChanged(a.nw)
		s.do()
		waitChanged(t, a.nw, s.what)
		// The link may need a moment before routes through it are
		// accepted again; the daemon would simply retry on its next pass.
		var err error
		for i := 0; i < 20; i++ {
			if err = a.nw.Reconcile(ctx, peers); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("after %s: %v", s.what, err)
		}
		checkRoutes(t, a, b)
		if t.Failed() {
			t.Fatalf("not repaired after %s", s.what)
		}
	}
	if out, err := netlab.Ping(ns, a.host.PodIP(), b.host.PodIP()); err != nil {
		t.Errorf("ping after repairs: %v\n%s", err, out)
	}
}

func TestPrivilegedHostGWRestartAdoptsUpstreamRoutes(t *testing.T) {
	lab := netlab.New(t, netlab.Options{Hosts: 2})
	h := lab.Hosts[0]
	ns := h.NS
	// Upstream's routes (proto boot): a live peer and one that is gone;
	// and routes of other programs.
	ns.IP(t, "route", "add", "10.5.2.0/24", "via", "172.31.0.2", "dev", "eth0")
	ns.IP(t, "route", "add", "10.5.9.0/24", "via", "172.31.0.9", "dev", "eth0")
	ns.IP(t, "-6", "route", "add", "fd10:0:0:9::/64", "via", "fd31::9", "dev", "eth0")
	ns.IP(t, "route", "add", "10.5.77.0/24", "via", "172.31.0.50", "dev", "eth0", "proto", "static")
	ns.IP(t, "route", "add", "192.0.2.0/24", "via", "172.31.0.50", "dev", "eth0")
	ns.IP(t, "route", "add", "10.5.0.0/16", "via", "172.31.0.50", "dev", "eth0", "metric", "100")

	a := startNode(t, lab, h)
	b := lab.Hosts[1]
	peer := subnet.Lease{Subnet: b.Subnet, IPv6Subnet: b.Subnet6, Attrs: subnet.LeaseAttrs{
		PublicIP: b.Ext.ExtAddr, PublicIPv6: b.Ext.ExtV6Addr, BackendType: "host-gw"}}
	if err := a.nw.Reconcile(context.Background(), []subnet.Lease{peer}); err != nil {
		t.Fatal(err)
	}
	nh := ns.Handle(t)
	if r, ok := netlab.FindRoute(t, nh, "10.5.2.0/24"); !ok || r.Protocol != kernel.RouteProtocol {
		t.Errorf("live peer's upstream route must be re-marked: %+v", r)
	}
	for _, dst := range []string{"10.5.9.0/24", "fd10:0:0:9::/64"} {
		if _, ok := netlab.FindRoute(t, nh, dst); ok {
			t.Errorf("upstream route %s of a vanished peer must be removed", dst)
		}
	}
	for _, dst := range []string{"10.5.77.0/24", "192.0.2.0/24", "10.5.0.0/16"} {
		if _, ok := netlab.FindRoute(t, nh, dst); !ok {
			t.Errorf("route %s is not ours and must stay", dst)
		}
	}
	// 1 re-mark, 1 new IPv6 route, 2 deletions.
	if w := a.nw.rec.Stats().Writes; w != 4 {
		t.Errorf("restart took %d writes, want 4", w)
	}
	_ = a.nw.Close()

	// A second restart: everything is ours and right, nothing is written.
	a2 := startNode(t, lab, h)
	if err := a2.nw.Reconcile(context.Background(), []subnet.Lease{peer}); err != nil {
		t.Fatal(err)
	}
	if w := a2.nw.rec.Stats().Writes; w != 0 {
		t.Errorf("restart over correct state made %d writes", w)
	}
}
