package ipip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/flannelng/flannel/backend"
	"github.com/flannelng/flannel/backend/kernel"
	"github.com/flannelng/flannel/subnet"
)

type ipipBackend struct {
	cfg  backend.Config
	opts Options
	log  *slog.Logger

	mu  sync.Mutex // guards h and dev
	h   *kernel.Handle
	dev *device
}

// New builds the ipip backend. IPv4 only.
func New(cfg backend.Config) (backend.Backend, error) {
	opts, err := ParseOptions(cfg.Raw)
	if err != nil {
		return nil, err
	}
	if err := checkConfig(cfg); err != nil {
		return nil, err
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("backend", BackendType)
	log.Info(fmt.Sprintf("IPIP config: DirectRouting=%v", opts.DirectRouting))
	return &ipipBackend{cfg: cfg, opts: opts, log: log, dev: &device{
		local: cfg.Ext.IfaceAddr, mtu: cfg.Ext.MTU - Overhead, network: cfg.Network,
	}}, nil
}

// Prepare creates (or adopts) flannel.ipip before our lease exists, so a
// kernel without ipip fails the start before anything is written. A device
// this call created is deleted again if the rest of Prepare fails.
func (b *ipipBackend) Prepare(ctx context.Context, prev *subnet.LeaseAttrs) (attrs subnet.LeaseAttrs, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.h == nil {
		h, err := kernel.Open(b.cfg.NetnsPath)
		if err != nil {
			return subnet.LeaseAttrs{}, err
		}
		b.h = h
	}
	success := false
	defer func() {
		if !success {
			b.h.Close()
			b.h = nil
		}
	}()
	created, err := b.dev.ensure(b.h, b.log)
	if err != nil {
		if created {
			if rerr := b.dev.remove(b.h); rerr != nil {
				b.log.Warn("could not remove the device after a failed start", "device", DeviceName, "err", rerr)
			}
		}
		return subnet.LeaseAttrs{}, err
	}
	success = true
	return subnet.LeaseAttrs{PublicIP: b.cfg.Ext.ExtAddr, BackendType: BackendType}, nil
}

// Configure puts our address on the device, brings it up and starts
// watching the kernel.
func (b *ipipBackend) Configure(ctx context.Context, own subnet.Lease) (backend.Network, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.h == nil {
		return nil, errors.New("ipip backend: Configure called before Prepare")
	}
	if !own.Subnet.IsValid() {
		return nil, fmt.Errorf("ipip backend: our lease %s has no IPv4 subnet", own)
	}
	b.dev.addr = netip.PrefixFrom(own.Subnet.Masked().Addr(), 32)
	if _, err := b.dev.ensure(b.h, b.log); err != nil {
		return nil, err
	}
	rec, err := kernel.NewReconciler(kernel.Config{
		Handle:   b.h,
		Families: []int{unix.AF_INET},
		Networks: []netip.Prefix{b.cfg.Network},
		ExtIndex: b.cfg.Ext.Index,
		Log:      b.log,
		OnPass:   b.cfg.OnPass,

		FullResyncInterval: b.cfg.FullResync,
	})
	if err != nil {
		return nil, fmt.Errorf("ipip backend: %w", err)
	}
	return &network{
		b:       b,
		rec:     rec,
		own:     own,
		direct:  map[netip.Addr]directInfo{},
		skipped: backend.NewSkipLog(b.log),
	}, nil
}

type directInfo struct {
	link int
	ok   bool
}

type network struct {
	b      *ipipBackend
	rec    *kernel.Reconciler
	own    subnet.Lease
	closed atomic.Bool

	// Used inside passes only (the Reconciler's pass lock).
	direct     map[netip.Addr]directInfo
	lastDirect map[netip.Addr]bool
	skipped    *backend.SkipLog
	devErr     string
}

func (n *network) MTU() int                 { return n.b.dev.mtu }
func (n *network) Changed() <-chan struct{} { return n.rec.Changed() }

// Resync makes the next pass a full one (backend.Resyncer).
func (n *network) Resync() { n.rec.Resync() }

var _ backend.Resyncer = (*network)(nil)
var _ backend.Incremental = (*network)(nil)

// Reconcile programs one route per remote ipip lease. A full pass also
// repairs the device (recreated if deleted, MTU, address, up) and asks
// the kernel again which peers are directly reachable.
func (n *network) Reconcile(ctx context.Context, peers []subnet.Lease) error {
	return n.rec.Reconcile(ctx, func(ctx context.Context, full bool) (kernel.State, error) {
		n.b.mu.Lock()
		defer n.b.mu.Unlock()
		if n.b.h == nil {
			return kernel.State{}, errors.New("ipip network is closed")
		}
		var devErr error
		if full {
			_, devErr = n.b.dev.ensure(n.b.h, n.b.log)
			n.logDeviceError(devErr)
			clear(n.direct)
		}
		st, skipped := n.planner().state(peers)
		n.skipped.Pass(skipped)
		n.pruneDirect(peers)
		if n.b.dev.index > 0 {
			st.Devices = append(st.Devices, n.b.dev.kernelDevice())
		}
		return st, devErr
	})
}

// Update programs the routes of changed leases only (backend.Incremental).
func (n *network) Update(ctx context.Context, gone, came []subnet.Lease) error {
	return n.rec.Update(ctx, func() (kernel.State, kernel.State, error) {
		n.b.mu.Lock()
		defer n.b.mu.Unlock()
		if n.b.h == nil {
			return kernel.State{}, kernel.State{}, errors.New("ipip network is closed")
		}
		p := n.planner()
		was, _ := p.state(gone)
		now, skipped := p.state(came)
		n.skipped.Delta(gone, came, skipped)
		return was, now, nil
	})
}

func (n *network) planner() planner {
	return planner{own: n.own.Subnet, devIndex: n.b.dev.index, directRouting: n.b.opts.DirectRouting, direct: n.isDirect}
}

// isDirect answers DirectRouting's question as upstream does: the peer is
// directly reachable when the kernel's route to it is a single route
// without gateway. A RouteGet error means the tunnel.
func (n *network) isDirect(addr netip.Addr) (int, bool) {
	if d, ok := n.direct[addr]; ok {
		return d.link, d.ok
	}
	routes, err := n.b.h.RouteGet(addr)
	d := directInfo{}
	if err == nil && len(routes) == 1 && routes[0].Gw == nil && routes[0].LinkIndex > 0 {
		d = directInfo{link: routes[0].LinkIndex, ok: true}
	}
	n.direct[addr] = d
	if n.lastDirect == nil {
		n.lastDirect = map[netip.Addr]bool{}
	}
	if last, seen := n.lastDirect[addr]; !seen || last != d.ok {
		if d.ok {
			n.b.log.Info("DirectRouting: peer is on a directly connected network; routing to it without encapsulation", "public_ip", addr.String())
		} else {
			n.b.log.Info("DirectRouting: peer is not directly reachable; using ipip", "public_ip", addr.String())
		}
		n.lastDirect[addr] = d.ok
	}
	return d.link, d.ok
}

// pruneDirect forgets decisions about public IPs no lease has any more.
func (n *network) pruneDirect(peers []subnet.Lease) {
	if len(n.lastDirect) == 0 {
		return
	}
	live := make(map[netip.Addr]bool, len(peers))
	for _, l := range peers {
		live[l.Attrs.PublicIP] = true
	}
	for a := range n.lastDirect {
		if !live[a] {
			delete(n.lastDirect, a)
			delete(n.direct, a)
		}
	}
}

func (n *network) logDeviceError(err error) {
	switch {
	case err == nil && n.devErr != "":
		n.b.log.Info("ipip device is in order again", "device", DeviceName)
		n.devErr = ""
	case err != nil && n.devErr != err.Error():
		n.b.log.Error("ipip device check failed; will retry", "device", DeviceName, "err", err)
		n.devErr = err.Error()
	}
}

// Close stops watching and releases the netlink socket; the device and
// routes stay, so traffic keeps flowing across a restart.
func (n *network) Close() error {
	if n.closed.Swap(true) {
		return nil
	}
	err := n.rec.Close()
	n.b.mu.Lock()
	defer n.b.mu.Unlock()
	if n.b.h != nil {
		n.b.h.Close()
		n.b.h = nil
	}
	return err
}
