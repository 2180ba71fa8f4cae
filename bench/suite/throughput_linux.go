//go:build linux

package suite

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
)

// ThroughputOptions describe the TCP throughput comparison.
type ThroughputOptions struct {
	Backend  string        // the overlay measured (vxlan)
	Duration time.Duration // per iperf3 run
	Rounds   int           // runs of each path, taking turns; the best counts (default 1)
	Logf     func(format string, args ...any)
}

// The hand-made reference tunnel: its own VNI, port and addresses, so it
// cannot meet flanneld's device (VNI 1, port 8472) or overlay network.
const (
	refDevice = "bvx0"
	refVNI    = "4242"
	refPort   = "4789"
	iperfPort = "5201"
)

var refAddrs = [2]string{"192.168.254.1", "192.168.254.2"}

// Throughput starts etcd and flanneld on l's first two hosts, adds a pod
// to each, and measures one TCP stream host to host over eth0, over the
// hand-made kernel vxlan tunnel and over flanneld's flannel.1, then pod to
// pod over the overlay. Every packet stays inside the lab's namespaces.
func Throughput(ctx context.Context, l *lab.Lab, o ThroughputOptions) (ThroughputResult, error) {
	res := ThroughputResult{Backend: o.Backend}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if o.Duration < time.Second {
		return res, fmt.Errorf("iperf3 duration %s: want at least 1s", o.Duration)
	}
	hosts := l.Hosts()
	if len(hosts) < 2 {
		return res, errors.New("the throughput lab needs two hosts")
	}
	h1, h2 := hosts[0], hosts[1]
	if err := l.StartEtcd(ctx); err != nil {
		return res, err
	}
	cli, err := l.Etcd(ctx)
	if err != nil {
		return res, err
	}
	defer cli.Close()
	cfg := fmt.Sprintf(`{"Network":"10.244.0.0/16","Backend":{"Type":%q}}`, o.Backend)
	if _, err := cli.Put(ctx, Prefix+"/config", cfg); err != nil {
		return res, fmt.Errorf("write network config: %w", err)
	}
	var pods []*lab.Pod
	for _, h := range []*lab.Host{h1, h2} {
		p, err := l.StartFlanneld(h)
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
	}
	for _, h := range []*lab.Host{h1, h2} {
		p, err := l.AddPod(ctx, h, "perf")
		if err != nil {
			return res, err
		}
		pods = append(pods, p)
	}
	// Both daemons must know each other's lease before the pods can talk.
	err = poll(ctx, 30*time.Second, 100*time.Millisecond, nil, func() (bool, error) {
		return l.Ping(ctx, pods[0].NS, pods[1].IP, 1) == nil, nil
	})
	if err != nil {
		return res, fmt.Errorf("pod %s cannot reach pod %s: %w", pods[0].NS, pods[1].IP, err)
	}
	if err := referenceTunnel(ctx, l, h1, h2); err != nil {
		return res, err
	}
	// flanneld's own device on h2 holds the network address of h2's
	// subnet: traffic from h1 to it crosses the two flannel.1 devices and
	// nothing else, the same path as the hand-made tunnel.
	env2, err := lab.ReadSubnetEnv(h2.SubnetFile())
	if err != nil {
		return res, err
	}
	vtep2 := env2.Subnet.Masked().Addr()

	runs := []struct {
		what         string
		server, from string
		to           string
		into         *float64
	}{
		{"underlay", h2.NS, h1.NS, h2.IP.String(), &res.Underlay},
		{"kernel vxlan by hand", h2.NS, h1.NS, refAddrs[1], &res.Reference},
		{o.Backend + " flannel.1 host to host", h2.NS, h1.NS, vtep2.String(), &res.Tunnel},
		{o.Backend + " overlay pod to pod", pods[1].NS, pods[0].NS, pods[1].IP.String(), &res.Overlay},
	}
	// On a small shared machine one stream's rate swings with whatever
	// else runs: the paths take turns, round after round, and each keeps
	// its best rate.
	for round := 1; round <= max(1, o.Rounds); round++ {
		for _, r := range runs {
			bps, err := iperf(ctx, l, r.server, r.from, r.to, o.Duration)
			if err != nil {
				return res, fmt.Errorf("%s: %w", r.what, err)
			}
			*r.into = max(*r.into, bps)
			logf("throughput %s, round %d: %.2f Gbit/s", r.what, round, bps/1e9)
		}
	}
	return res, nil
}

// referenceTunnel builds the hand-made point-to-point vxlan between h1 and
// h2 (remote set, so no FDB is needed), with upstream's MTU for a 1500-byte
// underlay.
func referenceTunnel(ctx context.Context, l *lab.Lab, h1, h2 *lab.Host) error {
	ends := [2]*lab.Host{h1, h2}
	for i, h := range ends {
		peer := ends[1-i]
		cmds := [][]string{
			{"ip", "link", "add", refDevice, "type", "vxlan", "id", refVNI, "dstport", refPort,
				"local", h.IP.String(), "remote", peer.IP.String(), "dev", "eth0"},
			{"ip", "link", "set", refDevice, "mtu", "1450", "up"},
			{"ip", "addr", "add", refAddrs[i] + "/30", "dev", refDevice},
		}
		for _, c := range cmds {
			if _, err := l.Exec(ctx, h.NS, c...); err != nil {
				return fmt.Errorf("reference vxlan on %s: %w", h.Name, err)
			}
		}
	}
	return nil
}

// iperf runs one iperf3 test from the namespace from to `to`, with the
// server in serverNS, and returns the received bits per second.
func iperf(ctx context.Context, l *lab.Lab, serverNS, from, to string, d time.Duration) (float64, error) {
	if _, err := netip.ParseAddr(to); err != nil {
		return 0, fmt.Errorf("iperf3 target %q: %w", to, err)
	}
	srv, err := l.StartProcess(serverNS, filepath.Join(l.Dir(), "iperf3-"+serverNS+".log"), nil,
		"iperf3", "-s", "-1", "-p", iperfPort)
	if err != nil {
		return 0, err
	}
	defer srv.Stop(2 * time.Second)
	secs := strconv.Itoa(int(d.Round(time.Second) / time.Second))
	var bps float64
	// The server needs a moment to listen; connection refused is retried.
	// (iperf3 -J may exit 0 after a failed connect: the JSON tells.)
	err = poll(ctx, 5*time.Second, 100*time.Millisecond, nil, func() (bool, error) {
		cctx, cancel := context.WithTimeout(ctx, d+15*time.Second)
		defer cancel()
		out, err := l.Exec(cctx, from, "iperf3", "-c", to, "-p", iperfPort, "-t", secs, "-J")
		if strings.Contains(out, "Connection refused") && !srv.Exited() {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		bps, err = parseIperf([]byte(out))
		return err == nil, err
	})
	return bps, err
}
