// Package firewall installs and keeps flanneld's traffic rules: the
// masquerade chain (--ip-masq) and the FORWARD accept chain
// (--iptables-forward-rules), with iptables or with nftables, IPv4 and IPv6.
//
// # Rules
//
// The rule text is interface: users and upstream's e2e tests compare it. The
// pure generators IPTablesChains and NFTablesRuleset return it exactly as
// `iptables-save` and `nft list table` print it. In iptables mode the six
// masquerade rules live in FLANNEL-POSTRTG (nat, jumped to from POSTROUTING)
// and the two accept rules in FLANNEL-FWD (filter, jumped to from FORWARD),
// with upstream's comments. nftables mode uses upstream's tables
// (flannel-ipv4, and flannel-ipv6 only when IPv6 is on), chains and comments,
// but the iptables semantics: the kube-proxy mark is tested under its mask and
// rule 4 exempts traffic from outside the network, not from outside our
// subnet.
//
// # Design
//
// The managers are declarative: Apply(cfg) may be called any number of times.
// It reads the rules once (`iptables-save` per family, `nft list table` per
// table), compares the dump with the desired text and, only when they differ,
// rewrites our part in one atomic transaction: an `iptables-restore
// --noflush --wait` input that declares our chain (which flushes it), deletes
// stray or duplicate jump rules by their text and re-adds every rule in order,
// or an `nft -f -` input that declares, deletes and redefines our table.
// Rewriting the chain whole means stale rules from an earlier Network or
// subnet vanish with it. The jump is appended only when missing, so a jump
// that exists keeps its place and rules other programs put before it stay
// there; rule numbers are never used, because they go stale when kube-proxy
// changes the chain between our read and our write.
//
// Run re-does the check every resync period (--iptables-resync, default 5 s)
// for the tables in use: one process (`iptables-save -t T`, `nft list table`)
// per table per period, 12 per table per minute, where
// upstream runs about 20 iptables processes per family every period (about
// 240 per minute), each taking the xtables lock. Only a difference triggers a
// write, logged as upstream does ("Some iptables rules are missing; deleting
// and recreating rules"). Nothing is removed at shutdown, so a restart drops
// no traffic.
//
// The iptables variant (legacy or nft) is detected like
// kubernetes-sigs/iptables-wrappers does (DetectIPTables), so our rules land
// where kube-proxy's are; --random-fully and restore --wait are used when
// iptables is at least 1.6.2, and fully-random when `nft --check` accepts it.
//
// Switching modes leaves no trace of the other one: CleanupOther in iptables
// mode deletes our nft tables, in nftables mode our chains and the jumps to
// them in every table, family and installed iptables variant (upstream left
// the jump and FLANNEL-FWD behind). CleanupPrevious removes the rules older
// flannel versions put directly into POSTROUTING and FORWARD.
//
// Every program runs through a Runner, so the caller chooses the network
// namespace (the daemon runs in its own, so plain exec is right; tests wrap
// the runner in `ip netns exec`) and tests count processes.
// EnsureBlackholeRoute is the netlink half of --ip-blackhole-route.
package firewall
