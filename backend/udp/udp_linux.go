package udp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/flannelng/flannel/backend"
	"github.com/flannelng/flannel/backend/kernel"
	"github.com/flannelng/flannel/subnet"
)

// maxLoggedChanges bounds the per-subnet "Subnet added/removed" lines of one
// table update; larger updates (a restart in a big cluster) log a summary.
const maxLoggedChanges = 16

type udpBackend struct {
	cfg  backend.Config
	opts Options
	log  *slog.Logger

	mu    sync.Mutex
	ns    *nsExec
	h     *kernel.Handle
	dev   *device
	relay *relay
}

// New builds the udp backend from the network config's Backend object. It
// refuses IPv6 (upstream's udp backend is IPv4-only) and checks the
// external interface; the kernel is first touched by Prepare.
func New(cfg backend.Config) (backend.Backend, error) {
	if err := checkConfig(cfg); err != nil {
		return nil, err
	}
	opts, err := ParseOptions(cfg.Raw)
	if err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("backend", BackendType)
	b := &udpBackend{
		cfg:  cfg,
		opts: opts,
		log:  log,
		dev:  &device{name: DeviceName, mtu: cfg.Ext.MTU - encapOverhead, network: cfg.Network.Masked()},
	}
	log.Info("udp backend", "port", opts.Port, "device", DeviceName, "mtu", b.dev.mtu)
	return b, nil
}

// Prepare attaches to (or creates) flannel0 and opens the UDP socket, so
// that a port already in use fails before a lease is taken.
func (b *udpBackend) Prepare(ctx context.Context, prev *subnet.LeaseAttrs) (subnet.LeaseAttrs, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.h == nil {
		ns, err := openNS(b.cfg.NetnsPath)
		if err != nil {
			return subnet.LeaseAttrs{}, err
		}
		h, err := kernel.Open(b.cfg.NetnsPath)
		if err != nil {
			ns.close()
			return subnet.LeaseAttrs{}, err
		}
		b.ns, b.h = ns, h
		b.relay = newRelay(b.cfg.Network, b.log)
	}
	if err := b.ensureDevice(); err != nil {
		return subnet.LeaseAttrs{}, err
	}
	if b.relay.conn == nil {
		addr := netip.AddrPortFrom(b.cfg.Ext.IfaceAddr, uint16(b.opts.Port))
		err := b.ns.run(func() error {
			conn, rc, err := listenUDP(addr)
			b.relay.conn, b.relay.rc = conn, rc
			return err
		})
		if err != nil {
			return subnet.LeaseAttrs{}, err
		}
	}
	return leaseAttrs(b.cfg), nil
}

// ensureDevice runs the device check and hands a new descriptor to the
// relay. b.mu must be held.
func (b *udpBackend) ensureDevice() error {
	fresh, err := b.dev.ensure(b.h, b.ns, b.log, b.relay.dev.Load(), b.relay.detach)
	if fresh != nil {
		b.relay.setDevice(fresh)
	}
	return err
}

// Configure puts our address on flannel0, brings it up, starts the relay
// and starts watching the kernel. The route for the overlay network is
// written by the first Reconcile.
func (b *udpBackend) Configure(ctx context.Context, own subnet.Lease) (backend.Network, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.h == nil || b.relay.conn == nil {
		return nil, errors.New("udp backend: Configure called before Prepare")
	}
	if !own.Subnet.IsValid() || !own.Subnet.Addr().Is4() || !b.cfg.Network.Contains(own.Subnet.Addr()) {
		return nil, fmt.Errorf("udp backend: our lease %s has no IPv4 subnet inside the network %s", own, b.cfg.Network)
	}
	b.dev.addr = netip.PrefixFrom(own.Subnet.Masked().Addr(), 32)
	if err := b.ensureDevice(); err != nil {
		return nil, err
	}
	rec, err := kernel.NewReconciler(kernel.Config{
		Handle:   b.h,
		Families: []int{unix.AF_INET},
		Networks: []netip.Prefix{b.cfg.Network.Masked()},
		ExtIndex: b.cfg.Ext.Index,
		Log:      b.log,
		OnPass:   b.cfg.OnPass,
	})
	if err != nil {
		return nil, fmt.Errorf("udp backend: %w", err)
	}
	b.relay.lost = rec.MarkDirty
	b.relay.start()
	return &network{
		b:       b,
		rec:     rec,
		mtu:     b.dev.mtu,
		skipped: map[string]string{},
		devErrs: map[string]string{},
	}, nil
}

type network struct {
	b   *udpBackend
	rec *kernel.Reconciler
	mtu int

	closeOnce sync.Once

	// Guarded by the Reconciler's pass lock (only used inside prepare).
	skipped map[string]string
	devErrs map[string]string
}

func (n *network) MTU() int                 { return n.mtu }
func (n *network) Changed() <-chan struct{} { return n.rec.Changed() }

// Resync makes the next pass a full one (backend.Resyncer).
func (n *network) Resync() { n.rec.Resync() }

var _ backend.Resyncer = (*network)(nil)

// Stats returns the relay's packet counters.
func (n *network) Stats() Stats { return n.b.relay.Stats() }

// Close stops the relay and the kernel subscriptions. flannel0 (persistent),
// its address and the route stay: a restarted daemon re-attaches to them.
func (n *network) Close() error {
	var err error
	n.closeOnce.Do(func() {
		err = n.rec.Close()
		n.b.mu.Lock()
		defer n.b.mu.Unlock()
		n.b.relay.close()
		n.b.h.Close()
		n.b.ns.close()
		n.b.h = nil
	})
	return err
}

// Reconcile swaps in the relay's table for the given remote leases and, on
// full passes, checks flannel0 (recreating it if it was deleted) and the
// route for the overlay network.
func (n *network) Reconcile(ctx context.Context, peers []subnet.Lease) error {
	return n.rec.Reconcile(ctx, func(ctx context.Context, full bool) (kernel.State, error) {
		n.b.mu.Lock()
		defer n.b.mu.Unlock()
		if n.b.h == nil {
			return kernel.State{}, errors.New("udp network is closed")
		}
		n.updateTable(peers)
		var err error
		if full {
			err = n.b.ensureDevice()
			n.logDeviceError(err)
		}
		var st kernel.State
		if d := n.b.dev; d.index > 0 {
			st.Routes = []kernel.Route{{Dst: n.b.cfg.Network.Masked(), LinkIndex: d.index}}
			st.Devices = []kernel.Device{d.kernelDevice()}
		}
		return st, err
	})
}

// updateTable builds the relay's table from the leases and swaps it in if
// it differs from the current one.
func (n *network) updateTable(peers []subnet.Lease) {
	b := n.b
	routes, skipped := planRoutes(peers, b.opts.Port, b.cfg.Ext.ExtAddr)
	n.logSkipped(skipped)
	t := newTable(routes)
	old := b.relay.routes.Load()
	added, removed := old.diff(t)
	if old != nil && len(added) == 0 && len(removed) == 0 {
		return
	}
	b.relay.routes.Store(t)
	if len(added)+len(removed) > maxLoggedChanges {
		b.log.Info("udp relay table updated", "subnets", t.len(), "added_or_changed", len(added), "removed", len(removed))
		return
	}
	for _, r := range added {
		b.log.Info("Subnet added: "+r.Dst.String(), "via", r.NextHop.String())
	}
	for _, p := range removed {
		b.log.Info("Subnet removed: " + p.String())
	}
}

// logSkipped logs each skipped lease once, not on every pass.
func (n *network) logSkipped(skipped map[string]string) {
	for k, why := range skipped {
		if n.skipped[k] != why {
			n.b.log.Info(why)
			n.skipped[k] = why
		}
	}
	for k := range n.skipped {
		if _, still := skipped[k]; !still {
			delete(n.skipped, k)
		}
	}
}

func (n *network) logDeviceError(err error) {
	name := DeviceName
	switch {
	case err == nil && n.devErrs[name] != "":
		n.b.log.Info("TUN device is in order again", "device", name)
		delete(n.devErrs, name)
	case err != nil && n.devErrs[name] != err.Error():
		n.b.log.Error("TUN device check failed; will retry", "device", name, "err", err)
		n.devErrs[name] = err.Error()
	}
}
