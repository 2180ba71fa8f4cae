package hostgw

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/flannelng/flannel/backend"
	"github.com/flannelng/flannel/subnet"
)

func TestRefusesNAT(t *testing.T) {
	ext := backend.ExternalInterface{
		Name: "eth0", Index: 2, MTU: 1500,
		IfaceAddr: netip.MustParseAddr("192.168.1.5"),
		ExtAddr:   netip.MustParseAddr("203.0.113.5"),
	}
	_, err := New(backend.Config{EnableIPv4: true, Ext: ext})
	const want = "your PublicIP differs from interface IP, meaning that probably you're on a NAT, which is not supported by host-gw backend"
	if err == nil || err.Error() != want {
		t.Fatalf("New = %v, want %q", err, want)
	}

	ext.ExtAddr = ext.IfaceAddr
	ext.IfaceV6Addr = netip.MustParseAddr("fd31::5")
	ext.ExtV6Addr = netip.MustParseAddr("2001:db8::5")
	if _, err := New(backend.Config{EnableIPv4: true, EnableIPv6: true, Ext: ext}); err == nil || err.Error() != want {
		t.Fatalf("IPv6 NAT: New = %v, want %q", err, want)
	}
	if err := checkConfig(backend.Config{EnableIPv4: true, Ext: ext}); err != nil {
		t.Fatalf("IPv6 ignored when disabled: %v", err)
	}
}

func TestPlannerState(t *testing.T) {
	p := planner{v4: true, v6: true, own4: netip.MustParsePrefix("10.5.1.0/24"), own6: netip.MustParsePrefix("fd10:0:0:1::/64"), extIndex: 2}
	mk := func(sn, sn6, pub, pub6, typ string) subnet.Lease {
		l := subnet.Lease{Attrs: subnet.LeaseAttrs{BackendType: typ}}
		if sn != "" {
			l.Subnet = netip.MustParsePrefix(sn)
		}
		if sn6 != "" {
			l.IPv6Subnet = netip.MustParsePrefix(sn6)
		}
		if pub != "" {
			l.Attrs.PublicIP = netip.MustParseAddr(pub)
		}
		if pub6 != "" {
			l.Attrs.PublicIPv6 = netip.MustParseAddr(pub6)
		}
		return l
	}
	st, skipped := p.state([]subnet.Lease{
		mk("10.5.2.0/24", "fd10:0:0:2::/64", "172.31.0.2", "fd31::2", "host-gw"),
		mk("10.5.3.0/24", "", "172.31.0.3", "", "host-gw"),
		mk("10.5.4.0/24", "", "172.31.0.4", "", "vxlan"),
		mk("10.5.1.0/24", "", "172.31.0.1", "", "host-gw"),
		mk("10.5.5.0/24", "fd10:0:0:5::/64", "172.31.0.5", "", "host-gw"),
	})
	var got []string
	for _, r := range st.Routes {
		got = append(got, r.String())
	}
	want := "10.5.2.0/24 via 172.31.0.2 dev #2|fd10:0:0:2::/64 via fd31::2 dev #2|10.5.3.0/24 via 172.31.0.3 dev #2|10.5.5.0/24 via 172.31.0.5 dev #2"
	if strings.Join(got, "|") != want {
		t.Fatalf("routes %v\nwant %s", got, want)
	}
	if skipped["10.5.4.0-24"] != "Ignoring non-host-gw subnet: type=vxlan" || len(skipped) != 2 ||
		!strings.Contains(skipped["10.5.5.0-24&fd10:0:0:5::-64"], "no public IPv6") {
		t.Fatalf("skipped = %v", fmt.Sprint(skipped))
	}
}

// A lease with no BackendType (upstream's udp and alloc leases) is not a
// host-gw peer, as upstream's host-gw backend decides.
func TestPlannerIgnoresUntypedLease(t *testing.T) {
	p := planner{v4: true, own4: netip.MustParsePrefix("10.5.1.0/24"), extIndex: 2}
	l := subnet.Lease{Subnet: netip.MustParsePrefix("10.5.2.0/24"), Attrs: subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("172.31.0.2")}}
	st, skipped := p.state([]subnet.Lease{l})
	if len(st.Routes) != 0 {
		t.Errorf("an untyped lease was programmed: %v", st.Routes)
	}
	if want := "Ignoring non-host-gw subnet: type="; skipped["10.5.2.0-24"] != want {
		t.Errorf("skipped %v, want %q", skipped, want)
	}
}
