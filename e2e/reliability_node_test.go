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

// leaseKV returns the etcd entry of the lease of subnet s.
func leaseKV(t *testing.T, cli *clientv3.Client, s fmt.Stringer) (key string, lease, modRev int64) {
	t.Helper()
	key = "/coreos.com/network/subnets/" + strings.ReplaceAll(s.String(), "/", "-")
	resp, err := cli.Get(context.Background(), key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("lease %s: %v (%d entries)", key, err, len(resp.Kvs))
	}
	return key, resp.Kvs[0].Lease, resp.Kvs[0].ModRevision
}

// crashLoops is how many times in a row the daemon is killed with SIGKILL
// and restarted.
const crashLoops = 10

// kill -9 ten times in a row, each time restarted at once, while pods on
// both hosts ping each other at 10 Hz: every restart gets the same subnet
// and VTEP MAC, no packet is lost, and etcd holds one lease per key at the
// end (a restart refreshes the etcd lease instead of granting another).
func TestPrivilegedReliabilityCrashLoop(t *testing.T) {
	c := startCluster(t, 2, vxlanConfig)
	c.pingAll(t)
	l, h1 := c.l, c.l.Hosts()[0]
	cli, err := l.Etcd(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mac := leaseMAC(t, l, c.envs[0].Subnet)
	_, etcdLease, _ := leaseKV(t, cli, c.envs[0].Subnet)

	const pingFor = 15 * time.Second
	wait := pingPair(t, c.pods[0], c.pods[1], pingFor)
	start := time.Now()
	time.Sleep(time.Second)
	var worst time.Duration
	for i := range crashLoops {
		if err := c.procs[0].Kill(); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		p, err := l.StartFlanneld(h1)
		if err != nil {
			t.Fatal(err)
		}
		c.procs[0] = p
		waitReady(t, l, p, 20*time.Second)
		worst = max(worst, time.Since(killed))
		env := waitEnv(t, l, h1, p, time.Second)
		if env.Subnet != c.envs[0].Subnet {
			t.Fatalf("restart %d: subnet %s, want %s", i+1, env.Subnet, c.envs[0].Subnet)
		}
		if got := leaseMAC(t, l, env.Subnet); got != mac {
			t.Fatalf("restart %d: VTEP MAC %s, want %s", i+1, got, mac)
		}
		if err := contains(p.Log(), "for current IP ("+h1.IP.String()+"), reusing"); err != nil {
			t.Errorf("restart %d: %v", i+1, err)
		}
	}
	loops := time.Since(start)
	if loops > pingFor-2*time.Second {
		t.Fatalf("the restarts took %s, longer than the ping covers", loops)
	}
	sent, recv := wait()

	ctx := testCtx(t, 10*time.Second)
	resp, err := cli.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keys := leases(t, cli, "/coreos.com/network")
	held := map[int64]bool{}
	for _, r := range keys {
		held[r.Kvs[0].Lease] = true
	}
	for _, ls := range resp.Leases {
		if !held[int64(ls.ID)] {
			t.Errorf("etcd lease %x is attached to no key", ls.ID)
		}
	}
	if len(resp.Leases) != len(keys) {
		t.Errorf("%d etcd leases for %d keys", len(resp.Leases), len(keys))
	}
	if _, now, _ := leaseKV(t, cli, c.envs[0].Subnet); now != etcdLease {
		t.Errorf("etcd lease of our key changed from %x to %x", etcdLease, now)
	}
	figure(t, "crash-loop", "%d kill -9 + restarts in %s (slowest kill-to-ready %s): pod ping %s; subnet and MAC unchanged; %d etcd leases for %d keys",
		crashLoops, ms(loops), ms(worst), lossLine(sent, recv), len(resp.Leases), len(keys))
	if recv != sent {
		t.Errorf("lost %d of %d pod packets", sent-recv, sent)
	}
}

// peerView is what a peer's kernel holds for one node: its FDB entry,
// neighbour entry and route.
func peerView(t *testing.T, l *lab.Lab, peer *lab.Host, mac string, sn fmt.Stringer, vtep string) string {
	t.Helper()
	ctx := testCtx(t, 10*time.Second)
	var b strings.Builder
	for _, cmd := range [][]string{
		{"bridge", "fdb", "show", "dev", "flannel.1"},
		{"ip", "neigh", "show", "dev", "flannel.1", vtep},
		{"ip", "route", "show", sn.String()},
	} {
		out, err := l.Exec(ctx, peer.NS, cmd...)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, mac) || strings.Contains(line, vtep) || strings.Contains(line, sn.String()) {
				b.WriteString(strings.TrimSpace(line) + "\n")
			}
		}
	}
	if b.Len() == 0 {
		t.Fatalf("%s holds nothing for %s", peer.Name, sn)
	}
	return b.String()
}

// A node reboots (its namespace is deleted and recreated, flannel.1 and
// cni0 with it; only its files stay, subnet.env included) and its daemon
// starts again: it gets its subnet and VTEP MAC back without touching its
// lease, the peers' FDB, neighbour and route entries for it stay exactly as
// they were, and traffic to a new pod on it flows within 2 s of readiness.
func TestPrivilegedReliabilityHostReboot(t *testing.T) {
	c := startCluster(t, 3, vxlanConfig)
	c.pingAll(t)
	l, h1 := c.l, c.l.Hosts()[0]
	cli, err := l.Etcd(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	sn := c.envs[0].Subnet
	mac := leaseMAC(t, l, sn)
	_, _, modRev := leaseKV(t, cli, sn)
	peers := l.Hosts()[1:]
	var before []string
	for _, p := range peers {
		before = append(before, peerView(t, l, p, mac, sn.Masked(), sn.Masked().Addr().String()))
	}

	ctx := testCtx(t, 90*time.Second)
	if err := l.ResetHost(ctx, h1); err != nil {
		t.Fatal(err)
	}
	if out, _ := l.Exec(ctx, h1.NS, "ip", "-o", "link"); strings.Contains(out, "flannel.1") {
		t.Fatalf("flannel.1 survived the reboot: %s", out)
	}
	p, err := l.StartFlanneld(h1)
	if err != nil {
		t.Fatal(err)
	}
	ready := waitReady(t, l, p, 30*time.Second)
	pod, err := l.AddPod(ctx, h1, "p2")
	if err != nil {
		t.Fatal(err)
	}
	resumed := waitConnected(t, l, c.pods[1:], pod, ready, 10*time.Second)

	if env := waitEnv(t, l, h1, p, time.Second); env.Subnet != sn {
		t.Errorf("subnet after reboot %s, want %s", env.Subnet, sn)
	}
	out, _ := l.Exec(ctx, h1.NS, "ip", "-o", "link", "show", "flannel.1")
	if !strings.Contains(out, mac) {
		t.Errorf("flannel.1 after reboot: %s, want MAC %s", out, mac)
	}
	if _, _, now := leaseKV(t, cli, sn); now != modRev {
		t.Errorf("lease rewritten by the reboot (mod revision %d -> %d)", modRev, now)
	}
	for i, p := range peers {
		if after := peerView(t, l, p, mac, sn.Masked(), sn.Masked().Addr().String()); after != before[i] {
			t.Errorf("%s changed its entries for the rebooted node:\n%s\nbecame\n%s", p.Name, before[i], after)
		}
	}
	figure(t, "host-reboot", "subnet %s and MAC %s back, lease untouched, peers unchanged; traffic to a new pod %s after ready", sn, mac, ms(resumed))
	if resumed > 2*time.Second {
		t.Errorf("traffic resumed %s after ready, want within 2s", ms(resumed))
	}
}

// A node dies for good (SIGKILL, no restart) with a 10 s lease TTL: its
// lease expires and every peer removes its route, neighbour and FDB
// entries.
func TestPrivilegedReliabilityLeaseExpiry(t *testing.T) {
	const ttl = 10 * time.Second
	c := startCluster(t, 3, vxlanConfig, "--subnet-lease-ttl="+ttl.String())
	c.pingAll(t)
	l := c.l
	cli, err := l.Etcd(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Hosts()[2]
	sn := c.envs[2].Subnet.Masked()
	mac := leaseMAC(t, l, sn)
	key, _, _ := leaseKV(t, cli, sn)
	if err := c.procs[2].Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()

	ctx := testCtx(t, 60*time.Second)
	var expired time.Duration
	if err := l.WaitFor(ctx, ttl+10*time.Second, "lease "+key+" expired", func() error {
		resp, err := cli.Get(ctx, key)
		if err != nil {
			return err
		}
		if len(resp.Kvs) > 0 {
			return fmt.Errorf("still there")
		}
		expired = time.Since(killed)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var cleaned time.Duration
	for _, h := range l.Hosts()[:2] {
		err := l.WaitFor(ctx, 10*time.Second, h.Name+" forgets "+dead.Name, func() error {
			var left []string
			for _, cmd := range [][]string{
				{"ip", "route", "show", sn.String()},
				{"ip", "neigh", "show", "dev", "flannel.1", sn.Addr().String()},
				{"bridge", "fdb", "show", "dev", "flannel.1"},
			} {
				out, err := l.Exec(ctx, h.NS, cmd...)
				if err != nil {
					return err
				}
				for _, line := range strings.Split(out, "\n") {
					if strings.Contains(line, sn.String()) || strings.Contains(line, mac) || strings.HasPrefix(line, sn.Addr().String()+" ") {
						left = append(left, line)
					}
				}
			}
			if len(left) > 0 {
				return fmt.Errorf("left: %q", left)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		cleaned = max(cleaned, time.Since(killed))
	}
	figure(t, "lease-expiry", "TTL %s: lease gone %s after kill -9, every peer's route/neigh/FDB gone %s after kill -9", ttl, ms(expired), ms(cleaned))
	if expired > ttl+2*time.Second {
		t.Errorf("lease outlived its TTL: gone %s after the last possible renewal", ms(expired))
	}
	if cleaned-expired > 2*time.Second {
		t.Errorf("peers took %s after the expiry to clean up", ms(cleaned-expired))
	}
}
