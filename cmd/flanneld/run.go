package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/flannelng/flannel/daemon"
	"github.com/flannelng/flannel/pkg/metrics"
	"github.com/flannelng/flannel/subnet"
	etcdsubnet "github.com/flannelng/flannel/subnet/etcd"
	"github.com/flannelng/flannel/subnet/kube"
)

// run builds the daemon's real parts from the flags and runs it.
func run(ctx context.Context, c *config, log *slog.Logger) error {
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
	log.Info("Starting flanneld", "version", version, "etcd", c.Etcd.String(), "prefix", c.Prefix, "subnetFile", c.SubnetFile)
	deps.Connect = func(ctx context.Context) (subnet.Manager, func(), error) {
		cli, err := etcdsubnet.Dial(ctx, c.Etcd, log)
		if err != nil {
			return nil, nil, err
		}
		sm := etcdsubnet.New(cli, etcdsubnet.Options{
			Prefix: c.Prefix, TTL: c.LeaseTTL, RenewMargin: time.Duration(c.RenewMargin) * time.Minute, Log: log,
			OnRequest: mx.EtcdRequest, OnWatchRestart: mx.WatchRestart, OnLease: func(l subnet.Lease) { mx.SetLeaseExpiry(l.Expiration) },
			Diagnose: c.Etcd.Diagnose,
		})
		return sm, func() { cli.Close() }, nil
	}
	return daemon.Run(ctx, dc, deps)
}
