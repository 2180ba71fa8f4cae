//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
	"github.com/flannelng/flannel/subnet"
)

// kubeCluster is a lab with etcd, a real kube-apiserver (RBAC on) and one
// Node object per host, as node IPAM makes them. Daemons run with the
// flannel ServiceAccount of dist/kube-flannel.yml, never as an admin, so
// a verb missing from our ClusterRole fails the test.
type kubeCluster struct {
	l     *lab.Lab
	k     *lab.KubeClient
	procs []*lab.Process
	envs  []subnet.Env
	pods  []*lab.Pod
	conf  string
}

// kubeNodeOpts says how Nodes are created.
type kubeNodeOpts struct {
	dualStack bool
	// bare leaves every other Node without annotations (upstream panics on
	// those); the rest get a kubelet's usual registration annotation.
	bare bool
}

const kubeletAnnotation = "node.alpha.kubernetes.io/ttl"

// podCIDRs is host i's podCIDRs (1-based), as node IPAM assigns them.
func podCIDRs(i int, dual bool) []string {
	c := []string{fmt.Sprintf("10.244.%d.0/24", i)}
	if dual {
		c = append(c, fmt.Sprintf("fd00:10:244:%x::/64", i))
	}
	return c
}

func newKubeLab(t *testing.T, o lab.Options) *kubeCluster {
	t.Helper()
	if o.Binaries == (lab.Binaries{}) {
		lab.SkipUnlessPrivileged(t)
		o.Binaries = lab.BuildBinaries(t)
	}
	lab.RequireKubeBinaries(t, &o.Binaries)
	l := lab.NewT(t, o)
	ctx := testCtx(t, 3*time.Minute)
	if err := l.StartEtcd(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.StartKubeAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	k, err := l.Kube(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &kubeCluster{l: l, k: k}
}

// createNodes creates a Node for every host.
func (c *kubeCluster) createNodes(t *testing.T, o kubeNodeOpts) {
	t.Helper()
	ctx := testCtx(t, 30*time.Second)
	for i, h := range c.l.Hosts() {
		var ann map[string]string
		if !o.bare || i%2 == 0 {
			ann = map[string]string{kubeletAnnotation: "0"}
		}
		if err := c.k.CreateNode(ctx, h.Name, podCIDRs(i+1, o.dualStack), ann); err != nil {
			t.Fatal(err)
		}
	}
}

// start runs flanneld in kube mode on every host and waits for subnet.env.
func (c *kubeCluster) start(t *testing.T, netConf string, args ...string) {
	t.Helper()
	c.conf = netConf
	for _, h := range c.l.Hosts() {
		p, err := c.l.StartFlanneldKube(h, nil, netConf, args...)
		if err != nil {
			t.Fatal(err)
		}
		c.procs = append(c.procs, p)
	}
	for i, h := range c.l.Hosts() {
		c.envs = append(c.envs, waitEnv(t, c.l, h, c.procs[i], 60*time.Second))
	}
}

// addPods adds one pod per host.
func (c *kubeCluster) addPods(t *testing.T) {
	t.Helper()
	ctx := testCtx(t, 60*time.Second)
	for _, h := range c.l.Hosts() {
		p, err := c.l.AddPod(ctx, h, "p1")
		if err != nil {
			t.Fatal(err)
		}
		c.pods = append(c.pods, p)
	}
}

// pingAll checks that every pod reaches every other pod, over IPv4 and,
// when the pods have one, IPv6.
func (c *kubeCluster) pingAll(t *testing.T) {
	t.Helper()
	ctx := testCtx(t, 2*time.Minute)
	for _, a := range c.pods {
		for _, b := range c.pods {
			if a == b {
				continue
			}
			for _, ip := range []netip.Addr{b.IP, b.IPv6} {
				if !ip.IsValid() {
					continue
				}
				err := c.l.WaitFor(ctx, 15*time.Second, fmt.Sprintf("ping %s -> %s", a.NS, ip), func() error {
					return c.l.Ping(ctx, a.NS, ip, 1)
				})
				if err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}

// waitReady waits for /readyz on host i's health port.
func (c *kubeCluster) waitHealth(t *testing.T, h *lab.Host, port int, want int) {
	t.Helper()
	err := c.l.WaitFor(context.Background(), 60*time.Second, fmt.Sprintf("/readyz %d on %s", want, h.Name), func() error {
		code, _, err := httpGet(c.l, fmt.Sprintf("http://%s:%d/readyz", h.IP, port))
		if err != nil {
			return err
		}
		if code != want {
			return fmt.Errorf("/readyz answered %d", code)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// annotations returns the flannel annotations of a Node (default prefix).
func (c *kubeCluster) annotations(t *testing.T, node string) map[string]string {
	t.Helper()
	n, err := c.k.GetNode(testCtx(t, 10*time.Second), node)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for k, v := range n.Annotations {
		if strings.HasPrefix(k, "flannel.alpha.coreos.com/") {
			out[strings.TrimPrefix(k, "flannel.alpha.coreos.com/")] = v
		}
	}
	return out
}

// flannelWrites lists the write requests the flannel ServiceAccount made
// (verb and URI), from the API server's audit log.
func (c *kubeCluster) flannelWrites(t *testing.T) []string {
	t.Helper()
	evs, err := c.l.KubeAuditEvents()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		if e.User != "system:serviceaccount:kube-flannel:flannel" || e.Stage != "ResponseComplete" {
			continue
		}
		switch e.Verb {
		case "get", "list", "watch":
			continue
		}
		out = append(out, fmt.Sprintf("%s %s %d", e.Verb, e.URI, e.Code))
	}
	return out
}

// routes returns `ip route` (IPv4 or IPv6) in a namespace.
func routes(t *testing.T, l *lab.Lab, ns string, v6 bool) string {
	t.Helper()
	args := []string{"ip", "route", "show"}
	if v6 {
		args = []string{"ip", "-6", "route", "show"}
	}
	out, err := l.Exec(testCtx(t, 10*time.Second), ns, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
