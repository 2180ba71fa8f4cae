package kube

import (
	"bytes"
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"github.com/flannelng/flannel/subnet"
)

// peers is the PeerSource: the leases of the managed Nodes, kept by the
// Node watch (watchNodes), and the compact Nodes they come from. Each
// event only converts the Node's few flannel fields (compact already
// dropped the rest), updates the maps under the lock and sets a coalesced
// signal, so the watch never waits on the daemon (upstream blocked its
// informer on a full channel, #719). Like the etcd Watcher, consumers read
// the whole set or what changed since they last read, never a stream of
// events to replay.
type peers struct {
	log    *slog.Logger
	keys   Keys
	v4, v6 bool   // the families the net config enables
	own    string // our node's name
	done   <-chan struct{}

	updated    chan struct{}
	ownChanged chan struct{} // our Node's flannel fields or identity changed

	mu sync.Mutex // guards the fields below
	// nodes is every Node as the watch last saw it, compact; a Node in
	// it is never changed, only replaced.
	nodes map[string]*Node
	// set holds the usable leases by Node name, with the changes the
	// consumer has not read yet.
	set *subnet.LeaseSet
	// logged is the last problem logged per node, so that each is
	// logged once, and again only when it changes.
	logged map[string]string
	// applied counts the changes to the set, for tests.
	applied int
}

func newPeers(log *slog.Logger, k Keys, own string, done <-chan struct{}) *peers {
	return &peers{
		log: log, keys: k, own: own, done: done, v4: true,
		updated: make(chan struct{}, 1), ownChanged: make(chan struct{}, 1),
		nodes: map[string]*Node{}, set: subnet.NewLeaseSet(), logged: map[string]string{},
	}
}

var _ subnet.PeerSource = (*peers)(nil)

// Run returns when ctx ends or the Manager is closed: the watch that
// keeps the set runs from Start until Close.
func (p *peers) Run(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-p.done:
	}
}

// Updated fires (coalesced) after the set changed.
func (p *peers) Updated() <-chan struct{} { return p.updated }

// TakeAll returns every managed node's lease, and whether the first list
// of the Nodes is in; the pending changes are part of it.
func (p *peers) TakeAll() ([]subnet.Lease, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.set.TakeAll()
}

// Changes returns what changed since the last TakeAll or Changes; all is
// true before the first sync and after more changes than are worth
// listing.
func (p *peers) Changes() (gone, came []subnet.Lease, all bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.set.Changes()
}

func (p *peers) setSynced() {
	p.mu.Lock()
	p.set.MarkSynced() // consumers take the synced set whole
	p.mu.Unlock()
	signal(p.updated)
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// node is the compact Node name, nil when the watch has not seen it.
func (p *peers) node(name string) *Node {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nodes[name]
}

// count is the number of Nodes seen.
func (p *peers) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.nodes)
}

// upsert takes a new version of a Node (compact). Kubelet heartbeats,
// conditions, labels and images change nothing flannel reads: compact
// kept only our annotations and the podCIDRs, so the two versions compare
// equal and only the stored Node (its resourceVersion) changes. This is
// the path almost every Node update takes.
func (p *peers) upsert(n *Node) {
	if n == nil {
		return
	}
	p.mu.Lock()
	old := p.nodes[n.Name]
	p.nodes[n.Name] = n
	p.mu.Unlock()
	if old != nil && sameView(old, n) {
		return
	}
	p.apply(n)
}

// replace makes nodes (compact, by name) the whole set, after a list:
// Nodes not in it were deleted while no watch was open (for a re-list
// after 410 Gone, deleted and their delete events compacted away), and
// are removed peers.
func (p *peers) replace(nodes map[string]*Node) {
	p.mu.Lock()
	var gone []string
	for name := range p.nodes {
		if _, ok := nodes[name]; !ok {
			gone = append(gone, name)
		}
	}
	p.mu.Unlock()
	for _, name := range gone {
		p.remove(name)
	}
	for _, n := range nodes {
		p.upsert(n)
	}
}

// sameView reports whether two compact Nodes look the same to flannel.
func sameView(a, b *Node) bool {
	return a.UID == b.UID && a.Spec.PodCIDR == b.Spec.PodCIDR &&
		slices.Equal(a.Spec.PodCIDRs, b.Spec.PodCIDRs) && maps.Equal(a.Annotations, b.Annotations) &&
		networkCondition(a) == networkCondition(b)
}

// apply converts a Node and records the change, if any.
func (p *peers) apply(n *Node) {
	if n.Name == p.own {
		signal(p.ownChanged)
	}
	l, problem := nodeLease(n, p.keys, p.v4, p.v6)
	usable := l.Subnet.IsValid() || l.IPv6Subnet.IsValid()
	managed := n.Annotations[p.keys.Managed] == "true"

	p.mu.Lock()
	old, had := p.set.Get(n.Name)
	change := false
	switch {
	case usable && (!had || !sameLease(old, l)):
		p.set.Put(n.Name, l)
		change = true
	case !usable && had:
		p.set.Delete(n.Name)
		change = true
	}
	// Unmanaged nodes are not worth a line each (a cluster may have
	// thousands), but one that stops being managed is.
	logIt := problem != "" && (managed || had) && p.logged[n.Name] != problem
	if problem == "" || (!managed && !had) {
		delete(p.logged, n.Name)
	} else {
		p.logged[n.Name] = problem
	}
	if change {
		p.applied++
	}
	p.mu.Unlock()

	if logIt {
		switch {
		case usable:
			p.log.Info("using part of a peer's lease", "node", n.Name, "lease", l.String(), "skipped", problem)
		case had:
			p.log.Info("dropping peer", "node", n.Name, "reason", problem)
		default:
			p.log.Warn("ignoring peer", "node", n.Name, "reason", problem)
		}
	}
	if change {
		signal(p.updated)
	}
}

// remove forgets a deleted Node.
func (p *peers) remove(name string) {
	p.mu.Lock()
	delete(p.nodes, name)
	had := p.set.Delete(name)
	if had {
		p.applied++
	}
	delete(p.logged, name)
	p.mu.Unlock()
	if name == p.own {
		signal(p.ownChanged) // after the Node left the map: ownNode sees it gone
	}
	if had {
		signal(p.updated)
	}
}

// sameLease compares everything a lease made from a Node carries.
func sameLease(a, b subnet.Lease) bool {
	return a.Subnet == b.Subnet && a.IPv6Subnet == b.IPv6Subnet &&
		a.Attrs.PublicIP == b.Attrs.PublicIP && a.Attrs.PublicIPv6 == b.Attrs.PublicIPv6 &&
		a.Attrs.BackendType == b.Attrs.BackendType &&
		bytes.Equal(a.Attrs.BackendData, b.Attrs.BackendData) &&
		bytes.Equal(a.Attrs.BackendV6Data, b.Attrs.BackendV6Data)
}
