package wireguard

import (
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/backend"
	"github.com/flannelng/flannel/backend/internal/netlab"
	"github.com/flannelng/flannel/subnet"
)

type node struct {
	host  *netlab.Host
	lease subnet.Lease
	nw    *network
	log   *netlab.LogBuf
}

// startNode runs the backend for h in its namespace (NetnsPath): the TUN
// and wireguard-go's UDP sockets are made inside it. The devices of all
// nodes live in this one process, so only the first gets the UAPI socket;
// the others log that and run without it.
func startNode(t *testing.T, lab *netlab.Lab, h *netlab.Host, raw string) *node {
	t.Helper()
	n := &node{host: h, log: &netlab.LogBuf{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of %s:\n%s", h.NS.Name, n.log.String())
		}
	})
	opts, err := ParseOptions([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	be, err := newBackend(backend.Config{
		EnableIPv4: true, EnableIPv6: true,
		Network: lab.Network, IPv6Network: lab.Network6,
		Raw: []byte(raw), Ext: h.Ext, NetnsPath: h.NS.Path, Log: n.log.Logger(),
	}, opts, filepath.Join(t.TempDir(), "wgkey"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	attrs, err := be.Prepare(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if attrs.BackendType != BackendType || attrs.PublicIP != h.Ext.ExtAddr || attrs.PublicIPv6 != h.Ext.ExtV6Addr {
		t.Fatalf("lease attrs %+v", attrs)
	}
	n.lease = subnet.Lease{Subnet: h.Subnet, IPv6Subnet: h.Subnet6, Attrs: attrs}
	nw, err := be.Configure(ctx, n.lease)
	if err != nil {
		t.Fatal(err)
	}
	if nw.MTU() != 1420 {
		t.Errorf("MTU() = %d, want 1420", nw.MTU())
	}
	n.nw = nw.(*network)
	t.Cleanup(func() { _ = nw.Close() })
	return n
}

func TestPrivilegedWireguardUserspace(t *testing.T) {
	lab := netlab.New(t, netlab.Options{Hosts: 2})
	const raw = `{"Type":"wireguard","Implementation":"userspace"}`
	a, b := startNode(t, lab, lab.Hosts[0], raw), startNode(t, lab, lab.Hosts[1], raw)
	ctx := context.Background()
	pass := func() {
		t.Helper()
		if err := a.nw.Reconcile(ctx, []subnet.Lease{b.lease}); err != nil {
			t.Fatal(err)
		}
		if err := b.nw.Reconcile(ctx, []subnet.Lease{a.lease}); err != nil {
			t.Fatal(err)
		}
	}
	pass()
	ping := func(what string) {
		t.Helper()
		for _, dst := range [][2]netip.Addr{{a.host.PodIP(), b.host.PodIP()}, {a.host.PodIP6(), b.host.PodIP6()}} {
			// A handshake initiation lost to underlay neighbour
			// resolution is retried by WireGuard after 5 s.
			var out string
			var err error
			for end := time.Now().Add(12 * time.Second); time.Now().Before(end); {
				if out, err = netlab.Ping(a.host.NS, dst[0], dst[1]); err == nil {
					break
				}
			}
			if err != nil {
				for _, n := range []*node{a, b} {
					for _, d := range n.nw.b.devs {
						if e, ok := d.eng.(*userEngine); ok {
							s, _ := e.dev.IpcGet()
							t.Logf("%s %s:\n%s", n.host.NS.Name, d.name, s)
						}
					}
					t.Logf("%s", n.host.NS.IP(t, "-6", "route"))
					t.Logf("%s", n.host.NS.IP(t, "-6", "addr"))
				}
				t.Fatalf("%s: ping %s -> %s: %v\n%s", what, dst[0], dst[1], err, out)
			}
		}
	}
	ping("start")
	ns := a.host.NS
	for _, want := range []string{"10.5.0.0/16 proto 45 scope link"} {
		if out := ns.IP(t, "route", "show", "dev", "flannel-wg"); !strings.Contains(out, want) {
			t.Errorf("routes: %q, want %q", out, want)
		}
	}
	if out := ns.IP(t, "-6", "route", "show", "dev", "flannel-wg-v6"); !strings.Contains(out, "fd10::/48 proto 45") {
		t.Errorf("v6 routes: %q", out)
	}

	// Drift: the route, then the device itself. The reconciler's
	// notification (or the peer check, for a stopped device) asks for a
	// pass, which repairs it.
	for _, step := range []struct {
		what string
		do   func()
	}{
		{"deleting the overlay route", func() { ns.IP(t, "route", "del", "10.5.0.0/16", "dev", "flannel-wg") }},
		{"deleting the device", func() { ns.IP(t, "link", "del", "flannel-wg") }},
	} {
		for len(a.nw.Changed()) > 0 {
			<-a.nw.Changed()
		}
		step.do()
		select {
		case <-a.nw.Changed():
		case <-time.After(3 * time.Second):
			t.Fatalf("Changed did not fire after %s", step.what)
		}
		var err error
		for i := 0; i < 20; i++ {
			if err = a.nw.Reconcile(ctx, []subnet.Lease{b.lease}); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("after %s: %v", step.what, err)
		}
		ping("after " + step.what)
	}
	if a.log.Count("wireguard device vanished; recreating it") != 1 {
		t.Errorf("device re-creation not logged once")
	}

	// A pass over unchanged state changes no peer.
	before := a.log.Count("Subnet(s) added")
	pass()
	if a.log.Count("Subnet(s) added") != before {
		t.Errorf("a pass over unchanged state rewrote peers")
	}
}

// Mode auto: one device carries both families; one peer per node with
// both subnets, and the lease advertises the one port really bound.
func TestPrivilegedWireguardSingleTunnel(t *testing.T) {
	lab := netlab.New(t, netlab.Options{Hosts: 2})
	const raw = `{"Type":"wireguard","Implementation":"userspace","Mode":"auto","PersistentKeepaliveInterval":25}`
	a, b := startNode(t, lab, lab.Hosts[0], raw), startNode(t, lab, lab.Hosts[1], raw)
	if len(a.nw.b.devs) != 1 || a.nw.b.devs[0].name != DeviceName {
		t.Fatalf("devices %v, want flannel-wg only", a.nw.b.devs)
	}
	if _, port, err := decodeLeaseData(a.lease.Attrs.BackendV6Data); err != nil || port != DefaultListenPort {
		t.Errorf("BackendV6Data %s: want Port %d, the single device's", a.lease.Attrs.BackendV6Data, DefaultListenPort)
	}
	ctx := context.Background()
	if err := a.nw.Reconcile(ctx, []subnet.Lease{b.lease}); err != nil {
		t.Fatal(err)
	}
	if err := b.nw.Reconcile(ctx, []subnet.Lease{a.lease}); err != nil {
		t.Fatal(err)
	}
	peers, err := a.nw.b.devs[0].eng.peers()
	if err != nil || len(peers) != 1 {
		t.Fatalf("peers %v %v", peers, err)
	}
	// Private v4 and ULA v6 public addresses: auto picks v4.
	if got := peers[0].String(); !strings.HasSuffix(got, "endpoint 172.31.0.2:51820 allowed-ips 10.5.2.0/24,fd10:0:0:2::/64") || peers[0].Keepalive != 25*time.Second {
		t.Errorf("peer %s keepalive %v", got, peers[0].Keepalive)
	}
	for _, dst := range [][2]netip.Addr{{a.host.PodIP(), b.host.PodIP()}, {a.host.PodIP6(), b.host.PodIP6()}} {
		var out string
		for end := time.Now().Add(12 * time.Second); time.Now().Before(end); {
			if out, err = netlab.Ping(a.host.NS, dst[0], dst[1]); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("ping %s -> %s: %v\n%s", dst[0], dst[1], err, out)
		}
	}
	for _, args := range [][]string{{"route", "show", "dev", "flannel-wg"}, {"-6", "route", "show", "dev", "flannel-wg"}} {
		out := a.host.NS.IP(t, args...)
		if !strings.Contains(out, "10.5.0.0/16 proto 45") && !strings.Contains(out, "fd10::/48 proto 45") {
			t.Errorf("ip %v: %q", args, out)
		}
	}
}

// Implementation "kernel" on a kernel without WireGuard (this CI machine)
// fails in Prepare, before any lease is written, with a line that says
// what to do.
func TestPrivilegedWireguardKernelMissing(t *testing.T) {
	lab := netlab.New(t, netlab.Options{Hosts: 1})
	h := lab.Hosts[0]
	raw := `{"Type":"wireguard","Implementation":"kernel"}`
	opts, _ := ParseOptions([]byte(raw))
	be, err := newBackend(backend.Config{EnableIPv4: true, Network: lab.Network, Raw: []byte(raw), Ext: h.Ext,
		NetnsPath: h.NS.Path, Log: (&netlab.LogBuf{}).Logger()}, opts, filepath.Join(t.TempDir(), "wgkey"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = be.Prepare(context.Background(), nil)
	if err == nil {
		t.Skip("this kernel has WireGuard")
	}
	want := `could not create wireguard interface: operation not supported (the kernel has no WireGuard; set Backend.Implementation to "auto" or "userspace")`
	if err.Error() != want {
		t.Errorf("Prepare: %v\nwant %s", err, want)
	}
	if out := h.NS.IP(t, "link", "show"); strings.Contains(out, "flannel-wg") {
		t.Errorf("a device was left behind:\n%s", out)
	}
}
