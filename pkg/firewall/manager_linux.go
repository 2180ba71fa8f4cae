package firewall

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// New returns the Manager of mode, probing the tools it needs once.
func New(ctx context.Context, mode Mode, opts Options) (Manager, error) {
	switch mode {
	case ModeIPTables:
		m, err := NewIPTables(ctx, opts)
		if err != nil {
			return nil, err
		}
		return m, nil
	case ModeNFTables:
		m, err := NewNFTables(ctx, opts)
		if err != nil {
			return nil, err
		}
		return m, nil
	}
	return nil, fmt.Errorf("unknown firewall mode %q (want %q or %q)", mode, ModeIPTables, ModeNFTables)
}

// syncFunc makes the rules of a mode match cfg: a full read on Apply, only
// the wanted tables on a resync. changed says it wrote something.
type syncFunc func(ctx context.Context, cfg Config, resync bool) (changed bool, err error)

// keeping is what both Managers keep between Apply and the resync passes:
// the config of the last Apply, under the lock both take, and the
// generation check that lets idle passes read nothing.
type keeping struct {
	mu        sync.Mutex
	cfg       *Config    // effective config of the last Apply
	quiet     quietSince // generation check; unset where rules are not nf_tables rules
	afterPass func()     // test hook, called after each resync pass
}

// apply records cfg and writes it with a full read.
func (k *keeping) apply(ctx context.Context, cfg Config, sync syncFunc) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.cfg = &cfg
	k.quiet.forget()
	_, err := sync(ctx, cfg, false)
	return err
}

// resyncOnce checks the tables the last Apply wanted, unless the nf_tables
// generation says nothing changed since the last pass found them in order.
func (k *keeping) resyncOnce(ctx context.Context, sync syncFunc) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cfg == nil {
		return nil
	}
	cfg := *k.cfg
	return k.quiet.pass(func() (bool, error) { return sync(ctx, cfg, true) })
}

// run resyncs every period until ctx ends, logging failures as what.
func (k *keeping) run(ctx context.Context, period time.Duration, log *slog.Logger, what string, sync syncFunc) {
	keeper(ctx, period, func(ctx context.Context) {
		if err := k.resyncOnce(ctx, sync); err != nil {
			log.Error(what, "err", err)
		}
	}, k.afterPass)
}
