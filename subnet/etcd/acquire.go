package etcd

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/flannelng/flannel/subnet"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// errTryAgain means another writer got in between; list again and retry.
var errTryAgain = errors.New("lease state changed concurrently")

// held is a lease as etcd stores it: the etcd lease its key is attached
// to (0 for a reservation) and the revision of the key's last write, which
// our transactions compare against. Neither leaves this package.
type held struct {
	subnet.Lease
	id  int64
	rev int64
}

func (h held) isReservation() bool { return h.id == 0 }

// Acquire gets our lease: the one already advertising our public IP, else
// the subnet from the previous subnet.env when it is compatible and free,
// else a free subnet picked at random among the first free ones. Lost races
// and a full network are retried with back-off and jitter until ctx ends;
// onRetry (optional) sees each failure.
//
// After Start, the first attempt uses Start's listing.
func (m *Manager) Acquire(ctx context.Context, cfg *subnet.Config, attrs subnet.LeaseAttrs, prev subnet.Env, onRetry func(error)) (subnet.Lease, error) {
	if l, ok := m.startListing(); ok {
		return m.AcquireFrom(ctx, l, cfg, attrs, prev, onRetry)
	}
	return m.hold(m.acquire(ctx, nil, cfg, attrs, prev, onRetry, 0))
}

// AcquireFrom is Acquire with a listing the caller already made: the first
// attempt uses it instead of reading the leases again (at 5,000 leases a
// listing costs tens of milliseconds of decoding and a few MB of garbage).
// A listing that is out of date costs nothing but a retry: creating a key
// fails when any lease changed after first.Revision.
func (m *Manager) AcquireFrom(ctx context.Context, first Listing, cfg *subnet.Config, attrs subnet.LeaseAttrs, prev subnet.Env, onRetry func(error)) (subnet.Lease, error) {
	return m.hold(m.acquire(ctx, &first, cfg, attrs, prev, onRetry, 0))
}

// hold remembers the lease Acquire got, for Keep.
func (m *Manager) hold(h held, err error) (subnet.Lease, error) {
	if err != nil {
		return subnet.Lease{}, err
	}
	m.mu.Lock()
	m.own = h
	m.mu.Unlock()
	return h.Lease, nil
}

// held returns our lease as Keep knows it, if it is own.
func (m *Manager) heldFor(own subnet.Lease) held {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.own.Subnet == own.Subnet && m.own.IPv6Subnet == own.IPv6Subnet {
		h := m.own
		h.Lease = own
		return h
	}
	return held{Lease: own}
}

// acquire is Acquire; a non-zero reuse names an etcd lease of ours that is
// still alive, to attach a re-created key to instead of granting another.
//
// A lost race (another writer changed a key our transaction guards) is
// retried at once from the same listing updated with only the keys
// written since (deleted keys stay in it: they only make the next pick
// more careful). After a few in a row, or any other failure, attempts
// back off and list everything again.
func (m *Manager) acquire(ctx context.Context, first *Listing, cfg *subnet.Config, attrs subnet.LeaseAttrs, prev subnet.Env, onRetry func(error), reuse int64) (held, error) {
	g := &leaseGrant{reuse: reuse}
	defer g.release(ctx, m)
	delay := 50 * time.Millisecond
	lastFull := "" // a full network is logged once per distinct message
	raced := 0     // lost races in a row
	listing := first
	for {
		var l held
		var err error
		if listing == nil {
			var fresh Listing
			if fresh, err = m.Snapshot(ctx); err == nil {
				listing, raced = &fresh, 0
			}
		}
		if err == nil {
			l, err = m.acquireOnce(ctx, listing, cfg, attrs, prev, g)
		}
		if err == nil {
			return l, nil
		}
		if ctx.Err() != nil {
			return held{}, ctx.Err()
		}
		if onRetry != nil {
			onRetry(err)
		}
		max := 5 * time.Second
		var full *subnet.ErrNoFreeSubnet
		switch {
		case errors.Is(err, errTryAgain):
			raced++
			m.log.Debug("lease race lost, retrying", "err", err)
			if raced <= maxQuickRetries {
				if fresher, err := m.since(ctx, *listing); err == nil {
					listing = &fresher
					continue
				}
			}
			// Contention: short, jittered waits so concurrent joiners
			// spread out but none waits long.
			max = 500 * time.Millisecond
		case errors.As(err, &full):
			if msg := err.Error(); msg != lastFull {
				m.log.Error("Failed to acquire lease; retrying until a subnet is free", "err", err)
				lastFull = msg
			}
		default:
			m.log.Warn("Failed to acquire lease, retrying", "err", err)
			g.release(ctx, m) // it may be what failed (expired after a long outage)
		}
		listing = nil // the next attempt lists again
		m.rndM.Lock()
		wait := delay/2 + time.Duration(m.rnd.Int64N(int64(delay)))
		m.rndM.Unlock()
		if !sleep(ctx, wait) {
			return held{}, ctx.Err()
		}
		if delay *= 2; delay > max {
			delay = max
		}
	}
}

// maxQuickRetries is how many lost races in a row are retried at once
// from the listing updated with what changed; a key deleted since the
// listing (our own, say) is only seen by a full listing.
const maxQuickRetries = 3

// since is l updated with every key written after it (one range read
// that returns only those keys): changed and new leases replace or join
// l's, keys that are no longer leases leave it. Deleted keys are not
// seen and stay. l itself is not changed (the watcher may share it).
func (m *Manager) since(ctx context.Context, l Listing) (Listing, error) {
	var resp *clientv3.GetResponse
	err := m.rpc(ctx, "list "+m.subnets+" since revision "+strconv.FormatInt(l.Revision, 10), func(ctx context.Context) (err error) {
		resp, err = m.cli.Get(ctx, m.subnets, clientv3.WithPrefix(), clientv3.WithMinModRev(l.Revision+1))
		return err
	})
	if err != nil {
		return Listing{}, err
	}
	out := Listing{Revision: resp.Header.Revision, Leases: l.Leases, meta: l.meta, blocked: l.blocked}
	if len(resp.Kvs) == 0 {
		return out, nil
	}
	index := make(map[string]int, len(l.Leases))
	for i, x := range l.Leases {
		index[m.KeyFor(x)] = i
	}
	out.Leases, out.meta, out.blocked = slices.Clone(l.Leases), slices.Clone(l.meta), slices.Clone(l.blocked)
	gone := map[int]bool{}
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		x, err := m.decode(key, kv.Value)
		i, had := index[key]
		switch {
		case err != nil:
			out.blocked = append(out.blocked, subnet.Taken([]subnet.Lease{x})...)
			if had {
				gone[i] = true
			}
		case had:
			out.Leases[i], out.meta[i] = x, meta{id: kv.Lease, rev: kv.ModRevision}
		default:
			out.Leases = append(out.Leases, x)
			out.meta = append(out.meta, meta{id: kv.Lease, rev: kv.ModRevision})
		}
	}
	if len(gone) > 0 {
		leases, metas := out.Leases[:0], out.meta[:0]
		for i := range out.Leases {
			if !gone[i] {
				leases, metas = append(leases, out.Leases[i]), append(metas, out.meta[i])
			}
		}
		out.Leases, out.meta = leases, metas
	}
	return out, nil
}

func (m *Manager) acquireOnce(ctx context.Context, listing *Listing, cfg *subnet.Config, attrs subnet.LeaseAttrs, prev subnet.Env, g *leaseGrant) (held, error) {
	var err error
	leases, rev := listing.Leases, listing.Revision
	var own *held
	if i := subnet.FindOwn(leases, cfg, attrs); i >= 0 {
		own = &held{Lease: leases[i], id: listing.meta[i].id, rev: listing.meta[i].rev}
	}
	if own != nil && cfg.Compatible(own.Subnet, own.IPv6Subnet) {
		m.log.Info(fmt.Sprintf("Found lease (ip: %v ipv6: %v) for current IP (%v), reusing", logPrefix(own.Subnet, false), logPrefix(own.IPv6Subnet, true), attrs.PublicIP))
		return m.adopt(ctx, *own, attrs)
	}
	others := leases
	if own != nil {
		others = make([]subnet.Lease, 0, len(leases))
		for _, l := range leases {
			if m.KeyFor(l) != m.KeyFor(own.Lease) {
				others = append(others, l)
			}
		}
	}
	taken := append(subnet.Taken(others), listing.blocked...)

	// Each family's subnet comes from our own lease when that half still
	// fits (an IPv4-only lease upgraded to dual stack keeps its IPv4
	// subnet), else from the previous subnet.env when it fits and is free,
	// else from the free ones.
	var want4, want6 netip.Prefix
	if own != nil {
		if cfg.EnableIPv4 && cfg.CompatibleV4(own.Subnet) {
			want4 = own.Subnet
		}
		if cfg.EnableIPv6 && cfg.CompatibleV6(own.IPv6Subnet) {
			want6 = own.IPv6Subnet
		}
		m.log.Warn(fmt.Sprintf("Found lease (%v) for current IP (%v) but not compatible with current config, replacing it", own.Lease, attrs.PublicIP),
			"keeping", subnet.Lease{Subnet: want4, IPv6Subnet: want6}.String())
	}
	if prev.Subnet.IsValid() && cfg.EnableIPv4 && !want4.IsValid() {
		want4 = m.previous(cfg.CompatibleV4(prev.Subnet), prev.Subnet, taken)
	}
	if prev.IPv6Subnet.IsValid() && cfg.EnableIPv6 && !want6.IsValid() {
		want6 = m.previous(cfg.CompatibleV6(prev.IPv6Subnet), prev.IPv6Subnet, taken)
	}
	picked := false
	if cfg.EnableIPv4 && !want4.IsValid() {
		m.log.Info(fmt.Sprintf("Picking subnet in range %s ... %s", cfg.SubnetMin, cfg.SubnetMax))
		if want4, err = m.pick(cfg, false, taken, len(others)); err != nil {
			return held{}, err
		}
		picked = true
	}
	if cfg.EnableIPv6 && !want6.IsValid() {
		m.log.Info(fmt.Sprintf("Picking ipv6 subnet in range %s ... %s", cfg.IPv6SubnetMin, cfg.IPv6SubnetMax))
		if want6, err = m.pick(cfg, true, taken, len(others)); err != nil {
			return held{}, err
		}
		picked = true
	}
	if own != nil && !own.isReservation() && g.reuse == 0 {
		g.reuse = own.id
	}
	l, err := m.create(ctx, creation{v4: want4, v6: want6, attrs: attrs, rev: rev, replace: own}, g)
	if err == nil && picked {
		m.log.Info(fmt.Sprintf("Allocated lease (ip: %v ipv6: %v) to current node (%v) ", logPrefix(l.Subnet, false), logPrefix(l.IPv6Subnet, true), attrs.PublicIP))
	}
	return l, err
}

// logPrefix prints a lease half as upstream's log lines do: an absent half
// is the zero network (0.0.0.0/0, ::/0), not Go's "invalid Prefix".
func logPrefix(p netip.Prefix, v6 bool) string {
	switch {
	case p.IsValid():
		return p.String()
	case v6:
		return "::/0"
	}
	return "0.0.0.0/0"
}

// previous returns p, the subnet of the previous subnet.env, when it is
// compatible and no other lease overlaps it.
func (m *Manager) previous(compatible bool, p netip.Prefix, taken []netip.Prefix) netip.Prefix {
	switch {
	case !compatible:
		m.log.Info(fmt.Sprintf("Found previously leased subnet (%v) that is not compatible with the Etcd network config, ignoring", p))
	case subnet.Overlaps(p, taken):
		// #1182: a stale subnet.env must not make two nodes share a subnet.
		m.log.Warn("Previously leased subnet is now held by another node, not reusing it", "subnet", p.String())
	default:
		m.log.Info(fmt.Sprintf("Found previously leased subnet (%v), reusing", p))
		return p
	}
	return netip.Prefix{}
}

// leaseGrant is the etcd lease the new key of one Acquire is attached to:
// a live lease of ours to reuse when there is one, else one granted at
// the first attempt and kept over lost races (not a grant and a revoke
// per attempt), revoked when no key took it.
type leaseGrant struct {
	reuse   int64 // a lease of ours, tried first; 0 when none or gone
	checked bool  // reuse was found alive
	id      int64 // granted by us; 0 until then
	used    bool  // a key took id
	ttl     time.Duration
}

// lease returns the etcd lease to attach a new key to, and its TTL.
func (g *leaseGrant) lease(ctx context.Context, m *Manager) (int64, time.Duration, error) {
	if g.reuse != 0 {
		if g.checked {
			return g.reuse, g.ttl, nil
		}
		ttl, err := m.keepAliveOnce(ctx, g.reuse)
		if err == nil {
			g.checked, g.ttl = true, ttl
			return g.reuse, ttl, nil
		}
		g.reuse = 0
	}
	if g.id == 0 {
		var grant *clientv3.LeaseGrantResponse
		if err := m.rpc(ctx, "grant lease", func(ctx context.Context) (err error) {
			grant, err = m.cli.Grant(ctx, int64(m.opt.TTL/time.Second))
			return err
		}); err != nil {
			return 0, 0, err
		}
		g.id, g.ttl = int64(grant.ID), time.Duration(grant.TTL)*time.Second
	}
	return g.id, g.ttl, nil
}

// release revokes the lease granted here unless a key took it: never
// leave an etcd lease without a key behind.
func (g *leaseGrant) release(ctx context.Context, m *Manager) {
	if g.id != 0 && !g.used {
		m.revoke(ctx, g.id)
	}
	g.id, g.used = 0, false
	g.checked = false
}

// creation is a key create writes.
type creation struct {
	v4, v6 netip.Prefix
	attrs  subnet.LeaseAttrs
	rev    int64 // revision of the listing the subnets were picked from
	// replace, when set, is our old key (an incompatible lease): it is
	// deleted in the same transaction, provided nobody changed it since
	// the listing.
	replace *held
}

// create writes a new lease key attached to g's etcd lease. The
// transaction succeeds only if the key does not exist and no key that
// could overlap it changed since the listing at c.rev (overlapGuards), so
// a subnet that overlaps a lease written meanwhile (whatever its length)
// can never be handed out.
func (m *Manager) create(ctx context.Context, c creation, g *leaseGrant) (held, error) {
	if !c.v4.IsValid() && !c.v6.IsValid() {
		return held{}, fmt.Errorf("no subnet to create")
	}
	l := held{Lease: subnet.Lease{Subnet: c.v4, IPv6Subnet: c.v6, Attrs: c.attrs}}
	val, err := encodeValue(c.attrs)
	if err != nil {
		return held{}, err
	}
	key := m.KeyFor(l.Lease)
	id, ttl, err := g.lease(ctx, m)
	if err != nil {
		return held{}, err
	}
	conds := m.overlapGuards(c.v4, c.v6, c.rev)
	var ops []clientv3.Op
	if c.replace != nil {
		oldKey := m.KeyFor(c.replace.Lease)
		conds = append(conds, clientv3.Compare(clientv3.ModRevision(oldKey), "=", c.replace.rev))
		if oldKey != key {
			ops = append(ops, clientv3.OpDelete(oldKey))
			conds = append(conds, clientv3.Compare(clientv3.Version(key), "=", 0))
		}
	} else {
		conds = append(conds, clientv3.Compare(clientv3.Version(key), "=", 0))
	}
	ops = append(ops, clientv3.OpPut(key, string(val), clientv3.WithLease(clientv3.LeaseID(id))))
	var txn *clientv3.TxnResponse
	if err := m.rpc(ctx, "create "+key, func(ctx context.Context) (err error) {
		txn, err = m.cli.Txn(ctx).If(conds...).Then(ops...).Commit()
		return err
	}); err != nil {
		return held{}, err
	}
	if !txn.Succeeded {
		return held{}, errTryAgain
	}
	if id == g.id {
		g.used = true
	}
	l.id = id
	l.rev = txn.Header.Revision
	l.Expiration = time.Now().Add(ttl)
	return l, nil
}

// adopt takes over our existing lease key: its etcd lease is refreshed
// (not replaced, so no etcd lease is ever orphaned) and its value updated
// when our attributes changed. A reservation (no etcd lease) stays one.
func (m *Manager) adopt(ctx context.Context, own held, attrs subnet.LeaseAttrs) (held, error) {
	key := m.KeyFor(own.Lease)
	if !own.isReservation() {
		ttl, err := m.keepAliveOnce(ctx, own.id)
		if err != nil {
			return held{}, err
		}
		own.Expiration = time.Now().Add(ttl)
	}
	// The stored value as it decodes (a udp lease of our versions before
	// issue 19 still says "BackendType":"udp"), against what we write.
	cur, _ := subnet.EncodeAttrs(own.Attrs)
	want, err := encodeValue(attrs)
	if err != nil {
		return held{}, err
	}
	if string(cur) != string(want) {
		opts := []clientv3.OpOption{}
		if !own.isReservation() {
			opts = append(opts, clientv3.WithLease(clientv3.LeaseID(own.id)))
		}
		var txn *clientv3.TxnResponse
		if err := m.rpc(ctx, "update "+key, func(ctx context.Context) (err error) {
			txn, err = m.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", own.rev)).
				Then(clientv3.OpPut(key, string(want), opts...)).Commit()
			return err
		}); err != nil {
			return held{}, err
		}
		if !txn.Succeeded {
			return held{}, errTryAgain
		}
		own.rev = txn.Header.Revision
		m.log.Info("Updated lease attributes", "subnet", own.String(), "value", string(want))
	}
	own.Attrs = attrs
	return own, nil
}

// encodeValue is the value we write for attrs: upstream's bytes, with no
// BackendType for udp. Upstream's udp backend writes none, and a node of
// ours must look the same to its peers (kube mode and the v2 store drop it
// too); peers read both forms as udp.
func encodeValue(a subnet.LeaseAttrs) ([]byte, error) {
	if a.BackendType == "udp" {
		a.BackendType = ""
	}
	return subnet.EncodeAttrs(a)
}

// revoke drops an etcd lease of ours that holds no key, even when ctx has
// ended; a failure only leaves it to expire.
func (m *Manager) revoke(ctx context.Context, id int64) {
	m.rpc(context.WithoutCancel(ctx), "revoke unused lease", func(ctx context.Context) error {
		_, err := m.cli.Revoke(ctx, clientv3.LeaseID(id))
		return err
	})
}

// errLeaseGone means the etcd lease expired or was revoked.
var errLeaseGone = errors.New("etcd lease not found")

func (m *Manager) keepAliveOnce(ctx context.Context, id int64) (time.Duration, error) {
	var resp *clientv3.LeaseKeepAliveResponse
	err := m.rpc(ctx, "renew lease", func(ctx context.Context) (err error) {
		resp, err = m.cli.KeepAliveOnce(ctx, clientv3.LeaseID(id))
		return err
	})
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return 0, errLeaseGone
	}
	if err != nil {
		return 0, err
	}
	if resp.TTL <= 0 {
		return 0, errLeaseGone
	}
	return time.Duration(resp.TTL) * time.Second, nil
}
