package vxlan

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/flannelng/flannel/backend"
	"github.com/flannelng/flannel/backend/internal/netlab"
	"github.com/flannelng/flannel/backend/kernel"
	"github.com/flannelng/flannel/subnet"
)

// node is one host of a lab running our backend in-process.
type node struct {
	host  *netlab.Host
	cfg   backend.Config
	be    backend.Backend
	attrs subnet.LeaseAttrs
	lease subnet.Lease
	nw    *network
	log   *netlab.LogBuf
}

func newConfig(lab *netlab.Lab, h *netlab.Host, raw string, v6 bool, log *netlab.LogBuf) backend.Config {
	return backend.Config{
		EnableIPv4:  true,
		EnableIPv6:  v6,
		Network:     lab.Network,
		IPv6Network: lab.Network6,
		Raw:         []byte(raw),
		Ext:         h.Ext,
		NetnsPath:   h.NS.Path,
		Log:         log.Logger(),
	}
}

// startNode runs New, Prepare(prev) and Configure on host h.
func startNode(t testing.TB, lab *netlab.Lab, h *netlab.Host, raw string, v6 bool, prev *subnet.LeaseAttrs) *node {
	t.Helper()
	n := &node{host: h, log: &netlab.LogBuf{}}
	n.cfg = newConfig(lab, h, raw, v6, n.log)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of %s:\n%s", h.NS.Name, n.log.String())
		}
	})
	be, err := New(n.cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.be = be
	ctx := context.Background()
	if n.attrs, err = be.Prepare(ctx, prev); err != nil {
		t.Fatal(err)
	}
	n.lease = subnet.Lease{Subnet: h.Subnet, Attrs: n.attrs}
	if v6 {
		n.lease.IPv6Subnet = h.Subnet6
	}
	nw, err := be.Configure(ctx, n.lease)
	if err != nil {
		t.Fatal(err)
	}
	n.nw = nw.(*network)
	t.Cleanup(func() { _ = nw.Close() })
	return n
}

// peersOf lists the leases of all nodes but self.
func peersOf(nodes []*node, self *node) []subnet.Lease {
	var ls []subnet.Lease
	for _, n := range nodes {
		if n != self {
			ls = append(ls, n.lease)
		}
	}
	return ls
}

func (n *node) reconcile(t testing.TB, peers []subnet.Lease) {
	t.Helper()
	if err := n.nw.Reconcile(context.Background(), peers); err != nil {
		t.Fatalf("Reconcile on %s: %v", n.host.NS.Name, err)
	}
}

func (n *node) stats() kernel.Stats { return n.nw.rec.Stats() }

// settle waits for the notifications of our own writes to be processed,
// so that a test can tell whether they (wrongly) marked the state dirty.
func settle() { time.Sleep(300 * time.Millisecond) }

// drainChanged empties the Changed channel.
func drainChanged(nw backend.Network) {
	for {
		select {
		case <-nw.Changed():
		default:
			return
		}
	}
}

// waitChanged waits for Changed to fire.
func waitChanged(t *testing.T, nw backend.Network, what string) {
	t.Helper()
	select {
	case <-nw.Changed():
	case <-time.After(3 * time.Second):
		t.Fatalf("Changed did not fire after %s", what)
	}
}

// kstate reads what the kernel holds for assertions.
type kstate struct {
	h *netlink.Handle
}

func (k kstate) link(t *testing.T, name string) *netlink.Vxlan {
	t.Helper()
	l, err := k.h.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	v, ok := l.(*netlink.Vxlan)
	if !ok {
		t.Fatalf("%s is a %s", name, l.Type())
	}
	return v
}

func (k kstate) routes(t *testing.T, family int) []netlink.Route {
	t.Helper()
	rs, err := k.h.RouteList(nil, family)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// route finds the main-table route to dst (a prefix string).
func (k kstate) route(t *testing.T, dst string) (netlink.Route, bool) {
	t.Helper()
	fam := unix.AF_INET
	if strings.Contains(dst, ":") {
		fam = unix.AF_INET6
	}
	for _, r := range k.routes(t, fam) {
		if r.Dst != nil && r.Dst.String() == dst {
			return r, true
		}
	}
	return netlink.Route{}, false
}

func (k kstate) neighs(t *testing.T, link, family int) []netlink.Neigh {
	t.Helper()
	ns, err := k.h.NeighList(link, family)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// neigh finds the neighbour entry for ip on link.
func (k kstate) neigh(t *testing.T, link int, ip string) (netlink.Neigh, bool) {
	t.Helper()
	fam := unix.AF_INET
	if strings.Contains(ip, ":") {
		fam = unix.AF_INET6
	}
	for _, n := range k.neighs(t, link, fam) {
		if n.IP.String() == ip {
			return n, true
		}
	}
	return netlink.Neigh{}, false
}

// fdb lists the FDB entries of link as "mac dst" strings.
func (k kstate) fdb(t *testing.T, link int) map[string]netlink.Neigh {
	t.Helper()
	out := map[string]netlink.Neigh{}
	for _, n := range k.neighs(t, link, unix.AF_BRIDGE) {
		if n.LinkIndex == link {
			out[n.HardwareAddr.String()+" "+n.IP.String()] = n
		}
	}
	return out
}

func macOf(t *testing.T, attrs []byte) string {
	t.Helper()
	_, mac, err := decodeBackendData(attrs)
	if err != nil {
		t.Fatal(err)
	}
	return mac.String()
}
