package subnet

import "bytes"

// LeaseSet is a lease source's current set of leases, keyed by whatever
// names a lease in that source (an etcd key, a Node name), with what a
// PeerSource's consumer needs: the whole set (TakeAll), or what changed
// since it last read (Changes). Bursts coalesce: a key changed many times
// between two reads is one change, from what the consumer saw then to
// what the key holds now.
//
// Not safe for concurrent use: the source guards it with its own lock.
type LeaseSet struct {
	leases map[string]Lease
	synced bool
	// pending holds, for each key changed since the consumer last took
	// the set or the changes, what the key held then.
	pending map[string]priorLease
	// overflow says the changes are not worth listing one by one (a
	// relist, or more changes than a pass over everything costs).
	overflow bool
}

// priorLease is a key's lease as the consumer last saw it.
type priorLease struct {
	lease Lease
	had   bool
}

// MaxPendingLeases bounds the changes kept one by one; beyond it (or an
// eighth of the set, if more) the consumer is told to take the whole set.
const MaxPendingLeases = 512

// NewLeaseSet returns an empty set that is not synced yet.
func NewLeaseSet() *LeaseSet {
	return &LeaseSet{leases: map[string]Lease{}, pending: map[string]priorLease{}}
}

// Get returns the lease under key.
func (s *LeaseSet) Get(key string) (Lease, bool) {
	l, ok := s.leases[key]
	return l, ok
}

// Len is the number of leases.
func (s *LeaseSet) Len() int { return len(s.leases) }

// Synced reports whether the set has been complete once (a first listing).
func (s *LeaseSet) Synced() bool { return s.synced }

// Put stores l under key, recording the change.
func (s *LeaseSet) Put(key string, l Lease) {
	s.change(key)
	s.leases[key] = l
}

// Delete removes key, recording the change; it reports whether the set
// held key.
func (s *LeaseSet) Delete(key string) bool {
	if _, ok := s.leases[key]; !ok {
		return false
	}
	s.change(key)
	delete(s.leases, key)
	return true
}

// Reset makes leases (taken over, not copied) the whole set after a
// listing: the set is synced, and consumers take it whole.
func (s *LeaseSet) Reset(leases map[string]Lease) {
	s.leases = leases
	s.MarkSynced()
}

// Sync makes leases (taken over, not copied) the whole set after a listing
// that should match it, recording each key that differs as a change, as
// Put and Delete do: unlike Reset, consumers are not made to take the whole
// set. It returns how many keys differed. An unsynced set is Reset.
func (s *LeaseSet) Sync(leases map[string]Lease) int {
	if !s.synced {
		s.Reset(leases)
		return len(leases)
	}
	n := 0
	for k, l := range s.leases {
		if now, ok := leases[k]; !ok || !sameLease(l, now) {
			s.change(k)
			n++
		}
	}
	for k := range leases {
		if _, ok := s.leases[k]; !ok {
			s.change(k)
			n++
		}
	}
	s.leases = leases
	return n
}

// sameLease reports whether a and b are the same lease, attributes and
// expiry included.
func sameLease(a, b Lease) bool {
	return a.Subnet == b.Subnet && a.IPv6Subnet == b.IPv6Subnet && a.Expiration.Equal(b.Expiration) &&
		a.Attrs.PublicIP == b.Attrs.PublicIP && a.Attrs.PublicIPv6 == b.Attrs.PublicIPv6 && a.Attrs.BackendType == b.Attrs.BackendType &&
		bytes.Equal(a.Attrs.BackendData, b.Attrs.BackendData) && bytes.Equal(a.Attrs.BackendV6Data, b.Attrs.BackendV6Data)
}

// MarkSynced says the set is complete: consumers take it whole next.
func (s *LeaseSet) MarkSynced() {
	s.synced = true
	s.overflow = true
	clear(s.pending)
}

// All returns a copy of the set and whether it is synced, leaving the
// changes pending.
func (s *LeaseSet) All() ([]Lease, bool) {
	out := make([]Lease, 0, len(s.leases))
	for _, l := range s.leases {
		out = append(out, l)
	}
	return out, s.synced
}

// TakeAll is All for a consumer that also uses Changes: the changes pending
// so far are part of the set returned, so Changes forgets them.
func (s *LeaseSet) TakeAll() ([]Lease, bool) {
	clear(s.pending)
	s.overflow = false
	return s.All()
}

// Changes returns what changed since the last TakeAll or Changes: gone are
// the leases as they were then (for deleted and replaced keys), came the
// current versions of new and replaced keys. all is true when the consumer
// must call TakeAll instead: before the set is synced, after a relist, or
// after more changes than are worth listing.
func (s *LeaseSet) Changes() (gone, came []Lease, all bool) {
	if !s.synced || s.overflow {
		return nil, nil, true
	}
	for k, p := range s.pending {
		if p.had {
			gone = append(gone, p.lease)
		}
		if l, ok := s.leases[k]; ok {
			came = append(came, l)
		}
	}
	clear(s.pending)
	return gone, came, false
}

// change records that key is about to change.
func (s *LeaseSet) change(key string) {
	if s.overflow {
		return
	}
	if _, seen := s.pending[key]; seen {
		return // the consumer's view is the one recorded first
	}
	if len(s.pending) >= max(MaxPendingLeases, len(s.leases)/8) {
		s.overflow = true
		clear(s.pending)
		return
	}
	l, had := s.leases[key]
	s.pending[key] = priorLease{l, had}
}
