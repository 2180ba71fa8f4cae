package netdev

import (
	"net/netip"
	"testing"
)

func TestStale(t *testing.T) {
	v4 := Want{Addr: netip.MustParsePrefix("10.5.1.0/32"), Network: netip.MustParsePrefix("10.5.0.0/16")}
	v6 := Want{Addr: netip.MustParsePrefix("fd10:0:0:1::/128"), Network: netip.MustParsePrefix("fd10::/48")}
	for _, tc := range []struct {
		w     Want
		addr  string
		stale bool
	}{
		{v4, "10.5.1.0/32", false},
		{v4, "10.5.9.0/32", true},     // an old lease's
		{v4, "10.5.1.0/24", true},     // ours, another length
		{v4, "192.168.7.1/24", false}, // someone else's
		{v6, "fd10:0:0:1::/128", false},
		{v6, "fd10:0:0:9::/128", true},
		{v6, "2001:db8::1/64", true},
		{v6, "fe80::1/64", false},
		{Want{Addr: v4.Addr}, "10.5.9.0/32", false}, // no network known: nothing is stale
	} {
		if got := Stale(tc.w, netip.MustParsePrefix(tc.addr)); got != tc.stale {
			t.Errorf("Stale(%v, %s) = %v, want %v", tc.w, tc.addr, got, tc.stale)
		}
	}
}
