package subnet

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseConfigDefaults(t *testing.T) {
	tests := []struct {
		in           string
		len          int
		min, max     string
		v6len        int
		v6min, v6max string
		backend      string
		defaulted    bool
	}{
		{in: `{"Network":"10.5.0.0/16"}`, len: 24, min: "10.5.1.0", max: "10.5.255.0", backend: "udp", defaulted: true},
		{in: `{"Network":"10.5.0.0/23","Backend":{"Type":"vxlan"}}`, len: 25, min: "10.5.0.128", max: "10.5.1.128", backend: "vxlan"},
		{in: `{"Network":"10.5.0.0/28","Backend":{"Type":"VXLAN"}}`, len: 30, min: "10.5.0.4", max: "10.5.0.12", backend: "vxlan"},
		{in: `{"network":"10.5.0.5/16","backend":{"type":"host-gw"}}`, len: 24, min: "10.5.1.0", max: "10.5.255.0", backend: "host-gw"},
		{in: `{"Network":"10.0.0.0/8","SubnetLen":20,"SubnetMin":"10.10.0.0","SubnetMax":"10.20.0.0","Backend":{"Type":"vxlan","VNI":4}}`, len: 20, min: "10.10.0.0", max: "10.20.0.0", backend: "vxlan"},
		{in: `{"Network":"10.5.0.0/16","SubnetMin":"0.0.0.0","Backend":{}}`, len: 24, min: "10.5.1.0", max: "10.5.255.0", backend: ""},
		{in: `{"EnableIPv6":true,"Network":"10.5.0.0/16","IPv6Network":"fd00::/56","Backend":{"Type":"vxlan"}}`, len: 24, min: "10.5.1.0", max: "10.5.255.0",
			v6len: 64, v6min: "fd00:0:0:1::", v6max: "fd00:0:0:ff::", backend: "vxlan"},
		{in: `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/112","Backend":{"Type":"vxlan"}}`,
			v6len: 114, v6min: "fd00::4000", v6max: "fd00::c000", backend: "vxlan"},
	}
	for _, tt := range tests {
		c, err := ParseConfig([]byte(tt.in))
		if err != nil {
			t.Fatalf("%s: %v", tt.in, err)
		}
		if c.BackendType != tt.backend || c.BackendDefaulted != tt.defaulted {
			t.Errorf("%s: backend %q defaulted=%v, want %q %v", tt.in, c.BackendType, c.BackendDefaulted, tt.backend, tt.defaulted)
		}
		if tt.min != "" {
			if c.SubnetLen != tt.len || c.SubnetMin.String() != tt.min || c.SubnetMax.String() != tt.max {
				t.Errorf("%s: got len %d min %s max %s", tt.in, c.SubnetLen, c.SubnetMin, c.SubnetMax)
			}
		}
		if tt.v6min != "" {
			if c.IPv6SubnetLen != tt.v6len || c.IPv6SubnetMin.String() != tt.v6min || c.IPv6SubnetMax.String() != tt.v6max {
				t.Errorf("%s: got v6 len %d min %s max %s", tt.in, c.IPv6SubnetLen, c.IPv6SubnetMin, c.IPv6SubnetMax)
			}
		}
	}
	c, _ := ParseConfig([]byte(`{"Network":"10.5.0.5/16"}`))
	if c.Network != netip.MustParsePrefix("10.5.0.0/16") {
		t.Errorf("host bits not masked: %s", c.Network)
	}
	if n := c.SubnetCount(false); n != 255 {
		t.Errorf("SubnetCount = %d, want 255", n)
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{`, "invalid network config JSON"},
		{`{}`, "please define a correct Network parameter in the flannel config"},
		{`{"Network":"0.0.0.0/0"}`, "please define a correct Network parameter in the flannel config"},
		{`{"Network":"fd00::/64"}`, "invalid IPv4 CIDR format"},
		{`{"Network":"10.5.0.0"}`, "invalid IPv4 CIDR format in Network: \"10.5.0.0\""},
		{`{"Network":"10.5.0.0/16","SubnetLen":31}`, "SubnetLen must be less than /31"},
		{`{"Network":"10.5.0.0/16","SubnetLen":17}`, "network must be able to accommodate at least four subnets"},
		{`{"Network":"10.5.0.0/29"}`, "network is too small. Minimum useful network prefix is /28"},
		{`{"Network":"10.5.0.0/16","SubnetMin":"10.6.0.0"}`, "SubnetMin is not in the range of the Network (SubnetMin=10.6.0.0"},
		{`{"Network":"10.5.0.0/16","SubnetMax":"10.6.0.0"}`, "SubnetMax is not in the range of the Network"},
		{`{"Network":"10.5.0.0/16","SubnetMin":"10.5.1.1"}`, "SubnetMin is not on a SubnetLen boundary: 10.5.1.1"},
		{`{"Network":"10.5.0.0/16","SubnetMax":"10.5.1.1"}`, "SubnetMax is not on a SubnetLen boundary: 10.5.1.1"},
		{`{"Network":"10.5.0.0/16","SubnetMin":"10.5.9.0","SubnetMax":"10.5.3.0"}`, "SubnetMin 10.5.9.0 is greater than SubnetMax 10.5.3.0"},
		{`{"Network":"10.5.0.0/16","SubnetMin":"banana"}`, "invalid IPv4 address in SubnetMin: \"banana\""},
		{`{"EnableIPv4":false}`, "none defined stack"},
		{`{"EnableIPv6":true,"Network":"10.5.0.0/16"}`, "please define a correct IPv6Network parameter in the flannel config"},
		{`{"EnableIPv6":true,"Network":"10.5.0.0/16","IPv6Network":"10.0.0.0/8"}`, "invalid IPv6 CIDR format"},
		{`{"EnableIPv6":true,"Network":"10.5.0.0/16","IPv6Network":"fd00::/56","IPv6SubnetLen":127}`, "SubnetLen must be less than /127"},
		{`{"EnableIPv6":true,"Network":"10.5.0.0/16","IPv6Network":"fd00::/56","IPv6SubnetLen":57}`, "network must be able to accommodate at least four subnets"},
		{`{"EnableIPv6":true,"Network":"10.5.0.0/16","IPv6Network":"fd00::/125"}`, "IPv6Network is too small. Minimum useful network prefix is /124"},
		{`{"EnableIPv6":true,"Network":"10.5.0.0/16","IPv6Network":"fd00::/56","IPv6SubnetMin":"fd01::"}`, "IPv6SubnetMin is not in the range of the IPv6Network"},
		{`{"EnableIPv6":true,"Network":"10.5.0.0/16","IPv6Network":"fd00::/56","IPv6SubnetMax":"fd01::"}`, "IPv6SubnetMax is not in the range of the IPv6Network"},
		{`{"EnableIPv6":true,"Network":"10.5.0.0/16","IPv6Network":"fd00::/56","IPv6SubnetMin":"fd00::1"}`, "IPv6SubnetMin is not on a SubnetLen boundary: fd00::1"},
		{`{"EnableIPv6":true,"Network":"10.5.0.0/16","IPv6Network":"fd00::/56","IPv6SubnetMax":"fd00::1"}`, "IPv6SubnetMax is not on a SubnetLen boundary: fd00::1"},
		{`{"EnableIPv6":true,"Network":"10.5.0.0/16","IPv6Network":"fd00::/56","IPv6SubnetMin":"fd00:0:0:9::","IPv6SubnetMax":"fd00:0:0:2::"}`, "IPv6SubnetMin fd00:0:0:9:: is greater than IPv6SubnetMax"},
		{`{"Network":"10.5.0.0/16","Backend":"vxlan"}`, "invalid Backend in network config"},
	}
	for _, tt := range tests {
		_, err := ParseConfig([]byte(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseConfig(%s) error = %v, want containing %q", tt.in, err, tt.want)
		}
	}
}

func TestCompatible(t *testing.T) {
	c, err := ParseConfig([]byte(`{"Network":"10.5.0.0/16","SubnetMin":"10.5.10.0","SubnetMax":"10.5.20.0"}`))
	if err != nil {
		t.Fatal(err)
	}
	for s, want := range map[string]bool{"10.5.10.0/24": true, "10.5.20.0/24": true, "10.5.9.0/24": false, "10.5.21.0/24": false, "10.5.12.0/25": false} {
		if got := c.Compatible(netip.MustParsePrefix(s), netip.Prefix{}); got != want {
			t.Errorf("Compatible(%s) = %v, want %v", s, got, want)
		}
	}
	if c.Compatible(netip.MustParsePrefix("10.5.12.0/24"), netip.MustParsePrefix("fd00::/64")) {
		t.Error("a v6 half must be incompatible while IPv6 is off")
	}
}

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(`{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`))
	f.Add([]byte(`{"EnableIPv6":true,"Network":"10.5.0.0/16","IPv6Network":"fd00::/56","IPv6SubnetLen":60,"IPv6SubnetMin":"fd00:0:0:10::"}`))
	f.Add([]byte(`{"Network":"10.0.0.0/8","SubnetLen":30,"SubnetMin":"10.0.0.4","SubnetMax":"10.255.255.252"}`))
	f.Add([]byte(`{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"::/1"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseConfig(data)
		if err != nil {
			return
		}
		if c.EnableIPv4 {
			if !c.Network.Contains(c.SubnetMin) || !c.Network.Contains(c.SubnetMax) || c.SubnetMin.Compare(c.SubnetMax) > 0 {
				t.Fatalf("accepted config with bad range: %+v", c)
			}
			if c.SubnetLen <= c.Network.Bits() || c.SubnetLen > 30 {
				t.Fatalf("accepted bad SubnetLen: %+v", c)
			}
		}
		if c.EnableIPv6 && (!c.IPv6Network.Contains(c.IPv6SubnetMin) || !c.IPv6Network.Contains(c.IPv6SubnetMax)) {
			t.Fatalf("accepted config with bad v6 range: %+v", c)
		}
		if c.BackendType == "" && c.Backend == nil {
			t.Fatalf("no backend and no default")
		}
	})
}

func TestSizeLike(t *testing.T) {
	c, err := ParseConfig([]byte(`{"Network":"10.244.0.0/16","IPv6Network":"fd00:10:244::/48","EnableIPv6":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.SubnetLen != 24 || c.IPv6SubnetLen != 64 {
		t.Fatalf("defaults %d %d", c.SubnetLen, c.IPv6SubnetLen)
	}
	if err := c.SizeLike(netip.MustParsePrefix("10.244.3.128/25"), netip.MustParsePrefix("fd00:10:244:3::/80")); err != nil {
		t.Fatal(err)
	}
	if c.SubnetLen != 25 || c.SubnetMin.String() != "10.244.0.128" || c.SubnetMax.String() != "10.244.255.128" || c.IPv6SubnetLen != 80 {
		t.Errorf("after SizeLike: %d %s %s %d", c.SubnetLen, c.SubnetMin, c.SubnetMax, c.IPv6SubnetLen)
	}
	if got := c.SubnetCount(false); got != 511 {
		t.Errorf("SubnetCount %d, want 511", got)
	}
	// A size the network cannot hold four of is refused, and nothing changes.
	if err := c.SizeLike(netip.MustParsePrefix("10.244.0.0/17"), netip.Prefix{}); err == nil || c.SubnetLen != 25 {
		t.Errorf("a /17 in a /16: err %v, SubnetLen %d", err, c.SubnetLen)
	}
}

// SubnetCount shifts a 128-bit difference right by the host bits; at 64 and
// more the count comes from the high word alone, a path the IPv4 tests never
// take. SubnetMin skips the network's first subnet, so a /48 holds 65,535
// usable /64s.
func TestSubnetCountIPv6(t *testing.T) {
	tests := []struct {
		cfg  string
		want uint64
	}{
		{`{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/48","IPv6SubnetLen":64}`, 65535},
		{`{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/56"}`, 255},                         // default /64: shift exactly 64
		{`{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/32","IPv6SubnetLen":48}`, 65535},    // shift 80
		{`{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/64","IPv6SubnetLen":80}`, 65535},    // shift 48, low word only
		{`{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/48","IPv6SubnetLen":112}`, 1 << 62}, // 2^64-1: saturates
		{`{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00::/48","IPv6SubnetLen":64,"IPv6SubnetMin":"fd00:0:0:10::","IPv6SubnetMax":"fd00:0:0:1f::"}`, 16},
	}
	for _, tt := range tests {
		c, err := ParseConfig([]byte(tt.cfg))
		if err != nil {
			t.Fatalf("%s: %v", tt.cfg, err)
		}
		if got := c.SubnetCount(true); got != tt.want {
			t.Errorf("%s: SubnetCount(v6) = %d, want %d", tt.cfg, got, tt.want)
		}
	}
}
