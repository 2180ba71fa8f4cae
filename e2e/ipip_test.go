//go:build linux

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
)

const ipipConfig = `{"Network":"10.5.0.0/16","Backend":{"Type":"ipip"}}`

// kernelHasIPIP creates and deletes a throwaway ipip device in ns.
func kernelHasIPIP(t *testing.T, l *lab.Lab, ns string) bool {
	t.Helper()
	ctx := context.Background()
	if _, err := l.Exec(ctx, ns, "ip", "link", "add", "flprobe0", "type", "ipip", "local", "192.0.2.1"); err != nil {
		return false
	}
	if _, err := l.Exec(ctx, ns, "ip", "link", "del", "flprobe0"); err != nil {
		t.Fatal(err)
	}
	return true
}

// On a kernel without the ipip module (this project's CI machines) the
// ipip backend stops flanneld at start: exit 1, one error line naming the
// module and the alternatives, and nothing of ours left: no device, no
// lease in etcd (the device is made before the lease is acquired, unlike
// upstream), no subnet.env, no route. On a kernel with ipip, two nodes'
// pods reach each other through flannel.ipip instead.
func TestPrivilegedIPIPBackend(t *testing.T) {
	l, cli := newLab(t, 2, ipipConfig)
	ctx := testCtx(t, 2*time.Minute)
	h1 := l.Hosts()[0]
	if kernelHasIPIP(t, l, h1.NS) {
		ipipDataPlane(t, l)
		return
	}
	linksBefore, err := l.Exec(ctx, h1.NS, "ip", "-o", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	p, err := l.StartFlanneld(h1)
	if err != nil {
		t.Fatal(err)
	}
	code, err := p.Wait(30 * time.Second)
	if err != nil {
		t.Fatalf("flanneld kept running on a kernel without ipip: %v\n%s", err, p.Log())
	}
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	var errLines []string
	for _, line := range strings.Split(p.Log(), "\n") {
		if strings.Contains(line, "level=ERROR") {
			errLines = append(errLines, line)
		}
	}
	const want = `msg="prepare ipip backend: the kernel has no ipip support (creating flannel.ipip: operation not supported): ` +
		`load kernel module \"ipip\" (modprobe ipip) or choose the vxlan, host-gw or wireguard backend"`
	if len(errLines) != 1 || !strings.Contains(errLines[0], want) {
		t.Errorf("error lines %q, want one with %s\n%s", errLines, want, p.Log())
	}
	if err := contains(p.Log(), "IPIP config: DirectRouting=false"); err != nil {
		t.Error(err)
	}

	linksAfter, err := l.Exec(ctx, h1.NS, "ip", "-o", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	if linksAfter != linksBefore {
		t.Errorf("links changed by a failed start:\nbefore\n%s\nafter\n%s", linksBefore, linksAfter)
	}
	if ls := leases(t, cli, "/coreos.com/network"); len(ls) != 0 {
		for k, r := range ls {
			t.Errorf("lease left behind: %s = %s", k, r.Kvs[0].Value)
		}
	}
	if out, err := l.Exec(ctx, h1.NS, "ip", "route", "show", "proto", "45"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("routes left behind: %q %v", out, err)
	}
	if _, err := l.Exec(ctx, h1.NS, "test", "!", "-e", h1.SubnetFile()); err != nil {
		t.Errorf("subnet.env written by a failed start: %v", err)
	}
}

// ipipDataPlane runs on kernels with ipip: upstream's device and routes,
// pods connected.
func ipipDataPlane(t *testing.T, l *lab.Lab) {
	ctx := testCtx(t, 2*time.Minute)
	var pods []*lab.Pod
	for _, h := range l.Hosts() {
		p, err := l.StartFlanneld(h)
		if err != nil {
			t.Fatal(err)
		}
		env := waitEnv(t, l, h, p, 30*time.Second)
		if env.MTU != 1480 {
			t.Errorf("%s: FLANNEL_MTU=%d, want 1480", h.Name, env.MTU)
		}
		out, err := l.Exec(ctx, h.NS, "ip", "-d", "addr", "show", "dev", "flannel.ipip")
		if err != nil {
			t.Fatal(err)
		}
		if err := contains(out, "mtu 1480", "ipip", "local "+h.IP.String(), fmt.Sprintf("inet %s/32", env.Subnet.Masked().Addr())); err != nil {
			t.Errorf("%s flannel.ipip: %v\n%s", h.Name, err, out)
		}
		pod, err := l.AddPod(ctx, h, "p1")
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, pod)
	}
	waitPing(t, l, pods[0], pods[1])
	waitPing(t, l, pods[1], pods[0])
}
