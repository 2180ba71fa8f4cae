package firewall

import (
	"net/netip"
	"strings"
)

// Chain names, comments and the kube-proxy mark are interface: users and
// upstream's e2e tests compare the rule text.
const (
	MasqChain    = "FLANNEL-POSTRTG"
	ForwardChain = "FLANNEL-FWD"

	masqComment    = "flanneld masq"
	forwardComment = "flanneld forward"
	// kube-proxy marks packets it will masquerade itself; RETURN for them
	// avoids double NAT (upstream PR #1681).
	kubeProxyMark = "0x4000/0x4000"
)

// chainDef says where one of our chains lives and how it is reached.
type chainDef struct {
	table   string // nat or filter
	name    string // our chain
	parent  string // built-in chain holding the jump
	comment string
}

var (
	masqDef    = chainDef{table: "nat", name: MasqChain, parent: "POSTROUTING", comment: masqComment}
	forwardDef = chainDef{table: "filter", name: ForwardChain, parent: "FORWARD", comment: forwardComment}
	// ourChains lists every chain we own, in the order tables are handled.
	ourChains = []chainDef{masqDef, forwardDef}
)

// jump is the rule in the parent chain that sends packets to our chain.
func (d chainDef) jump() string {
	return "-A " + d.parent + " -m comment --comment " + quote(d.comment) + " -j " + d.name
}

// IPTablesChain is the desired content of one of our chains, each line in the
// exact form `iptables-save` and `iptables -S` print it.
type IPTablesChain struct {
	IPv6   bool
	Table  string   // nat or filter
	Name   string   // FLANNEL-POSTRTG or FLANNEL-FWD
	Parent string   // POSTROUTING or FORWARD
	Jump   string   // "-A POSTROUTING ... -j FLANNEL-POSTRTG"
	Rules  []string // "-A FLANNEL-POSTRTG ...", in order
}

// Lines returns the jump followed by the rules, as `iptables -t T -S` lists them.
func (c IPTablesChain) Lines() []string {
	return append([]string{c.Jump}, c.Rules...)
}

// String is Lines joined with newlines, with a final newline.
func (c IPTablesChain) String() string {
	return strings.Join(c.Lines(), "\n") + "\n"
}

// IPTablesChains returns the chains cfg asks for: masquerade then forward,
// IPv4 then IPv6. cfg.RandomFully is used as given; the manager clears it when
// iptables lacks --random-fully.
func IPTablesChains(cfg Config) []IPTablesChain {
	var out []IPTablesChain
	for _, f := range families {
		network, subnet, ok := cfg.prefixes(f)
		if !ok {
			continue
		}
		if cfg.Masq {
			out = append(out, masqChain(f, network, subnet, cfg.RandomFully))
		}
		if cfg.Forward {
			out = append(out, forwardChain(f, network))
		}
	}
	return out
}

func masqChain(f family, network, subnet netip.Prefix, randomFully bool) IPTablesChain {
	n, pod := network.String(), subnet.String()
	masq := "MASQUERADE"
	if randomFully {
		masq += " --random-fully"
	}
	rule := func(match, target string) string {
		if match != "" {
			match += " "
		}
		return "-A " + MasqChain + " " + match + "-m comment --comment " + quote(masqComment) + " -j " + target
	}
	return IPTablesChain{
		IPv6:   f == ipv6,
		Table:  masqDef.table,
		Name:   masqDef.name,
		Parent: masqDef.parent,
		Jump:   masqDef.jump(),
		Rules: []string{
			// kube-proxy masquerades these itself.
			rule("-m mark --mark "+kubeProxyMark, "RETURN"),
			// Pod to pod inside the flannel network keeps its source.
			rule("-s "+pod+" -d "+n, "RETURN"),
			rule("-s "+n+" -d "+pod, "RETURN"),
			// Outside traffic arriving for our pods keeps the client address (#734).
			rule("! -s "+n+" -d "+pod, "RETURN"),
			// Pods to the outside world, multicast excluded.
			rule("-s "+n+" ! -d "+f.multicast(), masq),
			// The host (or anything outside) talking to remote pods.
			rule("! -s "+n+" -d "+n, masq),
		},
	}
}

func forwardChain(f family, network netip.Prefix) IPTablesChain {
	n := network.String()
	rule := func(match string) string {
		return "-A " + ForwardChain + " " + match + " -m comment --comment " + quote(forwardComment) + " -j ACCEPT"
	}
	return IPTablesChain{
		IPv6:   f == ipv6,
		Table:  forwardDef.table,
		Name:   forwardDef.name,
		Parent: forwardDef.parent,
		Jump:   forwardDef.jump(),
		Rules:  []string{rule("-s " + n), rule("-d " + n)},
	}
}

// quote wraps a comment the way iptables-save does. Our comments hold no
// quote or backslash, so no escaping is needed.
func quote(s string) string { return `"` + s + `"` }
