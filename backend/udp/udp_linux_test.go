package udp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
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

// node is one host of a lab running the udp backend in-process.
type node struct {
	host  *netlab.Host
	cfg   backend.Config
	be    backend.Backend
	attrs subnet.LeaseAttrs
	lease subnet.Lease
	nw    *network
	log   *netlab.LogBuf
}

func newConfig(lab *netlab.Lab, h *netlab.Host, raw string, log *netlab.LogBuf) backend.Config {
	return backend.Config{
		EnableIPv4: true,
		Network:    lab.Network,
		Raw:        []byte(raw),
		Ext:        h.Ext,
		NetnsPath:  h.NS.Path,
		Log:        log.Logger(),
	}
}

// startNode runs New, Prepare and Configure on host h.
func startNode(t testing.TB, lab *netlab.Lab, h *netlab.Host) *node {
	t.Helper()
	n := &node{host: h, log: &netlab.LogBuf{}}
	n.cfg = newConfig(lab, h, `{"Type":"udp"}`, n.log)
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
	if n.attrs, err = be.Prepare(ctx, nil); err != nil {
		t.Fatal(err)
	}
	n.lease = subnet.Lease{Subnet: h.Subnet, Attrs: n.attrs}
	nw, err := be.Configure(ctx, n.lease)
	if err != nil {
		t.Fatal(err)
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

func (n *node) reconcile(t testing.TB, peers []subnet.Lease) {
	t.Helper()
	if err := n.nw.Reconcile(context.Background(), peers); err != nil {
		t.Fatalf("Reconcile on %s: %v", n.host.NS.Name, err)
	}
}

// startLab builds a lab of hosts, runs the backend on each and reconciles
// every node with the others' leases.
func startLab(t testing.TB, hosts int) (*netlab.Lab, []*node) {
	t.Helper()
	lab := netlab.New(t, netlab.Options{Hosts: hosts})
	var nodes []*node
	for _, h := range lab.Hosts {
		nodes = append(nodes, startNode(t, lab, h))
	}
	for _, n := range nodes {
		n.reconcile(t, peersOf(nodes, n))
	}
	return lab, nodes
}

func drainChanged(nw backend.Network) {
	for {
		select {
		case <-nw.Changed():
		default:
			return
		}
	}
}

func waitChanged(t *testing.T, nw backend.Network, what string) {
	t.Helper()
	select {
	case <-nw.Changed():
	case <-time.After(3 * time.Second):
		t.Fatalf("Changed did not fire after %s", what)
	}
}

// settle lets the notifications of our own writes drain.
func settle() { time.Sleep(300 * time.Millisecond) }

// checkDevice asserts flannel0 and the network route as upstream has them,
// and returns the device's index.
func checkDevice(t *testing.T, n *node) int {
	t.Helper()
	h := n.host.NS.Handle(t)
	l, err := h.LinkByName(DeviceName)
	if err != nil {
		t.Fatalf("%s: %v", DeviceName, err)
	}
	tt, ok := l.(*netlink.Tuntap)
	if !ok || tt.Mode != netlink.TUNTAP_MODE_TUN || tt.NonPersist || tt.Flags&netlink.TUNTAP_NO_PI == 0 {
		t.Errorf("%s is %T %+v, want a persistent TUN device without packet info", DeviceName, l, l)
	}
	if a := l.Attrs(); a.MTU != n.host.Ext.MTU-28 || a.Flags&net.FlagUp == 0 || a.TxQLen != txQueueLen {
		t.Errorf("%s: MTU %d flags %v txqueuelen %d, want MTU %d, up, txqueuelen %d",
			DeviceName, a.MTU, a.Flags, a.TxQLen, n.host.Ext.MTU-28, txQueueLen)
	}
	addrs, err := h.AddrList(l, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	want := netip.PrefixFrom(n.host.Subnet.Addr(), 32)
	if len(addrs) != 1 || kernel.PrefixFromIPNet(addrs[0].IPNet) != want {
		t.Errorf("%s addresses %v, want %s", DeviceName, addrs, want)
	}
	r, ok := netlab.FindRoute(t, h, "10.5.0.0/16")
	if !ok || r.LinkIndex != l.Attrs().Index || r.Gw != nil || r.Scope != netlink.SCOPE_LINK || r.Protocol != kernel.RouteProtocol {
		t.Errorf("route 10.5.0.0/16 = %+v (found %v), want dev %s scope link proto 45", r, ok, DeviceName)
	}
	return l.Attrs().Index
}

func pingAll(t *testing.T, nodes []*node) {
	t.Helper()
	for _, from := range nodes {
		for _, to := range nodes {
			if from == to {
				continue
			}
			if out, err := netlab.Ping(from.host.NS, from.host.PodIP(), to.host.PodIP()); err != nil {
				t.Errorf("ping %s -> %s: %v\n%s", from.host.PodIP(), to.host.PodIP(), err, out)
			}
		}
	}
}

func TestPrivilegedUDPRelay(t *testing.T) {
	_, nodes := startLab(t, 3)
	a := nodes[0]
	if a.attrs.BackendType != "" || a.attrs.PublicIP != a.host.Ext.ExtAddr || len(a.attrs.BackendData) != 0 {
		t.Errorf("lease attrs %+v", a.attrs)
	}
	if v, _ := subnet.EncodeAttrs(a.attrs); string(v) != `{"PublicIP":"172.31.0.1","PublicIPv6":null}` {
		t.Errorf("lease value %s", v)
	}
	if a.nw.MTU() != 1472 {
		t.Errorf("MTU %d, want 1472", a.nw.MTU())
	}
	for _, n := range nodes {
		checkDevice(t, n)
		out := n.host.NS.IP(t, "route", "show", "10.5.0.0/16")
		if !strings.Contains(out, "10.5.0.0/16 dev flannel0 proto 45 scope link") {
			t.Errorf("ip route: %q", out)
		}
	}
	pingAll(t, nodes)

	// The host itself (source: flannel0's address) reaches remote pods.
	if out, err := netlab.Ping(a.host.NS, netip.Addr{}, nodes[2].host.PodIP()); err != nil {
		t.Errorf("ping from the host: %v\n%s", err, out)
	}

	// A subnet nobody holds: "Destination Net Unreachable" reaches the
	// sender. (Upstream's answer comes from flannel0's own address and is
	// dropped as a martian.)
	out, err := a.host.NS.Exec("ping", "-n", "-c", "1", "-W", "2", "-I", a.host.PodIP().String(), "10.5.77.1")
	if err == nil || !strings.Contains(out, "From 10.5.77.1") || !strings.Contains(out, "Destination Net Unreachable") {
		t.Errorf("ping to an unleased subnet: %v\n%s", err, out)
	}
	st := a.nw.Stats()
	if st.Sent == 0 || st.Delivered == 0 || st.ICMPSent == 0 || st.SendErrors != 0 || st.TUNErrors != 0 {
		t.Errorf("stats %+v", st)
	}
}

// An upstream node is nothing but a UDP socket on port 8285 exchanging raw
// IP packets: this test plays one with a plain socket and hand-made
// packets, and checks both directions byte by byte.
func TestPrivilegedUDPWireFormat(t *testing.T) {
	lab := netlab.New(t, netlab.Options{Hosts: 2})
	a := startNode(t, lab, lab.Hosts[0])
	hb := lab.Hosts[1]
	// Upstream's lease: no BackendType.
	upstream := subnet.Lease{Subnet: hb.Subnet, Attrs: subnet.LeaseAttrs{PublicIP: hb.Ext.ExtAddr}}
	a.reconcile(t, []subnet.Lease{upstream})

	ns, err := openNS(hb.NS.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.close()
	var conn *net.UDPConn
	if err := ns.run(func() error {
		var err error
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: hb.Ext.IfaceAddr.AsSlice(), Port: DefaultPort})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// An echo request from a pod of the upstream node to a's pod address.
	src, dst := [4]byte{10, 5, 2, 7}, a.host.PodIP().As4()
	echo := []byte{8, 0, 0, 0, 0x12, 0x34, 0, 1, 'f', 'l', 'a', 'n', 'n', 'e', 'l', '!'}
	binary.BigEndian.PutUint16(echo[2:], checksum(echo))
	req := ipPacket(src, dst, 64, protoICMP, 20, echo)
	to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(a.host.Ext.ExtAddr, DefaultPort))

	buf := make([]byte, 2048)
	var n int
	var from netip.AddrPort
	for try := 0; try < 5; try++ { // the first may wait for ARP
		if _, err := conn.WriteToUDP(req, to); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(time.Second))
		if n, from, err = conn.ReadFromUDPAddrPort(buf); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("no answer from the relay: %v (stats %+v)", err, a.nw.Stats())
	}
	if from != netip.AddrPortFrom(a.host.Ext.IfaceAddr, DefaultPort) {
		t.Errorf("answer from %s, want the relay's socket %s:%d", from, a.host.Ext.IfaceAddr, DefaultPort)
	}
	rep := buf[:n]
	hl, ok := ipv4Header(rep)
	if !ok || n != 20+len(echo) || checksum(rep[:hl]) != 0 {
		t.Fatalf("datagram payload is not one IPv4 packet: %x", rep)
	}
	// The kernel answered with TTL 64; the relay decremented it once.
	if rep[offTTL] != 63 || rep[offProtocol] != protoICMP ||
		[4]byte(rep[offSrc:offSrc+4]) != dst || [4]byte(rep[offDst:offDst+4]) != src {
		t.Errorf("reply header %x", rep[:hl])
	}
	if rep[hl] != 0 || string(rep[hl+4:]) != string(echo[4:]) || checksum(rep[hl:]) != 0 {
		t.Errorf("reply body %x, want an echo reply to %x", rep[hl:], echo)
	}
}

func TestPrivilegedUDPRepairsDrift(t *testing.T) {
	_, nodes := startLab(t, 3)
	a := nodes[0]
	ns := a.host.NS
	peers := peersOf(nodes, a)
	settle()
	for _, s := range []struct {
		what string
		do   func()
	}{
		{"deleting the route", func() { ns.IP(t, "route", "del", "10.5.0.0/16") }},
		{"deleting the address", func() { ns.IP(t, "addr", "del", "10.5.1.0/32", "dev", DeviceName) }},
		{"setting the device down", func() { ns.IP(t, "link", "set", DeviceName, "down") }},
		{"changing the MTU", func() { ns.IP(t, "link", "set", DeviceName, "mtu", "1300") }},
		{"deleting the device", func() { ns.IP(t, "link", "del", DeviceName) }},
	} {
		drainChanged(a.nw)
		s.do()
		waitChanged(t, a.nw, s.what)
		a.reconcile(t, peers)
		checkDevice(t, a)
		for _, to := range nodes[1:] {
			if out, err := netlab.Ping(ns, a.host.PodIP(), to.host.PodIP()); err != nil {
				t.Errorf("after %s: ping %s: %v\n%s", s.what, to.host.PodIP(), err, out)
			}
		}
		if t.Failed() {
			t.Fatalf("not repaired after %s", s.what)
		}
	}
	if st := a.nw.Stats(); st.DeviceLosses != 1 {
		t.Errorf("device losses %d, want 1", st.DeviceLosses)
	}
}

func TestPrivilegedUDPPeerChanges(t *testing.T) {
	_, nodes := startLab(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	// c's lease goes: its pods become unreachable with an ICMP error.
	a.reconcile(t, []subnet.Lease{b.lease})
	out, err := a.host.NS.Exec("ping", "-n", "-c", "1", "-W", "2", "-I", a.host.PodIP().String(), c.host.PodIP().String())
	if err == nil || !strings.Contains(out, "Destination Net Unreachable") {
		t.Errorf("ping to a removed peer: %v\n%s", err, out)
	}
	if a.log.Count("Subnet removed: 10.5.3.0/24") != 1 {
		t.Errorf("removal not logged:\n%s", a.log.String())
	}
	// Foreign leases are skipped, once per lease in the log.
	foreign := subnet.Lease{Subnet: netip.MustParsePrefix("10.5.9.0/24"), Attrs: subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("172.31.0.9"), BackendType: "vxlan"}}
	for i := 0; i < 3; i++ {
		a.reconcile(t, []subnet.Lease{b.lease, c.lease, foreign})
	}
	if got := a.log.Count("Ignoring non-udp subnet 10.5.9.0-24: type=vxlan"); got != 1 {
		t.Errorf("foreign lease logged %d times, want once", got)
	}
	pingAll(t, nodes)
}

func TestPrivilegedUDPSecondPassWritesNothing(t *testing.T) {
	_, nodes := startLab(t, 2)
	a := nodes[0]
	settle()
	before := a.nw.rec.Stats()
	a.nw.rec.MarkDirty("test")
	a.reconcile(t, peersOf(nodes, a))
	if d := a.nw.rec.Stats(); d.Writes != before.Writes {
		t.Fatalf("full pass over correct state made %d writes, want 0", d.Writes-before.Writes)
	}
}

func TestPrivilegedUDPRestart(t *testing.T) {
	lab, nodes := startLab(t, 2)
	a, b := nodes[0], nodes[1]
	idx := checkDevice(t, a)
	if err := a.nw.Close(); err != nil {
		t.Fatal(err)
	}
	// Stopped: the device, its address and the route stay.
	checkDevice(t, a)

	// A new process adopts everything and writes nothing.
	a2 := startNode(t, lab, a.host)
	a2.reconcile(t, []subnet.Lease{b.lease})
	if w := a2.nw.rec.Stats().Writes; w != 0 {
		t.Errorf("restart over correct state made %d netlink writes, want 0\n%s", w, a2.log.String())
	}
	if got := checkDevice(t, a2); got != idx {
		t.Errorf("device recreated at restart (index %d -> %d)", idx, got)
	}
	if a2.log.Count("attached to existing TUN device") != 1 {
		t.Errorf("adoption not logged:\n%s", a2.log.String())
	}
	pingAll(t, []*node{a2, b})

	// A second daemon on the same node gets a clear error.
	second, err := New(newConfig(lab, a.host, `{"Type":"udp"}`, &netlab.LogBuf{}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := second.Prepare(context.Background(), nil); err == nil || !errors.Is(err, errTUNBusy) {
		t.Errorf("second daemon: %v, want %v", err, errTUNBusy)
	}
}

func TestPrivilegedUDPPortInUse(t *testing.T) {
	lab := netlab.New(t, netlab.Options{Hosts: 1})
	h := lab.Hosts[0]
	ns, err := openNS(h.NS.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.close()
	var conn *net.UDPConn
	if err := ns.run(func() error {
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{Port: DefaultPort})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	be, err := New(newConfig(lab, h, `{"Type":"udp"}`, &netlab.LogBuf{}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = be.Prepare(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "failed to start listening on UDP socket 172.31.0.1:8285") ||
		!errors.Is(err, unix.EADDRINUSE) {
		t.Errorf("Prepare with the port taken: %v", err)
	}
}

func TestPrivilegedUDPIncompatibleDeviceReplaced(t *testing.T) {
	for _, mode := range []string{"tap", "tun multi_queue"} {
		t.Run(strings.ReplaceAll(mode, " ", "_"), func(t *testing.T) {
			lab := netlab.New(t, netlab.Options{Hosts: 2})
			args := append([]string{"tuntap", "add", "dev", DeviceName, "mode"}, strings.Fields(mode)...)
			lab.Hosts[0].NS.IP(t, args...)
			nodes := []*node{startNode(t, lab, lab.Hosts[0]), startNode(t, lab, lab.Hosts[1])}
			for _, n := range nodes {
				n.reconcile(t, peersOf(nodes, n))
			}
			checkDevice(t, nodes[0])
			if nodes[0].log.Count("recreating device") != 1 {
				t.Errorf("replacement not logged:\n%s", nodes[0].log.String())
			}
			pingAll(t, nodes)
		})
	}
}

func TestPrivilegedUDPOtherRoutesKept(t *testing.T) {
	lab := netlab.New(t, netlab.Options{Hosts: 2})
	ns := lab.Hosts[0].NS
	// What upstream leaves after a crash is nothing (its device is not
	// persistent); a route that another program put on the network stays.
	ns.IP(t, "route", "add", "10.5.77.0/24", "via", "172.31.0.50", "dev", "eth0", "proto", "static")
	nodes := []*node{startNode(t, lab, lab.Hosts[0]), startNode(t, lab, lab.Hosts[1])}
	for _, n := range nodes {
		n.reconcile(t, peersOf(nodes, n))
	}
	if _, ok := netlab.FindRoute(t, ns.Handle(t), "10.5.77.0/24"); !ok {
		t.Error("another program's route was removed")
	}
	pingAll(t, nodes)
}

// TestPrivilegedRelayAllocs counts allocations of the whole process while
// datagrams cross both relays: host 0's socket → its TUN → relay → UDP →
// host 1's relay → its TUN → host 1's socket. Everything else in the
// process is idle, so this is the relays' per-packet figure (target 0).
func TestPrivilegedRelayAllocs(t *testing.T) {
	_, nodes := startLab(t, 2)
	p := newPump(t, nodes[0], nodes[1])
	p.once(t) // resolve neighbours
	allocs := testing.AllocsPerRun(2000, func() { p.once(t) })
	t.Logf("allocations per packet through two relays (and the test's sockets): %v", allocs)
	if allocs != 0 {
		t.Errorf("%v allocations per relayed packet, want 0", allocs)
	}
}

// BenchmarkPrivilegedRelay measures one datagram at a time crossing two
// in-process relays (latency-bound: ns/op is a round of both relays, a TUN
// write and read on each side and the underlay hop), with allocations.
func BenchmarkPrivilegedRelay(b *testing.B) {
	_, nodes := startLab(b, 2)
	p := newPump(b, nodes[0], nodes[1])
	p.once(b)
	b.ReportAllocs()
	b.SetBytes(1400)
	for b.Loop() {
		p.once(b)
	}
}

// pump sends datagrams between a socket on one host's pod address and a
// socket on another's, through the overlay.
type pump struct {
	tx, rx *net.UDPConn
	to     netip.AddrPort
	out    []byte
	in     []byte
}

func newPump(t testing.TB, from, to *node) *pump {
	t.Helper()
	open := func(h *netlab.Host, port int) *net.UDPConn {
		ns, err := openNS(h.NS.Path)
		if err != nil {
			t.Fatal(err)
		}
		defer ns.close()
		var c *net.UDPConn
		if err := ns.run(func() error {
			c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(h.PodIP(), uint16(port))))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	p := &pump{
		tx:  open(from.host, 5001),
		rx:  open(to.host, 5002),
		to:  netip.AddrPortFrom(to.host.PodIP(), 5002),
		out: make([]byte, 1400),
		in:  make([]byte, 2048),
	}
	// One deadline for the whole run: setting one per packet would
	// allocate a timer in the test, not in the relay.
	p.rx.SetReadDeadline(time.Now().Add(2 * time.Minute))
	return p
}

func (p *pump) once(t testing.TB) {
	if _, err := p.tx.WriteToUDPAddrPort(p.out, p.to); err != nil {
		t.Fatal(err)
	}
	n, err := p.rx.Read(p.in)
	if err != nil || n != len(p.out) {
		t.Fatal(fmt.Errorf("receive through the relays: %d bytes, %w", n, err))
	}
}

// BenchmarkPrivilegedRelayTCP streams TCP between the pod addresses of two
// hosts through two in-process relays: bytes/s with both relays, the
// kernel's TCP stacks and the test's copy loops sharing the machine.
func BenchmarkPrivilegedRelayTCP(b *testing.B) {
	_, nodes := startLab(b, 2)
	from, to := nodes[0].host, nodes[1].host
	listen := func() net.Listener {
		ns, err := openNS(to.NS.Path)
		if err != nil {
			b.Fatal(err)
		}
		defer ns.close()
		var ln net.Listener
		if err := ns.run(func() error {
			ln, err = net.Listen("tcp4", netip.AddrPortFrom(to.PodIP(), 5003).String())
			return err
		}); err != nil {
			b.Fatal(err)
		}
		return ln
	}
	ln := listen()
	defer ln.Close()
	done := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- -1
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		done <- n
	}()
	ns, err := openNS(from.NS.Path)
	if err != nil {
		b.Fatal(err)
	}
	defer ns.close()
	var conn net.Conn
	if err := ns.run(func() error {
		conn, err = net.DialTimeout("tcp4", netip.AddrPortFrom(to.PodIP(), 5003).String(), 5*time.Second)
		return err
	}); err != nil {
		b.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		if _, err := conn.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	conn.Close()
	if n := <-done; n != int64(b.N)*int64(len(chunk)) {
		b.Fatalf("received %d bytes, sent %d", n, b.N*len(chunk))
	}
}

// A persistent TUN device left by someone else (here `ip tuntap`), with an
// upstream-style route and a stale address, is adopted: same device, our
// address only, the route re-marked as ours.
func TestPrivilegedUDPAdoptsExistingDevice(t *testing.T) {
	lab := netlab.New(t, netlab.Options{Hosts: 2})
	ns := lab.Hosts[0].NS
	ns.IP(t, "tuntap", "add", "dev", DeviceName, "mode", "tun")
	ns.IP(t, "addr", "add", "10.5.9.0/32", "dev", DeviceName)
	ns.IP(t, "link", "set", DeviceName, "up")
	ns.IP(t, "route", "add", "10.5.0.0/16", "dev", DeviceName, "scope", "global")
	l, err := ns.Handle(t).LinkByName(DeviceName)
	if err != nil {
		t.Fatal(err)
	}
	nodes := []*node{startNode(t, lab, lab.Hosts[0]), startNode(t, lab, lab.Hosts[1])}
	for _, n := range nodes {
		n.reconcile(t, peersOf(nodes, n))
	}
	if idx := checkDevice(t, nodes[0]); idx != l.Attrs().Index {
		t.Errorf("device recreated (index %d -> %d)", l.Attrs().Index, idx)
	}
	pingAll(t, nodes)
}
