//go:build linux

package etcdv2

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v2 "github.com/flannelng/flannel/pkg/etcdv2"
	"github.com/flannelng/flannel/pkg/etcdv2/etcdv2test"
	"github.com/flannelng/flannel/pkg/lab"
	"github.com/flannelng/flannel/subnet"
)

// TestPrivilegedV2 runs the Manager against a real etcd 3.5 with the v2
// API, in a lab's namespaces, next to v0.11 nodes written by etcdv2test.
// Each subtest has a prefix of its own; they share the server (and its
// 1000-event history, which only makes other subtests re-list).
func TestPrivilegedV2(t *testing.T) {
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
	t.Cleanup(c.Close)
	r := &rig{c: c}
	t.Run("v0.11 peers seen by the watcher", r.peers)
	t.Run("acquire writes v0.11 bytes and reuses", r.acquire)
	t.Run("racing for one previous subnet", r.race)
	t.Run("index cleared while not polling", r.indexCleared)
	t.Run("garbage does not wedge the watch", r.garbage)
	t.Run("keep", r.keep)
	t.Run("migration hooks", r.hooks)
}

type rig struct{ c *v2.Client }

const vxCfg = `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`

// setup writes a config under a prefix of the test's own.
func (r *rig) setup(t *testing.T, config string) (context.Context, string, *subnet.Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	prefix := "/" + strings.NewReplacer(" ", "-", ".", "").Replace(t.Name()) + "/network"
	if err := etcdv2test.WriteConfig(ctx, r.c, prefix, config); err != nil {
		t.Fatal(err)
	}
	cfg, err := subnet.ParseConfig([]byte(config))
	if err != nil {
		t.Fatal(err)
	}
	return ctx, prefix, cfg
}

func (r *rig) manager(t *testing.T, ctx context.Context, prefix string, o Options) (*Manager, *logBuf) {
	t.Helper()
	o.Prefix = prefix
	m, logs := testManager(r.c, o)
	if err := m.Start(ctx, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("manager log:\n%s", logs)
		}
	})
	return m, logs
}

// run runs the manager's watcher until the test ends.
func run(t *testing.T, ctx context.Context, m *Manager) *Watcher {
	w := m.Peers().(*Watcher)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

// waitFor polls cond until it holds, for at most 30 s (a bound, not a
// measurement: the cases wait for etcd's answers, not for time).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitSet(t *testing.T, w *Watcher, want string) {
	t.Helper()
	var got string
	waitFor(t, "lease set "+want, func() bool {
		l, synced := w.Leases()
		got = subnets(l)
		return synced && got == want
	})
}

func find(leases []subnet.Lease, p netip.Prefix) (subnet.Lease, bool) {
	for _, l := range leases {
		if l.Subnet == p {
			return l, true
		}
	}
	return subnet.Lease{}, false
}

func vxlan(ip, mac string) subnet.LeaseAttrs {
	return subnet.LeaseAttrs{PublicIP: netip.MustParseAddr(ip), BackendType: "vxlan",
		BackendData: []byte(`{"VNI":1,"VtepMAC":"` + mac + `"}`)}
}

var (
	s1 = netip.MustParsePrefix("10.244.82.0/24")
	s2 = netip.MustParsePrefix("10.244.150.0/24")
	s3 = netip.MustParsePrefix("10.244.201.0/24")
)

// peers (a): v0.11 leases, reservations, renewals, expiry and v0.28
// values, as our watcher sees them.
func (r *rig) peers(t *testing.T) {
	ctx, prefix, _ := r.setup(t, vxCfg)
	a := &etcdv2test.Node{Client: r.c, Prefix: prefix, PublicIP: netip.MustParseAddr("10.210.0.1"), Backend: etcdv2test.BackendVxlan, VtepMAC: "66:52:c2:e4:ae:d7"}
	b := &etcdv2test.Node{Client: r.c, Prefix: prefix, PublicIP: netip.MustParseAddr("10.210.0.2"), Backend: etcdv2test.BackendHostGW}
	u := &etcdv2test.Node{Client: r.c, Prefix: prefix, PublicIP: netip.MustParseAddr("10.210.0.3"), Backend: etcdv2test.BackendUDP}
	if _, err := a.Acquire(ctx, s1); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Reserve(ctx, s2); err != nil {
		t.Fatal(err)
	}
	m, _ := r.manager(t, ctx, prefix, Options{})
	w := run(t, ctx, m)
	waitSet(t, w, "10.244.150.0/24,10.244.82.0/24")
	leases, _ := w.TakeAll()
	la, _ := find(leases, s1)
	lb, _ := find(leases, s2)
	if la.Attrs.PublicIP != a.PublicIP || la.Attrs.BackendType != "vxlan" || !strings.Contains(string(la.Attrs.BackendData), "66:52:c2:e4:ae:d7") ||
		time.Until(la.Expiration) < 23*time.Hour {
		t.Errorf("v0.11 vxlan lease read as %+v", la)
	}
	if lb.Attrs.BackendType != "host-gw" || !lb.Expiration.IsZero() {
		t.Errorf("v0.11 reservation read as %+v", lb)
	}

	// A renewal is a change of the lease (a new expiration).
	if _, err := a.Renew(ctx, s1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the renewal", func() bool {
		gone, came, all := w.Changes()
		if all {
			t.Fatal("a renewal made consumers take the whole set")
		}
		ng, _ := find(came, s1)
		og, _ := find(gone, s1)
		return len(came) == 1 && ng.Expiration.After(og.Expiration) && og.Expiration.Equal(la.Expiration)
	})

	// A udp lease written with v0.11's bytes and a 3 s TTL: seen, then
	// its expire removes it.
	if _, err := r.c.Create(ctx, u.Key(s3), u.Value(), 3*time.Second); err != nil {
		t.Fatal(err)
	}
	waitSet(t, w, "10.244.150.0/24,10.244.201.0/24,10.244.82.0/24")
	if l, _ := w.Leases(); true {
		if lu, _ := find(l, s3); lu.Attrs.BackendType != "" || lu.Attrs.PublicIP != u.PublicIP {
			t.Errorf("v0.11 udp lease read as %+v", lu)
		}
	}
	waitSet(t, w, "10.244.150.0/24,10.244.82.0/24")

	// A value in v0.28's form (a migrating node's) and a deletion.
	s4 := netip.MustParsePrefix("10.244.9.0/24")
	if _, err := r.c.Set(ctx, m.KeyFor(s4), `{"PublicIP":"10.210.0.99","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:00:00:00:00:01"}}`, v2.SetOptions{TTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.c.Delete(ctx, a.Key(s1), v2.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitSet(t, w, "10.244.150.0/24,10.244.9.0/24")
	if l, _ := w.Leases(); true {
		if l4, _ := find(l, s4); l4.Attrs.PublicIP != netip.MustParseAddr("10.210.0.99") || !strings.Contains(string(l4.Attrs.BackendData), "0e:00:00:00:00:01") {
			t.Errorf("v0.28 value read as %+v", l4)
		}
	}
}

// acquire (b): our lease in v0.11's bytes and TTL, reuse by PublicIP after
// a restart, a reservation kept as one, the previous subnet only when
// free, an incompatible own lease replaced.
func (r *rig) acquire(t *testing.T) {
	ctx, prefix, cfg := r.setup(t, vxCfg)
	attrs := vxlan("10.210.0.1", "66:52:c2:e4:ae:d7")
	m, _ := r.manager(t, ctx, prefix, Options{})
	if p := m.Previous(cfg, attrs); p != nil {
		t.Errorf("Previous before any lease: %+v", p)
	}
	l, err := m.Acquire(ctx, cfg, attrs, subnet.Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	key := fmt.Sprintf("%s/subnets/%s-24", prefix, l.Subnet.Addr())
	g, err := r.c.Get(ctx, key, false)
	if err != nil {
		t.Fatalf("our lease is not at %s: %v", key, err)
	}
	const want = `{"PublicIP":"10.210.0.1","BackendType":"vxlan","BackendData":{"VtepMAC":"66:52:c2:e4:ae:d7"}}`
	if g.Node.Value != want || g.Node.TTL < 86390 || g.Node.TTL > 86400 || !cfg.CompatibleV4(l.Subnet) || l.Expiration.IsZero() {
		t.Errorf("our lease %s: %q ttl %d (lease %+v), want %s with ttl 86400", key, g.Node.Value, g.Node.TTL, l, want)
	}

	// Restart: a new Manager finds it by PublicIP (a new MAC, say the
	// device was re-created) and rewrites it with an unconditional set.
	m2, logs2 := r.manager(t, ctx, prefix, Options{})
	if p := m2.Previous(cfg, attrs); p == nil || !strings.Contains(string(p.BackendData), "66:52:c2:e4:ae:d7") {
		t.Errorf("Previous after a restart: %+v", p)
	}
	l2, err := m2.Acquire(ctx, cfg, vxlan("10.210.0.1", "66:52:c2:e4:ae:d8"), subnet.Env{}, nil)
	if err != nil || l2.Subnet != l.Subnet {
		t.Fatalf("reuse after a restart: %v, %v; want %v", l2, err, l.Subnet)
	}
	g2, err := r.c.Get(ctx, key, false)
	if err != nil || !strings.Contains(g2.Node.Value, "66:52:c2:e4:ae:d8") || g2.Node.CreatedIndex != g2.Node.ModifiedIndex || g2.Node.ModifiedIndex <= g.Node.ModifiedIndex || g2.Node.TTL < 86390 {
		t.Errorf("after reuse: %+v, %v", g2.Node, err)
	}
	if s := fmt.Sprintf("Found lease (%v) for current IP (10.210.0.1), reusing", l.Subnet); !strings.Contains(logs2.String(), s) {
		t.Errorf("log lacks %q:\n%s", s, logs2)
	}

	// A reservation of ours stays one, with our value.
	res := &etcdv2test.Node{Client: r.c, Prefix: prefix, PublicIP: netip.MustParseAddr("10.210.0.5")}
	if _, err := res.Reserve(ctx, s3); err != nil {
		t.Fatal(err)
	}
	m3, _ := r.manager(t, ctx, prefix, Options{})
	hg := subnet.LeaseAttrs{PublicIP: res.PublicIP, BackendType: "host-gw"}
	l3, err := m3.Acquire(ctx, cfg, hg, subnet.Env{}, nil)
	if err != nil || l3.Subnet != s3 || !l3.Expiration.IsZero() {
		t.Fatalf("reservation: %+v, %v", l3, err)
	}
	if g, err := r.c.Get(ctx, res.Key(s3), false); err != nil || g.Node.TTL != 0 || g.Node.Expiration != nil || g.Node.Value != `{"PublicIP":"10.210.0.5","BackendType":"host-gw"}` {
		t.Errorf("reservation after reuse: %+v, %v", g.Node, err)
	}

	// The previous subnet: held by another node → not taken over; free →
	// reused.
	m4, logs4 := r.manager(t, ctx, prefix, Options{})
	l4, err := m4.Acquire(ctx, cfg, vxlan("10.210.0.6", "66:52:c2:e4:ae:06"), subnet.Env{Subnet: l.Subnet}, nil)
	if err != nil || l4.Subnet == l.Subnet || !strings.Contains(logs4.String(), "not reusing it") {
		t.Errorf("previous subnet held by another node: got %v, %v", l4, err)
	}
	free := netip.MustParsePrefix("10.244.77.0/24")
	m5, _ := r.manager(t, ctx, prefix, Options{})
	if l5, err := m5.Acquire(ctx, cfg, vxlan("10.210.0.7", "66:52:c2:e4:ae:07"), subnet.Env{Subnet: free}, nil); err != nil || l5.Subnet != free {
		t.Errorf("free previous subnet: got %v, %v", l5, err)
	}

	// Our lease out of the network (config changed): deleted, replaced.
	old := &etcdv2test.Node{Client: r.c, Prefix: prefix, PublicIP: netip.MustParseAddr("10.210.0.8"), Backend: etcdv2test.BackendUDP}
	outside := netip.MustParsePrefix("10.99.0.0/24")
	if _, err := old.Acquire(ctx, outside); err != nil {
		t.Fatal(err)
	}
	m6, _ := r.manager(t, ctx, prefix, Options{})
	l6, err := m6.Acquire(ctx, cfg, subnet.LeaseAttrs{PublicIP: old.PublicIP, BackendType: "udp"}, subnet.Env{}, nil)
	if err != nil || !cfg.CompatibleV4(l6.Subnet) {
		t.Fatalf("replacing an incompatible lease: %v, %v", l6, err)
	}
	if _, err := r.c.Get(ctx, old.Key(outside), false); !v2.IsKeyNotFound(err) {
		t.Errorf("the incompatible lease is still there: %v", err)
	}
	if g, err := r.c.Get(ctx, m6.KeyFor(l6.Subnet), false); err != nil || g.Node.Value != `{"PublicIP":"10.210.0.8"}` {
		t.Errorf("udp lease: %+v, %v", g, err)
	}
}

// race (c): three nodes with the same previous subnet in a network of
// three subnets, each from its own stale listing: all get one, no two the
// same.
func (r *rig) race(t *testing.T) {
	ctx, prefix, cfg := r.setup(t, `{"Network":"10.246.0.0/22","Backend":{"Type":"host-gw"}}`)
	prev := subnet.Env{Subnet: netip.MustParsePrefix("10.246.2.0/24")}
	var ms []*Manager
	for range 3 {
		m, _ := r.manager(t, ctx, prefix, Options{})
		ms = append(ms, m)
	}
	got := make([]subnet.Lease, len(ms))
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			attrs := subnet.LeaseAttrs{PublicIP: netip.AddrFrom4([4]byte{10, 210, 1, byte(i + 1)}), BackendType: "host-gw"}
			got[i], errs[i] = m.Acquire(ctx, cfg, attrs, prev, nil)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if s := subnets(got); s != "10.246.1.0/24,10.246.2.0/24,10.246.3.0/24" {
		t.Errorf("subnets %s, want each of the three once", s)
	}
	leases, _, err := ms[0].Snapshot(ctx)
	if err != nil || subnets(leases) != "10.246.1.0/24,10.246.2.0/24,10.246.3.0/24" {
		t.Errorf("store: %s, %v", subnets(leases), err)
	}
	for _, l := range leases {
		i := slices.IndexFunc(got, func(g subnet.Lease) bool { return g.Subnet == l.Subnet })
		if i < 0 || got[i].Attrs.PublicIP != l.Attrs.PublicIP {
			t.Errorf("%v is stored for %v, but acquired by %+v", l.Subnet, l.Attrs.PublicIP, got)
		}
	}
}

// indexCleared (d): the watcher stops polling, more than 1000 v2 writes
// elsewhere pass its cursor, a lease comes and one goes meanwhile: it
// re-lists on 401 and converges.
func (r *rig) indexCleared(t *testing.T) {
	ctx, prefix, _ := r.setup(t, vxCfg)
	a := &etcdv2test.Node{Client: r.c, Prefix: prefix, PublicIP: netip.MustParseAddr("10.210.0.1"), Backend: etcdv2test.BackendVxlan, VtepMAC: "66:52:c2:e4:ae:d7"}
	b := &etcdv2test.Node{Client: r.c, Prefix: prefix, PublicIP: netip.MustParseAddr("10.210.0.2"), Backend: etcdv2test.BackendVxlan, VtepMAC: "66:52:c2:e4:ae:d8"}
	if _, err := a.Acquire(ctx, s1); err != nil {
		t.Fatal(err)
	}
	var restarts []bool
	var mu sync.Mutex
	m, logs := r.manager(t, ctx, prefix, Options{OnWatchRestart: func(relist bool) { mu.Lock(); restarts = append(restarts, relist); mu.Unlock() }})
	w := m.Peers().(*Watcher)
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); w.Run(rctx) }()
	waitSet(t, w, s1.String())
	stop()
	<-done
	cursor := w.Cursor()

	if _, err := b.Acquire(ctx, s2); err != nil {
		t.Fatal(err)
	}
	if _, err := r.c.Delete(ctx, a.Key(s1), v2.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := range 1100 {
		if _, err := r.c.Set(ctx, prefix+"-unrelated", fmt.Sprint(i), v2.SetOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	w.TakeAll()
	run2 := func() {
		rctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); w.Run(rctx) }()
		t.Cleanup(func() { stop(); <-done })
	}
	run2()
	waitSet(t, w, s2.String())
	if !strings.Contains(logs.String(), "Watch of subnet leases failed because etcd index outside history window") {
		t.Errorf("no 401 logged:\n%s", logs)
	}
	if _, _, all := w.Changes(); !all {
		t.Error("after a relist consumers must take the whole set")
	}
	if w.Cursor() < cursor+1100 {
		t.Errorf("cursor %d, want past the 1100 writes after %d", w.Cursor(), cursor)
	}
	mu.Lock()
	if !slices.Contains(restarts, true) {
		t.Errorf("OnWatchRestart saw %v, want a relist", restarts)
	}
	mu.Unlock()
	// And it goes on watching from the new listing.
	s4 := netip.MustParsePrefix("10.244.4.0/24")
	if _, err := a.Acquire(ctx, s4); err != nil {
		t.Fatal(err)
	}
	waitSet(t, w, "10.244.150.0/24,10.244.4.0/24")
}

// garbage (e): a bad key, a non-JSON value and a compare-and-delete (all of
// which wedge v0.11's watch) are skipped; later leases are still seen, and
// each bad key is logged once.
func (r *rig) garbage(t *testing.T) {
	ctx, prefix, _ := r.setup(t, vxCfg)
	a := &etcdv2test.Node{Client: r.c, Prefix: prefix, PublicIP: netip.MustParseAddr("10.210.0.1"), Backend: etcdv2test.BackendHostGW}
	if _, err := a.Acquire(ctx, s1); err != nil {
		t.Fatal(err)
	}
	m, logs := r.manager(t, ctx, prefix, Options{})
	w := run(t, ctx, m)
	waitSet(t, w, s1.String())
	for _, kv := range [][2]string{
		{prefix + "/subnets/garbage", "x"},
		{a.Key(s2), "not json"},
		{prefix + "/subnets/garbage", "y"},
	} {
		if _, err := r.c.Set(ctx, kv[0], kv[1], v2.SetOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// A compare-and-delete: its event has no value.
	g, err := r.c.Get(ctx, a.Key(s1), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.c.Delete(ctx, a.Key(s1), v2.DeleteOptions{PrevIndex: g.Node.ModifiedIndex}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Acquire(ctx, s3); err != nil {
		t.Fatal(err)
	}
	waitSet(t, w, s3.String())
	if n := strings.Count(logs.String(), "Ignoring bad subnet node"); n != 2 {
		t.Errorf("bad nodes logged %d times, want 2 (garbage once, the non-JSON value once):\n%s", n, logs)
	}
	// A new node's listing skips them too.
	leases, _, err := m.Snapshot(ctx)
	if err != nil || subnets(leases) != s3.String() {
		t.Errorf("listing: %s, %v", subnets(leases), err)
	}
}

// keep (f): renewal brings the TTL back up, a deleted key is re-created,
// a key taken by another node ends Keep with ErrSubnetChanged.
func (r *rig) keep(t *testing.T) {
	ctx, prefix, cfg := r.setup(t, vxCfg)
	// TTL 6 s, renewed 4 s before expiry: about 2 s after each write.
	m, logs := r.manager(t, ctx, prefix, Options{TTL: 6 * time.Second, RenewMargin: 4 * time.Second})
	attrs := vxlan("10.210.0.1", "66:52:c2:e4:ae:d7")
	own, err := m.Acquire(ctx, cfg, attrs, subnet.Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	key := m.KeyFor(own.Subnet)
	g, err := r.c.Get(ctx, key, false)
	if err != nil {
		t.Fatal(err)
	}
	kctx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- m.Keep(kctx, cfg, own) }()

	// The next write of our key is the renewal: a set, same value, the
	// TTL back at 6 while the first write's was running out.
	ev, err := watch(t, ctx, r.c, key, g.Node.ModifiedIndex)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Action != v2.ActionSet || ev.Node.Value != g.Node.Value || ev.Node.TTL < 5 {
		t.Errorf("renewal: %s %+v, want a set with ttl 6", ev.Action, ev.Node)
	}
	waitFor(t, "the renewal's log line", func() bool { return strings.Contains(logs.String(), "Lease renewed, new expiration: ") })
	if !regexp.MustCompile(`Waiting for [0-9.]+m?s to renew lease`).MatchString(logs.String()) {
		t.Errorf("log:\n%s", logs)
	}

	stop()
	if err := <-errc; err != nil {
		t.Fatalf("Keep: %v, want nil when ctx ends", err)
	}

	// With a 24 h TTL nothing is renewed during the test: a deleted key
	// can only come back through the watch, with the same subnet and
	// value (v0.11 exited).
	m, logs = r.manager(t, ctx, prefix, Options{})
	attrs = vxlan("10.210.0.2", "66:52:c2:e4:ae:d8")
	if own, err = m.Acquire(ctx, cfg, attrs, subnet.Env{}, nil); err != nil {
		t.Fatal(err)
	}
	key = m.KeyFor(own.Subnet)
	if g, err = r.c.Get(ctx, key, false); err != nil {
		t.Fatal(err)
	}
	go func() { errc <- m.Keep(ctx, cfg, own) }()
	d, err := r.c.Delete(ctx, key, v2.DeleteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	back, err := watch(t, ctx, r.c, key, d.Node.ModifiedIndex)
	if err != nil {
		t.Fatal(err)
	}
	if back.Action != v2.ActionCreate || back.Node.Value != g.Node.Value || back.Node.TTL < 86390 {
		t.Errorf("re-created: %s %+v", back.Action, back.Node)
	}
	waitFor(t, "the revocation's log line", func() bool { return strings.Contains(logs.String(), "Lease has been revoked; re-creating it") })

	// Another node's value in our key.
	other := etcdv2test.LeaseValue(netip.MustParseAddr("10.210.0.3"), etcdv2test.BackendVxlan, "66:52:c2:e4:ae:d9")
	if _, err := r.c.Set(ctx, key, other, v2.SetOptions{TTL: 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrSubnetChanged) {
			t.Fatalf("Keep: %v, want ErrSubnetChanged", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Keep did not notice another node's value in our key")
	}
	if g, err := r.c.Get(ctx, key, false); err != nil || g.Node.Value != other {
		t.Errorf("Keep overwrote the other node's claim: %+v, %v", g, err)
	}
}

// hooks (g): AcquireSubnet and ErrTaken, Retract's events, KeepCopy's
// renewal, re-creation and ErrSplitClaim, Avoid.
func (r *rig) hooks(t *testing.T) {
	ctx, prefix, cfg := r.setup(t, vxCfg)
	attrs := vxlan("10.210.0.1", "66:52:c2:e4:ae:d7")
	current, _ := subnet.EncodeAttrs(attrs)
	m, _ := r.manager(t, ctx, prefix, Options{Value: FormatCurrent, TTL: 10 * time.Second, CopyRenewBelow: 8 * time.Second, CopyCheckEvery: 200 * time.Millisecond})

	t.Run("AcquireSubnet", func(t *testing.T) {
		l, err := m.AcquireSubnet(ctx, cfg, attrs, s1)
		if err != nil || l.Subnet != s1 {
			t.Fatalf("free subnet: %v, %v", l, err)
		}
		if g, err := r.c.Get(ctx, m.KeyFor(s1), false); err != nil || g.Node.Value != string(current) || g.Node.TTL < 9 {
			t.Errorf("claim: %+v, %v; want %s", g, err, current)
		}
		b := &etcdv2test.Node{Client: r.c, Prefix: prefix, PublicIP: netip.MustParseAddr("10.210.0.2"), Backend: etcdv2test.BackendHostGW}
		if _, err := b.Acquire(ctx, s2); err != nil {
			t.Fatal(err)
		}
		if _, err := m.AcquireSubnet(ctx, cfg, attrs, s2); !errors.Is(err, ErrTaken) {
			t.Errorf("another node's subnet: %v, want ErrTaken", err)
		}
		// Held with our address (by our v0.11 predecessor, as a
		// reservation): ours, rewritten, still a reservation.
		pre := &etcdv2test.Node{Client: r.c, Prefix: prefix, PublicIP: attrs.PublicIP, Backend: etcdv2test.BackendVxlan, VtepMAC: "66:52:c2:e4:ae:d7"}
		if _, err := pre.Reserve(ctx, s3); err != nil {
			t.Fatal(err)
		}
		if l, err := m.AcquireSubnet(ctx, cfg, attrs, s3); err != nil || !l.Expiration.IsZero() {
			t.Errorf("our own key: %+v, %v", l, err)
		}
		if g, err := r.c.Get(ctx, m.KeyFor(s3), false); err != nil || g.Node.Value != string(current) || g.Node.TTL != 0 {
			t.Errorf("our own key after the claim: %+v, %v", g, err)
		}
	})

	t.Run("Retract", func(t *testing.T) {
		s := netip.MustParsePrefix("10.244.60.0/24")
		key := m.KeyFor(s)
		own, err := m.AcquireSubnet(ctx, cfg, attrs, s)
		if err != nil {
			t.Fatal(err)
		}
		g, _ := r.c.Get(ctx, key, false)
		if err := m.Retract(ctx, own); err != nil {
			t.Fatal(err)
		}
		// v0.11 sees a compareAndSwap (a lease, same value), then the
		// expire a second later.
		if acts := actionsUntilGone(t, ctx, r.c, key, g.Node.ModifiedIndex); acts != "compareAndSwap(ttl 1),expire" {
			t.Errorf("retract events: %s", acts)
		}
		// Changed behind our back (still ours): CAS fails, plain delete.
		own, err = m.AcquireSubnet(ctx, cfg, attrs, s)
		if err != nil {
			t.Fatal(err)
		}
		g, err = r.c.Set(ctx, key, string(current), v2.SetOptions{TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Retract(ctx, own); err != nil {
			t.Fatal(err)
		}
		if acts := actionsUntilGone(t, ctx, r.c, key, g.Node.ModifiedIndex); acts != "delete" {
			t.Errorf("retract after a change: %s", acts)
		}
	})

	t.Run("KeepCopy", func(t *testing.T) {
		s := netip.MustParsePrefix("10.244.61.0/24")
		key := m.KeyFor(s)
		own, err := m.AcquireSubnet(ctx, cfg, attrs, s)
		if err != nil {
			t.Fatal(err)
		}
		g, _ := r.c.Get(ctx, key, false)
		kctx, stop := context.WithCancel(ctx)
		defer stop()
		errc := make(chan error, 1)
		go func() { errc <- m.KeepCopy(kctx, cfg, own) }()
		// TTL 10 s, renewed under 8 s left: an update with ttl 10.
		ev, err := watch(t, ctx, r.c, key, g.Node.ModifiedIndex)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Action != v2.ActionUpdate || ev.Node.Value != string(current) || ev.Node.TTL < 9 {
			t.Errorf("copy renewal: %s %+v", ev.Action, ev.Node)
		}
		// Deleted: re-created with prevExist=false (action create).
		d, err := r.c.Delete(ctx, key, v2.DeleteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ev, err = watch(t, ctx, r.c, key, d.Node.ModifiedIndex)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Action != v2.ActionCreate || ev.Node.Value != string(current) || ev.Node.TTL < 9 {
			t.Errorf("copy re-created: %s %+v", ev.Action, ev.Node)
		}
		// Another node's now: a split claim.
		other := etcdv2test.LeaseValue(netip.MustParseAddr("10.210.0.2"), etcdv2test.BackendVxlan, "66:52:c2:e4:ae:d8")
		if _, err := r.c.Set(ctx, key, other, v2.SetOptions{TTL: 24 * time.Hour}); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errc:
			if !errors.Is(err, ErrSplitClaim) {
				t.Fatalf("KeepCopy: %v, want ErrSplitClaim", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("KeepCopy did not notice the split claim")
		}
	})

	t.Run("Avoid", func(t *testing.T) {
		ctx, prefix, cfg := r.setup(t, `{"Network":"10.247.0.0/22","Backend":{"Type":"vxlan"}}`)
		// The network has three subnets; v3 holds all of them, the third
		// for us.
		v3 := []subnet.Lease{
			{Subnet: netip.MustParsePrefix("10.247.1.0/24"), Attrs: vxlan("10.210.0.2", "66:52:c2:e4:ae:02")},
			{Subnet: netip.MustParsePrefix("10.247.2.0/24"), Attrs: vxlan("10.210.0.3", "66:52:c2:e4:ae:03")},
			{Subnet: netip.MustParsePrefix("10.247.3.0/24"), Attrs: attrs},
		}
		m, logs := r.manager(t, ctx, prefix, Options{Avoid: func() []subnet.Lease { return v3 }})
		// The previous subnet is free in v2 but held in v3: not used; the
		// one subnet not held by another node in either is.
		l, err := m.Acquire(ctx, cfg, attrs, subnet.Env{Subnet: netip.MustParsePrefix("10.247.2.0/24")}, nil)
		if err != nil || l.Subnet != netip.MustParsePrefix("10.247.3.0/24") || !strings.Contains(logs.String(), "not reusing it") {
			t.Fatalf("Acquire with v3 leases to avoid: %v, %v", l, err)
		}
		// For another node every subnet is held in v2 or v3: full.
		m2, _ := r.manager(t, ctx, prefix, Options{Avoid: func() []subnet.Lease { return v3 }})
		short, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		var full error
		_, err = m2.Acquire(short, cfg, vxlan("10.210.0.9", "66:52:c2:e4:ae:09"), subnet.Env{}, func(err error) { full = err })
		var nf *subnet.ErrNoFreeSubnet
		if !errors.Is(err, context.DeadlineExceeded) || !errors.As(full, &nf) {
			t.Errorf("every subnet held in v2 or v3: %v (retry %v), want out of subnets until ctx ends", err, full)
		}
	})
}

// actionsUntilGone lists the events on key after idx until it is gone,
// with the TTL of a compareAndSwap.
func actionsUntilGone(t *testing.T, ctx context.Context, c *v2.Client, key string, idx uint64) string {
	t.Helper()
	var acts []string
	for {
		ev, err := watch(t, ctx, c, key, idx)
		if err != nil {
			t.Fatal(err)
		}
		a := ev.Action
		if a == v2.ActionCompareAndSwap {
			a += fmt.Sprintf("(ttl %d)", ev.Node.TTL)
		}
		acts = append(acts, a)
		idx = ev.Node.ModifiedIndex
		switch ev.Action {
		case v2.ActionDelete, v2.ActionExpire, v2.ActionCompareAndDelete:
			return strings.Join(acts, ",")
		}
	}
}

// watch is one long poll on key after idx, bounded to 30 s so that a
// missing event fails the test instead of hanging it.
func watch(t *testing.T, ctx context.Context, c *v2.Client, key string, idx uint64) (*v2.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ev, err := c.Watch(ctx, key, false, idx)
	if err != nil {
		return nil, fmt.Errorf("watch %s after %d: %w", key, idx, err)
	}
	return ev, nil
}
