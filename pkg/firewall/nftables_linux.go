package firewall

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// NFTables is the nftables-mode Manager. It runs the nft program, like
// upstream (through knftables), so it needs no netlink code of its own.
type NFTables struct {
	runner      Runner
	log         *slog.Logger
	resync      time.Duration
	nft         string
	fullyRandom bool // masquerade fully-random is accepted

	keeping
	onRepair func(table string)
}

var _ Manager = (*NFTables)(nil)

// NewNFTables checks once, with `nft --check` on a throwaway table that is
// never committed, that nft works and whether it accepts fully-random.
func NewNFTables(ctx context.Context, opts Options) (*NFTables, error) {
	opts = opts.withDefaults()
	m := &NFTables{runner: opts.Runner, log: opts.Logger, resync: opts.Resync, nft: opts.NFT, onRepair: opts.OnRepair}
	m.quiet.gen = opts.Generation
	if _, err := m.runner.Run(ctx, m.nft, []byte(nftProbe(true)), "--check", "-f", "-"); err == nil {
		m.fullyRandom = true
	} else if _, err2 := m.runner.Run(ctx, m.nft, []byte(nftProbe(false)), "--check", "-f", "-"); err2 == nil {
		m.log.Info("nftables: random fully unsupported", "err", err)
	} else {
		return nil, fmt.Errorf("nftables mode: nft does not accept a masquerade chain: %w", err2)
	}
	return m, nil
}

// Mode implements Manager.
func (m *NFTables) Mode() Mode { return ModeNFTables }

// Apply implements Manager.
func (m *NFTables) Apply(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg.RandomFully = cfg.RandomFully && m.fullyRandom
	return m.apply(ctx, cfg, m.sync)
}

// Run implements Manager. Upstream has no resync in nft mode; we check each
// table with one `nft list table` per period (none while the ruleset
// generation stands still).
func (m *NFTables) Run(ctx context.Context) {
	m.run(ctx, m.resync, m.log, "Failed to ensure nftables rules", m.sync)
}

func (m *NFTables) resyncOnce(ctx context.Context) error { return m.keeping.resyncOnce(ctx, m.sync) }

// sync lists each table and replaces those that differ from cfg, all in one
// nft transaction. On a resync only wanted tables are listed.
func (m *NFTables) sync(ctx context.Context, cfg Config, resync bool) (changed bool, err error) {
	var input strings.Builder
	var errs []error
	for _, f := range families {
		t := nftTableFor(f)
		want := nftDefinition(cfg, f)
		if want == "" && resync {
			continue
		}
		have, exists, err := m.list(ctx, t)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if want == "" && !exists || want != "" && exists && normalizeNFT(have) == normalizeNFT(want) {
			continue
		}
		switch {
		case resync:
			m.log.Info("Some nftables rules are missing; deleting and recreating rules", "table", t.String())
			if m.onRepair != nil {
				m.onRepair(t.String())
			}
		case want == "":
			m.log.Info("Removing nftables table no longer configured", "table", t.String())
		default:
			m.log.Info("Installing nftables rules", "table", t.String())
		}
		input.WriteString(nftReplace(t, want))
	}
	if input.Len() > 0 {
		changed = true
		m.log.Debug("nft -f -", "input", input.String())
		if _, err := m.runner.Run(ctx, m.nft, []byte(input.String()), "-f", "-"); err != nil {
			errs = append(errs, fmt.Errorf("write nftables rules: %w", err))
		}
	}
	return changed, errors.Join(errs...)
}

// list returns `nft list table` output; exists is false when the table is
// missing.
func (m *NFTables) list(ctx context.Context, t nftTable) (out string, exists bool, err error) {
	b, err := m.runner.Run(ctx, m.nft, nil, "list", "table", t.family, t.name)
	if err != nil {
		if strings.Contains(stderrOf(err), "No such file or directory") {
			return "", false, nil
		}
		return "", false, fmt.Errorf("list nftables table %s: %w", t, err)
	}
	return string(b), true, nil
}

// CleanupOther implements Manager: it deletes our iptables chains and the
// jumps to them, in nat and filter, IPv4 and IPv6, in every installed
// iptables variant. Upstream's cleanup left the jump, the empty
// FLANNEL-POSTRTG and all of FLANNEL-FWD behind.
func (m *NFTables) CleanupOther(ctx context.Context) error {
	var errs []error
	for _, cmds := range installedVariants() {
		x, _, err := newXtables(m.runner, m.log, cmds)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, x.removeChains(ctx))
	}
	return errors.Join(errs...)
}

// CleanupPrevious implements Manager, in every installed iptables variant.
func (m *NFTables) CleanupPrevious(ctx context.Context, prev ...Config) error {
	var errs []error
	for _, cmds := range installedVariants() {
		x, _, err := newXtables(m.runner, m.log, cmds)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, x.removePrevious(ctx, prev))
	}
	return errors.Join(errs...)
}
