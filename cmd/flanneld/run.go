package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/flannelng/flannel/daemon"
	"github.com/flannelng/flannel/pkg/etcdv2"
	"github.com/flannelng/flannel/pkg/metrics"
	"github.com/flannelng/flannel/subnet"
	"github.com/flannelng/flannel/subnet/dual"
	etcdsubnet "github.com/flannelng/flannel/subnet/etcd"
	v2subnet "github.com/flannelng/flannel/subnet/etcdv2"
	"github.com/flannelng/flannel/subnet/kube"
)

// run builds the daemon's real parts from the flags and runs it.
func run(ctx context.Context, c *config, log *slog.Logger) error {
	log.Info("CLI flags config", configAttrs(c)...)
	mx := metrics.New()
	dc := daemon.Config{
		Version: version,
		Ifaces:  c.Ifaces, IfaceRegex: c.IfaceRegex, CanReach: c.CanReach,
		SubnetFile: c.SubnetFile, ReconcilePeriod: c.ReconcilePeriod,
		IPMasq: c.IPMasq, FullyRandomDisable: c.FullyRandomDisable, ForwardRules: c.IPTablesForwardRule,
		BlackholeRoute: c.BlackholeRoute, IPTablesResync: time.Duration(c.IPTablesResync) * time.Second,
	}
	if c.PublicIP != "" {
		dc.PublicIP = netip.MustParseAddr(c.PublicIP) // validated with the flags
	}
	if c.PublicIPv6 != "" {
		dc.PublicIPv6 = netip.MustParseAddr(c.PublicIPv6)
	}
	if c.HealthzPort > 0 {
		dc.HealthzAddr = net.JoinHostPort(c.HealthzIP, strconv.Itoa(c.HealthzPort))
	}
	deps := daemon.Deps{Backends: backends(), Metrics: mx, Log: log}
	if c.KubeSubnetMgr {
		log.Info("Starting flanneld", "version", version, "mode", "kube", "netConfig", c.NetConfigPath, "subnetFile", c.SubnetFile)
		deps.ConfigSource = c.NetConfigPath
		deps.Source = "the Kubernetes API server"
		if c.KubeAPIURL != "" {
			deps.Source += " at " + c.KubeAPIURL
		}
		deps.Connect = func(ctx context.Context) (subnet.Manager, func(), error) {
			sm, err := kube.New(ctx, kube.Options{
				KubeconfigFile: c.KubeconfigFile, APIURL: c.KubeAPIURL, AnnotationPrefix: c.KubeAnnotationPrefix,
				NetConfigPath: c.NetConfigPath, SetNodeNetworkUnavailable: c.SetNodeNetUnavail, Log: log,
			})
			if err != nil {
				return nil, nil, fmt.Errorf("Failed to create SubnetManager: %w", err)
			}
			return sm, sm.Close, nil
		}
		return daemon.Run(ctx, dc, deps)
	}
	log.Info("Starting flanneld", "version", version, "etcd", c.Etcd.String(), "prefix", c.Prefix, "etcdAPI", c.EtcdAPI, "subnetFile", c.SubnetFile)
	deps.Source = "etcd at " + strings.Join(c.Etcd.Endpoints, ",")
	deps.Connect = func(ctx context.Context) (subnet.Manager, func(), error) { return etcdSource(ctx, c, log, mx) }
	return daemon.Run(ctx, dc, deps)
}

// etcdSource builds the lease source --etcd-api names: the v3 keyspace,
// flannel v0.11's v2 store, auto (v3, else v2 when only it has the
// config) or both (the migration mode).
func etcdSource(ctx context.Context, c *config, log *slog.Logger, mx *metrics.Metrics) (subnet.Manager, func(), error) {
	v2opts := func() (*etcdv2.Client, v2subnet.Options, error) {
		tc, err := c.Etcd.TLSConfig()
		if err != nil {
			return nil, v2subnet.Options{}, err
		}
		cli, err := etcdv2.New(etcdv2.Config{Endpoints: c.Etcd.Endpoints, TLS: tc, Username: c.Etcd.Username, Password: c.Etcd.Password})
		if err != nil {
			return nil, v2subnet.Options{}, fmt.Errorf("etcd v2 client: %w", err)
		}
		return cli, v2subnet.Options{
			Prefix: c.Prefix, TTL: c.LeaseTTL, RenewMargin: time.Duration(c.RenewMargin) * time.Minute, Log: log,
			OnRequest: mx.EtcdRequest, OnWatchRestart: mx.WatchRestart, OnLease: func(l subnet.Lease) { mx.SetLeaseExpiry(l.Expiration) },
		}, nil
	}
	if c.EtcdAPI == "v2" {
		// A v0.11 node speaks only v2; so does this mode, which then also
		// works against a v2 user that has no v3 counterpart.
		cli, o, err := v2opts()
		if err != nil {
			return nil, nil, err
		}
		return v2subnet.New(cli, o), cli.Close, nil
	}
	cli, err := etcdsubnet.Dial(ctx, c.Etcd, log)
	if err != nil {
		return nil, nil, err
	}
	v3 := etcdsubnet.New(cli, etcdsubnet.Options{
		Prefix: c.Prefix, TTL: c.LeaseTTL, RenewMargin: time.Duration(c.RenewMargin) * time.Minute, Log: log,
		OnRequest: mx.EtcdRequest, OnWatchRestart: mx.WatchRestart, OnLease: func(l subnet.Lease) { mx.SetLeaseExpiry(l.Expiration) },
		Diagnose: c.Etcd.Diagnose,
	})
	if c.EtcdAPI == "v3" {
		return v3, func() { cli.Close() }, nil
	}
	cli2, o, err := v2opts()
	if err != nil {
		cli.Close()
		return nil, nil, err
	}
	closeBoth := func() { cli2.Close(); cli.Close() }
	if c.EtcdAPI == "auto" {
		return dual.NewAuto(v3, v2subnet.New(cli2, o), log), closeBoth, nil
	}
	// both: our v2 copy carries v0.28's bytes ("PublicIPv6":null marks a
	// node that also holds v3), and v2 allocation avoids v3's subnets.
	b := dual.NewBoth(v3, nil, log)
	o.Value = v2subnet.FormatCurrent
	o.Avoid = b.V3Others
	b.SetV2(v2subnet.New(cli2, o))
	return b, closeBoth, nil
}
