package kube

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flannelng/flannel/subnet"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func mustConfig(t testing.TB, s string) *subnet.Config {
	t.Helper()
	c, err := ParseNetConf([]byte(s))
	if err != nil {
		t.Fatalf("config %s: %v", s, err)
	}
	return c
}

const (
	cfgV4   = `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`
	cfgDual = `{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan"}}`
	cfgV6   = `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan"}}`
)

func pfx(s string) netip.Prefix {
	if s == "" {
		return netip.Prefix{}
	}
	return netip.MustParsePrefix(s)
}

// TestPodCIDRs is spec 3.1's table.
func TestPodCIDRs(t *testing.T) {
	for _, tc := range []struct {
		name     string
		podCIDR  string
		podCIDRs []string
		v4, v6   string
		err      string
	}{
		{name: "none", err: "no spec.podCIDR"},
		{name: "old cluster v4", podCIDR: "10.244.1.0/24", v4: "10.244.1.0/24"},
		{name: "old cluster v6", podCIDR: "fd00:10:244:1::/64", v6: "fd00:10:244:1::/64"},
		{name: "one v4", podCIDR: "10.244.1.0/24", podCIDRs: []string{"10.244.1.0/24"}, v4: "10.244.1.0/24"},
		{name: "one v6", podCIDRs: []string{"fd00:10:244:1::/64"}, v6: "fd00:10:244:1::/64"},
		{name: "dual v4 first", podCIDR: "10.244.1.0/24", podCIDRs: []string{"10.244.1.0/24", "fd00:10:244:1::/64"}, v4: "10.244.1.0/24", v6: "fd00:10:244:1::/64"},
		{name: "dual v6 first", podCIDRs: []string{"fd00:10:244:1::/64", "10.244.1.0/24"}, v4: "10.244.1.0/24", v6: "fd00:10:244:1::/64"},
		{name: "two v4: the last", podCIDRs: []string{"10.244.1.0/24", "10.244.2.0/24"}, v4: "10.244.2.0/24"},
		{name: "podCIDRs win over podCIDR", podCIDR: "10.9.9.0/24", podCIDRs: []string{"10.244.1.0/24"}, v4: "10.244.1.0/24"},
		{name: "host bits cleared", podCIDRs: []string{"10.244.1.7/24"}, v4: "10.244.1.0/24"},
		{name: "three", podCIDRs: []string{"10.244.1.0/24", "fd00::/64", "10.244.2.0/24"}, err: `node "n1" pod cidrs should be IPv4/IPv6 only or dualstack`},
		{name: "garbage", podCIDRs: []string{"10.244.1.0"}, err: `node "n1": invalid podCIDR "10.244.1.0"`},
		{name: "mapped", podCIDRs: []string{"::ffff:10.244.1.0/120"}, err: `node "n1": invalid podCIDR "::ffff:10.244.1.0/120"`},
		{name: "empty entry", podCIDRs: []string{""}, err: `node "n1": invalid podCIDR ""`},
	} {
		n := &Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: NodeSpec{PodCIDR: tc.podCIDR, PodCIDRs: tc.podCIDRs}}
		v4, v6, err := PodCIDRs(n)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || v4 != pfx(tc.v4) || v6 != pfx(tc.v6) {
			t.Errorf("%s: got %v %v %v, want %s %s", tc.name, v4, v6, err, tc.v4, tc.v6)
		}
	}
	_, _, err := PodCIDRs(testNode("n1"))
	if !errors.Is(err, errNoPodCIDR) {
		t.Errorf("no podCIDR: %v does not wrap errNoPodCIDR", err)
	}
}

// TestOwnCIDRs: containment with upstream's texts, and a family the config
// enables but the node lacks.
func TestOwnCIDRs(t *testing.T) {
	for _, tc := range []struct {
		name, cfg string
		cidrs     []string
		v4, v6    string
		err       string
	}{
		{name: "inside", cfg: cfgV4, cidrs: []string{"10.244.1.0/24"}, v4: "10.244.1.0/24"},
		{name: "v6 ignored when off", cfg: cfgV4, cidrs: []string{"10.244.1.0/24", "fd00:10:244:1::/64"}, v4: "10.244.1.0/24"},
		{name: "dual", cfg: cfgDual, cidrs: []string{"10.244.1.0/24", "fd00:10:244:1::/64"}, v4: "10.244.1.0/24", v6: "fd00:10:244:1::/64"},
		{name: "v6 only", cfg: cfgV6, cidrs: []string{"fd00:10:244:1::/64"}, v6: "fd00:10:244:1::/64"},
		{name: "outside", cfg: cfgV4, cidrs: []string{"10.250.1.0/24"},
			err: `subnet "10.244.0.0/16" specified in the flannel net config doesn't contain "10.250.1.0/24" PodCIDR of the "n11" node`},
		{name: "bigger than network", cfg: cfgV4, cidrs: []string{"10.244.0.0/15"},
			err: `subnet "10.244.0.0/16" specified in the flannel net config doesn't contain "10.244.0.0/15" PodCIDR of the "n11" node`},
		{name: "v6 outside", cfg: cfgDual, cidrs: []string{"10.244.1.0/24", "fd00:99::/64"},
			err: `subnet "fd00:10:244::/56" specified in the flannel net config doesn't contain "fd00:99::/64" IPv6 PodCIDR of the "n11" node`},
		{name: "v4 on, only v6", cfg: cfgV4, cidrs: []string{"fd00:10:244:1::/64"},
			err: `node "n11" has no IPv4 podCIDR (spec.podCIDRs [fd00:10:244:1::/64]) but IPv4 is enabled in the net config`},
		{name: "dual on, only v4", cfg: cfgDual, cidrs: []string{"10.244.1.0/24"},
			err: `node "n11" has no IPv6 podCIDR (spec.podCIDRs [10.244.1.0/24]) but IPv6 is enabled in the net config`},
	} {
		v4, v6, err := ownCIDRs(mustConfig(t, tc.cfg), testNode("n11", tc.cidrs...))
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%s: err %v\nwant %s", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || v4 != pfx(tc.v4) || v6 != pfx(tc.v6) {
			t.Errorf("%s: got %v %v %v, want %s %s", tc.name, v4, v6, err, tc.v4, tc.v6)
		}
	}
}

func TestNodeLease(t *testing.T) {
	k, _ := KeysFor(DefaultPrefix)
	p := k.Prefix
	mac1, mac2 := vxlanData("36:02:d1:89:dc:55"), vxlanData("36:02:d1:89:dc:66")
	ann := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[p+kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name   string
		ann    map[string]string
		cidrs  []string
		v4, v6 bool
		want   subnet.Lease
		err    string // NodeLease's error (nothing usable)
		skip   string // a family left out
	}{
		{
			name: "vxlan", v4: true, cidrs: []string{"10.244.1.0/24"},
			ann:  ann("kube-subnet-manager", "true", "backend-type", "vxlan", "public-ip", "10.199.0.2", "backend-data", mac1),
			want: subnet.Lease{Subnet: pfx("10.244.1.0/24"), Attrs: subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("10.199.0.2"), BackendType: "vxlan", BackendData: []byte(mac1)}},
		},
		{
			name: "vxlan data with spaces is compacted", v4: true, cidrs: []string{"10.244.1.0/24"},
			ann:  ann("kube-subnet-manager", "true", "backend-type", "vxlan", "public-ip", "10.199.0.2", "backend-data", `{ "VNI": 1, "VtepMAC": "36:02:d1:89:dc:55" }`),
			want: subnet.Lease{Subnet: pfx("10.244.1.0/24"), Attrs: subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("10.199.0.2"), BackendType: "vxlan", BackendData: []byte(mac1)}},
		},
		{
			name: "host-gw null data", v4: true, cidrs: []string{"10.244.2.0/24"},
			ann:  ann("kube-subnet-manager", "true", "backend-type", "host-gw", "public-ip", "10.199.0.3", "backend-data", "null"),
			want: subnet.Lease{Subnet: pfx("10.244.2.0/24"), Attrs: subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("10.199.0.3"), BackendType: "host-gw"}},
		},
		{
			name: "udp: empty backend-type", v4: true, cidrs: []string{"10.244.3.0/24"},
			ann:  ann("kube-subnet-manager", "true", "backend-type", "", "public-ip", "10.199.0.4", "backend-data", "null"),
			want: subnet.Lease{Subnet: pfx("10.244.3.0/24"), Attrs: subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("10.199.0.4")}},
		},
		{
			name: "dual stack", v4: true, v6: true, cidrs: []string{"10.244.4.0/24", "fd00:10:244:4::/64"},
			ann: ann("kube-subnet-manager", "true", "backend-type", "vxlan", "public-ip", "10.199.0.5", "backend-data", mac1,
				"public-ipv6", "fd99::5", "backend-v6-data", mac2),
			want: subnet.Lease{Subnet: pfx("10.244.4.0/24"), IPv6Subnet: pfx("fd00:10:244:4::/64"), Attrs: subnet.LeaseAttrs{
				PublicIP: netip.MustParseAddr("10.199.0.5"), PublicIPv6: netip.MustParseAddr("fd99::5"),
				BackendType: "vxlan", BackendData: []byte(mac1), BackendV6Data: []byte(mac2)}},
		},
		{
			name: "dual stack node seen by a v4 node: v6 keys ignored", v4: true, cidrs: []string{"10.244.4.0/24", "fd00:10:244:4::/64"},
			ann: ann("kube-subnet-manager", "true", "backend-type", "vxlan", "public-ip", "10.199.0.5", "backend-data", mac1,
				"public-ipv6", "fd99::5", "backend-v6-data", mac2),
			want: subnet.Lease{Subnet: pfx("10.244.4.0/24"), Attrs: subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("10.199.0.5"), BackendType: "vxlan", BackendData: []byte(mac1)}},
		},
		{
			name: "v6 only (v6-only vxlan publishes no v4 keys)", v6: true, cidrs: []string{"fd00:10:244:6::/64"},
			ann:  ann("kube-subnet-manager", "true", "backend-type", "vxlan", "public-ipv6", "fd99::6", "backend-v6-data", mac2),
			want: subnet.Lease{IPv6Subnet: pfx("fd00:10:244:6::/64"), Attrs: subnet.LeaseAttrs{PublicIPv6: netip.MustParseAddr("fd99::6"), BackendType: "vxlan", BackendV6Data: []byte(mac2)}},
		},
		{
			// Upstream drops the whole node; a v4-only peer still
			// gets IPv4 traffic from a dual-stack node.
			name: "v4-only peer on a dual-stack node", v4: true, v6: true, cidrs: []string{"10.244.7.0/24"},
			ann:  ann("kube-subnet-manager", "true", "backend-type", "vxlan", "public-ip", "10.199.0.7", "backend-data", mac1),
			want: subnet.Lease{Subnet: pfx("10.244.7.0/24"), Attrs: subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("10.199.0.7"), BackendType: "vxlan", BackendData: []byte(mac1)}},
			skip: `node "n1": no IPv6 podCIDR`,
		},
		{
			name: "bad v6 address skips only v6", v4: true, v6: true, cidrs: []string{"10.244.8.0/24", "fd00:10:244:8::/64"},
			ann: ann("kube-subnet-manager", "true", "backend-type", "vxlan", "public-ip", "10.199.0.8", "backend-data", mac1,
				"public-ipv6", "10.1.1.1", "backend-v6-data", mac2),
			want: subnet.Lease{Subnet: pfx("10.244.8.0/24"), Attrs: subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("10.199.0.8"), BackendType: "vxlan", BackendData: []byte(mac1)}},
			skip: `invalid flannel.alpha.coreos.com/public-ipv6 "10.1.1.1"`,
		},
		{
			name: "mapped v4 public-ip accepted", v4: true, cidrs: []string{"10.244.9.0/24"},
			ann:  ann("kube-subnet-manager", "true", "backend-type", "host-gw", "public-ip", "::ffff:10.199.0.9", "backend-data", "null"),
			want: subnet.Lease{Subnet: pfx("10.244.9.0/24"), Attrs: subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("10.199.0.9"), BackendType: "host-gw"}},
		},
		{name: "nil annotations", v4: true, cidrs: []string{"10.244.1.0/24"}, ann: nil,
			err: `node "n1": not managed by flannel (no flannel.alpha.coreos.com/kube-subnet-manager annotation)`},
		{name: "True is not true", v4: true, cidrs: []string{"10.244.1.0/24"}, ann: ann("kube-subnet-manager", "True", "public-ip", "10.199.0.2"),
			err: `node "n1": not managed by flannel (flannel.alpha.coreos.com/kube-subnet-manager is "True", not "true")`},
		{name: "bad public-ip", v4: true, cidrs: []string{"10.244.1.0/24"}, ann: ann("kube-subnet-manager", "true", "public-ip", "10.199.0.300"),
			err: `node "n1": invalid flannel.alpha.coreos.com/public-ip "10.199.0.300"`},
		{name: "v6 public-ip for v4", v4: true, cidrs: []string{"10.244.1.0/24"}, ann: ann("kube-subnet-manager", "true", "public-ip", "fd99::1"),
			err: `invalid flannel.alpha.coreos.com/public-ip "fd99::1"`},
		{name: "0.0.0.0", v4: true, cidrs: []string{"10.244.1.0/24"}, ann: ann("kube-subnet-manager", "true", "public-ip", "0.0.0.0"),
			err: `invalid flannel.alpha.coreos.com/public-ip "0.0.0.0"`},
		{name: "no public-ip", v4: true, cidrs: []string{"10.244.1.0/24"}, ann: ann("kube-subnet-manager", "true"),
			err: `node "n1": no flannel.alpha.coreos.com/public-ip annotation`},
		{name: "backend-data not JSON", v4: true, cidrs: []string{"10.244.1.0/24"}, ann: ann("kube-subnet-manager", "true", "public-ip", "10.199.0.2", "backend-data", `{"VNI":1,`),
			err: `invalid flannel.alpha.coreos.com/backend-data "{\"VNI\":1," (not JSON)`},
		{name: "no podCIDR", v4: true, ann: ann("kube-subnet-manager", "true", "public-ip", "10.199.0.2"),
			err: `node "n1" has no spec.podCIDR`},
		{name: "podCIDR outside any network is not checked here (the daemon's peer filter does)", v4: true, cidrs: []string{"192.168.77.0/24"},
			ann:  ann("kube-subnet-manager", "true", "backend-type", "host-gw", "public-ip", "10.199.0.2", "backend-data", "null"),
			want: subnet.Lease{Subnet: pfx("192.168.77.0/24"), Attrs: subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("10.199.0.2"), BackendType: "host-gw"}},
		},
	} {
		n := testNode("n1", tc.cidrs...)
		n.Annotations = tc.ann
		got, err := NodeLease(n, k, tc.v4, tc.v6)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v\nwant %s", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || !sameLease(got, tc.want) {
			t.Errorf("%s: got %+v, %v\nwant %+v", tc.name, got, err, tc.want)
		}
		_, problem := nodeLease(n, k, tc.v4, tc.v6)
		if (tc.skip == "") != (problem == "") || !strings.Contains(problem, tc.skip) {
			t.Errorf("%s: problem %q, want %q", tc.name, problem, tc.skip)
		}
	}
}

// TestOwnAttrsCustomPrefix: Previous finds our MAC under the normalised
// prefix (upstream looks under "<raw prefix>/backend-data", spec 4.5).
func TestOwnAttrsCustomPrefix(t *testing.T) {
	k, _ := KeysFor("example.com/fl")
	n := testNode("n1", "10.244.1.0/24")
	n.Annotations = map[string]string{
		"example.com/fl-kube-subnet-manager": "true",
		"example.com/fl-backend-type":        "vxlan",
		"example.com/fl-backend-data":        vxlanData("36:02:d1:89:dc:55"),
		"example.com/fl-backend-v6-data":     vxlanData("36:02:d1:89:dc:66"),
		"example.com/fl-public-ip":           "10.199.0.2",
		"example.com/fl-public-ipv6":         "fd99::2",
		"example.com/fl/backend-data":        vxlanData("00:00:00:00:00:01"), // what upstream would look up
	}
	a := ownAttrs(n, k)
	if a == nil || string(a.BackendData) != vxlanData("36:02:d1:89:dc:55") || string(a.BackendV6Data) != vxlanData("36:02:d1:89:dc:66") ||
		a.PublicIP != netip.MustParseAddr("10.199.0.2") || a.PublicIPv6 != netip.MustParseAddr("fd99::2") || a.BackendType != "vxlan" {
		t.Errorf("ownAttrs = %+v", a)
	}
	n.Annotations["example.com/fl-kube-subnet-manager"] = "false"
	if a := ownAttrs(n, k); a != nil {
		t.Errorf("unmanaged node: ownAttrs = %+v, want nil", a)
	}
	n.Annotations = nil
	if a := ownAttrs(n, k); a != nil {
		t.Errorf("nil annotations: ownAttrs = %+v, want nil", a)
	}
}

func TestParseNetConf(t *testing.T) {
	// kube mode ignores the allocation keys: a SubnetLen etcd mode
	// refuses is fine here.
	c := mustConfig(t, `{"Network":"10.244.0.0/16","SubnetLen":31,"SubnetMin":"10.9.0.0","Backend":{"Type":"host-gw"}}`)
	if c.Network != pfx("10.244.0.0/16") || c.BackendType != "host-gw" {
		t.Errorf("config %+v", c)
	}
	if _, err := subnet.ParseConfig([]byte(`{"Network":"10.244.0.0/16","SubnetLen":31}`)); err == nil {
		t.Fatal("etcd mode accepts SubnetLen 31; the test proves nothing")
	}
	// No Backend means udp, as upstream's code (not its docs) says.
	if c := mustConfig(t, `{"Network":"10.244.0.0/16"}`); c.BackendType != "udp" {
		t.Errorf("default backend %q", c.BackendType)
	}
	for _, tc := range []struct{ in, err string }{
		{`nope`, "invalid network config JSON"},
		{`{"Backend":{"Type":"vxlan"}}`, "please define a correct Network parameter in the flannel config"},
		{`{"Network":"10.244.0.0/16","EnableIPv6":true}`, "please define a correct IPv6Network parameter in the flannel config"},
		{`{"Network":"10.244.0.0/16","SubnetLen":"x"}`, "invalid network config JSON"},
	} {
		if _, err := ParseNetConf([]byte(tc.in)); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: err %v, want %q", tc.in, err, tc.err)
		}
	}
}

func TestGetConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "net-conf.json")
	k, _ := KeysFor(DefaultPrefix)
	m := newManager(Options{NetConfigPath: path}, k, newFakeAPI(), "n1", nil)
	defer m.Close()
	if _, _, err := m.GetConfig(t.Context()); err == nil || err.Error() != "failed to read net conf: open "+path+": no such file or directory" {
		t.Errorf("missing file: %v", err)
	}
	os.WriteFile(path, []byte(`{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan"}}`), 0o644)
	c, raw, err := m.GetConfig(t.Context())
	if err != nil || c.BackendType != "vxlan" || !strings.Contains(string(raw), "10.244.0.0/16") {
		t.Errorf("GetConfig = %+v, %s, %v", c, raw, err)
	}
	os.WriteFile(path, []byte(`{"Network": "10.244.0.0/33"}`), 0o644)
	if _, _, err := m.GetConfig(t.Context()); err == nil || !strings.HasPrefix(err.Error(), "network config in "+path+": invalid IPv4 CIDR format in Network") {
		t.Errorf("bad network: %v", err)
	}
}
