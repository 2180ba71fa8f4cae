package etcd

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/subnet"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestAppendKeyNameIsMakeKey(t *testing.T) {
	for _, c := range []struct{ v4, v6 string }{
		{"10.5.21.0/24", ""},
		{"0.0.0.0/1", ""},
		{"255.255.255.255/32", ""},
		{"10.12.13.0/24", "fd00:12:13::/56"},
		{"", "fd00:10:0:5::/64"},
		{"", "::/0"},
	} {
		var v4, v6 netip.Prefix
		if c.v4 != "" {
			v4 = netip.MustParsePrefix(c.v4)
		}
		if c.v6 != "" {
			v6 = netip.MustParsePrefix(c.v6)
		}
		if got, want := string(appendKeyName(nil, v4, v6)), subnet.MakeKey(v4, v6); got != want {
			t.Errorf("%v %v: %q, want %q", v4, v6, got, want)
		}
	}
}

// Keys that are no lease flannel writes (a hand-written reservation with
// host bits, junk before the subnet, a length written "024", a value that
// does not parse) are skipped, but what they name is never handed out:
// Acquire neither hangs on them (adopting or re-using a subnet whose
// canonical key does not exist, or exists unreadable) nor overlaps them.
func TestNonCanonicalKeysNeverHangAcquire(t *testing.T) {
	te := startEtcd(t)
	cli := te.client(t)
	cfg := putConfig(t, cli, "/coreos.com/network", `{"Network":"10.5.0.0/20","SubnetMin":"10.5.1.0","SubnetMax":"10.5.6.0","Backend":{"Type":"host-gw"}}`)
	ctx := ctxT(t, 30*time.Second)
	for k, v := range map[string]string{
		"10.5.1.7-24":  `{"PublicIP":"192.168.3.3"}`, // ours, with a typo
		"10.5.2.0-24":  `{not json`,
		"x10.5.3.0-24": `{"PublicIP":"192.168.3.4"}`,
		"10.5.4.0-024": `{"PublicIP":"192.168.3.5"}`,
		"10.5.5.0-24":  `{"PublicIP":"192.168.3.6"}`, // a good one
	} {
		if _, err := cli.Put(ctx, "/coreos.com/network/subnets/"+k, v); err != nil {
			t.Fatal(err)
		}
	}
	m, log := newManager(t, cli, Options{})
	attrs := subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("192.168.3.3"), BackendType: "host-gw"}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// The previous subnet.env names the subnet of the unreadable key.
	l, err := m.Acquire(actx, cfg, attrs, subnet.Env{Subnet: netip.MustParsePrefix("10.5.2.0/24")}, nil)
	if err != nil {
		t.Fatalf("Acquire: %v; log:\n%s", err, log)
	}
	if l.Subnet.String() != "10.5.6.0/24" {
		t.Errorf("acquired %s, want the only free subnet 10.5.6.0/24", l)
	}
	if n := strings.Count(log.String(), "Ignoring bad subnet node"); n != 4 {
		t.Errorf("%d bad keys logged, want 4:\n%s", n, log)
	}
	if !strings.Contains(log.String(), `is not the key of 10.5.1.0/24, which is \"10.5.1.0-24\"`) {
		t.Errorf("the typo is not named:\n%s", log)
	}

	// ClaimSubnet (the migration mode) refuses such a subnet at once.
	if _, err := m.ClaimSubnet(ctx, cfg, attrs, netip.MustParsePrefix("10.5.3.0/24")); err == nil || !strings.Contains(err.Error(), "not a lease") {
		t.Errorf("ClaimSubnet of a subnet named by a bad key: %v", err)
	}
}

// A watcher never keeps a lease under a key etcd does not have: a key
// with host bits set, listed and then deleted, leaves no phantom behind.
func TestWatcherNoPhantomLease(t *testing.T) {
	te := startEtcd(t)
	cli := te.client(t)
	putConfig(t, cli, "/coreos.com/network", `{"Network":"10.5.0.0/16"}`)
	ctx := ctxT(t, 30*time.Second)
	m, log := newManager(t, cli, Options{})
	if _, err := cli.Put(ctx, "/coreos.com/network/subnets/10.5.52.7-24", `{"PublicIP":"192.168.0.7","PublicIPv6":null}`); err != nil {
		t.Fatal(err)
	}
	listing, err := m.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w := m.NewWatcherFrom(listing)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go w.Run(wctx)
	if _, err := cli.Delete(ctx, "/coreos.com/network/subnets/10.5.52.7-24"); err != nil {
		t.Fatal(err)
	}
	r, err := cli.Put(ctx, "/coreos.com/network/subnets/10.5.53.0-24", `{"PublicIP":"192.168.0.8","PublicIPv6":null}`)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for w.Revision() < r.Header.Revision {
		if time.Now().After(deadline) {
			t.Fatal("watcher did not catch up")
		}
		time.Sleep(20 * time.Millisecond)
	}
	ls, _ := w.Leases()
	if len(ls) != 1 || ls[0].Subnet.String() != "10.5.53.0/24" {
		t.Errorf("watcher holds %v, want only 10.5.53.0/24", ls)
	}
	if n := strings.Count(log.String(), "Ignoring bad subnet node"); n != 1 {
		t.Errorf("bad key logged %d times, want once:\n%s", n, log)
	}
}

func badKeyCount(m *Manager) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.bad.keys)
}

// Bad keys are remembered (to log each once) only while they exist, and
// never more than maxBadKeys of them.
func TestBadKeysBounded(t *testing.T) {
	te := startEtcd(t)
	cli := te.client(t)
	putConfig(t, cli, "/coreos.com/network", `{"Network":"10.5.0.0/16"}`)
	ctx := ctxT(t, 60*time.Second)
	m, log := newManager(t, cli, Options{})
	const n = maxBadKeys + 100
	for i := 0; i < n; i += 100 {
		var ops []clientv3.Op
		for j := i; j < min(i+100, n); j++ {
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("/coreos.com/network/subnets/junk-%d", j), "x"))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if _, err := m.Snapshot(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if c := badKeyCount(m); c > maxBadKeys {
		t.Errorf("%d bad keys remembered, want at most %d", c, maxBadKeys)
	}
	if c := strings.Count(log.String(), "Ignoring bad subnet node"); c > maxBadKeys {
		t.Errorf("%d bad keys logged, want at most %d", c, maxBadKeys)
	}
	if _, err := cli.Delete(ctx, "/coreos.com/network/subnets/junk-", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	if c := badKeyCount(m); c != 0 {
		t.Errorf("%d bad keys remembered after they were deleted", c)
	}
}
