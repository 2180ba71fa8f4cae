package firewall

import (
	"strings"
	"testing"
)

// As `nft list table` prints it (nftables 1.0.6), iptables semantics: the
// mark under its mask, rule 4 on the network.
const goldenNFTv4 = `table ip flannel-ipv4 {
	comment "rules for flannel-ipv4"
	chain postrtg {
		comment "chain to manage traffic masquerading by flannel"
		type nat hook postrouting priority srcnat; policy accept;
		meta mark & 0x00004000 == 0x00004000 return
		ip saddr 10.5.21.0/24 ip daddr 10.5.0.0/16 return
		ip saddr 10.5.0.0/16 ip daddr 10.5.21.0/24 return
		ip saddr != 10.5.0.0/16 ip daddr 10.5.21.0/24 return
		ip saddr 10.5.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random
		ip saddr != 10.5.0.0/16 ip daddr 10.5.0.0/16 masquerade fully-random
	}

	chain forward {
		comment "chain to accept flannel traffic"
		type filter hook forward priority filter; policy accept;
		ip saddr 10.5.0.0/16 accept
		ip daddr 10.5.0.0/16 accept
	}
}
`

const goldenNFTv6 = `table ip6 flannel-ipv6 {
	comment "rules for flannel-ipv6"
	chain postrtg {
		comment "chain to manage traffic masquerading by flannel"
		type nat hook postrouting priority srcnat; policy accept;
		meta mark & 0x00004000 == 0x00004000 return
		ip6 saddr fd00:10:5:21::/64 ip6 daddr fd00:10:5::/48 return
		ip6 saddr fd00:10:5::/48 ip6 daddr fd00:10:5:21::/64 return
		ip6 saddr != fd00:10:5::/48 ip6 daddr fd00:10:5:21::/64 return
		ip6 saddr fd00:10:5::/48 ip6 daddr != ff00::/8 masquerade fully-random
		ip6 saddr != fd00:10:5::/48 ip6 daddr fd00:10:5::/48 masquerade fully-random
	}

	chain forward {
		comment "chain to accept flannel traffic"
		type filter hook forward priority filter; policy accept;
		ip6 saddr fd00:10:5::/48 accept
		ip6 daddr fd00:10:5::/48 accept
	}
}
`

func TestNFTablesRulesetGolden(t *testing.T) {
	masqOnly := func(s string) string {
		i := strings.Index(s, "\n\n\tchain forward")
		return s[:i] + "\n}\n"
	}
	forwardOnly := func(s string) string {
		head := s[:strings.Index(s, "\tchain postrtg")]
		return head + s[strings.Index(s, "\tchain forward"):]
	}
	tests := []struct {
		name string
		cfg  func() Config
		want string
	}{
		{"v4", func() Config { return testConfig(true, false) }, goldenNFTv4},
		{"v6 table only when IPv6 is on", func() Config { return testConfig(false, true) }, goldenNFTv6},
		{"dual stack", func() Config { return testConfig(true, true) }, goldenNFTv4 + goldenNFTv6},
		{"no fully-random", func() Config { c := testConfig(true, false); c.RandomFully = false; return c },
			strings.ReplaceAll(goldenNFTv4, " fully-random", "")},
		{"masq only", func() Config { c := testConfig(true, false); c.Forward = false; return c }, masqOnly(goldenNFTv4)},
		{"forward only", func() Config { c := testConfig(true, false); c.Masq = false; return c }, forwardOnly(goldenNFTv4)},
		{"nothing wanted", func() Config { c := testConfig(true, true); c.Masq, c.Forward = false, false; return c }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NFTablesRuleset(tt.cfg()); got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestNFTHelpers(t *testing.T) {
	if got, want := nftReplace(nftTableV4, "X\n"), "table ip flannel-ipv4\ndelete table ip flannel-ipv4\nX\n"; got != want {
		t.Errorf("nftReplace = %q, want %q", got, want)
	}
	if got, want := nftReplace(nftTableV6, ""), "table ip6 flannel-ipv6\ndelete table ip6 flannel-ipv6\n"; got != want {
		t.Errorf("nftReplace delete = %q, want %q", got, want)
	}
	// nft's own indentation and blank lines do not count; content does.
	listed := strings.ReplaceAll(goldenNFTv4, "\t", "    ") + "\n\n"
	if normalizeNFT(listed) != normalizeNFT(goldenNFTv4) {
		t.Error("normalizeNFT distinguishes whitespace")
	}
	if normalizeNFT(strings.Replace(goldenNFTv4, "return", "accept", 1)) == normalizeNFT(goldenNFTv4) {
		t.Error("normalizeNFT hides a changed rule")
	}
	got := nftTablesIn([]byte("table ip filter\ntable ip6 flannel-ipv6\ntable inet flannel-ipv4\ntable ip flannel-ipv4\n"))
	if len(got) != 2 || got[0] != nftTableV6 || got[1] != nftTableV4 {
		t.Errorf("nftTablesIn = %v", got)
	}
	if !strings.Contains(nftProbe(true), "masquerade fully-random") || strings.Contains(nftProbe(false), "fully-random") {
		t.Error("nftProbe does not follow its argument")
	}
}
