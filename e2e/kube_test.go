//go:build linux

package e2e

import (
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
	"github.com/flannelng/flannel/subnet"
)

const kubeVXLAN = `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`

var macRE = regexp.MustCompile(`^\{"VNI":1,"VtepMAC":"([0-9a-f]{2}:){5}[0-9a-f]{2}"\}$`)

// Three nodes in kube mode, for each backend: pods reach each other, every
// Node carries upstream's annotations with upstream's value formats, the
// NetworkUnavailable condition is False with upstream's reason, and the
// daemons (bound only to our manifest's ClusterRole) wrote nothing but
// one PATCH of nodes/<self>/status each for annotations and one for the
// condition.
func TestPrivilegedKubeBackends(t *testing.T) {
	for _, tc := range []struct {
		name, conf, typ string
		data            func(string) bool
	}{
		{"vxlan", kubeVXLAN, "vxlan", macRE.MatchString},
		{"host-gw", `{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}`, "host-gw", func(s string) bool { return s == "null" }},
		{"udp", `{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}`, "", func(s string) bool { return s == "null" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newKubeLab(t, lab.Options{Hosts: 3})
			c.createNodes(t, kubeNodeOpts{bare: true})
			c.start(t, tc.conf, "--healthz-port=8081")
			for i, h := range c.l.Hosts() {
				if got, want := c.envs[i].Subnet.String(), fmt.Sprintf("10.244.%d.0/24", i+1); got != want {
					t.Errorf("%s: FLANNEL_SUBNET network %s, want %s", h.Name, got, want)
				}
				c.waitHealth(t, h, 8081, 200)
			}
			c.addPods(t)
			c.pingAll(t)

			for _, h := range c.l.Hosts() {
				a := c.annotations(t, h.Name)
				if a["kube-subnet-manager"] != "true" || a["backend-type"] != tc.typ || a["public-ip"] != h.IP.String() || !tc.data(a["backend-data"]) {
					t.Errorf("%s annotations: %v", h.Name, a)
				}
				if _, ok := a["backend-v6-data"]; ok {
					t.Errorf("%s: IPv4-only node published backend-v6-data: %v", h.Name, a)
				}
				n, err := c.k.GetNode(testCtx(t, 10*time.Second), h.Name)
				if err != nil {
					t.Fatal(err)
				}
				cond, ok := n.Condition("NetworkUnavailable")
				if !ok || cond.Status != "False" || cond.Reason != "FlannelIsUp" || cond.Message != "Flannel is running on this node" {
					t.Errorf("%s: NetworkUnavailable condition %+v (present %v)", h.Name, cond, ok)
				}
			}
			writes := c.flannelWrites(t)
			for _, w := range writes {
				if !regexp.MustCompile(`^patch /api/v1/nodes/h[123]/status(\?.*)? 200$`).MatchString(w) {
					t.Errorf("the flannel ServiceAccount wrote something else than nodes/<self>/status: %q", w)
				}
			}
			// One annotation PATCH and one condition PATCH per node.
			if len(writes) != 6 {
				t.Errorf("%d writes, want 6 (annotations and condition, once per node): %q", len(writes), writes)
			}
		})
	}
}

// Dual stack: each node publishes both families' keys (the v6 device has
// its own MAC) and pods reach each other over IPv4 and IPv6.
func TestPrivilegedKubeDualStack(t *testing.T) {
	c := newKubeLab(t, lab.Options{Hosts: 3, IPv6: true})
	c.createNodes(t, kubeNodeOpts{dualStack: true})
	c.start(t, `{"Network":"10.244.0.0/16","IPv6Network":"fd00:10:244::/48","EnableIPv6":true,"Backend":{"Type":"vxlan"}}`)
	for i := range c.envs {
		if got, want := c.envs[i].IPv6Subnet.String(), fmt.Sprintf("fd00:10:244:%x::/64", i+1); got != want {
			t.Errorf("FLANNEL_IPV6_SUBNET network %s, want %s", got, want)
		}
	}
	c.addPods(t)
	c.pingAll(t)
	for _, h := range c.l.Hosts() {
		a := c.annotations(t, h.Name)
		if !macRE.MatchString(a["backend-data"]) || !macRE.MatchString(a["backend-v6-data"]) || a["backend-data"] == a["backend-v6-data"] ||
			a["public-ipv6"] != h.IPv6.String() || a["public-ip"] != h.IP.String() {
			t.Errorf("%s dual-stack annotations: %v", h.Name, a)
		}
	}
}

// A Node without a podCIDR: the daemon waits with one clear line, stays
// not ready, publishes nothing, and takes the podCIDR as soon as node IPAM
// sets it.
func TestPrivilegedKubePodCIDRLater(t *testing.T) {
	c := newKubeLab(t, lab.Options{Hosts: 2})
	ctx := testCtx(t, 2*time.Minute)
	h1, h2 := c.l.Hosts()[0], c.l.Hosts()[1]
	if err := c.k.CreateNode(ctx, h1.Name, podCIDRs(1, false), map[string]string{kubeletAnnotation: "0"}); err != nil {
		t.Fatal(err)
	}
	if err := c.k.CreateNode(ctx, h2.Name, nil, map[string]string{kubeletAnnotation: "0"}); err != nil {
		t.Fatal(err)
	}
	p1, err := c.l.StartFlanneldKube(h1, nil, kubeVXLAN)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := c.l.StartFlanneldKube(h2, nil, kubeVXLAN, "--healthz-port=8081")
	if err != nil {
		t.Fatal(err)
	}
	c.procs = []*lab.Process{p1, p2}
	waitEnv(t, c.l, h1, p1, 60*time.Second)
	err = c.l.WaitFor(ctx, 30*time.Second, "the podCIDR wait line", func() error {
		return contains(p2.Log(), "waiting for spec.podCIDR on node h2")
	})
	if err != nil {
		t.Fatal(err)
	}
	c.waitHealth(t, h2, 8081, 503)
	time.Sleep(2 * time.Second)
	if p2.Exited() {
		t.Fatalf("flanneld exited while waiting for the podCIDR:\n%s", p2.Log())
	}
	if a := c.annotations(t, h2.Name); len(a) != 0 {
		t.Errorf("published before the podCIDR was known: %v", a)
	}
	if n := len(logLines(p2.Log(), "waiting for spec.podCIDR")); n != 1 {
		t.Errorf("the wait was logged %d times, want once", n)
	}
	if err := c.k.SetPodCIDR(ctx, h2.Name, podCIDRs(2, false)); err != nil {
		t.Fatal(err)
	}
	c.envs = []subnet.Env{waitEnv(t, c.l, h1, p1, 10*time.Second), waitEnv(t, c.l, h2, p2, 60*time.Second)}
	c.waitHealth(t, h2, 8081, 200)
	c.addPods(t)
	c.pingAll(t)
}

// A podCIDR outside the Network is refused with a clear error before
// anything is published (upstream publishes kube-subnet-manager=true
// first, and every peer routes to the bad subnet).
func TestPrivilegedKubePodCIDROutsideNetwork(t *testing.T) {
	c := newKubeLab(t, lab.Options{Hosts: 1})
	ctx := testCtx(t, time.Minute)
	h := c.l.Hosts()[0]
	if err := c.k.CreateNode(ctx, h.Name, []string{"10.250.1.0/24"}, nil); err != nil {
		t.Fatal(err)
	}
	p, err := c.l.StartFlanneldKube(h, nil, kubeVXLAN)
	if err != nil {
		t.Fatal(err)
	}
	code, err := p.Wait(60 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if err := contains(p.Log(), "10.244.0.0/16", "doesn't contain", "10.250.1.0/24", "PodCIDR of the"); err != nil {
		t.Error(err)
	}
	if a := c.annotations(t, h.Name); len(a) != 0 {
		t.Errorf("a node with a podCIDR outside the Network published %v", a)
	}
}

// A deleted Node is a removed peer: the others drop its route; a Node
// deleted while a daemon was down is removed when it starts again.
func TestPrivilegedKubeNodeDeleted(t *testing.T) {
	c := newKubeLab(t, lab.Options{Hosts: 3})
	c.createNodes(t, kubeNodeOpts{})
	c.start(t, kubeVXLAN)
	c.addPods(t)
	c.pingAll(t)
	h1, h2, h3 := c.l.Hosts()[0], c.l.Hosts()[1], c.l.Hosts()[2]
	ctx := testCtx(t, 2*time.Minute)
	hasRoute := func(h *lab.Host, sn string) bool {
		return strings.Contains(routes(t, c.l, h.NS, false), sn+" via ")
	}
	if !hasRoute(h1, "10.244.3.0/24") || !hasRoute(h2, "10.244.3.0/24") {
		t.Fatal("no route to h3's subnet before the delete")
	}
	if err := c.k.DeleteNode(ctx, h3.Name); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*lab.Host{h1, h2} {
		err := c.l.WaitFor(ctx, 20*time.Second, h.Name+" drops the route to the deleted node", func() error {
			if hasRoute(h, "10.244.3.0/24") {
				return fmt.Errorf("route to 10.244.3.0/24 still on %s", h.Name)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// h1 stops; h2's Node is deleted meanwhile; h1 must drop it at start.
	if _, err := c.procs[0].Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := c.k.DeleteNode(ctx, h2.Name); err != nil {
		t.Fatal(err)
	}
	if !hasRoute(h1, "10.244.2.0/24") {
		t.Fatal("the stopped daemon's routes should stay while it is down")
	}
	p, err := c.l.StartFlanneldKube(h1, nil, kubeVXLAN)
	if err != nil {
		t.Fatal(err)
	}
	c.procs[0] = p
	err = c.l.WaitFor(ctx, 30*time.Second, "h1 drops the route to a node deleted while it was down", func() error {
		if hasRoute(h1, "10.244.2.0/24") {
			return fmt.Errorf("stale route to 10.244.2.0/24")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// public-ip-overwrite replaces only the published address; the device
// keeps the interface address, and peers send to the published one.
func TestPrivilegedKubePublicIPOverwrite(t *testing.T) {
	c := newKubeLab(t, lab.Options{Hosts: 2})
	ctx := testCtx(t, time.Minute)
	h1, h2 := c.l.Hosts()[0], c.l.Hosts()[1]
	// h1 publishes a second address of its own, as behind a NAT that
	// forwards it; the lab adds it to h1's eth0 so traffic still flows.
	if _, err := c.l.Exec(ctx, h1.NS, "ip", "addr", "add", "172.30.200.1/16", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := c.k.CreateNode(ctx, h1.Name, podCIDRs(1, false), map[string]string{"flannel.alpha.coreos.com/public-ip-overwrite": "172.30.200.1"}); err != nil {
		t.Fatal(err)
	}
	if err := c.k.CreateNode(ctx, h2.Name, podCIDRs(2, false), map[string]string{kubeletAnnotation: "0"}); err != nil {
		t.Fatal(err)
	}
	c.start(t, kubeVXLAN)
	c.addPods(t)
	c.pingAll(t)
	if a := c.annotations(t, h1.Name); a["public-ip"] != "172.30.200.1" {
		t.Errorf("public-ip %q, want the overwrite 172.30.200.1", a["public-ip"])
	}
	out, err := c.l.Exec(ctx, h1.NS, "ip", "-d", "link", "show", "flannel.1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "local "+h1.IP.String()) {
		t.Errorf("flannel.1 on h1 should keep local %s:\n%s", h1.IP, out)
	}
	fdb, err := c.l.Exec(ctx, h2.NS, "bridge", "fdb", "show", "dev", "flannel.1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(fdb, "dst 172.30.200.1") {
		t.Errorf("h2 does not send to h1's published address:\n%s", fdb)
	}
}

// A restarted daemon finds its annotations as they are: no PATCH at all
// (upstream re-sends the condition on every start), same MAC, no lost
// pings.
func TestPrivilegedKubeRestartNoChurn(t *testing.T) {
	c := newKubeLab(t, lab.Options{Hosts: 2})
	c.createNodes(t, kubeNodeOpts{})
	c.start(t, kubeVXLAN, "--healthz-port=8081")
	c.addPods(t)
	c.pingAll(t)
	h1 := c.l.Hosts()[0]
	before := c.annotations(t, h1.Name)
	c.waitHealth(t, h1, 8081, 200)
	writesBefore := c.flannelWrites(t)
	stop := pingPair(t, c.pods[1], c.pods[0], 12*time.Second)
	if _, err := c.procs[0].Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	p, err := c.l.StartFlanneldKube(h1, nil, kubeVXLAN, "--healthz-port=8081")
	if err != nil {
		t.Fatal(err)
	}
	c.procs[0] = p
	c.waitHealth(t, h1, 8081, 200)
	sent, recv := stop()
	if sent == 0 || recv != sent {
		t.Errorf("pings across the restart: %s", lossLine(sent, recv))
	}
	after := c.annotations(t, h1.Name)
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("annotations changed across a restart:\n%v\n%v", before, after)
	}
	// Neither the annotations nor the condition (already False for
	// flannel) are written again: a restart leaves the Node as it was.
	if w := c.flannelWrites(t)[len(writesBefore):]; len(w) != 0 {
		t.Errorf("writes after the restart: %q", w)
	}
}

// The API server stops for 30 s while pods ping: no packet is lost, each
// daemon logs the outage once when it starts and once when it ends, stays
// ready, and its informer resumes: a Node deleted after the restart loses
// its routes everywhere.
func TestPrivilegedKubeAPIServerOutage(t *testing.T) {
	c := newKubeLab(t, lab.Options{Hosts: 3})
	c.createNodes(t, kubeNodeOpts{})
	c.start(t, kubeVXLAN, "--healthz-port=8081")
	c.addPods(t)
	c.pingAll(t)
	stop := pingPair(t, c.pods[0], c.pods[1], 45*time.Second)
	time.Sleep(2 * time.Second)
	if err := c.l.StopKubeAPIServer(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(30 * time.Second)
	for _, h := range c.l.Hosts() {
		if code, _, err := httpGet(c.l, fmt.Sprintf("http://%s:8081/readyz", h.IP)); err != nil || code != 200 {
			t.Errorf("%s /readyz during the outage: %d %v", h.Name, code, err)
		}
	}
	ctx := testCtx(t, 3*time.Minute)
	if err := c.l.StartKubeAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	sent, recv := stop()
	if sent < 400 || recv != sent {
		t.Errorf("pings across a 30 s API server outage: %s", lossLine(sent, recv))
	}
	figure(t, "kube API server outage", "%s", lossLine(sent, recv))
	h1, h3 := c.l.Hosts()[0], c.l.Hosts()[2]
	if err := c.k.DeleteNode(ctx, h3.Name); err != nil {
		t.Fatal(err)
	}
	err := c.l.WaitFor(ctx, 60*time.Second, "h1 sees a Node deleted after the outage", func() error {
		if strings.Contains(routes(t, c.l, h1.NS, false), "10.244.3.0/24 via ") {
			return fmt.Errorf("route to 10.244.3.0/24 still on h1")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range c.procs[:2] {
		log := p.Log()
		down := logLines(log, "Kubernetes API server unreachable")
		up := logLines(log, "Kubernetes API server is reachable again")
		if len(down) != 1 || len(up) != 1 {
			t.Errorf("h%d logged the outage %d times and its end %d times, want once each:\n%s", i+1, len(down), len(up), log)
		}
		if p.Exited() {
			t.Errorf("h%d exited:\n%s", i+1, log)
		}
	}
}

// What does not depend on the lease source behaves as in etcd mode:
// READY=1 to systemd, /healthz, the metrics, the masquerade rules (a pod
// leaves the Network with its node's address and keeps its own inside
// it).
func TestPrivilegedKubeDaemonParity(t *testing.T) {
	c := newKubeLab(t, lab.Options{Hosts: 2})
	c.createNodes(t, kubeNodeOpts{})
	h1, h2 := c.l.Hosts()[0], c.l.Hosts()[1]
	sockPath := filepath.Join(t.TempDir(), "notify.sock")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	p1, err := c.l.StartFlanneldKube(h1, map[string]string{"NOTIFY_SOCKET": sockPath}, kubeVXLAN, "--ip-masq", "--healthz-port=8471")
	if err != nil {
		t.Fatal(err)
	}
	p2, err := c.l.StartFlanneldKube(h2, nil, kubeVXLAN, "--ip-masq")
	if err != nil {
		t.Fatal(err)
	}
	c.procs = []*lab.Process{p1, p2}
	c.envs = []subnet.Env{waitEnv(t, c.l, h1, p1, 60*time.Second), waitEnv(t, c.l, h2, p2, 60*time.Second)}
	if !c.envs[0].IPMasq {
		t.Error("FLANNEL_IPMASQ is not true")
	}
	msg, status, err := readNotify(sock, 30*time.Second)
	if err != nil || msg != "READY=1" {
		t.Fatalf("notify socket: %q %v (status %q)", msg, err, status)
	}
	if len(status) < 2 || !strings.HasPrefix(status[0], "Waiting for the Kubernetes API server") || !strings.HasSuffix(status[len(status)-1], " programmed") {
		t.Errorf("STATUS= lines before READY=1: %q", status)
	}
	if code, body, err := httpGet(c.l, fmt.Sprintf("http://%s:8471/healthz", h1.IP)); err != nil || code != 200 || !strings.Contains(body, "flanneld is running") {
		t.Errorf("/healthz: %d %q %v", code, body, err)
	}
	err = c.l.WaitFor(testCtx(t, 30*time.Second), 20*time.Second, "metrics", func() error {
		_, body, err := httpGet(c.l, fmt.Sprintf("http://%s:8471/metrics", h1.IP))
		if err != nil {
			return err
		}
		return contains(body, "\nflannel_leases 2\n", "\nflannel_ready 1\n")
	})
	if err != nil {
		t.Error(err)
	}
	c.addPods(t)
	c.pingAll(t)
	ext, err := c.l.AddExternal(testCtx(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if src := remoteAddrSeen(t, c.pods[0].NS, ext.NS, ext.IP); src != h1.IP {
		t.Errorf("pod -> external arrived from %s, want the node %s", src, h1.IP)
	}
	if src := remoteAddrSeen(t, c.pods[0].NS, c.pods[1].NS, c.pods[1].IP); src != c.pods[0].IP {
		t.Errorf("pod -> pod arrived from %s, want %s", src, c.pods[0].IP)
	}
}

// A custom --kube-annotation-prefix: the keys are example.com/fl-*, as
// upstream writes them, and a vxlan device deleted while the daemon is down
// comes back with the MAC its peers know (upstream looks the MAC up under
// the raw prefix and changes it on every re-creation).
func TestPrivilegedKubeCustomPrefixKeepsMAC(t *testing.T) {
	c := newKubeLab(t, lab.Options{Hosts: 2})
	c.createNodes(t, kubeNodeOpts{})
	c.start(t, kubeVXLAN, "--kube-annotation-prefix=example.com/fl")
	c.addPods(t)
	c.pingAll(t)
	h1 := c.l.Hosts()[0]
	ctx := testCtx(t, 2*time.Minute)
	node := func() map[string]string {
		n, err := c.k.GetNode(ctx, h1.Name)
		if err != nil {
			t.Fatal(err)
		}
		return n.Annotations
	}
	before := node()
	if before["example.com/fl-kube-subnet-manager"] != "true" || !macRE.MatchString(before["example.com/fl-backend-data"]) {
		t.Fatalf("annotations with a custom prefix: %v", before)
	}
	for k := range before {
		if strings.HasPrefix(k, "flannel.alpha.coreos.com/") {
			t.Errorf("default-prefix key %s written with a custom prefix", k)
		}
	}
	if _, err := c.procs[0].Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := c.l.Exec(ctx, h1.NS, "ip", "link", "del", "flannel.1"); err != nil {
		t.Fatal(err)
	}
	writesBefore := len(c.flannelWrites(t))
	p, err := c.l.StartFlanneldKube(h1, nil, kubeVXLAN, "--kube-annotation-prefix=example.com/fl")
	if err != nil {
		t.Fatal(err)
	}
	c.procs[0] = p
	waitEnv(t, c.l, h1, p, 60*time.Second)
	c.pingAll(t)
	if after := node(); after["example.com/fl-backend-data"] != before["example.com/fl-backend-data"] {
		t.Errorf("backend-data changed across a re-created device: %s -> %s", before["example.com/fl-backend-data"], after["example.com/fl-backend-data"])
	}
	if w := c.flannelWrites(t)[writesBefore:]; len(w) != 0 {
		t.Errorf("writes after the restart: %q", w)
	}
}

// A peer's MAC changes (after a reboot, /run is gone): its FDB and
// neighbour entries are replaced, not added to; in dual stack a change of
// only the v6 data is seen too (upstream drops it, and v6 pod traffic
// dies). The peer is a Node as an upstream node publishes it, with no
// daemon of ours behind it.
func TestPrivilegedKubePeerMACChange(t *testing.T) {
	c := newKubeLab(t, lab.Options{Hosts: 1, IPv6: true})
	c.createNodes(t, kubeNodeOpts{dualStack: true})
	c.start(t, `{"Network":"10.244.0.0/16","IPv6Network":"fd00:10:244::/48","EnableIPv6":true,"Backend":{"Type":"vxlan"}}`)
	h1 := c.l.Hosts()[0]
	ctx := testCtx(t, 2*time.Minute)
	const (
		mac1, mac2 = "0a:00:00:00:09:01", "0a:00:00:00:09:02"
		v6a, v6b   = "0a:00:00:00:09:61", "0a:00:00:00:09:62"
		p          = "flannel.alpha.coreos.com/"
	)
	vx := func(mac string) string { return `{"VNI":1,"VtepMAC":"` + mac + `"}` }
	err := c.k.CreateNode(ctx, "u1", []string{"10.244.9.0/24", "fd00:10:244:9::/64"}, map[string]string{
		p + "kube-subnet-manager": "true", p + "backend-type": "vxlan",
		p + "backend-data": vx(mac1), p + "public-ip": "172.30.0.99",
		p + "backend-v6-data": vx(v6a), p + "public-ipv6": "fd00:30::63",
	})
	if err != nil {
		t.Fatal(err)
	}
	fdb := func() string {
		out, err := c.l.Exec(ctx, h1.NS, "bridge", "fdb", "show")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	waitFDB := func(want, gone string) {
		t.Helper()
		err := c.l.WaitFor(ctx, 20*time.Second, "FDB "+want, func() error {
			f := fdb()
			if !strings.Contains(f, want) {
				return fmt.Errorf("no FDB entry %s:\n%s", want, f)
			}
			if gone != "" && strings.Contains(f, gone) {
				return fmt.Errorf("stale FDB entry %s still there:\n%s", gone, f)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	waitFDB(mac1+" dev flannel.1 dst 172.30.0.99", "")
	waitFDB(v6a+" dev flannel-v6.1 dst fd00:30::63", "")
	patch := func(key, value string) {
		t.Helper()
		body := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, key, value)
		if _, err := c.k.Do(ctx, "PATCH", "/api/v1/nodes/u1", "application/merge-patch+json", []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	patch(p+"backend-data", vx(mac2))
	waitFDB(mac2+" dev flannel.1 dst 172.30.0.99", mac1)
	neigh, err := c.l.Exec(ctx, h1.NS, "ip", "neigh", "show", "dev", "flannel.1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(neigh, "10.244.9.0 lladdr "+mac2) || strings.Contains(neigh, mac1) {
		t.Errorf("neighbour entries after the MAC change:\n%s", neigh)
	}
	// Only the v6 data changes.
	patch(p+"backend-v6-data", vx(v6b))
	waitFDB(v6b+" dev flannel-v6.1 dst fd00:30::63", v6a)
}
