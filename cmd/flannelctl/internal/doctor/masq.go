package doctor

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/flannelng/flannel/pkg/firewall"
	"github.com/flannelng/flannel/subnet"
)

var netipZero netip.Prefix

const masqRestart = "restart flanneld with --ip-masq: it rewrites the masquerade rules atomically (while running it repairs them within --iptables-resync seconds)"

// checkMasquerade compares the masquerade rules with firewall's generators,
// when subnet.env says flanneld runs with --ip-masq. --random-fully is used
// by the daemon only where the tools support it (and not with
// --ip-masq-fully-random-disable), so both forms are accepted; the rules must
// use one of them consistently.
func checkMasquerade(r *report, in Input, own subnet.Lease, envOK bool) {
	if !envOK {
		return
	}
	if !in.Env.IPMasq {
		r.skip("masquerade rules: FLANNEL_IPMASQ=false (flanneld runs without --ip-masq)")
		return
	}
	cfg := in.Config
	base := firewall.Config{Masq: true}
	if cfg.EnableIPv4 && own.Subnet.IsValid() {
		base.Network, base.Subnet = cfg.Network, own.Subnet.Masked()
	}
	if cfg.EnableIPv6 && own.IPv6Subnet.IsValid() {
		base.IPv6Network, base.IPv6Subnet = cfg.IPv6Network, own.IPv6Subnet.Masked()
	}
	rf, plain := base, base
	rf.RandomFully = true
	fw := in.Facts.Firewall
	if cfg.EnableNFTables {
		for _, v6 := range []bool{false, true} {
			one := func(c firewall.Config) string {
				if v6 {
					c.Network, c.Subnet = netipZero, netipZero
				} else {
					c.IPv6Network, c.IPv6Subnet = netipZero, netipZero
				}
				return firewall.NFTablesRuleset(c)
			}
			want, wantPlain := one(rf), one(plain)
			if want == "" {
				continue
			}
			table, dump, err, absent := "ip flannel-ipv4", fw.NAT4, fw.NAT4Err, fw.Absent4
			if v6 {
				table, dump, err, absent = "ip6 flannel-ipv6", fw.NAT6, fw.NAT6Err, fw.Absent6
			}
			compareNFT(r, table, dump, err, absent, want, wantPlain)
		}
		return
	}
	chainsRF, chainsPlain := firewall.IPTablesChains(rf), firewall.IPTablesChains(plain)
	for i, want := range chainsRF {
		dump, err, tool := fw.NAT4, fw.NAT4Err, "iptables"
		if want.IPv6 {
			dump, err, tool = fw.NAT6, fw.NAT6Err, "ip6tables"
		}
		compareIPTables(r, tool, fw.Tool, dump, err, want, chainsPlain[i])
	}
}

// natChains parses `iptables-save -t nat` output: the declared chains and
// the "-A" lines of each chain, in order.
func natChains(dump string) (declared map[string]bool, rules map[string][]string) {
	declared, rules = map[string]bool{}, map[string][]string{}
	in := false
	for line := range strings.Lines(dump) {
		line = strings.TrimRight(line, "\r\n")
		switch {
		case strings.HasPrefix(line, "*"):
			in = strings.TrimSpace(line[1:]) == "nat"
		case !in:
		case line == "COMMIT":
			in = false
		case strings.HasPrefix(line, ":"):
			name, _, _ := strings.Cut(line[1:], " ")
			declared[name] = true
		case strings.HasPrefix(line, "-A "):
			chain, _, _ := strings.Cut(line[3:], " ")
			rules[chain] = append(rules[chain], line)
		}
	}
	return declared, rules
}

func compareIPTables(r *report, tool, source, dump string, dumpErr error, rf, plain firewall.IPTablesChain) {
	if dumpErr != nil {
		r.fail("run flannelctl doctor as root inside the node's network namespace, with iptables installed",
			"read the %s nat table: %v", tool, dumpErr)
		return
	}
	declared, rules := natChains(dump)
	chain := rf.Name
	if !declared[chain] {
		r.fail(masqRestart, "chain %s is missing from the %s nat table: pod traffic to the outside is not masqueraded", chain, tool)
		return
	}
	jumps := 0
	for _, j := range rules[rf.Parent] {
		if strings.HasSuffix(j, " -j "+chain) || strings.HasSuffix(j, " -g "+chain) {
			jumps++
		}
	}
	switch jumps {
	case 0:
		r.fail(tool+" -t nat "+rf.Jump, "%s does not jump to %s: nothing is masqueraded", rf.Parent, chain)
	case 1:
	default:
		r.fail(masqRestart, "%s jumps to %s %d times", rf.Parent, chain, jumps)
	}
	got := rules[chain]
	want := plain.Rules
	for _, g := range got {
		if slices.Contains(rf.Rules, g) && !slices.Contains(plain.Rules, g) {
			want = rf.Rules // the --random-fully form is in use
			break
		}
	}
	bad := false
	for _, w := range want {
		if !slices.Contains(got, w) {
			bad = true
			r.fail(masqRestart, "masquerade rule missing from %s (%s): %s", chain, tool, w)
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			bad = true
			r.fail(masqRestart, "unexpected rule in %s (%s; an old subnet or network?): %s", chain, tool, g)
		}
	}
	if !bad && !slices.Equal(got, want) {
		bad = true
		r.fail(masqRestart, "%s (%s) holds the expected rules in the wrong order", chain, tool)
	}
	if !bad && jumps == 1 {
		r.ok("masquerade rules (%s): %s holds the %d expected rules and %s jumps to it", source, chain, len(want), rf.Parent)
	}
}

// chainBody returns the trimmed lines inside `chain NAME { ... }` of nft
// output, nil when the chain is absent.
func chainBody(s, name string) []string {
	var out []string
	in := false
	for line := range strings.Lines(s) {
		line = strings.TrimSpace(line)
		switch {
		case !in && line == "chain "+name+" {":
			in, out = true, []string{}
		case in && line == "}":
			return out
		case in && line != "":
			out = append(out, line)
		}
	}
	return out
}

func compareNFT(r *report, table, dump string, dumpErr error, absent bool, want, wantPlain string) {
	switch {
	case absent:
		r.fail(masqRestart, "nft table %s is missing: pod traffic to the outside is not masqueraded", table)
		return
	case dumpErr != nil:
		r.fail("run flannelctl doctor as root inside the node's network namespace, with nft installed",
			"read nft table %s: %v", table, dumpErr)
		return
	}
	got := chainBody(dump, "postrtg")
	if got == nil {
		r.fail(masqRestart, "nft table %s has no postrtg chain: pod traffic to the outside is not masqueraded", table)
		return
	}
	w := chainBody(wantPlain, "postrtg")
	if rfw := chainBody(want, "postrtg"); slices.ContainsFunc(got, func(g string) bool { return strings.HasSuffix(g, "fully-random") }) {
		w = rfw
	}
	bad := false
	for _, l := range w {
		if !slices.Contains(got, l) {
			bad = true
			r.fail(masqRestart, "masquerade rule missing from nft chain %s postrtg: %s", table, l)
		}
	}
	for _, l := range got {
		if !slices.Contains(w, l) {
			bad = true
			r.fail(masqRestart, "unexpected line in nft chain %s postrtg: %s", table, l)
		}
	}
	if !bad && !slices.Equal(got, w) {
		bad = true
		r.fail(masqRestart, "nft chain %s postrtg holds the expected rules in the wrong order", table)
	}
	if !bad {
		r.ok("masquerade rules (nft): chain %s postrtg holds the expected rules", table)
	}
}
