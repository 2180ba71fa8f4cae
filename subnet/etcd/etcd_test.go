package etcd

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flannelng/flannel/subnet"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap/zapcore"
)

// testEtcd is a real etcd server on loopback, restartable on the same data
// directory and port.
type testEtcd struct {
	t         *testing.T
	dir       string
	clientURL url.URL
	peerURL   url.URL
	e         *embed.Etcd
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startEtcd(t *testing.T) *testEtcd {
	te := &testEtcd{t: t, dir: t.TempDir()}
	te.clientURL = url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	te.peerURL = url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	te.start()
	t.Cleanup(te.stop)
	return te
}

func (te *testEtcd) start() {
	cfg := embed.NewConfig()
	cfg.Dir = te.dir
	cfg.Name = "test"
	cfg.ListenClientUrls = []url.URL{te.clientURL}
	cfg.AdvertiseClientUrls = []url.URL{te.clientURL}
	cfg.ListenPeerUrls = []url.URL{te.peerURL}
	cfg.AdvertisePeerUrls = []url.URL{te.peerURL}
	cfg.InitialCluster = "test=" + te.peerURL.String()
	cfg.LogLevel = zapcore.FatalLevel.String()
	cfg.TickMs = 10
	cfg.ElectionMs = 100
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		te.t.Fatalf("start etcd: %v", err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(20 * time.Second):
		e.Close()
		te.t.Fatal("etcd did not become ready")
	}
	te.e = e
}

func (te *testEtcd) stop() {
	if te.e != nil {
		te.e.Close()
		te.e = nil
	}
}

func (te *testEtcd) client(t *testing.T) *clientv3.Client {
	cli, err := NewClient(ClientConfig{Endpoints: []string{te.clientURL.String()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *logBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func newManager(t *testing.T, cli *clientv3.Client, o Options) (*Manager, *logBuf) {
	lb := &logBuf{}
	o.Log = slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if o.Prefix == "" {
		o.Prefix = "/coreos.com/network"
	}
	return New(cli, o), lb
}

func putConfig(t *testing.T, cli *clientv3.Client, prefix, cfg string) *subnet.Config {
	if _, err := cli.Put(context.Background(), prefix+"/config", cfg); err != nil {
		t.Fatal(err)
	}
	c, err := subnet.ParseConfig([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func vxAttrs(ip string, mac string) subnet.LeaseAttrs {
	return subnet.LeaseAttrs{PublicIP: netip.MustParseAddr(ip), BackendType: "vxlan",
		BackendData: []byte(`{"VNI":1,"VtepMAC":"` + mac + `"}`)}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestAcquireFormatAndReuse(t *testing.T) {
	te := startEtcd(t)
	cli := te.client(t)
	cfg := putConfig(t, cli, "/coreos.com/network", `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`)
	ctx := ctxT(t, 30*time.Second)

	m1, _ := newManager(t, cli, Options{})
	got, _, err := m1.GetConfig(ctx)
	if err != nil || got.Network != cfg.Network {
		t.Fatalf("GetConfig: %v %v", got, err)
	}
	a, err := m1.Acquire(ctx, cfg, vxAttrs("192.168.50.1", "a2:2a:fd:9f:55:f3"), subnet.Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	aID := heldID(m1)
	b, err := m1.Acquire(ctx, cfg, vxAttrs("192.168.50.2", "a2:2a:fd:9f:55:f4"), subnet.Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a.Subnet == b.Subnet || a.Subnet.Overlaps(b.Subnet) || !cfg.Compatible(a.Subnet, netip.Prefix{}) {
		t.Fatalf("bad subnets %s %s", a, b)
	}
	resp, err := cli.Get(ctx, "/coreos.com/network/subnets/"+subnet.MakeKey(a.Subnet, netip.Prefix{}))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("key: %v %v", resp, err)
	}
	if v := string(resp.Kvs[0].Value); v != `{"PublicIP":"192.168.50.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"a2:2a:fd:9f:55:f3"}}` {
		t.Errorf("value %s", v)
	}
	ttl, err := cli.TimeToLive(ctx, clientv3.LeaseID(resp.Kvs[0].Lease))
	if err != nil || ttl.GrantedTTL != 86400 {
		t.Errorf("granted TTL %v %v", ttl, err)
	}

	// A restart of the same node (same PublicIP): same subnet, same etcd
	// lease, a changed MAC is written in place.
	m2, log2 := newManager(t, cli, Options{})
	again, err := m2.Acquire(ctx, cfg, vxAttrs("192.168.50.1", "a2:2a:fd:9f:55:ff"), subnet.Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if again.Subnet != a.Subnet || heldID(m2) != aID {
		t.Errorf("restart got %s lease %x, want %s lease %x", again, heldID(m2), a, aID)
	}
	if !strings.Contains(log2.String(), "for current IP (192.168.50.1), reusing") {
		t.Errorf("log: %s", log2)
	}
	resp, _ = cli.Get(ctx, m2.KeyFor(again))
	if !strings.Contains(string(resp.Kvs[0].Value), "a2:2a:fd:9f:55:ff") {
		t.Errorf("value not updated: %s", resp.Kvs[0].Value)
	}
}

func TestPreviousSubnetNotStolen(t *testing.T) {
	te := startEtcd(t)
	cli := te.client(t)
	cfg := putConfig(t, cli, "/kubernetes/network", `{"Network":"10.7.0.0/16","Backend":{"Type":"host-gw"}}`)
	ctx := ctxT(t, 30*time.Second)
	m, log := newManager(t, cli, Options{Prefix: "/kubernetes/network"})
	attrs := subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("10.0.0.1"), BackendType: "host-gw"}
	prev := subnet.Env{Subnet: netip.MustParsePrefix("10.7.42.0/24")}
	a, err := m.Acquire(ctx, cfg, attrs, prev, nil)
	if err != nil || a.Subnet != prev.Subnet {
		t.Fatalf("previous subnet not reused: %v %v", a, err)
	}
	if !strings.Contains(log.String(), "Found previously leased subnet (10.7.42.0/24), reusing") {
		t.Errorf("log: %s", log)
	}
	// Another node with a stale subnet.env naming the same subnet.
	attrs2 := subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("10.0.0.2"), BackendType: "host-gw"}
	b, err := m.Acquire(ctx, cfg, attrs2, prev, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b.Subnet == a.Subnet {
		t.Fatalf("stole %s", b)
	}
	if !strings.Contains(log.String(), "Previously leased subnet is now held by another node") {
		t.Errorf("log: %s", log)
	}
}

func TestConcurrentAcquire(t *testing.T) {
	te := startEtcd(t)
	cfg := putConfig(t, te.client(t), "/coreos.com/network", `{"Network":"10.8.0.0/16","SubnetMin":"10.8.1.0","SubnetMax":"10.8.80.0","Backend":{"Type":"vxlan"}}`)
	ctx := ctxT(t, 60*time.Second)
	const n = 50
	var wg sync.WaitGroup
	res := make([]subnet.Lease, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			cli := te.client(t) // one client each, like separate daemons
			m, _ := newManager(t, cli, Options{})
			res[i], errs[i] = m.Acquire(ctx, cfg, vxAttrs(fmt.Sprintf("192.168.1.%d", i+1), "aa:bb:cc:dd:ee:ff"), subnet.Env{}, nil)
		}(i)
	}
	wg.Wait()
	for i := 0; i < n; i++ {
		if errs[i] != nil {
			t.Fatalf("acquirer %d: %v", i, errs[i])
		}
		for j := 0; j < i; j++ {
			if res[i].Subnet.Overlaps(res[j].Subnet) {
				t.Fatalf("acquirers %d and %d share %s", i, j, res[i])
			}
		}
	}
	m, _ := newManager(t, te.client(t), Options{})
	leases, _, _ := m.List(ctx)
	if len(leases) != n {
		t.Fatalf("%d leases in etcd, want %d", len(leases), n)
	}
	assertOneEtcdLeasePerKey(t, te.client(t), n)
}

// A lease key written by another program with a different prefix length
// must still block every subnet it overlaps.
func TestOverlapDifferentLength(t *testing.T) {
	te := startEtcd(t)
	cli := te.client(t)
	cfg := putConfig(t, cli, "/coreos.com/network", `{"Network":"10.9.0.0/16","SubnetMin":"10.9.4.0","SubnetMax":"10.9.9.0"}`)
	ctx := ctxT(t, 30*time.Second)
	cli.Put(ctx, "/coreos.com/network/subnets/10.9.4.0-22", `{"PublicIP":"1.1.1.1","PublicIPv6":null}`)
	cli.Put(ctx, "/coreos.com/network/subnets/10.9.8.0-24", `{"PublicIP":"1.1.1.2","PublicIPv6":null}`)
	m, _ := newManager(t, cli, Options{})
	l, err := m.Acquire(ctx, cfg, subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("1.1.1.3")}, subnet.Env{}, nil)
	if err != nil || l.Subnet.String() != "10.9.9.0/24" {
		t.Fatalf("got %v %v, want the only free subnet 10.9.9.0/24", l, err)
	}
	var retries int
	ctx2, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = m.Acquire(ctx2, cfg, subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("1.1.1.4")}, subnet.Env{}, func(err error) {
		retries++
		if !strings.Contains(err.Error(), "out of subnets: no free IPv4 /24 subnet in range 10.9.4.0 ... 10.9.9.0 (3 leases exist)") {
			t.Errorf("error %v", err)
		}
	})
	if err == nil || retries == 0 {
		t.Fatalf("full network: %v after %d retries", err, retries)
	}
}

func assertOneEtcdLeasePerKey(t *testing.T, cli *clientv3.Client, keys int) {
	t.Helper()
	ls, err := cli.Leases(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(ls.Leases) != keys {
		t.Errorf("etcd holds %d leases for %d keys", len(ls.Leases), keys)
	}
}

func TestRenewAndRestartsKeepOneLease(t *testing.T) {
	te := startEtcd(t)
	cli := te.client(t)
	cfg := putConfig(t, cli, "/coreos.com/network", `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`)
	ctx := ctxT(t, 60*time.Second)
	// Short TTL: Keep renews every TTL/3 = 1 s.
	opts := Options{TTL: 3 * time.Second, RenewMargin: time.Hour}
	var first subnet.Lease
	for i := 0; i < 20; i++ {
		m, _ := newManager(t, cli, opts)
		l, err := m.Acquire(ctx, cfg, vxAttrs("192.168.9.9", "02:00:00:00:00:01"), subnet.Env{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = l
		} else if l.Subnet != first.Subnet {
			t.Fatalf("restart %d got %s, want %s", i, l, first)
		}
		if i%5 == 0 {
			// Let Keep renew a couple of times.
			kctx, cancel := context.WithTimeout(ctx, 2500*time.Millisecond)
			if err := m.Keep(kctx, cfg, l); err != nil {
				t.Fatal(err)
			}
			cancel()
		}
	}
	assertOneEtcdLeasePerKey(t, cli, 1)
	// The key outlived 20 restarts and 9 s of wall time on a 3 s TTL only
	// because renewals worked.
	resp, _ := cli.Get(ctx, "/coreos.com/network/subnets/"+first.Key())
	if len(resp.Kvs) != 1 {
		t.Fatal("lease key expired")
	}
}

func TestReservationStaysReservation(t *testing.T) {
	te := startEtcd(t)
	cli := te.client(t)
	cfg := putConfig(t, cli, "/coreos.com/network", `{"Network":"10.5.0.0/16","Backend":{"Type":"host-gw"}}`)
	ctx := ctxT(t, 30*time.Second)
	key := "/coreos.com/network/subnets/10.5.77.0-24"
	cli.Put(ctx, key, `{"PublicIP":"192.168.3.3"}`)
	m, _ := newManager(t, cli, Options{})
	l, err := m.Acquire(ctx, cfg, subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("192.168.3.3"), BackendType: "host-gw"}, subnet.Env{}, nil)
	if err != nil || l.Subnet.String() != "10.5.77.0/24" || heldID(m) != 0 || !l.Expiration.IsZero() {
		t.Fatalf("got %+v %v", l, err)
	}
	resp, _ := cli.Get(ctx, key)
	if resp.Kvs[0].Lease != 0 {
		t.Error("reservation got an etcd lease")
	}
	if string(resp.Kvs[0].Value) != `{"PublicIP":"192.168.3.3","PublicIPv6":null,"BackendType":"host-gw"}` {
		t.Errorf("value %s", resp.Kvs[0].Value)
	}
}

func TestKeepReacquiresDeletedKey(t *testing.T) {
	te := startEtcd(t)
	cli := te.client(t)
	cfg := putConfig(t, cli, "/coreos.com/network", `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`)
	ctx := ctxT(t, 30*time.Second)
	m, log := newManager(t, cli, Options{})
	l, err := m.Acquire(ctx, cfg, vxAttrs("192.168.9.1", "02:00:00:00:00:01"), subnet.Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Keep(kctx, cfg, l) }()
	time.Sleep(200 * time.Millisecond)
	if _, err := cli.Delete(ctx, m.KeyFor(l)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, _ := cli.Get(ctx, m.KeyFor(l))
		if len(resp.Kvs) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("key not re-created; log:\n%s", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "Our lease is gone; re-acquiring the same subnet") {
		t.Errorf("log: %s", log)
	}
	assertOneEtcdLeasePerKey(t, cli, 1)
}

func TestWatcherSurvivesRestartAndCompaction(t *testing.T) {
	te := startEtcd(t)
	cli := te.client(t)
	putConfig(t, cli, "/coreos.com/network", `{"Network":"10.5.0.0/16"}`)
	ctx := ctxT(t, 60*time.Second)
	m, log := newManager(t, cli, Options{RPCTimeout: time.Second})
	put := func(c *clientv3.Client, n int) {
		if _, err := c.Put(ctx, fmt.Sprintf("/coreos.com/network/subnets/10.5.%d.0-24", n), fmt.Sprintf(`{"PublicIP":"192.168.0.%d","PublicIPv6":null}`, n)); err != nil {
			t.Fatal(err)
		}
	}
	put(cli, 1)
	put(cli, 2)
	w := m.NewWatcher()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go w.Run(wctx)
	waitSet := func(want ...int) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			ls, _ := w.Leases()
			got := map[string]bool{}
			for _, l := range ls {
				got[l.Subnet.String()] = true
			}
			ok := len(got) == len(want)
			for _, n := range want {
				ok = ok && got[fmt.Sprintf("10.5.%d.0/24", n)]
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("lease set %v, want %v; log:\n%s", got, want, log)
			}
			select {
			case <-w.Updated():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	waitSet(1, 2)
	// A malformed value is skipped and logged once.
	cli.Put(ctx, "/coreos.com/network/subnets/10.5.9.0-24", `{not json`)
	put(cli, 3)
	waitSet(1, 2, 3)
	if n := strings.Count(log.String(), "Ignoring bad subnet node"); n != 1 {
		t.Errorf("bad node logged %d times", n)
	}

	// etcd restart: changes made while the watch is down are caught up.
	te.stop()
	time.Sleep(300 * time.Millisecond)
	te.start()
	cli2 := te.client(t)
	cli2.Delete(ctx, "/coreos.com/network/subnets/10.5.1.0-24")
	put(cli2, 4)
	waitSet(2, 3, 4)

	// Compaction: stop delivering to the watcher by restarting etcd again,
	// change and compact meanwhile, then check the final set.
	te.stop()
	te.start()
	cli3 := te.client(t)
	put(cli3, 5)
	cli3.Delete(ctx, "/coreos.com/network/subnets/10.5.2.0-24")
	for i := 0; i < 5; i++ {
		cli3.Put(ctx, "/coreos.com/network/other", fmt.Sprint(i))
	}
	r, _ := cli3.Get(ctx, "/coreos.com/network/other")
	if _, err := cli3.Compact(ctx, r.Header.Revision); err != nil {
		t.Fatal(err)
	}
	waitSet(3, 4, 5)
}

// A network switched from IPv4-only to dual stack: upstream panics on the
// existing IPv4-only leases; here each node keeps its IPv4 subnet, gains
// an IPv6 one, and its key is replaced in one transaction.
func TestUpgradeToDualStack(t *testing.T) {
	te := startEtcd(t)
	cli := te.client(t)
	ctx := ctxT(t, 30*time.Second)
	v4cfg := putConfig(t, cli, "/coreos.com/network", `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`)
	m, log := newManager(t, cli, Options{})
	a, err := m.Acquire(ctx, v4cfg, vxAttrs("192.168.50.1", "02:00:00:00:00:01"), subnet.Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	aID := heldID(m)
	// Another node's IPv4-only lease stays around.
	if _, err := m.Acquire(ctx, v4cfg, vxAttrs("192.168.50.2", "02:00:00:00:00:02"), subnet.Env{}, nil); err != nil {
		t.Fatal(err)
	}
	dual := putConfig(t, cli, "/coreos.com/network", `{"EnableIPv6":true,"Network":"10.5.0.0/16","IPv6Network":"fd00:10::/56","Backend":{"Type":"vxlan"}}`)
	attrs := vxAttrs("192.168.50.1", "02:00:00:00:00:01")
	attrs.PublicIPv6 = netip.MustParseAddr("fd00:50::1")
	b, err := m.Acquire(ctx, dual, attrs, subnet.Env{Subnet: a.Subnet}, nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, log)
	}
	if b.Subnet != a.Subnet || !b.IPv6Subnet.IsValid() || b.IPv6Subnet.Bits() != 64 || heldID(m) != aID {
		t.Fatalf("upgraded lease %+v from %+v", b, a)
	}
	resp, _ := cli.Get(ctx, "/coreos.com/network/subnets/", clientv3.WithPrefix())
	if len(resp.Kvs) != 2 {
		t.Fatalf("%d keys after the upgrade", len(resp.Kvs))
	}
	want := "/coreos.com/network/subnets/" + subnet.MakeKey(a.Subnet, b.IPv6Subnet)
	found := false
	for _, kv := range resp.Kvs {
		found = found || string(kv.Key) == want
	}
	if !found {
		t.Errorf("no key %s", want)
	}
	assertOneEtcdLeasePerKey(t, cli, 2)
}

func TestIPv6OnlyLeases(t *testing.T) {
	te := startEtcd(t)
	cli := te.client(t)
	ctx := ctxT(t, 30*time.Second)
	cfg := putConfig(t, cli, "/coreos.com/network", `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10::/56","Backend":{"Type":"host-gw"}}`)
	m, _ := newManager(t, cli, Options{})
	attrs := func(ip string) subnet.LeaseAttrs {
		return subnet.LeaseAttrs{PublicIPv6: netip.MustParseAddr(ip), BackendType: "host-gw"}
	}
	a, err := m.Acquire(ctx, cfg, attrs("fd00:30::11"), subnet.Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A second IPv6-only node must not match the first one's lease (upstream
	// compares PublicIP 0.0.0.0 and would).
	b, err := m.Acquire(ctx, cfg, attrs("fd00:30::12"), subnet.Env{}, nil)
	if err != nil || b.IPv6Subnet == a.IPv6Subnet {
		t.Fatalf("second node: %v %v", b, err)
	}
	again, err := m.Acquire(ctx, cfg, attrs("fd00:30::11"), subnet.Env{}, nil)
	if err != nil || again.IPv6Subnet != a.IPv6Subnet {
		t.Fatalf("restart: %v %v", again, err)
	}
	resp, _ := cli.Get(ctx, m.KeyFor(a))
	if len(resp.Kvs) != 1 || !strings.HasPrefix(m.KeyFor(a), "/coreos.com/network/subnets/0.0.0.0-0&fd00:10:") {
		t.Fatalf("key %s", m.KeyFor(a))
	}
	if v := string(resp.Kvs[0].Value); v != `{"PublicIP":"0.0.0.0","PublicIPv6":"fd00:30::11","BackendType":"host-gw"}` {
		t.Errorf("value %s", v)
	}
}

// The daemon reads the leases once at start: the allocator's first attempt
// and the watcher start from that listing. A listing that went stale in
// between must cost a retry, never an overlapping lease or a missed event.
func TestStartFromOneListing(t *testing.T) {
	te := startEtcd(t)
	cli := te.client(t)
	// Three usable subnets: 10.5.1-3.0/24 (SubnetMin skips the first).
	cfg := putConfig(t, cli, "/coreos.com/network", `{"Network":"10.5.0.0/22","SubnetLen":24}`)
	ctx := ctxT(t, 30*time.Second)
	var mu sync.Mutex
	lists := 0
	m, log := newManager(t, cli, Options{OnRequest: func(kind string, _ time.Duration, _ error) {
		if kind == "list" {
			mu.Lock()
			lists++
			mu.Unlock()
		}
	}})
	listCount := func() int { mu.Lock(); defer mu.Unlock(); return lists }
	put := func(n int) {
		if _, err := cli.Put(ctx, fmt.Sprintf("/coreos.com/network/subnets/10.5.%d.0-24", n), fmt.Sprintf(`{"PublicIP":"192.168.0.%d","PublicIPv6":null}`, n)); err != nil {
			t.Fatal(err)
		}
	}
	put(1)
	listing, err := m.Snapshot(ctx)
	if err != nil || len(listing.Leases) != 1 {
		t.Fatalf("snapshot: %v, %d leases", err, len(listing.Leases))
	}
	if listCount() != 1 {
		t.Fatalf("OnRequest saw %d list requests for one Snapshot", listCount())
	}
	put(2) // after the listing: by it 10.5.2.0 and 10.5.3.0 are free, in fact only 10.5.3.0

	l, err := m.AcquireFrom(ctx, listing, cfg, vxAttrs("192.168.0.9", "02:00:00:00:00:09"), subnet.Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Subnet.String(); got != "10.5.3.0/24" {
		t.Fatalf("acquired %s from a stale listing, want the only free subnet 10.5.3.0/24; log:\n%s", got, log)
	}

	w := m.NewWatcherFrom(listing)
	if ls, synced := w.Leases(); !synced || len(ls) != 1 {
		t.Fatalf("watcher from listing: synced %v, %d leases; want the listing's one", synced, len(ls))
	}
	before := listCount()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go w.Run(wctx)
	// Everything after the listing's revision arrives through the watch:
	// the lease put after it and our own.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ls, _ := w.Leases()
		got := map[string]bool{}
		for _, x := range ls {
			got[x.Subnet.String()] = true
		}
		if len(got) == 3 && got["10.5.1.0/24"] && got["10.5.2.0/24"] && got["10.5.3.0/24"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("watcher set %v, want 10.5.1-3.0/24", got)
		}
		select {
		case <-w.Updated():
		case <-time.After(50 * time.Millisecond):
		}
	}
	if n := listCount() - before; n != 0 {
		t.Errorf("watcher started from a listing made %d list requests, want 0", n)
	}
}

// Changes hands out what changed since the consumer last looked: deleted
// and replaced leases as they were, new and replaced ones as they are.
func TestWatcherChanges(t *testing.T) {
	te := startEtcd(t)
	cli := te.client(t)
	putConfig(t, cli, "/coreos.com/network", `{"Network":"10.5.0.0/16"}`)
	ctx := ctxT(t, 30*time.Second)
	m, _ := newManager(t, cli, Options{})
	put := func(n int, ip string) {
		if _, err := cli.Put(ctx, fmt.Sprintf("/coreos.com/network/subnets/10.5.%d.0-24", n), `{"PublicIP":"`+ip+`","PublicIPv6":null}`); err != nil {
			t.Fatal(err)
		}
	}
	put(1, "192.168.0.1")
	put(2, "192.168.0.2")
	w := m.NewWatcher()
	if _, _, all := w.Changes(); !all {
		t.Fatal("Changes before the first listing must ask for the whole set")
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go w.Run(wctx)
	waitRev := func(rev int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for w.Revision() < rev {
			if time.Now().After(deadline) {
				t.Fatalf("watcher at revision %d, want %d", w.Revision(), rev)
			}
			select {
			case <-w.Updated():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	r, _ := cli.Get(ctx, "x")
	waitRev(r.Header.Revision)
	if _, _, all := w.Changes(); !all {
		t.Fatal("Changes after the first listing must ask for the whole set")
	}
	if ls, _ := w.TakeAll(); len(ls) != 2 {
		t.Fatalf("TakeAll: %d leases", len(ls))
	}
	if gone, came, all := w.Changes(); all || len(gone)+len(came) != 0 {
		t.Fatalf("nothing changed, got gone %v came %v all %v", gone, came, all)
	}

	put(2, "192.168.0.22")                                     // replaced
	cli.Delete(ctx, "/coreos.com/network/subnets/10.5.1.0-24") // deleted
	put(3, "192.168.0.3")                                      // new
	put(3, "192.168.0.33")                                     // new, then replaced: still just new
	resp, _ := cli.Put(ctx, "/coreos.com/network/subnets/10.5.4.0-24", `{"PublicIP":"192.168.0.4"}`)
	cli.Delete(ctx, "/coreos.com/network/subnets/10.5.4.0-24") // came and went: nothing
	waitRev(resp.Header.Revision + 1)
	gone, came, all := w.Changes()
	if all {
		t.Fatal("a few changes must be listed one by one")
	}
	str := func(ls []subnet.Lease) string {
		var s []string
		for _, l := range ls {
			s = append(s, l.Subnet.String()+"@"+l.Attrs.PublicIP.String())
		}
		slices.Sort(s)
		return strings.Join(s, " ")
	}
	if got, want := str(gone), "10.5.1.0/24@192.168.0.1 10.5.2.0/24@192.168.0.2"; got != want {
		t.Errorf("gone = %s, want %s", got, want)
	}
	if got, want := str(came), "10.5.2.0/24@192.168.0.22 10.5.3.0/24@192.168.0.33"; got != want {
		t.Errorf("came = %s, want %s", got, want)
	}
	if gone, came, _ := w.Changes(); len(gone)+len(came) != 0 {
		t.Errorf("changes handed out twice: %v %v", gone, came)
	}

	// More changes than are worth listing: the consumer takes the set.
	var last int64
	for i := 0; i < subnet.MaxPendingLeases+8; i += 100 {
		var ops []clientv3.Op
		for j := i; j < min(i+100, subnet.MaxPendingLeases+8); j++ {
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("/coreos.com/network/subnets/10.5.%d.%d-32", 100+j/256, j%256), `{"PublicIP":"192.168.1.1"}`))
		}
		tr, err := cli.Txn(ctx).Then(ops...).Commit()
		if err != nil {
			t.Fatal(err)
		}
		last = tr.Header.Revision
	}
	waitRev(last)
	if _, _, all := w.Changes(); !all {
		t.Fatalf("%d changes listed one by one; want the whole set", subnet.MaxPendingLeases+8)
	}
	if ls, _ := w.TakeAll(); len(ls) != 2+subnet.MaxPendingLeases+8 {
		t.Fatalf("TakeAll after the burst: %d leases", len(ls))
	}
	if _, _, all := w.Changes(); all {
		t.Fatal("TakeAll must reset the overflow")
	}
}

// heldID is the etcd lease of the lease m acquired last (0: a reservation).
func heldID(m *Manager) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.own.id
}
