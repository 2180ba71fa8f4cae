package firewall

import (
	"net/netip"
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	p := netip.MustParsePrefix
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // substring; "" means valid
	}{
		{"empty", Config{}, ""},
		{"v4", Config{Network: p("10.5.0.0/16"), Subnet: p("10.5.21.0/24")}, ""},
		{"v6", Config{IPv6Network: p("fd00::/48"), IPv6Subnet: p("fd00:0:0:1::/64")}, ""},
		{"subnet equals network", Config{Network: p("10.5.0.0/16"), Subnet: p("10.5.0.0/16")}, ""},
		{"subnet without network", Config{Subnet: p("10.5.21.0/24")}, "Subnet 10.5.21.0/24 is set but Network is not"},
		{"network without subnet", Config{Network: p("10.5.0.0/16")}, "Network 10.5.0.0/16 is set but Subnet is not"},
		{"subnet outside", Config{Network: p("10.5.0.0/16"), Subnet: p("10.6.21.0/24")}, "Subnet 10.6.21.0/24 is not inside Network 10.5.0.0/16"},
		{"subnet larger", Config{Network: p("10.5.0.0/16"), Subnet: p("10.0.0.0/8")}, "Subnet 10.0.0.0/8 is not inside Network 10.5.0.0/16"},
		{"unmasked network", Config{Network: p("10.5.1.0/16"), Subnet: p("10.5.21.0/24")}, "Network 10.5.1.0/16 is not a network address (want 10.5.0.0/16)"},
		{"unmasked subnet", Config{Network: p("10.5.0.0/16"), Subnet: p("10.5.21.1/24")}, "Subnet 10.5.21.1/24 is not a network address"},
		{"v6 in v4 field", Config{Network: p("fd00::/48"), Subnet: p("fd00::/64")}, "Network fd00::/48 is not an IPv4 prefix"},
		{"v4 in v6 field", Config{IPv6Network: p("10.5.0.0/16"), IPv6Subnet: p("10.5.21.0/24")}, "IPv6Network 10.5.0.0/16 is not an IPv6 prefix"},
		{"v6 subnet without network", Config{IPv6Subnet: p("fd00::/64")}, "IPv6Subnet fd00::/64 is set but IPv6Network is not"},
		{"v6 subnet outside", Config{IPv6Network: p("fd00::/48"), IPv6Subnet: p("fd01::/64")}, "IPv6Subnet fd01::/64 is not inside IPv6Network fd00::/48"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("no error, want %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestModeOther(t *testing.T) {
	if ModeIPTables.Other() != ModeNFTables || ModeNFTables.Other() != ModeIPTables {
		t.Fatal("Other does not swap the modes")
	}
}
