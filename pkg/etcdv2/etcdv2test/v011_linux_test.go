//go:build linux

package etcdv2test_test

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flannelng/flannel/pkg/etcdv2"
	"github.com/flannelng/flannel/pkg/etcdv2/etcdv2test"
	"github.com/flannelng/flannel/pkg/lab"
)

// TestPrivilegedV011Node writes config and leases as two v0.11 nodes would,
// on a real etcd 3.5 with the v2 API, and checks what a v2 watcher sees.
func TestPrivilegedV011Node(t *testing.T) {
	lab.SkipUnlessPrivileged(t)
	var bins lab.Binaries
	lab.RequireEtcdV2Binary(t, &bins)
	l := lab.NewT(t, lab.Options{Binaries: bins})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := l.StartEtcdV2(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := l.EtcdV2()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	const cfg = `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`
	if err := etcdv2test.WriteConfig(ctx, c, etcdv2test.DefaultPrefix, cfg); err != nil {
		t.Fatal(err)
	}
	if g, err := c.Get(ctx, "/coreos.com/network/config", false); err != nil || g.Node.Value != cfg || g.Node.TTL != 0 {
		t.Fatalf("config: %+v, %v", g, err)
	}

	a := &etcdv2test.Node{Client: c, PublicIP: netip.MustParseAddr("10.210.0.1"), Backend: etcdv2test.BackendVxlan, VtepMAC: "66:52:c2:e4:ae:d7"}
	b := &etcdv2test.Node{Client: c, PublicIP: netip.MustParseAddr("10.210.0.2"), Backend: etcdv2test.BackendVxlan, VtepMAC: "66:52:c2:e4:ae:d8"}
	s1 := netip.MustParsePrefix("10.244.82.0/24")
	r, err := a.Acquire(ctx, s1)
	if err != nil {
		t.Fatal(err)
	}
	if r.Action != etcdv2.ActionCreate || r.Node.TTL != 86400 || r.Node.Key != "/coreos.com/network/subnets/10.244.82.0-24" ||
		r.Node.Value != `{"PublicIP":"10.210.0.1","BackendType":"vxlan","BackendData":{"VtepMAC":"66:52:c2:e4:ae:d7"}}` {
		t.Errorf("acquire: %+v node %+v", r, r.Node)
	}
	if _, err := b.Acquire(ctx, s1); !etcdv2.IsNodeExist(err) {
		t.Errorf("second node acquiring a held subnet: %v, want code 105", err)
	}
	cursor := r.Node.ModifiedIndex
	rn, err := a.Renew(ctx, s1)
	if err != nil {
		t.Fatal(err)
	}
	if rn.Action != etcdv2.ActionSet || rn.Node.CreatedIndex != rn.Node.ModifiedIndex || rn.Node.TTL != 86400 {
		t.Errorf("renew: %+v node %+v", rn, rn.Node)
	}
	s2 := netip.MustParsePrefix("10.244.150.0/24")
	rs, err := b.Reserve(ctx, s2)
	if err != nil {
		t.Fatal(err)
	}
	if rs.Node.TTL != 0 || rs.Node.Expiration != nil {
		t.Errorf("reservation: %+v", rs.Node)
	}

	// A watcher sees: set (renew), set (reservation), then the renewals of
	// KeepRenewing.
	rctx, rcancel := context.WithCancel(ctx)
	var failures atomic.Int32
	done := make(chan struct{})
	go func() {
		defer close(done)
		a.KeepRenewing(rctx, s1, 100*time.Millisecond, func(error) { failures.Add(1) })
	}()
	var renewals int
	for renewals < 3 {
		w, err := c.Watch(ctx, etcdv2test.SubnetsKey(etcdv2test.DefaultPrefix), true, cursor)
		if err != nil {
			t.Fatal(err)
		}
		cursor = w.Node.ModifiedIndex
		if w.Node.Key == a.Key(s1) && w.Action == etcdv2.ActionSet && w.Node.Value == a.Value() {
			renewals++
		}
	}
	rcancel()
	<-done
	if n := failures.Load(); n != 0 {
		t.Errorf("%d renewals failed", n)
	}
}
