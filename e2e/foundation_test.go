//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flannelng/flannel/subnet"
)

var envRE = regexp.MustCompile(`^FLANNEL_NETWORK=10\.5\.0\.0/16\nFLANNEL_SUBNET=10\.5\.\d+\.1/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n$`)

// Two daemons lease distinct subnets with upstream's key and value format,
// write subnet.env, report ready on /readyz and to systemd, and get their
// subnets back after a clean restart and after kill -9.
func TestPrivilegedLeasesAndRestarts(t *testing.T) {
	l, cli := newLab(t, 2, `{"Network":"10.5.0.0/16","Backend":{"Type":"alloc"}}`)
	h1, h2 := l.Hosts()[0], l.Hosts()[1]

	sockPath := filepath.Join(t.TempDir(), "notify.sock")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()

	p1, err := l.StartFlanneldEnv(h1, []string{"NOTIFY_SOCKET=" + sockPath}, "--healthz-port=8471")
	if err != nil {
		t.Fatal(err)
	}
	p2, err := l.StartFlanneld(h2)
	if err != nil {
		t.Fatal(err)
	}
	e1 := waitEnv(t, l, h1, p1, 30*time.Second)
	e2 := waitEnv(t, l, h2, p2, 30*time.Second)
	if e1.Subnet == e2.Subnet || e1.Subnet.Overlaps(e2.Subnet) {
		t.Fatalf("both hosts hold %s", e1.Subnet)
	}
	for _, h := range l.Hosts() {
		b, _ := os.ReadFile(h.SubnetFile())
		if !envRE.Match(b) {
			t.Errorf("%s subnet.env:\n%s", h.Name, b)
		}
		if m := fileMode(t, h.SubnetFile()); m != 0o644 {
			t.Errorf("%s subnet.env mode %o", h.Name, m)
		}
	}
	ls := leases(t, cli, "/coreos.com/network")
	if len(ls) != 2 {
		t.Fatalf("%d leases", len(ls))
	}
	for _, pair := range []struct {
		e  subnet.Env
		ip string
	}{{e1, h1.IP.String()}, {e2, h2.IP.String()}} {
		key := "/coreos.com/network/subnets/" + subnet.MakeKey(pair.e.Subnet, netip.Prefix{})
		r, ok := ls[key]
		if !ok {
			t.Fatalf("no key %s in %v", key, ls)
		}
		if v := string(r.Kvs[0].Value); v != fmt.Sprintf(`{"PublicIP":"%s","PublicIPv6":null}`, pair.ip) {
			t.Errorf("value %s", v)
		}
		if r.Kvs[0].Lease == 0 {
			t.Errorf("%s has no etcd lease", key)
		}
	}

	// READY=1 arrived after the status lines, and /readyz says ready.
	msg, status, err := readNotify(sock, 10*time.Second)
	if err != nil || msg != "READY=1" {
		t.Fatalf("notify: %q %v (status %q)", msg, err, status)
	}
	if len(status) < 2 || !strings.HasPrefix(status[0], "Waiting for etcd at http") || !strings.HasSuffix(status[len(status)-1], " programmed") {
		t.Errorf("STATUS= lines before READY=1: %q", status)
	}
	url := "http://" + net.JoinHostPort(h1.IP.String(), "8471")
	if code, body, err := httpGet(l, url+"/readyz"); err != nil || code != 200 || body != "flanneld is ready" {
		t.Errorf("/readyz: %d %q %v", code, body, err)
	}
	if code, body, err := httpGet(l, url+"/healthz"); err != nil || code != 200 || body != "flanneld is running" {
		t.Errorf("/healthz: %d %q %v", code, body, err)
	}

	// SIGTERM: exit 0, STOPPING=1, lease kept.
	if err := p1.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := p1.Wait(10 * time.Second); err != nil || code != 0 {
		t.Fatalf("SIGTERM exit %d %v\n%s", code, err, p1.Log())
	}
	if msg, _, err := readNotify(sock, 10*time.Second); err != nil || msg != "STOPPING=1" {
		t.Errorf("notify at stop: %q %v", msg, err)
	}
	if len(leases(t, cli, "/coreos.com/network")) != 2 {
		t.Error("lease removed at shutdown")
	}

	// Restarts: clean, then kill -9, each gets the same subnet back.
	for i := 0; i < 3; i++ {
		os.Remove(h1.SubnetFile()) // prove it comes from etcd, not the file
		p, err := l.StartFlanneld(h1)
		if err != nil {
			t.Fatal(err)
		}
		got := waitEnv(t, l, h1, p, 30*time.Second)
		if got.Subnet != e1.Subnet {
			t.Fatalf("restart %d: subnet %s, want %s", i, got.Subnet, e1.Subnet)
		}
		if err := contains(p.Log(), "for current IP ("+h1.IP.String()+"), reusing"); err != nil {
			t.Errorf("restart %d log: %v\n%s", i, err, p.Log())
		}
		if err := p.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	ctx := testCtx(t, 10*time.Second)
	resp, err := cli.Leases(ctx)
	if err != nil || len(resp.Leases) != 2 {
		t.Errorf("etcd holds %d leases for 2 keys (%v)", len(resp.Leases), err)
	}
}

// A node whose subnet.env names a subnet another node now holds does not
// steal it; an empty etcd makes the daemon wait with a clear log line and
// continue once the config appears.
func TestPrivilegedStaleSubnetFileAndLateConfig(t *testing.T) {
	l, cli := newLab(t, 2, "")
	h1, h2 := l.Hosts()[0], l.Hosts()[1]
	p1, err := l.StartFlanneld(h1, "--healthz-port=8471")
	if err != nil {
		t.Fatal(err)
	}
	err = l.WaitFor(context.Background(), 15*time.Second, "config-missing log line", func() error {
		return contains(p1.Log(), "Couldn't fetch network config: flannel config not found in etcd store. Did you create your config using etcdv3 API?")
	})
	if err != nil {
		t.Fatal(err)
	}
	if code, body, _ := httpGet(l, "http://"+net.JoinHostPort(h1.IP.String(), "8471")+"/readyz"); code != 503 || body != "flanneld is not ready yet" {
		t.Errorf("/readyz before ready: %d %q", code, body)
	}
	if _, err := cli.Put(context.Background(), "/coreos.com/network/config", `{"Network":"10.5.0.0/16","Backend":{"Type":"alloc"}}`); err != nil {
		t.Fatal(err)
	}
	e1 := waitEnv(t, l, h1, p1, 30*time.Second)
	if strings.Count(p1.Log(), "Couldn't fetch network config") != 1 {
		t.Errorf("the missing config was logged more than once:\n%s", p1.Log())
	}
	stale := subnet.Env{Network: e1.Network, Subnet: e1.Subnet, MTU: 1500}
	if err := subnet.WriteEnvFile(h2.SubnetFile(), stale); err != nil {
		t.Fatal(err)
	}
	p2, err := l.StartFlanneld(h2)
	if err != nil {
		t.Fatal(err)
	}
	err = l.WaitFor(context.Background(), 30*time.Second, "h2 lease", func() error {
		e, err := subnet.ReadEnvFile(h2.SubnetFile())
		if err != nil {
			return err
		}
		if e.Subnet == e1.Subnet {
			return fmt.Errorf("still the stale subnet")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := contains(p2.Log(), "Previously leased subnet is now held by another node"); err != nil {
		t.Error(err)
	}
}

// The etcd password never appears in the daemon's output, also when it is
// wrong.
func TestPrivilegedPasswordNotLogged(t *testing.T) {
	l, cli := newLab(t, 1, `{"Network":"10.5.0.0/16","Backend":{"Type":"alloc"}}`)
	h := l.Hosts()[0]
	const pw = "Sup3r-Secr3t-Passw0rd"
	ctx := testCtx(t, 30*time.Second)
	if _, err := cli.RoleAdd(ctx, "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.UserAdd(ctx, "root", pw); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.UserGrantRole(ctx, "root", "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := l.StartFlanneld(h, "--etcd-username=root", "--etcd-password="+pw)
	if err != nil {
		t.Fatal(err)
	}
	waitEnv(t, l, h, p, 30*time.Second)
	bad, err := l.StartFlanneldEnv(h, []string{"FLANNELD_ETCD_PASSWORD=wrong-" + pw}, "--etcd-username=root", "--subnet-file="+filepath.Join(h.Dir, "other.env"))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	bad.Kill()
	p.Kill()
	for _, proc := range []string{p.Log(), bad.Log()} {
		if strings.Contains(proc, pw) {
			t.Errorf("password in log:\n%s", proc)
		}
	}
	t.Logf("wrong-password run:\n%s", bad.Log())
	if !strings.Contains(bad.Log(), "authentication failed") {
		t.Errorf("wrong password gave no clear error:\n%s", bad.Log())
	}
}
