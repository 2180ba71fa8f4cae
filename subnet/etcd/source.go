package etcd

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/flannelng/flannel/subnet"
)

// The Manager is the daemon's lease source in etcd (subnet.Manager). At
// start one listing serves three readers: Previous (our lease as etcd last
// stored it), Acquire's first attempt and the peer watcher's starting set.
// At 5,000 leases a listing costs tens of milliseconds of decoding and a
// few MB of garbage, so reading it once matters for start-up.
var _ subnet.Manager = (*Manager)(nil)

// Name says which etcd and prefix the leases live in.
func (m *Manager) Name() string {
	return fmt.Sprintf("etcd %s prefix %s", strings.Join(m.cli.Endpoints(), ","), m.opt.Prefix)
}

// PublicIPs: etcd has no say in our public addresses.
func (m *Manager) PublicIPs() (v4, v6 netip.Addr) { return netip.Addr{}, netip.Addr{} }

// Start reads the leases once, retrying every 2 s while etcd cannot
// answer (rpc logs the outage once).
func (m *Manager) Start(ctx context.Context, _ *subnet.Config) error {
	for {
		l, err := m.Snapshot(ctx)
		if err == nil {
			m.mu.Lock()
			m.start, m.started = l, true
			m.mu.Unlock()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// startListing returns Start's listing, if Start ran.
func (m *Manager) startListing() (Listing, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.start, m.started
}

// Previous returns the attributes of the lease advertising our public
// address in Start's listing.
func (m *Manager) Previous(cfg *subnet.Config, probe subnet.LeaseAttrs) *subnet.LeaseAttrs {
	l, _ := m.startListing()
	if i := subnet.FindOwn(l.Leases, cfg, probe); i >= 0 {
		a := l.Leases[i].Attrs
		return &a
	}
	return nil
}

// Peers returns a watcher of every lease, starting from Start's listing
// (it then watches from the revision after it instead of listing again).
func (m *Manager) Peers() subnet.PeerSource {
	l, ok := m.startListing()
	m.mu.Lock()
	m.start, m.started = Listing{}, false // the watcher owns the leases now
	m.mu.Unlock()
	if !ok {
		return m.NewWatcher()
	}
	return m.NewWatcherFrom(l)
}
