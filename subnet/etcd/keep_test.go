package etcd

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/subnet"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// keepInBackground runs Keep until the test ends; the channel gets its
// result.
func keepInBackground(t *testing.T, m *Manager, cfg *subnet.Config, l subnet.Lease) (context.CancelFunc, <-chan error) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- m.Keep(ctx, cfg, l) }()
	time.Sleep(200 * time.Millisecond) // the watch is up
	return cancel, done
}

func waitFor(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// On an IPv6-only network every lease's PublicIP is empty: a node that
// takes our key over differs from us only in PublicIPv6 (upstream's
// IPv6-only nodes adopt the first lease whose PublicIP is 0.0.0.0). Keep
// must see it and stop with ErrSubnetChanged, as for an IPv4 claim.
func TestKeepNoticesIPv6OnlyTakeover(t *testing.T) {
	te := startEtcd(t)
	cli := te.client(t)
	cfg := putConfig(t, cli, "/coreos.com/network", `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10::/56","Backend":{"Type":"host-gw"}}`)
	ctx := ctxT(t, 30*time.Second)
	m, log := newManager(t, cli, Options{})
	l, err := m.Acquire(ctx, cfg, subnet.LeaseAttrs{PublicIPv6: netip.MustParseAddr("fd00:30::11"), BackendType: "host-gw"}, subnet.Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, done := keepInBackground(t, m, cfg, l)
	other, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, m.KeyFor(l), `{"PublicIP":"0.0.0.0","PublicIPv6":"fd00:30::12","BackendType":"host-gw"}`, clientv3.WithLease(other.ID)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, ErrSubnetChanged) {
			t.Fatalf("Keep: %v, want ErrSubnetChanged", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Keep did not notice another node's value on our key; log:\n%s", log)
	}
	if !strings.Contains(log.String(), `msg="Our subnet was claimed by another node" subnet=`+l.String()+" publicIPv6=fd00:30::12\n") {
		t.Errorf("log:\n%s", log)
	}
}

// Our key rewritten with our own value on another etcd lease (a second
// flanneld on this host, upstream's renewal) is still ours: Keep adopts
// it on that etcd lease and revokes ours, which holds no key any more.
// Made a reservation (no etcd lease) by an operator, it stays one.
func TestKeepAdoptsOurKeyOnAnotherEtcdLease(t *testing.T) {
	te := startEtcd(t)
	cli := te.client(t)
	cfg := putConfig(t, cli, "/coreos.com/network", `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`)
	ctx := ctxT(t, 30*time.Second)
	m, log := newManager(t, cli, Options{})
	l, err := m.Acquire(ctx, cfg, vxAttrs("192.168.9.1", "02:00:00:00:00:01"), subnet.Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := heldID(m)
	_, done := keepInBackground(t, m, cfg, l)
	key := m.KeyFor(l)
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	value := string(resp.Kvs[0].Value)

	other, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, key, value, clientv3.WithLease(other.ID)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "our key adopted on its new etcd lease", 5*time.Second, func() bool { return heldID(m) == int64(other.ID) })
	waitFor(t, "our former etcd lease revoked", 5*time.Second, func() bool {
		ttl, err := cli.TimeToLive(ctx, clientv3.LeaseID(first))
		return err == nil && ttl.TTL == -1
	})
	if !strings.Contains(log.String(), "Our lease key was moved to another etcd lease; adopting it") {
		t.Errorf("log:\n%s", log)
	}

	if _, err := cli.Put(ctx, key, value); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "our key adopted as a reservation", 5*time.Second, func() bool { return heldID(m) == 0 })
	select {
	case err := <-done:
		t.Fatalf("Keep ended: %v; log:\n%s", err, log)
	case <-time.After(500 * time.Millisecond):
	}
	resp, _ = cli.Get(ctx, key)
	if len(resp.Kvs) != 1 || resp.Kvs[0].Lease != 0 || string(resp.Kvs[0].Value) != value {
		t.Errorf("key %v, want our value as a reservation", resp.Kvs)
	}
	assertOneEtcdLeasePerKey(t, cli, 0)
}

// A reservation has no etcd lease to renew: Keep never tries, so it never
// finds "the lease" gone and re-acquires (which made a reservation an
// expiring lease). Keep's waits are cut 100,000 times: a day is 0.9 s.
func TestKeepReservationNoFalseLeaseGone(t *testing.T) {
	te := startEtcd(t)
	cli := te.client(t)
	cfg := putConfig(t, cli, "/coreos.com/network", `{"Network":"10.5.0.0/16","Backend":{"Type":"host-gw"}}`)
	ctx := ctxT(t, 30*time.Second)
	key := "/coreos.com/network/subnets/10.5.77.0-24"
	if _, err := cli.Put(ctx, key, `{"PublicIP":"192.168.3.3","PublicIPv6":null,"BackendType":"host-gw"}`); err != nil {
		t.Fatal(err)
	}
	m, log := newManager(t, cli, Options{})
	m.newTimer = func(d time.Duration) *time.Timer { return time.NewTimer(d / 100000) }
	l, err := m.Acquire(ctx, cfg, subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("192.168.3.3"), BackendType: "host-gw"}, subnet.Env{}, nil)
	if err != nil || heldID(m) != 0 {
		t.Fatalf("reservation: %v %v, etcd lease %x", l, err, heldID(m))
	}
	kctx, cancel := context.WithTimeout(ctx, 2500*time.Millisecond)
	defer cancel()
	if err := m.Keep(kctx, cfg, l); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"lease is gone", "re-acquir", "renewing", "lease renewed"} {
		if strings.Contains(strings.ToLower(log.String()), strings.ToLower(bad)) {
			t.Errorf("a reservation's Keep logged %q:\n%s", bad, log)
		}
	}
	resp, _ := cli.Get(ctx, key)
	if len(resp.Kvs) != 1 || resp.Kvs[0].Lease != 0 {
		t.Errorf("reservation turned into %v", resp.Kvs)
	}
}

// One Keep running longer than the TTL renews the same etcd lease before
// it expires: with a margin shorter than TTL - TTL/3 (the clamp), only
// "expiry minus margin" keeps the key; a renewal scheduled later (expiry
// plus margin) lets it expire, and Keep re-creates it on a new etcd lease.
func TestKeepRenewsBeforeExpiry(t *testing.T) {
	te := startEtcd(t)
	cli := te.client(t)
	cfg := putConfig(t, cli, "/coreos.com/network", `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`)
	ctx := ctxT(t, 30*time.Second)
	// Renewals at 4 s and 8 s; the lease would expire at 6 s.
	m, log := newManager(t, cli, Options{TTL: 6 * time.Second, RenewMargin: 2 * time.Second})
	var renewed []time.Time
	m.opt.OnLease = func(l subnet.Lease) { renewed = append(renewed, l.Expiration) }
	l, err := m.Acquire(ctx, cfg, vxAttrs("192.168.9.9", "02:00:00:00:00:01"), subnet.Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := heldID(m)
	kctx, cancel := context.WithTimeout(ctx, 9500*time.Millisecond)
	defer cancel()
	if err := m.Keep(kctx, cfg, l); err != nil {
		t.Fatal(err)
	}
	lower := strings.ToLower(log.String())
	if strings.Contains(lower, "lease is gone") || strings.Contains(lower, "re-acquir") {
		t.Errorf("the lease lapsed:\n%s", log)
	}
	if len(renewed) < 2 {
		t.Errorf("%d renewals in 9.5 s on a 6 s TTL, want 2:\n%s", len(renewed), log)
	}
	if heldID(m) != id {
		t.Errorf("etcd lease %x at the end, want %x", heldID(m), id)
	}
	resp, err := cli.Get(ctx, m.KeyFor(l))
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease != id {
		t.Errorf("key %v %v, want it on etcd lease %x", resp, err, id)
	}
}

// After a lost watch Keep reads our key again, and checks its owner there
// too: here the watch is lost at once (it starts at a compacted revision)
// and the key was claimed meanwhile.
func TestKeepChecksOwnerAfterLostWatch(t *testing.T) {
	te := startEtcd(t)
	cli := te.client(t)
	cfg := putConfig(t, cli, "/coreos.com/network", `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`)
	ctx := ctxT(t, 30*time.Second)
	m, log := newManager(t, cli, Options{})
	l, err := m.Acquire(ctx, cfg, vxAttrs("192.168.9.1", "02:00:00:00:00:01"), subnet.Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, m.KeyFor(l), `{"PublicIP":"192.168.9.99","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:99"}}`); err != nil {
		t.Fatal(err)
	}
	r, err := cli.Put(ctx, "/coreos.com/network/other", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, r.Header.Revision); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Keep(ctx, cfg, l) }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrSubnetChanged) {
			t.Fatalf("Keep: %v, want ErrSubnetChanged", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Keep did not notice the claim when it read the key again; log:\n%s", log)
	}
	if !strings.Contains(log.String(), `msg="Our subnet was claimed by another node" subnet=`+l.String()+" publicIP=192.168.9.99\n") {
		t.Errorf("log:\n%s", log)
	}
}
