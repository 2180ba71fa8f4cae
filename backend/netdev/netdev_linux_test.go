package netdev

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/flannelng/flannel/backend/internal/netlab"
	"github.com/flannelng/flannel/backend/kernel"
)

// Ensure sets MTU, the one overlay address (an old lease's address goes,
// someone else's stays) and link state, and a second call writes nothing.
func TestPrivilegedEnsure(t *testing.T) {
	netlab.RequireRoot(t)
	ns := netlab.NewNS(t, "flt-netdev")
	// No dummy module on every kernel (this CI machine has none): a veth.
	ns.IP(t, "link", "add", "tun9", "mtu", "1500", "type", "veth", "peer", "name", "tun9p")
	ns.IP(t, "addr", "add", "10.5.9.0/32", "dev", "tun9")     // an old lease's
	ns.IP(t, "addr", "add", "192.168.77.1/24", "dev", "tun9") // not ours
	ns.IP(t, "-6", "addr", "add", "fd10:0:0:9::/128", "dev", "tun9", "nodad")
	h, err := kernel.Open(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ensure := func(w Want) {
		t.Helper()
		link, err := h.LinkByName("tun9")
		if err != nil {
			t.Fatal(err)
		}
		if err := Ensure(h, link, w); err != nil {
			t.Fatal(err)
		}
	}
	// Before the lease: the MTU only.
	ensure(Want{Name: "tun9", MTU: 1450})
	out := ns.IP(t, "addr", "show", "dev", "tun9")
	if !strings.Contains(out, "mtu 1450") || !strings.Contains(out, "10.5.9.0/32") || strings.Contains(out, "UP") {
		t.Fatalf("before the lease:\n%s", out)
	}
	v4 := Want{Name: "tun9", MTU: 1450, Addr: netip.MustParsePrefix("10.5.1.0/32"), Network: netip.MustParsePrefix("10.5.0.0/16")}
	v6 := Want{Name: "tun9", MTU: 1450, Addr: netip.MustParsePrefix("fd10:0:0:1::/128"), Network: netip.MustParsePrefix("fd10::/48")}
	ensure(v4)
	ensure(v6)
	out = ns.IP(t, "addr", "show", "dev", "tun9")
	for _, want := range []string{"mtu 1450", "UP", "inet 10.5.1.0/32", "inet 192.168.77.1/24", "inet6 fd10:0:0:1::/128"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q:\n%s", want, out)
		}
	}
	for _, gone := range []string{"10.5.9.0", "fd10:0:0:9::"} {
		if strings.Contains(out, gone) {
			t.Errorf("stale %s kept:\n%s", gone, out)
		}
	}
	before := h.Stats().Writes
	ensure(v4)
	ensure(v6)
	if w := h.Stats().Writes - before; w != 0 {
		t.Errorf("a second Ensure wrote %d times", w)
	}
}
