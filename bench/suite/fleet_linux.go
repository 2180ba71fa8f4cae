//go:build linux

package suite

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/flannelng/flannel/daemon"
	"github.com/flannelng/flannel/subnet"
	etcdsubnet "github.com/flannelng/flannel/subnet/etcd"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// FleetOptions describe the simulated fleet's cases.
type FleetOptions struct {
	LabEtcd string // the lab-etcd binary (cmd/lab-etcd)
	// StormTimeout bounds a join storm (default 10 minutes).
	StormTimeout time.Duration
	// Window is an idle fleet's idle window (default 2 minutes).
	Window time.Duration
	// Churn is the share of an idle fleet restarted at once after its
	// window (0: no churn).
	Churn float64
	// Poll makes idle nodes read the config every 5 s, as the daemon did
	// before issue 19 (for comparison), instead of watching it.
	Poll bool
	// AcquireOnly makes a join storm's nodes stop after Acquire: no peer
	// watcher, Keep or config watch. That is the allocation protocol
	// alone; with the watchers, every node also decodes every later
	// join (N×(N−1) events), which a real fleet spreads over N machines
	// and a simulation runs on this one.
	AcquireOnly bool
	Logf        func(format string, args ...any)
}

func (o *FleetOptions) defaults() {
	if o.StormTimeout <= 0 {
		o.StormTimeout = 10 * time.Minute
	}
	if o.Window <= 0 {
		o.Window = 2 * time.Minute
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
}

// fleetNetConfig is the simulated fleet's network: room for 65,535 /24s.
const fleetNetConfig = `{"Network":"10.0.0.0/8","SubnetLen":24,"Backend":{"Type":"vxlan"}}`

// FleetEtcd is an etcd server (cmd/lab-etcd) for a simulated fleet: a
// process of its own, so its CPU can be read from /proc, listening on
// loopback in this namespace, so the simulated nodes use the daemon's own
// client (etcdsubnet.NewClient) unchanged.
type FleetEtcd struct {
	Endpoint string
	Pid      int
	dir      string
	cmd      *exec.Cmd
	done     chan struct{}
}

// StartFleetEtcd runs bin with its data in a new temporary directory and
// waits until it serves clients.
func StartFleetEtcd(ctx context.Context, bin string) (*FleetEtcd, error) {
	dir, err := os.MkdirTemp("", "flannel-fleet-etcd-")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(2)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	e := &FleetEtcd{Endpoint: fmt.Sprintf("http://127.0.0.1:%d", ports[0]), dir: dir, done: make(chan struct{})}
	logPath := filepath.Join(dir, "etcd.log")
	f, err := os.Create(logPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer f.Close()
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	e.cmd = exec.Command(bin, "--name=fleet", "--data-dir="+filepath.Join(dir, "data"),
		"--listen-client-urls="+e.Endpoint, "--listen-peer-urls="+peer, "--initial-cluster=fleet="+peer)
	e.cmd.Stdout, e.cmd.Stderr = f, f
	// It dies with us if we are killed before Close.
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := e.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	e.Pid = e.cmd.Process.Pid
	go func() { e.cmd.Wait(); close(e.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(logPath)
		if strings.Contains(string(b), "etcd ready\n") {
			return e, nil
		}
		select {
		case <-e.done:
			e.Close()
			return nil, fmt.Errorf("etcd exited before it was ready:\n%s", b)
		case <-ctx.Done():
			e.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			e.Close()
			return nil, fmt.Errorf("etcd not ready within 30 s:\n%s", b)
		}
	}
}

func freePorts(n int) ([]int, error) {
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// CPU is etcd's utime+stime so far.
func (e *FleetEtcd) CPU() time.Duration {
	c, _ := ReadProcCPU(e.Pid)
	return c.Self
}

// Received returns the gRPC messages etcd received so far, by method.
func (e *FleetEtcd) Received(ctx context.Context) (RequestCounts, error) {
	return scrapeReceived(ctx, http.DefaultClient, e.Endpoint)
}

func scrapeReceived(ctx context.Context, c *http.Client, endpoint string) (RequestCounts, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("etcd metrics: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("etcd metrics: %w", err)
	}
	return ParseGRPCReceived(b)
}

// Close stops etcd (SIGTERM, then SIGKILL after 10 s) and removes its
// data.
func (e *FleetEtcd) Close() error {
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(10 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.done
	}
	return os.RemoveAll(e.dir)
}

// client returns a client for the benchmark's own writes and reads.
func (e *FleetEtcd) client() (*clientv3.Client, error) {
	return etcdsubnet.NewClient(etcdsubnet.ClientConfig{Endpoints: []string{e.Endpoint}})
}

// selfCPU is this process's CPU so far: the simulated nodes'.
func selfCPU() time.Duration {
	c, _ := ReadProcCPU(os.Getpid())
	return c.Self
}

// logCounter is the simulated nodes' slog handler: it counts messages by
// text and passes each distinct warning or error on to logf once.
type logCounter struct {
	logf   func(string, ...any)
	mu     sync.Mutex
	n      map[string]int
	warned map[string]bool
}

func newLogCounter(logf func(string, ...any)) *logCounter {
	return &logCounter{logf: logf, n: map[string]int{}, warned: map[string]bool{}}
}

func (c *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *logCounter) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *logCounter) WithGroup(string) slog.Handler            { return c }

func (c *logCounter) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	c.n[r.Message]++
	first := r.Level >= slog.LevelWarn && !c.warned[r.Message]
	if first {
		c.warned[r.Message] = true
	}
	c.mu.Unlock()
	if first {
		var b strings.Builder
		r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true })
		c.logf("fleet node %s (first of its kind): %s%s", r.Level, r.Message, b.String())
	}
	return nil
}

// count returns how many messages contained sub.
func (c *logCounter) count(sub string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for m, k := range c.n {
		if strings.Contains(m, sub) {
			n += k
		}
	}
	return n
}

// reqCounter is the simulated nodes' Options.OnRequest: requests by
// kind, and the failed ones by kind and error.
type reqCounter struct {
	mu   sync.Mutex
	n    RequestCounts
	errs RequestCounts
}

func (c *reqCounter) on(kind string, _ time.Duration, err error) {
	c.mu.Lock()
	c.n[kind]++
	if err != nil {
		c.errs[kind+": "+errClass(err)]++
	}
	c.mu.Unlock()
}

// errClass shortens a request's error to what tells failures apart.
func errClass(err error) string {
	s := err.Error()
	for _, c := range []string{"deadline exceeded", "too many requests", "no leader", "too_many_pings", "connection is closing", "Unavailable", "canceled"} {
		if strings.Contains(s, c) {
			return c
		}
	}
	if len(s) > 60 {
		s = s[:60]
	}
	return s
}

func (c *reqCounter) snapshot() (requests, errs RequestCounts) {
	c.mu.Lock()
	defer c.mu.Unlock()
	requests, errs = RequestCounts{}, RequestCounts{}
	for k, v := range c.n {
		requests[k] = v
	}
	for k, v := range c.errs {
		errs[k] = v
	}
	return requests, errs
}

// simFleet is a set of simulated nodes sharing one etcd server.
type simFleet struct {
	etcd *FleetEtcd
	log  *slog.Logger
	logs *logCounter
	reqs *reqCounter
	poll bool // nodes read the config every 5 s instead of watching it
	// target is what a churn's other nodes must see: lease key → the
	// restarted node's new VtepMAC.
	targetMu sync.Mutex
	target   map[string]string
}

func newSimFleet(e *FleetEtcd, logf func(string, ...any)) *simFleet {
	lc := newLogCounter(logf)
	return &simFleet{etcd: e, log: slog.New(lc), logs: lc, reqs: &reqCounter{n: RequestCounts{}, errs: RequestCounts{}}}
}

// simNode is one simulated node: its own etcd client (one connection, as
// a daemon has) and lease source.
type simNode struct {
	i     int
	attrs subnet.LeaseAttrs
	cli   *clientv3.Client
	lease subnet.Lease
	stop  context.CancelFunc
	wg    sync.WaitGroup

	mu     sync.Mutex // guards the consumer's figures below
	size   int        // leases in its set, as its consumer last saw
	events int64      // leases taken from Changes or TakeAll
	passes int64      // notifications handled
	hits   map[string]bool

	// When joinRun's steps ended: config read, leases listed (Start),
	// lease held.
	steps [3]time.Time
}

// stormSteps names simNode.steps.
var stormSteps = [3]string{"config read", "listed", "lease held"}

// simAttrs are node i's lease attributes; gen > 0 gives a new VtepMAC
// (its device re-created).
func simAttrs(i, gen int) subnet.LeaseAttrs {
	return subnet.LeaseAttrs{
		PublicIP:    simIP(i),
		BackendType: VXLAN,
		BackendData: []byte(fmt.Sprintf(`{"VNI":1,"VtepMAC":%q}`, simMAC(i, gen))),
	}
}

// simIP is node i's public address, 100.64.0.0 + i (no packet is sent).
func simIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{100, byte(64 + i>>16), byte(i >> 8), byte(i)})
}

func simMAC(i, gen int) string {
	return fmt.Sprintf("02:f1:%02x:%02x:%02x:%02x", gen, byte(i>>16), byte(i>>8), byte(i))
}

// pollOnly hides the Manager's ConfigWatcher, so daemon.WatchConfig falls
// back to the 5 s poll: the daemon's behaviour before issue 19.
type pollOnly struct{ subnet.Manager }

// join runs the daemon's start-up against etcd (daemon.Run's order, with
// no data plane) and leaves the node running: its peer watcher and a
// consumer of it, Keep, and the daemon's config watch. With shared (an
// idle fleet brought up from leases written beforehand), Acquire uses that
// one listing instead of the node's own, and the peer watcher starts at
// its revision without its leases: 5,000 nodes each holding all 5,000
// would take 10 GB in one process, and etcd serves the same watch either
// way.
func (f *simFleet) join(ctx context.Context, n *simNode, shared *etcdsubnet.Listing) error {
	return f.joinRun(ctx, n, shared, true)
}

// joinRun is join; with run false the node stops after Acquire, holding
// its lease and its client.
func (f *simFleet) joinRun(ctx context.Context, n *simNode, shared *etcdsubnet.Listing, run bool) error {
	cli, err := etcdsubnet.NewClient(etcdsubnet.ClientConfig{Endpoints: []string{f.etcd.Endpoint}})
	if err != nil {
		return err
	}
	mo := etcdsubnet.Options{Log: f.log, OnRequest: f.reqs.on}
	if shared != nil {
		// The watcher holds no starting set, so its periodic re-list
		// would fill it (5,000 nodes × 5,000 leases) and call every
		// lease a missed event. Off here; IdleFleet prices it instead.
		mo.Relist = -1
	}
	m := etcdsubnet.New(cli, mo)
	fail := func(err error) error {
		cli.Close()
		return err
	}
	var cfg *subnet.Config
	var raw []byte
	for {
		if cfg, raw, err = m.GetConfig(ctx); err == nil {
			break
		}
		// The daemon's waitForConfig retries every second too.
		if !sleepCtx(ctx, time.Second) {
			return fail(ctx.Err())
		}
	}
	n.steps[0] = time.Now()
	var peers subnet.PeerSource
	var lease subnet.Lease
	if shared == nil {
		if err := m.Start(ctx, cfg); err != nil {
			return fail(err)
		}
		n.steps[1] = time.Now()
		m.Previous(cfg, subnet.LeaseAttrs{PublicIP: n.attrs.PublicIP})
		if lease, err = m.Acquire(ctx, cfg, n.attrs, subnet.Env{}, nil); err != nil {
			return fail(err)
		}
		n.steps[2] = time.Now()
		peers = m.Peers()
	} else {
		if lease, err = m.AcquireFrom(ctx, *shared, cfg, n.attrs, subnet.Env{}, nil); err != nil {
			return fail(err)
		}
		peers = m.NewWatcherFrom(etcdsubnet.Listing{Revision: shared.Revision})
	}
	nctx, stop := context.WithCancel(context.Background())
	n.cli, n.lease, n.stop = cli, lease, stop
	if !run {
		return nil
	}
	var src subnet.Manager = m
	if f.poll {
		src = pollOnly{m}
	}
	n.wg.Add(4)
	go func() { defer n.wg.Done(); peers.Run(nctx) }()
	go func() { defer n.wg.Done(); f.consume(nctx, n, peers) }()
	go func() {
		defer n.wg.Done()
		if err := m.Keep(nctx, cfg, lease); err != nil {
			f.log.Error("Keep ended", "err", err)
		}
	}()
	go func() { defer n.wg.Done(); daemon.WatchConfig(nctx, src, raw, "etcd", f.log) }()
	return nil
}

// consume reads the node's peer set as the daemon's data-plane loop does
// (Changes, or TakeAll when told to) and keeps the figures.
func (f *simFleet) consume(ctx context.Context, n *simNode, peers subnet.PeerSource) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-peers.Updated():
		}
		gone, came, all := peers.Changes()
		f.targetMu.Lock()
		target := f.target
		f.targetMu.Unlock()
		n.mu.Lock()
		if all {
			leases, _ := peers.TakeAll()
			n.size, gone, came = len(leases), nil, leases
		} else {
			n.size += len(came) - len(gone)
		}
		n.events += int64(len(gone) + len(came))
		n.passes++
		for _, l := range came {
			key := subnet.MakeKey(l.Subnet, l.IPv6Subnet)
			if mac, ok := target[key]; ok && strings.Contains(string(l.Attrs.BackendData), mac) {
				if n.hits == nil {
					n.hits = map[string]bool{}
				}
				n.hits[key] = true
			}
		}
		n.mu.Unlock()
	}
}

// shutdown stops the node's parts and closes its client. Its lease stays
// in etcd, as a stopped daemon's does.
func (n *simNode) shutdown() {
	if n.stop == nil {
		return
	}
	n.stop()
	n.wg.Wait()
	n.cli.Close()
	n.stop = nil
}

func (n *simNode) figures() (size int, events, passes int64, hits int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.size, n.events, n.passes, len(n.hits)
}

func shutdownAll(nodes []*simNode) {
	var wg sync.WaitGroup
	for _, n := range nodes {
		if n == nil {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); n.shutdown() }()
	}
	wg.Wait()
}

// putConfig writes the network config.
func (f *simFleet) putConfig(ctx context.Context) error {
	cli, err := f.etcd.client()
	if err != nil {
		return err
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, Prefix+"/config", fleetNetConfig); err != nil {
		return fmt.Errorf("write network config: %w", err)
	}
	return nil
}

// waitAll polls cond every 20 ms until it holds, and returns how long
// since start that was, or false after bound.
func waitAll(ctx context.Context, start time.Time, bound time.Duration, cond func() bool) (time.Duration, bool) {
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > bound || ctx.Err() != nil {
			return 0, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// JoinStorm starts n simulated nodes at once against a fresh etcd that
// holds only the network config, and reports when all held distinct
// subnets, when every watcher held every lease, and what it cost.
func JoinStorm(ctx context.Context, o FleetOptions, n int) (StormResult, error) {
	o.defaults()
	res := StormResult{N: n, AcquireOnly: o.AcquireOnly}
	e, err := StartFleetEtcd(ctx, o.LabEtcd)
	if err != nil {
		return res, err
	}
	defer e.Close()
	f := newSimFleet(e, o.Logf)
	if err := f.putConfig(ctx); err != nil {
		return res, err
	}
	srv0, err := e.Received(ctx)
	if err != nil {
		return res, err
	}
	cpu0, self0 := e.CPU(), selfCPU()

	nodes := make([]*simNode, n)
	held := make([]time.Duration, n)
	sctx, cancel := context.WithTimeout(ctx, o.StormTimeout)
	defer cancel()
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var firstErr error
	start := time.Now()
	for i := range nodes {
		nodes[i] = &simNode{i: i, attrs: simAttrs(i, 0)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f.joinRun(sctx, nodes[i], nil, !o.AcquireOnly); err != nil {
				errMu.Lock()
				if firstErr == nil && sctx.Err() == nil {
					firstErr = fmt.Errorf("node %d: %w", i, err)
				}
				errMu.Unlock()
				return
			}
			held[i] = time.Since(start)
		}()
	}
	wg.Wait()
	defer shutdownAll(nodes)
	if firstErr != nil {
		return res, firstErr
	}
	var times []time.Duration
	var leases []subnet.Lease
	for i, n := range nodes {
		if n.stop != nil {
			times = append(times, held[i])
			leases = append(leases, n.lease)
		}
	}
	res.Joined = len(leases)
	res.HeldP50 = Percentile(times, 0.5)
	for j, name := range stormSteps {
		var at []time.Duration
		for _, nd := range nodes {
			if !nd.steps[j].IsZero() {
				at = append(at, nd.steps[j].Sub(start))
			}
		}
		res.Steps = append(res.Steps, Phase{Name: name, N: len(at), Median: Percentile(at, 0.5), Last: Percentile(at, 1)})
	}
	if res.Joined == n {
		res.Held = Percentile(times, 1)
		o.Logf("join storm N=%d: all hold leases after %s", n, FormatDuration(res.Held))
	}
	if res.Joined == n && !o.AcquireOnly {
		res.Seen, _ = waitAll(ctx, start, o.StormTimeout, func() bool {
			for _, nd := range nodes {
				if size, _, _, _ := nd.figures(); size < n {
					return false
				}
			}
			return true
		})
	}
	if res.Joined < n {
		o.Logf("join storm N=%d: only %d of %d joined within %s", n, res.Joined, n, o.StormTimeout)
	}
	res.EtcdCPU, res.NodesCPU = e.CPU()-cpu0, selfCPU()-self0
	srv1, err := e.Received(ctx)
	if err != nil {
		return res, err
	}
	res.Server = srv1.Sub(srv0)
	res.Requests, res.Failed = f.reqs.snapshot()
	res.LostRaces = f.logs.count("race lost")
	res.OtherRetries = f.logs.count("Failed to acquire lease")
	res.Overlaps = overlaps(leases)
	if err := checkStored(ctx, e, leases); err != nil {
		return res, err
	}
	return res, nil
}

// overlaps counts the pairs of leases whose subnets overlap.
func overlaps(leases []subnet.Lease) int {
	n := 0
	for i := range leases {
		for j := i + 1; j < len(leases); j++ {
			a, b := leases[i], leases[j]
			if (a.Subnet.IsValid() && b.Subnet.IsValid() && a.Subnet.Overlaps(b.Subnet)) ||
				(a.IPv6Subnet.IsValid() && b.IPv6Subnet.IsValid() && a.IPv6Subnet.Overlaps(b.IPv6Subnet)) {
				n++
			}
		}
	}
	return n
}

// checkStored checks that etcd holds exactly the nodes' leases.
func checkStored(ctx context.Context, e *FleetEtcd, leases []subnet.Lease) error {
	cli, err := e.client()
	if err != nil {
		return err
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, Prefix+"/subnets/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return fmt.Errorf("list leases: %w", err)
	}
	stored := map[string]bool{}
	for _, kv := range resp.Kvs {
		stored[strings.TrimPrefix(string(kv.Key), Prefix+"/subnets/")] = true
	}
	for _, l := range leases {
		if k := subnet.MakeKey(l.Subnet, l.IPv6Subnet); !stored[k] {
			return fmt.Errorf("lease %s held by a node is not in etcd", k)
		}
	}
	if len(stored) != len(leases) {
		return fmt.Errorf("etcd holds %d leases for %d nodes", len(stored), len(leases))
	}
	return nil
}

// preload writes n nodes' leases as a fleet that has been up for a while
// left them: node i's key on its own 24 h etcd lease, with the value its
// lease source writes. Subnets are 10.(i/256).(i%256).0/24 from 10.0.1.0.
func preload(ctx context.Context, e *FleetEtcd, n int) error {
	cli, err := e.client()
	if err != nil {
		return err
	}
	defer cli.Close()
	ids := make([]clientv3.LeaseID, n)
	const workers = 16
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				g, err := cli.Grant(ctx, leaseTTL)
				if err != nil {
					errs <- fmt.Errorf("grant etcd lease: %w", err)
					return
				}
				ids[i] = g.ID
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	for first := 0; first < n; first += txnBatch {
		var ops []clientv3.Op
		for i := first; i < min(n, first+txnBatch); i++ {
			v, err := subnet.EncodeAttrs(simAttrs(i, 0))
			if err != nil {
				return err
			}
			ops = append(ops, clientv3.OpPut(Prefix+"/subnets/"+simKey(i), string(v), clientv3.WithLease(ids[i])))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			return fmt.Errorf("write leases %d to %d: %w", first, first+len(ops)-1, err)
		}
	}
	return nil
}

func simKey(i int) string { return fmt.Sprintf("10.%d.%d.0-24", (i+1)/256, (i+1)%256) }

// IdleFleet brings n simulated nodes up from leases written beforehand,
// lets them settle, and counts what etcd receives over the idle window;
// with o.Churn it then restarts that share of the fleet at once, twice
// (attributes unchanged, then with new VtepMACs).
func IdleFleet(ctx context.Context, o FleetOptions, n int) (FleetIdleResult, []ChurnResult, error) {
	o.defaults()
	res := FleetIdleResult{N: n, Poll: o.Poll, Window: o.Window}
	e, err := StartFleetEtcd(ctx, o.LabEtcd)
	if err != nil {
		return res, nil, err
	}
	defer e.Close()
	f := newSimFleet(e, o.Logf)
	f.poll = o.Poll
	if err := f.putConfig(ctx); err != nil {
		return res, nil, err
	}
	began := time.Now()
	if err := preload(ctx, e, n); err != nil {
		return res, nil, err
	}
	cli, err := e.client()
	if err != nil {
		return res, nil, err
	}
	shared, err := etcdsubnet.New(cli, etcdsubnet.Options{Log: slog.New(slog.DiscardHandler)}).Snapshot(ctx)
	cli.Close()
	if err != nil {
		return res, nil, err
	}
	nodes := make([]*simNode, n)
	defer func() { shutdownAll(nodes) }()
	// Bringing the fleet up is not what is measured: a few at a time.
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var firstErr error
	for i := range nodes {
		nodes[i] = &simNode{i: i, attrs: simAttrs(i, 0)}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := f.join(ctx, nodes[i], &shared); err != nil {
				errMu.Lock()
				firstErr = cmpErr(firstErr, fmt.Errorf("node %d: %w", i, err))
				errMu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return res, nil, firstErr
	}
	res.Setup = time.Since(began)
	o.Logf("idle fleet N=%d: up in %s; settling, then idle for %s", n, FormatDuration(res.Setup), FormatDuration(o.Window))
	if !sleepCtx(ctx, 5*time.Second) {
		return res, nil, ctx.Err()
	}

	srv0, err := e.Received(ctx)
	if err != nil {
		return res, nil, err
	}
	req0, _ := f.reqs.snapshot()
	cpu0, self0 := e.CPU(), selfCPU()
	if !sleepCtx(ctx, o.Window) {
		return res, nil, ctx.Err()
	}
	res.EtcdCPU, res.NodesCPU = e.CPU()-cpu0, selfCPU()-self0
	req1, _ := f.reqs.snapshot()
	res.Requests = req1.Sub(req0)
	srv1, err := e.Received(ctx)
	if err != nil {
		return res, nil, err
	}
	res.Server = srv1.Sub(srv0)
	res.EtcdRSS, _ = readRSS(e.Pid)
	res.RelistEvery = daemonRelist
	if res.ListCPU, res.ListSamples, err = listCost(ctx, e, n); err != nil {
		return res, nil, err
	}
	if o.Churn <= 0 {
		return res, nil, nil
	}
	var churns []ChurnResult
	for gen := range 2 {
		c, err := f.churn(ctx, nodes, o.Churn, gen, o.Logf)
		if err != nil {
			return res, churns, err
		}
		churns = append(churns, c)
		if c.Unrejoined > 0 {
			// Not a fleet at rest any more: the next churn would
			// measure this one's backlog.
			break
		}
	}
	return res, churns, nil
}

// daemonRelist is how often the daemon's lease watcher re-lists every
// lease as a safety net (subnet/etcd's Options.Relist default, which
// flanneld keeps), give or take a tenth.
const daemonRelist = 10 * time.Minute

// listCost is etcd's CPU for one listing of the n leases, as a periodic
// re-list asks for: the mean over a few sequential listings.
func listCost(ctx context.Context, e *FleetEtcd, n int) (time.Duration, int, error) {
	cli, err := e.client()
	if err != nil {
		return 0, 0, err
	}
	defer cli.Close()
	samples := 20
	cpu0 := e.CPU()
	for range samples {
		resp, err := cli.Get(ctx, Prefix+"/subnets/", clientv3.WithPrefix())
		if err != nil {
			return 0, 0, fmt.Errorf("list leases: %w", err)
		}
		if len(resp.Kvs) != n {
			return 0, 0, fmt.Errorf("listed %d leases, want %d", len(resp.Kvs), n)
		}
	}
	return (e.CPU() - cpu0) / time.Duration(samples), samples, nil
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// readRSS is the process's resident set now (anonymous and file pages),
// in bytes.
func readRSS(pid int) (uint64, error) {
	anon, file, err := ReadRSS(pid)
	return anon + file, err
}

// churnBound bounds a churn's restarts and its convergence.
const churnBound = 5 * time.Minute

// churn restarts every k-th node at once (share = 1/k) through the
// daemon's whole start-up, with the attributes they had (gen 0) or with a
// new VtepMAC (gen > 0), and waits until every other node's watcher has
// the new leases.
func (f *simFleet) churn(ctx context.Context, nodes []*simNode, share float64, gen int, logf func(string, ...any)) (ChurnResult, error) {
	every := max(1, int(1/share+0.5))
	res := ChurnResult{N: len(nodes), NewMAC: gen > 0}
	var restarted, others []*simNode
	for i, n := range nodes {
		if i%every == 0 {
			restarted = append(restarted, n)
		} else {
			others = append(others, n)
		}
	}
	res.Restarted = len(restarted)
	target := map[string]string{}
	if gen > 0 {
		for _, n := range restarted {
			target[subnet.MakeKey(n.lease.Subnet, n.lease.IPv6Subnet)] = simMAC(n.i, gen)
		}
	}
	f.targetMu.Lock()
	f.target = target
	f.targetMu.Unlock()
	type mark struct{ events, passes int64 }
	marks := make([]mark, len(others))
	for j, n := range others {
		n.mu.Lock()
		n.hits = nil
		marks[j] = mark{n.events, n.passes}
		n.mu.Unlock()
	}
	srv0, err := f.etcd.Received(ctx)
	if err != nil {
		return res, err
	}
	req0, err0 := f.reqs.snapshot()
	cpu0, self0 := f.etcd.CPU(), selfCPU()

	start := time.Now()
	// A restart that cannot finish within the bound is counted, not
	// waited for: an etcd that cannot serve the restarted nodes' listings
	// within their request timeout can stay behind for good, as each
	// retry asks for the whole listing again.
	rctx, cancel := context.WithTimeout(ctx, churnBound)
	defer cancel()
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var firstErr error
	var failed int
	for _, n := range restarted {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.shutdown()
			n.attrs = simAttrs(n.i, gen)
			if err := f.join(rctx, n, nil); err != nil {
				errMu.Lock()
				if rctx.Err() != nil {
					failed++
				} else {
					firstErr = cmpErr(firstErr, fmt.Errorf("restart node %d: %w", n.i, err))
				}
				errMu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return res, firstErr
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	res.Unrejoined = failed
	if failed == 0 {
		res.Rejoined = time.Since(start)
	}
	if gen > 0 && failed == 0 {
		var ok bool
		res.Converged, ok = waitAll(ctx, start, churnBound, func() bool {
			for _, n := range others {
				if _, _, _, hits := n.figures(); hits < len(target) {
					return false
				}
			}
			return true
		})
		if !ok {
			res.Converged = 0
			for _, n := range others {
				if _, _, _, hits := n.figures(); hits < len(target) {
					res.Unconverged++
				}
			}
		}
	}
	// Events still in flight are counted too.
	if !sleepCtx(ctx, 2*time.Second) {
		return res, ctx.Err()
	}
	res.EtcdCPU, res.NodesCPU = f.etcd.CPU()-cpu0, selfCPU()-self0
	req1, err1 := f.reqs.snapshot()
	res.Requests, res.Failed = req1.Sub(req0), err1.Sub(err0)
	srv1, err := f.etcd.Received(ctx)
	if err != nil {
		return res, err
	}
	res.Server = srv1.Sub(srv0)
	var evSum, paSum int64
	for j, n := range others {
		_, ev, pa, _ := n.figures()
		ev, pa = ev-marks[j].events, pa-marks[j].passes
		evSum += ev
		paSum += pa
		res.EventsMax = max(res.EventsMax, ev)
		res.PassesMax = max(res.PassesMax, pa)
	}
	if len(others) > 0 {
		res.EventsMean = float64(evSum) / float64(len(others))
		res.PassesMean = float64(paSum) / float64(len(others))
	}
	logf("churn N=%d (new VtepMAC %t): %d restarted, rejoined after %s", res.N, res.NewMAC, res.Restarted, FormatDuration(res.Rejoined))
	return res, nil
}
