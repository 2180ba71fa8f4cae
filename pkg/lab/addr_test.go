package lab

import (
	"net/netip"
	"strings"
	"testing"
)

func TestNodeAddrs(t *testing.T) {
	seen := map[netip.Addr]int{}
	for i := 1; i <= maxNodes; i++ {
		v4, v6, err := nodeAddrs(i)
		if err != nil {
			t.Fatalf("nodeAddrs(%d): %v", i, err)
		}
		if !underlay4.Contains(v4) || !underlay6.Contains(v6) {
			t.Fatalf("nodeAddrs(%d) = %s, %s: outside the underlay", i, v4, v6)
		}
		if v4 == fabric4 || v6 == fabric6 || v4 == underlay4.Addr() || v6 == underlay6.Addr() {
			t.Fatalf("nodeAddrs(%d) = %s, %s: collides with the fabric or network address", i, v4, v6)
		}
		for _, a := range []netip.Addr{v4, v6} {
			if j, dup := seen[a]; dup {
				t.Fatalf("nodeAddrs(%d) = %s, already given to %d", i, a, j)
			}
			seen[a] = i
		}
	}
	if v4, v6, _ := nodeAddrs(1); v4.String() != "172.30.0.11" || v6.String() != "fd00:30::b" {
		t.Errorf("nodeAddrs(1) = %s, %s; want 172.30.0.11, fd00:30::b", v4, v6)
	}
	if v4, _, _ := nodeAddrs(300); v4.String() != "172.30.1.54" {
		t.Errorf("nodeAddrs(300) = %s; want 172.30.1.54", v4)
	}
	for _, bad := range []int{0, -1, maxNodes + 1} {
		if _, _, err := nodeAddrs(bad); err == nil {
			t.Errorf("nodeAddrs(%d): no error", bad)
		}
	}
}

func TestNthAddr(t *testing.T) {
	tests := []struct {
		prefix string
		n      int
		want   string // "" means an error
	}{
		{"10.244.3.0/24", 1, "10.244.3.1"},
		{"10.244.3.7/24", 2, "10.244.3.2"}, // the prefix is masked first
		{"10.244.3.0/24", 254, "10.244.3.254"},
		{"10.244.3.0/24", 255, ""}, // broadcast
		{"10.244.3.0/24", 256, ""},
		{"10.244.0.0/16", 300, "10.244.1.44"},
		{"10.244.3.0/24", 0, ""},
		{"255.255.255.0/24", 300, ""}, // would carry out of IPv4
		{"fd00:1::/64", 1, "fd00:1::1"},
		{"fd00:1::/64", 65536, "fd00:1::1:0"},
		{"fd00:1::/120", 255, "fd00:1::ff"}, // IPv6 has no broadcast
		{"fd00:1::/120", 256, ""},
	}
	for _, tt := range tests {
		got, err := nthAddr(netip.MustParsePrefix(tt.prefix), tt.n)
		switch {
		case tt.want == "" && err == nil:
			t.Errorf("nthAddr(%s, %d) = %s, want an error", tt.prefix, tt.n, got)
		case tt.want != "" && err != nil:
			t.Errorf("nthAddr(%s, %d): %v", tt.prefix, tt.n, err)
		case tt.want != "" && got.String() != tt.want:
			t.Errorf("nthAddr(%s, %d) = %s, want %s", tt.prefix, tt.n, got, tt.want)
		}
	}
}

func TestParseSubnetEnv(t *testing.T) {
	good := "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_IPV6_NETWORK=fd10::/56\n" +
		"FLANNEL_IPV6_SUBNET=fd10:0:0:3::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
	env, err := ParseSubnetEnv([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	want := SubnetEnv{
		Subnet:   netip.MustParsePrefix("10.244.3.0/24"),
		Subnet6:  netip.MustParsePrefix("fd10:0:0:3::/64"),
		MTU:      1450,
		Gateway:  netip.MustParseAddr("10.244.3.1"),
		Gateway6: netip.MustParseAddr("fd10:0:0:3::1"),
	}
	if env != want {
		t.Errorf("ParseSubnetEnv = %+v, want %+v", env, want)
	}

	// CRLF, the last value wins, comments and unknown keys are ignored.
	env, err = ParseSubnetEnv([]byte("# x\r\nFLANNEL_SUBNET=10.1.1.1/24\r\nFLANNEL_SUBNET=10.1.2.1/24\r\nFOO=bar\r\nFLANNEL_MTU=1400\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	if env.Subnet.String() != "10.1.2.0/24" || env.MTU != 1400 || env.Subnet6.IsValid() {
		t.Errorf("got %+v", env)
	}

	for _, tt := range []struct{ in, wantErr string }{
		{"FLANNEL_MTU=1450\n", "no FLANNEL_SUBNET"},
		{"FLANNEL_SUBNET=10.1.1.1/24\n", "no FLANNEL_MTU"},
		{"FLANNEL_SUBNET=10.1.1.1\nFLANNEL_MTU=1450\n", "FLANNEL_SUBNET"},
		{"FLANNEL_SUBNET=fd00::1/64\nFLANNEL_MTU=1450\n", "not an IPv4 prefix"},
		{"FLANNEL_IPV6_SUBNET=10.1.1.1/24\nFLANNEL_MTU=1450\n", "not an IPv6 prefix"},
		{"FLANNEL_SUBNET=10.1.1.1/24\nFLANNEL_MTU = 1450\n", "no FLANNEL_MTU"}, // no trimming, as the CNI plugin
		{"FLANNEL_SUBNET=10.1.1.1/24\nFLANNEL_MTU=abc\n", `FLANNEL_MTU="abc"`},
		{"FLANNEL_SUBNET=10.1.1.1/32\nFLANNEL_MTU=1450\n", "FLANNEL_SUBNET"},
	} {
		_, err := ParseSubnetEnv([]byte(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ParseSubnetEnv(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
		}
	}
}
