package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/flannelng/flannel/backend"
	"github.com/flannelng/flannel/ip"
	"github.com/flannelng/flannel/pkg/firewall"
	"github.com/flannelng/flannel/pkg/health"
	"github.com/flannelng/flannel/pkg/metrics"
	"github.com/flannelng/flannel/pkg/sdnotify"
	"github.com/flannelng/flannel/subnet"
	etcdsubnet "github.com/flannelng/flannel/subnet/etcd"
)

// run is the daemon: it returns nil on a clean shutdown (the lease, the
// data plane and the rules stay in place) and an error for fatal problems.
func run(ctx context.Context, c *config, log *slog.Logger) error {
	log.Info("Starting flanneld", "version", version, "etcd", c.Etcd.String(), "prefix", c.Prefix, "subnetFile", c.SubnetFile)
	leanGC()

	mx := metrics.New()
	var hs *health.Server
	if c.HealthzPort > 0 {
		addr := net.JoinHostPort(c.HealthzIP, strconv.Itoa(c.HealthzPort))
		var err error
		if hs, err = health.Listen(addr, map[string]http.Handler{"/metrics": mx.Handler()}); err != nil {
			return err
		}
		log.Info("Start healthz server on " + hs.Addr().String())
		hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
		done := make(chan struct{})
		go func() { hs.Serve(hctx, log); close(done) }()
		defer func() { hcancel(); <-done }()
	}

	cli, err := etcdsubnet.Dial(ctx, c.Etcd, log)
	if err != nil {
		if ctx.Err() != nil {
			return nil // cancelled while waiting for etcd: a clean exit
		}
		return err
	}
	defer cli.Close()
	sm := etcdsubnet.New(cli, etcdsubnet.Options{
		Prefix: c.Prefix, TTL: c.LeaseTTL, RenewMargin: time.Duration(c.RenewMargin) * time.Minute, Log: log,
		OnRequest: mx.EtcdRequest, OnWatchRestart: mx.WatchRestart, OnLease: func(l subnet.Lease) { setExpiry(mx, l) },
		Diagnose: c.Etcd.Diagnose,
	})

	prevEnv, err := subnet.ReadEnvFile(c.SubnetFile)
	switch {
	case subnet.IsNotExist(err):
	case err != nil:
		log.Warn("Ignoring unreadable previous subnet file", "path", c.SubnetFile, "err", err)
	}

	netCfg, rawCfg, err := waitForConfig(ctx, sm, log)
	if err != nil {
		return nil // cancelled while waiting: a clean exit, as upstream
	}
	if netCfg.BackendDefaulted {
		log.Warn(`The network config has no "Backend": using the udp backend, as upstream flannel does; set "Backend": {"Type": "vxlan"} (or host-gw) to choose another`)
	}
	log.Info("Found network config - Backend type: " + netCfg.BackendType)

	registry := backends()
	factory, err := registry.Lookup(netCfg.BackendType)
	if err != nil {
		return fmt.Errorf("Error fetching backend: %w", err)
	}

	ext, err := externalInterface(c, netCfg, log)
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

	// One listing serves three readers: our lease as etcd last stored it
	// (a vxlan device that must be recreated gets the MAC peers already
	// have), the allocator's first attempt and the watcher's starting set.
	var listing etcdsubnet.Listing
	for {
		if listing, err = sm.Snapshot(ctx); err == nil {
			break
		}
		if !sleepCtx(ctx, 2*time.Second) {
			return nil
		}
	}
	var prevAttrs *subnet.LeaseAttrs
	probe := subnet.LeaseAttrs{PublicIP: ext.ExtAddr, PublicIPv6: ext.ExtV6Addr}
	if own := etcdsubnet.FindOwn(listing.Leases, netCfg, probe); own != nil {
		a := own.Attrs
		prevAttrs = &a
	}
	attrs, err := be.Prepare(ctx, prevAttrs)
	if err != nil {
		return fmt.Errorf("prepare %s backend: %w", netCfg.BackendType, err)
	}

	lease, err := sm.AcquireFrom(ctx, listing, netCfg, attrs, prevEnv, func(error) { hs.SetReady(false) })
	if err != nil {
		return nil // cancelled
	}
	setExpiry(mx, lease)
	nw, err := be.Configure(ctx, lease)
	if err != nil {
		return fmt.Errorf("configure %s backend for %s: %w", netCfg.BackendType, lease, err)
	}
	defer nw.Close()

	fw, err := setupFirewall(ctx, c, netCfg, lease, prevEnv, log, mx)
	if err != nil {
		return err
	}

	// subnet.env says what this node's pods need: the lease is held (and
	// checked against etcd, so a stale file never survives), the device
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

	watcher := sm.NewWatcherFrom(listing)
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go watcher.Run(wctx)

	dp := newDataPlane(watcher, nw, lease, netCfg, mx, log)
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
		case <-ctx.Done():
			return nil
		case <-watcher.Updated():
		}
	}

	hs.SetReady(true)
	mx.Ready.Set(1)
	log.Info("flannel is ready")
	if _, err := sdnotify.Notify("READY=1"); err != nil {
		log.Warn("Could not notify systemd", "err", err)
	}
	defer sdnotify.Notify("STOPPING=1")

	keepErr := make(chan error, 1)
	go func() { keepErr <- sm.Keep(ctx, netCfg, lease) }()
	if fw != nil {
		go fw.Run(ctx)
	}
	go watchConfig(ctx, sm, rawCfg, log)

	blackholes := func() {}
	if c.BlackholeRoute {
		// Re-checked every resync period, as upstream's loop does.
		blackholes = func() {
			for _, p := range []netip.Prefix{lease.Subnet, lease.IPv6Subnet} {
				if !p.IsValid() {
					continue
				}
				if added, err := firewall.EnsureBlackholeRoute(nil, p); err != nil {
					log.Warn("Could not add the blackhole route", "subnet", p, "err", err)
				} else if added {
					log.Info("Added blackhole route", "subnet", p)
				}
			}
		}
		blackholes()
		go func() {
			t := time.NewTicker(time.Duration(c.IPTablesResync) * time.Second)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					blackholes()
				}
			}
		}()
	}

	ticker := time.NewTicker(c.ReconcilePeriod)
	defer ticker.Stop()
	for {
		var err error
		select {
		case <-ctx.Done():
			log.Info("Exiting cleanly; lease, routes and rules stay in place")
			return nil
		case err := <-keepErr:
			if err != nil {
				return fmt.Errorf("lease %s: %w", lease, err)
			}
			return nil
		case <-watcher.Updated():
			err = dp.changed(ctx)
		case <-nw.Changed():
			_, err = dp.full(ctx)
		case <-ticker.C:
			_, err = dp.full(ctx)
		}
		if err != nil && ctx.Err() == nil {
			log.Debug("reconcile pass had errors", "err", err)
		}
	}
}

// setExpiry publishes our lease's expiry (0 for a reservation).
func setExpiry(mx *metrics.Metrics, l subnet.Lease) {
	if l.IsReservation() {
		mx.LeaseExpiry.Set(0)
		return
	}
	mx.LeaseExpiry.Set(float64(l.Expiration.Unix()))
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
func waitForConfig(ctx context.Context, sm *etcdsubnet.Manager, log *slog.Logger) (*subnet.Config, []byte, error) {
	var last string
	delay := time.Second
	for {
		cfg, raw, err := sm.GetConfig(ctx)
		if err == nil {
			return cfg, raw, nil
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		if msg := err.Error(); msg != last {
			log.Error("Couldn't fetch network config: " + msg)
			last = msg
		}
		if !sleepCtx(ctx, delay) {
			return nil, nil, ctx.Err()
		}
		if delay < 5*time.Second {
			delay += time.Second
		}
	}
}

// watchConfig logs, once per change, that the network config in etcd
// differs from the one the daemon runs with. The daemon keeps forwarding on
// the old config: switching a live overlay is the operator's decision.
func watchConfig(ctx context.Context, sm *etcdsubnet.Manager, running []byte, log *slog.Logger) {
	last := string(running)
	for sleepCtx(ctx, 5*time.Second) {
		_, raw, err := sm.GetConfig(ctx)
		if raw == nil || string(raw) == last {
			continue
		}
		last = string(raw)
		if err != nil {
			log.Error("The network config in etcd changed and is invalid; still running on the previous config", "err", err)
			continue
		}
		if string(raw) == string(running) {
			log.Info("The network config in etcd is back to the running config")
			continue
		}
		log.Warn("The network config in etcd changed; still running on the previous config. Restart flanneld on every node to apply it",
			"changed", configChanges(running, raw), "running", string(running), "new", string(raw))
	}
}

func externalInterface(c *config, netCfg *subnet.Config, log *slog.Logger) (backend.ExternalInterface, error) {
	o := ip.SelectOptions{Ifaces: c.Ifaces, Regexes: c.IfaceRegex, CanReach: c.CanReach, V4: netCfg.EnableIPv4, V6: netCfg.EnableIPv6}
	if c.PublicIP != "" {
		o.PublicIP = netip.MustParseAddr(c.PublicIP) // validated with the flags
	}
	if c.PublicIPv6 != "" {
		o.PublicIPv6 = netip.MustParseAddr(c.PublicIPv6)
	}
	sel, err := ip.Select(o)
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
func setupFirewall(ctx context.Context, c *config, netCfg *subnet.Config, lease subnet.Lease, prev subnet.Env, log *slog.Logger, mx *metrics.Metrics) (firewall.Manager, error) {
	mode := firewall.ModeIPTables
	if netCfg.EnableNFTables {
		mode = firewall.ModeNFTables
	}
	want := firewall.Config{Masq: c.IPMasq, Forward: c.IPTablesForwardRule, RandomFully: !c.FullyRandomDisable}
	if netCfg.EnableIPv4 {
		want.Network, want.Subnet = netCfg.Network, lease.Subnet
	}
	if netCfg.EnableIPv6 {
		want.IPv6Network, want.IPv6Subnet = netCfg.IPv6Network, lease.IPv6Subnet
	}
	fw, err := firewall.New(ctx, mode, firewall.Options{Logger: log, Resync: time.Duration(c.IPTablesResync) * time.Second, OnRepair: mx.FirewallRepair,
		Generation: firewall.NFTablesGeneration})
	if err != nil {
		if !c.IPMasq && !c.IPTablesForwardRule {
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
