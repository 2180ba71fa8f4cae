package etcd

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flannelng/flannel/subnet"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// storm is what n acquirers started at once cost.
type storm struct {
	leases   []subnet.Lease
	lost     int64          // lost races (errTryAgain seen by onRetry)
	requests map[string]int // etcd requests by kind (Options.OnRequest)
	took     time.Duration  // until the last one held its lease
}

func (s storm) total() int {
	n := 0
	for _, c := range s.requests {
		n += c
	}
	return n
}

func (s storm) String() string {
	kinds := make([]string, 0, len(s.requests))
	for k, c := range s.requests {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, c))
	}
	sort.Strings(kinds)
	return fmt.Sprintf("%d joiners held distinct subnets in %s; %d lost races; %d etcd requests (%s)",
		len(s.leases), s.took.Round(time.Millisecond), s.lost, s.total(), strings.Join(kinds, ", "))
}

// joinStorm starts one acquirer per config at once, each with its own
// client and Manager (separate daemons), and waits for all of them.
func joinStorm(t *testing.T, te *testEtcd, cfgs []*subnet.Config, attrs func(i int) subnet.LeaseAttrs) storm {
	t.Helper()
	ctx := ctxT(t, 90*time.Second)
	var mu sync.Mutex
	s := storm{leases: make([]subnet.Lease, len(cfgs)), requests: map[string]int{}}
	count := func(kind string, _ time.Duration, _ error) {
		mu.Lock()
		s.requests[kind]++
		mu.Unlock()
	}
	ms := make([]*Manager, len(cfgs))
	logs := make([]*logBuf, len(cfgs))
	for i := range cfgs {
		ms[i], logs[i] = newManager(t, te.client(t), Options{OnRequest: count})
	}
	errs := make([]error, len(cfgs))
	var lost atomic.Int64
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			s.leases[i], errs[i] = ms[i].Acquire(ctx, cfgs[i], attrs(i), subnet.Env{}, func(err error) {
				if errors.Is(err, errTryAgain) {
					lost.Add(1)
				}
			})
		}()
	}
	began := time.Now()
	close(start)
	wg.Wait()
	s.took = time.Since(began)
	s.lost = lost.Load()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("acquirer %d: %v; log:\n%s", i, err, logs[i])
		}
	}
	return s
}

// assertNoOverlap reads every key and fails on two leases that overlap in
// either family, whatever their lengths.
func assertNoOverlap(t *testing.T, cli *clientv3.Client, want int) {
	t.Helper()
	resp, err := cli.Get(ctxT(t, 10*time.Second), "/coreos.com/network/subnets/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	type key struct {
		name   string
		v4, v6 netip.Prefix
	}
	var keys []key
	for _, kv := range resp.Kvs {
		name := strings.TrimPrefix(string(kv.Key), "/coreos.com/network/subnets/")
		v4, v6, err := subnet.ParseKey(name)
		if err != nil {
			t.Fatalf("key %s: %v", name, err)
		}
		keys = append(keys, key{name, v4, v6})
	}
	if len(keys) != want {
		t.Errorf("%d keys, want %d", len(keys), want)
	}
	for i := range keys {
		for j := range i {
			a, b := keys[i], keys[j]
			if a.v4.IsValid() && b.v4.IsValid() && a.v4.Overlaps(b.v4) || a.v6.IsValid() && b.v6.IsValid() && a.v6.Overlaps(b.v6) {
				t.Errorf("leases %s and %s overlap", a.name, b.name)
			}
		}
	}
}

// N = 100 nodes joining at once: every one gets a subnet of its own. The
// figures (time, lost races, etcd requests) are logged for issue 19.
func TestJoinStorm(t *testing.T) {
	te := startEtcd(t)
	cli := te.client(t)
	cfg := putConfig(t, cli, "/coreos.com/network", `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`)
	const n = 100
	cfgs := make([]*subnet.Config, n)
	for i := range cfgs {
		cfgs[i] = cfg
	}
	s := joinStorm(t, te, cfgs, func(i int) subnet.LeaseAttrs {
		return vxAttrs(fmt.Sprintf("192.168.%d.%d", i/250, i%250+1), "02:00:00:00:00:01")
	})
	t.Logf("N=%d: %s", n, s)
	assertNoOverlap(t, cli, n)
	assertOneEtcdLeasePerKey(t, cli, n)
}

// No two leases ever overlap, whatever their lengths: acquirers with
// configs that share the Network and the prefix but differ in SubnetLen
// (/23, /24, /25), some of them dual stack (IPv6 /63 and /64 in one
// IPv6Network), all start at once in a network with room for about twice
// their subnets, so that many pick overlapping ones.
func TestJoinNeverOverlaps(t *testing.T) {
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(uint64(seed), 19))
	parse := func(s string) *subnet.Config {
		c, err := subnet.ParseConfig([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	kinds := []*subnet.Config{
		parse(`{"Network":"10.5.0.0/17","SubnetLen":23}`),
		parse(`{"Network":"10.5.0.0/17","SubnetLen":24}`),
		parse(`{"Network":"10.5.0.0/17","SubnetLen":25}`),
		parse(`{"EnableIPv6":true,"Network":"10.5.0.0/17","SubnetLen":24,"IPv6Network":"fd00:10::/56","IPv6SubnetLen":64}`),
		parse(`{"EnableIPv6":true,"Network":"10.5.0.0/17","SubnetLen":25,"IPv6Network":"fd00:10::/56","IPv6SubnetLen":63}`),
	}
	for round := range 2 {
		te := startEtcd(t)
		cli := te.client(t)
		putConfig(t, cli, "/coreos.com/network", `{"Network":"10.5.0.0/17"}`)
		const n = 50
		cfgs := make([]*subnet.Config, n)
		for i := range cfgs {
			cfgs[i] = kinds[rnd.IntN(len(kinds))]
		}
		s := joinStorm(t, te, cfgs, func(i int) subnet.LeaseAttrs {
			a := vxAttrs(fmt.Sprintf("192.168.0.%d", i+1), "02:00:00:00:00:01")
			if cfgs[i].EnableIPv6 {
				a.PublicIPv6 = netip.MustParseAddr(fmt.Sprintf("fd00:99::%d", i+1))
			}
			return a
		})
		t.Logf("round %d: %s", round, s)
		assertNoOverlap(t, cli, n)
	}
}
