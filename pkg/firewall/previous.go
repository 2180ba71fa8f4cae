package firewall

import (
	"slices"
	"strings"
)

// Rules older upstream versions (v0.11 up to about v0.19) put straight into
// POSTROUTING and FORWARD, before FLANNEL-POSTRTG and FLANNEL-FWD existed.
// They survive an upgrade, sit ahead of our jump and, lacking the kube-proxy
// mark RETURN, keep the double-NAT bug alive. Rules inside our own chains need
// no such care: every apply rewrites those chains whole.

// previousRules returns, for one family of cfg, the exact rule lines older
// upstream versions added to POSTROUTING (nat) and FORWARD (filter), in every
// variant they were written: with or without the comment, with or without
// --random-fully.
func previousRules(cfg Config, f family) (nat, filter []string) {
	network, subnet, ok := cfg.prefixes(f)
	if !ok {
		return nil, nil
	}
	n, pod := network.String(), subnet.String()
	variants := func(parent, comment, match, target string, withRandom bool) []string {
		var out []string
		for _, c := range []string{"", " -m comment --comment " + quote(comment)} {
			out = append(out, "-A "+parent+" "+match+c+" -j "+target)
			if withRandom {
				out = append(out, "-A "+parent+" "+match+c+" -j "+target+" --random-fully")
			}
		}
		return out
	}
	nat = slices.Concat(
		variants("POSTROUTING", masqComment, "-s "+n+" -d "+n, "RETURN", false),
		variants("POSTROUTING", masqComment, "-s "+n+" ! -d "+f.multicast(), "MASQUERADE", true),
		variants("POSTROUTING", masqComment, "! -s "+n+" -d "+pod, "RETURN", false),
		variants("POSTROUTING", masqComment, "! -s "+n+" -d "+n, "MASQUERADE", true),
	)
	filter = slices.Concat(
		variants("FORWARD", forwardComment, "-s "+n, "ACCEPT", false),
		variants("FORWARD", forwardComment, "-d "+n, "ACCEPT", false),
	)
	return nat, filter
}

// planPrevious returns the edits that delete, from a full dump of family f,
// the rules earlier flannel versions left outside our chains: any rule in
// POSTROUTING or FORWARD carrying flannel's comment that is not our jump, and
// the comment-less v0.11 rules for the networks in prevs.
func planPrevious(tables map[string]*savedTable, f family, prevs []Config) []tableEdit {
	var edits []tableEdit
	for _, def := range ourChains {
		t := tables[def.table]
		if t == nil {
			continue
		}
		exact := map[string]bool{}
		for _, p := range prevs {
			nat, filter := previousRules(p, f)
			rules := nat
			if def.table == "filter" {
				rules = filter
			}
			for _, r := range rules {
				exact[r] = true
			}
		}
		var lines []string
		for _, r := range t.rules[def.parent] {
			if targets(r, def.name) {
				continue
			}
			if exact[r] || strings.Contains(r, " --comment "+quote(def.comment)+" ") {
				lines = append(lines, deleteLine(r))
			}
		}
		if len(lines) > 0 {
			edits = append(edits, tableEdit{table: def.table, lines: lines})
		}
	}
	return edits
}
