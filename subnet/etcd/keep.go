package etcd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/flannelng/flannel/subnet"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrSubnetChanged is returned by Keep when our subnet is lost for good:
// another node took our key over, or our lease could only be re-acquired
// with a different subnet. The node must be reconfigured: the daemon
// exits, and its next start leases a subnet again and builds the data
// plane on it.
var ErrSubnetChanged = errors.New("our subnet was taken over by another node")

// Keep renews our lease before it expires and watches our key until ctx
// ends (nil). It re-creates the key, with the same subnet when it is still
// free, when someone deletes it or its etcd lease expires during an
// outage.
//
// Every write to our key, and the key as read again after a lost watch,
// must still be ours: our public IP, our public IPv6 (on an IPv6-only
// network every node's public IP is empty) and our etcd lease (none only
// for a reservation we hold). A key that another node took over ends Keep
// with ErrSubnetChanged at once: the data plane can only move to another
// subnet by the daemon starting again, whose Acquire then leaves the
// subnet to its new holder. Re-acquiring here first would only leave a
// second lease of ours behind when the daemon does not start again. A key
// that still names us but hangs on another etcd lease (a second flanneld
// on this host, upstream's renewal, an operator making it a reservation)
// is adopted as Acquire would adopt it, on its current etcd lease, and
// our former etcd lease, now without a key, is revoked.
//
// Nothing is torn down.
func (m *Manager) Keep(ctx context.Context, cfg *subnet.Config, lease subnet.Lease) error {
	own := m.heldFor(lease)
	key := m.KeyFor(own.Lease)
	retry := min(time.Minute, m.opt.TTL/10)

	// A reservation has no etcd lease: nothing to renew, only the key to
	// watch.
	var timer *time.Timer
	var renew <-chan time.Time
	schedule := func(d time.Duration) {
		if timer != nil {
			timer.Stop()
		}
		timer, renew = nil, nil
		if !own.isReservation() {
			timer = m.newTimer(d)
			renew = timer.C
		}
	}
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	renewIn := func() time.Duration {
		d := time.Until(own.Expiration) - m.opt.RenewMargin
		if min := m.opt.TTL / 3; d < min {
			// A margin as long as the TTL (short test TTLs) would renew
			// in a busy loop.
			d = min
		}
		return d
	}
	if own.isReservation() {
		m.log.Info("Holding a reservation (a key without an etcd lease): nothing to renew", "subnet", own.String())
	} else {
		m.log.Info(fmt.Sprintf("Waiting for %s to renew lease", renewIn().Round(10*time.Millisecond)))
	}
	schedule(renewIn())

	wctx, wcancel := context.WithCancel(ctx)
	defer func() { wcancel() }()
	watch := func() clientv3.WatchChan {
		wcancel()
		wctx, wcancel = context.WithCancel(ctx)
		return m.cli.Watch(clientv3.WithRequireLeader(wctx), key, clientv3.WithRev(own.rev+1))
	}
	events := watch()

	// reacquire gets our lease back after it was lost; alive says our
	// etcd lease still exists, to be revoked if the key ends up on
	// another one.
	reacquire := func(why string, alive bool) error {
		m.log.Warn("Our lease is gone; re-acquiring the same subnet", "subnet", own.String(), "reason", why)
		return m.rehold(ctx, cfg, &own, alive)
	}
	// check handles our key as etcd now holds it (nil: deleted).
	check := func(kv *mvccpb.KeyValue) error {
		if kv == nil {
			return reacquire("key deleted", true)
		}
		own.rev = kv.ModRevision
		switch why, taken := own.ownership(kv); {
		case why == nil:
			return nil
		case taken:
			m.log.Error("Our subnet was claimed by another node", append([]any{"subnet", own.String()}, why...)...)
			return ErrSubnetChanged
		default:
			m.log.Warn("Our lease key was moved to another etcd lease; adopting it", append([]any{"subnet", own.String()}, why...)...)
			return m.rehold(ctx, cfg, &own, true)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-renew:
			ttl, err := m.keepAliveOnce(ctx, own.id)
			switch {
			case errors.Is(err, errLeaseGone):
				if err := reacquire("etcd lease expired", false); err != nil {
					return err
				}
				events = watch()
			case err != nil:
				if ctx.Err() != nil {
					return nil
				}
				m.log.Warn(fmt.Sprintf("Error renewing lease (trying again in %s): %v", retry, err))
				schedule(retry)
				continue
			default:
				own.Expiration = time.Now().Add(ttl)
				m.log.Info(fmt.Sprintf("Lease renewed, new expiration: %s", own.Expiration.UTC().Format(time.RFC3339)))
				if m.opt.OnLease != nil {
					m.opt.OnLease(own.Lease)
				}
			}
			schedule(renewIn())
		case resp, ok := <-events:
			if !ok || resp.Err() != nil {
				if ctx.Err() != nil {
					return nil
				}
				// The watch ended (outage, leader loss, compaction): check
				// the key directly, then watch again.
				if !sleep(ctx, time.Second) {
					return nil
				}
				var get *clientv3.GetResponse
				if err := m.rpc(ctx, "get "+key, func(ctx context.Context) (err error) {
					get, err = m.cli.Get(ctx, key)
					return err
				}); err != nil {
					events = watch()
					continue
				}
				var kv *mvccpb.KeyValue
				if len(get.Kvs) > 0 {
					kv = get.Kvs[0]
				}
				if err := check(kv); err != nil {
					return err
				}
				schedule(renewIn())
				events = watch()
				continue
			}
			for _, ev := range resp.Events {
				before := own.id
				kv := ev.Kv
				if ev.Type == clientv3.EventTypeDelete {
					kv = nil
				}
				if err := check(kv); err != nil {
					return err
				}
				if kv == nil || own.id != before {
					// Re-acquired: watch from our own write on.
					schedule(renewIn())
					events = watch()
					break
				}
			}
		}
	}
}

// ownership says why kv, the current state of our key, is no longer ours
// (nil when it is), as log attributes; taken says another node holds it.
// Our key still names us when both public addresses are ours; then only
// its etcd lease may have changed.
func (h held) ownership(kv *mvccpb.KeyValue) (why []any, taken bool) {
	a, err := subnet.DecodeAttrs(kv.Value)
	switch {
	case err != nil:
		return []any{"err", err}, true
	case a.PublicIP != h.Attrs.PublicIP || a.PublicIPv6 != h.Attrs.PublicIPv6:
		if a.PublicIP.IsValid() || h.Attrs.PublicIP.IsValid() {
			why = append(why, "publicIP", a.PublicIP)
		}
		if a.PublicIPv6.IsValid() || h.Attrs.PublicIPv6.IsValid() {
			why = append(why, "publicIPv6", a.PublicIPv6)
		}
		return why, true
	case kv.Lease != h.id:
		return []any{"etcdLease", fmt.Sprintf("%x", kv.Lease), "ours", fmt.Sprintf("%x", h.id)}, false
	}
	return nil, false
}

// rehold re-acquires our lease for Keep, preferring its subnet; alive says
// own's etcd lease still exists. A different subnet is ErrSubnetChanged.
func (m *Manager) rehold(ctx context.Context, cfg *subnet.Config, own *held, alive bool) error {
	prev := subnet.Env{Subnet: own.Subnet, IPv6Subnet: own.IPv6Subnet}
	reuse := own.id
	if !alive {
		reuse = 0
	}
	l, err := m.acquire(ctx, nil, cfg, own.Attrs, prev, nil, reuse)
	if err != nil {
		return err
	}
	if alive && own.id != 0 && l.id != own.id {
		// Our key hangs on another etcd lease now; ours holds no key.
		m.revoke(ctx, own.id)
	}
	if l.Subnet != own.Subnet || l.IPv6Subnet != own.IPv6Subnet {
		m.log.Error("Re-acquired a different subnet", "old", own.String(), "new", l.String())
		return ErrSubnetChanged
	}
	*own = l
	m.hold(l, nil)
	m.log.Info("Lease re-acquired", "subnet", own.String())
	if m.opt.OnLease != nil {
		m.opt.OnLease(own.Lease)
	}
	return nil
}
