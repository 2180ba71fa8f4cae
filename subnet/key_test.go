package subnet

import (
	"net/netip"
	"testing"
)

// A hand-written key with host bits set ("10.5.52.7-24", a typo in a
// reservation) is read as its network, as upstream reads it. The fuzz
// target's round trip (ParseKey, MakeKey, ParseKey) cannot see a parser
// that keeps the host bits: both parses would agree on the wrong prefix.
func TestParseKeyHostBits(t *testing.T) {
	tests := []struct {
		key    string
		v4, v6 string
	}{
		{"10.5.52.7-24", "10.5.52.0/24", ""},
		{"10.5.52.255-23", "10.5.52.0/23", ""},
		{"10.5.52.7-24&fd00:10:0:5a::9-64", "10.5.52.0/24", "fd00:10:0:5a::/64"},
		{"0.0.0.0-0&fd00:10:0:5a00:1::-56", "", "fd00:10:0:5a00::/56"},
		// Through upstream's pattern (not the plain form): same rule.
		{"/coreos.com/network/subnets/10.5.52.7-24", "10.5.52.0/24", ""},
	}
	for _, tt := range tests {
		v4, v6, err := ParseKey(tt.key)
		if err != nil {
			t.Errorf("ParseKey(%q): %v", tt.key, err)
			continue
		}
		var w4, w6 netip.Prefix
		if tt.v4 != "" {
			w4 = netip.MustParsePrefix(tt.v4)
		}
		if tt.v6 != "" {
			w6 = netip.MustParsePrefix(tt.v6)
		}
		if v4 != w4 || v6 != w6 {
			t.Errorf("ParseKey(%q) = %v %v, want %v %v", tt.key, v4, v6, w4, w6)
		}
	}
}
