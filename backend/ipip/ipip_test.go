package ipip

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/flannelng/flannel/backend"
	"github.com/flannelng/flannel/subnet"
)

func TestParseOptions(t *testing.T) {
	o, err := ParseOptions(json.RawMessage(`{"Type":"ipip","directrouting":true,"MTU":1300}`))
	if err != nil || !o.DirectRouting {
		t.Fatalf("ParseOptions = %+v, %v", o, err)
	}
	if o, err := ParseOptions(nil); err != nil || o.DirectRouting {
		t.Fatalf("defaults = %+v, %v", o, err)
	}
	_, err = ParseOptions(json.RawMessage(`{"DirectRouting":"yes"}`))
	if err == nil || !strings.HasPrefix(err.Error(), "error decoding IPIP backend config: json: cannot unmarshal string") {
		t.Fatalf("bad DirectRouting: %v", err)
	}
}

func TestCheckConfig(t *testing.T) {
	ok := backend.Config{EnableIPv4: true, Network: netip.MustParsePrefix("10.5.0.0/16"),
		Ext: backend.ExternalInterface{Name: "eth0", Index: 2, MTU: 1500, IfaceAddr: netip.MustParseAddr("172.31.0.1"), ExtAddr: netip.MustParseAddr("172.31.0.1")}}
	if err := checkConfig(ok); err != nil {
		t.Fatal(err)
	}
	v6 := ok
	v6.EnableIPv6 = true
	small := ok
	small.Ext.MTU = 20
	noAddr := ok
	noAddr.Ext.IfaceAddr = netip.Addr{}
	for name, tc := range map[string]struct {
		cfg  backend.Config
		want string
	}{
		"ipv6":    {v6, "ipip backend: carries IPv4 only"},
		"mtu":     {small, "MTU 20 of iface eth0 is too small for ipip mode to work"},
		"no addr": {noAddr, "ipip backend: the external interface has no IPv4 address"},
	} {
		if err := checkConfig(tc.cfg); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
	}
}

func mk(sn, pub, typ string) subnet.Lease {
	l := subnet.Lease{Attrs: subnet.LeaseAttrs{BackendType: typ}}
	if sn != "" {
		l.Subnet = netip.MustParsePrefix(sn)
	}
	if pub != "" {
		l.Attrs.PublicIP = netip.MustParseAddr(pub)
	}
	return l
}

// The wanted routes for a set of leases: upstream's `<subnet> via <public
// IP> dev flannel.ipip onlink`, our own subnet and other backends' leases
// left out; with DirectRouting a directly reachable peer goes through the
// external interface, onlink kept.
func TestPlannerState(t *testing.T) {
	leases := []subnet.Lease{
		mk("10.5.2.0/24", "172.31.0.2", "ipip"),
		mk("10.5.3.0/24", "192.168.9.3", "ipip"),
		mk("10.5.4.0/24", "172.31.0.4", "vxlan"),
		mk("10.5.6.0/24", "172.31.0.6", ""),
		mk("10.5.1.0/24", "172.31.0.1", "ipip"), // ours
		mk("10.5.5.0/24", "", "ipip"),
		{Subnet: netip.MustParsePrefix("10.5.7.0/24"), IPv6Subnet: netip.MustParsePrefix("fd10:0:0:7::/64"),
			Attrs: subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("172.31.0.7"), PublicIPv6: netip.MustParseAddr("fd31::7"), BackendType: "ipip"}},
	}
	p := planner{own: netip.MustParsePrefix("10.5.1.0/24"), devIndex: 9}
	routes := func(p planner) (string, map[string]string) {
		st, skipped := p.state(leases)
		var out []string
		for _, r := range st.Routes {
			out = append(out, r.String())
		}
		if len(st.Neighs)+len(st.FDB)+len(st.Devices) > 0 {
			t.Errorf("planner wants more than routes: %+v", st)
		}
		return strings.Join(out, "|"), skipped
	}
	got, skipped := routes(p)
	want := "10.5.2.0/24 via 172.31.0.2 dev #9 onlink|10.5.3.0/24 via 192.168.9.3 dev #9 onlink|10.5.7.0/24 via 172.31.0.7 dev #9 onlink"
	if got != want {
		t.Errorf("routes\n%s\nwant\n%s", got, want)
	}
	wantSkipped := map[string]string{
		"10.5.4.0-24": "Ignoring non-ipip subnet: type=vxlan",
		"10.5.6.0-24": "Ignoring non-ipip subnet: type=",
		"10.5.5.0-24": "ignoring ipip lease 10.5.5.0-24: no public IP",
	}
	if len(skipped) != len(wantSkipped) {
		t.Errorf("skipped %v", skipped)
	}
	for k, v := range wantSkipped {
		if skipped[k] != v {
			t.Errorf("skipped[%s] = %q, want %q", k, skipped[k], v)
		}
	}

	p.directRouting = true
	asked := map[netip.Addr]int{}
	p.direct = func(a netip.Addr) (int, bool) {
		asked[a]++
		return 2, netip.MustParsePrefix("172.31.0.0/24").Contains(a)
	}
	got, _ = routes(p)
	want = "10.5.2.0/24 via 172.31.0.2 dev #2 onlink|10.5.3.0/24 via 192.168.9.3 dev #9 onlink|10.5.7.0/24 via 172.31.0.7 dev #2 onlink"
	if got != want {
		t.Errorf("DirectRouting routes\n%s\nwant\n%s", got, want)
	}
	if len(asked) != 3 {
		t.Errorf("direct asked about %v, want the three ipip peers only", asked)
	}
}
