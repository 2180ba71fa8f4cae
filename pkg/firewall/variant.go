package firewall

import (
	"path/filepath"
	"regexp"
	"strings"
)

// iptables 1.8 ships two programs under the same command names: "legacy"
// (the old x_tables kernel API) and "nft" (the same syntax on nf_tables).
// Rules written with one are invisible to the other, so flannel must use the
// variant kube-proxy and the rest of the node use (pain point 5, upstream
// #1317). Upstream leaves the choice to an iptables-wrapper script in its
// image; we detect it the same way.

// Variants of iptables.
const (
	VariantLegacy = "legacy"
	VariantNFT    = "nft"
	// VariantPlain means the plain command names (iptables, iptables-save,
	// ...), for systems without the suffixed binaries.
	VariantPlain = ""
)

// IPTablesCommands are the program names one iptables variant is run with.
type IPTablesCommands struct {
	Variant          string // VariantLegacy, VariantNFT or VariantPlain
	IPTables         string // only asked for its version
	IPTablesSave     string
	IPTablesRestore  string
	IP6Tables        string
	IP6TablesSave    string
	IP6TablesRestore string
}

// CommandsFor returns the program names of a variant, e.g. iptables-nft-save.
func CommandsFor(variant string) IPTablesCommands {
	suffix := ""
	if variant != VariantPlain {
		suffix = "-" + variant
	}
	return IPTablesCommands{
		Variant:          variant,
		IPTables:         "iptables" + suffix,
		IPTablesSave:     "iptables" + suffix + "-save",
		IPTablesRestore:  "iptables" + suffix + "-restore",
		IP6Tables:        "ip6tables" + suffix,
		IP6TablesSave:    "ip6tables" + suffix + "-save",
		IP6TablesRestore: "ip6tables" + suffix + "-restore",
	}
}

func (c IPTablesCommands) save(f family) string {
	if f == ipv6 {
		return c.IP6TablesSave
	}
	return c.IPTablesSave
}

func (c IPTablesCommands) restore(f family) string {
	if f == ipv6 {
		return c.IP6TablesRestore
	}
	return c.IPTablesRestore
}

func (c IPTablesCommands) name() string {
	if c.Variant == VariantPlain {
		return "plain"
	}
	return c.Variant
}

// kubeletChains are created by kubelet >= 1.17 in the variant the node uses;
// kubernetes-sigs/iptables-wrappers looks for them first.
var kubeletChains = regexp.MustCompile(`(?m)^:(KUBE-IPTABLES-HINT|KUBE-KUBELET-CANARY) `)

// variantEvidence is what detection read from the node. Dumps hold IPv4 and
// IPv6 output concatenated.
type variantEvidence struct {
	nftMangle  []byte // iptables-nft-save -t mangle (cheap kubelet hint check)
	legacyDump []byte // iptables-legacy-save, all tables
	nftDump    []byte // iptables-nft-save, all tables
	// systemDefault is the variant the plain "iptables" command points to, ""
	// when unknown; it breaks a tie on a node without rules yet.
	systemDefault string
}

// chooseVariant picks the variant like iptables-wrappers: kubelet's hint
// chains decide first; otherwise the variant holding more KUBE-* rules, then
// more rules of any kind, wins; a tie goes to the system default, then nft.
// reason says which step decided, for the log.
func chooseVariant(ev variantEvidence) (variant, reason string) {
	switch {
	case kubeletChains.Match(ev.nftMangle):
		return VariantNFT, "kubelet chains found in iptables-nft"
	case kubeletChains.Match(ev.legacyDump):
		return VariantLegacy, "kubelet chains found in iptables-legacy"
	}
	lk, la := countRules(ev.legacyDump)
	nk, na := countRules(ev.nftDump)
	switch {
	case lk != nk:
		if lk > nk {
			return VariantLegacy, "more KUBE-* rules in iptables-legacy"
		}
		return VariantNFT, "more KUBE-* rules in iptables-nft"
	case la != na:
		if la > na {
			return VariantLegacy, "more rules in iptables-legacy"
		}
		return VariantNFT, "more rules in iptables-nft"
	case ev.systemDefault == VariantLegacy:
		return VariantLegacy, "no rules yet; the iptables command is iptables-legacy"
	}
	return VariantNFT, "no rules yet; defaulting to iptables-nft"
}

// countRules counts rule lines of an iptables-save dump: those in a KUBE-*
// chain and all of them.
func countRules(dump []byte) (kube, all int) {
	for line := range strings.Lines(string(dump)) {
		if !strings.HasPrefix(line, "-A ") {
			continue
		}
		all++
		if strings.HasPrefix(line, "-A KUBE-") {
			kube++
		}
	}
	return kube, all
}

// variantOfBinary maps the resolved target of the iptables command to its
// variant: Debian and most distributions link iptables, through
// alternatives, to xtables-legacy-multi or xtables-nft-multi.
func variantOfBinary(resolved string) string {
	base := filepath.Base(resolved)
	switch {
	case strings.Contains(base, "legacy"):
		return VariantLegacy
	case strings.Contains(base, "nft"):
		return VariantNFT
	}
	return ""
}

// versionAtLeast compares dotted versions v and w.
func versionAtLeast(v1, v2, v3, w1, w2, w3 int) bool {
	if v1 != w1 {
		return v1 > w1
	}
	if v2 != w2 {
		return v2 > w2
	}
	return v3 >= w3
}
