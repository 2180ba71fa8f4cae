package dual

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/flannelng/flannel/pkg/etcdv2"
	"github.com/flannelng/flannel/subnet"
	etcdsubnet "github.com/flannelng/flannel/subnet/etcd"
	v2subnet "github.com/flannelng/flannel/subnet/etcdv2"
)

// V2Warning is logged once when --etcd-api=auto finds the network config
// only in the v2 store and joins the cluster in v2 mode.
const V2Warning = "The network config is only in etcd's v2 store (flannel v0.11's): running in v2 mode, as a v0.11 node. " +
	"etcd deprecated the v2 API (3.4 and 3.5 serve it only with --enable-v2=true; 3.6 refuses to start with v2 data). " +
	"Migrate the cluster to the v3 keyspace while it runs: docs/migration.md (flannelctl migrate-v2, then --etcd-api=both, then --etcd-api=v3)"

// Auto is --etcd-api=auto: the first config found decides the keyspace
// for the life of the process. A v3 config means v3 mode, as before this
// mode existed; failing that, a v2 config means v2 mode (one warning);
// with neither, it waits for a v3 config. v2 is never looked for when
// the v3 keyspace has a config, so a migrated cluster with v2 leftovers
// stays in v3.
type Auto struct {
	v3  subnet.Manager
	v2  subnet.Manager // nil: no v2 client could be built
	log *slog.Logger

	mu     sync.Mutex
	chosen subnet.Manager
	noV2   bool // the "v2 API not served" explanation was logged
}

var _ subnet.Manager = (*Auto)(nil)

// NewAuto returns the auto mode over the two sources; v2 may be nil.
func NewAuto(v3, v2 subnet.Manager, log *slog.Logger) *Auto {
	return &Auto{v3: v3, v2: v2, log: log}
}

func (a *Auto) current() subnet.Manager {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.chosen == nil {
		return a.v3
	}
	return a.chosen
}

// Chosen returns the source the first config came from (nil before).
func (a *Auto) Chosen() subnet.Manager {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.chosen
}

// Name names the v3 source until the keyspace is chosen.
func (a *Auto) Name() string {
	if c := a.Chosen(); c != nil {
		return c.Name()
	}
	return a.v3.Name() + " (--etcd-api=auto: the v2 store too while v3 has no config)"
}

// GetConfig reads the config, choosing the keyspace on the first success.
func (a *Auto) GetConfig(ctx context.Context) (*subnet.Config, []byte, error) {
	if c := a.Chosen(); c != nil {
		return c.GetConfig(ctx)
	}
	cfg, raw, err := a.v3.GetConfig(ctx)
	if err == nil {
		a.choose(a.v3)
		return cfg, raw, nil
	}
	if !errors.Is(err, etcdsubnet.ErrNoConfig) || a.v2 == nil {
		return cfg, raw, err
	}
	cfg2, raw2, err2 := a.v2.GetConfig(ctx)
	switch {
	case err2 == nil:
		a.log.Warn(V2Warning, "config", a.v2.Name())
		a.choose(a.v2)
		return cfg2, raw2, nil
	case errors.Is(err2, etcdv2.ErrNoV2API):
		// The usual case on etcd 3.4+ without v0.11 clusters: say once
		// why the v2 store is not looked at, then wait for v3 as before.
		a.mu.Lock()
		explain := !a.noV2
		a.noV2 = true
		a.mu.Unlock()
		if explain {
			a.log.Info("No network config in etcd v3, and etcd does not serve the v2 API (flannel v0.11's store; etcd 3.4/3.5 serve it only with --enable-v2=true): waiting for a config in v3")
		}
		return nil, nil, err
	case errors.Is(err2, v2subnet.ErrNoConfig):
		return nil, nil, err
	default:
		// A v2 config that cannot be read or parsed is worth naming: it
		// is the cluster's only config. One the v2 layout cannot run
		// (IPv6) stays a permanent error.
		return nil, raw2, fmt.Errorf("%w; reading the v2 store instead: %w", err, err2)
	}
}

func (a *Auto) choose(m subnet.Manager) {
	a.mu.Lock()
	a.chosen = m
	a.mu.Unlock()
}

func (a *Auto) Start(ctx context.Context, cfg *subnet.Config) error {
	return a.current().Start(ctx, cfg)
}
func (a *Auto) PublicIPs() (v4, v6 netip.Addr) { return a.current().PublicIPs() }
func (a *Auto) Previous(cfg *subnet.Config, probe subnet.LeaseAttrs) *subnet.LeaseAttrs {
	return a.current().Previous(cfg, probe)
}
func (a *Auto) Acquire(ctx context.Context, cfg *subnet.Config, attrs subnet.LeaseAttrs, prev subnet.Env, onRetry func(error)) (subnet.Lease, error) {
	return a.current().Acquire(ctx, cfg, attrs, prev, onRetry)
}
func (a *Auto) Peers() subnet.PeerSource { return a.current().Peers() }
func (a *Auto) Keep(ctx context.Context, cfg *subnet.Config, own subnet.Lease) error {
	return a.current().Keep(ctx, cfg, own)
}

// WatchConfig follows the config through the chosen source when that
// source can watch it (v3); otherwise (v2) the daemon polls GetConfig.
func (a *Auto) WatchConfig(ctx context.Context, running []byte, changed func([]byte, error)) error {
	if w, ok := a.Chosen().(subnet.ConfigWatcher); ok {
		return w.WatchConfig(ctx, running, changed)
	}
	return subnet.ErrConfigNotWatched
}
