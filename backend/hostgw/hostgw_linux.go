package hostgw

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/flannelng/flannel/backend"
	"github.com/flannelng/flannel/backend/kernel"
	"github.com/flannelng/flannel/subnet"
)

type hostgwBackend struct {
	cfg backend.Config
	log *slog.Logger
}

// New builds the host-gw backend. It refuses a public IP that is not the
// external interface's address, as upstream does.
func New(cfg backend.Config) (backend.Backend, error) {
	if err := checkConfig(cfg); err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	return &hostgwBackend{cfg: cfg, log: log.With("backend", BackendType)}, nil
}

// Prepare has no device to set up; it returns the lease attributes.
func (b *hostgwBackend) Prepare(ctx context.Context, prev *subnet.LeaseAttrs) (subnet.LeaseAttrs, error) {
	attrs := subnet.LeaseAttrs{PublicIP: b.cfg.Ext.ExtAddr, BackendType: BackendType}
	if b.cfg.EnableIPv6 {
		attrs.PublicIPv6 = b.cfg.Ext.ExtV6Addr
	}
	return attrs, nil
}

// Configure opens the namespace and starts watching it.
func (b *hostgwBackend) Configure(ctx context.Context, own subnet.Lease) (backend.Network, error) {
	h, err := kernel.Open(b.cfg.NetnsPath)
	if err != nil {
		return nil, err
	}
	var families []int
	var networks []netip.Prefix
	if b.cfg.EnableIPv4 {
		families = append(families, unix.AF_INET)
		networks = append(networks, b.cfg.Network)
	}
	if b.cfg.EnableIPv6 {
		families = append(families, unix.AF_INET6)
		networks = append(networks, b.cfg.IPv6Network)
	}
	rec, err := kernel.NewReconciler(kernel.Config{
		Handle:   h,
		Families: families,
		Networks: networks,
		ExtIndex: b.cfg.Ext.Index,
		Log:      b.log,
		OnPass:   b.cfg.OnPass,

		FullResyncInterval: b.cfg.FullResync,
	})
	if err != nil {
		h.Close()
		return nil, err
	}
	return &network{
		h:   h,
		rec: rec,
		mtu: b.cfg.Ext.MTU,
		log: b.log,
		plan: planner{
			v4: b.cfg.EnableIPv4, v6: b.cfg.EnableIPv6,
			own4: own.Subnet, own6: own.IPv6Subnet,
			extIndex: b.cfg.Ext.Index,
		},
		skipped: backend.NewSkipLog(b.log),
	}, nil
}

type network struct {
	h    *kernel.Handle
	rec  *kernel.Reconciler
	mtu  int
	log  *slog.Logger
	plan planner

	closeOnce sync.Once
	skipped   *backend.SkipLog // guarded by the Reconciler's pass lock
}

func (n *network) MTU() int                 { return n.mtu }
func (n *network) Changed() <-chan struct{} { return n.rec.Changed() }

// Resync makes the next pass a full one (backend.Resyncer).
func (n *network) Resync() { n.rec.Resync() }

var _ backend.Resyncer = (*network)(nil)

// Reconcile programs one route per remote lease.
func (n *network) Reconcile(ctx context.Context, peers []subnet.Lease) error {
	return n.rec.Reconcile(ctx, func(ctx context.Context, full bool) (kernel.State, error) {
		st, skipped := n.plan.state(peers)
		n.skipped.Pass(skipped)
		return st, nil
	})
}

// Update programs the routes of changed leases only (backend.Incremental).
func (n *network) Update(ctx context.Context, gone, came []subnet.Lease) error {
	return n.rec.Update(ctx, func() (kernel.State, kernel.State, error) {
		was, _ := n.plan.state(gone)
		now, skipped := n.plan.state(came)
		n.skipped.Delta(gone, came, skipped)
		return was, now, nil
	})
}

// Close stops watching; routes stay.
func (n *network) Close() error {
	var err error
	n.closeOnce.Do(func() {
		err = n.rec.Close()
		n.h.Close()
	})
	return err
}
