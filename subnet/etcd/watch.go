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
// a lost connection it resumes from the last revision seen. Consumers read
// the whole set (desired state), never a stream of events to replay, and
// bursts of changes coalesce into one notification.
type Watcher struct {
	m       *Manager
	updated chan struct{}

	mu     sync.Mutex // guards the fields below
	leases map[string]subnet.Lease
	rev    int64
	synced bool
	// pending holds, for each key changed since the consumer last took
	// the set (TakeAll) or the changes (Changes), what the key held then.
	pending map[string]prior
	// overflow says the changes are not worth listing one by one (a
	// re-list, or more changes than a pass over everything costs).
	overflow bool
}

// prior is a key's lease as the consumer last saw it.
type prior struct {
	lease subnet.Lease
	had   bool
}

// maxPending bounds the changes kept one by one; beyond it (or an eighth
// of the set, if more) the consumer is told to take the whole set.
const maxPending = 512

// NewWatcher returns a Watcher; call Run.
func (m *Manager) NewWatcher() *Watcher {
	return &Watcher{m: m, updated: make(chan struct{}, 1), leases: map[string]subnet.Lease{}, pending: map[string]prior{}}
}

// NewWatcherFrom returns a Watcher that starts from a listing the caller
// already made: Run watches from the revision after it instead of listing
// again, so a daemon reads the leases once at start.
func (m *Manager) NewWatcherFrom(l Listing) *Watcher {
	w := m.NewWatcher()
	for _, lease := range l.Leases {
		w.leases[m.KeyFor(lease)] = lease
	}
	w.rev, w.synced = l.Revision, true
	w.notify()
	return w
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
	return w.copyLocked(), w.synced
}

// copyLocked copies the lease set; call with the lock held.
func (w *Watcher) copyLocked() []subnet.Lease {
	out := make([]subnet.Lease, 0, len(w.leases))
	for _, l := range w.leases {
		out = append(out, l)
	}
	return out
}

// TakeAll is Leases for a consumer that also uses Changes: the changes
// pending so far are included in the set returned, so Changes forgets
// them.
func (w *Watcher) TakeAll() ([]subnet.Lease, bool) {
	w.lock()
	defer w.unlock()
	clear(w.pending)
	w.overflow = false
	return w.copyLocked(), w.synced
}

// Changes returns what changed since the last TakeAll or Changes: gone are
// the leases as they were then (for deleted and replaced keys), came the
// current versions of new and replaced keys. all is true when the
// consumer must call TakeAll instead: before the first listing, after a
// re-list, or after more changes than are worth listing.
func (w *Watcher) Changes() (gone, came []subnet.Lease, all bool) {
	w.lock()
	defer w.unlock()
	if !w.synced || w.overflow {
		return nil, nil, true
	}
	for k, p := range w.pending {
		if p.had {
			gone = append(gone, p.lease)
		}
		if l, ok := w.leases[k]; ok {
			came = append(came, l)
		}
	}
	clear(w.pending)
	return gone, came, false
}

// change records that key is about to change; call with the lock held.
func (w *Watcher) change(key string) {
	if w.overflow {
		return
	}
	if _, seen := w.pending[key]; seen {
		return // the consumer's view is the one recorded first
	}
	if len(w.pending) >= max(maxPending, len(w.leases)/8) {
		w.overflow = true
		clear(w.pending)
		return
	}
	l, had := w.leases[key]
	w.pending[key] = prior{l, had}
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
	w.lock()
	needList := !w.synced
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
			set := make(map[string]subnet.Lease, len(leases))
			for _, l := range leases {
				set[m.KeyFor(l)] = l
			}
			w.lock()
			w.leases, w.rev, w.synced = set, rev, true
			w.overflow = true // consumers take the new set whole
			clear(w.pending)
			w.unlock()
			w.notify()
			needList = false
			m.log.Debug("watching subnets", "fromRevision", rev+1, "leases", len(leases))
		}
		watched := time.Now()
		wctx, cancel := context.WithCancel(ctx)
		ch := m.cli.Watch(clientv3.WithRequireLeader(wctx), m.SubnetsPrefix(), clientv3.WithPrefix(), clientv3.WithRev(w.Revision()+1))
		needList = w.consume(ch)
		cancel()
		if ctx.Err() != nil {
			return
		}
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

// consume applies watch responses until the channel ends; it reports
// whether a re-list is needed (compaction).
func (w *Watcher) consume(ch clientv3.WatchChan) (relist bool) {
	m := w.m
	for resp := range ch {
		if resp.CompactRevision != 0 || errors.Is(resp.Err(), rpctypes.ErrCompacted) {
			m.log.Info("etcd watch fell behind compaction horizon, re-listing and resuming", "prefix", m.SubnetsPrefix(), "compactRevision", resp.CompactRevision)
			return true
		}
		if err := resp.Err(); err != nil {
			m.log.Debug("etcd watch error", "err", err)
			return false
		}
		if len(resp.Events) == 0 {
			continue
		}
		w.lock()
		for _, ev := range resp.Events {
			key := string(ev.Kv.Key)
			w.change(key)
			if ev.Type == clientv3.EventTypeDelete {
				delete(w.leases, key)
				continue
			}
			l, err := m.decode(key, ev.Kv.Value, ev.Kv.ModRevision)
			if err != nil {
				// A malformed write replaces whatever the key held: it must
				// not keep routing to the old value.
				delete(w.leases, key)
				continue
			}
			w.leases[key] = l
		}
		w.rev = resp.Header.Revision
		w.unlock()
		w.notify()
	}
	return false
}
