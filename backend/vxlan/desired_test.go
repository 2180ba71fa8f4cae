package vxlan

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/flannelng/flannel/backend/kernel"
	"github.com/flannelng/flannel/subnet"
)

func lease(t *testing.T, sn, sn6, pub, pub6, typ string, vni int, mac, mac6 string) subnet.Lease {
	t.Helper()
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
	if mac != "" {
		l.Attrs.BackendData = json.RawMessage(fmt.Sprintf(`{"VNI":%d,"VtepMAC":%q}`, vni, mac))
	}
	if mac6 != "" {
		l.Attrs.BackendV6Data = json.RawMessage(fmt.Sprintf(`{"VNI":%d,"VtepMAC":%q}`, vni, mac6))
	}
	return l
}

func renderState(st kernel.State) string {
	var b strings.Builder
	for _, n := range st.Neighs {
		fmt.Fprintln(&b, n)
	}
	for _, f := range st.FDB {
		fmt.Fprintln(&b, f)
	}
	for _, r := range st.Routes {
		fmt.Fprintln(&b, "route", r)
	}
	return b.String()
}

func TestPlannerState(t *testing.T) {
	p := planner{
		vni: 1,
		v4:  familyPlan{enabled: true, devIndex: 5, own: netip.MustParsePrefix("10.5.1.0/24")},
		v6:  familyPlan{enabled: true, devIndex: 6, own: netip.MustParsePrefix("fd10:0:0:1::/64")},
	}
	peers := []subnet.Lease{
		lease(t, "10.5.2.0/24", "fd10:0:0:2::/64", "172.31.0.2", "fd31::2", "vxlan", 1, "02:00:00:00:00:02", "02:00:00:00:06:02"),
		lease(t, "10.5.3.0/24", "", "172.31.0.3", "", "vxlan", 1, "02:00:00:00:00:03", ""),                // old v4-only lease
		lease(t, "10.5.4.0/24", "", "172.31.0.4", "", "host-gw", 0, "", ""),                               // other backend
		lease(t, "10.5.5.0/24", "", "172.31.0.5", "", "vxlan", 7, "02:00:00:00:00:05", ""),                // other VNI
		lease(t, "10.5.6.0/24", "", "172.31.0.6", "", "vxlan", 1, "", ""),                                 // no BackendData
		lease(t, "10.5.1.0/24", "", "172.31.0.1", "", "vxlan", 1, "02:00:00:00:00:01", ""),                // ourselves
		lease(t, "10.5.7.0/24", "", "", "", "vxlan", 1, "02:00:00:00:00:07", ""),                          // no public IP
		lease(t, "10.5.8.0/24", "fd10:0:0:8::/64", "172.31.0.8", "", "vxlan", 1, "02:00:00:00:00:08", ""), // v6 half unusable
	}
	st, skipped := p.state(peers)
	want := `neigh 10.5.2.0 lladdr 02:00:00:00:00:02 dev #5
neigh fd10:0:0:2:: lladdr 02:00:00:00:06:02 dev #6
neigh 10.5.3.0 lladdr 02:00:00:00:00:03 dev #5
neigh 10.5.8.0 lladdr 02:00:00:00:00:08 dev #5
fdb 02:00:00:00:00:02 dst 172.31.0.2 dev #5
fdb 02:00:00:00:06:02 dst fd31::2 dev #6
fdb 02:00:00:00:00:03 dst 172.31.0.3 dev #5
fdb 02:00:00:00:00:08 dst 172.31.0.8 dev #5
route 10.5.2.0/24 via 10.5.2.0 dev #5 onlink
route fd10:0:0:2::/64 via fd10:0:0:2:: dev #6 onlink
route 10.5.3.0/24 via 10.5.3.0 dev #5 onlink
route 10.5.8.0/24 via 10.5.8.0 dev #5 onlink
`
	if got := renderState(st); got != want {
		t.Fatalf("state:\n%s\nwant:\n%s", got, want)
	}
	wantSkipped := map[string]string{
		"10.5.4.0-24":                 "ignoring non-vxlan v4Subnet(10.5.4.0/24) v6Subnet(<nil>): type=host-gw",
		"10.5.5.0-24":                 "ignoring IPv4 part of vxlan lease 10.5.5.0-24: VNI 7 differs from ours (1)",
		"10.5.6.0-24":                 "ignoring IPv4 part of vxlan lease 10.5.6.0-24: no backend data",
		"10.5.7.0-24":                 "ignoring IPv4 part of vxlan lease 10.5.7.0-24: no public IP",
		"10.5.8.0-24&fd10:0:0:8::-64": "ignoring IPv6 part of vxlan lease 10.5.8.0-24&fd10:0:0:8::-64: no public IP",
	}
	if len(skipped) != len(wantSkipped) {
		t.Fatalf("skipped = %v", skipped)
	}
	for k, v := range wantSkipped {
		if skipped[k] != v {
			t.Errorf("skipped[%s] = %q, want %q", k, skipped[k], v)
		}
	}
}

func TestPlannerDirectRouting(t *testing.T) {
	asked := 0
	p := planner{
		vni: 1, directRouting: true,
		v4: familyPlan{enabled: true, devIndex: 5, own: netip.MustParsePrefix("10.5.1.0/24")},
		direct: func(a netip.Addr) (int, bool) {
			asked++
			return 2, a == netip.MustParseAddr("172.31.0.2")
		},
	}
	st, _ := p.state([]subnet.Lease{
		lease(t, "10.5.2.0/24", "", "172.31.0.2", "", "vxlan", 1, "02:00:00:00:00:02", ""),
		lease(t, "10.5.3.0/24", "", "172.30.0.3", "", "vxlan", 1, "02:00:00:00:00:03", ""),
	})
	want := `neigh 10.5.3.0 lladdr 02:00:00:00:00:03 dev #5
fdb 02:00:00:00:00:03 dst 172.30.0.3 dev #5
route 10.5.2.0/24 via 172.31.0.2 dev #2
route 10.5.3.0/24 via 10.5.3.0 dev #5 onlink
`
	if got := renderState(st); got != want || asked != 2 {
		t.Fatalf("state (asked %d):\n%s\nwant:\n%s", asked, got, want)
	}
}

func TestPlannerMissingDevice(t *testing.T) {
	p := planner{vni: 1, v4: familyPlan{enabled: true, devIndex: 0}}
	st, skipped := p.state([]subnet.Lease{lease(t, "10.5.2.0/24", "", "172.31.0.2", "", "vxlan", 1, "02:00:00:00:00:02", "")})
	if len(st.Routes)+len(st.Neighs)+len(st.FDB) != 0 || len(skipped) != 0 {
		t.Fatalf("a missing device must give no rows and no skip: %v %v", st, skipped)
	}
}

// A lease that carries our own public IP (our previous lease living out
// its TTL after the subnet changed, or a node misconfigured with our
// address) is not a peer: an FDB entry sending to ourselves would loop
// frames back into our own device. The udp backend skips such leases too.
// Each family is judged by its own public address.
func TestPlannerSkipsOwnPublicIP(t *testing.T) {
	p := planner{
		vni: 1,
		v4:  familyPlan{enabled: true, devIndex: 5, own: netip.MustParsePrefix("10.5.1.0/24"), public: netip.MustParseAddr("172.31.0.1")},
		v6:  familyPlan{enabled: true, devIndex: 6, own: netip.MustParsePrefix("fd10:0:0:1::/64"), public: netip.MustParseAddr("fd31::1")},
	}
	st, skipped := p.state([]subnet.Lease{
		lease(t, "10.5.9.0/24", "fd10:0:0:9::/64", "172.31.0.1", "fd31::1", "vxlan", 1, "02:00:00:00:00:09", "02:00:00:00:06:09"), // ours, old subnet
		lease(t, "10.5.8.0/24", "fd10:0:0:8::/64", "172.31.0.1", "fd31::8", "vxlan", 1, "02:00:00:00:00:08", "02:00:00:00:06:08"), // our IPv4 address only
		lease(t, "10.5.2.0/24", "", "172.31.0.2", "", "vxlan", 1, "02:00:00:00:00:02", ""),
	})
	want := `neigh fd10:0:0:8:: lladdr 02:00:00:00:06:08 dev #6
neigh 10.5.2.0 lladdr 02:00:00:00:00:02 dev #5
fdb 02:00:00:00:06:08 dst fd31::8 dev #6
fdb 02:00:00:00:00:02 dst 172.31.0.2 dev #5
route fd10:0:0:8::/64 via fd10:0:0:8:: dev #6 onlink
route 10.5.2.0/24 via 10.5.2.0 dev #5 onlink
`
	if got := renderState(st); got != want {
		t.Fatalf("state:\n%s\nwant:\n%s", got, want)
	}
	for key, frag := range map[string]string{
		"10.5.9.0-24&fd10:0:0:9::-64": "ignoring IPv4 part of vxlan lease 10.5.9.0-24&fd10:0:0:9::-64: it has our own public IP 172.31.0.1; IPv6 part: it has our own public IP fd31::1",
		"10.5.8.0-24&fd10:0:0:8::-64": "ignoring IPv4 part of vxlan lease 10.5.8.0-24&fd10:0:0:8::-64: it has our own public IP 172.31.0.1",
	} {
		if skipped[key] != frag {
			t.Errorf("skipped[%s] = %q, want %q", key, skipped[key], frag)
		}
	}
	if len(skipped) != 2 {
		t.Errorf("skipped %v", skipped)
	}
}

// A VtepMAC of all zeros must never become an FDB entry: the vxlan
// device's all-zeros entry is its default destination, where it sends
// every frame it has no entry for (and, with several remotes, floods).
// A multicast or broadcast MAC is no VTEP's either. Such a lease is
// skipped, with one log line (the skip reason), and the rest programmed.
func TestPlannerRefusesBadVtepMAC(t *testing.T) {
	p := planner{
		vni: 1,
		v4:  familyPlan{enabled: true, devIndex: 5, own: netip.MustParsePrefix("10.5.1.0/24")},
		v6:  familyPlan{enabled: true, devIndex: 6, own: netip.MustParsePrefix("fd10:0:0:1::/64")},
	}
	st, skipped := p.state([]subnet.Lease{
		lease(t, "10.5.2.0/24", "", "172.31.0.2", "", "vxlan", 1, "00:00:00:00:00:00", ""),
		lease(t, "10.5.3.0/24", "", "172.31.0.3", "", "vxlan", 1, "01:00:5e:00:00:01", ""),
		lease(t, "10.5.4.0/24", "", "172.31.0.4", "", "vxlan", 1, "ff:ff:ff:ff:ff:ff", ""),
		lease(t, "10.5.5.0/24", "fd10:0:0:5::/64", "172.31.0.5", "fd31::5", "vxlan", 1, "02:00:00:00:00:05", "33:33:00:00:00:01"),
		lease(t, "10.5.6.0/24", "", "172.31.0.6", "", "vxlan", 1, "02:00:00:00:00:06", ""),
	})
	want := `neigh 10.5.5.0 lladdr 02:00:00:00:00:05 dev #5
neigh 10.5.6.0 lladdr 02:00:00:00:00:06 dev #5
fdb 02:00:00:00:00:05 dst 172.31.0.5 dev #5
fdb 02:00:00:00:00:06 dst 172.31.0.6 dev #5
route 10.5.5.0/24 via 10.5.5.0 dev #5 onlink
route 10.5.6.0/24 via 10.5.6.0 dev #5 onlink
`
	if got := renderState(st); got != want {
		t.Fatalf("state:\n%s\nwant:\n%s", got, want)
	}
	for key, frag := range map[string]string{
		"10.5.2.0-24":                 "VtepMAC 00:00:00:00:00:00 is all zeros",
		"10.5.3.0-24":                 "VtepMAC 01:00:5e:00:00:01 is a multicast address",
		"10.5.4.0-24":                 "VtepMAC ff:ff:ff:ff:ff:ff is a multicast address",
		"10.5.5.0-24&fd10:0:0:5::-64": "ignoring IPv6 part of vxlan lease 10.5.5.0-24&fd10:0:0:5::-64: VtepMAC 33:33:00:00:00:01 is a multicast address",
	} {
		if !strings.Contains(skipped[key], frag) {
			t.Errorf("skipped[%s] = %q, want %q", key, skipped[key], frag)
		}
	}
	if len(skipped) != 4 {
		t.Errorf("skipped %v", skipped)
	}
}

// A lease with no BackendType (upstream's udp and alloc leases) is not a
// vxlan peer, as upstream's vxlan backend decides.
func TestPlannerIgnoresUntypedLease(t *testing.T) {
	p := planner{vni: 1, v4: familyPlan{enabled: true, devIndex: 5, own: netip.MustParsePrefix("10.5.1.0/24")}}
	st, skipped := p.state([]subnet.Lease{lease(t, "10.5.2.0/24", "", "172.31.0.2", "", "", 1, "02:00:00:00:00:02", "")})
	if got := renderState(st); got != "" {
		t.Errorf("an untyped lease was programmed:\n%s", got)
	}
	if want := "ignoring non-vxlan v4Subnet(10.5.2.0/24) v6Subnet(<nil>): type="; skipped["10.5.2.0-24"] != want {
		t.Errorf("skipped %v, want %q", skipped, want)
	}
}

// BenchmarkPlannerState measures turning 5,000 vxlan leases into rows, as
// a pass over all peers does.
func BenchmarkPlannerState(b *testing.B) {
	peers := make([]subnet.Lease, 5000)
	for i := range peers {
		peers[i] = subnet.Lease{
			Subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(100 + i/256), byte(i % 256), 0}), 24),
			Attrs: subnet.LeaseAttrs{
				PublicIP:    netip.AddrFrom4([4]byte{172, 31, byte(1 + i/250), byte(1 + i%250)}),
				BackendType: "vxlan",
				BackendData: json.RawMessage(fmt.Sprintf(`{"VNI":1,"VtepMAC":"02:00:00:01:%02x:%02x"}`, i>>8, i&0xff)),
			},
		}
	}
	p := planner{vni: 1, v4: familyPlan{enabled: true, devIndex: 5}}
	b.ResetTimer()
	for b.Loop() {
		if st, _ := p.state(peers); len(st.Routes) != 5000 {
			b.Fatal(len(st.Routes))
		}
	}
}

// flannel v0.11 writes vxlan BackendData without a VNI ({"VtepMAC":...},
// etcd-v2 spec 1.2): such a peer is programmed like any other.
func TestPlannerV011Lease(t *testing.T) {
	p := planner{vni: 1, v4: familyPlan{enabled: true, devIndex: 5, own: netip.MustParsePrefix("10.5.1.0/24")}}
	l := lease(t, "10.5.9.0/24", "", "172.31.0.9", "", "vxlan", 0, "", "")
	l.Attrs.BackendData = json.RawMessage(`{"VtepMAC":"66:52:c2:e4:ae:d7"}`)
	st, skipped := p.state([]subnet.Lease{l})
	want := "neigh 10.5.9.0 lladdr 66:52:c2:e4:ae:d7 dev #5\nfdb 66:52:c2:e4:ae:d7 dst 172.31.0.9 dev #5\nroute 10.5.9.0/24 via 10.5.9.0 dev #5 onlink\n"
	if got := renderState(st); got != want || len(skipped) != 0 {
		t.Errorf("state:\n%s\nskipped %v\nwant:\n%s", got, skipped, want)
	}
}
