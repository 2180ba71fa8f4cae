//go:build linux

package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
	"github.com/flannelng/flannel/subnet"
)

// cluster is a lab with flanneld running on every host and one pod each.
type cluster struct {
	l     *lab.Lab
	procs []*lab.Process
	envs  []subnet.Env
	pods  []*lab.Pod
}

func startCluster(t *testing.T, hosts int, netConfig string, args ...string) *cluster {
	t.Helper()
	return startClusterOpts(t, lab.Options{Hosts: hosts}, netConfig, args...)
}

// startClusterOpts is startCluster with lab options (IPv6 underlay, ...).
func startClusterOpts(t *testing.T, o lab.Options, netConfig string, args ...string) *cluster {
	t.Helper()
	l, _ := newLabOpts(t, o, netConfig)
	c := &cluster{l: l}
	for _, h := range l.Hosts() {
		p, err := l.StartFlanneld(h, args...)
		if err != nil {
			t.Fatal(err)
		}
		c.procs = append(c.procs, p)
	}
	ctx := testCtx(t, 60*time.Second)
	for i, h := range l.Hosts() {
		c.envs = append(c.envs, waitEnv(t, l, h, c.procs[i], 30*time.Second))
		pod, err := l.AddPod(ctx, h, "p1")
		if err != nil {
			t.Fatal(err)
		}
		c.pods = append(c.pods, pod)
	}
	return c
}

// pingAll checks that every pod reaches every other pod.
func (c *cluster) pingAll(t *testing.T) {
	t.Helper()
	ctx := testCtx(t, 60*time.Second)
	for _, a := range c.pods {
		for _, b := range c.pods {
			if a == b {
				continue
			}
			err := c.l.WaitFor(ctx, 10*time.Second, fmt.Sprintf("ping %s -> %s", a.NS, b.IP), func() error {
				return c.l.Ping(ctx, a.NS, b.IP, 1)
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestPrivilegedVXLANPodTraffic(t *testing.T) {
	c := startCluster(t, 3, `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`)
	if c.envs[0].MTU != 1450 {
		t.Errorf("FLANNEL_MTU %d, want 1450", c.envs[0].MTU)
	}
	c.pingAll(t)
	ctx := testCtx(t, 60*time.Second)
	// A few MB at the advertised MTU: full-size segments cross the tunnel.
	if err := c.l.TCPTransfer(ctx, c.pods[0].NS, c.pods[2].NS, c.pods[2].IP, 8<<20); err != nil {
		t.Fatal(err)
	}
	// The exact objects for one peer, as upstream programs them.
	h1 := c.l.Hosts()[0]
	peer := c.envs[1].Subnet
	out, _ := c.l.Exec(ctx, h1.NS, "ip", "-d", "link", "show", "flannel.1")
	if err := contains(out, "mtu 1450", "vxlan id 1 local "+h1.IP.String()+" dev eth0", "dstport 8472", "nolearning"); err != nil {
		t.Errorf("device: %v\n%s", err, out)
	}
	out, _ = c.l.Exec(ctx, h1.NS, "ip", "route", "show", peer.String())
	if !strings.Contains(out, fmt.Sprintf("%s via %s dev flannel.1 proto 45 onlink", peer, peer.Addr())) {
		t.Errorf("route: %s", out)
	}
	mac := leaseMAC(t, c.l, c.envs[1].Subnet)
	out, _ = c.l.Exec(ctx, h1.NS, "ip", "neigh", "show", "dev", "flannel.1")
	if !strings.Contains(out, fmt.Sprintf("%s lladdr %s PERMANENT", peer.Addr(), mac)) {
		t.Errorf("neigh: %s (want %s)", out, mac)
	}
	out, _ = c.l.Exec(ctx, h1.NS, "bridge", "fdb", "show", "dev", "flannel.1")
	if !strings.Contains(out, fmt.Sprintf("%s dst %s self permanent", mac, c.l.Hosts()[1].IP)) {
		t.Errorf("fdb: %s", out)
	}
}

func TestPrivilegedDirectRoutingPodTraffic(t *testing.T) {
	c := startCluster(t, 3, `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true}}`)
	c.pingAll(t)
	ctx := testCtx(t, 60*time.Second)
	if err := c.l.TCPTransfer(ctx, c.pods[1].NS, c.pods[0].NS, c.pods[0].IP, 4<<20); err != nil {
		t.Fatal(err)
	}
	// Peers share the fabric: routes go straight via their public IPs.
	peer := c.envs[1].Subnet
	out, _ := c.l.Exec(ctx, c.l.Hosts()[0].NS, "ip", "route", "show", peer.String())
	if !strings.Contains(out, fmt.Sprintf("%s via %s dev eth0 proto 45", peer, c.l.Hosts()[1].IP)) {
		t.Errorf("direct route: %s", out)
	}
}

func TestPrivilegedHostGWPodTraffic(t *testing.T) {
	c := startCluster(t, 3, `{"Network":"10.5.0.0/16","Backend":{"Type":"host-gw"}}`)
	if c.envs[0].MTU != 1500 {
		t.Errorf("FLANNEL_MTU %d, want 1500", c.envs[0].MTU)
	}
	c.pingAll(t)
	ctx := testCtx(t, 60*time.Second)
	if err := c.l.TCPTransfer(ctx, c.pods[2].NS, c.pods[1].NS, c.pods[1].IP, 4<<20); err != nil {
		t.Fatal(err)
	}
	peer := c.envs[2].Subnet
	out, _ := c.l.Exec(ctx, c.l.Hosts()[0].NS, "ip", "route", "show", peer.String())
	if !strings.Contains(out, fmt.Sprintf("%s via %s dev eth0 proto 45", peer, c.l.Hosts()[2].IP)) {
		t.Errorf("host-gw route: %s", out)
	}
}

func leaseMAC(t *testing.T, l *lab.Lab, s interface{ String() string }) string {
	t.Helper()
	cli, err := l.Etcd(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(context.Background(), "/coreos.com/network/subnets/"+strings.ReplaceAll(s.String(), "/", "-"))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("lease of %s: %v", s, err)
	}
	m := regexp.MustCompile(`"VtepMAC":"([0-9a-f:]+)"`).FindStringSubmatch(string(resp.Kvs[0].Value))
	if m == nil {
		t.Fatalf("no VtepMAC in %s", resp.Kvs[0].Value)
	}
	return m[1]
}

// ping10Hz starts a 10 Hz ping from ns to addr for d and returns a function
// that waits for it and reports sent and received counts.
func ping10Hz(t *testing.T, ns string, addr fmt.Stringer, d time.Duration) func() (sent, recv int) {
	count := int(d / (100 * time.Millisecond))
	cmd := exec.Command("ip", "netns", "exec", ns, "ping", "-n", "-i", "0.1", "-W", "1", "-c", fmt.Sprint(count), addr.String())
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return func() (int, int) {
		cmd.Wait()
		m := regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`).FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("ping output: %s", out.String())
		}
		var s, r int
		fmt.Sscan(m[1], &s)
		fmt.Sscan(m[2], &r)
		return s, r
	}
}

// kill -9 and restart while a 10 Hz ping crosses the node: no packet lost,
// same subnet, same MAC, and no kernel object re-created (checked with
// `ip monitor` on the restarted node).
func TestPrivilegedRestartDropsNothing(t *testing.T) {
	c := startCluster(t, 2, `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`)
	c.pingAll(t)
	h1 := c.l.Hosts()[0]
	ctx := testCtx(t, 60*time.Second)
	macBefore := leaseMAC(t, c.l, c.envs[0].Subnet)
	linkBefore, _ := c.l.Exec(ctx, h1.NS, "ip", "-o", "link", "show", "flannel.1")

	mon := exec.Command("ip", "netns", "exec", h1.NS, "ip", "monitor", "link", "route", "neigh")
	var monOut strings.Builder
	mon.Stdout = &monOut
	if err := mon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mon.Process.Kill(); mon.Wait() })

	wait := ping10Hz(t, c.pods[1].NS, c.pods[0].IP, 6*time.Second)
	time.Sleep(time.Second)
	for i := 0; i < 2; i++ {
		if err := c.procs[0].Kill(); err != nil {
			t.Fatal(err)
		}
		p, err := c.l.StartFlanneld(h1)
		if err != nil {
			t.Fatal(err)
		}
		c.procs[0] = p
		if err := c.l.WaitFor(ctx, 20*time.Second, "restarted daemon ready", func() error {
			return contains(p.Log(), "flannel is ready")
		}); err != nil {
			t.Fatal(err)
		}
	}
	sent, recv := wait()
	t.Logf("10 Hz ping across two kill -9 restarts: %d sent, %d received (loss %.1f%%)", sent, recv, 100*float64(sent-recv)/float64(sent))
	if recv != sent {
		t.Errorf("lost %d of %d packets", sent-recv, sent)
	}
	mon.Process.Signal(syscall.SIGTERM)
	mon.Wait()
	for _, line := range strings.Split(monOut.String(), "\n") {
		// IPv6 link-local routes are the kernel's own (addrconf after
		// the device came up), not objects of ours.
		if strings.Contains(line, "fe80:") {
			continue
		}
		if strings.Contains(line, "flannel.1") || strings.Contains(line, "proto 45") {
			t.Errorf("kernel object changed during restart: %s", line)
		}
	}
	env := waitEnv(t, c.l, h1, c.procs[0], 10*time.Second)
	if env.Subnet != c.envs[0].Subnet {
		t.Errorf("subnet %s, want %s", env.Subnet, c.envs[0].Subnet)
	}
	if mac := leaseMAC(t, c.l, env.Subnet); mac != macBefore {
		t.Errorf("MAC %s, want %s", mac, macBefore)
	}
	linkAfter, _ := c.l.Exec(ctx, h1.NS, "ip", "-o", "link", "show", "flannel.1")
	if strings.Fields(linkAfter)[0] != strings.Fields(linkBefore)[0] {
		t.Errorf("device re-created: %s -> %s", linkBefore, linkAfter)
	}
}

// Entries deleted by hand come back within a second; a deleted device comes
// back with its MAC and all peers.
func TestPrivilegedDriftRepaired(t *testing.T) {
	c := startCluster(t, 3, `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`)
	c.pingAll(t)
	h1 := c.l.Hosts()[0]
	ctx := testCtx(t, 90*time.Second)
	peer := c.envs[1].Subnet
	mac := leaseMAC(t, c.l, peer)
	ownMAC := leaseMAC(t, c.l, c.envs[0].Subnet)
	cases := []struct {
		name  string
		del   []string
		check []string
		want  string
	}{
		{"route", []string{"ip", "route", "del", peer.String()}, []string{"ip", "route", "show", peer.String()}, "dev flannel.1"},
		{"neighbour", []string{"ip", "neigh", "del", peer.Addr().String(), "dev", "flannel.1"}, []string{"ip", "neigh", "show", "dev", "flannel.1"}, mac},
		{"fdb", []string{"bridge", "fdb", "del", mac, "dev", "flannel.1", "dst", c.l.Hosts()[1].IP.String(), "self"}, []string{"bridge", "fdb", "show", "dev", "flannel.1"}, mac},
		{"device", []string{"ip", "link", "del", "flannel.1"}, []string{"ip", "link", "show", "flannel.1"}, ownMAC},
	}
	for _, tc := range cases {
		if out, err := c.l.Exec(ctx, h1.NS, tc.del...); err != nil {
			t.Fatalf("%s: %v %s", tc.name, err, out)
		}
		start := time.Now()
		err := c.l.WaitFor(ctx, 5*time.Second, tc.name+" restored", func() error {
			out, err := c.l.Exec(ctx, h1.NS, tc.check...)
			if err != nil {
				return err
			}
			return contains(out, tc.want)
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s deleted by hand: restored in %v", tc.name, time.Since(start).Round(time.Millisecond))
		c.pingAll(t)
	}
}

// A peer lease deleted from etcd takes its entries with it; a lease re-put
// with another MAC replaces the FDB entry instead of adding one.
func TestPrivilegedPeerLeaseChanges(t *testing.T) {
	c := startCluster(t, 2, `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`)
	c.pingAll(t)
	h1 := c.l.Hosts()[0]
	ctx := testCtx(t, 60*time.Second)
	cli, err := c.l.Etcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A fake peer written by another program.
	key := "/coreos.com/network/subnets/10.5.250.0-24"
	if _, err := cli.Put(ctx, key, `{"PublicIP":"172.30.0.99","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:01"}}`); err != nil {
		t.Fatal(err)
	}
	fdb := func() string { out, _ := c.l.Exec(ctx, h1.NS, "bridge", "fdb", "show", "dev", "flannel.1"); return out }
	if err := c.l.WaitFor(ctx, 5*time.Second, "fake peer programmed", func() error { return contains(fdb(), "02:00:00:00:00:01 dst 172.30.0.99") }); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, key, `{"PublicIP":"172.30.0.99","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:02"}}`); err != nil {
		t.Fatal(err)
	}
	if err := c.l.WaitFor(ctx, 5*time.Second, "MAC replaced", func() error {
		out := fdb()
		if strings.Contains(out, "02:00:00:00:00:01") {
			return fmt.Errorf("old FDB entry still there")
		}
		return contains(out, "02:00:00:00:00:02 dst 172.30.0.99")
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if err := c.l.WaitFor(ctx, 5*time.Second, "entries removed", func() error {
		out, _ := c.l.Exec(ctx, h1.NS, "ip", "route", "show", "10.5.250.0/24")
		if strings.TrimSpace(out) != "" || strings.Contains(fdb(), "02:00:00:00:00:02") {
			return fmt.Errorf("still present: %q", out)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// Two overlay networks side by side on the same hosts: different etcd
// prefixes, VNIs and subnet files.
func TestPrivilegedTwoNetworksSideBySide(t *testing.T) {
	l, cli := newLab(t, 2, `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan","VNI":1}}`)
	ctx := testCtx(t, 60*time.Second)
	if _, err := cli.Put(ctx, "/kubernetes/network/config", `{"Network":"10.6.0.0/16","Backend":{"Type":"vxlan","VNI":2,"Port":4789}}`); err != nil {
		t.Fatal(err)
	}
	var procs []*lab.Process
	for _, h := range l.Hosts() {
		p1, err := l.StartFlanneld(h)
		if err != nil {
			t.Fatal(err)
		}
		p2, err := l.StartFlanneld(h, "--etcd-prefix=/kubernetes/network", "--subnet-file="+h.Dir+"/second.env")
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p1, p2)
	}
	for _, h := range l.Hosts() {
		h := h
		if err := l.WaitFor(ctx, 30*time.Second, "both networks on "+h.Name, func() error {
			a, err := subnet.ReadEnvFile(h.SubnetFile())
			if err != nil {
				return err
			}
			b, err := subnet.ReadEnvFile(h.Dir + "/second.env")
			if err != nil {
				return err
			}
			if a.Network.String() != "10.5.0.0/16" || b.Network.String() != "10.6.0.0/16" {
				return fmt.Errorf("networks %s %s", a.Network, b.Network)
			}
			out, err := l.Exec(ctx, h.NS, "ip", "-d", "link", "show", "flannel.2")
			if err != nil {
				return err
			}
			return contains(out, "dstport 4789")
		}); err != nil {
			t.Fatal(err)
		}
	}
	// Both networks carry traffic between the hosts' gateway addresses.
	a, _ := subnet.ReadEnvFile(l.Hosts()[1].Dir + "/second.env")
	h0 := l.Hosts()[0]
	b0, _ := subnet.ReadEnvFile(h0.Dir + "/second.env")
	// Give each host's flannel.2 overlay a reachable address: ping the
	// peer's VTEP address (its subnet network address on flannel.2).
	if err := l.WaitFor(ctx, 10*time.Second, "ping over the second network", func() error {
		_, err := l.Exec(ctx, h0.NS, "ping", "-c", "1", "-W", "1", "-I", b0.Subnet.Addr().String(), a.Subnet.Addr().String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// The two daemons mark their routes alike but must not fight over
	// them.
	time.Sleep(time.Second)
	for _, p := range procs {
		if strings.Contains(p.Log(), "unexpected route") || strings.Contains(p.Log(), "deleted\"") {
			t.Errorf("daemons fight over routes:\n%s", p.Log())
		}
	}
}
