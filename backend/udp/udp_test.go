package udp

import (
	"encoding/json"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/flannelng/flannel/backend"
	"github.com/flannelng/flannel/subnet"
)

func TestParseOptions(t *testing.T) {
	for _, tc := range []struct {
		raw     string
		port    int
		wantErr string
	}{
		{raw: ``, port: 8285},
		{raw: `null`, port: 8285},
		{raw: `{"Type":"udp"}`, port: 8285},
		{raw: `{"Type":"udp","Port":9000}`, port: 9000},
		{raw: `{"type":"UDP","port":9001}`, port: 9001},
		{raw: `{"Port":0}`, port: 8285},
		{raw: `{"Port":65536}`, wantErr: "invalid Backend.Port 65536"},
		{raw: `{"Port":-1}`, wantErr: "invalid Backend.Port -1"},
		{raw: `{"Port":"8285"}`, wantErr: "Backend.Port must be of type int"},
		{raw: `{"Port":`, wantErr: "error decoding UDP backend config"},
	} {
		o, err := ParseOptions(json.RawMessage(tc.raw))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error %v, want %q", tc.raw, err, tc.wantErr)
			}
			continue
		}
		if err != nil || o.Port != tc.port {
			t.Errorf("%s: port %d err %v, want %d", tc.raw, o.Port, err, tc.port)
		}
	}
}

func goodConfig() backend.Config {
	return backend.Config{
		EnableIPv4: true,
		Network:    netip.MustParsePrefix("10.5.0.0/16"),
		Ext: backend.ExternalInterface{
			Name: "eth0", Index: 2, MTU: 1500,
			IfaceAddr: netip.MustParseAddr("172.31.0.1"), ExtAddr: netip.MustParseAddr("172.31.0.1"),
		},
	}
}

func TestCheckConfig(t *testing.T) {
	if err := checkConfig(goodConfig()); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		mod  func(*backend.Config)
		want string
	}{
		"ipv6":      {func(c *backend.Config) { c.EnableIPv6 = true }, "IPv6 is not supported"},
		"no ipv4":   {func(c *backend.Config) { c.EnableIPv4 = false }, "IPv4 is not enabled"},
		"no iface":  {func(c *backend.Config) { c.Ext.IfaceAddr = netip.Addr{} }, "no IPv4 address to bind"},
		"no public": {func(c *backend.Config) { c.Ext.ExtAddr = netip.Addr{} }, "no IPv4 public address"},
		"tiny mtu":  {func(c *backend.Config) { c.Ext.MTU = 90 }, "below IPv4's minimum 68"},
		"v6 net":    {func(c *backend.Config) { c.Network = netip.MustParsePrefix("fd00::/48") }, "not an IPv4 prefix"},
	} {
		c := goodConfig()
		tc.mod(&c)
		err := checkConfig(c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
		if _, err := New(c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New: %v, want %q", name, err, tc.want)
		}
	}
}

func lease(sn, pub, typ string) subnet.Lease {
	l := subnet.Lease{Attrs: subnet.LeaseAttrs{BackendType: typ}}
	if sn != "" {
		l.Subnet = netip.MustParsePrefix(sn)
	}
	if pub != "" {
		l.Attrs.PublicIP = netip.MustParseAddr(pub)
	}
	return l
}

func TestPlanRoutes(t *testing.T) {
	own := netip.MustParseAddr("172.31.0.1")
	peers := []subnet.Lease{
		lease("10.5.2.0/24", "172.31.0.2", "udp"),
		lease("10.5.3.0/24", "172.31.0.3", ""), // upstream's udp lease
		lease("10.5.4.0/24", "172.31.0.4", "vxlan"),
		lease("10.5.5.0/24", "", "udp"),
		lease("10.5.6.0/24", "172.31.0.1", "udp"),
		lease("10.5.2.0/24", "172.31.0.9", "udp"),
		{IPv6Subnet: netip.MustParsePrefix("fd00:0:0:7::/64"), Attrs: subnet.LeaseAttrs{BackendType: "udp", PublicIP: netip.MustParseAddr("172.31.0.7")}},
	}
	routes, skipped := planRoutes(peers, 8285, own)
	want := []route{
		{netip.MustParsePrefix("10.5.2.0/24"), netip.MustParseAddrPort("172.31.0.2:8285")},
		{netip.MustParsePrefix("10.5.3.0/24"), netip.MustParseAddrPort("172.31.0.3:8285")},
	}
	if len(routes) != len(want) || routes[0] != want[0] || routes[1] != want[1] {
		t.Fatalf("routes %v, want %v", routes, want)
	}
	for key, frag := range map[string]string{
		"10.5.4.0-24": "Ignoring non-udp subnet 10.5.4.0-24: type=vxlan",
		"10.5.5.0-24": "no IPv4 public IP",
		"10.5.6.0-24": "our own public IP",
		"10.5.2.0-24": "goes to lease 10.5.2.0-24, whose public IP 172.31.0.2 is the lowest",
	} {
		if !strings.Contains(skipped[key], frag) {
			t.Errorf("skipped[%s] = %q, want %q", key, skipped[key], frag)
		}
	}
	if len(skipped) != 5 {
		t.Errorf("skipped %v", skipped)
	}
}

// Our lease's value is byte for byte what upstream's udp backend writes:
// the public IP and nothing else, no BackendType. Upstream nodes use every
// lease whatever its type, so this is for the tools and operators that
// read the value (and a mixed cluster looks uniform); we accept both forms.
func TestLeaseValueAsUpstream(t *testing.T) {
	cfg := backend.Config{EnableIPv4: true, Ext: backend.ExternalInterface{ExtAddr: netip.MustParseAddr("172.31.0.1")}}
	v, err := subnet.EncodeAttrs(leaseAttrs(cfg))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"PublicIP":"172.31.0.1","PublicIPv6":null}`; string(v) != want {
		t.Errorf("lease value %s, want upstream's %s", v, want)
	}
}

// Both forms of a udp lease are udp peers: upstream's (no BackendType) and
// the "udp" our earlier versions wrote; whatever the order they come in.
func TestPlanRoutesBothForms(t *testing.T) {
	own := netip.MustParseAddr("172.31.0.1")
	for _, typ := range []string{"", "udp"} {
		routes, skipped := planRoutes([]subnet.Lease{lease("10.5.2.0/24", "172.31.0.2", typ)}, 8285, own)
		if len(routes) != 1 || len(skipped) != 0 {
			t.Errorf("BackendType %q: routes %v, skipped %v", typ, routes, skipped)
		}
	}
}

// Two leases for one subnet (the same subnet under two keys, say one with
// an IPv6 half) reach the backend in the lease source's map order, which
// changes from pass to pass: the subnet must go to the same one on every
// pass, and the other's skip reason must not change (it is logged once).
func TestPlanRoutesStableWinner(t *testing.T) {
	own := netip.MustParseAddr("172.31.0.1")
	peers := []subnet.Lease{
		lease("10.5.2.0/24", "172.31.0.9", ""),
		{Subnet: netip.MustParsePrefix("10.5.2.0/24"), IPv6Subnet: netip.MustParsePrefix("fd00:0:0:2::/64"), Attrs: subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("172.31.0.2")}},
		{Subnet: netip.MustParsePrefix("10.5.2.0/24"), IPv6Subnet: netip.MustParsePrefix("fd00:0:0:5::/64"), Attrs: subnet.LeaseAttrs{BackendType: "udp", PublicIP: netip.MustParseAddr("172.31.0.5")}},
		lease("10.5.3.0/24", "172.31.0.3", ""),
	}
	rnd := rand.New(rand.NewPCG(1, 19))
	var firstRoutes []route
	var firstSkipped map[string]string
	for pass := range 30 {
		rnd.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
		routes, skipped := planRoutes(peers, 8285, own)
		slices.SortFunc(routes, func(a, b route) int { return a.Dst.Addr().Compare(b.Dst.Addr()) })
		if pass == 0 {
			firstRoutes, firstSkipped = routes, skipped
			continue
		}
		if !slices.Equal(routes, firstRoutes) || !maps.Equal(skipped, firstSkipped) {
			t.Fatalf("pass %d: routes %v skipped %v; the first pass: routes %v skipped %v", pass, routes, skipped, firstRoutes, firstSkipped)
		}
	}
}

// subnet4 is a compact lease description for tests.
type subnet4 struct{ sn, pub string }

type subnets4 []subnet4

func (s subnets4) leases() []subnet.Lease {
	ls := make([]subnet.Lease, len(s))
	for i, x := range s {
		ls[i] = lease(x.sn, x.pub, BackendType)
	}
	return ls
}
