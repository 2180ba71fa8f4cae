package firewall

import "testing"

func TestCommandsFor(t *testing.T) {
	c := CommandsFor(VariantLegacy)
	if c.IPTables != "iptables-legacy" || c.IPTablesSave != "iptables-legacy-save" || c.IP6TablesRestore != "ip6tables-legacy-restore" {
		t.Errorf("legacy commands = %+v", c)
	}
	c = CommandsFor(VariantNFT)
	if c.save(ipv4) != "iptables-nft-save" || c.restore(ipv6) != "ip6tables-nft-restore" || c.IP6Tables != "ip6tables-nft" {
		t.Errorf("nft commands = %+v", c)
	}
	c = CommandsFor(VariantPlain)
	if c.save(ipv6) != "ip6tables-save" || c.restore(ipv4) != "iptables-restore" || c.name() != "plain" {
		t.Errorf("plain commands = %+v", c)
	}
}

func TestChooseVariant(t *testing.T) {
	kubeNft := []byte("*mangle\n:PREROUTING ACCEPT [0:0]\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n")
	canaryLegacy := []byte("*mangle\n:KUBE-KUBELET-CANARY - [0:0]\nCOMMIT\n")
	rules := func(n int, chain string) []byte {
		b := []byte("*filter\n")
		for range n {
			b = append(b, "-A "+chain+" -j ACCEPT\n"...)
		}
		return append(b, "COMMIT\n"...)
	}
	tests := []struct {
		name string
		ev   variantEvidence
		want string
	}{
		{"kubelet hint in nft wins over legacy rules", variantEvidence{nftMangle: kubeNft, legacyDump: rules(50, "INPUT")}, VariantNFT},
		{"kubelet canary in legacy", variantEvidence{legacyDump: canaryLegacy, nftDump: rules(5, "INPUT")}, VariantLegacy},
		{"more KUBE rules in legacy beats more rules in nft", variantEvidence{legacyDump: rules(3, "KUBE-SERVICES"), nftDump: rules(40, "DOCKER")}, VariantLegacy},
		{"more KUBE rules in nft", variantEvidence{legacyDump: rules(1, "KUBE-X"), nftDump: rules(2, "KUBE-X")}, VariantNFT},
		{"more rules in legacy", variantEvidence{legacyDump: rules(12, "INPUT"), nftDump: rules(2, "INPUT")}, VariantLegacy},
		{"more rules in nft", variantEvidence{legacyDump: rules(1, "INPUT"), nftDump: rules(2, "INPUT")}, VariantNFT},
		{"tie goes to the system default legacy", variantEvidence{legacyDump: rules(2, "INPUT"), nftDump: rules(2, "INPUT"), systemDefault: VariantLegacy}, VariantLegacy},
		{"empty node, default nft", variantEvidence{systemDefault: VariantNFT}, VariantNFT},
		{"empty node, unknown default", variantEvidence{}, VariantNFT},
		{"hint needs the chain declaration", variantEvidence{nftMangle: []byte("-A X -j KUBE-IPTABLES-HINT\n"), legacyDump: rules(1, "INPUT")}, VariantLegacy},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := chooseVariant(tt.ev)
			if got != tt.want {
				t.Errorf("variant = %q (%s), want %q", got, reason, tt.want)
			}
			if reason == "" {
				t.Error("no reason given")
			}
		})
	}
}

func TestVariantOfBinary(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/sbin/xtables-nft-multi":    VariantNFT,
		"/usr/sbin/xtables-legacy-multi": VariantLegacy,
		"/usr/sbin/iptables-wrapper":     "",
		"/sbin/xtables-multi":            "",
	} {
		if got := variantOfBinary(in); got != want {
			t.Errorf("variantOfBinary(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestVersionAtLeast(t *testing.T) {
	for _, tt := range []struct {
		v    [3]int
		want bool
	}{
		{[3]int{1, 6, 2}, true}, {[3]int{1, 8, 9}, true}, {[3]int{1, 6, 1}, false},
		{[3]int{1, 4, 21}, false}, {[3]int{2, 0, 0}, true}, {[3]int{0, 9, 9}, false},
	} {
		if got := versionAtLeast(tt.v[0], tt.v[1], tt.v[2], 1, 6, 2); got != tt.want {
			t.Errorf("versionAtLeast(%v, 1.6.2) = %v, want %v", tt.v, got, tt.want)
		}
	}
}
