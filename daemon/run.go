// Package daemon is flanneld's lifetime: the network config, the lease,
// the backend, the traffic rules, subnet.env, health and readiness, and
// the data-plane loop that feeds the backend from the lease source. It
// knows lease sources and backends only through their contracts
// (subnet.Manager, backend.Registry): cmd/flanneld builds the real ones,
// tests pass fakes.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/flannelng/flannel/backend"
	"github.com/flannelng/flannel/ip"
	"github.com/flannelng/flannel/pkg/firewall"
	"github.com/flannelng/flannel/pkg/health"
	"github.com/flannelng/flannel/pkg/metrics"
	"github.com/flannelng/flannel/pkg/sdnotify"
	"github.com/flannelng/flannel/subnet"
)

// Config is what the daemon is told, whatever the lease source.
type Config struct {
	Version string

	Ifaces     []string
	IfaceRegex []string
	CanReach   string
	PublicIP   netip.Addr // --public-ip; invalid when not given
	PublicIPv6 netip.Addr

	SubnetFile      string
	ReconcilePeriod time.Duration

	IPMasq             bool
	FullyRandomDisable bool
	ForwardRules       bool
	BlackholeRoute     bool
	IPTablesResync     time.Duration

	// HealthzAddr is the health server's listen address; empty: none.
	HealthzAddr string
}

// Deps are the daemon's real (or, in tests, fake) parts.
type Deps struct {
	// Connect opens the lease source. The daemon calls it once the health
	// server answers (reaching etcd may take long), and close once every
	// part that uses the source has stopped.
	Connect func(ctx context.Context) (sm subnet.Manager, close func(), err error)
	// ConfigSource names where the network config lives, for the log
	// lines about its changes ("etcd", "/etc/kube-flannel/net-conf.json").
	ConfigSource string
	// Source names the lease source in the STATUS= line systemd shows
	// while the daemon waits for it ("etcd at http://10.0.0.1:2379");
	// empty means "etcd".
	Source   string
	Backends backend.Registry
	Metrics  *metrics.Metrics
	Log      *slog.Logger
	// NewFirewall builds the traffic rules keeper; nil means firewall.New.
	NewFirewall func(ctx context.Context, mode firewall.Mode, o firewall.Options) (firewall.Manager, error)
	// Notify tells the service manager about our state; nil means
	// sdnotify.Notify ($NOTIFY_SOCKET).
	Notify func(state string) (bool, error)
	// SelectInterface picks the underlay interface; nil means ip.Select.
	SelectInterface func(ip.SelectOptions) (ip.Selection, error)
	// NewTicker is the clock of the periodic data-plane pass: a channel
	// that fires every d, and its stop. Nil means time.NewTicker.
	NewTicker func(d time.Duration) (<-chan time.Time, func())
}

// Run is the daemon: it returns nil on a clean shutdown (the lease, the
// data plane and the rules stay in place) and an error for fatal problems.
func Run(ctx context.Context, c Config, d Deps) error {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Metrics == nil {
		d.Metrics = metrics.New()
	}
	if d.NewFirewall == nil {
		d.NewFirewall = firewall.New
	}
	if d.Notify == nil {
		d.Notify = sdnotify.Notify
	}
	if d.SelectInterface == nil {
		d.SelectInterface = ip.Select
	}
	if d.ConfigSource == "" {
		d.ConfigSource = "etcd"
	}
	if d.Source == "" {
		d.Source = "etcd"
	}
	if d.NewTicker == nil {
		d.NewTicker = func(p time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(p)
			return t.C, t.Stop
		}
	}
	log, mx := d.Log, d.Metrics
	mx.SetBuildInfo(c.Version, "")
	leanGC()

	var hs *health.Server
	if c.HealthzAddr != "" {
		var err error
		if hs, err = health.Listen(c.HealthzAddr, map[string]http.Handler{"/metrics": mx.Handler()}); err != nil {
			return err
		}
		log.Info("Start healthz server on " + hs.Addr().String())
		// The health server outlives everything else: /healthz answers
		// while the other parts shut down.
		hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan struct{})
		go func() { hs.Serve(hctx, log); close(done) }()
		defer func() { hcancel(); <-done }()
	}

	sendStatus(d, waitingForSource(d.Source))
	sm, closeSource, err := d.Connect(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // cancelled while waiting for the source: a clean exit
		}
		return err
	}
	defer closeSource()
	log.Info("Created subnet manager: " + sm.Name())

	n := &node{c: c, d: d, sm: sm, hs: hs, log: log, mx: mx}
	err = n.run(ctx)
	switch {
	case err == nil || errors.Is(err, errCancelled):
		return nil
	case ctx.Err() != nil:
		// SIGTERM: what failed on the way out (a backend waiting for
		// the kernel, a start-up step) failed because of it. A signal
		// is a clean exit, status 0, as upstream's.
		log.Info("Exiting cleanly; interrupted by the shutdown", "err", err)
		return nil
	}
	return err
}

// errCancelled means ctx ended while the daemon waited for something: a
// clean exit, as upstream's.
var errCancelled = errors.New("cancelled")

// node is one run of the daemon.
type node struct {
	c   Config
	d   Deps
	sm  subnet.Manager
	hs  *health.Server
	log *slog.Logger
	mx  *metrics.Metrics
}

func (n *node) run(ctx context.Context) error {
	c, sm, log, mx, hs := n.c, n.sm, n.log, n.mx, n.hs

	prevEnv, err := subnet.ReadEnvFile(c.SubnetFile)
	switch {
	case subnet.IsNotExist(err):
	case err != nil:
		log.Warn("Ignoring unreadable previous subnet file", "path", c.SubnetFile, "err", err)
	}

	netCfg, rawCfg, err := n.waitForConfig(ctx)
	if err != nil {
		return err
	}
	if netCfg.BackendDefaulted {
		log.Warn(`The network config has no "Backend": using the udp backend, as upstream flannel does; set "Backend": {"Type": "vxlan"} (or host-gw) to choose another`)
	}
	log.Info("Found network config - Backend type: " + netCfg.BackendType)
	n.mx.SetBuildInfo(c.Version, netCfg.BackendType)

	factory, err := n.d.Backends.Lookup(netCfg.BackendType)
	if err != nil {
		return fmt.Errorf("Error fetching backend: %w", err)
	}

	// What the source holds is read once, before the backend prepares its
	// devices: our previous lease's MAC, and in Kubernetes the Node's
	// public-IP annotations, which choose the interface.
	if err := sm.Start(ctx, netCfg); err != nil {
		if ctx.Err() != nil {
			return errCancelled
		}
		return err
	}
	ext, err := n.externalInterface(netCfg)
	if err != nil {
		return err
	}

	be, err := factory(backend.Config{
		EnableIPv4: netCfg.EnableIPv4, EnableIPv6: netCfg.EnableIPv6,
		Network: netCfg.Network, IPv6Network: netCfg.IPv6Network,
		Raw: netCfg.Backend, Ext: ext, Log: log, OnPass: mx.Pass, FullResync: c.ReconcilePeriod,
	})
	if err != nil {
		return fmt.Errorf("create %s backend: %w", netCfg.BackendType, err)
	}

	prevAttrs := sm.Previous(netCfg, subnet.LeaseAttrs{PublicIP: ext.ExtAddr, PublicIPv6: ext.ExtV6Addr})
	attrs, err := be.Prepare(ctx, prevAttrs)
	if err != nil {
		return fmt.Errorf("prepare %s backend: %w", netCfg.BackendType, err)
	}

	n.setStatus("Acquiring a subnet lease")
	lease, err := sm.Acquire(ctx, netCfg, attrs, prevEnv, func(err error) {
		hs.SetReady(false)
		n.setStatus(waitingForLease(err))
	})
	if err != nil {
		if ctx.Err() != nil {
			return errCancelled
		}
		return fmt.Errorf("failed to acquire lease: %w", err)
	}
	mx.SetLeaseExpiry(lease.Expiration)
	nw, err := be.Configure(ctx, lease)
	if err != nil {
		return fmt.Errorf("configure %s backend for %s: %w", netCfg.BackendType, lease, err)
	}
	defer nw.Close()

	fw, err := n.setupFirewall(ctx, netCfg, lease, prevEnv)
	if err != nil {
		return err
	}

	// subnet.env says what this node's pods need: the lease is held (and
	// confirmed by the source, so a stale file never survives), the device
	// exists with its address and MTU, the rules are in. Peers' routes
	// follow in the first pass below, as they do whenever a node joins;
	// READY=1 and /readyz wait for that pass. At 5,000 peers the pass
	// takes about as long again as everything before it, and a kubelet
	// starting pods has no reason to wait for it.
	env := subnet.Env{MTU: nw.MTU(), IPMasq: c.IPMasq}
	if netCfg.EnableIPv4 {
		env.Network, env.Subnet = netCfg.Network, lease.Subnet
	}
	if netCfg.EnableIPv6 {
		env.IPv6Network, env.IPv6Subnet = netCfg.IPv6Network, lease.IPv6Subnet
	}
	if err := subnet.WriteEnvFile(c.SubnetFile, env); err != nil {
		return fmt.Errorf("Failed to write subnet file: %w", err)
	}
	log.Info("Wrote subnet file to " + c.SubnetFile)

	// From here on every long-running part lives in one group: when one
	// fails, all stop, and all have stopped before the deferred closes
	// (backend network, lease source client) run.
	g := newGroup(ctx)
	defer g.Stop()
	peers := sm.Peers()
	g.Go(func(ctx context.Context) error { peers.Run(ctx); return nil })

	dp := newDataPlane(peers, nw, lease, netCfg, mx, log)
	dp.onCount = func(count int) { n.setStatus(peersProgrammed(count)) }
	// Readiness waits for one full reconcile of the starting set, so
	// systemd units ordered after flanneld never start before routes to
	// the existing peers exist.
	for {
		synced, err := dp.full(ctx)
		if synced {
			if err != nil {
				log.Warn("Initial data-plane reconcile had errors; retrying on the next pass", "err", err)
			}
			log.Info("Data plane programmed", "peers", dp.lastCount)
			break
		}
		select {
		case <-g.Done():
			return n.stopped(ctx, g)
		case <-peers.Updated():
		}
	}

	hs.SetReady(true)
	mx.Ready.Set(1)
	log.Info("flannel is ready")
	if _, err := n.d.Notify("READY=1"); err != nil {
		log.Warn("Could not notify systemd", "err", err)
	}
	defer n.d.Notify("STOPPING=1")
	if r, ok := sm.(subnet.ReadyReporter); ok {
		if err := r.Ready(ctx); err != nil && ctx.Err() == nil {
			log.Warn("Could not publish the node's network readiness", "err", err)
		}
	}

	g.Go(func(ctx context.Context) error {
		if err := sm.Keep(ctx, netCfg, lease); err != nil {
			return fmt.Errorf("lease %s: %w", lease, err)
		}
		return nil
	})
	if fw != nil {
		g.Go(func(ctx context.Context) error { fw.Run(ctx); return nil })
	}
	g.Go(func(ctx context.Context) error { WatchConfig(ctx, sm, rawCfg, n.d.ConfigSource, log); return nil })
	if c.BlackholeRoute {
		g.Go(func(ctx context.Context) error { n.keepBlackholes(ctx, lease); return nil })
	}

	tick, stopTicker := n.d.NewTicker(c.ReconcilePeriod)
	defer stopTicker()
	for {
		var err error
		select {
		case <-g.Done():
			return n.stopped(ctx, g)
		case <-peers.Updated():
			err = dp.changed(ctx)
		case <-nw.Changed():
			_, err = dp.full(ctx)
		case <-tick:
			err = dp.periodic(ctx)
		}
		if err != nil && ctx.Err() == nil {
			log.Debug("reconcile pass had errors", "err", err)
		}
	}
}

// stopped is the end of a run whose group stopped: a part's error, or a
// clean shutdown.
func (n *node) stopped(ctx context.Context, g *group) error {
	g.Stop()
	err := g.Err()
	if ctx.Err() == nil {
		return err
	}
	if err != nil {
		// The part failed because the shutdown interrupted it (Keep
		// re-acquiring our lease): not a fault, and SIGTERM exits 0.
		n.log.Info("A part stopped with an error during the shutdown", "err", err)
	}
	n.log.Info("Exiting cleanly; lease, routes and rules stay in place")
	return nil
}

// keepBlackholes adds the blackhole routes for our subnets and re-checks
// them every resync period, as upstream's loop does.
func (n *node) keepBlackholes(ctx context.Context, lease subnet.Lease) {
	check := func() {
		for _, p := range []netip.Prefix{lease.Subnet, lease.IPv6Subnet} {
			if !p.IsValid() {
				continue
			}
			if added, err := firewall.EnsureBlackholeRoute(nil, p); err != nil {
				n.log.Warn("Could not add the blackhole route", "subnet", p, "err", err)
			} else if added {
				n.log.Info("Added blackhole route", "subnet", p)
			}
		}
	}
	check()
	t := time.NewTicker(n.c.IPTablesResync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			check()
		}
	}
}

// gcPercent is flanneld's garbage collection target unless the operator
// sets GOGC: the heap may grow to 1.5 times what is live instead of Go's
// default 2 times. flanneld's live heap is mostly the lease set and the
// kernel state it mirrors (about 8 MB at 5,000 vxlan peers) and it
// allocates little between changes, so collecting earlier costs a few
// milliseconds of CPU per burst and keeps a node agent's resident memory
// (at 5,000 peers: under 30 MiB) a third lower.
const gcPercent = 50

func leanGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(gcPercent)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// waitForConfig fetches the network config, retrying every second (up to
// 5 s between tries) and logging each distinct problem once.
func (n *node) waitForConfig(ctx context.Context) (*subnet.Config, []byte, error) {
	var last string
	delay := time.Second
	for {
		cfg, raw, err := n.sm.GetConfig(ctx)
		if err == nil {
			return cfg, raw, nil
		}
		if ctx.Err() != nil {
			return nil, nil, errCancelled
		}
		if subnet.IsPermanent(err) {
			return nil, nil, fmt.Errorf("Couldn't fetch network config: %w", err)
		}
		if msg := err.Error(); msg != last {
			n.log.Error("Couldn't fetch network config: " + msg)
			n.setStatus("Waiting for the network config from " + n.d.Source + ": " + msg)
			last = msg
		}
		if !sleepCtx(ctx, delay) {
			return nil, nil, errCancelled
		}
		if delay < 5*time.Second {
			delay += time.Second
		}
	}
}

// configPoll is how often the config is read from a source that cannot
// watch it (a file in Kubernetes, etcd's v2 store); tests shorten it.
var configPoll = 5 * time.Second

// WatchConfig logs, once per change, that the network config differs from
// running, the one the daemon runs with. The daemon keeps forwarding on
// the old config: switching a live overlay is the operator's decision.
// A source that can watch the config (subnet.ConfigWatcher: etcd v3) is
// followed, at no cost to it while nothing changes; any other is read
// every 5 s. source names where the config lives in the log lines ("etcd",
// a file). It returns when ctx ends. The fleet benchmark (bench/suite)
// runs it for its simulated nodes, as the daemon does.
func WatchConfig(ctx context.Context, sm subnet.Manager, running []byte, source string, log *slog.Logger) {
	// The texts name etcd, as upstream's operators know them; another
	// source names itself instead.
	say := func(msg string) string { return strings.Replace(msg, "in etcd", "in "+source, 1) }
	last := string(running)
	report := func(raw []byte, err error) {
		if raw == nil || string(raw) == last {
			return
		}
		last = string(raw)
		switch {
		case err != nil:
			log.Error(say("The network config in etcd changed and is invalid; still running on the previous config"), "err", err)
		case string(raw) == string(running):
			log.Info(say("The network config in etcd is back to the running config"))
		default:
			log.Warn(say("The network config in etcd changed; still running on the previous config. Restart flanneld on every node to apply it"),
				"changed", subnet.ConfigChanges(running, raw), "running", string(running), "new", string(raw))
		}
	}
	if w, ok := sm.(subnet.ConfigWatcher); ok {
		err := w.WatchConfig(ctx, running, report)
		if err == nil || ctx.Err() != nil {
			return
		}
		if !errors.Is(err, subnet.ErrConfigNotWatched) {
			log.Warn("Cannot watch the network config; reading it every "+configPoll.String()+" instead", "err", err)
		}
	}
	for sleepCtx(ctx, configPoll) {
		_, raw, err := sm.GetConfig(ctx)
		report(raw, err)
	}
}

// externalInterface picks the underlay interface. The lease source may
// override --public-ip(v6) (Kubernetes: the node-public-ip annotations).
func (n *node) externalInterface(netCfg *subnet.Config) (backend.ExternalInterface, error) {
	c, log := n.c, n.log
	o := ip.SelectOptions{Ifaces: c.Ifaces, Regexes: c.IfaceRegex, CanReach: c.CanReach, V4: netCfg.EnableIPv4, V6: netCfg.EnableIPv6,
		PublicIP: c.PublicIP, PublicIPv6: c.PublicIPv6}
	if v4, v6 := n.sm.PublicIPs(); v4.IsValid() || v6.IsValid() {
		if v4.IsValid() {
			o.PublicIP = v4
		}
		if v6.IsValid() {
			o.PublicIPv6 = v6
		}
	}
	sel, err := n.d.SelectInterface(o)
	if err != nil {
		return backend.ExternalInterface{}, err
	}
	ext := backend.ExternalInterface{
		Name: sel.Iface.Name, Index: sel.Iface.Index, MTU: sel.Iface.MTU,
		IfaceAddr: sel.V4, IfaceV6Addr: sel.V6, ExtAddr: sel.V4, ExtV6Addr: sel.V6,
	}
	addr := sel.V4
	if !addr.IsValid() {
		addr = sel.V6
	}
	log.Info(fmt.Sprintf("Using interface with name %s and address %s", ext.Name, addr))
	if netCfg.EnableIPv4 {
		if o.PublicIP.IsValid() {
			ext.ExtAddr = o.PublicIP
			log.Info(fmt.Sprintf("Using %s as external address", ext.ExtAddr))
		} else {
			log.Info(fmt.Sprintf("Defaulting external address to interface address (%s)", ext.ExtAddr))
		}
	}
	if netCfg.EnableIPv6 {
		if o.PublicIPv6.IsValid() {
			ext.ExtV6Addr = o.PublicIPv6
			log.Info(fmt.Sprintf("Using %s as external IPv6 address", ext.ExtV6Addr))
		} else {
			log.Info(fmt.Sprintf("Defaulting external v6 address to interface address (%s)", ext.ExtV6Addr))
		}
	}
	return ext, nil
}

// setupFirewall cleans up the other mode's rules and installs ours. It
// returns nil when there is nothing to keep.
func (n *node) setupFirewall(ctx context.Context, netCfg *subnet.Config, lease subnet.Lease, prev subnet.Env) (firewall.Manager, error) {
	c, log := n.c, n.log
	mode := firewall.ModeIPTables
	if netCfg.EnableNFTables {
		mode = firewall.ModeNFTables
	}
	want := firewall.Config{Masq: c.IPMasq, Forward: c.ForwardRules, RandomFully: !c.FullyRandomDisable}
	if netCfg.EnableIPv4 {
		want.Network, want.Subnet = netCfg.Network, lease.Subnet
	}
	if netCfg.EnableIPv6 {
		want.IPv6Network, want.IPv6Subnet = netCfg.IPv6Network, lease.IPv6Subnet
	}
	fw, err := n.d.NewFirewall(ctx, mode, firewall.Options{Logger: log, Resync: c.IPTablesResync, OnRepair: n.mx.FirewallRepair,
		Generation: firewall.NFTablesGeneration})
	if err != nil {
		if !c.IPMasq && !c.ForwardRules {
			log.Warn("No packet filter tools found; running without traffic rules", "err", err)
			return nil, nil
		}
		return nil, fmt.Errorf("traffic rules (%s mode): %w", mode, err)
	}
	log.Info("Cleaning-up unused traffic manager rules")
	if err := fw.CleanupOther(ctx); err != nil {
		log.Warn("Could not remove the other mode's rules", "err", err)
	}
	if prev.Network.IsValid() && (prev.Network != want.Network || prev.Subnet != want.Subnet) {
		log.Info(fmt.Sprintf("Current network or subnet (%v, %v) is not equal to previous one (%v, %v), trying to recycle old iptables rules",
			want.Network, want.Subnet, prev.Network, prev.Subnet))
		old := want
		old.Network, old.Subnet, old.IPv6Network, old.IPv6Subnet = prev.Network, prev.Subnet, prev.IPv6Network, prev.IPv6Subnet
		if err := fw.CleanupPrevious(ctx, old); err != nil {
			log.Warn("Could not remove the previous run's rules", "err", err)
		}
	}
	log.Info(fmt.Sprintf("Starting flannel in %s mode...", mode))
	if err := fw.Apply(ctx, want); err != nil {
		return nil, fmt.Errorf("install traffic rules: %w", err)
	}
	return fw, nil
}
