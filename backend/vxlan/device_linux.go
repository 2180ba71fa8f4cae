package vxlan

import (
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/flannelng/flannel/backend/kernel"
	"github.com/flannelng/flannel/backend/netdev"
)

// defaultPort is the kernel's vxlan UDP port when none is given (Linux
// predates IANA's 4789).
const defaultPort = 8472

// device is one vxlan device as we want it.
type device struct {
	name      string
	v6        bool
	vni       int
	port      int // 0: kernel default
	gbp       bool
	learning  bool
	local     netip.Addr // VTEP address: the public IP
	vtepIndex int        // external interface
	mtu       int
	network   netip.Prefix // overlay network of this family

	// mac is the MAC our lease advertises. Prepare fixes it (the existing
	// device's, the previous lease's, or a fresh one); afterwards every
	// check restores it.
	mac kernel.MAC
	// addr is <own subnet network>/32 (/128); invalid until Configure.
	addr netip.Prefix

	csumOff, csumOn bool // ChecksumOffload decision

	index int // current ifindex; 0 while the device is missing
}

func (d *device) family() int {
	if d.v6 {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

func (d *device) effectivePort() int {
	if d.port > 0 {
		return d.port
	}
	return defaultPort
}

// incompatible says why an existing link cannot be reused as d (upstream's
// rules, plus the effective port, learning and l3miss, which upstream does
// not compare), or "" if it can. MTU and MAC are fixed in place instead.
func (d *device) incompatible(l netlink.Link) string {
	v, ok := l.(*netlink.Vxlan)
	if !ok {
		return "type " + l.Type()
	}
	switch {
	case v.VxlanId != d.vni:
		return "vni"
	case v.VtepDevIndex != d.vtepIndex:
		return "vtep (external) interface"
	case kernel.AddrFromIP(v.SrcAddr, !d.v6) != d.local:
		return "vtep (external) IP"
	case len(v.Group) > 0 && !v.Group.IsUnspecified():
		return "group address"
	case v.L2miss:
		return "l2miss"
	case v.L3miss:
		return "l3miss"
	case v.Port != d.effectivePort():
		return "port"
	case v.GBP != d.gbp:
		return "gbp"
	case v.Learning != d.learning:
		return "learning"
	case v.FlowBased:
		return "external (flow based)"
	}
	return ""
}

// ensure makes the device exist as wanted: it adopts a compatible device
// as it is (adopt: taking its MAC as ours), replaces an incompatible one,
// creates a missing one with our MAC, and then fixes MAC, MTU, addresses
// and link state in place (the last three through package netdev).
// Nothing is written when all is right.
func (d *device) ensure(h *kernel.Handle, log *slog.Logger, adopt bool) error {
	link, err := h.LinkByName(d.name)
	switch {
	case kernel.IsNotFound(err):
		link = nil
	case err != nil:
		return fmt.Errorf("look up %s: %w", d.name, err)
	default:
		if why := d.incompatible(link); why != "" {
			log.Warn(fmt.Sprintf("%q already exists with incompatible configuration: %v; recreating device", d.name, why))
			if err := h.LinkDel(link); err != nil && !kernel.IsNotFound(err) {
				return fmt.Errorf("delete incompatible %s: %w", d.name, err)
			}
			link = nil
		}
	}

	created := false
	if link == nil {
		if d.mac.IsZero() {
			// Only a brand-new node gets here: no device, no previous lease.
			if d.mac, err = randomMAC(); err != nil {
				return err
			}
		}
		if link, err = d.create(h); err != nil {
			d.index = 0
			return err
		}
		created = true
		log.Info("created vxlan device", "device", d.name, "mac", d.mac.String(), "mtu", d.mtu,
			"vni", d.vni, "local", d.local.String(), "port", d.effectivePort())
	}
	attrs := link.Attrs()
	d.index = attrs.Index

	have, _ := kernel.MACFromBytes(attrs.HardwareAddr)
	switch {
	case adopt && !created:
		if !d.mac.IsZero() && d.mac != have {
			log.Info("existing vxlan device keeps its MAC; the lease will advertise it",
				"device", d.name, "mac", have.String(), "previous_lease_mac", d.mac.String())
		}
		d.mac = have
	case have != d.mac:
		// Set at creation, yet changed: typically systemd-udevd applying
		// MACAddressPolicy=persistent/random to the new link. Peers know
		// the MAC our lease advertises, so put it back.
		log.Warn("vxlan device MAC differs from the one our lease advertises; restoring it",
			"device", d.name, "found", have.String(), "want", d.mac.String())
		if err := h.LinkSetHardwareAddr(link, d.mac); err != nil {
			return fmt.Errorf("set MAC of %s to %s: %w", d.name, d.mac, err)
		}
	}

	if created || adopt {
		if err := h.DisableAcceptRA(d.name); err != nil {
			// Best effort, as upstream: a kernel without IPv6 has no knob.
			log.Debug("could not disable accept_ra", "device", d.name, "err", err)
		}
		d.applyChecksum(h, log)
	}
	return netdev.Ensure(h, link, d.want())
}

// want is the device's MTU, address and network as package netdev, which
// every tunnel backend shares, sets them.
func (d *device) want() netdev.Want {
	return netdev.Want{Name: d.name, MTU: d.mtu, Addr: d.addr, Network: d.network}
}

// create adds the link with our MAC in the RTM_NEWLINK request itself, so
// there is no moment when the device has another MAC.
func (d *device) create(h *kernel.Handle) (netlink.Link, error) {
	la := netlink.NewLinkAttrs()
	la.Name = d.name
	la.MTU = d.mtu
	la.HardwareAddr = d.mac.HardwareAddr()
	v := &netlink.Vxlan{
		LinkAttrs:    la,
		VxlanId:      d.vni,
		VtepDevIndex: d.vtepIndex,
		SrcAddr:      d.local.AsSlice(),
		Port:         d.port,
		Learning:     d.learning,
		GBP:          d.gbp,
	}
	if err := h.LinkAdd(v); err != nil {
		return nil, fmt.Errorf("create vxlan device %s (vni %d, local %s, dev #%d): %w", d.name, d.vni, d.local, d.vtepIndex, err)
	}
	link, err := h.LinkByName(d.name)
	if err != nil {
		return nil, fmt.Errorf("look up new device %s: %w", d.name, err)
	}
	return link, nil
}

// applyChecksum applies the ChecksumOffload decision; failures are logged,
// the tunnel works without it.
func (d *device) applyChecksum(h *kernel.Handle, log *slog.Logger) {
	if !d.csumOff && !d.csumOn {
		return
	}
	changed, err := h.SetTxChecksum(d.name, d.csumOn)
	if err != nil {
		log.Warn("could not change TX checksum offload", "device", d.name, "err", err)
		return
	}
	if changed {
		log.Info("changed TX checksum offload", "device", d.name, "offload", d.csumOn)
	}
}

func (d *device) kernelDevice() kernel.Device {
	kd := kernel.Device{Index: d.index, Name: d.name, MAC: d.mac, MTU: d.mtu}
	if d.addr.IsValid() {
		kd.Addrs = []netip.Prefix{d.addr}
	}
	return kd
}
