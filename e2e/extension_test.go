//go:build linux

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
	"github.com/flannelng/flannel/subnet"
)

// extensionScripts writes the commands of a host-gw-like data plane built
// by the extension backend: one route per peer. Each records what it saw
// in <dir>/<host>.log. add fails once per host while <dir>/fail-<host>
// exists, which it removes.
func extensionScripts(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	scripts := map[string]string{
		"pre":  `echo "data-of-$1"`,
		"post": `echo "post $*" >> "$D/$LABHOST.log"`,
		"add": `read data
echo "add $* v6=$IPV6SUBNET,$PUBLIC_IPV6 data=$data" >> "$D/$LABHOST.log"
if [ -e "$D/fail-$LABHOST" ]; then rm "$D/fail-$LABHOST"; echo "injected failure for $1"; exit 3; fi
ip route replace "$1" via "$2"`,
		"del": `read data
echo "del $* data=$data" >> "$D/$LABHOST.log"
ip route del "$1" via "$2"`,
	}
	for name, body := range scripts {
		text := fmt.Sprintf("#!/bin/sh\nD=%s\n%s\n", dir, body)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func extensionConfig(dir string) string {
	return fmt.Sprintf(`{"Network":"10.5.0.0/16","Backend":{"Type":"extension",
		"PreStartupCommand":"%[1]s/pre $LABHOST",
		"PostStartupCommand":"%[1]s/post $NETWORK $SUBNET $PUBLIC_IP $PUBLIC_IPV6",
		"SubnetAddCommand":"%[1]s/add $SUBNET $PUBLIC_IP",
		"SubnetRemoveCommand":"%[1]s/del $SUBNET $PUBLIC_IP",
		"CommandTimeout":10}}`, dir)
}

func readLog(t *testing.T, dir, host string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, host+".log"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// Three nodes on the extension backend whose commands are small scripts
// building a host-gw-like data plane: upstream's lease (BackendData = the
// Pre output), the commands' arguments, environment and stdin, pods
// pinging across; a SubnetAddCommand failing once is retried and then
// works; a removed peer's route goes through SubnetRemoveCommand.
func TestPrivilegedExtensionBackend(t *testing.T) {
	dir := extensionScripts(t)
	l, cli := newLab(t, 3, extensionConfig(dir))
	ctx := testCtx(t, 3*time.Minute)
	hosts := l.Hosts()
	// h3's first SubnetAddCommand fails.
	if err := os.WriteFile(filepath.Join(dir, "fail-"+hosts[2].Name), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var procs []*lab.Process
	var envs []subnet.Env
	var pods []*lab.Pod
	for _, h := range hosts {
		p, err := l.StartFlanneldEnv(h, []string{"LABHOST=" + h.Name})
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
	}
	for i, h := range hosts {
		env := waitEnv(t, l, h, procs[i], 30*time.Second)
		envs = append(envs, env)
		if env.MTU != 1500 {
			t.Errorf("%s: FLANNEL_MTU=%d, want the interface's 1500", h.Name, env.MTU)
		}
		key := "/coreos.com/network/subnets/" + subnet.MakeKey(env.Subnet, env.IPv6Subnet)
		r, ok := leases(t, cli, "/coreos.com/network")[key]
		if !ok {
			t.Fatalf("%s: no lease %s", h.Name, key)
		}
		want := fmt.Sprintf(`{"PublicIP":"%s","PublicIPv6":null,"BackendType":"extension","BackendData":"data-of-%s"}`, h.IP, h.Name)
		if v := string(r.Kvs[0].Value); v != want {
			t.Errorf("%s: lease %s, want %s", h.Name, v, want)
		}
		pod, err := l.AddPod(ctx, h, "p1")
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, pod)
	}
	for i, from := range pods {
		for j, to := range pods {
			if i != j {
				waitPing(t, l, from, to)
			}
		}
	}
	for i, h := range hosts {
		log := readLog(t, dir, h.Name)
		want := []string{fmt.Sprintf("post 10.5.0.0/16 %s %s <nil>", envs[i].Subnet.Masked(), h.IP)}
		for j, peer := range hosts {
			if j != i {
				want = append(want, fmt.Sprintf("add %s %s v6=::/0,<nil> data=data-of-%s", envs[j].Subnet.Masked(), peer.IP, peer.Name))
			}
		}
		if err := contains(log, want...); err != nil {
			t.Errorf("%s: %v\n%s", h.Name, err, log)
		}
	}
	// h3's injected failure: logged with exit status and output, then
	// retried by itself (no lease changed) until it worked.
	p3 := procs[2].Log()
	if err := contains(p3, `msg="failed to run command: `+dir+`/add $SUBNET $PUBLIC_IP Err: exit status 3 Output: injected failure for`,
		"key=SubnetAddCommand", "exit_status=3"); err != nil {
		t.Errorf("h3: %v\n%s", err, p3)
	}
	if n := strings.Count(readLog(t, dir, hosts[2].Name), "add "); n != 3 {
		t.Errorf("h3 ran SubnetAddCommand %d times, want 3 (two peers, one retry)", n)
	}

	// Remove h3: its daemon stops and its lease goes; the others run
	// SubnetRemoveCommand and its route disappears.
	if err := procs[2].Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := procs[2].Wait(10 * time.Second); err != nil || code != 0 {
		t.Fatalf("SIGTERM: exit %d %v", code, err)
	}
	key3 := "/coreos.com/network/subnets/" + subnet.MakeKey(envs[2].Subnet, envs[2].IPv6Subnet)
	if _, err := cli.Delete(ctx, key3); err != nil {
		t.Fatal(err)
	}
	sn3 := envs[2].Subnet.Masked().String()
	for i, h := range hosts[:2] {
		err := l.WaitFor(ctx, 20*time.Second, h.Name+" removes "+sn3, func() error {
			if out, err := l.Exec(ctx, h.NS, "ip", "route", "show", sn3); err != nil || strings.TrimSpace(out) != "" {
				return fmt.Errorf("route still there: %q %v", out, err)
			}
			return contains(readLog(t, dir, h.Name), fmt.Sprintf("del %s %s data=data-of-%s", sn3, hosts[2].IP, hosts[2].Name))
		})
		if err != nil {
			t.Errorf("%v\n%s", err, procs[i].Log())
		}
		if err := contains(procs[i].Log(), "Subnet removed: "+sn3); err != nil {
			t.Error(err)
		}
	}
	if err := l.Ping(ctx, pods[0].NS, pods[1].IP, 3); err != nil {
		t.Errorf("after the removal: %v", err)
	}
}

// A failing PreStartupCommand stops flanneld before it acquires a lease;
// a failing PostStartupCommand stops it after (the lease stays, as
// upstream's). Both exit 1 with one line naming the command, its exit
// status and output.
func TestPrivilegedExtensionStartupFailures(t *testing.T) {
	dir := t.TempDir()
	fail := filepath.Join(dir, "fail")
	if err := os.WriteFile(fail, []byte("#!/bin/sh\necho \"cannot set up $1\"\nexit 4\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key       string
		wantLease bool
	}{{"PreStartupCommand", false}, {"PostStartupCommand", true}} {
		t.Run(tc.key, func(t *testing.T) {
			cfg := fmt.Sprintf(`{"Network":"10.5.0.0/16","Backend":{"Type":"extension","%s":"%s $LABHOST"}}`, tc.key, fail)
			l, cli := newLab(t, 1, cfg)
			h := l.Hosts()[0]
			p, err := l.StartFlanneldEnv(h, []string{"LABHOST=" + h.Name})
			if err != nil {
				t.Fatal(err)
			}
			code, err := p.Wait(30 * time.Second)
			if err != nil || code != 1 {
				t.Fatalf("exit %d %v, want 1\n%s", code, err, p.Log())
			}
			want := fmt.Sprintf(`%s (exit status 4): failed to run command: %s $LABHOST Err: exit status 4 Output: cannot set up %s`, tc.key, fail, h.Name)
			if n := strings.Count(p.Log(), "level=ERROR"); n != 1 || !strings.Contains(p.Log(), want) {
				t.Errorf("want one error line with %q:\n%s", want, p.Log())
			}
			if got := len(leases(t, cli, "/coreos.com/network")); (got == 1) != tc.wantLease || got > 1 {
				t.Errorf("%d leases, want lease %v", got, tc.wantLease)
			}
		})
	}
}
