//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
	"github.com/flannelng/flannel/subnet"
)

const udpConfig = `{"Network":"10.5.0.0/16","Backend":{"Type":"udp"}}`

// Three flanneld daemons on the udp backend: upstream's device, route and
// lease, pods on every host reaching each other, a TCP transfer through the
// userspace relay, and a daemon restart that keeps flannel0 and its route.
func TestPrivilegedUDPBackend(t *testing.T) {
	l, cli := newLab(t, 3, udpConfig)
	ctx := testCtx(t, 3*time.Minute)
	var procs []*lab.Process
	for _, h := range l.Hosts() {
		p, err := l.StartFlanneld(h)
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
	}
	var pods []*lab.Pod
	for i, h := range l.Hosts() {
		env := waitEnv(t, l, h, procs[i], 30*time.Second)
		if env.MTU != 1472 {
			t.Errorf("%s: FLANNEL_MTU=%d, want 1472 (1500 - 28)", h.Name, env.MTU)
		}
		key := "/coreos.com/network/subnets/" + subnet.MakeKey(env.Subnet, env.IPv6Subnet)
		r, ok := leases(t, cli, "/coreos.com/network")[key]
		if !ok {
			t.Fatalf("%s: no lease %s", h.Name, key)
		}
		if v, want := string(r.Kvs[0].Value), fmt.Sprintf(`{"PublicIP":"%s","PublicIPv6":null}`, h.IP); v != want {
			t.Errorf("%s: lease value %s, want %s", h.Name, v, want)
		}
		out, err := l.Exec(ctx, h.NS, "ip", "-d", "addr", "show", "dev", "flannel0")
		if err != nil {
			t.Fatal(err)
		}
		if err := contains(out, "mtu 1472", "tun type tun pi off", "persist on", "inet "+env.Subnet.Masked().Addr().String()+"/32"); err != nil {
			t.Errorf("%s flannel0: %v\n%s", h.Name, err, out)
		}
		out, err = l.Exec(ctx, h.NS, "ip", "route", "show", "10.5.0.0/16")
		if err != nil || !strings.Contains(out, "10.5.0.0/16 dev flannel0") {
			t.Errorf("%s: route %q %v", h.Name, out, err)
		}
		p, err := l.AddPod(ctx, h, "p1")
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, p)
	}
	for _, from := range pods {
		for _, to := range pods {
			if from != to {
				waitPing(t, l, from, to)
				if err := l.Ping(ctx, from.NS, to.IP, 3); err != nil {
					t.Error(err)
				}
			}
		}
	}
	if err := l.TCPTransfer(ctx, pods[0].NS, pods[1].NS, pods[1].IP, 4<<20); err != nil {
		t.Error(err)
	}
	if err := l.TCPTransfer(ctx, pods[2].NS, pods[0].NS, pods[0].IP, 4<<20); err != nil {
		t.Error(err)
	}

	// Restart h1's daemon: flannel0 (persistent) and the route stay while
	// it is down, and the new daemon re-attaches to the same device.
	h1 := l.Hosts()[0]
	before := ifindex(t, l, h1.NS)
	if err := procs[0].Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := procs[0].Wait(10 * time.Second); err != nil || code != 0 {
		t.Fatalf("SIGTERM: exit %d %v", code, err)
	}
	if out, err := l.Exec(ctx, h1.NS, "ip", "route", "show", "10.5.0.0/16"); err != nil || !strings.Contains(out, "dev flannel0") {
		t.Errorf("route gone while the daemon is stopped: %q %v", out, err)
	}
	p, err := l.StartFlanneld(h1)
	if err != nil {
		t.Fatal(err)
	}
	err = l.WaitFor(ctx, 30*time.Second, "restarted flanneld ready", func() error {
		if p.Exited() {
			return lab.Permanent(fmt.Errorf("flanneld exited:\n%s", p.Log()))
		}
		return contains(p.Log(), "flannel is ready")
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := contains(p.Log(), "attached to existing TUN device"); err != nil {
		t.Errorf("restart: %v\n%s", err, p.Log())
	}
	if after := ifindex(t, l, h1.NS); after != before {
		t.Errorf("flannel0 recreated at restart: index %d -> %d", before, after)
	}
	for _, to := range pods[1:] {
		if err := l.Ping(ctx, pods[0].NS, to.IP, 3); err != nil {
			t.Errorf("after restart: %v", err)
		}
	}
}

// A network config without "Backend" selects udp, as upstream's code does.
func TestPrivilegedUDPIsTheDefaultBackend(t *testing.T) {
	l, cli := newLab(t, 2, `{"Network":"10.5.0.0/16"}`)
	ctx := testCtx(t, 2*time.Minute)
	var pods []*lab.Pod
	for _, h := range l.Hosts() {
		p, err := l.StartFlanneld(h)
		if err != nil {
			t.Fatal(err)
		}
		waitEnv(t, l, h, p, 30*time.Second)
		if err := contains(p.Log(), "using the udp backend", "Backend type: udp"); err != nil {
			t.Errorf("%s: %v", h.Name, err)
		}
		pod, err := l.AddPod(ctx, h, "p1")
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, pod)
	}
	for _, r := range leases(t, cli, "/coreos.com/network") {
		if v := string(r.Kvs[0].Value); !strings.HasSuffix(v, `"PublicIPv6":null}`) || strings.Contains(v, "BackendType") {
			t.Errorf("lease value %s", v)
		}
	}
	waitPing(t, l, pods[0], pods[1])
	if err := l.Ping(ctx, pods[1].NS, pods[0].IP, 3); err != nil {
		t.Error(err)
	}
}

// waitPing waits until from reaches to: the daemons program their peers
// as the leases appear, so the first pod may be up before the last lease.
func waitPing(t *testing.T, l *lab.Lab, from, to *lab.Pod) {
	t.Helper()
	err := l.WaitFor(context.Background(), 30*time.Second, "ping "+to.IP.String(), func() error {
		return l.Ping(context.Background(), from.NS, to.IP, 1)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func ifindex(t *testing.T, l *lab.Lab, ns string) int {
	t.Helper()
	out, err := l.Exec(context.Background(), ns, "cat", "/sys/class/net/flannel0/ifindex")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// BenchmarkPrivilegedUDPThroughput reports pod-to-pod TCP throughput
// (iperf3, 3 s) between two lab hosts over the udp backend, next to vxlan
// on the same kind of lab, and the CPU time the sending and receiving
// flanneld processes spent meanwhile (the udp relay runs in them; vxlan's
// data path is in the kernel). Run it alone:
//
//	go test ./e2e -run XXX -bench UDPThroughput -benchtime 1x
func BenchmarkPrivilegedUDPThroughput(b *testing.B) {
	if _, err := os.Stat("/usr/bin/iperf3"); err != nil {
		b.Skip("needs iperf3")
	}
	for _, typ := range []string{"udp", "vxlan"} {
		b.Run(typ, func(b *testing.B) {
			l := lab.NewT(b, lab.Options{Hosts: 2})
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			if err := l.StartEtcd(ctx); err != nil {
				b.Fatal(err)
			}
			cli, err := l.Etcd(ctx)
			if err != nil {
				b.Fatal(err)
			}
			cfg := fmt.Sprintf(`{"Network":"10.5.0.0/16","Backend":{"Type":%q}}`, typ)
			if _, err := cli.Put(ctx, "/coreos.com/network/config", cfg); err != nil {
				b.Fatal(err)
			}
			var pods []*lab.Pod
			var procs []*lab.Process
			for _, h := range l.Hosts() {
				p, err := l.StartFlanneld(h)
				if err != nil {
					b.Fatal(err)
				}
				procs = append(procs, p)
				err = l.WaitFor(ctx, 30*time.Second, "subnet.env on "+h.Name, func() error {
					if p.Exited() {
						if strings.Contains(p.Log(), "unknown backend type") {
							return lab.Permanent(errUnregistered)
						}
						return lab.Permanent(fmt.Errorf("flanneld exited:\n%s", p.Log()))
					}
					_, err := subnet.ReadEnvFile(h.SubnetFile())
					return err
				})
				if err != nil {
					if strings.Contains(err.Error(), errUnregistered.Error()) {
						b.Skipf("backend %s is not registered in cmd/flanneld", typ)
					}
					b.Fatal(err)
				}
				pod, err := l.AddPod(ctx, h, "p1")
				if err != nil {
					b.Fatal(err)
				}
				pods = append(pods, pod)
			}
			src, dst := pods[0], pods[1]
			err = l.WaitFor(ctx, 30*time.Second, "ping", func() error { return l.Ping(ctx, src.NS, dst.IP, 1) })
			if err != nil {
				b.Fatal(err)
			}
			var bps, cpu float64
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				cpu0 := cpuSeconds(b, procs)
				bps += iperf(b, l, ctx, src, dst)
				cpu += cpuSeconds(b, procs) - cpu0
			}
			b.ReportMetric(bps/float64(b.N)/1e6, "Mbit/s")
			b.ReportMetric(cpu/float64(b.N), "flanneld-cpu-s/3s")
		})
	}
}

var errUnregistered = fmt.Errorf("unknown backend type")

// iperf runs one 3-second iperf3 TCP test from src to dst and returns the
// received bits per second.
func iperf(b *testing.B, l *lab.Lab, ctx context.Context, src, dst *lab.Pod) float64 {
	b.Helper()
	srv, err := l.StartProcess(dst.NS, filepath.Join(b.TempDir(), "iperf3-server.log"), nil,
		"iperf3", "-s", "-1", "-B", dst.IP.String(), "-p", "5201")
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Stop(2 * time.Second)
	var res struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	err = l.WaitFor(ctx, 10*time.Second, "iperf3 client", func() error {
		out, err := l.Exec(ctx, src.NS, "iperf3", "-c", dst.IP.String(), "-p", "5201", "-t", "3", "-J")
		if strings.Contains(out, "Connection refused") {
			return fmt.Errorf("iperf3 server not listening yet: %s", out)
		}
		if err != nil {
			return lab.Permanent(err)
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil || res.Error != "" || res.End.SumReceived.BitsPerSecond == 0 {
			return lab.Permanent(fmt.Errorf("iperf3 output: %v\n%s", err, out))
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return res.End.SumReceived.BitsPerSecond
}

// cpuSeconds sums the user and system CPU time of the processes.
func cpuSeconds(b *testing.B, procs []*lab.Process) float64 {
	b.Helper()
	var total float64
	for _, p := range procs {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid))
		if err != nil {
			b.Fatal(err)
		}
		// Fields after the parenthesised command name: utime and stime
		// are the 12th and 13th.
		s := string(raw)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		for _, f := range fields[11:13] {
			ticks, err := strconv.ParseFloat(f, 64)
			if err != nil {
				b.Fatal(err)
			}
			total += ticks / 100 // USER_HZ
		}
	}
	return total
}
