package etcd

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/flannelng/flannel/subnet"
)

// ErrTaken is returned by ClaimSubnet when another node holds the subnet
// (or one overlapping it) in the v3 keyspace.
var ErrTaken = errors.New("subnet held by another node in etcd v3")

// ClaimSubnet makes want our v3 lease, for a caller that chose the subnet
// elsewhere: the migration mode (--etcd-api=both) claims it in the v2
// store first, which v0.11 nodes lock on, and then here. Our existing v3
// key for want is adopted (its etcd lease refreshed, its value updated); a
// key of ours for another subnet is replaced in the same transaction; a
// free want is created with a new etcd lease. A holder with another
// public address, or an overlapping lease, is ErrTaken. Lost races and
// outages are retried until ctx ends. The lease is then ours for Keep.
func (m *Manager) ClaimSubnet(ctx context.Context, cfg *subnet.Config, attrs subnet.LeaseAttrs, want netip.Prefix) (subnet.Lease, error) {
	if !cfg.CompatibleV4(want) {
		return subnet.Lease{}, fmt.Errorf("subnet %v does not fit the network config (Network %v, SubnetLen %d)", want, cfg.Network, cfg.SubnetLen)
	}
	delay := 50 * time.Millisecond
	for {
		h, err := m.claimOnce(ctx, attrs, want)
		if err == nil {
			return m.hold(h, nil)
		}
		if errors.Is(err, ErrTaken) || ctx.Err() != nil {
			return subnet.Lease{}, err
		}
		if !errors.Is(err, errTryAgain) {
			m.log.Warn("Failed to claim subnet in etcd v3, retrying", "subnet", want.String(), "err", err)
		}
		if !sleep(ctx, delay) {
			return subnet.Lease{}, ctx.Err()
		}
		delay = min(delay*2, 5*time.Second)
	}
}

func (m *Manager) claimOnce(ctx context.Context, attrs subnet.LeaseAttrs, want netip.Prefix) (held, error) {
	l, err := m.Snapshot(ctx)
	if err != nil {
		return held{}, err
	}
	wantKey := m.KeyFor(subnet.Lease{Subnet: want})
	var own *held
	for i, x := range l.Leases {
		key := m.KeyFor(x)
		switch {
		case key == wantKey && x.Attrs.PublicIP == attrs.PublicIP:
			h := held{Lease: x, id: l.meta[i].id, rev: l.meta[i].rev}
			m.log.Info(fmt.Sprintf("Found lease (%v) for current IP (%v) in etcd v3, reusing", want, attrs.PublicIP))
			return m.adopt(ctx, h, attrs)
		case key == wantKey:
			return held{}, fmt.Errorf("%w: %s is held by %v", ErrTaken, wantKey, x.Attrs.PublicIP)
		case x.Subnet.IsValid() && x.Subnet.Overlaps(want):
			return held{}, fmt.Errorf("%w: %s overlaps %s", ErrTaken, key, wantKey)
		case own == nil && attrs.PublicIP.IsValid() && x.Attrs.PublicIP == attrs.PublicIP:
			own = &held{Lease: x, id: l.meta[i].id, rev: l.meta[i].rev}
		}
	}
	for _, b := range l.blocked {
		if b.Overlaps(want) {
			return held{}, fmt.Errorf("%w: %s overlaps a key under %s that is not a lease (see the log)", ErrTaken, b, m.subnets)
		}
	}
	g := &leaseGrant{}
	defer g.release(ctx, m)
	if own != nil {
		m.log.Warn("Replacing our etcd v3 lease for another subnet", "old", own.String(), "new", want.String())
		if !own.isReservation() {
			g.reuse = own.id
		}
	}
	return m.create(ctx, creation{v4: want, attrs: attrs, rev: l.Revision, replace: own}, g)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
