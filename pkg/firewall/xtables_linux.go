package firewall

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"path/filepath"

	"github.com/coreos/go-iptables/iptables"
)

// xtables runs the save and restore programs of one iptables variant.
type xtables struct {
	runner Runner
	log    *slog.Logger
	cmds   IPTablesCommands
	wait   bool // iptables-restore takes --wait (iptables >= 1.6.2)
}

// save dumps one table of family f, or all tables when table is "". A full
// dump is used where a table might not exist yet: `iptables-legacy-save -t T`
// would create it in the kernel.
func (x *xtables) save(ctx context.Context, f family, table string) (map[string]*savedTable, error) {
	var args []string
	if table != "" {
		args = []string{"-t", table}
	}
	out, err := x.runner.Run(ctx, x.cmds.save(f), nil, args...)
	if err != nil {
		return nil, fmt.Errorf("read %s rules: %w", f, err)
	}
	return parseSave(out), nil
}

// restore applies edits to family f in one iptables-restore run; each table
// section commits atomically. --noflush keeps every rule we do not name.
func (x *xtables) restore(ctx context.Context, f family, edits []tableEdit) error {
	args := []string{"--noflush"}
	if x.wait {
		// Wait for the xtables lock instead of failing while kube-proxy holds it.
		args = append(args, "--wait")
	}
	payload := restorePayload(edits)
	x.log.Debug("iptables-restore", "command", x.cmds.restore(f), "input", string(payload))
	if _, err := x.runner.Run(ctx, x.cmds.restore(f), payload, args...); err != nil {
		return fmt.Errorf("write %s rules with %s: %w", f, x.cmds.restore(f), err)
	}
	return nil
}

// editAll reads a full dump of each family, asks plan for edits and applies
// them. A variant or family whose save program is missing counts as empty.
func (x *xtables) editAll(ctx context.Context, what string, plan func(map[string]*savedTable, family) []tableEdit) error {
	var errs []error
	for _, f := range families {
		tables, err := x.save(ctx, f, "")
		if err != nil {
			if notInstalled(err) {
				continue
			}
			errs = append(errs, err)
			continue
		}
		edits := plan(tables, f)
		if len(edits) == 0 {
			continue
		}
		for _, e := range edits {
			x.log.Info("Removing iptables rules "+what, "variant", x.cmds.name(), "family", f.String(), "table", e.table, "changes", len(e.lines))
		}
		if err := x.restore(ctx, f, edits); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeChains deletes our chains and all jumps to them, in every table of
// both families.
func (x *xtables) removeChains(ctx context.Context) error {
	return x.editAll(ctx, "left by iptables mode", func(tables map[string]*savedTable, _ family) []tableEdit {
		return planRemoveAll(tables)
	})
}

// removePrevious deletes the rules older flannel versions left in
// POSTROUTING and FORWARD.
func (x *xtables) removePrevious(ctx context.Context, prevs []Config) error {
	return x.editAll(ctx, "left by older flannel versions", func(tables map[string]*savedTable, f family) []tableEdit {
		return planPrevious(tables, f, prevs)
	})
}

// iptablesFeatures is what the installed iptables version supports.
type iptablesFeatures struct {
	version     string
	randomFully bool // MASQUERADE --random-fully (>= 1.6.2)
	wait        bool // iptables-restore --wait (>= 1.6.2)
}

// probeIPTables asks the iptables command of a variant for its version
// (`iptables --version`, through go-iptables; the binary's version does not
// depend on the network namespace, so this exec bypasses the Runner).
func probeIPTables(command string) (iptablesFeatures, error) {
	ipt, err := iptables.New(iptables.IPFamily(iptables.ProtocolIPv4), iptables.Path(command))
	if err != nil {
		return iptablesFeatures{}, fmt.Errorf("probe %s: %w", command, err)
	}
	v1, v2, v3 := ipt.GetIptablesVersion()
	return iptablesFeatures{
		version:     fmt.Sprintf("%d.%d.%d", v1, v2, v3),
		randomFully: ipt.HasRandomFully(),
		wait:        versionAtLeast(v1, v2, v3, 1, 6, 2),
	}, nil
}

// installedVariants returns the iptables variants whose programs are on
// PATH: legacy and nft when the suffixed names exist, else the plain names.
func installedVariants() []IPTablesCommands {
	var out []IPTablesCommands
	for _, v := range []string{VariantLegacy, VariantNFT} {
		if _, err := exec.LookPath(CommandsFor(v).IPTablesSave); err == nil {
			out = append(out, CommandsFor(v))
		}
	}
	if len(out) == 0 {
		if _, err := exec.LookPath(CommandsFor(VariantPlain).IPTablesSave); err == nil {
			out = append(out, CommandsFor(VariantPlain))
		}
	}
	return out
}

// newXtables probes the variant's version for the --wait decision.
func newXtables(runner Runner, log *slog.Logger, cmds IPTablesCommands) (*xtables, iptablesFeatures, error) {
	feat, err := probeIPTables(cmds.IPTables)
	if err != nil {
		return nil, feat, err
	}
	return &xtables{runner: runner, log: log, cmds: cmds, wait: feat.wait}, feat, nil
}

// DetectIPTables picks the iptables variant the node uses, like
// kubernetes-sigs/iptables-wrappers: kubelet's hint chains, else the variant
// holding more KUBE-* rules, then more rules, then the variant the plain
// iptables command is linked to, then nft. It runs up to six save commands
// through runner (so it sees the runner's network namespace) and logs its
// choice. Without both suffixed variants installed it returns the one there
// is, or the plain names.
func DetectIPTables(ctx context.Context, runner Runner, log *slog.Logger) IPTablesCommands {
	installed := installedVariants()
	if len(installed) != 2 {
		cmds := CommandsFor(VariantPlain)
		if len(installed) == 1 {
			cmds = installed[0]
		}
		log.Info("Using iptables variant", "variant", cmds.name(), "reason", "the only one installed")
		return cmds
	}
	dump := func(cmds IPTablesCommands, args ...string) []byte {
		var all []byte
		for _, f := range families {
			// Errors are ignored on purpose, as iptables-wrappers does: a
			// variant that cannot be read holds no rules we could share.
			out, _ := runner.Run(ctx, cmds.save(f), nil, args...)
			all = append(all, out...)
		}
		return all
	}
	legacy, nft := CommandsFor(VariantLegacy), CommandsFor(VariantNFT)
	ev := variantEvidence{nftMangle: dump(nft, "-t", "mangle")}
	if !kubeletChains.Match(ev.nftMangle) {
		ev.legacyDump = dump(legacy)
		ev.nftDump = dump(nft)
	}
	if path, err := exec.LookPath("iptables"); err == nil {
		if resolved, err := filepath.EvalSymlinks(path); err == nil {
			ev.systemDefault = variantOfBinary(resolved)
		}
	}
	variant, reason := chooseVariant(ev)
	_, legacyRules := countRules(ev.legacyDump)
	_, nftRules := countRules(ev.nftDump)
	log.Info("Using iptables variant", "variant", variant, "reason", reason,
		"legacy_rules", legacyRules, "nft_rules", nftRules)
	return CommandsFor(variant)
}
