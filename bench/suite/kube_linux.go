//go:build linux

package suite

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
)

// Bounds of the kube case's phases.
const (
	kubeCreateTimeout = 5 * time.Minute  // K Nodes created
	kubeUpdateTimeout = 10 * time.Minute // the updates sent and handled
	kubeMarkerTimeout = time.Minute      // the end marker seen after the last update
	// kubeReconcilePeriod keeps the daemon's periodic full pass (1 min
	// by default) out of the update window: the target counts the passes
	// the updates cause, and the timer is not one of them.
	kubeReconcilePeriod = "--reconcile-period=30m"
	// kubeSettle lets the daemon's own writes come back before the
	// update window opens: its annotation and NetworkUnavailable PATCHes
	// return as watch events of its own Node.
	kubeSettle = 2 * time.Second
)

// KubeOptions describe one kube-mode run.
type KubeOptions struct {
	K       int // Nodes with leases (fake peers) created before the daemon starts
	Updates int // irrelevant Node updates once it is programmed (0: none)
	// Rate paces the updates (per second; 0: as fast as the API server
	// takes them). The daemon's CPU per update depends on it: events that
	// arrive together share a read and a wake-up.
	Rate float64
	// Workers bounds the concurrent requests of the creates and the
	// updates (default 8); each has a connection of its own.
	Workers int
	// DaemonArgs and DaemonEnv ("KEY=value") are added to flanneld's
	// command line and environment.
	DaemonArgs []string
	DaemonEnv  []string
	Logf       func(format string, args ...any)
}

// Kube runs the kube-mode case in l, which needs one host, no running
// etcd and Binaries.KubeAPIServer: it starts etcd and the kube-apiserver,
// creates the host's Node (podCIDR KubeOwnPodCIDR) and K fake peers' Nodes
// (podCIDR and flannel annotations), starts flanneld in kube mode with the
// flannel ServiceAccount of dist/kube-flannel.yml, and times the informer's
// sync to every peer programmed. Then it sends Updates Node updates
// flannel has no use for and counts the daemon's CPU and reconcile passes
// until it has handled the last one (seen by an end marker: a managed Node
// without a podCIDR, which the daemon logs as ignored and which makes no
// pass either). It stops the daemon before returning.
func Kube(ctx context.Context, l *lab.Lab, o KubeOptions) (KubeResult, error) {
	res := KubeResult{K: o.K, Updates: o.Updates}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.K < 1 || o.Updates < 0 || o.Rate < 0 {
		return res, errors.New("kube case: K must be positive, Updates and Rate not negative")
	}
	if o.K > MaxPeers {
		return res, fmt.Errorf("kube case: K=%d fake peers, at most %d fit the lab's underlay", o.K, MaxPeers)
	}
	hosts := l.Hosts()
	if len(hosts) == 0 {
		return res, errors.New("the lab has no host")
	}
	h := hosts[0]

	if err := l.StartEtcd(ctx); err != nil {
		return res, err
	}
	if err := l.StartKubeAPIServer(ctx); err != nil {
		return res, err
	}
	// One client per worker: the lab's client keeps 4 idle connections,
	// and a connection closed after each request would cost every
	// request a TLS handshake.
	clients := make([]*lab.KubeClient, o.Workers)
	for i := range clients {
		c, err := l.Kube(ctx)
		if err != nil {
			return res, err
		}
		clients[i] = c
	}
	// The daemon's identity (RBAC objects, token), made before the clock
	// starts.
	if _, err := l.KubeconfigForFlannel(ctx); err != nil {
		return res, err
	}
	if err := clients[0].CreateNode(ctx, h.Name, []string{KubeOwnPodCIDR}, map[string]string{"node.alpha.kubernetes.io/ttl": "0"}); err != nil {
		return res, fmt.Errorf("create our Node %s: %w", h.Name, err)
	}
	peers, err := FakePeers(0, o.K)
	if err != nil {
		return res, err
	}
	began := time.Now()
	cctx, cancel := context.WithTimeout(ctx, kubeCreateTimeout)
	err = forEach(cctx, len(peers), o.Workers, func(ctx context.Context, w, i int) error {
		p := peers[i]
		ann, err := p.NodeAnnotations()
		if err != nil {
			return err
		}
		if err := clients[w].CreateNode(ctx, p.NodeName(), []string{p.Subnet.String()}, ann); err != nil {
			return fmt.Errorf("create Node %s: %w", p.NodeName(), err)
		}
		return nil
	})
	cancel()
	if err != nil {
		return res, err
	}
	res.Created = time.Since(began)
	logf("kube K=%d: %d Nodes created in %s", o.K, o.K, FormatDuration(res.Created))

	k, err := OpenKernel(h.NS, VXLAN)
	if err != nil {
		return res, err
	}
	defer k.Close()

	// Start-up.
	env := map[string]string{}
	for _, kv := range o.DaemonEnv {
		key, v, _ := strings.Cut(kv, "=")
		env[key] = v
	}
	args := append([]string{fmt.Sprintf("--healthz-port=%d", metricsPort), kubeReconcilePeriod}, o.DaemonArgs...)
	start := time.Now()
	p, err := l.StartFlanneldKube(h, env, KubeNetConfig, args...)
	if err != nil {
		return res, err
	}
	defer p.Stop(5 * time.Second)
	all := Expecting(VXLAN, peers)
	gate := sentinels(peers, 16)
	var programmedAt time.Time
	err = poll(ctx, startupTimeout(o.K), startupPoll, p, func() (bool, error) {
		for len(gate) > 0 {
			ok, err := k.RouteInstalled(gate[0])
			if err != nil || !ok {
				return false, err
			}
			gate = gate[1:]
		}
		c, err := k.Count(all, o.K)
		if err != nil || !c.Has(VXLAN, o.K) {
			return false, err
		}
		programmedAt = time.Now()
		cpu, err := ReadProcCPU(p.Pid)
		if err != nil {
			return false, fmt.Errorf("daemon CPU: %w", err)
		}
		res.CPU = cpu.Self
		if res.RSSReady, err = ReadPeakRSS(p.Pid); err != nil {
			return false, err
		}
		res.RSSAnon, res.RSSFile, err = ReadRSS(p.Pid)
		return true, err
	})
	if err != nil {
		return res, fmt.Errorf("startup with %d Nodes: %w", o.K, err)
	}
	// The daemon logs "Data plane programmed" right after its first pass;
	// the kernel check may see the entries a moment before that.
	var dl kubeLog
	err = poll(ctx, 30*time.Second, envPoll, p, func() (bool, error) {
		var err error
		dl, err = parseKubeLog(p.Log())
		return err == nil && dl.HasProgrammed, err
	})
	if err != nil {
		return res, fmt.Errorf("read the daemon's log: %w", err)
	}
	if dl.Nodes != o.K+1 || dl.Peers != o.K {
		return res, fmt.Errorf("the daemon synced %d Nodes and programmed %d peers, want %d and %d (the fake peers and its own Node)", dl.Nodes, dl.Peers, o.K+1, o.K)
	}
	res.Synced = dl.Synced.Sub(start)
	res.Programmed = programmedAt.Sub(dl.Synced)
	res.DaemonProgrammed = dl.Programmed.Sub(dl.Synced)
	logf("kube K=%d: informer synced %s after start, all programmed %s later (daemon's log: %s); RSS then %s anonymous + %s file",
		o.K, FormatDuration(res.Synced), FormatDuration(res.Programmed), FormatDuration(res.DaemonProgrammed), FormatMiB(res.RSSAnon), FormatMiB(res.RSSFile))

	if o.Updates > 0 {
		if !sleep(ctx, kubeSettle) {
			return res, ctx.Err()
		}
		if err := kubeUpdates(ctx, l, h, p, clients, peers, o, &res); err != nil {
			return res, err
		}
		logf("kube K=%d: %d updates handled in %s, daemon CPU %s, %.0f reconcile passes", o.K, o.Updates,
			FormatDuration(res.UpdatesTook), FormatDuration(res.UpdateCPU), res.Passes)
	}

	if res.RSSPeak, err = ReadPeakRSS(p.Pid); err != nil {
		return res, fmt.Errorf("daemon peak RSS: %w", err)
	}
	if _, err := p.Stop(5 * time.Second); err != nil {
		return res, fmt.Errorf("stop flanneld: %w", err)
	}
	return res, nil
}

// kubeUpdates sends o.Updates irrelevant updates round-robin over the fake
// peers' Nodes, then the end marker, and measures the daemon's CPU and
// reconcile passes from just before the first update until it logged the
// marker: by then it has handled every earlier event, in order.
func kubeUpdates(ctx context.Context, l *lab.Lab, h *lab.Host, p *lab.Process, clients []*lab.KubeClient, peers []Peer, o KubeOptions, res *KubeResult) error {
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	ups := make([]KubeUpdate, o.Updates)
	for j := range ups {
		u, err := NewKubeUpdate(j, peers[j%len(peers)].NodeName(), base)
		if err != nil {
			return err
		}
		ups[j] = u
		if u.Heartbeat {
			res.Heartbeats++
		}
	}
	marker := fmt.Sprintf("bench-end-%d", time.Now().UnixNano())
	markerAnn := map[string]string{kubePrefix + "kube-subnet-manager": "true"}

	passes0, err := scrapePassCount(ctx, l, h)
	if err != nil {
		return err
	}
	thr0, err0 := ReadThreadsCPU(p.Pid)
	cpu0, err1 := ReadProcCPU(p.Pid)
	if err := errors.Join(err0, err1); err != nil {
		return fmt.Errorf("daemon CPU: %w", err)
	}
	began := time.Now()
	uctx, cancel := context.WithTimeout(ctx, kubeUpdateTimeout)
	defer cancel()
	err = forEach(uctx, len(ups), len(clients), func(ctx context.Context, w, j int) error {
		if o.Rate > 0 {
			due := began.Add(time.Duration(float64(j) / o.Rate * float64(time.Second)))
			if d := time.Until(due); d > 0 && !sleep(ctx, d) {
				return ctx.Err()
			}
		}
		u := ups[j]
		if _, err := clients[w].Do(ctx, http.MethodPatch, u.Path, u.ContentType, u.Body); err != nil {
			return fmt.Errorf("update %d: %w", j+1, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sent := time.Since(began)
	if err := clients[0].CreateNode(uctx, marker, nil, markerAnn); err != nil {
		return fmt.Errorf("create the end marker Node %s: %w", marker, err)
	}
	err = poll(uctx, kubeMarkerTimeout, 10*time.Millisecond, p, func() (bool, error) {
		return loggedIgnoring(p.Log(), marker), nil
	})
	if err != nil {
		return fmt.Errorf("the daemon never logged the end marker Node %s as ignored: %w", marker, err)
	}
	res.UpdatesTook = time.Since(began)
	thr1, err0 := ReadThreadsCPU(p.Pid)
	cpu1, err1 := ReadProcCPU(p.Pid)
	if err := errors.Join(err0, err1); err != nil {
		return fmt.Errorf("daemon CPU: %w", err)
	}
	passes1, err := scrapePassCount(ctx, l, h)
	if err != nil {
		return err
	}
	res.UpdateCPU, res.UpdateTicks, res.Passes = thr1-thr0, cpu1.Self-cpu0.Self, passes1-passes0
	res.Rate = float64(o.Updates) / sent.Seconds()
	if o.Logf != nil {
		o.Logf("kube K=%d: %d updates sent in %s (%.0f/s)", o.K, o.Updates, FormatDuration(sent), res.Rate)
	}
	return nil
}

// forEach calls fn for 0 .. n-1 from workers goroutines (w is the
// worker's number) and returns the first error; after it the remaining
// calls are skipped and ctx passed to the running ones is cancelled.
func forEach(ctx context.Context, n, workers int, fn func(ctx context.Context, w, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for w := range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := fn(ctx, w, i); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}
