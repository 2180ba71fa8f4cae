package etcdv2

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	v2 "github.com/flannelng/flannel/pkg/etcdv2"
	"github.com/flannelng/flannel/subnet"
)

// ErrSubnetChanged is returned by Keep when another node claimed our
// subnet: our key now advertises another PublicIP, or another node
// created it after ours was deleted. The node must be reconfigured.
var ErrSubnetChanged = errors.New("our subnet was claimed by another node in etcd's v2 store")

// ErrSplitClaim is returned by KeepCopy when our v2 copy became another
// node's: the subnet is ours in v3 but v0.11 nodes route it to the other
// node (spec 8.1, 8.4).
var ErrSplitClaim = errors.New("split claim: our subnet is held by another node in etcd's v2 store")

// errRetracted stops a keeper of a key we retracted.
var errRetracted = errors.New("claim retracted")

// Keep holds our lease in --etcd-api=v2 mode until ctx ends (nil) or
// another node claims the subnet (ErrSubnetChanged). It renews with v0.11's
// unconditional set (ttl=86400, same value) RenewMargin before expiry,
// retrying every minute (or TTL/10) after a failure; a reservation is never
// renewed. It watches our key: a change resets the renewal from the new
// expiration, and a delete or expire re-creates the key with the same
// subnet and value (v0.11 exited instead), with the TTL: a reservation
// somebody deleted comes back as a lease. Nothing is torn down.
func (m *Manager) Keep(ctx context.Context, _ *subnet.Config, own subnet.Lease) error {
	return m.keep(ctx, own, false)
}

// KeepCopy keeps the v2 copy of our lease beside its v3 original, for the
// migration mode (spec 8.1 "Renewal"): at start and every CopyCheckEvery
// it reads the key's TTL and, when less than CopyRenewBelow is left,
// renews it with prevExist=true (action update), ttl=86400 and the same
// value. A deleted or expired copy is re-created with prevExist=false,
// with a warning; a copy that another node holds (105 on that create, or
// another PublicIP in the key) ends it with ErrSplitClaim. A reservation
// stays without TTL and is never renewed. It returns nil when ctx ends.
func (m *Manager) KeepCopy(ctx context.Context, _ *subnet.Config, own subnet.Lease) error {
	return m.keep(ctx, own, true)
}

func (m *Manager) keep(ctx context.Context, own subnet.Lease, copy bool) error {
	k := &keeper{m: m, copy: copy, key: m.KeyFor(own.Subnet), ip: own.Attrs.PublicIP, lease: own}
	k.lease.Subnet = own.Subnet.Masked()
	now := time.Now()
	if h, ok := m.heldFor(own); ok {
		k.value, k.lease, k.index = h.value, h.lease, h.index
	} else {
		// Not written by us (or not last): learn its state first.
		v, err := m.encode(own.Attrs)
		if err != nil {
			return err
		}
		k.value, k.read = v, true
	}
	switch {
	case copy || k.read:
		k.read, k.due = true, now
	case k.lease.Expiration.IsZero():
		m.log.Info("Our lease is a reservation (no TTL): it is not renewed", "subnet", k.lease.Subnet.String())
	default:
		k.due = k.renewAt(now)
		m.log.Info(fmt.Sprintf("Waiting for %s to renew lease", k.due.Sub(now).Round(10*time.Millisecond)))
	}
	err := k.run(ctx)
	if errors.Is(err, errRetracted) {
		m.log.Info("Our v2 claim was retracted; no longer keeping it", "subnet", k.lease.Subnet.String())
		return nil
	}
	return err
}

// keeper is one Keep or KeepCopy: a long poll on our key, bounded by the
// next thing to do (due).
type keeper struct {
	m     *Manager
	copy  bool // KeepCopy's policy
	key   string
	value string
	ip    netip.Addr
	lease subnet.Lease  // Expiration zero: a reservation
	left  time.Duration // TTL left at the last read
	index uint64        // the watch continues after it

	read    bool      // read the key at due (start, check, after 401)
	gone    bool      // deleted or expired: re-create at due
	rewrite bool      // the key holds a value we cannot read: write ours at due
	due     time.Time // zero: nothing to do (a reservation)
	lastErr string    // last failure logged, to log each distinct one once
}

func (k *keeper) run(ctx context.Context) error {
	m := k.m
	for {
		if !k.due.IsZero() && !time.Now().Before(k.due) {
			if err := k.act(ctx); err != nil {
				return err
			}
			if ctx.Err() != nil {
				return nil
			}
		}
		wait := m.opt.PollTimeout
		if !k.due.IsZero() {
			wait = min(wait, time.Until(k.due))
		}
		if wait <= 0 {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, wait)
		resp, err := m.cli.Watch(pctx, k.key, false, k.index)
		bounded := pctx.Err() != nil
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil:
			m.note(ctx, "watch "+k.key, nil)
			if err := k.event(resp); err != nil {
				return err
			}
		case bounded:
			// The poll's bound or the next renewal: act, or poll again
			// from the same index.
		case v2.IsIndexCleared(err):
			// More than 1000 v2 events since our index: read the key.
			m.note(ctx, "watch "+k.key, nil)
			k.read, k.due = true, time.Now()
		default:
			m.note(ctx, "watch "+k.key, err)
			k.fail("Subnet watch failed", err)
			if !sleep(ctx, time.Second) {
				return nil
			}
		}
	}
}

// act does what is due: a read, then a re-create or a renewal.
func (k *keeper) act(ctx context.Context) error {
	now := time.Now()
	if k.read {
		if err := k.readKey(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, ErrSubnetChanged) || errors.Is(err, ErrSplitClaim) {
				return err
			}
			k.fail("Reading our lease failed", err)
			k.due = now.Add(k.retry())
			return nil
		}
		k.read = false
		if !k.copy && !k.gone && !k.rewrite {
			k.due = k.renewAt(now) // the timer from the expiration read
			return nil
		}
	}
	switch {
	case k.gone:
		return k.recreate(ctx)
	case k.copy:
		return k.renewCopy(ctx)
	default:
		return k.renew(ctx)
	}
}

// retry is how soon a failed renewal is tried again.
func (k *keeper) retry() time.Duration { return min(time.Minute, k.m.opt.TTL/10) }

// renewAt is when v2 mode renews: RenewMargin before expiry; zero (never)
// for a reservation.
func (k *keeper) renewAt(now time.Time) time.Time {
	if k.lease.Expiration.IsZero() {
		return time.Time{}
	}
	at := k.lease.Expiration.Add(-k.m.opt.RenewMargin)
	if floor := now.Add(k.m.opt.TTL / 3); k.m.opt.RenewMargin >= k.m.opt.TTL && at.Before(floor) {
		// A margin as long as the TTL (short test TTLs) would renew in a
		// busy loop.
		at = floor
	}
	return at
}

// schedule sets the next action after a successful write or read.
func (k *keeper) schedule(now time.Time) {
	if k.copy {
		k.read, k.due = true, now.Add(k.m.opt.CopyCheckEvery)
		return
	}
	k.due = k.renewAt(now)
}

// readKey reads our key: gone, ours (its expiration and TTL left), or
// another node's (ErrSubnetChanged, ErrSplitClaim).
func (k *keeper) readKey(ctx context.Context) error {
	resp, err := k.m.request(ctx, "get "+k.key, func(ctx context.Context) (*v2.Response, error) {
		return k.m.cli.Get(ctx, k.key, false)
	})
	var e *v2.Error
	if errors.As(err, &e) && e.Code == v2.CodeKeyNotFound {
		if !k.gone {
			k.m.log.Warn("Our lease key is gone; re-creating it", "key", k.key)
		}
		k.gone = true
		k.index = max(k.index, e.Index)
		return nil
	}
	if err != nil {
		return err
	}
	k.index = max(k.index, resp.Index)
	return k.saw(resp.Node)
}

// saw takes in the current node of our key.
func (k *keeper) saw(n *v2.Node) error {
	a, err := subnet.DecodeAttrs([]byte(n.Value))
	if err != nil {
		k.m.log.Warn("Our lease key holds a value we cannot read; writing ours again", "key", k.key, "err", err)
		k.rewrite, k.due = true, time.Now()
		return nil
	}
	if a.PublicIP != k.ip {
		base := ErrSubnetChanged
		if k.copy {
			base = ErrSplitClaim
		}
		k.m.log.Error("Our subnet was claimed by another node", "subnet", k.lease.Subnet.String(), "publicIP", a.PublicIP, "ours", k.ip)
		return fmt.Errorf("%w: %s now advertises %v, not %v", base, k.key, a.PublicIP, k.ip)
	}
	k.gone = false
	k.setFrom(n)
	return nil
}

// setFrom takes the expiration and TTL left of our node.
func (k *keeper) setFrom(n *v2.Node) {
	k.lease.Expiration, k.left = time.Time{}, 0
	if n.Expiration != nil {
		k.lease.Expiration, k.left = *n.Expiration, time.Duration(n.TTL)*time.Second
	}
}

// event takes in one event of the own-key watch.
func (k *keeper) event(resp *v2.Response) error {
	n := resp.Node
	k.index = max(k.index, n.ModifiedIndex)
	switch resp.Action {
	case v2.ActionDelete, v2.ActionExpire, v2.ActionCompareAndDelete:
		if k.m.isRetracted(k.key) {
			return errRetracted
		}
		if k.copy {
			k.m.log.Warn("The v2 copy of our lease is gone; re-creating it", "key", k.key, "action", resp.Action)
		} else {
			k.m.log.Warn("Lease has been revoked; re-creating it with the same subnet", "key", k.key, "action", resp.Action)
		}
		k.gone, k.due = true, time.Now()
		return nil
	}
	if err := k.saw(n); err != nil {
		return err
	}
	if !k.copy && !k.rewrite {
		k.due = k.renewAt(time.Now())
	}
	return nil
}

// wrote takes in a successful write of our value.
func (k *keeper) wrote(n *v2.Node) {
	k.gone, k.rewrite, k.lastErr = false, false, ""
	k.setFrom(n)
	k.m.hold(held{lease: k.lease, key: k.key, value: k.value, index: n.ModifiedIndex})
	if k.m.opt.OnLease != nil {
		k.m.opt.OnLease(k.lease)
	}
	k.schedule(time.Now())
}

// recreate writes our key again after it was deleted or expired, with
// prevExist=false: if somebody wrote it meanwhile, a read says whose.
func (k *keeper) recreate(ctx context.Context) error {
	if k.m.isRetracted(k.key) {
		return errRetracted
	}
	resp, err := k.m.request(ctx, "create "+k.key, func(ctx context.Context) (*v2.Response, error) {
		return k.m.cli.Create(ctx, k.key, k.value, k.m.opt.TTL)
	})
	switch {
	case ctx.Err() != nil:
		return nil
	case err == nil:
		k.wrote(resp.Node)
		k.m.log.Info("Lease re-created", "subnet", k.lease.Subnet.String(), "expiration", k.lease.Expiration.UTC().Round(0))
	case v2.IsNodeExist(err):
		k.read, k.due = true, time.Now()
	default:
		k.fail("Re-creating our lease failed", err)
		k.due = time.Now().Add(min(2*time.Second, k.retry()))
	}
	return nil
}

// renew is v2 mode's renewal: v0.11's unconditional set, which would also
// re-create a deleted key.
func (k *keeper) renew(ctx context.Context) error {
	reservation := k.lease.Expiration.IsZero()
	if reservation && !k.rewrite {
		k.due = time.Time{}
		return nil
	}
	ttl := k.m.opt.TTL
	if reservation {
		ttl = 0
	}
	resp, err := k.m.request(ctx, "renew "+k.key, func(ctx context.Context) (*v2.Response, error) {
		return k.m.cli.Set(ctx, k.key, k.value, v2.SetOptions{TTL: ttl})
	})
	if ctx.Err() != nil {
		return nil // stopping, not failing
	}
	if err != nil {
		retry := k.retry()
		k.m.log.Warn(fmt.Sprintf("Error renewing lease (trying again in %s): %v", retry, err))
		k.due = time.Now().Add(retry)
		return nil
	}
	k.wrote(resp.Node)
	if !reservation {
		// v0.11's line, time in its format.
		k.m.log.Info(fmt.Sprintf("Lease renewed, new expiration: %v", k.lease.Expiration.UTC().Round(0)))
	}
	return nil
}

// renewCopy is KeepCopy's check after a read: renew with prevExist=true
// when less than CopyRenewBelow is left.
func (k *keeper) renewCopy(ctx context.Context) error {
	reservation := k.lease.Expiration.IsZero()
	if !k.rewrite && (reservation || k.left >= k.m.opt.CopyRenewBelow) {
		k.schedule(time.Now())
		return nil
	}
	ttl := k.m.opt.TTL
	if reservation {
		ttl = 0
	}
	resp, err := k.m.request(ctx, "update "+k.key, func(ctx context.Context) (*v2.Response, error) {
		return k.m.cli.Update(ctx, k.key, k.value, ttl)
	})
	switch {
	case ctx.Err() != nil:
		return nil
	case v2.IsKeyNotFound(err):
		k.m.log.Warn("The v2 copy of our lease is gone; re-creating it", "key", k.key)
		k.gone = true
		return k.recreate(ctx)
	case err != nil:
		k.fail("Renewing the v2 copy of our lease failed, retrying", err)
		k.schedule(time.Now())
		return nil
	}
	k.wrote(resp.Node)
	k.m.log.Info("Renewed the v2 copy of our lease", "subnet", k.lease.Subnet.String(), "expiration", k.lease.Expiration.UTC().Round(0))
	return nil
}

// fail logs a failure once per distinct message; an outage is logged by
// Manager.note already.
func (k *keeper) fail(msg string, err error) {
	if v2.ErrorCode(err) == 0 {
		k.m.log.Debug(msg, "key", k.key, "err", err)
		return
	}
	if s := err.Error(); s != k.lastErr {
		k.lastErr = s
		k.m.log.Warn(msg, "key", k.key, "err", err)
	}
}
