package wireguard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/flannelng/flannel/backend"
	"github.com/flannelng/flannel/backend/kernel"
	"github.com/flannelng/flannel/subnet"
)

// PeerCheckInterval is how often the devices' peers are compared with the
// wanted ones. WireGuard sends no netlink notification when a peer is
// added or removed (neither the kernel module nor wireguard-go), so
// polling is the only way to see `wg set … remove`; reading the peers is
// an in-process call (userspace) or one generic netlink dump (kernel).
const PeerCheckInterval = time.Second

type wgBackend struct {
	cfg     backend.Config
	opts    Options
	keyFile string
	log     *slog.Logger

	mu   sync.Mutex
	c    *nsCtx
	impl string // chosen implementation
	key  wgtypes.Key
	// restart says our previous lease advertised this key: peers have
	// sessions with our (previous) device.
	restart bool
	devs    []*device // v4 (or single) first
}

// New builds the wireguard backend. It checks the options; the key file
// and the kernel are first touched by Prepare.
func New(cfg backend.Config) (backend.Backend, error) {
	opts, err := ParseOptions(cfg.Raw)
	if err != nil {
		return nil, err
	}
	keyFile, err := KeyFile(os.LookupEnv)
	if err != nil {
		return nil, err
	}
	return newBackend(cfg, opts, keyFile)
}

func newBackend(cfg backend.Config, opts Options, keyFile string) (*wgBackend, error) {
	if !cfg.EnableIPv4 && !cfg.EnableIPv6 {
		return nil, errors.New("wireguard backend: neither IPv4 nor IPv6 is enabled")
	}
	underlay := opts.MTU
	if underlay == 0 {
		underlay = cfg.Ext.MTU
	}
	mtu := underlay - overhead
	if mtu < minTunnelMTU {
		return nil, fmt.Errorf("wireguard backend: underlay MTU %d of %s too small for wireguard", underlay, cfg.Ext.Name)
	}
	if cfg.EnableIPv6 && mtu < 1280 {
		return nil, fmt.Errorf("wireguard backend: underlay MTU %d leaves %d for the device, below the IPv6 minimum 1280", underlay, mtu)
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("backend", BackendType)
	log.Info(opts.String())
	b := &wgBackend{cfg: cfg, opts: opts, keyFile: keyFile, log: log}
	if opts.single() {
		var nets []netip.Prefix
		if cfg.EnableIPv4 {
			nets = append(nets, cfg.Network)
		}
		if cfg.EnableIPv6 {
			nets = append(nets, cfg.IPv6Network)
		}
		b.devs = []*device{{name: DeviceName, port: opts.ListenPort, mtu: mtu, network: nets}}
		return b, nil
	}
	if cfg.EnableIPv4 {
		b.devs = append(b.devs, &device{name: DeviceName, port: opts.ListenPort, mtu: mtu, network: []netip.Prefix{cfg.Network}})
	}
	if cfg.EnableIPv6 {
		b.devs = append(b.devs, &device{name: DeviceNameV6, port: opts.ListenPortV6, mtu: mtu, network: []netip.Prefix{cfg.IPv6Network}})
	}
	return b, nil
}

// Prepare loads (or makes) the key, creates or adopts the devices and
// returns the lease attributes.
func (b *wgBackend) Prepare(ctx context.Context, prev *subnet.LeaseAttrs) (subnet.LeaseAttrs, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	key, created, err := LoadOrCreateKey(b.keyFile)
	if err != nil {
		return subnet.LeaseAttrs{}, err
	}
	b.key = key
	pub := key.PublicKey()
	if created {
		b.log.Info("generated a new wireguard private key", "key_file", b.keyFile, "public_key", pub.String())
		if prev != nil && prev.BackendType == BackendType {
			if k, _, err := decodeLeaseData(firstData(prev)); err == nil && k != pub {
				b.log.Warn("the key file was missing, so our public key changed; peers switch to the new one when they see our lease", "key_file", b.keyFile, "previous_public_key", k.String())
			}
		}
	} else {
		b.log.Info("using the wireguard private key from the key file", "key_file", b.keyFile, "public_key", pub.String())
	}
	if prev != nil && prev.BackendType == BackendType {
		k, _, err := decodeLeaseData(firstData(prev))
		b.restart = err == nil && k == pub
	}
	if b.c == nil {
		h, err := kernel.Open(b.cfg.NetnsPath)
		if err != nil {
			return subnet.LeaseAttrs{}, err
		}
		ns, err := openNS(b.cfg.NetnsPath)
		if err != nil {
			h.Close()
			return subnet.LeaseAttrs{}, err
		}
		b.c = &nsCtx{h: h, ns: ns, path: b.cfg.NetnsPath, log: b.log}
	}
	if err := b.startDevices(); err != nil {
		return subnet.LeaseAttrs{}, err
	}

	attrs := subnet.LeaseAttrs{PublicIP: b.cfg.Ext.ExtAddr, BackendType: BackendType}
	if b.cfg.EnableIPv4 {
		if attrs.BackendData, err = encodeLeaseData(pub, b.opts.ListenPort); err != nil {
			return subnet.LeaseAttrs{}, err
		}
	}
	if b.cfg.EnableIPv6 {
		attrs.PublicIPv6 = b.cfg.Ext.ExtV6Addr
		// In the single-tunnel modes the one device binds ListenPort on
		// both families; upstream advertises ListenPortV6 there, which
		// nothing listens on. We advertise the port really bound.
		port := b.opts.ListenPortV6
		if b.opts.single() {
			port = b.opts.ListenPort
		}
		if attrs.BackendV6Data, err = encodeLeaseData(pub, port); err != nil {
			return subnet.LeaseAttrs{}, err
		}
	}
	return attrs, nil
}

func firstData(a *subnet.LeaseAttrs) []byte {
	if len(a.BackendData) > 0 && string(a.BackendData) != "null" {
		return a.BackendData
	}
	return a.BackendV6Data
}

// startDevices chooses the implementation (once) and makes the devices
// exist. Call with b.mu held.
func (b *wgBackend) startDevices() error {
	if b.impl == "" {
		switch b.opts.Implementation {
		case ImplKernel, ImplUserspace:
			b.impl = b.opts.Implementation
			b.log.Info("using "+implName(b.impl)+" (Backend.Implementation)", "implementation", b.impl)
		default:
			err := b.devs[0].ensure(b.c, ImplKernel, b.key)
			switch {
			case err == nil:
				b.impl = ImplKernel
				b.log.Info("using "+implName(ImplKernel), "implementation", ImplKernel)
			case errors.Is(err, errNoKernelWG):
				b.impl = ImplUserspace
				b.log.Info("the kernel has no WireGuard (could not create a wireguard link: operation not supported); using "+implName(ImplUserspace), "implementation", ImplUserspace)
			default:
				return err
			}
		}
	}
	for _, d := range b.devs {
		if err := d.ensure(b.c, b.impl, b.key); err != nil {
			return err
		}
	}
	return nil
}

func implName(impl string) string {
	if impl == ImplKernel {
		return "the kernel's WireGuard"
	}
	return "the embedded userspace WireGuard (wireguard-go)"
}

// Configure puts our addresses on the devices, brings them up, and starts
// the route reconciler and the peer check.
func (b *wgBackend) Configure(ctx context.Context, own subnet.Lease) (backend.Network, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.c == nil {
		return nil, errors.New("wireguard backend: Configure called before Prepare")
	}
	if b.cfg.EnableIPv4 && !own.Subnet.IsValid() {
		return nil, errors.New("failed to configure wg interface: IPv4 is enabled but the lease has no IPv4")
	}
	if b.cfg.EnableIPv6 && !own.IPv6Subnet.IsValid() {
		return nil, errors.New("failed to configure wg interface: IPv6 is enabled but the lease has no IPv6")
	}
	var a4, a6 netip.Prefix
	if b.cfg.EnableIPv4 {
		a4 = netip.PrefixFrom(own.Subnet.Masked().Addr(), 32)
	}
	if b.cfg.EnableIPv6 {
		a6 = netip.PrefixFrom(own.IPv6Subnet.Masked().Addr(), 128)
	}
	for _, d := range b.devs {
		d.addrs = nil
		for _, n := range d.network {
			if n.Addr().Is4() && a4.IsValid() {
				d.addrs = append(d.addrs, a4)
			} else if n.Addr().Is6() && a6.IsValid() {
				d.addrs = append(d.addrs, a6)
			}
		}
		if err := d.ensure(b.c, b.impl, b.key); err != nil {
			return nil, err
		}
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
		Handle:   b.c.h,
		Families: families,
		Networks: networks,
		ExtIndex: b.cfg.Ext.Index,
		Log:      b.log,
		OnPass:   b.cfg.OnPass,

		FullResyncInterval: b.cfg.FullResync,
	})
	if err != nil {
		return nil, fmt.Errorf("wireguard backend: %w", err)
	}
	n := &network{
		b:   b,
		rec: rec,
		mtu: b.devs[0].mtu,
		plan: planner{
			opts: b.opts, v4: b.cfg.EnableIPv4, v6: b.cfg.EnableIPv6,
			own4: own.Subnet, own6: own.IPv6Subnet, ownKey: b.key.PublicKey(),
			ext4: b.cfg.Ext.ExtAddr, ext6: b.cfg.Ext.ExtV6Addr,
		},
		skipped: backend.NewSkipLog(b.log),
		lastEP:  map[string]map[wgtypes.Key]netip.AddrPort{},
		peerErr: map[string]string{},
		changed: make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	n.done.Add(2)
	go n.forward()
	go n.checkPeers()
	return n, nil
}

type network struct {
	b    *wgBackend
	rec  *kernel.Reconciler
	mtu  int
	plan planner

	// Guarded by b.mu.
	skipped *backend.SkipLog
	want    map[string][]Peer // per device, as of the last pass
	lastEP  map[string]map[wgtypes.Key]netip.AddrPort
	peerErr map[string]string // device → last logged error
	drift   bool              // drift was logged and not yet repaired

	changed   chan struct{}
	stop      chan struct{}
	done      sync.WaitGroup
	closeOnce sync.Once
}

func (n *network) MTU() int                 { return n.mtu }
func (n *network) Changed() <-chan struct{} { return n.changed }

// Resync makes the next pass a full one (backend.Resyncer).
func (n *network) Resync() { n.rec.Resync() }

var _ backend.Resyncer = (*network)(nil)

func (n *network) signal() {
	select {
	case n.changed <- struct{}{}:
	default:
	}
}

// forward merges the reconciler's signal into ours.
func (n *network) forward() {
	defer n.done.Done()
	for {
		select {
		case <-n.stop:
			return
		case <-n.rec.Changed():
			n.signal()
		}
	}
}

// checkPeers compares the devices' peers with the wanted ones every
// PeerCheckInterval and asks for a pass when they differ, or when a
// userspace device stopped.
func (n *network) checkPeers() {
	defer n.done.Done()
	t := time.NewTicker(PeerCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		if why := n.drifted(); why != "" {
			n.rec.MarkDirty(why)
			n.signal()
		}
	}
}

// drifted says what differs from the last pass's wanted state ("" if
// nothing).
func (n *network) drifted() string {
	b := n.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if n.want == nil {
		return "" // no pass yet
	}
	for _, d := range b.devs {
		if d.eng == nil || d.eng.dead() {
			return "wireguard device " + d.name + " is gone"
		}
		have, err := d.eng.peers()
		if err != nil {
			return "" // logged by the pass
		}
		if ch := diffPeers(n.want[d.name], have, n.lastEP[d.name]); len(ch) > 0 {
			if !n.drift {
				n.drift = true
				b.log.Info("wireguard peers differ from the wanted ones; repairing", "device", d.name, "changes", len(ch))
			}
			return "wireguard peers of " + d.name + " changed"
		}
	}
	return ""
}

// Reconcile programs the peers and the overlay routes for the given
// remote leases.
func (n *network) Reconcile(ctx context.Context, peers []subnet.Lease) error {
	return n.rec.Reconcile(ctx, func(ctx context.Context, full bool) (kernel.State, error) {
		b := n.b
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.c == nil {
			return kernel.State{}, errors.New("wireguard network is closed")
		}
		var errs []error
		if full {
			if err := b.startDevices(); err != nil {
				errs = append(errs, err)
			}
		}
		want, skipped := n.plan.want(peers)
		n.skipped.Pass(skipped)
		n.want = want
		for _, d := range b.devs {
			err := n.applyPeers(d, want[d.name])
			n.logPeerError(d.name, err)
			if err != nil {
				errs = append(errs, err)
			}
		}
		return n.state(), errors.Join(errs...)
	})
}

// applyPeers diffs one device's peers against the wanted ones and applies
// the difference. Call with b.mu held.
func (n *network) applyPeers(d *device, want []Peer) error {
	if d.eng == nil || d.eng.dead() {
		return fmt.Errorf("wireguard device %s is not running", d.name)
	}
	have, err := d.eng.peers()
	if err != nil {
		return fmt.Errorf("read peers of %s: %w", d.name, err)
	}
	last := n.lastEP[d.name]
	if last == nil {
		last = map[wgtypes.Key]netip.AddrPort{}
		n.lastEP[d.name] = last
	}
	ch := diffPeers(want, have, last)
	if len(ch) > 0 {
		if err := d.eng.configure(ch); err != nil {
			return fmt.Errorf("configure peers of %s: %w", d.name, err)
		}
		n.logChanges(d.name, ch, want)
	}
	if d.fresh {
		// Greet only where the peers still hold a session with a device
		// of ours that is gone: after a restart with the same key, or
		// when the device was recreated. Where they do not (a new node,
		// a new key), they are adding us too, and two handshakes
		// initiated at the same moment from both ends can leave the pair
		// without a working session until WireGuard's 15 s timeout; the
		// first packet starts the handshake anyway.
		if n.b.restart || d.replaced {
			keys := make([]wgtypes.Key, len(want))
			for i, w := range want {
				keys[i] = w.Key
			}
			d.eng.greet(keys)
		}
		d.fresh, d.replaced = false, false
	}
	clear(last)
	for _, w := range want {
		last[w.Key] = w.Endpoint
	}
	n.drift = false
	return nil
}

// levelPeers is daemon.LevelPeers (flanneld -v=2): one line per peer
// programmed would be 5,000 lines at a large cluster's start.
const levelPeers = slog.LevelInfo - 2

func (n *network) logChanges(dev string, ch []wgtypes.PeerConfig, want []Peer) {
	if !n.b.log.Enabled(context.Background(), levelPeers) {
		return
	}
	byKey := map[wgtypes.Key]Peer{}
	for _, w := range want {
		byKey[w.Key] = w
	}
	for _, c := range ch {
		if c.Remove {
			n.b.log.Log(context.Background(), levelPeers, "Removed wireguard peer", "device", dev, "public_key", c.PublicKey.String())
			continue
		}
		w := byKey[c.PublicKey]
		ips := make([]string, len(w.AllowedIPs))
		for i, p := range w.AllowedIPs {
			ips[i] = p.String()
		}
		n.b.log.Log(context.Background(), levelPeers, fmt.Sprintf("Subnet(s) added: %v via %s", ips, w.Endpoint), "device", dev, "public_key", c.PublicKey.String())
	}
}

func (n *network) logPeerError(dev string, err error) {
	switch {
	case err == nil && n.peerErr[dev] != "":
		n.b.log.Info("wireguard peers are in order again", "device", dev)
		delete(n.peerErr, dev)
	case err != nil && n.peerErr[dev] != err.Error():
		n.b.log.Error("wireguard peer update failed; will retry", "device", dev, "err", err)
		n.peerErr[dev] = err.Error()
	}
}

// state is the kernel rows: upstream's one route per overlay network
// through the device that carries that family, and the devices to watch.
// The whole network (not each peer's subnet) goes into the tunnel, so
// traffic for a subnet whose lease we skipped is dropped by WireGuard
// instead of leaving unencrypted by the default route. Call with b.mu
// held.
func (n *network) state() kernel.State {
	var st kernel.State
	for _, d := range n.b.devs {
		if d.index <= 0 {
			continue
		}
		st.Devices = append(st.Devices, d.kernelDevice())
		for _, nw := range d.network {
			st.Routes = append(st.Routes, kernel.Route{Dst: nw.Masked(), LinkIndex: d.index})
		}
	}
	return st
}

// Close stops the peer check and the kernel subscriptions. A kernel
// device stays, with its peers, so a restart drops nothing; a userspace
// device cannot outlive the process and is closed (its UAPI socket
// removed).
func (n *network) Close() error {
	var err error
	n.closeOnce.Do(func() {
		close(n.stop)
		n.done.Wait()
		err = n.rec.Close()
		b := n.b
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, d := range b.devs {
			if d.eng != nil {
				d.eng.close()
				d.eng = nil
			}
		}
		if b.c != nil {
			b.c.h.Close()
			if b.c.ns.IsOpen() {
				b.c.ns.Close()
			}
			b.c = nil
		}
	})
	return err
}
