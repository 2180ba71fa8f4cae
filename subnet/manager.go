package subnet

import (
	"context"
	"errors"
	"net/netip"
)

// Manager is a lease source: where the network config and the leases live
// (etcd v3, the Kubernetes API). The daemon drives every implementation in
// the same order:
//
//	GetConfig -> Start -> PublicIPs -> Previous -> Acquire -> Peers().Run ... -> Ready -> Keep
//
// and never reaches past this interface, so a new source changes nothing
// in the daemon or the backends.
type Manager interface {
	// Name says what the source is, for the start-up log line.
	Name() string
	// GetConfig reads the network config and returns it with its raw
	// text, so that the daemon can notice (and log) a later change. It
	// does not retry; the daemon does.
	GetConfig(ctx context.Context) (*Config, []byte, error)
	// PublicIPs returns the addresses the source says this node must
	// publish instead of --public-ip/--public-ipv6 (Kubernetes: the
	// node-public-ip annotations); invalid ones mean "no override". Only
	// valid after Start.
	PublicIPs() (v4, v6 netip.Addr)
	// Start reads what the source holds, once, for the readers that need
	// it before our lease exists (Previous, Acquire's first attempt, the
	// peer source's starting set). It retries until it succeeds, ctx
	// ends (ctx.Err()) or the problem cannot go away by waiting.
	Start(ctx context.Context, cfg *Config) error
	// Previous returns our lease's attributes as the source last stored
	// them (nil when it holds none for us), so that a device which must be
	// re-created gets the MAC peers already know. probe carries our
	// public addresses.
	Previous(cfg *Config, probe LeaseAttrs) *LeaseAttrs
	// Acquire gets our lease and publishes attrs with it. It retries until
	// it succeeds or ctx ends, telling onRetry (optional) of each failure;
	// prev is the previous run's subnet.env.
	Acquire(ctx context.Context, cfg *Config, attrs LeaseAttrs, prev Env, onRetry func(error)) (Lease, error)
	// Peers returns the source of the current lease set (ours included).
	// Call it once, after Acquire.
	Peers() PeerSource
	// Keep holds our lease until ctx ends (nil) or the lease is lost for
	// good (an error): renewals in etcd, following our Node in Kubernetes.
	Keep(ctx context.Context, cfg *Config, own Lease) error
}

// ReadyReporter is implemented by sources that publish the node's network
// readiness (Kubernetes: the NetworkUnavailable=False condition). The
// daemon calls Ready once, after the first pass over all peers has
// programmed the data plane, never before.
type ReadyReporter interface {
	Ready(ctx context.Context) error
}

// ConfigWatcher is implemented by sources that can follow the network
// config instead of being read again and again (etcd v3: a watch on the
// config key, which costs etcd nothing while the config stays as it is).
// The daemon reads GetConfig every 5 s from the sources that cannot.
type ConfigWatcher interface {
	// WatchConfig calls changed with the config's raw text each time it
	// differs from the last one delivered (at first: running), with the
	// error that makes it invalid, if any; a deleted config is not
	// reported. It blocks until ctx ends (nil), riding out outages, or
	// returns ErrConfigNotWatched at once when this source cannot watch.
	WatchConfig(ctx context.Context, running []byte, changed func(raw []byte, err error)) error
}

// ErrConfigNotWatched is WatchConfig's answer when the source cannot watch
// the config after all (a wrapper whose chosen source cannot): poll
// GetConfig instead.
var ErrConfigNotWatched = errors.New("the lease source cannot watch the network config")

// PeerSource keeps the complete current lease set: consumers read the
// whole set (desired state) or what changed since they last read, never a
// stream of events to replay, and bursts coalesce into one notification.
type PeerSource interface {
	// Run keeps the set current until ctx ends.
	Run(ctx context.Context)
	// Updated fires (coalesced) after the set changed.
	Updated() <-chan struct{}
	// TakeAll returns the whole set and whether it is known yet; the
	// changes pending so far are part of it, so Changes forgets them.
	TakeAll() (leases []Lease, synced bool)
	// Changes returns what changed since the last TakeAll or Changes:
	// gone are leases as they were then (deleted or replaced), came the
	// current versions of new or replaced ones. all is true when the
	// consumer must call TakeAll instead.
	Changes() (gone, came []Lease, all bool)
}

// Permanent marks err as one that waiting cannot fix (two configs that
// disagree, a mode the network cannot run in): the daemon exits with it
// instead of retrying. errors.Is and errors.As see through it.
func Permanent(err error) error { return permanentError{err} }

// IsPermanent reports whether err, or an error it wraps, was marked by
// Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }
