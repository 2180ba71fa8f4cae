package etcdv2

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	v2 "github.com/flannelng/flannel/pkg/etcdv2"
	"github.com/flannelng/flannel/subnet"
)

// ErrTaken is wrapped by AcquireSubnet when another node holds the subnet.
var ErrTaken = errors.New("subnet held by another node in etcd's v2 store")

// errTryAgain means another writer got in between; list again and retry.
var errTryAgain = errors.New("lease state changed concurrently")

// held is our lease as we last wrote it: its key, the value and the
// modifiedIndex of that write (what Retract compares against and Keep's
// watch continues after). Lease.Expiration is zero for a reservation.
type held struct {
	lease subnet.Lease
	key   string
	value string
	index uint64
}

// heldFrom is what a successful write of our lease returned.
func heldFrom(l subnet.Lease, key, value string, n *v2.Node) held {
	l.Expiration = time.Time{}
	if n.Expiration != nil {
		l.Expiration = *n.Expiration
	}
	return held{lease: l, key: key, value: value, index: n.ModifiedIndex}
}

// hold remembers our lease for Keep, KeepCopy and Retract.
func (m *Manager) hold(h held) {
	m.mu.Lock()
	m.own = h
	delete(m.retracted, h.key)
	m.mu.Unlock()
}

// heldFor returns what we know of own: ok is false when we did not write
// it (or not last).
func (m *Manager) heldFor(own subnet.Lease) (held, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.own.index != 0 && m.own.lease.Subnet == own.Subnet.Masked() {
		return m.own, true
	}
	return held{}, false
}

func (m *Manager) isRetracted(key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.retracted[key]
}

// Acquire gets our lease as v0.11 does (spec 3), minus its bugs (spec 7):
// the lease advertising our PublicIP when it fits the config (rewritten
// with our value by an unconditional set; a reservation stays one), else
// the subnet of the previous subnet.env when it fits and no lease overlaps
// it, else a free subnet picked at random among the first free ones,
// created with prevExist=false. A lost race is retried at once with a
// short jitter, other failures with back-off, until ctx ends; onRetry
// (optional) sees each failure. Options.Avoid's leases count as taken.
//
// The first attempt after Start uses Start's listing.
func (m *Manager) Acquire(ctx context.Context, cfg *subnet.Config, attrs subnet.LeaseAttrs, prev subnet.Env, onRetry func(error)) (subnet.Lease, error) {
	if err := checkConfig(cfg); err != nil {
		return subnet.Lease{}, err
	}
	value, err := m.encode(attrs)
	if err != nil {
		return subnet.Lease{}, err
	}
	var first *listing
	m.mu.Lock()
	if m.started && !m.startUsed {
		l := m.start
		first, m.startUsed = &l, true
	}
	m.mu.Unlock()

	delay := 50 * time.Millisecond
	lastFull := "" // a full network is logged once per distinct message
	for {
		h, err := m.acquireOnce(ctx, first, cfg, attrs, value, prev)
		first = nil // retries read the leases again
		if err == nil {
			m.hold(h)
			return h.lease, nil
		}
		if ctx.Err() != nil {
			return subnet.Lease{}, ctx.Err()
		}
		max := 5 * time.Second
		var full *subnet.ErrNoFreeSubnet
		switch {
		case errors.Is(err, errTryAgain):
			// Concurrent joiners: short, jittered waits spread them out
			// and none waits long. v0.11 gave up after 10.
			max = 500 * time.Millisecond
			m.log.Debug("lease race lost, retrying", "err", err)
		case errors.As(err, &full):
			if msg := err.Error(); msg != lastFull {
				m.log.Error("Failed to acquire lease; retrying until a subnet is free", "err", err)
				lastFull = msg
			}
		default:
			m.log.Warn("Failed to acquire lease, retrying", "err", err)
		}
		if onRetry != nil {
			onRetry(err)
		}
		m.rndM.Lock()
		wait := delay/2 + time.Duration(m.rnd.Int64N(int64(delay)))
		m.rndM.Unlock()
		if !sleep(ctx, wait) {
			return subnet.Lease{}, ctx.Err()
		}
		delay = min(2*delay, max)
	}
}

func (m *Manager) acquireOnce(ctx context.Context, first *listing, cfg *subnet.Config, attrs subnet.LeaseAttrs, value string, prev subnet.Env) (held, error) {
	var l listing
	if first != nil {
		l = *first
	} else {
		var err error
		if l, err = m.list(ctx); err != nil {
			return held{}, err
		}
	}
	// subnet.FindOwn for an IPv4 network, skipping a claim we retracted
	// (its key lingers for a second with ttl=1).
	own := -1
	for i, lease := range l.leases {
		if attrs.PublicIP.IsValid() && lease.Attrs.PublicIP == attrs.PublicIP && !m.isRetracted(l.keys[i]) {
			own = i
			break
		}
	}
	others := l.leases
	if own >= 0 {
		mine := l.leases[own]
		if cfg.CompatibleV4(mine.Subnet) {
			m.log.Info(fmt.Sprintf("Found lease (%v) for current IP (%v), reusing", mine.Subnet, attrs.PublicIP))
			return m.rewrite(ctx, l.keys[own], mine, attrs, value)
		}
		m.log.Warn(fmt.Sprintf("Found lease (%v) for current IP (%v) but not compatible with current config, deleting it", mine.Subnet, attrs.PublicIP))
		key := l.keys[own]
		if _, err := m.request(ctx, "delete "+key, func(ctx context.Context) (*v2.Response, error) {
			// Unconditional, as v0.11's: a conditional delete's event
			// has no value and wedges v0.11 watchers (spec 2.4).
			return m.cli.Delete(ctx, key, v2.DeleteOptions{})
		}); err != nil && !v2.IsKeyNotFound(err) {
			return held{}, err
		}
		others = make([]subnet.Lease, 0, len(l.leases))
		for i, lease := range l.leases {
			if i != own {
				others = append(others, lease)
			}
		}
	}
	taken := subnet.Taken(others)
	n := len(others)
	if m.opt.Avoid != nil {
		for _, a := range m.opt.Avoid() {
			if attrs.PublicIP.IsValid() && a.Attrs.PublicIP == attrs.PublicIP {
				continue // ours, in the other keyspace
			}
			taken = append(taken, subnet.Taken([]subnet.Lease{a})...)
			n++
		}
	}

	var want netip.Prefix
	if prev.Subnet.IsValid() {
		want = m.previous(cfg.CompatibleV4(prev.Subnet.Masked()), prev.Subnet.Masked(), taken)
	}
	picked := false
	if !want.IsValid() {
		m.log.Info(fmt.Sprintf("Picking subnet in range %s ... %s", cfg.SubnetMin, cfg.SubnetMax))
		m.rndM.Lock()
		p, err := cfg.PickFamily(false, taken, n, m.rnd)
		m.rndM.Unlock()
		if err != nil {
			return held{}, err
		}
		want, picked = p, true
	}
	h, err := m.create(ctx, want, attrs, value)
	if v2.IsNodeExist(err) {
		return held{}, fmt.Errorf("%w: %w", errTryAgain, err)
	}
	if err == nil && picked {
		m.log.Info(fmt.Sprintf("Allocated lease (%v) to current node (%v) ", want, attrs.PublicIP))
	}
	return h, err
}

// previous returns p, the subnet of the previous subnet.env, when it is
// compatible and no lease overlaps it.
func (m *Manager) previous(compatible bool, p netip.Prefix, taken []netip.Prefix) netip.Prefix {
	switch {
	case !compatible:
		m.log.Info(fmt.Sprintf("Found previously leased subnet (%v) that is not compatible with the Etcd network config, ignoring", p))
	case subnet.Overlaps(p, taken):
		// v0.11 overwrote the holder's key with ours (spec 3 step 3): two
		// nodes would then route the same subnet.
		m.log.Warn("Previously leased subnet is now held by another node, not reusing it", "subnet", p.String())
	default:
		m.log.Info(fmt.Sprintf("Found previously leased subnet (%v), reusing", p))
		return p
	}
	return netip.Prefix{}
}

// create writes a new lease key with prevExist=false and the TTL: a taken
// key fails with code 105 (v2.IsNodeExist).
func (m *Manager) create(ctx context.Context, p netip.Prefix, attrs subnet.LeaseAttrs, value string) (held, error) {
	key := m.KeyFor(p)
	resp, err := m.request(ctx, "create "+key, func(ctx context.Context) (*v2.Response, error) {
		return m.cli.Create(ctx, key, value, m.opt.TTL)
	})
	if err != nil {
		return held{}, err
	}
	return heldFrom(subnet.Lease{Subnet: p, Attrs: attrs}, key, value, resp.Node), nil
}

// rewrite puts our value into our existing key with an unconditional set,
// as v0.11 does at start: with the TTL, or none for a reservation, which
// stays one (spec 1.3).
func (m *Manager) rewrite(ctx context.Context, key string, mine subnet.Lease, attrs subnet.LeaseAttrs, value string) (held, error) {
	ttl := m.opt.TTL
	if mine.Expiration.IsZero() {
		ttl = 0
	}
	resp, err := m.request(ctx, "set "+key, func(ctx context.Context) (*v2.Response, error) {
		return m.cli.Set(ctx, key, value, v2.SetOptions{TTL: ttl})
	})
	if err != nil {
		return held{}, err
	}
	return heldFrom(subnet.Lease{Subnet: mine.Subnet, Attrs: attrs}, key, value, resp.Node), nil
}

// AcquireSubnet claims exactly want in the v2 store, for the migration
// mode (our v3 subnet claimed in v2 too): created with prevExist=false, or,
// when the key already advertises our PublicIP, rewritten as Acquire
// reuses a lease. A key of another node is an error wrapping ErrTaken.
// It does not retry other errors; the caller does.
func (m *Manager) AcquireSubnet(ctx context.Context, cfg *subnet.Config, attrs subnet.LeaseAttrs, want netip.Prefix) (subnet.Lease, error) {
	if err := checkConfig(cfg); err != nil {
		return subnet.Lease{}, err
	}
	want = want.Masked()
	if !cfg.CompatibleV4(want) {
		return subnet.Lease{}, fmt.Errorf("claim %v in etcd v2: not a /%d subnet in %v ... %v", want, cfg.SubnetLen, cfg.SubnetMin, cfg.SubnetMax)
	}
	value, err := m.encode(attrs)
	if err != nil {
		return subnet.Lease{}, err
	}
	key := m.KeyFor(want)
	for {
		h, err := m.create(ctx, want, attrs, value)
		if err == nil {
			m.hold(h)
			m.log.Info(fmt.Sprintf("Allocated lease (%v) to current node (%v) ", want, attrs.PublicIP))
			return h.lease, nil
		}
		if !v2.IsNodeExist(err) {
			return subnet.Lease{}, err
		}
		resp, err := m.request(ctx, "get "+key, func(ctx context.Context) (*v2.Response, error) {
			return m.cli.Get(ctx, key, false)
		})
		if v2.IsKeyNotFound(err) {
			continue // gone between the two requests
		}
		if err != nil {
			return subnet.Lease{}, err
		}
		cur, err := parseNode(m.dir, resp.Node)
		if err != nil {
			return subnet.Lease{}, fmt.Errorf("%w: %s holds a value we cannot read: %w", ErrTaken, key, err)
		}
		if cur.Attrs.PublicIP != attrs.PublicIP {
			return subnet.Lease{}, fmt.Errorf("%w: %s is held by %v (we are %v)", ErrTaken, key, cur.Attrs.PublicIP, attrs.PublicIP)
		}
		m.log.Info(fmt.Sprintf("Found lease (%v) for current IP (%v), reusing", want, attrs.PublicIP))
		h, err = m.rewrite(ctx, key, cur, attrs, value)
		if err != nil {
			return subnet.Lease{}, err
		}
		m.hold(h)
		return h.lease, nil
	}
}

// Retract gives our v2 claim on own's subnet up without wedging v0.11
// watchers (spec 8.1): a compare-and-swap on the index of our last write
// with ttl=1 and the same value, so v0.11 nodes see the key expire a
// second later; if the key changed since (code 101) and still advertises
// our PublicIP, a plain DELETE. Never a conditional delete, whose event has
// no value (spec 2.4). A key that is gone or now another node's is left
// alone. Stop Keep/KeepCopy of own first; should one still run, it stops
// (returning nil) instead of re-creating the key.
func (m *Manager) Retract(ctx context.Context, own subnet.Lease) error {
	key := m.KeyFor(own.Subnet)
	m.mu.Lock()
	m.retracted[key] = true
	h, ok := m.own, m.own.index != 0 && m.own.key == key
	if ok {
		m.own = held{}
	}
	m.mu.Unlock()
	if ok {
		_, err := m.request(ctx, "retract "+key, func(ctx context.Context) (*v2.Response, error) {
			return m.cli.Set(ctx, key, h.value, v2.SetOptions{TTL: time.Second, PrevIndex: h.index})
		})
		switch {
		case err == nil:
			m.log.Info("Retracted our v2 claim; it expires in a second", "subnet", own.Subnet.String())
			return nil
		case v2.IsKeyNotFound(err):
			return nil
		case !v2.IsCompareFailed(err):
			return fmt.Errorf("retract our v2 claim on %v: %w", own.Subnet, err)
		}
	}
	// The key changed since our last write (a renewal by someone else,
	// another node's takeover), or we never wrote it.
	resp, err := m.request(ctx, "get "+key, func(ctx context.Context) (*v2.Response, error) {
		return m.cli.Get(ctx, key, false)
	})
	if v2.IsKeyNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("retract our v2 claim on %v: %w", own.Subnet, err)
	}
	if cur, err := parseNode(m.dir, resp.Node); err != nil || cur.Attrs.PublicIP != own.Attrs.PublicIP {
		m.log.Warn("Not retracting a v2 key that is no longer ours", "key", key, "value", resp.Node.Value)
		return nil
	}
	_, err = m.request(ctx, "delete "+key, func(ctx context.Context) (*v2.Response, error) {
		return m.cli.Delete(ctx, key, v2.DeleteOptions{})
	})
	if err != nil && !v2.IsKeyNotFound(err) {
		return fmt.Errorf("retract our v2 claim on %v: %w", own.Subnet, err)
	}
	m.log.Info("Retracted our v2 claim (deleted)", "subnet", own.Subnet.String())
	return nil
}
