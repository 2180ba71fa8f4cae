//go:build linux

package lab

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// labEtcd builds only lab-etcd: these tests must not depend on flanneld or
// the CNI plugin building. A non-zero Binaries also keeps NewT from building
// the rest, and leaves AddPod in its by-hand mode.
func labEtcd(t *testing.T) Binaries {
	t.Helper()
	SkipUnlessPrivileged(t)
	p, err := Build(context.Background(), "lab-etcd")
	if err != nil {
		t.Fatal(err)
	}
	return Binaries{LabEtcd: p}
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func assertNoNamespaces(t *testing.T, prefix string) {
	t.Helper()
	left, err := ListNS(prefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
		for _, n := range left {
			_ = deleteNS(n)
		}
	}
}

func writeSubnetEnv(t *testing.T, h *Host, subnet, subnet6 string) {
	t.Helper()
	s := "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=" + subnet + "\n"
	if subnet6 != "" {
		s += "FLANNEL_IPV6_NETWORK=fd10::/56\nFLANNEL_IPV6_SUBNET=" + subnet6 + "\n"
	}
	s += "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
	if err := os.WriteFile(h.SubnetFile(), []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPrivilegedHostsReachEachOther(t *testing.T) {
	l := NewT(t, Options{Hosts: 2, IPv6: true, Binaries: labEtcd(t)})
	ctx := testCtx(t, 30*time.Second)
	hs := l.Hosts()
	if len(hs) != 2 || hs[0].Name != "h1" || hs[1].Name != "h2" {
		t.Fatalf("hosts = %v", hs)
	}
	h1, h2 := hs[0], hs[1]
	if !strings.HasPrefix(h1.NS, l.Prefix()+"-") || h1.IP.String() != "172.30.0.11" || h1.IPv6.String() != "fd00:30::b" {
		t.Errorf("h1 = %+v", h1)
	}
	if err := l.Ping(ctx, h1.NS, h2.IP, 2); err != nil {
		t.Error(err)
	}
	if err := l.Ping(ctx, h2.NS, h1.IPv6, 2); err != nil {
		t.Error(err)
	}
	if err := l.Ping(ctx, h1.NS, fabric4, 1); err != nil {
		t.Error(err)
	}
	// Nobody answers for an address off the underlay: the fabric drops it.
	if err := l.Ping(ctx, h1.NS, netip.MustParseAddr("10.244.9.9"), 1); err == nil {
		t.Error("ping to an address nobody has succeeded")
	}

	// flanneld picks the default-route interface: it must be eth0.
	out, err := l.Exec(ctx, h1.NS, "ip", "-4", "route", "show", "default")
	if err != nil || !strings.Contains(out, "via 172.30.255.254 dev eth0") {
		t.Errorf("default route in h1: %q, %v", out, err)
	}
	out, err = l.Exec(ctx, h1.NS, "sysctl", "-n", "net.ipv4.ip_forward")
	if err != nil || strings.TrimSpace(out) != "1" {
		t.Errorf("ip_forward in h1: %q, %v", out, err)
	}

	// A host joining later and an external node.
	h3, err := l.AddHost(ctx)
	if err != nil {
		t.Fatal(err)
	}
	x1, err := l.AddExternal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h3.Name != "h3" || x1.Name != "x1" || x1.IP == h3.IP {
		t.Errorf("h3 = %+v, x1 = %+v", h3, x1)
	}
	if err := l.Ping(ctx, x1.NS, h3.IP, 1); err != nil {
		t.Error(err)
	}
	if len(l.Hosts()) != 3 {
		t.Errorf("Hosts() has %d entries, want 3 (externals are not hosts)", len(l.Hosts()))
	}
	if err := l.TCPTransfer(ctx, h1.NS, h3.NS, h3.IP, 1<<20); err != nil {
		t.Error(err)
	}
	if err := l.TCPTransfer(ctx, x1.NS, h2.NS, h2.IPv6, 100_000); err != nil {
		t.Error(err)
	}

	// The root namespace got nothing: none of the lab's links are here.
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, link := range links {
		if n := link.Attrs().Name; n == "vh1" || n == "vx1" || n == fabricBridge && link.Type() == "bridge" {
			t.Errorf("link %s in the root namespace", n)
		}
	}
}

func TestPrivilegedInNS(t *testing.T) {
	l := NewT(t, Options{Hosts: 1, Binaries: labEtcd(t)})
	h1 := l.Hosts()[0]
	var names []string
	err := InNS(h1.NS, func() error {
		ifs, err := net.Interfaces()
		for _, i := range ifs {
			names = append(names, i.Name)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(names, ",") != "lo,eth0" {
		t.Errorf("interfaces in %s: %v, want lo,eth0", h1.NS, names)
	}
	// Threads InNS used go back to the pool in the original namespace.
	root, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		if err := InNS(h1.NS, func() error { return nil }); err != nil {
			t.Fatal(err)
		}
	}
	results := make(chan string, 20)
	for range 20 {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			ns, _ := os.Readlink("/proc/thread-self/ns/net")
			results <- ns
		}()
	}
	for range 20 {
		if ns := <-results; ns != root {
			t.Fatalf("a thread is in %s, not %s", ns, root)
		}
	}
	if err := InNS(h1.NS, func() error { return fmt.Errorf("boom") }); err == nil || err.Error() != "boom" {
		t.Errorf("InNS error = %v, want boom", err)
	}
	if err := InNS("no-such-ns-"+l.Prefix(), func() error { return nil }); err == nil {
		t.Error("InNS into a missing namespace succeeded")
	}
}

func TestPrivilegedEtcd(t *testing.T) {
	l := NewT(t, Options{Hosts: 1, Binaries: labEtcd(t)})
	ctx := testCtx(t, 60*time.Second)
	if got := l.EtcdEndpoint(); got != "http://172.30.255.254:2379" {
		t.Errorf("EtcdEndpoint = %q", got)
	}
	if err := l.StartEtcd(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.StartEtcd(ctx); err == nil {
		t.Error("a second StartEtcd succeeded while etcd runs")
	}
	c, err := l.Etcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.Put(opCtx, "/coreos.com/network/config", `{"Network":"10.244.0.0/16"}`); err != nil {
		t.Fatal(err)
	}
	// Hosts reach etcd over the underlay.
	h1 := l.Hosts()[0]
	err = InNS(h1.NS, func() error {
		conn, err := net.DialTimeout("tcp", "172.30.255.254:2379", 5*time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	})
	if err != nil {
		t.Errorf("h1 cannot reach etcd: %v", err)
	}

	if err := l.StopEtcd(); err != nil {
		t.Fatal(err)
	}
	downCtx, cancel := context.WithTimeout(ctx, time.Second)
	_, err = c.Get(downCtx, "/coreos.com/network/config")
	cancel()
	if err == nil {
		t.Error("Get succeeded while etcd is stopped")
	}
	if err := l.StartEtcd(ctx); err != nil {
		t.Fatal(err)
	}
	// The old client reconnects by itself, and the data survived.
	getCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	resp, err := c.Get(getCtx, "/coreos.com/network/config")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != `{"Network":"10.244.0.0/16"}` {
		t.Errorf("after restart: %v", resp.Kvs)
	}
}

func TestPrivilegedPodsByHand(t *testing.T) {
	l := NewT(t, Options{Hosts: 2, IPv6: true, Binaries: labEtcd(t)})
	ctx := testCtx(t, 30*time.Second)
	h1, h2 := l.Hosts()[0], l.Hosts()[1]
	if _, err := l.AddPod(ctx, h1, "p1"); err == nil || !strings.Contains(err.Error(), "subnet.env") {
		t.Errorf("AddPod without subnet.env: %v", err)
	}
	assertOnlyNamespaces(t, l, 3)
	writeSubnetEnv(t, h1, "10.244.1.1/24", "fd10:0:0:1::1/64")
	writeSubnetEnv(t, h2, "10.244.2.1/24", "")
	p1, err := l.AddPod(ctx, h1, "p1")
	if err != nil {
		t.Fatal(err)
	}
	p2, err := l.AddPod(ctx, h1, "p2")
	if err != nil {
		t.Fatal(err)
	}
	q1, err := l.AddPod(ctx, h2, "p1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.AddPod(ctx, h2, "p1"); err == nil {
		t.Error("a second pod p1 on h2 was added")
	}
	if _, err := l.AddPod(ctx, h2, "Bad_Name"); err == nil {
		t.Error("pod name Bad_Name accepted")
	}
	if p1.NS != h1.NS+"-p1" || p1.IP.String() != "10.244.1.2" || p1.IPv6.String() != "fd10:0:0:1::2" ||
		p2.IP.String() != "10.244.1.3" || q1.IP.String() != "10.244.2.2" || q1.IPv6.IsValid() {
		t.Errorf("pods: %+v %+v %+v", p1, p2, q1)
	}
	for _, c := range []struct {
		from string
		to   netip.Addr
	}{
		{p1.NS, netip.MustParseAddr("10.244.1.1")},
		{p1.NS, netip.MustParseAddr("fd10:0:0:1::1")},
		{q1.NS, netip.MustParseAddr("10.244.2.1")},
		{p1.NS, p2.IP},
		{h1.NS, p2.IP},
	} {
		if err := l.Ping(ctx, c.from, c.to, 1); err != nil {
			t.Error(err)
		}
	}
	out, err := l.Exec(ctx, p1.NS, "ip", "-o", "link", "show", "eth0")
	if err != nil || !strings.Contains(out, "mtu 1450") {
		t.Errorf("pod eth0: %q, %v", out, err)
	}
	if err := l.TCPTransfer(ctx, p2.NS, p1.NS, p1.IP, 200_000); err != nil {
		t.Error(err)
	}
	if err := l.DelPod(ctx, p2); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(netnsDir, p2.NS)); !os.IsNotExist(err) {
		t.Errorf("pod namespace %s still there: %v", p2.NS, err)
	}
	if _, err := l.AddPod(ctx, h1, "p2"); err != nil {
		t.Errorf("re-adding p2: %v", err)
	}
	if got := len(l.Pods()); got != 3 {
		t.Errorf("%d pods, want 3", got)
	}
}

// assertOnlyNamespaces checks that a failed step left no namespace behind.
func assertOnlyNamespaces(t *testing.T, l *Lab, want int) {
	t.Helper()
	names, err := ListNS(l.Prefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != want {
		t.Errorf("namespaces %v, want %d", names, want)
	}
}

func TestPrivilegedResetHost(t *testing.T) {
	l := NewT(t, Options{Hosts: 2, IPv6: true, Binaries: labEtcd(t)})
	ctx := testCtx(t, 30*time.Second)
	h1, h2 := l.Hosts()[0], l.Hosts()[1]
	writeSubnetEnv(t, h1, "10.244.1.1/24", "")
	pod, err := l.AddPod(ctx, h1, "p1")
	if err != nil {
		t.Fatal(err)
	}
	proc, err := l.StartProcess(h1.NS, filepath.Join(h1.Dir, "sleep.log"), nil, "sleep", "600")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Exec(ctx, h1.NS, "ip", "link", "add", "marker0", "type", "bridge"); err != nil {
		t.Fatal(err)
	}
	if err := l.ResetHost(ctx, h1); err != nil {
		t.Fatal(err)
	}
	if !proc.Exited() {
		t.Error("process in the host survived the reset")
	}
	if code, _ := proc.Wait(0); code != 128+int(syscall.SIGKILL) {
		t.Errorf("exit code %d, want %d", code, 128+int(syscall.SIGKILL))
	}
	if _, err := os.Stat(filepath.Join(netnsDir, pod.NS)); !os.IsNotExist(err) {
		t.Errorf("pod namespace survived the reset: %v", err)
	}
	if len(l.Pods()) != 0 {
		t.Errorf("pods after reset: %v", l.Pods())
	}
	if out, err := l.Exec(ctx, h1.NS, "ip", "-o", "link", "show"); err != nil || strings.Contains(out, "marker0") || strings.Contains(out, "cni0") {
		t.Errorf("links after reset: %q, %v", out, err)
	}
	if _, err := os.Stat(h1.SubnetFile()); err != nil {
		t.Errorf("subnet.env after reset: %v", err)
	}
	if err := l.Ping(ctx, h2.NS, h1.IP, 1); err != nil {
		t.Error(err)
	}
	if err := l.Ping(ctx, h1.NS, h2.IPv6, 1); err != nil {
		t.Error(err)
	}
	if _, err := l.AddPod(ctx, h1, "p1"); err != nil {
		t.Error(err)
	}
}

func TestPrivilegedProcess(t *testing.T) {
	l := NewT(t, Options{Hosts: 1, Binaries: labEtcd(t)})
	h1 := l.Hosts()[0]
	log := filepath.Join(h1.Dir, "x.log")
	p, err := l.StartProcess(h1.NS, log, []string{"GREETING=hello"}, "sh", "-c", `echo "$GREETING from $(ip -o -4 addr show eth0 | awk '{print $4}')"; echo oops >&2; exit 3`)
	if err != nil {
		t.Fatal(err)
	}
	code, err := p.Wait(10 * time.Second)
	if err != nil || code != 3 {
		t.Fatalf("Wait = %d, %v; want 3", code, err)
	}
	if got := p.Log(); got != "hello from 172.30.0.11/16\noops\n" {
		t.Errorf("Log() = %q", got)
	}
	// A second start appends after a marker; Log shows only its own run.
	p2, err := l.StartProcess(h1.NS, log, nil, "sleep", "600")
	if err != nil {
		t.Fatal(err)
	}
	if p2.Exited() {
		t.Fatal("sleep exited at once")
	}
	if err := p2.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := p2.Wait(10 * time.Second); err != nil || code != 128+int(syscall.SIGTERM) {
		t.Errorf("Wait after SIGTERM = %d, %v", code, err)
	}
	if err := p2.Signal(syscall.SIGTERM); err == nil {
		t.Error("signalling an exited process succeeded")
	}
	if err := p2.Kill(); err != nil {
		t.Errorf("Kill of an exited process: %v", err)
	}
	b, _ := os.ReadFile(log)
	if n := strings.Count(string(b), "==== lab:"); n != 2 || p2.Log() != "" {
		t.Errorf("log has %d markers, p2.Log() = %q:\n%s", n, p2.Log(), b)
	}
	if _, err := l.StartFlanneld(h1); err == nil {
		t.Error("StartFlanneld without Binaries.Flanneld succeeded")
	}
}

// TestPrivilegedCleanup checks that nothing outlives a lab: not on Close,
// and not when New fails half-way.
func TestPrivilegedCleanup(t *testing.T) {
	SkipUnlessPrivileged(t)
	ctx := testCtx(t, 60*time.Second)
	prefix := "flt" + randomHex(t)
	t.Cleanup(func() { assertNoNamespaces(t, prefix) })

	// h3's directory cannot be made: New fails after h1 and h2 exist.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "h3"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := New(ctx, Options{Hosts: 4, Dir: dir, Prefix: prefix})
	if err == nil || !strings.Contains(err.Error(), "h3") {
		t.Fatalf("New = %v, want an error about h3", err)
	}
	assertNoNamespaces(t, prefix)
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("New removed a Dir it did not create: %v", err)
	}

	for _, o := range []Options{{Hosts: -1}, {Hosts: maxNodes + 1}, {Prefix: "Bad-Prefix"}} {
		if _, err := New(ctx, o); err == nil {
			t.Errorf("New(%+v) succeeded", o)
		}
	}

	// Close stops processes and removes namespaces and the temp dir.
	l, err := New(ctx, Options{Hosts: 2, Prefix: prefix, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(ctx, Options{Prefix: prefix}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("a second lab with prefix %s: %v", prefix, err)
	}
	h1 := l.Hosts()[0]
	writeSubnetEnv(t, h1, "10.244.1.1/24", "")
	if _, err := l.AddPod(ctx, h1, "p1"); err != nil {
		t.Fatal(err)
	}
	// A namespace with the prefix the lab never recorded goes too.
	stray := prefix + "-stray"
	if err := addNS(ctx, stray); err != nil {
		t.Fatal(err)
	}
	// sh ignores SIGTERM here, so Close must fall back to SIGKILL.
	p, err := l.StartProcess(h1.NS, filepath.Join(h1.Dir, "stubborn.log"), nil, "sh", "-c", "trap '' TERM; while :; do sleep 1; done")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let sh install its trap
	start := time.Now()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if !p.Exited() {
		t.Error("process still running after Close")
	}
	if d := time.Since(start); d > 3*stopGrace {
		t.Errorf("Close took %s", d)
	}
	assertNoNamespaces(t, prefix)
	if _, err := os.Stat(l.Dir()); !os.IsNotExist(err) {
		t.Errorf("lab dir after Close: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := l.AddHost(ctx); err == nil {
		t.Error("AddHost after Close succeeded")
	}
}

func TestPrivilegedLoad(t *testing.T) {
	SkipUnlessPrivileged(t)
	ctx := testCtx(t, 30*time.Second)
	dir := t.TempDir()
	l, err := New(ctx, Options{Hosts: 2, Dir: dir, Detached: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = l.Close()
		assertNoNamespaces(t, l.Prefix())
	})
	h2 := l.Hosts()[1]
	p, err := l.StartProcess(h2.NS, filepath.Join(h2.Dir, "sleep.log"), nil, "sleep", "600")
	if err != nil {
		t.Fatal(err)
	}

	l2, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if l2.Prefix() != l.Prefix() || len(l2.Hosts()) != 2 || l2.Hosts()[1].IP != h2.IP {
		t.Fatalf("loaded %+v", l2.State())
	}
	lp := l2.Processes()
	if len(lp) != 1 || lp[0].Pid != p.Pid || lp[0].Exited() {
		t.Fatalf("loaded processes %+v", lp)
	}
	if err := l2.Ping(ctx, l2.Hosts()[0].NS, h2.IP, 1); err != nil {
		t.Error(err)
	}
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(5 * time.Second); err != nil {
		t.Errorf("process survived Close of the loaded lab: %v", err)
	}
	assertNoNamespaces(t, l.Prefix())
	if _, err := os.Stat(filepath.Join(dir, StateFile)); err != nil {
		t.Errorf("state file: %v", err)
	}
}

// TestPrivilegedFlanneldSmoke runs the real flanneld on two hosts with the
// alloc backend (leases only, no data path: pod traffic across hosts is
// for the end-to-end tests): it must reach etcd at EtcdEndpoint, pick eth0
// by the default route and write subnet.env where the lab reads it. It waits
// for cmd/flanneld to exist.
func TestPrivilegedFlanneldSmoke(t *testing.T) {
	SkipUnlessPrivileged(t)
	skipUnlessProgram(t, "flanneld")
	bins := labEtcd(t)
	var err error
	if bins.Flanneld, err = Build(context.Background(), "flanneld"); err != nil {
		t.Fatal(err)
	}
	l := NewT(t, Options{Hosts: 2, Binaries: bins})
	ctx := testCtx(t, 60*time.Second)
	if err := l.StartEtcd(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := l.Etcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Put(ctx, "/coreos.com/network/config", `{"Network":"10.244.0.0/16","Backend":{"Type":"alloc"}}`); err != nil {
		t.Fatal(err)
	}
	subnets := map[netip.Prefix]string{}
	for _, h := range l.Hosts() {
		p, err := l.StartFlanneld(h)
		if err != nil {
			t.Fatal(err)
		}
		var env SubnetEnv
		err = l.WaitFor(ctx, 20*time.Second, h.Name+" subnet.env", func() error {
			if p.Exited() {
				return Permanent(fmt.Errorf("flanneld exited:\n%s", tail(p.Log(), 10)))
			}
			env, err = ReadSubnetEnv(h.SubnetFile())
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if !netip.MustParsePrefix("10.244.0.0/16").Contains(env.Subnet.Addr()) || subnets[env.Subnet] != "" {
			t.Errorf("%s got subnet %s (taken: %v)", h.Name, env.Subnet, subnets)
		}
		subnets[env.Subnet] = h.Name
		lease, err := c.Get(ctx, "/coreos.com/network/subnets/"+strings.ReplaceAll(env.Subnet.String(), "/", "-"))
		if err != nil || len(lease.Kvs) != 1 || !strings.Contains(string(lease.Kvs[0].Value), `"PublicIP":"`+h.IP.String()+`"`) {
			t.Errorf("%s lease: %v, %v", h.Name, lease, err)
		}
		pod, err := l.AddPod(ctx, h, "p1")
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Ping(ctx, pod.NS, env.Gateway, 1); err != nil {
			t.Error(err)
		}
		if err := p.Signal(syscall.SIGTERM); err != nil {
			t.Error(err)
		}
		if _, err := p.Wait(10 * time.Second); err != nil {
			t.Error(err)
		}
	}
}

// skipUnlessProgram skips until the package of a program has Go files: the
// lab is written alongside flanneld and the CNI plugin. Once it has, a
// build failure fails the test.
func skipUnlessProgram(t *testing.T, name string) {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(root, programs[name], "*.go"))
	if len(files) == 0 {
		t.Skipf("%s has no Go files yet", programs[name])
	}
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", b)
}

// TestPrivilegedPodsCNI adds pods through the real flannel CNI plugin, run
// inside the host namespace, with a subnet.env written by hand.
func TestPrivilegedPodsCNI(t *testing.T) {
	SkipUnlessPrivileged(t)
	skipUnlessProgram(t, "flannel")
	if _, err := os.Stat(filepath.Join(systemCNIDir, "bridge")); err != nil {
		t.Skipf("needs the bridge CNI plugin in %s: %v", systemCNIDir, err)
	}
	plugin, err := Build(context.Background(), "flannel")
	if err != nil {
		t.Fatal(err)
	}
	l := NewT(t, Options{Hosts: 2, IPv6: true, Binaries: Binaries{CNIPlugin: plugin}})
	ctx := testCtx(t, 60*time.Second)
	h1, h2 := l.Hosts()[0], l.Hosts()[1]
	if _, err := l.AddPod(ctx, h1, "p1"); err == nil || !strings.Contains(err.Error(), "subnet.env") {
		t.Errorf("AddPod without subnet.env: %v", err)
	}
	assertOnlyNamespaces(t, l, 3)
	writeSubnetEnv(t, h1, "10.244.1.1/24", "fd10:0:0:1::1/64")
	writeSubnetEnv(t, h2, "10.244.2.1/24", "")
	p1, err := l.AddPod(ctx, h1, "p1")
	if err != nil {
		t.Fatal(err)
	}
	p2, err := l.AddPod(ctx, h1, "p2")
	if err != nil {
		t.Fatal(err)
	}
	q1, err := l.AddPod(ctx, h2, "p1")
	if err != nil {
		t.Fatal(err)
	}
	if !netip.MustParsePrefix("10.244.1.0/24").Contains(p1.IP) || !netip.MustParsePrefix("fd10:0:0:1::/64").Contains(p1.IPv6) ||
		!netip.MustParsePrefix("10.244.2.0/24").Contains(q1.IP) || q1.IPv6.IsValid() || p1.IP == p2.IP {
		t.Errorf("pods: %+v %+v %+v", p1, p2, q1)
	}
	// The bridge was made in the host, not in the root namespace.
	if out, err := l.Exec(ctx, h1.NS, "ip", "-o", "addr", "show", "cni0"); err != nil || !strings.Contains(out, "10.244.1.1/24") {
		t.Errorf("cni0 in h1: %q, %v", out, err)
	}
	if _, err := netlink.LinkByName("cni0"); err == nil {
		t.Error("cni0 exists in the root namespace")
	}
	if err := l.Ping(ctx, p1.NS, netip.MustParseAddr("10.244.1.1"), 1); err != nil {
		t.Error(err)
	}
	if err := l.Ping(ctx, q1.NS, netip.MustParseAddr("10.244.2.1"), 1); err != nil {
		t.Error(err)
	}
	if err := l.TCPTransfer(ctx, p1.NS, p2.NS, p2.IP, 100_000); err != nil {
		t.Error(err)
	}
	if err := l.TCPTransfer(ctx, p2.NS, p1.NS, p1.IPv6, 100_000); err != nil {
		t.Error(err)
	}
	if err := l.DelPod(ctx, p2); err != nil {
		t.Fatal(err)
	}
	// DEL went through the plugin: host-local released the address.
	ipamDir := filepath.Join(h1.Dir, "cni-ipam", "cbr0")
	if _, err := os.Stat(filepath.Join(ipamDir, p1.IP.String())); err != nil {
		t.Errorf("reservation of p1: %v", err)
	}
	if _, err := os.Stat(filepath.Join(ipamDir, p2.IP.String())); !os.IsNotExist(err) {
		t.Errorf("reservation of deleted p2: %v", err)
	}
	if _, err := os.Stat(filepath.Join(netnsDir, p2.NS)); !os.IsNotExist(err) {
		t.Errorf("namespace of deleted p2: %v", err)
	}
}

// TestPrivilegedEtcdTLS runs lab-etcd with client TLS and certificate
// authentication, and reaches it with EtcdConfig plus TLS.
func TestPrivilegedEtcdTLS(t *testing.T) {
	l := NewT(t, Options{Binaries: labEtcd(t)})
	ctx := testCtx(t, 60*time.Second)
	dir := t.TempDir()
	caPEM, certPEM, keyPEM := makeCerts(t, fabric4)
	for name, b := range map[string][]byte{"ca.pem": caPEM, "cert.pem": certPEM, "key.pem": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	err := l.StartEtcd(ctx,
		"--cert-file="+filepath.Join(dir, "cert.pem"),
		"--key-file="+filepath.Join(dir, "key.pem"),
		"--trusted-ca-file="+filepath.Join(dir, "ca.pem"),
		"--client-cert-auth")
	if err != nil {
		t.Fatal(err)
	}
	if got := l.EtcdEndpoint(); got != "https://172.30.255.254:2379" {
		t.Errorf("EtcdEndpoint = %q", got)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cfg := l.EtcdConfig()
	cfg.TLS = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}
	c, err := clientv3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.Put(opCtx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get(opCtx, "k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("Get = %v, %v", resp, err)
	}
}

// makeCerts returns a CA and a certificate for ip, good for both server and
// client authentication, all PEM.
func makeCerts(t *testing.T, ip netip.Addr) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "lab CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "lab"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		IPAddresses:  []net.IP{ip.AsSlice(), net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caTmpl, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
}
