package ipip

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/backend"
	"github.com/flannelng/flannel/backend/internal/netlab"
	"github.com/flannelng/flannel/backend/kernel"
	"github.com/flannelng/flannel/subnet"
)

func newBackend(t *testing.T, lab *netlab.Lab, h *netlab.Host, log *netlab.LogBuf) *ipipBackend {
	t.Helper()
	be, err := New(backend.Config{
		EnableIPv4: true, Network: lab.Network, Raw: []byte(`{"Type":"ipip"}`),
		Ext: h.Ext, NetnsPath: h.NS.Path, Log: log.Logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return be.(*ipipBackend)
}

// On a kernel without ipip (this project's CI machine), Prepare fails with
// the one line naming the module and the alternatives, and leaves no
// device behind. On a kernel with it, the backend builds upstream's device
// and routes, pods reach each other and a deleted route comes back.
func TestPrivilegedIPIP(t *testing.T) {
	lab := netlab.New(t, netlab.Options{Hosts: 2})
	ctx := context.Background()
	logs := []*netlab.LogBuf{{}, {}}
	t.Cleanup(func() {
		if t.Failed() {
			for i, l := range logs {
				t.Logf("log of host %d:\n%s", i, l.String())
			}
		}
	})
	var bes []*ipipBackend
	var leases []subnet.Lease
	for i, h := range lab.Hosts {
		be := newBackend(t, lab, h, logs[i])
		attrs, err := be.Prepare(ctx, nil)
		if errors.Is(err, errNoModule) {
			if i > 0 {
				t.Fatalf("host %d: no module, host 0 had one", i)
			}
			out := h.NS.IP(t, "-d", "link", "show")
			if strings.Contains(out, "ipip") || strings.Contains(out, DeviceName) {
				t.Errorf("a failed start left a device:\n%s", out)
			}
			if be.h != nil {
				t.Error("the netlink handle of a failed Prepare is still open")
			}
			t.Logf("kernel without ipip: %v", err)
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if attrs.BackendType != "ipip" || attrs.PublicIP != h.Ext.ExtAddr || attrs.BackendData != nil || attrs.PublicIPv6.IsValid() {
			t.Fatalf("lease attrs %+v", attrs)
		}
		bes = append(bes, be)
		leases = append(leases, subnet.Lease{Subnet: h.Subnet, Attrs: attrs})
	}
	var nws []*network
	for i, be := range bes {
		nw, err := be.Configure(ctx, leases[i])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = nw.Close() })
		if nw.MTU() != lab.Hosts[i].Ext.MTU-20 {
			t.Errorf("MTU() = %d", nw.MTU())
		}
		nws = append(nws, nw.(*network))
	}
	for i, nw := range nws {
		if err := nw.Reconcile(ctx, []subnet.Lease{leases[1-i]}); err != nil {
			t.Fatal(err)
		}
	}
	a := lab.Hosts[0]
	out := a.NS.IP(t, "-d", "addr", "show", "dev", DeviceName)
	for _, want := range []string{"mtu 1480", "ipip", "local 172.31.0.1", "inet 10.5.1.0/32", "UP"} {
		if !strings.Contains(out, want) {
			t.Errorf("device lacks %q:\n%s", want, out)
		}
	}
	route := a.NS.IP(t, "route", "show", "10.5.2.0/24")
	if !strings.Contains(route, "10.5.2.0/24 via 172.31.0.2 dev flannel.ipip proto 45 onlink") {
		t.Errorf("route %q", route)
	}
	if out, err := netlab.Ping(a.NS, a.PodIP(), lab.Hosts[1].PodIP()); err != nil {
		t.Fatalf("ping over ipip: %v\n%s", err, out)
	}

	// Drift: a deleted route and a downed device are repaired.
	nw := nws[0]
	for _, step := range [][]string{{"route", "del", "10.5.2.0/24"}, {"link", "set", DeviceName, "down"}} {
		for len(nw.Changed()) > 0 {
			<-nw.Changed()
		}
		a.NS.IP(t, step...)
		select {
		case <-nw.Changed():
		case <-time.After(3 * time.Second):
			t.Fatalf("no Changed after %v", step)
		}
		var err error
		for i := 0; i < 20; i++ {
			if err = nw.Reconcile(ctx, []subnet.Lease{leases[1]}); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("after %v: %v", step, err)
		}
		if r, ok := netlab.FindRoute(t, a.NS.Handle(t), "10.5.2.0/24"); !ok || r.Protocol != kernel.RouteProtocol {
			t.Errorf("after %v: route %+v %v", step, r, ok)
		}
	}
	if out, err := netlab.Ping(a.NS, a.PodIP(), lab.Hosts[1].PodIP()); err != nil {
		t.Errorf("ping after repairs: %v\n%s", err, out)
	}
}
