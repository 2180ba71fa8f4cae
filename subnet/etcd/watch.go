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

	mu  sync.Mutex // guards the fields below
	set *subnet.LeaseSet
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
	leases := make(map[string]subnet.Lease, len(l.Leases))
	for _, lease := range l.Leases {
		leases[m.KeyFor(lease)] = lease
	}
	w.set.Reset(leases)
	w.rev = l.Revision
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
			set := make(map[string]subnet.Lease, len(leases))
			for _, l := range leases {
				set[m.KeyFor(l)] = l
			}
			w.lock()
			w.set.Reset(set) // consumers take the new set whole
			w.rev = rev
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
			if ev.Type == clientv3.EventTypeDelete {
				w.set.Delete(key)
				m.forgetBad(key)
				continue
			}
			l, err := m.decode(key, ev.Kv.Value)
			if err != nil {
				// A malformed write replaces whatever the key held: it must
				// not keep routing to the old value.
				w.set.Delete(key)
				continue
			}
			w.set.Put(key, l)
		}
		w.rev = resp.Header.Revision
		w.unlock()
		w.notify()
	}
	return false
}
