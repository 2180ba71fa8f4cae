package kube

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/flannelng/flannel/subnet"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// Acquire derives our lease from our Node and publishes attrs on it.
//
//   - No podCIDR yet: one line, onRetry, and the podCIDR is picked up from
//     the Node watch the moment node IPAM sets it (upstream exits, #728).
//   - The podCIDRs are checked (spec 3.1) and against Network/IPv6Network
//     before anything is published, so a node that cannot work never
//     announces itself to its peers. Such errors, and more than two
//     podCIDRs, are returned: podCIDRs are immutable, waiting cannot fix
//     them.
//   - Then one PATCH of nodes/<n>/status with only the keys that differ
//     (none: no PATCH), retried with back-off while the API server is
//     unreachable. A Node without annotations is fine (upstream panics, #818).
//
// The lease returned has the podCIDRs and attrs as given (the local data
// plane's view; a public-ip-overwrite changes only what peers are told),
// and no expiry: it lives as long as the Node.
func (m *Manager) Acquire(ctx context.Context, cfg *subnet.Config, attrs subnet.LeaseAttrs, _ subnet.Env, onRetry func(error)) (subnet.Lease, error) {
	retry := func(err error) {
		if onRetry != nil {
			onRetry(err)
		}
	}
	b := newBackoff()
	for {
		if err := ctx.Err(); err != nil {
			return subnet.Lease{}, err
		}
		n := m.ownNode()
		if n == nil {
			err := fmt.Errorf("node %q not found", m.node)
			if m.once("gone") {
				m.log.Warn("our Node is not in the cache (deleted?); waiting for it", "node", m.node)
			}
			retry(err)
			if !m.waitOwn(ctx, nil) {
				return subnet.Lease{}, m.ended(ctx, err)
			}
			continue
		}
		m.cleared("gone")
		v4, v6, err := ownCIDRs(cfg, n)
		if errors.Is(err, errNoPodCIDR) {
			if m.once("podcidr") {
				m.log.Warn(fmt.Sprintf("waiting for spec.podCIDR on node %s", m.node), "node", m.node)
			}
			retry(err)
			if !m.waitOwn(ctx, nil) {
				return subnet.Lease{}, m.ended(ctx, err)
			}
			continue
		}
		if err != nil {
			return subnet.Lease{}, err
		}
		if m.cleared("podcidr") {
			m.log.Info("node podCIDR assigned", "node", m.node, "podCIDRs", cidrList(n))
		}
		// Node IPAM sizes the subnets, not SubnetLen: the daemon's peer
		// filter and subnet gauges count in the podCIDR's size.
		if err := cfg.SizeLike(v4, v6); err != nil {
			m.log.Warn("podCIDR size does not fit the Network; peers are checked against the net config's SubnetLen", "node", m.node, "err", err)
		}

		if err := m.publish(ctx, cfg, attrs, n); err != nil {
			if !transient(err) && !apierrors.IsNotFound(err) {
				return subnet.Lease{}, err
			}
			retry(err)
			if !b.wait(ctx, m.life.Done()) {
				return subnet.Lease{}, m.ended(ctx, err)
			}
			continue
		}
		m.mu.Lock()
		m.attrs = attrs
		m.mu.Unlock()
		return subnet.Lease{Subnet: v4, IPv6Subnet: v6, Attrs: attrs}, nil
	}
}

// ended is the error of a wait that ended: ctx's, or last's when the
// Manager was closed.
func (m *Manager) ended(ctx context.Context, last error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("subnet/kube closed: %w", last)
}

// publish sends one PATCH with the annotations of n that differ from what
// attrs make, if any.
func (m *Manager) publish(ctx context.Context, cfg *subnet.Config, attrs subnet.LeaseAttrs, n *Node) error {
	want, notes := m.keys.wanted(cfg, attrs, n.Annotations)
	for _, note := range notes {
		if m.once("note " + note) {
			m.log.Warn(note, "node", m.node)
		}
	}
	set := changed(want, n.Annotations)
	if len(set) == 0 {
		return nil
	}
	err := m.api.patchNodeStatus(ctx, m.node, annotationPatch(set))
	m.observe(ctx, "patch node "+m.node+" status", err)
	if err != nil {
		return fmt.Errorf("publish annotations on node %q: %w", m.node, err)
	}
	m.mu.Lock()
	m.basedOn = n.ResourceVersion
	m.mu.Unlock()
	m.log.Info("published our lease on our Node", "node", m.node, "keys", slices.Sorted(maps.Keys(set)))
	return nil
}

// Keep follows our Node until ctx ends (nil) or the lease is lost (an
// error, after which the daemon restarts): the annotations we published
// are put back when someone changes or removes them (an overwrite that
// appears later is honoured then too); a deleted Node is waited for; a
// Node that comes back with other podCIDRs ends the lease, since our
// routes and pods live in the old ones.
func (m *Manager) Keep(ctx context.Context, cfg *subnet.Config, own subnet.Lease) error {
	m.mu.Lock()
	attrs := m.attrs
	m.mu.Unlock()
	b := newBackoff()
	t := time.NewTimer(time.Hour)
	t.Stop()
	defer t.Stop()
	for {
		var retry <-chan time.Time
		if n := m.ownNode(); n == nil {
			if m.once("deleted") {
				m.log.Warn("our Node was deleted; keeping the data plane and waiting for it to come back", "node", m.node)
			}
		} else {
			if m.cleared("deleted") {
				m.log.Info("our Node is back", "node", m.node)
			}
			again, err := m.keep(ctx, cfg, own, attrs, n)
			if err != nil {
				return err
			}
			if again {
				t.Reset(b.next())
				retry = t.C
			} else {
				b = newBackoff()
			}
		}
		if !m.waitOwn(ctx, retry) {
			return nil
		}
		t.Stop()
	}
}

// keep checks our Node once; retry says a PATCH failed and is worth
// trying again later.
func (m *Manager) keep(ctx context.Context, cfg *subnet.Config, own subnet.Lease, attrs subnet.LeaseAttrs, n *Node) (retry bool, err error) {
	v4, v6, err := ownCIDRs(cfg, n)
	if errors.Is(err, errNoPodCIDR) {
		if m.once("podcidr") {
			m.log.Warn(fmt.Sprintf("waiting for spec.podCIDR on node %s", m.node), "node", m.node)
		}
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("lease lost: %w", err)
	}
	if v4 != own.Subnet || v6 != own.IPv6Subnet {
		return false, fmt.Errorf("lease lost: node %q now has podCIDRs %v, our lease is %s", m.node, cidrList(n), own)
	}
	m.mu.Lock()
	stale := n.ResourceVersion == m.basedOn
	m.mu.Unlock()
	if stale {
		return false, nil // our own PATCH has not reached the cache yet
	}
	if err := m.publish(ctx, cfg, attrs, n); err != nil {
		if ctx.Err() != nil {
			return false, nil
		}
		if m.once("restore " + err.Error()) {
			m.log.Warn("could not restore our annotations; retrying", "node", m.node, "err", err)
		}
		return true, nil
	}
	return false, nil
}
