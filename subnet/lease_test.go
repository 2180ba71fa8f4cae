package subnet

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// The spec's observed values: byte-for-byte what upstream writes.
var upstreamValues = []string{
	`{"PublicIP":"192.168.50.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"a2:2a:fd:9f:55:f3"}}`,
	`{"PublicIP":"192.168.50.1","PublicIPv6":"fd00:50::1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:75:1e:94:97:31"},"BackendV6Data":{"VNI":1,"VtepMAC":"be:cf:ba:d0:c7:8f"}}`,
	`{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"host-gw"}`,
	`{"PublicIP":"192.168.64.3","PublicIPv6":null}`,
}

func TestLeaseAttrsRoundTrip(t *testing.T) {
	for _, v := range upstreamValues {
		a, err := DecodeAttrs([]byte(v))
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		out, err := EncodeAttrs(a)
		if err != nil {
			t.Fatal(err)
		}
		if string(out) != v {
			t.Errorf("round trip:\n got %s\nwant %s", out, v)
		}
	}
}

func TestLeaseAttrsEncode(t *testing.T) {
	data, _ := json.Marshal(VXLANData{VNI: 1, VtepMAC: "a2:2a:fd:9f:55:f3"})
	a := LeaseAttrs{PublicIP: netip.MustParseAddr("192.168.50.1"), BackendType: "vxlan", BackendData: data}
	out, err := EncodeAttrs(a)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != upstreamValues[0] {
		t.Errorf("got %s", out)
	}
	if _, err := EncodeAttrs(LeaseAttrs{PublicIP: netip.MustParseAddr("fd00::1")}); err == nil {
		t.Error("IPv6 PublicIP must not encode")
	}
	v6only, _ := EncodeAttrs(LeaseAttrs{PublicIPv6: netip.MustParseAddr("fd00::1"), BackendType: "host-gw"})
	if string(v6only) != `{"PublicIP":"0.0.0.0","PublicIPv6":"fd00::1","BackendType":"host-gw"}` {
		t.Errorf("v6-only: %s", v6only)
	}
}

func TestLeaseAttrsLenient(t *testing.T) {
	a, err := DecodeAttrs([]byte(`{"publicip":"10.0.0.1","backendtype":"vxlan","BackendData":{ "VtepMAC" : "ee:84:9f:f3:57:3e" },"Extra":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if a.PublicIP.String() != "10.0.0.1" || a.BackendType != "vxlan" || string(a.BackendData) != `{"VtepMAC":"ee:84:9f:f3:57:3e"}` {
		t.Errorf("got %+v", a)
	}
	for _, bad := range []string{`{"PublicIP":"nope"}`, `{"PublicIP":"fd00::1"}`, `{"PublicIP":"1.2.3.4","PublicIPv6":"1.2.3.4"}`, `[]`, `{`} {
		if _, err := DecodeAttrs([]byte(bad)); err == nil {
			t.Errorf("DecodeAttrs(%s) accepted", bad)
		}
	}
}

// A lease value is written by any program with access to the prefix; one
// of megabytes (a stray upload, a hostile writer) must not be decoded, and
// the error must say why, with the size, so the operator finds the key.
func TestDecodeAttrsSizeCap(t *testing.T) {
	value := func(n int) []byte {
		head := `{"PublicIP":"10.0.0.1","BackendType":"vxlan","BackendData":{"Pad":"`
		tail := `"}}`
		return []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
	}
	if _, err := DecodeAttrs(value(MaxLeaseValue)); err != nil {
		t.Fatalf("a value of exactly %d bytes: %v", MaxLeaseValue, err)
	}
	_, err := DecodeAttrs(value(MaxLeaseValue + 1))
	if err == nil {
		t.Fatalf("a value of %d bytes was decoded", MaxLeaseValue+1)
	}
	if want := fmt.Sprintf("%d bytes", MaxLeaseValue+1); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name the size (%s)", err, want)
	}
	if _, err := DecodeAttrs(value(4 << 20)); err == nil || !strings.Contains(err.Error(), "4194304 bytes") {
		t.Errorf("4 MiB value: %v", err)
	}
}

func TestKeys(t *testing.T) {
	tests := []struct {
		key    string
		v4, v6 string
	}{
		{"10.5.52.0-24", "10.5.52.0/24", ""},
		{"10.12.13.0-24&fd00:12:13::-56", "10.12.13.0/24", "fd00:12:13::/56"},
		{"0.0.0.0-0&fd00:10:0:5a::-64", "", "fd00:10:0:5a::/64"},
	}
	for _, tt := range tests {
		v4, v6, err := ParseKey(tt.key)
		if err != nil {
			t.Fatalf("%s: %v", tt.key, err)
		}
		var w4, w6 netip.Prefix
		if tt.v4 != "" {
			w4 = netip.MustParsePrefix(tt.v4)
		}
		if tt.v6 != "" {
			w6 = netip.MustParsePrefix(tt.v6)
		}
		if v4 != w4 || v6 != w6 {
			t.Errorf("ParseKey(%s) = %v %v", tt.key, v4, v6)
		}
		if k := MakeKey(v4, v6); k != tt.key {
			t.Errorf("MakeKey = %s, want %s", k, tt.key)
		}
	}
	// upstream's regex has no start anchor: a key embedded in a longer
	// name still parses, and we must agree.
	if v4, _, err := ParseKey("/coreos.com/network/subnets/10.1.2.0-24"); err != nil || v4.String() != "10.1.2.0/24" {
		t.Errorf("full path: %v %v", v4, err)
	}
	for _, bad := range []string{"", "10.5.52.0", "10.5.52.0-33", "10.5.52.0-24&zz-64", "300.1.1.1-24", "10.5.52.0-24&fd00::-129", "0.0.0.0-0", "abc"} {
		if _, _, err := ParseKey(bad); err == nil {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
}

func TestFreeSubnets(t *testing.T) {
	p := netip.MustParsePrefix
	min, max := netip.MustParseAddr("10.5.1.0"), netip.MustParseAddr("10.5.8.0")
	taken := []netip.Prefix{p("10.5.1.0/24"), p("10.5.2.128/25"), p("10.5.4.0/22"), p("192.168.0.0/16"), p("fd00::/64")}
	got := FreeSubnets(min, max, 24, taken, 100)
	want := []netip.Prefix{p("10.5.3.0/24"), p("10.5.8.0/24")}
	if len(got) != len(want) {
		t.Fatalf("got %v want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("got %v want %v", got, want)
		}
	}
	// A big earlier span covering later candidates.
	got = FreeSubnets(min, max, 24, []netip.Prefix{p("10.5.0.0/21"), p("10.5.3.0/24")}, 10)
	if len(got) != 1 || got[0] != p("10.5.8.0/24") {
		t.Fatalf("got %v", got)
	}
	got = FreeSubnets(netip.MustParseAddr("fd00:0:0:1::"), netip.MustParseAddr("fd00:0:0:ff::"), 64, []netip.Prefix{p("fd00:0:0:1::/64"), p("fd00:0:0:3::/64")}, 3)
	if len(got) != 3 || got[0] != p("fd00:0:0:2::/64") || got[1] != p("fd00:0:0:4::/64") {
		t.Fatalf("v6: got %v", got)
	}
	// The top of the IPv6 space must not wrap around.
	got = FreeSubnets(netip.MustParseAddr("ffff:ffff:ffff:fffe::"), netip.MustParseAddr("ffff:ffff:ffff:ffff::"), 64, nil, 10)
	if len(got) != 2 {
		t.Fatalf("top: got %v", got)
	}
}

func TestPickNeverOverlaps(t *testing.T) {
	c, err := ParseConfig([]byte(`{"EnableIPv6":true,"Network":"10.5.0.0/22","SubnetLen":26,"IPv6Network":"fd00::/60","IPv6SubnetLen":64}`))
	if err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	var leases []Lease
	// Pre-existing leases of other lengths, and an IPv4-only lease from
	// before IPv6 was enabled (upstream panics on those).
	leases = append(leases, Lease{Subnet: netip.MustParsePrefix("10.5.1.0/24")}, Lease{Subnet: netip.MustParsePrefix("10.5.0.64/26")})
	for {
		v4, v6, err := c.Pick(leases, rnd)
		if err != nil {
			if _, ok := err.(*ErrNoFreeSubnet); !ok {
				t.Fatal(err)
			}
			break
		}
		for _, l := range leases {
			if l.Subnet.Overlaps(v4) || (l.IPv6Subnet.IsValid() && l.IPv6Subnet.Overlaps(v6)) {
				t.Fatalf("picked %s/%s overlapping %s", v4, v6, l)
			}
		}
		leases = append(leases, Lease{Subnet: v4, IPv6Subnet: v6})
		if len(leases) > 100 {
			t.Fatal("too many picks")
		}
	}
	// /22 with /26: 16 subnets, the first skipped (15), minus the /24 (4)
	// and the /26 = 10 picks; IPv6 (15 subnets) is not the limit.
	if got := len(leases) - 2; got != 10 {
		t.Errorf("picked %d subnets, want 10", got)
	}
	_, _, err = c.Pick(leases, rnd)
	if err == nil || err.Error() != "out of subnets: no free IPv4 /26 subnet in range 10.5.0.64 ... 10.5.3.192 (12 leases exist); delete unused leases or enlarge the Network" {
		t.Errorf("exhaustion error: %v", err)
	}
}

func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"10.5.52.0-24", "10.12.13.0-24&fd00:12:13::-56", "0.0.0.0-0&fd00::-64", "1.2.3.4-99"} {
		f.Add(s)
	}
	for _, s := range []string{"x10.5.52.0-24", "10.5.52.0-24&-64", "10.5.52.0-24&fd00::-", "1.2.3.4.5-24", "10..3.4-24", "10.5.52.0-24&FD00::-64", "10.5.52.0-24&fd00::-64&fd01::-64"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// The plain-form fast path must split exactly as upstream's
		// pattern does.
		if m, ok := splitKey(s); ok {
			if re := keyRE.FindStringSubmatch(s); !slices.Equal(m, re) {
				t.Fatalf("%q: fast path %q, pattern %q", s, m, re)
			}
		}
		v4, v6, err := ParseKey(s)
		if err != nil {
			return
		}
		k := MakeKey(v4, v6)
		a4, a6, err := ParseKey(k)
		if err != nil || a4 != v4 || a6 != v6 {
			t.Fatalf("%q -> %q does not round-trip: %v", s, k, err)
		}
	})
}

func FuzzLeaseAttrs(f *testing.F) {
	for _, v := range upstreamValues {
		f.Add([]byte(v))
	}
	f.Add([]byte(`{"PublicIP":"::ffff:1.2.3.4","BackendData":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := DecodeAttrs(data)
		if err != nil {
			return
		}
		out, err := EncodeAttrs(a)
		if err != nil {
			t.Fatalf("decoded %q but cannot encode: %v", data, err)
		}
		b, err := DecodeAttrs(out)
		if err != nil {
			t.Fatalf("re-decode %s: %v", out, err)
		}
		out2, _ := EncodeAttrs(b)
		if string(out2) != string(out) {
			t.Fatalf("not stable: %s vs %s", out, out2)
		}
	})
}
