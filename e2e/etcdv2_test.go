//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/pkg/etcdv2"
	"github.com/flannelng/flannel/pkg/etcdv2/etcdv2test"
	"github.com/flannelng/flannel/pkg/lab"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Clusters of flannel v0.11 (issue 18): config and leases in etcd's v2
// store, served by a real etcd 3.5 with --enable-v2 in the lab.

const v2Config = `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`

// v2Cluster is a lab on etcd with the v2 API and the config in the v2
// store only, as a v0.11 guide writes it.
type v2Cluster struct {
	l   *lab.Lab
	v2  *etcdv2.Client
	v3  *clientv3.Client
	ctl string // flannelctl
}

func newV2Cluster(t *testing.T, hosts int) *v2Cluster {
	t.Helper()
	lab.SkipUnlessPrivileged(t)
	bins := lab.BuildBinaries(t)
	lab.RequireEtcdV2Binary(t, &bins)
	l := lab.NewT(t, lab.Options{Hosts: hosts, Binaries: bins})
	ctx := testCtx(t, time.Minute)
	if err := l.StartEtcdV2(ctx); err != nil {
		t.Fatal(err)
	}
	c2, err := l.EtcdV2()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c2.Close)
	c3, err := l.Etcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := etcdv2test.WriteConfig(ctx, c2, etcdv2test.DefaultPrefix, v2Config); err != nil {
		t.Fatal(err)
	}
	return &v2Cluster{l: l, v2: c2, v3: c3}
}

// v2Value returns the v2 value and remaining TTL (0: none) of subnet's key.
func (c *v2Cluster) v2Value(t *testing.T, s netip.Prefix) (string, int64) {
	t.Helper()
	r, err := c.v2.Get(context.Background(), etcdv2test.SubnetKey(etcdv2test.DefaultPrefix, s), false)
	if err != nil {
		t.Fatalf("v2 lease of %s: %v", s, err)
	}
	return r.Node.Value, r.Node.TTL
}

// v3Value returns the v3 value of subnet's key and whether it has an etcd
// lease ("" when absent).
func (c *v2Cluster) v3Value(t *testing.T, s netip.Prefix) (string, bool) {
	t.Helper()
	r, err := c.v3.Get(context.Background(), etcdv2test.SubnetKey(etcdv2test.DefaultPrefix, s))
	if err != nil {
		t.Fatalf("v3 lease of %s: %v", s, err)
	}
	if len(r.Kvs) == 0 {
		return "", false
	}
	return string(r.Kvs[0].Value), r.Kvs[0].Lease != 0
}

var vtepMACRE = regexp.MustCompile(`"VtepMAC":"([0-9a-f:]+)"`)

func macOf(t *testing.T, value string) string {
	t.Helper()
	m := vtepMACRE.FindStringSubmatch(value)
	if m == nil {
		t.Fatalf("no VtepMAC in %s", value)
	}
	return m[1]
}

// restart stops p with SIGTERM (exit 0 expected) and starts flanneld on h
// again with args, waiting for its subnet.env to carry want and for the
// log line ready.
func (c *v2Cluster) restart(t *testing.T, h *lab.Host, p *lab.Process, want netip.Prefix, ready string, args ...string) *lab.Process {
	t.Helper()
	if code, err := p.Stop(10 * time.Second); err != nil || code != 0 {
		t.Fatalf("stop flanneld on %s: exit %d, %v\n%s", h.Name, code, err, p.Log())
	}
	np, err := c.l.StartFlanneld(h, args...)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.l.WaitFor(context.Background(), 30*time.Second, h.Name+" logs "+ready, func() error {
		if np.Exited() {
			return lab.Permanent(fmt.Errorf("flanneld exited:\n%s", np.Log()))
		}
		return contains(np.Log(), ready)
	}); err != nil {
		t.Fatal(err)
	}
	if env := waitEnv(t, c.l, h, np, 30*time.Second); env.Subnet != want {
		t.Fatalf("%s came back with subnet %v, want %v", h.Name, env.Subnet, want)
	}
	return np
}

// The runbook of docs/migration.md, end to end, while pods ping at 10 Hz
// across every step: three of our nodes join a v0.11 cluster by themselves
// (auto finds the config only in v2), beside a v0.11 node's lease written
// as v0.11 writes and renews it; flannelctl migrate-v2; every node
// restarted with --etcd-api=both; then with v3; then the v2 keys removed.
// Each node keeps its subnet and VtepMAC throughout; the v0.11 node's lease
// stays routed; no pod packet is lost.
func TestPrivilegedEtcdV2Runbook(t *testing.T) {
	c := newV2Cluster(t, 3)
	l := c.l
	c.ctl = buildFlannelctl(t)
	ctx := testCtx(t, 5*time.Minute)
	hosts := l.Hosts()

	// A v0.11 node's lease, renewed as v0.11 renews it (its data plane is
	// not simulated: nothing is sent to it).
	oldNode := &etcdv2test.Node{Client: c.v2, PublicIP: netip.MustParseAddr("172.30.3.200"), Backend: etcdv2test.BackendVxlan, VtepMAC: "66:52:c2:e4:ae:d7"}
	oldSubnet := netip.MustParsePrefix("10.5.200.0/24")
	if _, err := oldNode.Acquire(ctx, oldSubnet); err != nil {
		t.Fatal(err)
	}
	rctx, stopRenew := context.WithCancel(ctx)
	defer stopRenew()
	go oldNode.KeepRenewing(rctx, oldSubnet, 2*time.Second, func(err error) { t.Logf("v0.11 renewal: %v", err) })

	// Step 1: ours joins in v2 mode, by itself.
	var procs []*lab.Process
	for _, h := range hosts {
		p, err := l.StartFlanneld(h)
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
	}
	var subnets []netip.Prefix
	var macs []string
	var pods []*lab.Pod
	for i, h := range hosts {
		env := waitEnv(t, l, h, procs[i], 30*time.Second)
		subnets = append(subnets, env.Subnet)
		val, ttl := c.v2Value(t, env.Subnet)
		want := fmt.Sprintf(`{"PublicIP":"%s","BackendType":"vxlan","BackendData":{"VtepMAC":"%s"}}`, h.IP, macOf(t, val))
		if val != want || ttl < 86000 || ttl > 86400 {
			t.Errorf("%s: v2 lease %q ttl %d, want v0.11's %q with ttl 86400", h.Name, val, ttl, want)
		}
		if v3, _ := c.v3Value(t, env.Subnet); v3 != "" {
			t.Errorf("%s: v2 mode wrote to v3: %s", h.Name, v3)
		}
		macs = append(macs, macOf(t, val))
		pod, err := l.AddPod(ctx, h, "p1")
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, pod)
	}
	for i, p := range procs {
		if n := strings.Count(p.Log(), "running in v2 mode"); n != 1 {
			t.Errorf("%s logged the v2 warning %d times, want once:\n%s", hosts[i].Name, n, p.Log())
		}
	}
	(&cluster{l: l, pods: pods}).pingAll(t)
	checkRouted := func(step string) {
		t.Helper()
		for i, h := range hosts {
			out, _ := l.Exec(ctx, h.NS, "ip", "route", "show", oldSubnet.String())
			fdb, _ := l.Exec(ctx, h.NS, "bridge", "fdb", "show", "dev", "flannel.1")
			if !strings.Contains(out, "via "+oldSubnet.Addr().String()+" dev flannel.1") || !strings.Contains(out, "onlink") || !strings.Contains(fdb, oldNode.VtepMAC+" dst "+oldNode.PublicIP.String()) {
				t.Errorf("%s, %s: the v0.11 node's lease is not programmed: route %q fdb %q\n%s", step, h.Name, out, fdb, procs[i].Log())
			}
		}
	}
	checkRouted("v2 mode")

	const pingFor = 60 * time.Second
	began := time.Now()
	wait01 := pingPair(t, pods[0], pods[1], pingFor)
	wait12 := pingPair(t, pods[1], pods[2], pingFor)

	// Step 2: flannelctl migrate-v2.
	etcdFlag := "--etcd-endpoints=" + l.EtcdEndpoint()
	code, out := runIn(t, l, hosts[0].NS, c.ctl, etcdFlag, "migrate-v2", "--dry-run")
	if code != 0 {
		t.Fatalf("migrate-v2 --dry-run: exit %d\n%s", code, out)
	}
	if v, _ := c.v3Value(t, subnets[0]); v != "" {
		t.Fatalf("--dry-run wrote %s", v)
	}
	code, out = runIn(t, l, hosts[0].NS, c.ctl, etcdFlag, "migrate-v2")
	if code != 0 {
		t.Fatalf("migrate-v2: exit %d\n%s", code, out)
	}
	t.Logf("migrate-v2:\n%s", out)
	for _, s := range append([]netip.Prefix{oldSubnet}, subnets...) {
		v3, leased := c.v3Value(t, s)
		v2, _ := c.v2Value(t, s)
		if v3 != v2 || !leased {
			t.Errorf("after migrate-v2, v3 %s holds %q (etcd lease %v), want v2's %q with a lease", s, v3, leased, v2)
		}
	}
	if code, out = runIn(t, l, hosts[0].NS, c.ctl, etcdFlag, "migrate-v2"); code != 0 {
		t.Errorf("second migrate-v2: exit %d\n%s", code, out)
	}

	// Step 3: every node restarted with --etcd-api=both.
	for i, h := range hosts {
		procs[i] = c.restart(t, h, procs[i], subnets[i], "Holding our lease in both etcd keyspaces", "--etcd-api=both")
		v2, ttl := c.v2Value(t, subnets[i])
		v3, leased := c.v3Value(t, subnets[i])
		want := fmt.Sprintf(`{"PublicIP":"%s","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"%s"}}`, h.IP, macs[i])
		if v2 != want || v3 != want || !leased || ttl < 86000 {
			t.Errorf("%s in both mode: v2 %q (ttl %d), v3 %q (lease %v), want %q in both", h.Name, v2, ttl, v3, leased, want)
		}
	}
	checkRouted("both mode")

	// Step 4: every node restarted with --etcd-api=v3.
	for i, h := range hosts {
		procs[i] = c.restart(t, h, procs[i], subnets[i], "Waiting for", "--etcd-api=v3")
		if v3, _ := c.v3Value(t, subnets[i]); macOf(t, v3) != macs[i] {
			t.Errorf("%s in v3 mode: VtepMAC of %s, want %s", h.Name, v3, macs[i])
		}
	}
	checkRouted("v3 mode")

	// Step 5: the v2 keys removed (v0.11's node is gone by now).
	stopRenew()
	if _, err := c.v2.Delete(ctx, etcdv2test.DefaultPrefix, etcdv2.DeleteOptions{Recursive: true}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d > pingFor-5*time.Second {
		t.Fatalf("the runbook took %s, longer than the pings cover", ms(d))
	}
	s1, r1 := wait01()
	s2, r2 := wait12()
	sent, recv := s1+s2, r1+r2
	for i, p := range procs {
		if p.Exited() {
			t.Errorf("%s: flanneld exited:\n%s", hosts[i].Name, p.Log())
		}
	}
	figure(t, "etcd-v2-runbook", "v2 mode (auto) -> migrate-v2 -> both -> v3 -> v2 keys removed, 3 nodes restarted twice in %s; pod ping %s",
		ms(time.Since(began)), lossLine(sent, recv))
	if recv != sent {
		t.Errorf("lost %d of %d pod packets", sent-recv, sent)
	}
}

// A v0.11 node replaced in place by ours (auto mode): what v0.11 left (its
// v2 lease, flannel.1 with its MAC and address, its subnet.env) is adopted
// as it is. The node keeps its subnet and VtepMAC, rewrites its lease with
// v0.11's exact bytes, and its peer sees no change: the same neighbour,
// FDB entry and route before and after, and no pod packet lost.
func TestPrivilegedEtcdV2ReplaceV011Node(t *testing.T) {
	c := newV2Cluster(t, 2)
	l := c.l
	ctx := testCtx(t, 3*time.Minute)
	h1, h2 := l.Hosts()[0], l.Hosts()[1]
	const mac = "66:52:c2:e4:ae:01"
	sn := netip.MustParsePrefix("10.5.77.0/24")

	// What a v0.11 node leaves behind when it stops (spec 4, 8.2).
	for _, cmd := range [][]string{
		{"ip", "link", "add", "flannel.1", "type", "vxlan", "id", "1", "local", h1.IP.String(), "dev", "eth0", "dstport", "8472", "nolearning"},
		{"ip", "link", "set", "flannel.1", "address", mac, "mtu", "1450", "up"},
		{"ip", "addr", "add", "10.5.77.0/32", "dev", "flannel.1"},
	} {
		if out, err := l.Exec(ctx, h1.NS, cmd...); err != nil {
			t.Fatalf("%v: %v: %s", cmd, err, out)
		}
	}
	if err := os.WriteFile(h1.SubnetFile(), []byte("FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.77.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := &etcdv2test.Node{Client: c.v2, PublicIP: h1.IP, Backend: etcdv2test.BackendVxlan, VtepMAC: mac}
	if _, err := old.Acquire(ctx, sn); err != nil {
		t.Fatal(err)
	}
	before, _ := c.v2Value(t, sn)

	// h2 runs ours and programs the v0.11 node.
	p2, err := l.StartFlanneld(h2)
	if err != nil {
		t.Fatal(err)
	}
	waitEnv(t, l, h2, p2, 30*time.Second)
	peerState := func() string {
		var b strings.Builder
		for _, cmd := range [][]string{
			{"ip", "route", "show", sn.String()},
			{"ip", "neigh", "show", "dev", "flannel.1", "10.5.77.0"},
			{"bridge", "fdb", "show", "dev", "flannel.1"},
		} {
			out, _ := l.Exec(ctx, h2.NS, cmd...)
			b.WriteString(out)
		}
		return b.String()
	}
	var onPeer string
	if err := l.WaitFor(ctx, 20*time.Second, "h2 programs the v0.11 node", func() error {
		onPeer = peerState()
		return contains(onPeer, "10.5.77.0/24 via 10.5.77.0 dev flannel.1", "onlink", "lladdr "+mac, mac+" dst "+h1.IP.String())
	}); err != nil {
		t.Fatal(err)
	}

	// Ours replaces the v0.11 node on h1.
	p1, err := l.StartFlanneld(h1)
	if err != nil {
		t.Fatal(err)
	}
	if env := waitEnv(t, l, h1, p1, 30*time.Second); env.Subnet.Masked() != sn {
		t.Fatalf("h1 took %v, want v0.11's %v", env.Subnet, sn)
	}
	if err := l.WaitFor(ctx, 20*time.Second, "h1 ready", func() error { return contains(p1.Log(), "flannel is ready") }); err != nil {
		t.Fatal(err)
	}
	pod1, err := l.AddPod(ctx, h1, "p1")
	if err != nil {
		t.Fatal(err)
	}
	pod2, err := l.AddPod(ctx, h2, "p1")
	if err != nil {
		t.Fatal(err)
	}
	(&cluster{l: l, pods: []*lab.Pod{pod1, pod2}}).pingAll(t)
	wait := pingPair(t, pod1, pod2, 6*time.Second)

	after, ttl := c.v2Value(t, sn)
	if after != before || ttl < 86000 {
		t.Errorf("v2 lease after the swap %q (ttl %d), want v0.11's bytes %q with ttl 86400", after, ttl, before)
	}
	link, _ := l.Exec(ctx, h1.NS, "ip", "link", "show", "flannel.1")
	if !strings.Contains(link, "link/ether "+mac) {
		t.Errorf("flannel.1 lost v0.11's MAC %s:\n%s", mac, link)
	}
	log := p1.Log()
	if strings.Contains(log, "created vxlan device") || strings.Count(log, "running in v2 mode") != 1 ||
		!strings.Contains(log, "for current IP ("+h1.IP.String()+"), reusing") {
		t.Errorf("h1's log: want the lease reused, the device adopted and one v2 warning:\n%s", log)
	}
	// The peer saw the same value again: nothing changed on it.
	time.Sleep(2 * time.Second)
	if got := peerState(); got != onPeer {
		t.Errorf("h2's entries for h1 changed:\nbefore:\n%s\nafter:\n%s", onPeer, got)
	}
	sent, recv := wait()
	figure(t, "etcd-v2-replace-v011", "v0.11 node replaced in place: same subnet, MAC and value bytes; peer entries unchanged; pod ping %s", lossLine(sent, recv))
	if sent != recv {
		t.Errorf("lost %d of %d pod packets", sent-recv, sent)
	}
}

// Conflicts and failures of the migration: a subnet claimed by different
// nodes in v2 and v3 is routed to the v2 owner and logged once; the
// previous subnet held in v3 by another node is not taken; a v2-only lease
// that expires is removed while one with a v3 twin stays; and a server
// without the v2 API is a clear error in v2 mode and an explanation in auto
// mode, which then runs on a v3 config.
func TestPrivilegedEtcdV2Conflicts(t *testing.T) {
	c := newV2Cluster(t, 2)
	l := c.l
	ctx := testCtx(t, 4*time.Minute)
	h1, h2 := l.Hosts()[0], l.Hosts()[1]
	if _, err := c.v3.Put(ctx, "/coreos.com/network/config", v2Config); err != nil {
		t.Fatal(err)
	}
	lease := func(ip, mac string) string {
		return fmt.Sprintf(`{"PublicIP":%q,"BackendType":"vxlan","BackendData":{"VtepMAC":%q}}`, ip, mac)
	}
	// A split claim: 10.5.60.0/24 is x1's in v2 and x2's in v3.
	split := netip.MustParsePrefix("10.5.60.0/24")
	x1 := &etcdv2test.Node{Client: c.v2, PublicIP: netip.MustParseAddr("172.30.3.201"), Backend: etcdv2test.BackendVxlan, VtepMAC: "66:52:c2:e4:ae:c1"}
	if _, err := x1.Acquire(ctx, split); err != nil {
		t.Fatal(err)
	}
	if _, err := c.v3.Put(ctx, "/coreos.com/network/subnets/10.5.60.0-24", lease("172.30.3.202", "66:52:c2:e4:ae:c2")); err != nil {
		t.Fatal(err)
	}
	// h1's previous subnet is held in v3 by a v3-only node.
	held := netip.MustParsePrefix("10.5.50.0/24")
	if _, err := c.v3.Put(ctx, "/coreos.com/network/subnets/10.5.50.0-24", lease("172.30.3.203", "66:52:c2:e4:ae:c3")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h1.SubnetFile(), []byte("FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.50.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Two short v2 leases: one alone, one with a v3 twin.
	lone, twin := netip.MustParsePrefix("10.5.61.0/24"), netip.MustParsePrefix("10.5.62.0/24")
	if _, err := c.v2.Create(ctx, etcdv2test.SubnetKey(etcdv2test.DefaultPrefix, lone), lease("172.30.3.204", "66:52:c2:e4:ae:c4"), 15*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := c.v2.Create(ctx, etcdv2test.SubnetKey(etcdv2test.DefaultPrefix, twin), lease("172.30.3.205", "66:52:c2:e4:ae:c5"), 15*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := c.v3.Put(ctx, "/coreos.com/network/subnets/10.5.62.0-24", lease("172.30.3.205", "66:52:c2:e4:ae:c5")); err != nil {
		t.Fatal(err)
	}

	p1, err := l.StartFlanneld(h1, "--etcd-api=both")
	if err != nil {
		t.Fatal(err)
	}
	// subnet.env exists already (the previous one): wait for the new one.
	if err := l.WaitFor(ctx, 30*time.Second, "h1 ready", func() error { return contains(p1.Log(), "flannel is ready") }); err != nil {
		t.Fatal(err)
	}
	env := waitEnv(t, l, h1, p1, 30*time.Second)
	if env.Subnet.Masked() == held {
		t.Errorf("h1 took %v, held in v3 by another node", held)
	}
	fdb := func() string { out, _ := l.Exec(ctx, h1.NS, "bridge", "fdb", "show", "dev", "flannel.1"); return out }
	if err := l.WaitFor(ctx, 20*time.Second, "h1 programs the union", func() error {
		return contains(fdb(), "66:52:c2:e4:ae:c1 dst 172.30.3.201", "66:52:c2:e4:ae:c3", "66:52:c2:e4:ae:c4", "66:52:c2:e4:ae:c5")
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(fdb(), "66:52:c2:e4:ae:c2") {
		t.Errorf("the split claim was routed to its v3 owner:\n%s", fdb())
	}
	if n := strings.Count(p1.Log(), "Subnet claimed by different nodes"); n != 1 {
		t.Errorf("split claim logged %d times, want once:\n%s", n, p1.Log())
	}
	// The v2 leases expire: the lone one goes, the twin stays (v3).
	if err := l.WaitFor(ctx, 45*time.Second, "the lone v2 lease removed after expiry", func() error {
		out, _ := l.Exec(ctx, h1.NS, "ip", "route", "show", lone.String())
		if strings.TrimSpace(out) != "" {
			return fmt.Errorf("route still there: %s", out)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if out, _ := l.Exec(ctx, h1.NS, "ip", "route", "show", twin.String()); !strings.Contains(out, "dev flannel.1") {
		t.Errorf("the lease with a v3 twin lost its route when its v2 copy expired: %q", out)
	}
	if code, err := p1.Stop(10 * time.Second); err != nil || code != 0 {
		t.Errorf("stop: exit %d %v", code, err)
	}

	// The v2 API switched off.
	if err := l.StopEtcd(); err != nil {
		t.Fatal(err)
	}
	if err := l.StartEtcdV2(ctx, "--enable-v2=false"); err != nil {
		t.Fatal(err)
	}
	p2, err := l.StartFlanneld(h2, "--etcd-api=v2")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.WaitFor(ctx, 20*time.Second, "v2 mode names the missing v2 API", func() error {
		return contains(p2.Log(), "does not serve etcd's v2 API (etcd 3.4/3.5 needs --enable-v2=true")
	}); err != nil {
		t.Fatal(err)
	}
	p2.Stop(10 * time.Second)
	c3, err := l.Etcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c3.Delete(ctx, "/coreos.com/network/config"); err != nil {
		t.Fatal(err)
	}
	p2, err = l.StartFlanneld(h2)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.WaitFor(ctx, 20*time.Second, "auto explains", func() error {
		return contains(p2.Log(), "does not serve the v2 API")
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := c3.Put(ctx, "/coreos.com/network/config", v2Config); err != nil {
		t.Fatal(err)
	}
	waitEnv(t, l, h2, p2, 30*time.Second)
	if n := strings.Count(p2.Log(), "does not serve the v2 API"); n != 1 {
		t.Errorf("auto explained %d times, want once:\n%s", n, p2.Log())
	}
}
