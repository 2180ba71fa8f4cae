package firewall

import (
	"context"
	"io"
	"log/slog"
	"time"
)

// DefaultResync is upstream's --iptables-resync default.
const DefaultResync = 5 * time.Second

// passTimeout bounds one resync pass (unless the period is longer).
const passTimeout = time.Minute

// Manager installs and keeps the traffic rules of one mode.
type Manager interface {
	// Apply makes the rules match cfg and remembers cfg for Run. It reads
	// the rules once (one iptables-save per family, or one nft list per
	// table) and changes nothing when they are already right; otherwise it
	// rewrites our chains (or tables) in one atomic transaction per table.
	// Chains or tables cfg no longer asks for (masquerading turned off, IPv6
	// turned off) are removed. cfg.RandomFully is dropped silently when the
	// tools lack it.
	Apply(ctx context.Context, cfg Config) error
	// Run re-checks the rules of the last Apply every resync period and
	// repairs them when they differ, until ctx is done. Nothing is removed
	// when it returns: a restarting daemon must not drop pod traffic.
	Run(ctx context.Context)
	// CleanupOther removes every rule the other mode installs: in iptables
	// mode our nft tables (and our chains in the iptables variant not in
	// use), in nftables mode our iptables chains and jumps in nat and filter,
	// IPv4 and IPv6, in every installed iptables variant. Absent rules count
	// as success.
	CleanupOther(ctx context.Context) error
	// CleanupPrevious deletes the rules older flannel versions put straight
	// into POSTROUTING and FORWARD (outside FLANNEL-POSTRTG/FLANNEL-FWD): any
	// rule carrying flannel's comments there, and the comment-less v0.11
	// rules for the networks of prev (the run recorded in subnet.env; passing
	// the current Config too is right, since those rules shadow ours). Rules
	// inside our chains and tables need no cleanup: Apply rewrites them whole.
	CleanupPrevious(ctx context.Context, prev ...Config) error
	// Mode returns the mode the manager writes.
	Mode() Mode
}

// Options configure a manager. The zero value is usable.
type Options struct {
	Runner Runner        // how programs are started; nil means ExecRunner
	Logger *slog.Logger  // nil discards logs
	Resync time.Duration // period of Run; 0 means DefaultResync
	// IPTables forces the iptables variant (iptables mode); nil detects it
	// from the rules on the node, as kubernetes-sigs/iptables-wrappers does.
	IPTables *IPTablesCommands
	// NFT is the nft program name; "" means "nft".
	NFT string
	// OnRepair, when set, is called each time a resync finds our rules
	// changed behind our back and rewrites them (metrics).
	OnRepair func(table string)
	// Generation, when set, reports the nf_tables ruleset generation of the
	// namespace the rules live in (NFTablesGeneration). Where the rules are
	// nf_tables rules (nftables mode, iptables-nft), a resync pass is
	// skipped while the generation has not moved since a pass found them in
	// order. nil: every pass reads the tables.
	Generation func() (uint32, error)
}

func (o Options) withDefaults() Options {
	if o.Runner == nil {
		o.Runner = ExecRunner{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Resync <= 0 {
		o.Resync = DefaultResync
	}
	if o.NFT == "" {
		o.NFT = "nft"
	}
	return o
}

// keeper runs a resync function every period until ctx is done. afterPass,
// when set, is called after each pass (tests count passes with it).
func keeper(ctx context.Context, period time.Duration, pass func(context.Context), afterPass func()) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			// Both channels may be ready at once; never start a pass whose
			// commands would be killed at once.
			if ctx.Err() != nil {
				return
			}
			// iptables-restore --wait waits for the xtables lock without a
			// limit; bound a pass so a stuck lock holder cannot stall the
			// keeper (and Apply, which shares its mutex) for good.
			pctx, cancel := context.WithTimeout(ctx, max(period, passTimeout))
			pass(pctx)
			cancel()
			if afterPass != nil {
				afterPass()
			}
		}
	}
}
