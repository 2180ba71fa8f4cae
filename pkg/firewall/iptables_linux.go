package firewall

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"time"
)

// IPTables is the iptables-mode Manager.
type IPTables struct {
	x           *xtables
	log         *slog.Logger
	resync      time.Duration
	nft         string // for CleanupOther
	randomFully bool   // iptables supports --random-fully
	// other is the variant not in use, whose leftovers CleanupOther removes;
	// nil when the plain commands are used.
	other *IPTablesCommands

	keeping  // quiet set up for nf_tables-backed variants only
	onRepair func(table string)
}

var _ Manager = (*IPTables)(nil)

// NewIPTables detects the iptables variant (unless opts.IPTables forces one)
// and its features once.
func NewIPTables(ctx context.Context, opts Options) (*IPTables, error) {
	opts = opts.withDefaults()
	var cmds IPTablesCommands
	if opts.IPTables != nil {
		cmds = *opts.IPTables
		opts.Logger.Info("Using iptables variant", "variant", cmds.name(), "reason", "configured")
	} else {
		cmds = DetectIPTables(ctx, opts.Runner, opts.Logger)
	}
	x, feat, err := newXtables(opts.Runner, opts.Logger, cmds)
	if err != nil {
		return nil, fmt.Errorf("iptables mode: %w", err)
	}
	opts.Logger.Info("iptables features", "version", feat.version, "random_fully", feat.randomFully, "restore_wait", feat.wait)
	m := newIPTables(x, opts, feat.randomFully)
	if opts.Generation != nil && nfTablesBacked(cmds) {
		m.quiet.gen = opts.Generation
	}
	if cmds.Variant != VariantPlain {
		other := CommandsFor(VariantLegacy)
		if cmds.Variant == VariantLegacy {
			other = CommandsFor(VariantNFT)
		}
		for _, c := range installedVariants() {
			if c.Variant == other.Variant {
				m.other = &other
			}
		}
	}
	return m, nil
}

func newIPTables(x *xtables, opts Options, randomFully bool) *IPTables {
	return &IPTables{x: x, log: opts.Logger, resync: opts.Resync, nft: opts.NFT, randomFully: randomFully, onRepair: opts.OnRepair}
}

// Mode implements Manager.
func (m *IPTables) Mode() Mode { return ModeIPTables }

// Commands returns the iptables programs in use.
func (m *IPTables) Commands() IPTablesCommands { return m.x.cmds }

// Apply implements Manager.
func (m *IPTables) Apply(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cfg.RandomFully = cfg.RandomFully && m.randomFully
	return m.apply(ctx, cfg, m.sync)
}

// nfTablesBacked reports whether the variant's rules are nf_tables rules,
// which move the ruleset generation: iptables-nft, or a plain iptables
// whose version line says "(nf_tables)".
func nfTablesBacked(cmds IPTablesCommands) bool {
	switch cmds.Variant {
	case VariantNFT:
		return true
	case VariantLegacy:
		return false
	}
	out, err := exec.Command(cmds.IPTables, "--version").Output()
	return err == nil && strings.Contains(string(out), "nf_tables")
}

// Run implements Manager.
func (m *IPTables) Run(ctx context.Context) {
	m.run(ctx, m.resync, m.log, "Failed to ensure iptables rules", m.sync)
}

// resyncOnce checks the tables the last Apply wanted: one save per table,
// unless the nf_tables generation says nothing changed.
func (m *IPTables) resyncOnce(ctx context.Context) error { return m.keeping.resyncOnce(ctx, m.sync) }

// sync compares each table with cfg and rewrites what differs. A resync
// reads only the wanted tables, one `iptables-save -t T` each. Apply reads
// one full dump per family instead, which also shows chains a previous config
// asked for (and, unlike -t with iptables-legacy, creates no table).
func (m *IPTables) sync(ctx context.Context, cfg Config, resync bool) (changed bool, err error) {
	want := map[family]map[string]*IPTablesChain{ipv4: {}, ipv6: {}}
	for _, c := range IPTablesChains(cfg) {
		f := ipv4
		if c.IPv6 {
			f = ipv6
		}
		want[f][c.Name] = &c
	}
	var errs []error
	for _, f := range families {
		var full map[string]*savedTable
		if !resync {
			var err error
			if full, err = m.x.save(ctx, f, ""); err != nil {
				if len(want[f]) > 0 {
					errs = append(errs, err)
				} else {
					// Nothing wanted here; a family the kernel lacks cannot
					// hold stale chains either.
					m.log.Debug("Skipping check of unwanted iptables chains", "family", f.String(), "err", err)
				}
				continue
			}
		}
		var edits []tableEdit
		for _, def := range ourChains {
			w := want[f][def.name]
			tables := full
			if resync {
				if w == nil {
					continue
				}
				var err error
				if tables, err = m.x.save(ctx, f, def.table); err != nil {
					errs = append(errs, err)
					continue
				}
			}
			lines := planChain(def, tables[def.table], w)
			if lines == nil {
				continue
			}
			edits = append(edits, tableEdit{table: def.table, lines: lines})
			switch {
			case resync:
				m.log.Info("Some iptables rules are missing; deleting and recreating rules", "family", f.String(), "table", def.table, "chain", def.name)
				if m.onRepair != nil {
					m.onRepair(f.String() + " " + def.table)
				}
			case w == nil:
				m.log.Info("Removing iptables chain no longer configured", "family", f.String(), "table", def.table, "chain", def.name)
			default:
				m.log.Info("Installing iptables rules", "family", f.String(), "table", def.table, "chain", def.name, "rules", len(w.Rules))
			}
		}
		if len(edits) > 0 {
			changed = true
			if err := m.x.restore(ctx, f, edits); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return changed, errors.Join(errs...)
}

// CleanupOther implements Manager: it deletes our nft tables and our chains
// in the iptables variant not in use.
func (m *IPTables) CleanupOther(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	errs := []error{deleteNFTTables(ctx, m.x.runner, m.nft, m.log)}
	if m.other != nil {
		x, _, err := newXtables(m.x.runner, m.log, *m.other)
		if err != nil {
			errs = append(errs, err)
		} else {
			errs = append(errs, x.removeChains(ctx))
		}
	}
	return errors.Join(errs...)
}

// CleanupPrevious implements Manager, in both variants.
func (m *IPTables) CleanupPrevious(ctx context.Context, prev ...Config) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	errs := []error{m.x.removePrevious(ctx, prev)}
	if m.other != nil {
		x, _, err := newXtables(m.x.runner, m.log, *m.other)
		if err != nil {
			errs = append(errs, err)
		} else {
			errs = append(errs, x.removePrevious(ctx, prev))
		}
	}
	return errors.Join(errs...)
}

// deleteNFTTables removes the tables nftables mode creates. A missing nft
// program or missing tables count as success.
func deleteNFTTables(ctx context.Context, runner Runner, nft string, log *slog.Logger) error {
	out, err := runner.Run(ctx, nft, nil, "list", "tables")
	if err != nil {
		if notInstalled(err) {
			return nil
		}
		return fmt.Errorf("list nftables tables: %w", err)
	}
	found := nftTablesIn(out)
	if len(found) == 0 {
		return nil
	}
	var input string
	for _, t := range found {
		log.Info("Removing nftables table left by nftables mode", "table", t.String())
		input += nftReplace(t, "")
	}
	if _, err := runner.Run(ctx, nft, []byte(input), "-f", "-"); err != nil {
		return fmt.Errorf("delete nftables tables: %w", err)
	}
	return nil
}
