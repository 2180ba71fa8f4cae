package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/flannelng/flannel/subnet"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrNoConfig is returned when <prefix>/config does not exist. The text is
// upstream's, which operators search for.
var ErrNoConfig = errors.New("flannel config not found in etcd store. Did you create your config using etcdv3 API?")

// Options tune a Manager.
type Options struct {
	Prefix      string        // default /coreos.com/network
	TTL         time.Duration // lease TTL, default 24h
	RenewMargin time.Duration // renew this long before expiry, default 1h
	RPCTimeout  time.Duration // per request, default 5s
	Log         *slog.Logger
	// OnRequest, when set, sees every etcd request: its kind (the first
	// word: get, list, grant, create, update, renew, delete, revoke), how
	// long it took and its error (metrics).
	OnRequest func(kind string, d time.Duration, err error)
	// OnWatchRestart, when set, is called when the lease watch is
	// re-established; relist is true after a compaction.
	OnWatchRestart func(relist bool)
	// Relist is how often (give or take a tenth) the watcher compares its
	// lease set with etcd's, as a safety net against a missed watch
	// event: one range read, logged only when it found a difference.
	// Default 10 min; negative: never.
	Relist time.Duration
	// OnLease, when set, sees our lease whenever Keep renews or re-creates
	// it.
	OnLease func(subnet.Lease)
	// Diagnose, when set, is asked once per outage why etcd cannot be
	// reached (ClientConfig.Diagnose); its answer goes into the outage's
	// log line and the errors returned during the outage.
	Diagnose func(context.Context) string
}

// Manager reads the config and keeps our lease in etcd.
type Manager struct {
	cli  *clientv3.Client
	opt  Options
	log  *slog.Logger
	rnd  *rand.Rand
	rndM sync.Mutex
	// subnets is SubnetsPrefix(), computed once: KeyFor runs for every
	// lease on every daemon pass.
	subnets string
	// newTimer is time.NewTimer; tests shorten Keep's waits through it.
	newTimer func(time.Duration) *time.Timer

	mu          sync.Mutex
	unreachable time.Time // start of the current outage, zero when reachable
	reason      string    // Diagnose's answer for the current outage
	bad         badKeys
	own         held // our lease, as Acquire got it (for Keep)
	start       Listing
	started     bool // start holds Start's listing, until Peers takes it
}

// New returns a Manager using cli.
func New(cli *clientv3.Client, o Options) *Manager {
	if o.Prefix == "" {
		o.Prefix = "/coreos.com/network"
	}
	o.Prefix = strings.TrimRight(o.Prefix, "/")
	if o.TTL <= 0 {
		o.TTL = 24 * time.Hour
	}
	if o.RenewMargin <= 0 {
		o.RenewMargin = time.Hour
	}
	if o.RPCTimeout <= 0 {
		o.RPCTimeout = 5 * time.Second
	}
	if o.Relist == 0 {
		o.Relist = 10 * time.Minute
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Manager{
		cli: cli, opt: o, log: o.Log, subnets: path.Join(o.Prefix, "subnets") + "/",
		rnd:      rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), rand.Uint64())),
		bad:      badKeys{keys: map[string]struct{}{}},
		newTimer: time.NewTimer,
	}
}

// ConfigKey is <prefix>/config.
func (m *Manager) ConfigKey() string { return path.Join(m.opt.Prefix, "config") }

// SubnetsPrefix is <prefix>/subnets/ (with the slash, so that a sibling key
// such as <prefix>/subnetsX is not listed).
func (m *Manager) SubnetsPrefix() string { return m.subnets }

// KeyFor is the etcd key of a lease. The daemon calls it for every lease
// on every pass, so it is built without fmt (the same bytes subnet.MakeKey
// writes: "10.5.21.0-24").
func (m *Manager) KeyFor(l subnet.Lease) string {
	b := make([]byte, 0, len(m.subnets)+len("255.255.255.255-32&ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff-128"))
	b = append(b, m.subnets...)
	return string(appendKeyName(b, l.Subnet, l.IPv6Subnet))
}

// rpc runs one etcd request with a timeout, and logs the start and the end
// of an outage once each instead of once per failed call.
func (m *Manager) rpc(ctx context.Context, what string, fn func(context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, m.opt.RPCTimeout)
	defer cancel()
	began := time.Now()
	err := fn(cctx)
	if m.opt.OnRequest != nil && ctx.Err() == nil {
		kind, _, _ := strings.Cut(what, " ")
		m.opt.OnRequest(kind, time.Since(began), err)
	}
	if err != nil && ctx.Err() == nil && isUnavailable(err) {
		m.mu.Lock()
		starting := m.unreachable.IsZero()
		if starting {
			m.unreachable = time.Now()
		}
		m.mu.Unlock()
		if starting {
			// The client only says "deadline exceeded"; a TLS or
			// certificate problem is found by dialing ourselves.
			reason := ""
			if m.opt.Diagnose != nil {
				reason = m.opt.Diagnose(ctx)
			}
			m.mu.Lock()
			m.reason = reason
			m.mu.Unlock()
			attrs := []any{"endpoints", strings.Join(m.cli.Endpoints(), ","), "request", what, "err", err}
			if reason != "" {
				attrs = append(attrs, "reason", reason)
			}
			m.log.Error("etcd is unreachable; the data plane keeps forwarding, retrying with back-off", attrs...)
		}
		m.mu.Lock()
		reason := m.reason
		m.mu.Unlock()
		if reason != "" {
			return fmt.Errorf("%s: etcd unreachable (%s): %w: %s", what, strings.Join(m.cli.Endpoints(), ","), err, reason)
		}
		return fmt.Errorf("%s: etcd unreachable (%s): %w", what, strings.Join(m.cli.Endpoints(), ","), err)
	}
	if err == nil {
		m.mu.Lock()
		if !m.unreachable.IsZero() {
			m.log.Info("etcd is reachable again", "outage", time.Since(m.unreachable).Round(time.Millisecond))
			m.unreachable, m.reason = time.Time{}, ""
		}
		m.mu.Unlock()
	}
	return err
}

func isUnavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, rpctypes.ErrNoLeader) || errors.Is(err, rpctypes.ErrTimeout) ||
		errors.Is(err, rpctypes.ErrTimeoutDueToLeaderFail) || errors.Is(err, rpctypes.ErrTimeoutDueToConnectionLost) {
		return true
	}
	s := err.Error()
	return strings.Contains(s, "Unavailable") || strings.Contains(s, "connection refused") || strings.Contains(s, "DeadlineExceeded")
}

// Reachable reports whether the last etcd request succeeded.
func (m *Manager) Reachable() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.unreachable.IsZero()
}

// GetConfig reads and validates the network config.
func (m *Manager) GetConfig(ctx context.Context) (*subnet.Config, []byte, error) {
	var resp *clientv3.GetResponse
	err := m.rpc(ctx, "get "+m.ConfigKey(), func(ctx context.Context) (err error) {
		resp, err = m.cli.Get(ctx, m.ConfigKey())
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, nil, ErrNoConfig
	}
	raw := resp.Kvs[0].Value
	cfg, err := subnet.ParseConfig(raw)
	if err != nil {
		return nil, raw, fmt.Errorf("network config at %s: %w", m.ConfigKey(), err)
	}
	return cfg, raw, nil
}

// Listing is one range read of the leases and the etcd revision it
// reflects.
type Listing struct {
	Leases   []subnet.Lease
	Revision int64
	// meta[i] is what etcd says of Leases[i] beyond its value.
	meta []meta
	// blocked are the subnets named by keys that are no lease we use (a
	// value or a key name that is not flannel's) but that other readers
	// may take for one: never handed out.
	blocked []netip.Prefix
}

// meta is a key's etcd lease (0 for a reservation) and the revision of
// its last write.
type meta struct{ id, rev int64 }

// List reads every lease with one range request. Keys that are no lease we
// use are skipped (and logged once while they exist, see decode).
func (m *Manager) List(ctx context.Context) ([]subnet.Lease, int64, error) {
	l, err := m.Snapshot(ctx)
	return l.Leases, l.Revision, err
}

// Snapshot is List as a Listing.
func (m *Manager) Snapshot(ctx context.Context) (Listing, error) { return m.snapshot(ctx) }

// snapshot is Snapshot with more options for the range read (a revision).
func (m *Manager) snapshot(ctx context.Context, opts ...clientv3.OpOption) (Listing, error) {
	var resp *clientv3.GetResponse
	err := m.rpc(ctx, "list "+m.SubnetsPrefix(), func(ctx context.Context) (err error) {
		resp, err = m.cli.Get(ctx, m.SubnetsPrefix(), append([]clientv3.OpOption{clientv3.WithPrefix()}, opts...)...)
		return err
	})
	if err != nil {
		return Listing{}, err
	}
	out := Listing{Leases: make([]subnet.Lease, 0, len(resp.Kvs)), meta: make([]meta, 0, len(resp.Kvs)), Revision: resp.Header.Revision}
	var bad []string
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		l, err := m.decode(key, kv.Value)
		if err != nil {
			bad = append(bad, key)
			out.blocked = append(out.blocked, subnet.Taken([]subnet.Lease{l})...)
			continue
		}
		out.Leases = append(out.Leases, l)
		out.meta = append(out.meta, meta{id: kv.Lease, rev: kv.ModRevision})
	}
	m.keepBad(bad)
	return out, nil
}
