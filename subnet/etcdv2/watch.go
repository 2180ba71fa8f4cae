package etcdv2

import (
	"context"
	"strings"
	"sync"
	"time"

	v2 "github.com/flannelng/flannel/pkg/etcdv2"
	"github.com/flannelng/flannel/subnet"
)

// Watcher keeps the complete current set of leases (subnet.PeerSource): a
// listing, then one long poll per event on <prefix>/subnets, recursive,
// from the listing's X-Etcd-Index and then from each event's
// modifiedIndex. When etcd's 1000-event history has passed the cursor
// (401) it lists again and consumers take the whole set. An event it
// cannot read is logged once per key and skipped, never retried (v0.11
// wedged on it). Other errors are retried after a second from the same
// cursor.
type Watcher struct {
	m       *Manager
	updated chan struct{}

	mu     sync.Mutex // guards the fields below
	set    *subnet.LeaseSet
	cursor uint64
}

// NewWatcher returns a Watcher that lists first; call Run.
func (m *Manager) NewWatcher() *Watcher {
	return &Watcher{m: m, updated: make(chan struct{}, 1), set: subnet.NewLeaseSet()}
}

// newWatcherFrom returns a Watcher that starts from a listing already made.
func (m *Manager) newWatcherFrom(l listing) *Watcher {
	w := m.NewWatcher()
	w.reset(l)
	return w
}

// Updated fires (coalesced) after the lease set changed.
func (w *Watcher) Updated() <-chan struct{} { return w.updated }

// Leases returns a copy of the set and whether a first listing completed.
func (w *Watcher) Leases() ([]subnet.Lease, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.set.All()
}

// TakeAll returns the whole set; the changes pending so far are part of it.
func (w *Watcher) TakeAll() ([]subnet.Lease, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.set.TakeAll()
}

// Changes returns what changed since the last TakeAll or Changes (see
// subnet.LeaseSet).
func (w *Watcher) Changes() (gone, came []subnet.Lease, all bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.set.Changes()
}

// Cursor is the v2 index the set reflects; the next poll asks for the
// events after it.
func (w *Watcher) Cursor() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cursor
}

func (w *Watcher) notify() {
	select {
	case w.updated <- struct{}{}:
	default:
	}
}

// reset makes a listing the whole set.
func (w *Watcher) reset(l listing) {
	set := make(map[string]subnet.Lease, len(l.leases))
	for i, lease := range l.leases {
		set[l.keys[i]] = lease
	}
	w.mu.Lock()
	w.set.Reset(set) // consumers take the new set whole
	w.cursor = l.index
	w.mu.Unlock()
	w.notify()
}

// Run lists (unless it starts from a listing) and polls until ctx ends. It
// may be called again after it returned: it goes on from its cursor.
func (w *Watcher) Run(ctx context.Context) {
	m := w.m
	w.mu.Lock()
	relist := !w.set.Synced()
	w.mu.Unlock()
	lastErr := ""
	for ctx.Err() == nil {
		if relist {
			l, err := m.list(ctx)
			if err != nil {
				sleep(ctx, 2*time.Second)
				continue
			}
			w.reset(l)
			relist = false
		}
		pctx, cancel := context.WithTimeout(ctx, m.opt.PollTimeout)
		resp, err := m.cli.Watch(pctx, m.dir, true, w.Cursor())
		bounded := pctx.Err() != nil
		cancel()
		switch {
		case err == nil:
			m.note(ctx, "watch "+m.dir, nil)
			lastErr = ""
			relist = w.apply(resp)
		case ctx.Err() != nil:
			return
		case bounded:
			// Nothing below the directory for PollTimeout: poll again
			// from the same cursor (a dead connection costs no more).
		case v2.IsIndexCleared(err):
			m.note(ctx, "watch "+m.dir, nil)
			m.log.Warn("Watch of subnet leases failed because etcd index outside history window", "err", err)
			relist = true
			if m.opt.OnWatchRestart != nil {
				m.opt.OnWatchRestart(true)
			}
		default:
			m.note(ctx, "watch "+m.dir, err)
			if s := err.Error(); v2.ErrorCode(err) != 0 && s != lastErr {
				// etcd answers but refuses (v2 auth, ...); an outage is
				// logged by note.
				m.log.Warn("Watch subnets failed, retrying every second", "err", err)
				lastErr = s
			}
			if m.opt.OnWatchRestart != nil {
				m.opt.OnWatchRestart(false)
			}
			sleep(ctx, time.Second)
		}
	}
}

// apply takes in one event; it reports whether the set must be listed
// again.
func (w *Watcher) apply(resp *v2.Response) (relist bool) {
	m := w.m
	n := resp.Node
	w.mu.Lock()
	defer w.mu.Unlock()
	// The cursor moves past every event, readable or not: an event that
	// is skipped must not be asked for again (v0.11's watch wedged there).
	w.cursor = max(w.cursor, n.ModifiedIndex)
	if !strings.HasPrefix(n.Key, m.dir+"/") {
		// The directory itself or a parent went (rm -r of the prefix,
		// a TTL on the directory): its leases went without events of
		// their own.
		m.log.Info("Subnet directory changed as a whole, listing again", "key", n.Key, "action", resp.Action)
		return true
	}
	changed := false
	switch resp.Action {
	case v2.ActionDelete, v2.ActionExpire, v2.ActionCompareAndDelete:
		// v0.11 reads a compareAndDelete as an added lease and wedges on
		// its empty value; the key is gone, so is the lease.
		changed = w.set.Delete(n.Key)
		m.forgetBad(n.Key)
	default:
		l, err := m.decodeNode(n)
		if err != nil {
			// What the key held before is gone too: it must not keep
			// being routed (and a listing would not return it either).
			changed = w.set.Delete(n.Key)
			break
		}
		w.set.Put(n.Key, l)
		changed = true
	}
	if changed {
		w.notify()
	}
	return false
}

var _ subnet.PeerSource = (*Watcher)(nil)
