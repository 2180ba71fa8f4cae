package etcdv2test

import (
	"net/netip"
	"testing"

	"github.com/flannelng/flannel/subnet"
)

// TestLeaseValue checks the fixture's bytes against the values observed from
// v0.11 (spec 1.2), and that our lease codec reads them.
func TestLeaseValue(t *testing.T) {
	tests := []struct {
		ip, backend, mac string
		want             string
	}{
		{"10.210.0.1", BackendVxlan, "66:52:c2:e4:ae:d7",
			`{"PublicIP":"10.210.0.1","BackendType":"vxlan","BackendData":{"VtepMAC":"66:52:c2:e4:ae:d7"}}`},
		{"10.210.0.1", BackendHostGW, "", `{"PublicIP":"10.210.0.1","BackendType":"host-gw"}`},
		{"10.210.0.3", BackendUDP, "", `{"PublicIP":"10.210.0.3"}`},
	}
	for _, tc := range tests {
		got := LeaseValue(netip.MustParseAddr(tc.ip), tc.backend, tc.mac)
		if got != tc.want {
			t.Errorf("LeaseValue(%s, %s) = %s\nwant %s", tc.ip, tc.backend, got, tc.want)
		}
		a, err := subnet.DecodeAttrs([]byte(got))
		if err != nil {
			t.Errorf("our codec on %s: %v", got, err)
			continue
		}
		if a.PublicIP.String() != tc.ip || a.PublicIPv6.IsValid() {
			t.Errorf("our codec on %s: %+v", got, a)
		}
		if tc.backend != BackendUDP && a.BackendType != tc.backend {
			t.Errorf("our codec on %s: type %q", got, a.BackendType)
		}
	}
}

func TestSubnetKey(t *testing.T) {
	p := netip.MustParsePrefix("10.244.82.0/24")
	if got := SubnetKey(DefaultPrefix, p); got != "/coreos.com/network/subnets/10.244.82.0-24" {
		t.Errorf("SubnetKey = %s", got)
	}
	// The same name as our v3 keys (a v4-only lease).
	if got, want := SubnetKey("/p", netip.MustParsePrefix("10.244.82.7/24")), "/p/subnets/"+subnet.MakeKey(p, netip.Prefix{}); got != want {
		t.Errorf("SubnetKey = %s, want %s", got, want)
	}
	if ConfigKey("/p") != "/p/config" || SubnetsKey("/p") != "/p/subnets" {
		t.Errorf("ConfigKey/SubnetsKey")
	}
}
