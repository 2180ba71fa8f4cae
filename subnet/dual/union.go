package dual

import (
	"bytes"
	"context"
	"log/slog"
	"sync"

	"github.com/flannelng/flannel/subnet"
)

// union is the migration mode's peer view (spec 8.1 "View"): two
// independent sources, the v2 store and the v3 keyspace, each with its own
// cursor, and the data plane follows their union. A subnet stays while
// either source holds it and goes only when both dropped it. The same
// subnet with the same public address in both is one peer; with different
// addresses (a split claim) the v2 record wins, because every v0.11 node
// routes by it, and the conflict is logged once.
type union struct {
	v2, v3 subnet.PeerSource
	log    *slog.Logger

	mu      sync.Mutex
	in2     map[string]subnet.Lease
	in3     map[string]subnet.Lease
	synced2 bool
	synced3 bool
	set     *subnet.LeaseSet
	// split holds the split claims logged already, by key, as "v2ip v3ip".
	split   map[string]string
	updated chan struct{}
}

func newUnion(v2, v3 subnet.PeerSource, log *slog.Logger) *union {
	return &union{
		v2: v2, v3: v3, log: log,
		in2: map[string]subnet.Lease{}, in3: map[string]subnet.Lease{},
		set: subnet.NewLeaseSet(), split: map[string]string{},
		updated: make(chan struct{}, 1),
	}
}

var _ subnet.PeerSource = (*union)(nil)

// Run runs both sources and folds their changes into the union until ctx
// ends.
func (u *union) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range []subnet.PeerSource{u.v2, u.v3} {
		wg.Add(1)
		go func() { defer wg.Done(); s.Run(ctx) }()
	}
	defer wg.Wait()
	u.pull(true)
	u.pull(false)
	for {
		select {
		case <-ctx.Done():
			return
		case <-u.v2.Updated():
			u.pull(true)
		case <-u.v3.Updated():
			u.pull(false)
		}
	}
}

// pull takes what changed in one source and recomputes the union for the
// keys it touched.
func (u *union) pull(fromV2 bool) {
	src, in := u.v3, u.in3
	if fromV2 {
		src, in = u.v2, u.in2
	}
	gone, came, all := src.Changes()
	var touched map[string]struct{}
	if all {
		leases, synced := src.TakeAll()
		if !synced {
			return
		}
		u.mu.Lock()
		defer u.mu.Unlock()
		if fromV2 {
			u.synced2 = true
		} else {
			u.synced3 = true
		}
		touched = make(map[string]struct{}, len(in)+len(leases))
		for k := range in {
			touched[k] = struct{}{}
		}
		clear(in)
		for _, l := range leases {
			in[l.Key()] = l
			touched[l.Key()] = struct{}{}
		}
	} else {
		u.mu.Lock()
		defer u.mu.Unlock()
		touched = make(map[string]struct{}, len(gone)+len(came))
		for _, l := range gone {
			delete(in, l.Key())
			touched[l.Key()] = struct{}{}
		}
		for _, l := range came {
			in[l.Key()] = l
			touched[l.Key()] = struct{}{}
		}
	}
	changed := false
	for k := range touched {
		changed = u.recompute(k) || changed
	}
	if !u.set.Synced() && u.synced2 && u.synced3 {
		u.set.MarkSynced()
		changed = true
	}
	if changed {
		select {
		case u.updated <- struct{}{}:
		default:
		}
	}
}

// recompute sets key's union entry from the two sources; it reports
// whether the entry changed. Called with mu held.
func (u *union) recompute(key string) bool {
	l2, has2 := u.in2[key]
	l3, has3 := u.in3[key]
	var want subnet.Lease
	switch {
	case has2 && has3 && l2.Attrs.PublicIP != l3.Attrs.PublicIP:
		// A split claim: there is no atomicity across keyspaces, so a
		// v0.11 node can hand out a subnet held only in v3 (spec 8.4).
		pair := l2.Attrs.PublicIP.String() + " " + l3.Attrs.PublicIP.String()
		if u.split[key] != pair {
			u.split[key] = pair
			u.log.Error("Subnet claimed by different nodes in the etcd v2 store and in v3; routing to the v2 owner, which v0.11 nodes route to. Remove the stale claim",
				"subnet", l2.Subnet.String(), "v2PublicIP", l2.Attrs.PublicIP.String(), "v3PublicIP", l3.Attrs.PublicIP.String())
		}
		want = l2
	case has3:
		// The same node in both (a migrated or both-mode node): the v3
		// record, so that the peer does not change when the node's v2
		// copy lapses after it moved to v3 mode.
		delete(u.split, key)
		want = l3
	case has2:
		delete(u.split, key)
		want = l2
	default:
		delete(u.split, key)
		return u.set.Delete(key)
	}
	if cur, ok := u.set.Get(key); ok && sameLease(cur, want) {
		return false
	}
	u.set.Put(key, want)
	return true
}

func sameLease(a, b subnet.Lease) bool {
	if a.Subnet != b.Subnet || a.IPv6Subnet != b.IPv6Subnet || !a.Expiration.Equal(b.Expiration) {
		return false
	}
	x, err1 := subnet.EncodeAttrs(a.Attrs)
	y, err2 := subnet.EncodeAttrs(b.Attrs)
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}

func (u *union) Updated() <-chan struct{} { return u.updated }

func (u *union) TakeAll() ([]subnet.Lease, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.set.TakeAll()
}

func (u *union) Changes() (gone, came []subnet.Lease, all bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.set.Changes()
}
