//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
	"github.com/flannelng/flannel/subnet"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// buildFlannelctl builds cmd/flannelctl into a temp dir.
func buildFlannelctl(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	out := filepath.Join(t.TempDir(), "flannelctl")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./cmd/flannelctl")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build flannelctl: %v\n%s", err, b)
	}
	return out
}

// cniDirs makes a CNI plugin directory holding the plugins a node needs
// (the lab's flannel plugin and the distribution's others), one lacking
// portmap, and a config directory with flannel's conflist.
func cniDirs(t *testing.T, l *lab.Lab) (bin, binNoPortmap, conf string) {
	t.Helper()
	bin, binNoPortmap, conf = t.TempDir(), t.TempDir(), t.TempDir()
	for _, dir := range []string{bin, binNoPortmap} {
		if err := os.Symlink(l.Binaries().CNIPlugin, filepath.Join(dir, "flannel")); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"bridge", "host-local", "loopback", "portmap"} {
			if p == "portmap" && dir == binNoPortmap {
				continue
			}
			if err := os.Symlink(filepath.Join("/usr/lib/cni", p), filepath.Join(dir, p)); err != nil {
				t.Fatal(err)
			}
		}
	}
	b, err := os.ReadFile("../dist/10-flannel.conflist")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conf, "10-flannel.conflist"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return bin, binNoPortmap, conf
}

// runIn runs a program in a namespace and returns its exit code and output.
func runIn(t *testing.T, l *lab.Lab, ns string, argv ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := l.Exec(ctx, ns, argv...)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out
	case errors.As(err, &ee):
		return ee.ExitCode(), out
	}
	t.Fatalf("%s: %v", strings.Join(argv, " "), err)
	return 0, ""
}

// fixOf returns the fix line printed under the first FAIL line containing text.
func fixOf(t *testing.T, out, text string) []string {
	t.Helper()
	lines := strings.Split(out, "\n")
	for i, line := range lines {
		if strings.HasPrefix(line, "FAIL") && strings.Contains(line, text) && i+1 < len(lines) {
			if fix, ok := strings.CutPrefix(strings.TrimSpace(lines[i+1]), "fix: "); ok {
				return strings.Fields(fix)
			}
		}
	}
	t.Fatalf("no FAIL line with %q and a fix in:\n%s", text, out)
	return nil
}

func failLines(out string) []string {
	var fails []string
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "FAIL") {
			fails = append(fails, line)
		}
	}
	return fails
}

// flannelctl on a live three-node vxlan cluster: leases match etcd; doctor
// calls a healthy node healthy and names each breakage (a deleted route, a
// stale FDB entry, a deleted masquerade rule, a missing CNI plugin, a
// subnet.env that disagrees with etcd) with exit code 1; its fix commands
// repair what they name; reserve and release round-trip.
func TestPrivilegedFlannelctl(t *testing.T) {
	l, cli := newLab(t, 3, `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`)
	ctl := buildFlannelctl(t)
	hosts := l.Hosts()
	var procs []*lab.Process
	envs := map[string]subnet.Env{}
	for _, h := range hosts {
		p, err := l.StartFlanneld(h, "--ip-masq")
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
	}
	for i, h := range hosts {
		envs[h.Name] = waitEnv(t, l, h, procs[i], 30*time.Second)
	}
	h1, h2 := hosts[0], hosts[1]
	etcdFlag := "--etcd-endpoints=" + l.EtcdEndpoint()
	cniBin, cniBinNoPortmap, cniConf := cniDirs(t, l)
	doctor := func(extra ...string) (int, string) {
		argv := append([]string{ctl, "doctor", etcdFlag, "--subnet-file=" + h1.SubnetFile(), "--cni-bin-dir=" + cniBin, "--cni-conf-dir=" + cniConf}, extra...)
		return runIn(t, l, h1.NS, argv...)
	}
	ctl1 := func(args ...string) (int, string) {
		return runIn(t, l, h1.NS, append([]string{ctl, etcdFlag}, args...)...)
	}
	expectFail := func(what string, code int, out string, want ...string) {
		t.Helper()
		if code != 1 {
			t.Errorf("%s: exit %d, want 1:\n%s", what, code, out)
		}
		fails := failLines(out)
		if len(fails) != len(want) {
			t.Errorf("%s: %d FAIL lines, want %d:\n%s", what, len(fails), len(want), out)
			return
		}
		for i, w := range want {
			if !strings.Contains(fails[i], w) {
				t.Errorf("%s: FAIL line %q, want %q", what, fails[i], w)
			}
		}
	}

	// Healthy, once h1 programmed both peers.
	var code int
	var out string
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, out = doctor(); code == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if code != 0 || !strings.Contains(out, "healthy: ") {
		t.Fatalf("healthy node: exit %d\n%s", code, out)
	}
	t.Logf("doctor on a healthy node:\n%s", out)
	for _, h := range hosts[1:] {
		if !strings.Contains(out, fmt.Sprintf("route %s via %s dev flannel.1 onlink (peer %s)", envs[h.Name].Subnet, envs[h.Name].Subnet.Addr(), h.IP)) {
			t.Errorf("no route line for %s:\n%s", h.Name, out)
		}
	}
	// The iptables program the node uses, from doctor's masquerade line.
	iptables := "iptables"
	if _, rest, ok := strings.Cut(out, "masquerade rules ("); ok {
		save, _, _ := strings.Cut(rest, ")")
		iptables = strings.TrimSuffix(save, "-save")
	}

	// leases -o json --ttl is etcd's content, remaining TTLs included.
	code, out = ctl1("leases", "-o", "json", "--ttl")
	var views []struct {
		Key, Value, BackendType string
		Subnet, PublicIP        *string
		EtcdLease               *string
		Reservation, Live       bool
		TTLSeconds              *int64
	}
	if code != 0 || json.Unmarshal([]byte(out), &views) != nil {
		t.Fatalf("leases -o json: exit %d\n%s", code, out)
	}
	stored := leases(t, cli, "/coreos.com/network")
	if len(views) != len(stored) || len(views) != 3 {
		t.Fatalf("%d leases shown, %d in etcd:\n%s", len(views), len(stored), out)
	}
	for _, v := range views {
		r, ok := stored[v.Key]
		if !ok {
			t.Errorf("%s is not in etcd", v.Key)
			continue
		}
		kv := r.Kvs[0]
		attrs, err := subnet.DecodeAttrs(kv.Value)
		if err != nil || v.Value != string(kv.Value) || v.EtcdLease == nil || *v.EtcdLease != fmt.Sprintf("%x", kv.Lease) ||
			v.Reservation || !v.Live || v.BackendType != "vxlan" || v.PublicIP == nil || *v.PublicIP != attrs.PublicIP.String() ||
			v.TTLSeconds == nil || *v.TTLSeconds <= 0 || v.Subnet == nil || "/coreos.com/network/subnets/"+strings.Replace(*v.Subnet, "/", "-", 1) != v.Key {
			t.Errorf("lease %+v differs from etcd's %s = %s (lease %x)", v, kv.Key, kv.Value, kv.Lease)
		}
	}
	code, out = ctl1("leases")
	t.Logf("flannelctl leases:\n%s", out)
	if code != 0 || !strings.HasPrefix(out, "SUBNET ") || strings.Count(out, " vxlan ") != 3 {
		t.Errorf("leases: exit %d\n%s", code, out)
	}

	// Stop h1's daemon (it leaves its state in place) so breakage stays
	// broken while doctor looks; it would repair most of it within a second.
	if err := procs[0].Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if c, err := procs[0].Wait(10 * time.Second); err != nil || c != 0 {
		t.Fatalf("flanneld SIGTERM: exit %d %v", c, err)
	}
	if code, out = doctor(); code != 0 {
		t.Fatalf("stopped daemon, state in place: exit %d\n%s", code, out)
	}

	peer := envs[h2.Name].Subnet
	t.Run("missing route", func(t *testing.T) {
		runIn(t, l, h1.NS, "ip", "route", "del", peer.String())
		code, out := doctor()
		expectFail("missing route", code, out, fmt.Sprintf("route to peer %s is missing: want %s via %s dev flannel.1 onlink", h2.IP, peer, peer.Addr()))
		fix := fixOf(t, out, "route to peer")
		if c, o := runIn(t, l, h1.NS, fix...); c != 0 {
			t.Fatalf("fix %q: %s", fix, o)
		}
	})
	t.Run("stale FDB entry", func(t *testing.T) {
		runIn(t, l, h1.NS, "bridge", "fdb", "append", "02:00:00:00:00:99", "dev", "flannel.1", "dst", "172.30.0.99", "self", "permanent")
		code, out := doctor()
		expectFail("stale FDB", code, out, "stale FDB entry 02:00:00:00:00:99 dst 172.30.0.99 on flannel.1")
		fix := fixOf(t, out, "stale FDB entry")
		if c, o := runIn(t, l, h1.NS, fix...); c != 0 {
			t.Fatalf("fix %q: %s", fix, o)
		}
	})
	t.Run("missing masquerade rule", func(t *testing.T) {
		own, network := envs[h1.Name].Subnet.String(), envs[h1.Name].Network.String()
		spec := []string{"FLANNEL-POSTRTG", "-s", own, "-d", network, "-m", "comment", "--comment", "flanneld masq", "-j", "RETURN"}
		if c, o := runIn(t, l, h1.NS, append([]string{iptables, "-t", "nat", "-D"}, spec...)...); c != 0 {
			t.Fatalf("delete rule: %s", o)
		}
		code, out := doctor()
		expectFail("masquerade", code, out, fmt.Sprintf(`masquerade rule missing from FLANNEL-POSTRTG (iptables): -A FLANNEL-POSTRTG -s %s -d %s -m comment --comment "flanneld masq" -j RETURN`, own, network))
		ins := append([]string{iptables, "-t", "nat", "-I", spec[0], "2"}, spec[1:]...)
		if c, o := runIn(t, l, h1.NS, ins...); c != 0 {
			t.Fatalf("restore rule: %s", o)
		}
	})
	t.Run("missing CNI plugin", func(t *testing.T) {
		code, out := doctor("--cni-bin-dir=" + cniBinNoPortmap)
		expectFail("CNI", code, out, "CNI plugin portmap not found in "+cniBinNoPortmap)
	})
	t.Run("subnet.env disagrees with etcd", func(t *testing.T) {
		orig, err := os.ReadFile(h1.SubnetFile())
		if err != nil {
			t.Fatal(err)
		}
		defer os.WriteFile(h1.SubnetFile(), orig, 0o644)
		own := envs[h1.Name].Subnet
		gw := func(p fmt.Stringer) string {
			pp := mustPrefix(p.String())
			return fmt.Sprintf("%s/%d", pp.Addr().Next(), pp.Bits())
		}
		edited := strings.Replace(string(orig), "FLANNEL_SUBNET="+gw(own), "FLANNEL_SUBNET="+gw(peer), 1)
		if edited == string(orig) {
			t.Fatalf("subnet.env unchanged:\n%s", orig)
		}
		os.WriteFile(h1.SubnetFile(), []byte(edited), 0o644)
		code, out := doctor()
		expectFail("subnet.env", code, out, fmt.Sprintf("subnet.env has FLANNEL_SUBNET=%s but our lease in etcd is %s", gw(peer), own))
	})
	if code, out = doctor(); code != 0 {
		t.Fatalf("after the repairs: exit %d\n%s", code, out)
	}

	// reserve and release against the lab's etcd.
	var free string
	for i := 250; i > 200; i-- {
		sn := fmt.Sprintf("10.244.%d.0/24", i)
		if _, taken := stored["/coreos.com/network/subnets/"+strings.Replace(sn, "/", "-", 1)]; !taken {
			free = sn
			break
		}
	}
	code, out = ctl1("reserve", free, "172.30.0.99")
	key := "/coreos.com/network/subnets/" + strings.Replace(free, "/", "-", 1)
	if code != 0 || !strings.Contains(out, "reserved "+free+" for 172.30.0.99") {
		t.Fatalf("reserve: exit %d\n%s", code, out)
	}
	r, err := cli.Get(context.Background(), key)
	if err != nil || len(r.Kvs) != 1 || r.Kvs[0].Lease != 0 || string(r.Kvs[0].Value) != `{"PublicIP":"172.30.0.99","PublicIPv6":null}` {
		t.Fatalf("reservation in etcd: %v %v", r, err)
	}
	if code, out = doctor(); code != 0 || !strings.Contains(out, "skip  reservation "+free+" (public IP 172.30.0.99) advertises no backend") {
		t.Errorf("doctor with a reservation: exit %d\n%s", code, out)
	}
	if code, out = ctl1("reserve", peer.String(), "172.30.0.98"); code != 1 || !strings.Contains(out, fmt.Sprintf("overlaps the lease %s of %s", peer, h2.IP)) {
		t.Errorf("overlapping reserve: exit %d\n%s", code, out)
	}
	if code, out = ctl1("release", peer.String()); code != 1 || !strings.Contains(out, "is a live lease") {
		t.Errorf("release of a live lease: exit %d\n%s", code, out)
	}
	if code, out = ctl1("release", free); code != 0 || !strings.Contains(out, "released the reservation "+key) {
		t.Errorf("release: exit %d\n%s", code, out)
	}
	r, err = cli.Get(context.Background(), "/coreos.com/network/subnets/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if r.Count != 3 {
		t.Errorf("after release: %d keys, want the 3 leases", r.Count)
	}
}
