package etcd

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

// ClaimSubnet, the v3 half of the migration mode's claim: a free subnet is
// created with an etcd lease; our own key (a flannelctl migrate-v2 copy)
// is adopted with its etcd lease kept; another node's key or an
// overlapping lease is ErrTaken at once; our key for another subnet is
// replaced; a subnet outside the network is refused without retrying.
func TestClaimSubnet(t *testing.T) {
	te := startEtcd(t)
	cli := te.client(t)
	cfg := putConfig(t, cli, "/coreos.com/network", `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`)
	ctx := ctxT(t, 30*time.Second)
	m, _ := newManager(t, cli, Options{})
	ours := vxAttrs("192.168.0.1", "0e:00:00:00:00:01")

	l, err := m.ClaimSubnet(ctx, cfg, ours, netip.MustParsePrefix("10.5.7.0/24"))
	if err != nil || l.Subnet.String() != "10.5.7.0/24" || heldID(m) == 0 {
		t.Fatalf("free subnet: %+v %v (etcd lease %d)", l, err, heldID(m))
	}
	resp, _ := cli.Get(ctx, "/coreos.com/network/subnets/10.5.7.0-24")
	if len(resp.Kvs) != 1 || resp.Kvs[0].Lease != heldID(m) {
		t.Fatalf("key %v", resp.Kvs)
	}
	first := heldID(m)

	// Claimed again (a restart): the same key and etcd lease.
	m2, _ := newManager(t, cli, Options{})
	if l, err = m2.ClaimSubnet(ctx, cfg, ours, netip.MustParsePrefix("10.5.7.0/24")); err != nil || heldID(m2) != first {
		t.Fatalf("own key: %+v %v, etcd lease %d want %d", l, err, heldID(m2), first)
	}

	// Another node's key, and a lease overlapping the subnet.
	other := vxAttrs("192.168.0.2", "0e:00:00:00:00:02")
	if _, err := m.ClaimSubnet(ctx, cfg, other, netip.MustParsePrefix("10.5.7.0/24")); !errors.Is(err, ErrTaken) {
		t.Errorf("another node's key: %v, want ErrTaken", err)
	}
	if _, err := cli.Put(ctx, "/coreos.com/network/subnets/10.5.8.0-23", `{"PublicIP":"192.168.0.3"}`); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ClaimSubnet(ctx, cfg, other, netip.MustParsePrefix("10.5.9.0/24")); !errors.Is(err, ErrTaken) {
		t.Errorf("overlapping lease: %v, want ErrTaken", err)
	}

	// Our key for another subnet is replaced in one transaction, on the
	// same etcd lease.
	l, err = m2.ClaimSubnet(ctx, cfg, ours, netip.MustParsePrefix("10.5.20.0/24"))
	if err != nil || l.Subnet.String() != "10.5.20.0/24" {
		t.Fatalf("replace: %+v %v", l, err)
	}
	if resp, _ := cli.Get(ctx, "/coreos.com/network/subnets/10.5.7.0-24"); len(resp.Kvs) != 0 {
		t.Error("our old key was left behind")
	}
	if heldID(m2) != first {
		t.Errorf("replacement on etcd lease %d, want %d", heldID(m2), first)
	}

	// Outside the network: an error at once, not a retry loop.
	done := make(chan error, 1)
	go func() {
		_, err := m.ClaimSubnet(ctx, cfg, ours, netip.MustParsePrefix("10.9.1.0/24"))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || errors.Is(err, ErrTaken) {
			t.Errorf("outside the network: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a subnet outside the network was retried")
	}
}
