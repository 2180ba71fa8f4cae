//go:build linux

package suite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
)

// WireguardOptions describe the pod-to-pod comparison of the wireguard
// backend (userspace on a kernel without the module, else the kernel's)
// with plain vxlan.
type WireguardOptions struct {
	Duration time.Duration // per iperf3 run
	Rounds   int           // runs of each path, taking turns; the best counts (default 1)
	// Implementation is the wireguard backend's Implementation key
	// (default "userspace", the path this measures).
	Implementation string
	// DaemonEnv is added to every flanneld's environment (KEY=value).
	DaemonEnv []string
	Logf      func(format string, args ...any)
}

// WireguardResult holds bits per second of one TCP stream pod to pod
// (iperf3, received side), the best of the rounds.
type WireguardResult struct {
	Implementation string
	VXLAN          float64
	Wireguard      float64
}

// Ratio is wireguard over vxlan.
func (r WireguardResult) Ratio() float64 {
	if r.VXLAN == 0 {
		return 0
	}
	return r.Wireguard / r.VXLAN
}

// Line prints the comparison.
func (r WireguardResult) Line() string {
	return fmt.Sprintf("tcp pod to pod, one stream: vxlan %.2f Gbit/s, wireguard (%s) %.2f Gbit/s (%.0f%% of vxlan)",
		r.VXLAN/1e9, r.Implementation, r.Wireguard/1e9, 100*r.Ratio())
}

// wireguardPrefix is the etcd prefix of the wireguard overlay, beside
// vxlan's at Prefix: two networks in one lab and one etcd.
const wireguardPrefix = "/bench-wireguard/network"

// Wireguard runs two overlays in l, which needs four hosts: vxlan between
// h1 and h2 (etcd prefix Prefix, 10.244.0.0/16), wireguard between h3 and
// h4 (wireguardPrefix, 10.245.0.0/16), a pod on each host, and measures one
// TCP stream pod to pod over each, taking turns. Both pairs cross the same
// fabric bridge and veths, so the difference is the tunnel.
func Wireguard(ctx context.Context, l *lab.Lab, o WireguardOptions) (WireguardResult, error) {
	if o.Implementation == "" {
		o.Implementation = "userspace"
	}
	res := WireguardResult{Implementation: o.Implementation}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if o.Duration < time.Second {
		return res, fmt.Errorf("iperf3 duration %s: want at least 1s", o.Duration)
	}
	hosts := l.Hosts()
	if len(hosts) < 4 {
		return res, errors.New("the wireguard throughput lab needs four hosts")
	}
	if err := l.StartEtcd(ctx); err != nil {
		return res, err
	}
	cli, err := l.Etcd(ctx)
	if err != nil {
		return res, err
	}
	defer cli.Close()
	overlays := []struct {
		prefix, config string
		hosts          []*lab.Host
		into           *float64
	}{
		{Prefix, `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`, hosts[0:2], &res.VXLAN},
		{wireguardPrefix, fmt.Sprintf(`{"Network":"10.245.0.0/16","Backend":{"Type":"wireguard","Implementation":%q}}`, o.Implementation), hosts[2:4], &res.Wireguard},
	}
	type path struct {
		what     string
		from, to *lab.Pod
		into     *float64
	}
	var paths []path
	for _, ov := range overlays {
		if _, err := cli.Put(ctx, ov.prefix+"/config", ov.config); err != nil {
			return res, fmt.Errorf("write network config: %w", err)
		}
		var pods []*lab.Pod
		for _, h := range ov.hosts {
			// Each node keeps its own key, as each machine has its own
			// /run/flannel.
			env := append([]string{"WIREGUARD_KEY_FILE=" + filepath.Join(h.Dir, "wgkey")}, o.DaemonEnv...)
			p, err := l.StartFlanneldEnv(h, env, "--etcd-prefix="+ov.prefix)
			if err != nil {
				return res, err
			}
			defer p.Stop(5 * time.Second)
			err = poll(ctx, time.Minute, 20*time.Millisecond, p, func() (bool, error) {
				_, err := lab.ReadSubnetEnv(h.SubnetFile())
				return err == nil, nil
			})
			if err != nil {
				return res, fmt.Errorf("flanneld on %s: %w", h.Name, err)
			}
			pod, err := l.AddPod(ctx, h, "perf")
			if err != nil {
				return res, err
			}
			pods = append(pods, pod)
		}
		err = poll(ctx, 30*time.Second, 100*time.Millisecond, nil, func() (bool, error) {
			return l.Ping(ctx, pods[0].NS, pods[1].IP, 1) == nil, nil
		})
		if err != nil {
			return res, fmt.Errorf("pod %s cannot reach pod %s: %w", pods[0].NS, pods[1].IP, err)
		}
		paths = append(paths, path{ov.prefix, pods[0], pods[1], ov.into})
	}
	paths[0].what, paths[1].what = "vxlan pod to pod", "wireguard ("+o.Implementation+") pod to pod"
	for round := 1; round <= max(1, o.Rounds); round++ {
		for _, p := range paths {
			bps, err := iperf(ctx, l, p.to.NS, p.from.NS, p.to.IP.String(), o.Duration)
			if err != nil {
				return res, fmt.Errorf("%s: %w", p.what, err)
			}
			*p.into = max(*p.into, bps)
			logf("throughput %s, round %d: %.2f Gbit/s", p.what, round, bps/1e9)
		}
	}
	return res, nil
}
