package vxlan

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

type vxlanBackend struct {
	cfg  backend.Config
	opts Options
	log  *slog.Logger

	mu     sync.Mutex
	h      *kernel.Handle
	nets   int // open Networks sharing h
	v4, v6 *device
}

// New builds the vxlan backend from the network config's Backend object.
// It checks the options and logs them; the kernel is first touched by
// Prepare.
func New(cfg backend.Config) (backend.Backend, error) {
	opts, err := ParseOptions(cfg.Raw)
	if err != nil {
		return nil, err
	}
	if !cfg.EnableIPv4 && !cfg.EnableIPv6 {
		return nil, errors.New("vxlan backend: neither IPv4 nor IPv6 is enabled")
	}
	if cfg.Ext.Index <= 0 {
		return nil, errors.New("vxlan backend: no external interface")
	}
	if cfg.EnableIPv4 && !cfg.Ext.ExtAddr.Is4() {
		return nil, fmt.Errorf("vxlan backend: external interface %s has no IPv4 public address", cfg.Ext.Name)
	}
	if cfg.EnableIPv6 && !cfg.Ext.ExtV6Addr.Is6() {
		return nil, fmt.Errorf("vxlan backend: external interface %s has no IPv6 public address", cfg.Ext.Name)
	}
	if opts.MTU > 0 && cfg.Ext.MTU > 0 && opts.MTU > cfg.Ext.MTU {
		return nil, fmt.Errorf("invalid Backend.MTU %d: larger than the MTU %d of external interface %s", opts.MTU, cfg.Ext.MTU, cfg.Ext.Name)
	}
	underlay := opts.MTU
	if underlay == 0 {
		underlay = cfg.Ext.MTU
	}
	if underlay-overheadV4 < minTunnelMTU {
		return nil, fmt.Errorf("vxlan backend: underlay MTU %d of %s too small for vxlan", underlay, cfg.Ext.Name)
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("backend", BackendType)
	log.Info(opts.String())

	var uts unix.Utsname
	release := ""
	if unix.Uname(&uts) == nil {
		release = unix.ByteSliceToString(uts.Release[:])
	}
	natted := cfg.Ext.IfaceAddr.IsValid() && cfg.Ext.ExtAddr != cfg.Ext.IfaceAddr
	csumOff, csumOn, reason := checksumDecision(opts.ChecksumOffload, release, natted)
	switch {
	case csumOff:
		log.Info("VXLAN TX checksum offload will be turned off", "reason", reason)
	case csumOn:
		log.Info("VXLAN TX checksum offload will be kept on", "reason", reason)
	default:
		log.Debug("VXLAN TX checksum offload left as the kernel sets it", "reason", reason)
	}

	b := &vxlanBackend{cfg: cfg, opts: opts, log: log}
	mk := func(v6 bool) *device {
		d := &device{
			v6: v6, vni: opts.VNI, port: opts.Port, gbp: opts.GBP, learning: opts.Learning,
			vtepIndex: cfg.Ext.Index, csumOff: csumOff, csumOn: csumOn,
		}
		if v6 {
			d.name, d.local, d.mtu, d.network = DeviceNameV6(opts.VNI), cfg.Ext.ExtV6Addr, tunnelMTU(underlay, true), cfg.IPv6Network
		} else {
			d.name, d.local, d.mtu, d.network = DeviceName(opts.VNI), cfg.Ext.ExtAddr, tunnelMTU(underlay, false), cfg.Network
		}
		return d
	}
	if cfg.EnableIPv4 {
		b.v4 = mk(false)
	}
	if cfg.EnableIPv6 {
		b.v6 = mk(true)
		if b.v6.mtu < 1280 {
			return nil, fmt.Errorf("vxlan backend: underlay MTU %d leaves %d for %s, below the IPv6 minimum 1280", underlay, b.v6.mtu, b.v6.name)
		}
	}
	return b, nil
}

func (b *vxlanBackend) devices() []*device {
	var ds []*device
	for _, d := range []*device{b.v4, b.v6} {
		if d != nil {
			ds = append(ds, d)
		}
	}
	return ds
}

// Prepare creates or adopts the devices and returns the lease attributes
// with the MAC each device really has.
func (b *vxlanBackend) Prepare(ctx context.Context, prev *subnet.LeaseAttrs) (subnet.LeaseAttrs, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.h == nil {
		h, err := kernel.Open(b.cfg.NetnsPath)
		if err != nil {
			return subnet.LeaseAttrs{}, err
		}
		b.h = h
	}
	if prev != nil && prev.BackendType == BackendType {
		// A device we must create gets the MAC peers already know, unless
		// no device can have it (a hand-edited lease): the kernel would
		// refuse to create the device.
		if b.v4 != nil {
			if _, mac, err := decodeBackendData(prev.BackendData); err == nil && checkVtepMAC(mac) == nil {
				b.v4.mac = mac
			}
		}
		if b.v6 != nil {
			if _, mac, err := decodeBackendData(prev.BackendV6Data); err == nil && checkVtepMAC(mac) == nil {
				b.v6.mac = mac
			}
		}
	}
	attrs := subnet.LeaseAttrs{PublicIP: b.cfg.Ext.ExtAddr, BackendType: BackendType}
	for _, d := range b.devices() {
		if err := d.ensure(b.h, b.log, true); err != nil {
			return subnet.LeaseAttrs{}, err
		}
		data, err := encodeBackendData(d.vni, d.mac)
		if err != nil {
			return subnet.LeaseAttrs{}, err
		}
		if d.v6 {
			attrs.PublicIPv6 = b.cfg.Ext.ExtV6Addr
			attrs.BackendV6Data = data
		} else {
			attrs.BackendData = data
		}
	}
	return attrs, nil
}

// Configure puts our address on the devices, brings them up and starts
// watching the kernel.
func (b *vxlanBackend) Configure(ctx context.Context, own subnet.Lease) (backend.Network, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.h == nil {
		return nil, errors.New("vxlan backend: Configure called before Prepare")
	}
	var families []int
	var networks []netip.Prefix
	mtu := 0
	for _, d := range b.devices() {
		sn := own.Subnet
		if d.v6 {
			sn = own.IPv6Subnet
		}
		if !sn.IsValid() {
			return nil, fmt.Errorf("vxlan backend: our lease %s has no %s subnet", own, map[bool]string{false: "IPv4", true: "IPv6"}[d.v6])
		}
		d.addr = netip.PrefixFrom(sn.Masked().Addr(), sn.Addr().BitLen())
		if err := d.ensure(b.h, b.log, false); err != nil {
			return nil, err
		}
		families = append(families, d.family())
		networks = append(networks, d.network)
		if mtu == 0 || d.mtu < mtu {
			mtu = d.mtu
		}
	}
	rec, err := kernel.NewReconciler(kernel.Config{
		Handle:   b.h,
		Families: families,
		Networks: networks,
		ExtIndex: b.cfg.Ext.Index,
		Log:      b.log,
		OnPass:   b.cfg.OnPass,

		FullResyncInterval: b.cfg.FullResync,
	})
	if err != nil {
		return nil, fmt.Errorf("vxlan backend: %w", err)
	}
	b.nets++
	n := &network{
		b:       b,
		rec:     rec,
		mtu:     mtu,
		own:     own,
		direct:  map[netip.Addr]directInfo{},
		skipped: backend.NewSkipLog(b.log),
		devErrs: map[string]string{},
	}
	return n, nil
}

// directInfo caches whether a peer's public IP is on a directly connected
// network (DirectRouting), and through which link.
type directInfo struct {
	link int
	ok   bool
}

type network struct {
	b      *vxlanBackend
	rec    *kernel.Reconciler
	mtu    int
	own    subnet.Lease
	closed atomic.Bool

	// Guarded by the Reconciler's pass lock (only used inside prepare).
	direct     map[netip.Addr]directInfo
	lastDirect map[netip.Addr]bool
	skipped    *backend.SkipLog
	devErrs    map[string]string
}

func (n *network) MTU() int                 { return n.mtu }
func (n *network) Changed() <-chan struct{} { return n.rec.Changed() }

// Resync makes the next pass a full one (backend.Resyncer).
func (n *network) Resync() { n.rec.Resync() }

var _ backend.Resyncer = (*network)(nil)

// Close stops the kernel subscriptions and releases the netlink socket
// (once no other Network of the backend uses it); the devices and all
// entries stay, so traffic keeps flowing.
func (n *network) Close() error {
	if n.closed.Swap(true) {
		return nil
	}
	err := n.rec.Close()
	n.b.mu.Lock()
	defer n.b.mu.Unlock()
	n.b.nets--
	if n.b.nets == 0 && n.b.h != nil {
		n.b.h.Close()
		n.b.h = nil
	}
	return err
}

// Reconcile programs the kernel for the given remote leases.
func (n *network) Reconcile(ctx context.Context, peers []subnet.Lease) error {
	return n.rec.Reconcile(ctx, func(ctx context.Context, full bool) (kernel.State, error) {
		n.b.mu.Lock()
		defer n.b.mu.Unlock()
		if n.b.h == nil {
			return kernel.State{}, errors.New("vxlan network is closed")
		}
		var errs []error
		if full {
			for _, d := range n.b.devices() {
				err := d.ensure(n.b.h, n.b.log, false)
				n.logDeviceError(d.name, err)
				if err != nil {
					errs = append(errs, err)
				}
			}
			// Directness is re-evaluated on full passes only; between
			// them a peer's decision changes only with its public IP.
			clear(n.direct)
		}
		st, skipped := n.planner().state(peers)
		n.skipped.Pass(skipped)
		n.pruneDirect(peers)
		for _, d := range n.b.devices() {
			if d.index > 0 {
				st.Devices = append(st.Devices, d.kernelDevice())
			}
		}
		return st, errors.Join(errs...)
	})
}

// planner is the pure part of a pass; call with b.mu held.
func (n *network) planner() planner {
	p := planner{vni: n.b.opts.VNI, directRouting: n.b.opts.DirectRouting, direct: n.isDirect}
	if d := n.b.v4; d != nil {
		p.v4 = familyPlan{enabled: true, devIndex: d.index, own: n.own.Subnet, public: n.b.cfg.Ext.ExtAddr}
	}
	if d := n.b.v6; d != nil {
		p.v6 = familyPlan{enabled: true, devIndex: d.index, own: n.own.IPv6Subnet, public: n.b.cfg.Ext.ExtV6Addr}
	}
	return p
}

// Update programs the changed leases only (backend.Incremental). The rows
// of gone leases are computed again rather than remembered: planning is a
// pure function of the lease and of the devices and DirectRouting answers
// of the last full pass, and if those moved since, the Reconciler finds
// the rows unclaimed and asks for a full pass.
func (n *network) Update(ctx context.Context, gone, came []subnet.Lease) error {
	return n.rec.Update(ctx, func() (kernel.State, kernel.State, error) {
		n.b.mu.Lock()
		defer n.b.mu.Unlock()
		if n.b.h == nil {
			return kernel.State{}, kernel.State{}, errors.New("vxlan network is closed")
		}
		p := n.planner()
		was, _ := p.state(gone)
		now, skipped := p.state(came)
		n.skipped.Delta(gone, came, skipped)
		return was, now, nil
	})
}

// isDirect answers DirectRouting's question as upstream does: the peer is
// directly reachable when the kernel's route to it is a single route
// without gateway.
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
			n.b.log.Info("DirectRouting: peer is not directly reachable; using vxlan", "public_ip", addr.String())
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
	live := make(map[netip.Addr]bool, len(peers)*2)
	for _, l := range peers {
		live[l.Attrs.PublicIP] = true
		live[l.Attrs.PublicIPv6] = true
	}
	for a := range n.lastDirect {
		if !live[a] {
			delete(n.lastDirect, a)
			delete(n.direct, a)
		}
	}
}

func (n *network) logDeviceError(name string, err error) {
	switch {
	case err == nil && n.devErrs[name] != "":
		n.b.log.Info("vxlan device is in order again", "device", name)
		delete(n.devErrs, name)
	case err != nil && n.devErrs[name] != err.Error():
		n.b.log.Error("vxlan device check failed; will retry", "device", name, "err", err)
		n.devErrs[name] = err.Error()
	}
}
