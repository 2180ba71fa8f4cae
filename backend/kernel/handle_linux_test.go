package kernel

import (
	"net"
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

func TestObserveRoute(t *testing.T) {
	_, dst, _ := net.ParseCIDR("10.5.2.0/24")
	want := Route{Dst: netip.MustParsePrefix("10.5.2.0/24"), Gw: netip.MustParseAddr("10.5.2.0"), LinkIndex: 5, OnLink: true}
	nr := toNetlinkRoute(want)
	nr.Dst = dst
	nr.Flags |= unix.RTNH_F_LINKDOWN // the kernel's own flag must not matter
	o := observeRoute(*nr)
	if !o.matches(want) {
		t.Fatalf("round trip: %+v does not match %+v", o, want)
	}
	nr.Src = net.ParseIP("10.5.1.0")
	if observeRoute(*nr).matches(want) {
		t.Fatal("a preferred source is an attribute we never set")
	}
	v6 := Route{Dst: netip.MustParsePrefix("fd10:0:2::/64"), Gw: netip.MustParseAddr("fd31::2"), LinkIndex: 2}
	o6 := observeRoute(*toNetlinkRoute(v6))
	if !o6.matches(v6) || !o6.Dst.Addr().Is6() {
		t.Fatalf("IPv6 round trip: %+v", o6)
	}
}

func TestAddrConversions(t *testing.T) {
	if a := AddrFromIP(net.ParseIP("10.0.0.1"), true); a != netip.MustParseAddr("10.0.0.1") {
		t.Fatalf("16-byte IPv4: %v", a)
	}
	if a := AddrFromIP(net.IP{10, 0, 0, 1}, false); !a.Is4() {
		t.Fatalf("4-byte IPv4: %v", a)
	}
	if a := AddrFromIP(nil, true); a.IsValid() {
		t.Fatalf("nil IP: %v", a)
	}
	if p := PrefixFromIPNet(IPNet(netip.MustParsePrefix("fd10:0:1::/128"))); p.String() != "fd10:0:1::/128" {
		t.Fatalf("prefix round trip: %v", p)
	}
	if p := PrefixFromIPNet(&net.IPNet{IP: net.ParseIP("10.5.1.7"), Mask: net.CIDRMask(24, 32)}); p.String() != "10.5.1.0/24" {
		t.Fatalf("16-byte IPv4 with /24 mask: %v", p)
	}
}
