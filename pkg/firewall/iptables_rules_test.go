package firewall

import (
	"net/netip"
	"strings"
	"testing"
)

// Golden text from the spec (flannel-daemon.md 6.2, identical to upstream's
// e2e/rules.go) for Network 10.5.0.0/16 and subnet 10.5.21.0/24.
const goldenMasqV4 = `-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.5.21.0/24 -d 10.5.0.0/16 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.5.0.0/16 -d 10.5.21.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG ! -s 10.5.0.0/16 -d 10.5.21.0/24 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.5.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
-A FLANNEL-POSTRTG ! -s 10.5.0.0/16 -d 10.5.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
`

const goldenForwardV4 = `-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
-A FLANNEL-FWD -s 10.5.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
-A FLANNEL-FWD -d 10.5.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
`

const goldenMasqV6 = `-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s fd00:10:5:21::/64 -d fd00:10:5::/48 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s fd00:10:5::/48 -d fd00:10:5:21::/64 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG ! -s fd00:10:5::/48 -d fd00:10:5:21::/64 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s fd00:10:5::/48 ! -d ff00::/8 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
-A FLANNEL-POSTRTG ! -s fd00:10:5::/48 -d fd00:10:5::/48 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
`

const goldenForwardV6 = `-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
-A FLANNEL-FWD -s fd00:10:5::/48 -m comment --comment "flanneld forward" -j ACCEPT
-A FLANNEL-FWD -d fd00:10:5::/48 -m comment --comment "flanneld forward" -j ACCEPT
`

func testConfig(v4, v6 bool) Config {
	cfg := Config{Masq: true, Forward: true, RandomFully: true}
	if v4 {
		cfg.Network = netip.MustParsePrefix("10.5.0.0/16")
		cfg.Subnet = netip.MustParsePrefix("10.5.21.0/24")
	}
	if v6 {
		cfg.IPv6Network = netip.MustParsePrefix("fd00:10:5::/48")
		cfg.IPv6Subnet = netip.MustParsePrefix("fd00:10:5:21::/64")
	}
	return cfg
}

func noRandom(s string) string { return strings.ReplaceAll(s, " --random-fully", "") }

func TestIPTablesChainsGolden(t *testing.T) {
	tests := []struct {
		name  string
		cfg   func() Config
		wants []string // chain texts in order
		v6    []bool
	}{
		{"v4 random-fully", func() Config { return testConfig(true, false) }, []string{goldenMasqV4, goldenForwardV4}, []bool{false, false}},
		{"v4 plain masquerade", func() Config { c := testConfig(true, false); c.RandomFully = false; return c }, []string{noRandom(goldenMasqV4), goldenForwardV4}, []bool{false, false}},
		{"v6 only", func() Config { return testConfig(false, true) }, []string{goldenMasqV6, goldenForwardV6}, []bool{true, true}},
		{"dual stack", func() Config { return testConfig(true, true) }, []string{goldenMasqV4, goldenForwardV4, goldenMasqV6, goldenForwardV6}, []bool{false, false, true, true}},
		{"masq only", func() Config { c := testConfig(true, false); c.Forward = false; return c }, []string{goldenMasqV4}, []bool{false}},
		{"forward only", func() Config { c := testConfig(true, false); c.Masq = false; return c }, []string{goldenForwardV4}, []bool{false}},
		{"nothing", func() Config { c := testConfig(true, true); c.Masq, c.Forward = false, false; return c }, nil, nil},
		{"no family", func() Config { return testConfig(false, false) }, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := IPTablesChains(tt.cfg())
			if len(got) != len(tt.wants) {
				t.Fatalf("got %d chains, want %d", len(got), len(tt.wants))
			}
			for i, c := range got {
				if c.String() != tt.wants[i] {
					t.Errorf("chain %d:\n got:\n%s\nwant:\n%s", i, c.String(), tt.wants[i])
				}
				if c.IPv6 != tt.v6[i] {
					t.Errorf("chain %d: IPv6 = %v, want %v", i, c.IPv6, tt.v6[i])
				}
				wantTable, wantParent := "nat", "POSTROUTING"
				if c.Name == ForwardChain {
					wantTable, wantParent = "filter", "FORWARD"
				}
				if c.Table != wantTable || c.Parent != wantParent {
					t.Errorf("chain %s in %s/%s, want %s/%s", c.Name, c.Table, c.Parent, wantTable, wantParent)
				}
			}
		})
	}
}
