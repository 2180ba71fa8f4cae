//go:build linux

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcdOutage is how long the single etcd server stays down.
const etcdOutage = 60 * time.Second

// The only etcd server stops for a minute while pods on two hosts ping each
// other at 10 Hz: no packet is lost, each daemon logs the outage once and
// its end once, and a host that joins after etcd is back reaches the
// others' pods within 2 s of its readiness.
func TestPrivilegedReliabilityEtcdOutage(t *testing.T) {
	c := startCluster(t, 2, vxlanConfig)
	c.pingAll(t)
	l := c.l

	wait := pingPair(t, c.pods[0], c.pods[1], etcdOutage+8*time.Second)
	time.Sleep(2 * time.Second)
	marks := make([]int, len(c.procs))
	for i, p := range c.procs {
		marks[i] = len(p.Log())
	}
	if err := l.StopEtcd(); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	time.Sleep(etcdOutage)
	ctx := testCtx(t, 2*time.Minute)
	if err := l.StartEtcd(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("etcd was down for %s", ms(time.Since(down)))

	// Every daemon notices both edges, once each, even when nothing else
	// needs etcd: the config watch ends when the client's connection is
	// down for more than 5 s, and its re-read logs the outage.
	for i, p := range c.procs {
		err := l.WaitFor(ctx, 15*time.Second, "end of outage logged by "+l.Hosts()[i].Name, func() error {
			return contains(p.Log()[marks[i]:], "etcd is reachable again")
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	// A node joining after the outage.
	h3, err := l.AddHost(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p3, err := l.StartFlanneld(h3)
	if err != nil {
		t.Fatal(err)
	}
	ready := waitReady(t, l, p3, 30*time.Second)
	pod3, err := l.AddPod(ctx, h3, "p1")
	if err != nil {
		t.Fatal(err)
	}
	join := waitConnected(t, l, c.pods, pod3, ready, 10*time.Second)

	sent, recv := wait()
	for i, p := range c.procs {
		during := p.Log()[marks[i]:]
		if p.Exited() {
			t.Errorf("%s: flanneld exited:\n%s", l.Hosts()[i].Name, during)
		}
		if n := strings.Count(during, "etcd is unreachable"); n != 1 {
			t.Errorf("%s: outage logged %d times, want once:\n%s", l.Hosts()[i].Name, n, during)
		}
		if n := strings.Count(during, "etcd is reachable again"); n != 1 {
			t.Errorf("%s: end of outage logged %d times, want once:\n%s", l.Hosts()[i].Name, n, during)
		}
		t.Logf("%s logged during and after the outage:\n%s", l.Hosts()[i].Name, during)
	}
	figure(t, "etcd-outage", "%s outage: pod ping %s; new node reachable %s after ready", etcdOutage, lossLine(sent, recv), ms(join))
	if recv != sent {
		t.Errorf("lost %d of %d pod packets during the etcd outage", sent-recv, sent)
	}
	if join > 2*time.Second {
		t.Errorf("node joining after the outage reachable only %s after ready, want within 2s", ms(join))
	}
}

// fakePeer is a lease another program could have written: a vxlan peer
// that exists only in etcd, so its arrival and removal can be watched in
// every host's FDB.
const (
	fakePeerKey   = "/coreos.com/network/subnets/10.5.250.0-24"
	fakePeerMAC   = "02:00:00:00:fa:01"
	fakePeerValue = `{"PublicIP":"172.30.0.99","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"` + fakePeerMAC + `"}}`
)

// waitFDB waits until every host's flannel.1 FDB holds (present) or lacks
// the fake peer's MAC and returns how long that took since `since`.
func waitFDB(t *testing.T, l *lab.Lab, hosts []*lab.Host, present bool, since time.Time, timeout time.Duration) time.Duration {
	t.Helper()
	ctx := testCtx(t, timeout+5*time.Second)
	for _, h := range hosts {
		err := l.WaitFor(ctx, timeout-time.Since(since), fmt.Sprintf("fake peer present=%t on %s", present, h.Name), func() error {
			out, err := l.Exec(ctx, h.NS, "bridge", "fdb", "show", "dev", "flannel.1")
			if err != nil {
				return err
			}
			if strings.Contains(out, fakePeerMAC) != present {
				return fmt.Errorf("fdb: %s", out)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return time.Since(since)
}

// A three-member etcd cluster, every daemon given all endpoints and a 15 s
// lease TTL (renewals every 5 s): the leader is killed, then (with it back)
// another member is cut off from the network and reconnected. Leases keep
// renewing and are never lost, lease changes made during each fault reach
// every daemon, and a node joins while a member is down.
func TestPrivilegedReliabilityEtcdCluster(t *testing.T) {
	l := lab.NewT(t, lab.Options{Hosts: 2})
	ctx := testCtx(t, 4*time.Minute)
	ec, err := l.StartEtcdCluster(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := ec.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/coreos.com/network/config", vxlanConfig); err != nil {
		t.Fatal(err)
	}
	args := []string{"--etcd-endpoints=" + ec.EndpointList(), "--subnet-lease-ttl=15s"}
	hosts := l.Hosts()
	var procs []*lab.Process
	var pods []*lab.Pod
	for _, h := range hosts {
		p, err := l.StartFlanneld(h, args...)
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
	}
	for i, h := range hosts {
		waitEnv(t, l, h, procs[i], 30*time.Second)
		pod, err := l.AddPod(ctx, h, "p1")
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, pod)
	}
	(&cluster{l: l, pods: pods}).pingAll(t)

	// A key deleted and re-created would get a new create revision.
	created := func() map[string]int64 {
		var resp *clientv3.GetResponse
		etcdRetry(t, "list leases", func(ctx context.Context) (err error) {
			resp, err = cli.Get(ctx, "/coreos.com/network/subnets/", clientv3.WithPrefix())
			return err
		})
		out := map[string]int64{}
		for _, kv := range resp.Kvs {
			out[string(kv.Key)] = kv.CreateRevision
		}
		return out
	}
	renewals := func() []int {
		var n []int
		for _, p := range procs {
			n = append(n, strings.Count(p.Log(), "Lease renewed"))
		}
		return n
	}
	before := created()

	// Fault 1: the leader dies.
	leader, err := ec.Leader(ctx, cli)
	if err != nil {
		t.Fatal(err)
	}
	if err := ec.Kill(leader); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	t.Logf("killed leader %s", leader.Name)
	r0 := renewals()
	etcdRetry(t, "put fake peer", func(ctx context.Context) error {
		_, err := cli.Put(ctx, fakePeerKey, fakePeerValue)
		return err
	})
	putAt := time.Now()
	watch1 := waitFDB(t, l, hosts, true, putAt, 20*time.Second)

	h3, err := l.AddHost(ctx)
	if err != nil {
		t.Fatal(err)
	}
	joinStart := time.Now()
	p3, err := l.StartFlanneld(h3, args...)
	if err != nil {
		t.Fatal(err)
	}
	procs = append(procs, p3)
	hosts = append(hosts, h3)
	waitReady(t, l, p3, 30*time.Second)
	pod3, err := l.AddPod(ctx, h3, "p1")
	if err != nil {
		t.Fatal(err)
	}
	join := waitConnected(t, l, pods, pod3, joinStart, 20*time.Second)
	pods = append(pods, pod3)
	// Long enough for every daemon to renew at least once on two members.
	if d := 7*time.Second - time.Since(killed); d > 0 {
		time.Sleep(d)
	}
	r1 := renewals()
	for i := range r0 {
		if r1[i] <= r0[i] {
			t.Errorf("%s did not renew its lease while %s was down", hosts[i].Name, leader.Name)
		}
	}
	if err := ec.Restart(ctx, leader); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s back after %s", leader.Name, ms(time.Since(killed)))

	// Fault 2: another member is cut off (packets dropped, no resets) for
	// longer than the lease TTL.
	// The member serving the most watches: the daemons' watch streams sit
	// on a connection that now silently drops everything.
	victim, watchers := busiestMember(t, l, ec)
	if err := l.Disconnect(victim.Node); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	t.Logf("disconnected %s (serving %v watchers)", victim.Name, watchers)
	r2 := renewals()
	etcdRetry(t, "delete fake peer", func(ctx context.Context) error {
		_, err := cli.Delete(ctx, fakePeerKey)
		return err
	})
	delAt := time.Now()
	watch2 := waitFDB(t, l, hosts, false, delAt, 30*time.Second)
	if d := 20*time.Second - time.Since(cut); d > 0 {
		time.Sleep(d)
	}
	r3 := renewals()
	if err := l.Reconnect(victim.Node); err != nil {
		t.Fatal(err)
	}
	t.Logf("reconnected %s after %s", victim.Name, ms(time.Since(cut)))
	for i := range r2 {
		if r3[i] <= r2[i] {
			t.Errorf("%s did not renew its lease while %s was cut off", hosts[i].Name, victim.Name)
		}
	}

	// Afterwards: no daemon exited, no lease was lost and re-created, every
	// pod still reaches every other.
	after := created()
	for k, rev := range before {
		if after[k] != rev {
			t.Errorf("lease %s was re-created (create revision %d -> %d)", k, rev, after[k])
		}
	}
	if len(after) != 3 {
		t.Errorf("%d leases at the end, want 3: %v", len(after), after)
	}
	for i, p := range procs {
		if p.Exited() {
			t.Errorf("%s: flanneld exited:\n%s", hosts[i].Name, p.Log())
		}
		if lost := logLines(p.Log(), "Our lease is gone"); len(lost) > 0 {
			t.Errorf("%s lost its lease: %s", hosts[i].Name, lost)
		}
	}
	(&cluster{l: l, pods: pods}).pingAll(t)
	figure(t, "etcd-cluster", "leader killed: lease change reached all daemons in %s, node joined (start to full connectivity) in %s; member cut off: lease change reached all daemons in %s; renewals %v -> %v, no lease lost",
		ms(watch1), ms(join), ms(watch2), r0, r3)
}

// busiestMember returns the member with the most watchers (etcd's own
// gauge) and that count.
func busiestMember(t *testing.T, l *lab.Lab, ec *lab.EtcdCluster) (*lab.EtcdMember, float64) {
	t.Helper()
	best, most := ec.Members[0], -1.0
	for _, m := range ec.Members {
		code, body, err := httpGet(l, m.ClientURL+"/metrics")
		if err != nil || code != 200 {
			t.Fatalf("%s /metrics: %d %v", m.Name, code, err)
		}
		if n := metricValue(t, body, "etcd_debugging_mvcc_watcher_total"); n > most {
			best, most = m, n
		}
	}
	return best, most
}
