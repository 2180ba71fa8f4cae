package etcdv2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"time"

	v2 "github.com/flannelng/flannel/pkg/etcdv2"
	"github.com/flannelng/flannel/subnet"
)

// ErrNoConfig is wrapped by GetConfig when <prefix>/config does not exist
// in the v2 store.
var ErrNoConfig = errors.New("flannel config not found in etcd's v2 store")

// ErrIPv6 is wrapped by GetConfig and Acquire for a config that needs IPv6
// leases, which flannel v0.11's v2 layout has no form for. Waiting does not
// fix it.
var ErrIPv6 = errors.New("etcd's v2 store holds IPv4 leases only (flannel v0.11's layout has no IPv6 keys or fields)")

// Options tune a Manager. Zero values take the defaults.
type Options struct {
	Prefix      string        // default /coreos.com/network; trailing slashes trimmed
	TTL         time.Duration // lease TTL, default 24h (ttl=86400); whole seconds
	RenewMargin time.Duration // Keep renews this long before expiry, default 1h
	// PollTimeout bounds each long poll (default 1 min): a frozen server
	// or a dead connection costs at most that, then the watch polls again
	// from the same cursor.
	PollTimeout time.Duration
	// RequestTimeout, when set, bounds each request but a long poll in
	// addition to the client's own Config.RequestTimeout.
	RequestTimeout time.Duration
	// Value is how our lease value is written (default FormatV011).
	Value Format
	Log   *slog.Logger
	// OnRequest, when set, sees every request but the long polls: its
	// kind (get, list, create, set, renew, update, delete, retract), how
	// long it took and its error (metrics).
	OnRequest func(kind string, d time.Duration, err error)
	// OnWatchRestart, when set, is called when the lease watch starts
	// over: relist is true after the history window was passed (401).
	OnWatchRestart func(relist bool)
	// OnLease, when set, sees our lease whenever Keep or KeepCopy renews
	// or re-creates it.
	OnLease func(subnet.Lease)

	// Avoid, when set, returns leases held elsewhere (the migration
	// mode's v3 keyspace) that every acquisition treats as taken as well:
	// a subnet is picked, or the previous one reused, only when it is
	// free in both. Leases with our own PublicIP are not avoided: they
	// are ours.
	Avoid func() []subnet.Lease
	// CopyRenewBelow is when KeepCopy renews: once less than this remains
	// of the key's TTL (default 12h, spec 8.1).
	CopyRenewBelow time.Duration
	// CopyCheckEvery is how often KeepCopy reads the key's TTL, and
	// retries after a failure (default 1 min).
	CopyCheckEvery time.Duration
}

// Manager is flannel's lease source in etcd's v2 store (subnet.Manager),
// as a node of a flannel v0.11 cluster, plus the hooks the migration mode
// builds on (AcquireSubnet, Retract, KeepCopy, Snapshot, Options.Avoid).
type Manager struct {
	cli *v2.Client
	opt Options
	log *slog.Logger
	dir string // <prefix>/subnets

	rndM sync.Mutex
	rnd  *rand.Rand

	mu        sync.Mutex
	down      time.Time // start of the current outage, zero when etcd answers
	badKeys   map[string]struct{}
	badFull   bool // badKeys reached maxBadKeys (said once)
	retracted map[string]bool
	own       held
	start     listing
	started   bool // start holds Start's listing, until Peers takes it
	startUsed bool // Acquire used it (its first attempt only)
}

var _ subnet.Manager = (*Manager)(nil)

// New returns a Manager using cli.
func New(cli *v2.Client, o Options) *Manager {
	if o.Prefix == "" {
		o.Prefix = "/coreos.com/network"
	}
	o.Prefix = strings.TrimRight(o.Prefix, "/")
	if o.TTL <= 0 {
		o.TTL = 24 * time.Hour
	}
	// v2 TTLs are whole seconds; the client refuses anything else.
	o.TTL = (o.TTL + time.Second - 1).Truncate(time.Second)
	if o.RenewMargin <= 0 {
		o.RenewMargin = time.Hour
	}
	if o.PollTimeout <= 0 {
		o.PollTimeout = time.Minute
	}
	if o.CopyRenewBelow <= 0 {
		o.CopyRenewBelow = 12 * time.Hour
	}
	if o.CopyCheckEvery <= 0 {
		o.CopyCheckEvery = time.Minute
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Manager{
		cli: cli, opt: o, log: o.Log, dir: o.Prefix + "/subnets",
		rnd:       rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), rand.Uint64())),
		badKeys:   map[string]struct{}{},
		retracted: map[string]bool{},
	}
}

// Name says which etcd and prefix the leases live in.
func (m *Manager) Name() string {
	return fmt.Sprintf("etcd v2 %s prefix %s", strings.Join(m.cli.Endpoints(), ","), m.opt.Prefix)
}

// ConfigKey is <prefix>/config.
func (m *Manager) ConfigKey() string { return m.opt.Prefix + "/config" }

// SubnetsDir is <prefix>/subnets, the directory of the leases.
func (m *Manager) SubnetsDir() string { return m.dir }

// KeyFor is the v2 key of an IPv4 subnet: <prefix>/subnets/A.B.C.D-LEN.
func (m *Manager) KeyFor(p netip.Prefix) string {
	return m.dir + "/" + subnet.MakeKey(p.Masked(), netip.Prefix{})
}

// PublicIPs: etcd has no say in our public addresses.
func (m *Manager) PublicIPs() (v4, v6 netip.Addr) { return netip.Addr{}, netip.Addr{} }

// request runs one request (not a long poll), tells OnRequest, and notes
// whether etcd answered. An etcd error answer does not name its key, so
// it is wrapped with what; transport errors already name method and key.
func (m *Manager) request(ctx context.Context, what string, fn func(context.Context) (*v2.Response, error)) (*v2.Response, error) {
	rctx := ctx
	if m.opt.RequestTimeout > 0 {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(ctx, m.opt.RequestTimeout)
		defer cancel()
	}
	began := time.Now()
	resp, err := fn(rctx)
	if m.opt.OnRequest != nil && ctx.Err() == nil {
		kind, _, _ := strings.Cut(what, " ")
		m.opt.OnRequest(kind, time.Since(began), err)
	}
	m.note(ctx, what, err)
	if v2.ErrorCode(err) != 0 {
		err = fmt.Errorf("%s: %w", what, err)
	}
	return resp, err
}

// note logs the start and the end of an outage once each, instead of once
// per failed request or poll. An error answer from etcd is not an outage.
func (m *Manager) note(ctx context.Context, what string, err error) {
	if ctx.Err() != nil {
		return
	}
	// A server without the v2 API answered too: it is misconfigured, not
	// down, and the caller's error says so.
	down := err != nil && v2.ErrorCode(err) == 0 && !errors.Is(err, v2.ErrNoV2API)
	m.mu.Lock()
	starting := down && m.down.IsZero()
	ending := !down && !m.down.IsZero()
	var lasted time.Duration
	if starting {
		m.down = time.Now()
	}
	if ending {
		lasted = time.Since(m.down)
		m.down = time.Time{}
	}
	m.mu.Unlock()
	if starting {
		m.log.Error("etcd v2 is unreachable; the data plane keeps forwarding, retrying",
			"endpoints", strings.Join(m.cli.Endpoints(), ","), "request", what, "err", err)
	}
	if ending {
		m.log.Info("etcd v2 is reachable again", "outage", lasted.Round(time.Millisecond))
	}
}

// Reachable reports whether the last request or poll got an answer.
func (m *Manager) Reachable() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.down.IsZero()
}

// GetConfig reads <prefix>/config from the v2 store (a quorum read, as
// v0.11 does). A missing key wraps ErrNoConfig; a server without the v2
// API wraps v2.ErrNoV2API; a config with IPv6 wraps ErrIPv6.
func (m *Manager) GetConfig(ctx context.Context) (*subnet.Config, []byte, error) {
	key := m.ConfigKey()
	resp, err := m.request(ctx, "get "+key, func(ctx context.Context) (*v2.Response, error) {
		return m.cli.Get(ctx, key, false)
	})
	if v2.IsKeyNotFound(err) {
		return nil, nil, fmt.Errorf("%w: no key %s (v0.11 clusters write it with ETCDCTL_API=2 etcdctl set %s '<json>')", ErrNoConfig, key, key)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read network config from etcd v2: %w", err)
	}
	raw := []byte(resp.Node.Value)
	cfg, err := subnet.ParseConfig(raw)
	if err != nil {
		return nil, raw, fmt.Errorf("network config at %s (etcd v2 store): %w", key, err)
	}
	if err := checkConfig(cfg); err != nil {
		// Waiting cannot make the v2 layout hold IPv6.
		return nil, raw, subnet.Permanent(fmt.Errorf("network config at %s: %w", key, err))
	}
	return cfg, raw, nil
}

// checkConfig refuses a config the v2 layout cannot hold.
func checkConfig(cfg *subnet.Config) error {
	if cfg.EnableIPv6 || !cfg.EnableIPv4 {
		return fmt.Errorf("%w: EnableIPv6 or EnableIPv4=false is not supported in --etcd-api=v2; put the config in the v3 keyspace", ErrIPv6)
	}
	return nil
}

// listing is one read of the lease directory.
type listing struct {
	leases []subnet.Lease
	keys   []string // etcd key of leases[i] (a key v0.11 accepts need not be canonical)
	index  uint64   // X-Etcd-Index: the watch continues after it
}

// list reads every lease with one recursive quorum GET. Keys and values
// that do not parse are skipped (and logged once per key).
func (m *Manager) list(ctx context.Context) (listing, error) {
	resp, err := m.request(ctx, "list "+m.dir, func(ctx context.Context) (*v2.Response, error) {
		return m.cli.Get(ctx, m.dir, true)
	})
	var e *v2.Error
	if errors.As(err, &e) && e.Code == v2.CodeKeyNotFound {
		// No lease was ever written: the directory is created by the
		// first one. The error's index is the cursor.
		return listing{index: e.Index}, nil
	}
	if err != nil {
		return listing{}, err
	}
	if !resp.Node.Dir {
		return listing{}, fmt.Errorf("list %s: it is a value, not a directory", m.dir)
	}
	out := listing{index: resp.Index, leases: make([]subnet.Lease, 0, len(resp.Node.Nodes)), keys: make([]string, 0, len(resp.Node.Nodes))}
	for _, n := range resp.Node.Nodes {
		l, err := m.decodeNode(n)
		if err != nil {
			continue
		}
		out.leases = append(out.leases, l)
		out.keys = append(out.keys, n.Key)
	}
	return out, nil
}

// Snapshot reads every lease once; the index is the v2 cursor a watch
// would continue from.
func (m *Manager) Snapshot(ctx context.Context) ([]subnet.Lease, uint64, error) {
	l, err := m.list(ctx)
	return l.leases, l.index, err
}

// parseNode reads a lease from a node of dir: a value directly below it
// named A.B.C.D-LEN (v0.11 accepts that pattern anywhere in the name, and
// so do we, through subnet.ParseKey) holding a lease value.
func parseNode(dir string, n *v2.Node) (subnet.Lease, error) {
	name, ok := strings.CutPrefix(n.Key, dir+"/")
	if !ok || name == "" || strings.Contains(name, "/") || n.Dir {
		return subnet.Lease{}, errors.New("not a lease key")
	}
	v4, v6, err := subnet.ParseKey(name)
	if err != nil {
		return subnet.Lease{}, err
	}
	if v6.IsValid() || !v4.IsValid() {
		return subnet.Lease{}, fmt.Errorf("invalid subnet key %q: the v2 store has IPv4 leases only", name)
	}
	attrs, err := subnet.DecodeAttrs([]byte(n.Value))
	if err != nil {
		return subnet.Lease{}, err
	}
	l := subnet.Lease{Subnet: v4, Attrs: attrs}
	if n.Expiration != nil {
		l.Expiration = *n.Expiration
	}
	return l, nil
}

// maxBadKeys bounds the bad keys remembered so that each is logged once.
const maxBadKeys = 256

// decodeNode is parseNode, logging a bad node once per key.
func (m *Manager) decodeNode(n *v2.Node) (subnet.Lease, error) {
	l, err := parseNode(m.dir, n)
	if err == nil {
		return l, nil
	}
	m.mu.Lock()
	_, seen := m.badKeys[n.Key]
	full := len(m.badKeys) >= maxBadKeys
	if !seen && !full {
		m.badKeys[n.Key] = struct{}{}
	}
	sayFull := full && !m.badFull
	if full {
		m.badFull = true
	}
	m.mu.Unlock()
	switch {
	case !seen && !full:
		m.log.Warn("Ignoring bad subnet node", "key", n.Key, "err", err)
	case sayFull:
		m.log.Warn(fmt.Sprintf("More than %d bad subnet nodes below %s; ignoring further ones without logging each", maxBadKeys, m.dir))
	}
	return subnet.Lease{}, err
}

// forgetBad forgets a bad key that was deleted, so that a new bad value
// under it is logged again.
func (m *Manager) forgetBad(key string) {
	m.mu.Lock()
	delete(m.badKeys, key)
	m.mu.Unlock()
}

// Start lists the leases once, retrying every 2 s while etcd cannot answer
// (the outage is logged once).
func (m *Manager) Start(ctx context.Context, _ *subnet.Config) error {
	for {
		l, err := m.list(ctx)
		if err == nil {
			m.mu.Lock()
			m.start, m.started, m.startUsed = l, true, false
			m.mu.Unlock()
			return nil
		}
		if !sleep(ctx, 2*time.Second) {
			return ctx.Err()
		}
	}
}

// startListing returns Start's listing, if Start ran and Peers has not
// taken it.
func (m *Manager) startListing() (listing, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.start, m.started
}

// Previous returns the attributes of the lease advertising our public
// address in Start's listing.
func (m *Manager) Previous(cfg *subnet.Config, probe subnet.LeaseAttrs) *subnet.LeaseAttrs {
	l, _ := m.startListing()
	if i := subnet.FindOwn(l.leases, cfg, probe); i >= 0 {
		a := l.leases[i].Attrs
		return &a
	}
	return nil
}

// Peers returns a watcher of every lease, starting from Start's listing
// (it then polls from that listing's index instead of listing again).
func (m *Manager) Peers() subnet.PeerSource {
	m.mu.Lock()
	l, ok := m.start, m.started
	m.start, m.started = listing{}, false // the watcher owns the leases now
	m.mu.Unlock()
	if !ok {
		return m.NewWatcher()
	}
	return m.newWatcherFrom(l)
}

// sleep waits d or until ctx ends; it reports whether d passed.
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
