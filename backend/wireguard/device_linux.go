package wireguard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	wgdevice "golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/flannelng/flannel/backend/kernel"
	"github.com/flannelng/flannel/backend/netdev"
	"github.com/flannelng/flannel/pkg/nsenter"
)

// engine is the WireGuard implementation behind a device: the kernel's
// (configured over generic netlink with wgctrl) or wireguard-go's, run in
// this process.
type engine interface {
	// peers reads the device's peers.
	peers() ([]Peer, error)
	// configure applies peer changes (never the listen port: wireguard-go
	// rebinds its socket on every listen_port write).
	configure([]wgtypes.PeerConfig) error
	// greet starts handshakes with the given peers (see userEngine.greet).
	greet([]wgtypes.Key)
	// dead reports a userspace device that stopped (its TUN was deleted).
	dead() bool
	close()
}

// device is one WireGuard device as we want it.
type device struct {
	name    string
	port    int
	mtu     int
	addrs   []netip.Prefix // <subnet network>/32 and/or /128; empty until Configure
	network []netip.Prefix // the overlay network(s) it routes

	index int // current ifindex; 0 while missing
	eng   engine
	// fresh is set when eng was just made, replaced is set when it
	// replaced one that stopped: the next peer pass decides whether to
	// greet the peers (see network.applyPeers).
	fresh, replaced bool
}

// nsCtx is the target namespace: for netlink, the Handle; for what must be
// created inside it (the TUN, UDP and generic netlink sockets), a thread
// switched into it.
type nsCtx struct {
	h    *kernel.Handle
	ns   netns.NsHandle
	path string
	log  *slog.Logger
}

func (c *nsCtx) run(fn func() error) error { return nsenter.Run(c.ns, c.path, fn) }

// errNoKernelWG says the kernel cannot make a wireguard link.
var errNoKernelWG = errors.New("the kernel has no WireGuard")

// ensure makes the device exist with our key and port, and (once addrs is
// set) with its MTU, addresses and link up. impl is the implementation to
// use when the device must be created.
func (d *device) ensure(c *nsCtx, impl string, key wgtypes.Key) error {
	link, err := c.h.LinkByName(d.name)
	switch {
	case kernel.IsNotFound(err):
		link = nil
	case err != nil:
		return fmt.Errorf("look up %s: %w", d.name, err)
	}
	if d.eng != nil && (d.eng.dead() || link == nil || link.Attrs().Index != d.index) {
		c.log.Warn("wireguard device vanished; recreating it", "device", d.name)
		d.eng.close()
		d.eng, d.index = nil, 0
		d.replaced = true
		if link, err = c.h.LinkByName(d.name); kernel.IsNotFound(err) {
			link = nil
		}
	}
	if d.eng == nil {
		if link != nil && (impl == ImplUserspace || link.Type() != "wireguard") {
			// A userspace device dies with its process, so a link of
			// that name is a kernel device (Implementation changed) or a
			// stranger; upstream deletes it too.
			c.log.Warn(fmt.Sprintf("%q already exists; recreating device", d.name), "type", link.Type())
			if err := c.h.LinkDel(link); err != nil && !kernel.IsNotFound(err) {
				return fmt.Errorf("delete %s: %w", d.name, err)
			}
			link = nil
		}
		switch impl {
		case ImplKernel:
			link, err = d.startKernel(c, link, key)
		default:
			link, err = d.startUserspace(c, key)
		}
		if err != nil {
			return err
		}
		d.fresh = true
	}
	d.index = link.Attrs().Index
	wants := d.wants()
	if len(wants) == 0 {
		// Before our lease: the MTU only.
		return netdev.Ensure(c.h, link, netdev.Want{Name: d.name, MTU: d.mtu})
	}
	if err := netdev.Ensure(c.h, link, wants[0]); err != nil {
		return err
	}
	// A single-tunnel device carries the other family's address too.
	for _, w := range wants[1:] {
		if err := netdev.EnsureAddr(c.h, link, w); err != nil {
			return err
		}
	}
	return nil
}

// wants is the shared device set-up (package netdev) per address family.
func (d *device) wants() []netdev.Want {
	var ws []netdev.Want
	for _, a := range d.addrs {
		w := netdev.Want{Name: d.name, MTU: d.mtu, Addr: a}
		for _, n := range d.network {
			if n.Addr().Is6() == a.Addr().Is6() {
				w.Network = n
			}
		}
		ws = append(ws, w)
	}
	return ws
}

func (d *device) kernelDevice() kernel.Device {
	return kernel.Device{Index: d.index, Name: d.name, MTU: d.mtu, Addrs: d.addrs}
}

// kernelEngine is the kernel's WireGuard.
type kernelEngine struct {
	name string
	wg   *wgctrl.Client
}

func (d *device) startKernel(c *nsCtx, link netlink.Link, key wgtypes.Key) (netlink.Link, error) {
	if link == nil {
		la := netlink.NewLinkAttrs()
		la.Name, la.MTU = d.name, d.mtu
		if err := c.h.LinkAdd(&netlink.Wireguard{LinkAttrs: la}); err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) {
				return nil, fmt.Errorf("could not create wireguard interface: %w (%w; set Backend.Implementation to %q or %q)", err, errNoKernelWG, ImplAuto, ImplUserspace)
			}
			return nil, fmt.Errorf("could not create wireguard interface: %w", err)
		}
		var err error
		if link, err = c.h.LinkByName(d.name); err != nil {
			return nil, fmt.Errorf("look up new device %s: %w", d.name, err)
		}
		c.log.Info("created kernel wireguard device", "device", d.name, "mtu", d.mtu, "listen_port", d.port)
	} else {
		c.log.Info("adopting existing kernel wireguard device", "device", d.name)
	}
	var wg *wgctrl.Client
	// The generic netlink socket must live in the target namespace.
	if err := c.run(func() (err error) { wg, err = wgctrl.New(); return err }); err != nil {
		return nil, fmt.Errorf("wgctrl: %w", err)
	}
	e := &kernelEngine{name: d.name, wg: wg}
	dev, err := wg.Device(d.name)
	if err != nil {
		wg.Close()
		return nil, fmt.Errorf("read wireguard device %s: %w", d.name, err)
	}
	if dev.PrivateKey != key || dev.ListenPort != d.port {
		port := d.port
		if err := wg.ConfigureDevice(d.name, wgtypes.Config{PrivateKey: &key, ListenPort: &port}); err != nil {
			wg.Close()
			return nil, fmt.Errorf("failed to configure device %s: %w", d.name, err)
		}
	}
	d.eng = e
	return link, nil
}

func (e *kernelEngine) peers() ([]Peer, error) {
	dev, err := e.wg.Device(e.name)
	if err != nil {
		return nil, err
	}
	out := make([]Peer, len(dev.Peers))
	for i, p := range dev.Peers {
		out[i] = peerFromWG(p)
	}
	return out, nil
}

func (e *kernelEngine) configure(pcs []wgtypes.PeerConfig) error {
	return e.wg.ConfigureDevice(e.name, wgtypes.Config{Peers: pcs})
}

func (e *kernelEngine) dead() bool          { return false }
func (e *kernelEngine) greet([]wgtypes.Key) {}
func (e *kernelEngine) close()              { e.wg.Close() }

// userEngine is wireguard-go running in this process on a TUN device.
type userEngine struct {
	dev  *wgdevice.Device
	uapi net.Listener // nil when the socket could not be made
}

// startUserspace creates the TUN (with the offloads wireguard-go asks for:
// IFF_VNET_HDR, TSO and USO, so it reads and writes up to 64 KiB
// super-packets and batches; see tun.CreateTUN), starts wireguard-go on
// it with the standard UDP bind (recvmmsg/sendmmsg, UDP GSO/GRO where the
// kernel has them), sets key and port once, and serves the UAPI socket.
func (d *device) startUserspace(c *nsCtx, key wgtypes.Key) (netlink.Link, error) {
	var td tun.Device
	if err := c.run(func() (err error) { td, err = tun.CreateTUN(d.name, d.mtu); return err }); err != nil {
		return nil, fmt.Errorf("could not create TUN device %s for userspace wireguard (needs /dev/net/tun and CAP_NET_ADMIN): %w", d.name, err)
	}
	wgLog := newWGLogger(c.log.With("device", d.name))
	dev := wgdevice.NewDevice(td, nsBind{Bind: conn.NewDefaultBind(), c: c}, wgLog)
	cfg := fmt.Sprintf("private_key=%x\nlisten_port=%d\n", key[:], d.port)
	if err := dev.IpcSet(cfg); err != nil {
		dev.Close()
		return nil, fmt.Errorf("failed to configure device %s: %w", d.name, err)
	}
	if err := dev.Up(); err != nil {
		dev.Close()
		return nil, fmt.Errorf("start userspace wireguard %s: %w", d.name, err)
	}
	e := &userEngine{dev: dev}
	if f, err := ipc.UAPIOpen(d.name); err != nil {
		// Seen when several network namespaces share one /var/run (a
		// lab): the data plane works, only `wg show` cannot see us.
		c.log.Warn("no UAPI socket for the userspace wireguard device; wg show and wgctrl will not see it", "device", d.name, "err", err)
	} else if l, err := ipc.UAPIListen(d.name, f); err != nil {
		f.Close()
		c.log.Warn("no UAPI socket for the userspace wireguard device; wg show and wgctrl will not see it", "device", d.name, "err", err)
	} else {
		f.Close()
		e.uapi = l
		go func() {
			for {
				conn, err := l.Accept()
				if err != nil {
					return
				}
				go dev.IpcHandle(conn)
			}
		}()
	}
	link, err := c.h.LinkByName(d.name)
	if err != nil {
		e.close()
		return nil, fmt.Errorf("look up new device %s: %w", d.name, err)
	}
	d.eng = e
	c.log.Info("created userspace wireguard device", "device", d.name, "mtu", d.mtu, "listen_port", d.port,
		"batch", td.BatchSize(), "uapi", e.uapi != nil)
	return link, nil
}

func (e *userEngine) peers() ([]Peer, error) {
	s, err := e.dev.IpcGet()
	if err != nil {
		return nil, err
	}
	d, err := parseUAPIGet(s)
	return d.Peers, err
}

func (e *userEngine) configure(pcs []wgtypes.PeerConfig) error {
	return e.dev.IpcSet(uapiSet(pcs))
}

// greet sends a keepalive to each peer, which starts a handshake at once.
// A userspace device is new after every restart, while its peers still
// hold a session with the old one: their data would be dropped here until
// they give up on it (15 s without an answer) unless we speak first. The
// kernel device survives restarts and needs no greeting.
func (e *userEngine) greet(keys []wgtypes.Key) {
	for _, k := range keys {
		if p := e.dev.LookupPeer(wgdevice.NoisePublicKey(k)); p != nil {
			p.SendKeepalive()
		}
	}
}

func (e *userEngine) dead() bool {
	select {
	case <-e.dev.Wait():
		return true
	default:
		return false
	}
}

func (e *userEngine) close() {
	if e.uapi != nil {
		e.uapi.Close()
	}
	e.dev.Close()
}

// nsBind opens wireguard-go's UDP sockets inside the target namespace:
// wireguard-go (re)binds from its own goroutines (on Up, on a TUN up
// event), which run in whatever namespace their thread is in.
type nsBind struct {
	conn.Bind
	c *nsCtx
}

func (b nsBind) Open(port uint16) (fns []conn.ReceiveFunc, actual uint16, err error) {
	rerr := b.c.run(func() error {
		fns, actual, err = b.Bind.Open(port)
		return err
	})
	if err == nil && rerr != nil {
		err = rerr
	}
	return fns, actual, err
}

// newWGLogger sends wireguard-go's lines to slog: verbose ones at Debug,
// errors at Warn but at most one per format every 10 s (a peer that is
// down makes every send fail).
func newWGLogger(log *slog.Logger) *wgdevice.Logger {
	var mu sync.Mutex
	last := map[string]time.Time{}
	return &wgdevice.Logger{
		Verbosef: func(format string, args ...any) {
			if log.Enabled(context.Background(), slog.LevelDebug) {
				log.Debug(fmt.Sprintf(format, args...))
			}
		},
		Errorf: func(format string, args ...any) {
			mu.Lock()
			now := time.Now()
			if now.Sub(last[format]) < 10*time.Second {
				mu.Unlock()
				return
			}
			last[format] = now
			mu.Unlock()
			log.Warn(fmt.Sprintf(format, args...))
		},
	}
}

// openNS opens the namespace at path ("" = ours).
func openNS(path string) (netns.NsHandle, error) {
	if path == "" {
		return netns.None(), nil
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return netns.None(), fmt.Errorf("open network namespace %s: %w", path, err)
	}
	return ns, nil
}
