//go:build linux

package suite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Poll intervals. Startup is checked by dumping whole tables (costly at
// 15,000 rows, and the daemon shares two cores with us), the rest by
// asking for single routes, which costs the same at any table size.
const (
	startupPoll = 20 * time.Millisecond
	envPoll     = 2 * time.Millisecond
	burstPoll   = time.Millisecond
	changePoll  = 200 * time.Microsecond
	// changeGap separates single changes, so each one meets an idle
	// daemon (the figure is the latency of one change, not of a queue).
	changeGap = 5 * time.Millisecond
	// settle lets the daemon drain the kernel's echoes of its own writes
	// between phases.
	settle = time.Second
)

// Bounds of each phase; a phase that runs out fails the run.
const (
	burstTimeout  = 30 * time.Second
	changeTimeout = 5 * time.Second
	changesBudget = 3 * time.Minute
)

// startupTimeout grows with K: upstream needed 34 s for 5,000 host-gw
// peers; ours should need a small fraction of this.
func startupTimeout(k int) time.Duration { return 60*time.Second + time.Duration(k)*5*time.Millisecond }

// ScaleOptions describe one scale run.
type ScaleOptions struct {
	Backend string // VXLAN or HostGW
	K       int    // peer leases in etcd before the daemon starts
	Burst   int    // leases added, then deleted, in one transaction each (100)
	Changes int    // single lease additions timed one by one (1,000)
	// DaemonArgs and DaemonEnv are added to flanneld's command line and
	// environment (e.g. FLANNELD_CPUPROFILE=<path>).
	DaemonArgs []string
	DaemonEnv  []string
	Logf       func(format string, args ...any)
}

// Scale runs one scale case in l, which must hold at least one host and no
// running etcd: it starts etcd, writes the network config and K fake peer
// leases, starts flanneld on the first host and times how long it takes to
// program them, then a burst of additions and deletions and single
// changes. It stops the daemon before returning (so a CPU profile gets
// written); l.Close removes the rest.
func Scale(ctx context.Context, l *lab.Lab, o ScaleOptions) (ScaleResult, error) {
	res := ScaleResult{Backend: o.Backend, K: o.K, Burst: o.Burst}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if o.Backend != VXLAN && o.Backend != HostGW {
		return res, fmt.Errorf("backend %q: want %s or %s", o.Backend, VXLAN, HostGW)
	}
	if o.K < 0 || o.Burst < 0 || o.Changes < 0 {
		return res, errors.New("K, Burst and Changes must not be negative")
	}
	if total := o.K + o.Burst + o.Changes; total > MaxPeers {
		return res, fmt.Errorf("K+Burst+Changes = %d fake peers: at most %d fit the lab's underlay", total, MaxPeers)
	}
	hosts := l.Hosts()
	if len(hosts) == 0 {
		return res, errors.New("the lab has no host")
	}
	h := hosts[0]

	if err := l.StartEtcd(ctx); err != nil {
		return res, err
	}
	cli, err := l.Etcd(ctx)
	if err != nil {
		return res, err
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, Prefix+"/config", NetConfig(o.Backend)); err != nil {
		return res, fmt.Errorf("write network config: %w", err)
	}
	grant, err := cli.Grant(ctx, leaseTTL)
	if err != nil {
		return res, fmt.Errorf("grant etcd lease: %w", err)
	}
	peers, err := FakePeers(0, o.K)
	if err != nil {
		return res, err
	}
	began := time.Now()
	if err := writePeers(ctx, cli, o.Backend, peers, grant.ID, txnBatch); err != nil {
		return res, err
	}
	logf("%s K=%d: %d leases written in %s", o.Backend, o.K, o.K, FormatDuration(time.Since(began)))

	k, err := OpenKernel(h.NS, o.Backend)
	if err != nil {
		return res, err
	}
	defer k.Close()

	// Startup.
	_ = os.Remove(h.SubnetFile())
	var envAt atomic.Int64 // ns since start; 0 = not yet
	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	start := time.Now()
	args := append([]string{fmt.Sprintf("--healthz-port=%d", metricsPort)}, o.DaemonArgs...)
	p, err := l.StartFlanneldEnv(h, o.DaemonEnv, args...)
	if err != nil {
		return res, err
	}
	defer p.Stop(5 * time.Second)
	go func() {
		t := time.NewTicker(envPoll)
		defer t.Stop()
		for {
			if _, err := os.Stat(h.SubnetFile()); err == nil {
				envAt.Store(int64(time.Since(start)))
				return
			}
			select {
			case <-pollCtx.Done():
				return
			case <-t.C:
			}
		}
	}()
	all := Expecting(o.Backend, peers)
	// Dumping 15,000 rows every 20 ms would take a good part of one of
	// the two cores from the daemon being measured. A few sample peers'
	// routes, asked for one by one, gate the dumps: only once they all
	// exist are the tables dumped and counted (every peer, every table).
	gate := sentinels(peers, 16)
	err = poll(ctx, startupTimeout(o.K), startupPoll, p, func() (bool, error) {
		for len(gate) > 0 {
			ok, err := k.RouteInstalled(gate[0])
			if err != nil || !ok {
				return false, err
			}
			gate = gate[1:]
		}
		c, err := k.Count(all, o.K)
		if err != nil || !c.Has(o.Backend, o.K) {
			return false, err
		}
		res.Programmed = time.Since(start)
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
		return res, fmt.Errorf("startup with %d %s peers: %w", o.K, o.Backend, err)
	}
	err = poll(ctx, 30*time.Second, envPoll, p, func() (bool, error) { return envAt.Load() != 0, nil })
	if err != nil {
		return res, fmt.Errorf("subnet.env after startup: %w", err)
	}
	res.Env = time.Duration(envAt.Load())
	logf("%s K=%d: programmed in %s, subnet.env in %s; RSS then %s anonymous + %s file", o.Backend, o.K,
		FormatDuration(res.Programmed), FormatDuration(res.Env), FormatMiB(res.RSSAnon), FormatMiB(res.RSSFile))

	// A burst of additions, then of deletions.
	if o.Burst > 0 {
		burst, err := FakePeers(o.K, o.Burst)
		if err != nil {
			return res, err
		}
		sleep(ctx, settle)
		res.BurstAdd, err = timeBurst(ctx, k, p, o.Backend, burst, true, func() error {
			return writePeers(ctx, cli, o.Backend, burst, grant.ID, len(burst))
		})
		if err != nil {
			return res, fmt.Errorf("add %d leases: %w", o.Burst, err)
		}
		sleep(ctx, settle)
		res.BurstDel, err = timeBurst(ctx, k, p, o.Backend, burst, false, func() error {
			return deletePeers(ctx, cli, burst, len(burst))
		})
		if err != nil {
			return res, fmt.Errorf("delete %d leases: %w", o.Burst, err)
		}
	}

	// Single changes.
	if o.Changes > 0 {
		sleep(ctx, settle)
		changes, err := FakePeers(o.K+o.Burst, o.Changes)
		if err != nil {
			return res, err
		}
		passes0, err0 := scrapePasses(ctx, l, h)
		budget := time.Now().Add(changesBudget)
		var puts []time.Duration
		for _, c := range changes {
			if time.Now().After(budget) {
				logf("%s K=%d: change budget of %s spent after %d changes", o.Backend, o.K, changesBudget, len(res.Latencies))
				break
			}
			d, put, err := timeChange(ctx, k, p, o.Backend, c, cli, grant.ID)
			if err != nil {
				return res, fmt.Errorf("single change %d: %w", len(res.Latencies)+1, err)
			}
			res.Latencies = append(res.Latencies, d)
			puts = append(puts, put)
			sleep(ctx, changeGap)
		}
		res.P50, res.P99 = Percentile(res.Latencies, 0.50), Percentile(res.Latencies, 0.99)
		res.PutP50, res.PutP99 = Percentile(puts, 0.50), Percentile(puts, 0.99)
		passes1, err1 := scrapePasses(ctx, l, h)
		if err := errors.Join(err0, err1); err != nil {
			logf("%s K=%d: no pass durations: %v", o.Backend, o.K, err)
		} else if n := passes1.count - passes0.count; n > 0 {
			res.PassMean = time.Duration(float64(time.Second) * (passes1.sum - passes0.sum) / n)
		}
		logf("%s K=%d: change p50 %s p99 %s; etcd put p50 %s p99 %s; mean reconcile pass %s over %.0f passes",
			o.Backend, o.K, FormatDuration(res.P50), FormatDuration(res.P99), FormatDuration(res.PutP50), FormatDuration(res.PutP99),
			FormatDuration(res.PassMean), passes1.count-passes0.count)
	}

	if res.RSSPeak, err = ReadPeakRSS(p.Pid); err != nil {
		return res, fmt.Errorf("daemon peak RSS: %w", err)
	}
	if _, err := p.Stop(5 * time.Second); err != nil {
		return res, fmt.Errorf("stop flanneld: %w", err)
	}
	return res, nil
}

// sentinels picks n peers spread over the list, the last one included.
func sentinels(peers []Peer, n int) []Peer {
	if len(peers) <= n {
		return append([]Peer(nil), peers...)
	}
	out := make([]Peer, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, peers[i*len(peers)/n-1])
	}
	return out
}

// timeBurst runs write and times it until every peer's entries exist
// (add) or are gone (!add), asking for each pending peer's entries alone;
// a round stops at the first peer not done yet, so polling costs a request
// or three, not a table dump. Full dumps then check the result (untimed).
func timeBurst(ctx context.Context, k *Kernel, p *lab.Process, backend string, peers []Peer, add bool, write func() error) (time.Duration, error) {
	pending := append([]Peer(nil), peers...)
	start := time.Now()
	if err := write(); err != nil {
		return 0, err
	}
	err := poll(ctx, burstTimeout, burstPoll, p, func() (bool, error) {
		for len(pending) > 0 {
			ok, err := k.Present(pending[0], add)
			if err != nil || !ok {
				return false, err
			}
			pending = pending[1:]
		}
		return true, nil
	})
	d := time.Since(start)
	if err != nil {
		return d, err
	}
	want := 0
	if add {
		want = len(peers)
	}
	c, err := k.Count(Expecting(backend, peers), -1)
	if err == nil && !c.Has(backend, want) {
		err = fmt.Errorf("single-entry gets saw the burst done but the dumps count %+v, want %d of each", c, want)
	}
	return d, err
}

// timeChange adds one lease and times it until its route exists; put is
// the etcd round trip of the write.
func timeChange(ctx context.Context, k *Kernel, p *lab.Process, backend string, pr Peer, cli *clientv3.Client, id clientv3.LeaseID) (d, put time.Duration, err error) {
	v, err := pr.Value(backend)
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	if _, err := cli.Put(ctx, Prefix+"/subnets/"+pr.Key(), v, clientv3.WithLease(id)); err != nil {
		return 0, 0, fmt.Errorf("put lease %s: %w", pr.Key(), err)
	}
	put = time.Since(start)
	err = poll(ctx, changeTimeout, changePoll, p, func() (bool, error) {
		ok, err := k.RouteInstalled(pr)
		d = time.Since(start)
		return ok, err
	})
	return d, put, err
}

// poll calls cond every interval until it reports done, fails, the daemon
// exits, or timeout passes.
func poll(ctx context.Context, timeout, interval time.Duration, p *lab.Process, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		done, err := cond()
		if err != nil || done {
			return err
		}
		if p != nil && p.Exited() {
			return fmt.Errorf("flanneld exited:\n%s", tail(p.Log(), 20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not done after %s", timeout)
		}
		if !sleep(ctx, interval) {
			return ctx.Err()
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func tail(s string, n int) string {
	lines := 0
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' && i < len(s)-1 {
			lines++
			if lines == n {
				return s[i+1:]
			}
		}
	}
	return s
}
