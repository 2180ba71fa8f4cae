package firewall

import (
	"strings"
)

// nftTable names one of our nftables tables.
type nftTable struct {
	family string // nft address family: ip or ip6
	name   string
}

var (
	nftTableV4 = nftTable{family: "ip", name: "flannel-ipv4"}
	nftTableV6 = nftTable{family: "ip6", name: "flannel-ipv6"}
)

func nftTableFor(f family) nftTable {
	if f == ipv6 {
		return nftTableV6
	}
	return nftTableV4
}

func (t nftTable) String() string { return t.family + " " + t.name }

// NFTablesRuleset returns the nft definition of every table cfg asks for,
// IPv4 then IPv6, in the exact form `nft list table` prints it. Table, chain
// and comment names are upstream's; the rules carry iptables' semantics
// (mark tested under its mask, rule 4 on the network) instead of upstream's
// nft variants, which differ from its own iptables rules.
func NFTablesRuleset(cfg Config) string {
	var b strings.Builder
	for _, f := range families {
		b.WriteString(nftDefinition(cfg, f))
	}
	return b.String()
}

// nftDefinition returns the table of family f, "" when cfg wants none (family
// disabled, or neither masquerade nor forward rules).
func nftDefinition(cfg Config, f family) string {
	network, subnet, ok := cfg.prefixes(f)
	if !ok || !cfg.Masq && !cfg.Forward {
		return ""
	}
	t := nftTableFor(f)
	addr := t.family // the nft address match is "ip saddr" / "ip6 saddr"
	n, pod := network.String(), subnet.String()
	var b strings.Builder
	line := func(indent int, s string) {
		b.WriteString(strings.Repeat("\t", indent) + s + "\n")
	}
	line(0, "table "+t.String()+" {")
	line(1, `comment "rules for `+t.name+`"`)
	if cfg.Masq {
		masq := "masquerade"
		if cfg.RandomFully {
			masq += " fully-random"
		}
		line(1, "chain postrtg {")
		line(2, `comment "chain to manage traffic masquerading by flannel"`)
		line(2, "type nat hook postrouting priority srcnat; policy accept;")
		line(2, "meta mark & 0x00004000 == 0x00004000 return")
		line(2, addr+" saddr "+pod+" "+addr+" daddr "+n+" return")
		line(2, addr+" saddr "+n+" "+addr+" daddr "+pod+" return")
		line(2, addr+" saddr != "+n+" "+addr+" daddr "+pod+" return")
		line(2, addr+" saddr "+n+" "+addr+" daddr != "+f.multicast()+" "+masq)
		line(2, addr+" saddr != "+n+" "+addr+" daddr "+n+" "+masq)
		line(1, "}")
	}
	if cfg.Masq && cfg.Forward {
		b.WriteString("\n") // nft separates chains with a blank line
	}
	if cfg.Forward {
		line(1, "chain forward {")
		line(2, `comment "chain to accept flannel traffic"`)
		line(2, "type filter hook forward priority filter; policy accept;")
		line(2, addr+" saddr "+n+" accept")
		line(2, addr+" daddr "+n+" accept")
		line(1, "}")
	}
	line(0, "}")
	return b.String()
}

// nftReplace returns the nft input that atomically replaces table t with def
// (or deletes it when def is empty). Declaring the table first makes the
// delete succeed whether or not the table exists; nft -f applies the whole
// input as one transaction, so no packet sees a missing table.
func nftReplace(t nftTable, def string) string {
	s := "table " + t.String() + "\ndelete table " + t.String() + "\n"
	return s + def
}

// normalizeNFT makes `nft list` output comparable with a definition: the
// indentation and blank lines nft chooses are not part of the state.
func normalizeNFT(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		if line = strings.TrimSpace(line); line != "" {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// nftTablesIn returns the tables of ours named in `nft list tables` output.
func nftTablesIn(out []byte) []nftTable {
	var found []nftTable
	for line := range strings.Lines(string(out)) {
		for _, t := range []nftTable{nftTableV4, nftTableV6} {
			if strings.TrimSpace(line) == "table "+t.String() {
				found = append(found, t)
			}
		}
	}
	return found
}

// nftProbe is a throwaway definition for `nft --check`: it tells whether the
// kernel and nft accept fully-random without committing anything.
func nftProbe(fullyRandom bool) string {
	masq := "masquerade"
	if fullyRandom {
		masq += " fully-random"
	}
	return "table ip flannel-probe {\n\tchain masqueradeTest {\n" +
		"\t\ttype nat hook postrouting priority srcnat; policy accept;\n" +
		"\t\t" + masq + "\n\t}\n}\n"
}
