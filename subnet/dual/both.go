package dual

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/flannelng/flannel/pkg/etcdv2"
	"github.com/flannelng/flannel/subnet"
	etcdsubnet "github.com/flannelng/flannel/subnet/etcd"
	v2subnet "github.com/flannelng/flannel/subnet/etcdv2"
)

// Both is the migration mode, --etcd-api=both (spec 8.1).
type Both struct {
	v3  V3
	v2  V2
	log *slog.Logger

	mu     sync.Mutex
	others []subnet.Lease // v3 leases of other nodes, as last listed
	warned bool           // the "config only in v2" warning was logged
}

var _ subnet.Manager = (*Both)(nil)

// NewBoth returns the migration mode over the two sources. The v2 source
// must consult V3Others when it allocates (subnet/etcdv2 Options.Avoid),
// so that a subnet held only in v3 is never handed out again.
func NewBoth(v3 V3, v2 V2, log *slog.Logger) *Both {
	return &Both{v3: v3, v2: v2, log: log}
}

// SetV2 sets the v2 source, for a caller that builds it after Both (its
// Avoid hook calls V3Others).
func (b *Both) SetV2(v2 V2) { b.v2 = v2 }

// V3Others returns the v3 leases of other nodes as last listed: an
// allocation in v2 must avoid them, and the previous subnet is used only
// when free in both keyspaces.
func (b *Both) V3Others() []subnet.Lease {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.others
}

// Name names both sources.
func (b *Both) Name() string {
	return "both etcd keyspaces (migration mode): " + b.v2.Name() + " and " + b.v3.Name()
}

// PublicIPs: etcd has no say in our public addresses.
func (b *Both) PublicIPs() (v4, v6 netip.Addr) { return netip.Addr{}, netip.Addr{} }

// GetConfig reads the config from both keyspaces: v3 when only it has one
// or both agree, v2 (with a warning, once) when only it has one. Two
// configs that differ once parsed are a permanent error naming the
// fields, since the nodes of the two kinds would build different
// networks.
func (b *Both) GetConfig(ctx context.Context) (*subnet.Config, []byte, error) {
	c3, raw3, err3 := b.v3.GetConfig(ctx)
	if err3 != nil && !errors.Is(err3, etcdsubnet.ErrNoConfig) {
		return nil, raw3, err3
	}
	c2, raw2, err2 := b.v2.GetConfig(ctx)
	switch {
	case errors.Is(err2, etcdv2.ErrNoV2API):
		return nil, nil, fmt.Errorf("--etcd-api=both needs etcd's v2 API for the v0.11 nodes' store: %w", err2)
	case err2 != nil && !errors.Is(err2, v2subnet.ErrNoConfig):
		if err3 == nil {
			// The v2 config is unreadable or invalid: run on v3's, but
			// say so, since v0.11 nodes read the other one.
			return c3, raw3, nil
		}
		return nil, raw2, err2
	}
	switch {
	case err3 == nil && err2 == nil:
		if !sameConfig(c3, c2) {
			return nil, raw3, subnet.Permanent(fmt.Errorf("the network config differs between the etcd v3 keyspace and the v2 store (%s); write the same config to both (spec: flannelctl migrate-v2, docs/migration.md)",
				subnet.ConfigChanges(raw2, raw3)))
		}
		return c3, raw3, nil
	case err3 == nil:
		return c3, raw3, nil
	case err2 == nil:
		b.mu.Lock()
		warn := !b.warned
		b.warned = true
		b.mu.Unlock()
		if warn {
			b.log.Warn("The network config is only in the etcd v2 store; using it. Copy it to v3 (flannelctl migrate-v2) before any node runs --etcd-api=v3")
		}
		return c2, raw2, nil
	}
	return nil, nil, err3
}

// sameConfig compares two parsed configs, the Backend objects by value
// with keys matched case-insensitively, as they are decoded.
func sameConfig(a, b *subnet.Config) bool {
	x, y := *a, *b
	x.Backend, y.Backend = nil, nil
	if !reflect.DeepEqual(x, y) {
		return false
	}
	return reflect.DeepEqual(foldJSON(a.Backend), foldJSON(b.Backend))
}

func foldJSON(raw json.RawMessage) any {
	if len(raw) == 0 {
		return nil
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return string(raw)
	}
	var fold func(any) any
	fold = func(v any) any {
		m, ok := v.(map[string]any)
		if !ok {
			return v
		}
		out := make(map[string]any, len(m))
		for k, e := range m {
			out[strings.ToLower(k)] = fold(e)
		}
		return out
	}
	return fold(v)
}

// Start reads both keyspaces once.
func (b *Both) Start(ctx context.Context, cfg *subnet.Config) error {
	if err := b.v3.Start(ctx, cfg); err != nil {
		return err
	}
	return b.v2.Start(ctx, cfg)
}

// Previous looks for our lease in v2, then in v3.
func (b *Both) Previous(cfg *subnet.Config, probe subnet.LeaseAttrs) *subnet.LeaseAttrs {
	if a := b.v2.Previous(cfg, probe); a != nil {
		return a
	}
	return b.v3.Previous(cfg, probe)
}

// Acquire claims our subnet in v2, then the same subnet in v3 (spec 8.1
// "Claim"). v2 is the lock while v0.11 nodes exist: our v2 lease (found by
// public address) wins; else our v3 subnet is claimed in v2 if it is free
// there; else v2 allocates, avoiding every v3 subnet. When v3 turns out to
// hold the subnet for another node, the v2 claim is retracted and the
// claim starts again.
func (b *Both) Acquire(ctx context.Context, cfg *subnet.Config, attrs subnet.LeaseAttrs, prev subnet.Env, onRetry func(error)) (subnet.Lease, error) {
	if cfg.EnableIPv6 {
		return subnet.Lease{}, subnet.Permanent(errors.New("--etcd-api=both supports IPv4 networks only: flannel v0.11's v2 layout has no IPv6 leases"))
	}
	delay := 200 * time.Millisecond
	for {
		l, err := b.acquireOnce(ctx, cfg, attrs, prev, onRetry)
		if err == nil {
			return l, nil
		}
		if ctx.Err() != nil {
			return subnet.Lease{}, ctx.Err()
		}
		if onRetry != nil {
			onRetry(err)
		}
		b.log.Warn("Failed to claim our subnet in both etcd keyspaces, retrying", "err", err)
		if !sleep(ctx, delay) {
			return subnet.Lease{}, ctx.Err()
		}
		delay = min(2*delay, 5*time.Second)
	}
}

func (b *Both) acquireOnce(ctx context.Context, cfg *subnet.Config, attrs subnet.LeaseAttrs, prev subnet.Env, onRetry func(error)) (subnet.Lease, error) {
	v3, _, err := b.v3.List(ctx)
	if err != nil {
		return subnet.Lease{}, fmt.Errorf("list v3 leases: %w", err)
	}
	var own3 *subnet.Lease
	others := make([]subnet.Lease, 0, len(v3))
	for i, l := range v3 {
		if own3 == nil && attrs.PublicIP.IsValid() && l.Attrs.PublicIP == attrs.PublicIP {
			own3 = &v3[i]
			continue
		}
		others = append(others, l)
	}
	b.mu.Lock()
	b.others = others
	b.mu.Unlock()

	var l2 subnet.Lease
	switch {
	case b.v2.Previous(cfg, attrs) == nil && own3 != nil && cfg.CompatibleV4(own3.Subnet):
		// Our lease is only in v3 (a node rolled back from v3 mode, or
		// migrated by flannelctl after its v2 key lapsed): keep its
		// subnet if v2 has it free.
		l2, err = b.v2.AcquireSubnet(ctx, cfg, attrs, own3.Subnet)
		if errors.Is(err, v2subnet.ErrTaken) {
			b.log.Error("Our v3 subnet is held by another node in the v2 store, which v0.11 nodes route by; allocating another", "subnet", own3.Subnet.String(), "err", err)
			l2, err = b.v2.Acquire(ctx, cfg, attrs, prev, onRetry)
		}
	default:
		l2, err = b.v2.Acquire(ctx, cfg, attrs, prev, onRetry)
	}
	if err != nil {
		return subnet.Lease{}, fmt.Errorf("claim in the v2 store: %w", err)
	}
	l3, err := b.v3.ClaimSubnet(ctx, cfg, attrs, l2.Subnet)
	if errors.Is(err, etcdsubnet.ErrTaken) {
		b.log.Error("Subnet claimed in the v2 store is held by another node in v3; retracting the v2 claim and starting again", "subnet", l2.Subnet.String(), "err", err)
		if rerr := b.v2.Retract(ctx, l2); rerr != nil {
			return subnet.Lease{}, fmt.Errorf("retract v2 claim of %v: %w", l2.Subnet, rerr)
		}
		b.forget(ctx, l2.Subnet)
		return subnet.Lease{}, err
	}
	if err != nil {
		return subnet.Lease{}, fmt.Errorf("claim in etcd v3: %w", err)
	}
	b.log.Info("Holding our lease in both etcd keyspaces", "subnet", l3.Subnet.String(), "publicIP", attrs.PublicIP.String())
	return l3, nil
}

// forget waits (a few seconds at most) until the v2 store no longer lists
// a retracted claim, so that the next attempt does not find it as ours by
// public address and reuse it.
func (b *Both) forget(ctx context.Context, p netip.Prefix) {
	type lister interface {
		Snapshot(ctx context.Context) ([]subnet.Lease, uint64, error)
	}
	s, ok := b.v2.(lister)
	if !ok {
		return
	}
	for range 20 {
		leases, _, err := s.Snapshot(ctx)
		if err == nil && !holds(leases, p) {
			return
		}
		if !sleep(ctx, 250*time.Millisecond) {
			return
		}
	}
}

func holds(leases []subnet.Lease, p netip.Prefix) bool {
	for _, l := range leases {
		if l.Subnet == p {
			return true
		}
	}
	return false
}

// Peers is the union of both keyspaces' leases.
func (b *Both) Peers() subnet.PeerSource {
	return newUnion(b.v2.Peers(), b.v3.Peers(), b.log)
}

// Keep keeps the v3 lease as v3 mode does (its loss is revocation) and the
// v2 copy beside it; the first to fail for good stops both.
func (b *Both) Keep(ctx context.Context, cfg *subnet.Config, own subnet.Lease) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2)
	go func() { errs <- b.v3.Keep(ctx, cfg, own) }()
	go func() {
		err := b.v2.KeepCopy(ctx, cfg, own)
		if err != nil {
			err = fmt.Errorf("keep the v2 copy of our lease: %w", err)
		}
		errs <- err
	}()
	err := <-errs
	cancel()
	if err2 := <-errs; err == nil {
		err = err2
	}
	return err
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
