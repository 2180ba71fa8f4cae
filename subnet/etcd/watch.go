package etcd

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/flannelng/flannel/subnet"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Watcher keeps the complete current set of leases: an initial listing,
// then a watch from the next revision. After compaction it re-lists; after
// a lost connection it resumes after the last event it applied. Every
// Options.Relist it compares the set with etcd's, as a safety net against
// a missed event. Consumers read the whole set (desired state), never a
// stream of events to replay, and bursts of changes coalesce into one
// notification.
type Watcher struct {
	m       *Manager
	updated chan struct{}

	mu  sync.Mutex // guards the fields below
	set *subnet.LeaseSet
	// rev is the revision the set reflects: every change up to it is
	// applied, none after it. The watch resumes at rev+1.
	rev int64
}

// NewWatcher returns a Watcher; call Run.
func (m *Manager) NewWatcher() *Watcher {
	return &Watcher{m: m, updated: make(chan struct{}, 1), set: subnet.NewLeaseSet()}
}

// NewWatcherFrom returns a Watcher that starts from a listing the caller
// already made: Run watches from the revision after it instead of listing
// again, so a daemon reads the leases once at start.
func (m *Manager) NewWatcherFrom(l Listing) *Watcher {
	w := m.NewWatcher()
	w.set.Reset(m.byKey(l.Leases))
	w.rev = l.Revision
	w.notify()
	return w
}

// byKey maps leases by their keys, which are the keys etcd holds them
// under: a key that is not the one KeyFor builds is no lease (decode).
func (m *Manager) byKey(leases []subnet.Lease) map[string]subnet.Lease {
	out := make(map[string]subnet.Lease, len(leases))
	for _, l := range leases {
		out[m.KeyFor(l)] = l
	}
	return out
}

func (w *Watcher) lock()   { w.mu.Lock() }
func (w *Watcher) unlock() { w.mu.Unlock() }

// Updated fires (coalesced) after the lease set changed.
func (w *Watcher) Updated() <-chan struct{} { return w.updated }

// Leases returns a copy of the current lease set and whether a first
// listing has completed.
func (w *Watcher) Leases() ([]subnet.Lease, bool) {
	w.lock()
	defer w.unlock()
	return w.set.All()
}

// TakeAll is Leases for a consumer that also uses Changes: the changes
// pending so far are included in the set returned, so Changes forgets
// them.
func (w *Watcher) TakeAll() ([]subnet.Lease, bool) {
	w.lock()
	defer w.unlock()
	return w.set.TakeAll()
}

// Changes returns what changed since the last TakeAll or Changes (see
// subnet.LeaseSet).
func (w *Watcher) Changes() (gone, came []subnet.Lease, all bool) {
	w.lock()
	defer w.unlock()
	return w.set.Changes()
}

// Revision is the etcd revision the set reflects.
func (w *Watcher) Revision() int64 {
	w.lock()
	defer w.unlock()
	return w.rev
}

func (w *Watcher) notify() {
	select {
	case w.updated <- struct{}{}:
	default:
	}
}

// Run lists and watches until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	m := w.m
	backoff := 100 * time.Millisecond
	sleep := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		if backoff *= 2; backoff > 5*time.Second {
			backoff = 5 * time.Second
		}
		return true
	}
	var relist *time.Timer
	if m.opt.Relist > 0 {
		relist = time.NewTimer(m.relistIn())
		defer relist.Stop()
	}
	w.lock()
	needList := !w.set.Synced()
	w.unlock()
	for ctx.Err() == nil {
		if needList {
			leases, rev, err := m.List(ctx)
			if err != nil {
				if !sleep() {
					return
				}
				continue
			}
			w.lock()
			w.set.Reset(m.byKey(leases)) // consumers take the new set whole
			w.rev = rev
			w.unlock()
			w.notify()
			needList = false
			m.log.Debug("watching subnets", "fromRevision", rev+1, "leases", len(leases))
		}
		watched := time.Now()
		wctx, cancel := context.WithCancel(ctx)
		ch := m.cli.Watch(clientv3.WithRequireLeader(wctx), m.SubnetsPrefix(), clientv3.WithPrefix(),
			clientv3.WithRev(w.Revision()+1), clientv3.WithProgressNotify())
		end := w.consume(ctx, ch, relist)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if end == watchRelisted {
			continue // the set is a fresh listing's: watch on from it
		}
		needList = end == watchCompacted
		if m.opt.OnWatchRestart != nil {
			m.opt.OnWatchRestart(needList)
		}
		if time.Since(watched) > 10*time.Second {
			// A watch that held for a while was healthy: the next
			// failure starts a fresh back-off instead of the 5 s
			// reached over the daemon's lifetime.
			backoff = 100 * time.Millisecond
		}
		if !needList {
			m.log.Info("etcd watch for " + m.SubnetsPrefix() + " closed, reconnecting")
			if !sleep() {
				return
			}
		} else {
			backoff = 100 * time.Millisecond
		}
	}
}

// relistIn is Options.Relist give or take a tenth, so that the nodes of a
// fleet started together do not list together.
func (m *Manager) relistIn() time.Duration {
	d := m.opt.Relist
	m.rndM.Lock()
	defer m.rndM.Unlock()
	return d - d/10 + time.Duration(m.rnd.Int64N(int64(d/5)+1))
}

// watchEnd is why consume returned.
type watchEnd int

const (
	watchLost      watchEnd = iota // closed or failed: resume after rev
	watchCompacted                 // rev was compacted away: list again
	watchRelisted                  // the re-list replaced the set: watch again from its revision
)

// consume applies watch responses until the watch ends, and re-lists when
// relist (nil: never) fires.
func (w *Watcher) consume(ctx context.Context, ch clientv3.WatchChan, relist *time.Timer) watchEnd {
	m := w.m
	var tick <-chan time.Time
	if relist != nil {
		tick = relist.C
	}
	for {
		var resp clientv3.WatchResponse
		var ok bool
		select {
		case <-tick:
			relisted := w.recheck(ctx)
			relist.Reset(m.relistIn())
			if relisted {
				return watchRelisted
			}
			continue
		case resp, ok = <-ch:
		}
		if !ok {
			return watchLost
		}
		if resp.CompactRevision != 0 || errors.Is(resp.Err(), rpctypes.ErrCompacted) {
			m.log.Info("etcd watch fell behind compaction horizon, re-listing and resuming", "prefix", m.SubnetsPrefix(), "compactRevision", resp.CompactRevision)
			return watchCompacted
		}
		if err := resp.Err(); err != nil {
			m.log.Debug("etcd watch error", "err", err)
			return watchLost
		}
		if resp.IsProgressNotify() {
			// Sent only to a watcher that has every event up to the
			// header's revision: the set reflects it.
			w.lock()
			w.rev = max(w.rev, resp.Header.Revision)
			w.unlock()
			continue
		}
		if len(resp.Events) == 0 {
			continue
		}
		w.lock()
		for _, ev := range resp.Events {
			key := string(ev.Kv.Key)
			if ev.Type == clientv3.EventTypeDelete {
				w.set.Delete(key)
				m.forgetBad(key)
			} else if l, err := m.decode(key, ev.Kv.Value); err != nil {
				// A malformed write replaces whatever the key held: it must
				// not keep routing to the old value.
				w.set.Delete(key)
			} else {
				w.set.Put(key, l)
			}
			// Not the header's revision: etcd stamps each batch of a
			// watch catching up (1,000 revisions at most) with its current
			// revision, and resuming after that would skip the rest.
			w.rev = ev.Kv.ModRevision
		}
		w.unlock()
		w.notify()
	}
}

// recheck is the periodic safety net against a missed watch event: it
// lists the leases at the revision the set reflects, so that a difference
// is one the watch missed (logged), not one still on its way, and makes
// the set that listing, recording each difference as a change. When that
// revision was compacted it takes the current listing instead and reports
// relisted: the watch must then resume after the listing.
func (w *Watcher) recheck(ctx context.Context) (relisted bool) {
	m := w.m
	rev := w.Revision()
	l, err := m.snapshot(ctx, clientv3.WithRev(rev))
	if errors.Is(err, rpctypes.ErrCompacted) {
		relisted = true
		l, err = m.Snapshot(ctx)
	}
	if err != nil {
		m.log.Debug("periodic re-list of the leases failed", "err", err)
		return false
	}
	w.lock()
	n := w.set.Sync(m.byKey(l.Leases))
	if relisted {
		w.rev = l.Revision
	}
	w.unlock()
	if n == 0 {
		return relisted
	}
	w.notify()
	if !relisted {
		m.log.Warn("Periodic re-list found leases the watch missed; the lease set is repaired", "prefix", m.SubnetsPrefix(), "revision", rev, "changed", n)
	}
	return relisted
}
