package ipip

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/flannelng/flannel/backend/kernel"
	"github.com/flannelng/flannel/backend/netdev"
)

// errNoModule is the one line a node without the ipip module gets.
var errNoModule = errors.New(`the kernel has no ipip support (creating ` + DeviceName + `: operation not supported): ` +
	`load kernel module "ipip" (modprobe ipip) or choose the vxlan, host-gw or wireguard backend`)

// device is flannel.ipip as we want it.
type device struct {
	local   netip.Addr   // the external interface's IPv4 (IfaceAddr, not --public-ip)
	mtu     int          // external MTU - 20
	network netip.Prefix // the overlay network
	addr    netip.Prefix // <own subnet network>/32; invalid until Configure
	index   int          // 0 while the device is missing
}

// request is the RTM_NEWLINK upstream sends (configureIPIPDevice): kind
// ipip, local = the interface address, no remote, ttl 0 (inherit), tos 0,
// pmtudisc 0 (nopmtudisc); netlink always sends those and the encap
// fields as zero. Ours also carries the MTU, so the device never exists
// with the kernel's default.
func (d *device) request() *netlink.Iptun {
	la := netlink.NewLinkAttrs()
	la.Name = DeviceName
	la.MTU = d.mtu
	return &netlink.Iptun{LinkAttrs: la, Local: d.local.AsSlice()}
}

// incompatible says why an existing flannel.ipip cannot be reused (upstream's
// rule: another local address or a remote set), or "" if it can. Another
// kind of device is an error, as upstream's: we do not delete what may be
// someone else's.
func (d *device) incompatible(l netlink.Link) (string, error) {
	t, ok := l.(*netlink.Iptun)
	if !ok {
		return "", fmt.Errorf("%s isn't an ipip mode device, please remove device and try again", DeviceName)
	}
	local := kernel.AddrFromIP(t.Local, true)
	remote := kernel.AddrFromIP(t.Remote, true)
	if local != d.local || (remote.IsValid() && !remote.IsUnspecified()) {
		return fmt.Sprintf("%q already exists with incompatible attributes: local=%v remote=%v; recreating device",
			DeviceName, addrText(local), addrText(remote)), nil
	}
	return "", nil
}

func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return "<nil>"
	}
	return a.String()
}

// ensure makes the device exist as wanted and fixes MTU, address and link
// state in place (package netdev); nothing is written when all is right.
// created says the call made the device.
func (d *device) ensure(h *kernel.Handle, log *slog.Logger) (created bool, err error) {
	link, err := h.LinkByName(DeviceName)
	switch {
	case kernel.IsNotFound(err):
		link = nil
	case err != nil:
		return false, fmt.Errorf("look up %s: %w", DeviceName, err)
	default:
		why, err := d.incompatible(link)
		if err != nil {
			return false, err
		}
		if why != "" {
			log.Warn(why)
			if err := h.LinkDel(link); err != nil && !kernel.IsNotFound(err) {
				return false, fmt.Errorf("delete incompatible %s: %w", DeviceName, err)
			}
			link = nil
		}
	}
	if link == nil {
		if link, err = d.create(h); err != nil {
			d.index = 0
			return false, err
		}
		created = true
		log.Info("created ipip device", "device", DeviceName, "local", d.local.String(), "mtu", d.mtu)
	}
	d.index = link.Attrs().Index
	return created, netdev.Ensure(h, link, netdev.Want{Name: DeviceName, MTU: d.mtu, Addr: d.addr, Network: d.network})
}

func (d *device) create(h *kernel.Handle) (netlink.Link, error) {
	err := h.LinkAdd(d.request())
	switch {
	case errors.Is(err, unix.EOPNOTSUPP):
		return nil, errNoModule
	case errors.Is(err, unix.EEXIST):
		// The kernel allows one ipip tunnel per local/remote pair:
		// another one with our local address and any remote holds it
		// under another name (flannel-io/flannel#1366).
		return nil, fmt.Errorf("create %s: an ipip tunnel with local %s and any remote already exists under another name; delete it: %w", DeviceName, d.local, err)
	case err != nil:
		return nil, fmt.Errorf("create %s (local %s): %w", DeviceName, d.local, err)
	}
	link, err := h.LinkByName(DeviceName)
	if err != nil {
		return nil, fmt.Errorf("look up new device %s: %w", DeviceName, err)
	}
	return link, nil
}

// remove deletes the device (Prepare's rollback).
func (d *device) remove(h *kernel.Handle) error {
	link, err := h.LinkByName(DeviceName)
	if kernel.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	d.index = 0
	return h.LinkDel(link)
}

func (d *device) kernelDevice() kernel.Device {
	kd := kernel.Device{Index: d.index, Name: DeviceName, MTU: d.mtu}
	if d.addr.IsValid() {
		kd.Addrs = []netip.Prefix{d.addr}
	}
	return kd
}
