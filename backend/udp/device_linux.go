package udp

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/flannelng/flannel/backend/kernel"
	"github.com/flannelng/flannel/backend/netdev"
)

// tunFile is an open file descriptor attached to the TUN device.
type tunFile struct {
	f     *os.File
	rc    syscall.RawConn // f's, for batched reads
	index int             // ifindex of the device the descriptor is attached to
	// broken is set when a read failed: the device was deleted (reads
	// return EBADFD) or the descriptor is otherwise unusable.
	broken atomic.Bool
}

// Errors of TUNSETIFF on an existing device.
var (
	errTUNBusy         = errors.New("the device is attached to another process (is another flanneld running?)")
	errTUNIncompatible = errors.New("the device is not a single-queue TUN device")
)

// attachTUN opens /dev/net/tun and attaches to the TUN device name,
// creating it if it does not exist, and makes it persistent. It must run
// in the target namespace.
//
// Persistent means the device outlives the descriptor: when the daemon
// stops or restarts, flannel0 keeps its address, MTU and the route for the
// overlay network, and the restarted daemon re-attaches to it. Meanwhile
// the kernel drops the packets routed into it. Upstream's device is not
// persistent: it vanishes with the daemon, and with it the route, so during
// a restart pods' overlay traffic follows the default route out of the
// node instead.
func attachTUN(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUN device name %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		switch {
		case errors.Is(err, unix.EBUSY):
			err = errTUNBusy
		case errors.Is(err, unix.EINVAL):
			err = errTUNIncompatible
		}
		return nil, fmt.Errorf("attach to TUN device %s: %w", name, err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("make TUN device %s persistent: %w", name, err)
	}
	// A non-blocking descriptor gives a File that Go's poller serves:
	// reads park the goroutine instead of a thread, and Close interrupts
	// them.
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}

// txQueueLen is the length of flannel0's transmit ring: the packets the
// kernel may queue for the relay. The TUN driver drops, rather than
// queues, what does not fit, and a TCP burst from a pod overflows the
// default 500; each drop costs the flow a retransmission and a halved
// window. Measured on the lab with iperf3: 500 drops 5-8% of the packets
// of a pod-to-pod transfer, 2000 about none, and throughput rises by a
// third. A full ring is 2000 packets, tens of milliseconds at the relay's
// rate: the latency price of a saturated relay, not of an idle one. A
// longer ring set by the operator is kept.
const txQueueLen = 2000

// setTxQueueLen sets the transmit queue length of a device. It must run in
// the device's namespace (SIOCSIFTXQLEN; kernel.Handle has no call for it).
func setTxQueueLen(name string, n int) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open ioctl socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	ifr.SetUint32(uint32(n))
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFTXQLEN, ifr); err != nil {
		return fmt.Errorf("set txqueuelen of %s to %d: %w", name, n, err)
	}
	return nil
}

// device is flannel0 as we want it.
type device struct {
	name    string
	mtu     int
	network netip.Prefix
	// addr is <own subnet network>/32; invalid until Configure.
	addr netip.Prefix
	// index is the ifindex of the device our descriptor is attached to, 0
	// while there is none.
	index int
}

// compatible says why an existing link cannot carry our descriptor, or ""
// if it can.
func compatible(l netlink.Link) string {
	t, ok := l.(*netlink.Tuntap)
	if !ok {
		return "it is a " + l.Type() + " device, not a TUN device"
	}
	if t.Mode != netlink.TUNTAP_MODE_TUN {
		return "it is a TAP device"
	}
	if t.Flags&netlink.TUNTAP_MULTI_QUEUE != 0 {
		return "it is a multi-queue TUN device"
	}
	return ""
}

// ensure makes the device exist with our descriptor attached, then fixes
// its MTU, address and link state in place; nothing is written when all is
// right. cur is the descriptor the relay uses now (nil if none); a
// returned non-nil tunFile replaces it. detach closes cur: it is called
// before re-attaching, because a single-queue TUN device takes one
// descriptor only.
func (d *device) ensure(h *kernel.Handle, ns *nsExec, log *slog.Logger, cur *tunFile, detach func()) (*tunFile, error) {
	link, err := h.LinkByName(d.name)
	switch {
	case kernel.IsNotFound(err):
		link = nil
	case err != nil:
		return nil, fmt.Errorf("look up %s: %w", d.name, err)
	}

	var fresh *tunFile
	if cur == nil || cur.broken.Load() || link == nil || link.Attrs().Index != cur.index {
		if link != nil {
			if why := compatible(link); why != "" {
				log.Warn(fmt.Sprintf("%q already exists and %s; recreating device", d.name, why))
				if err := h.LinkDel(link); err != nil && !kernel.IsNotFound(err) {
					return nil, fmt.Errorf("delete incompatible %s: %w", d.name, err)
				}
				link = nil
			}
		}
		if cur != nil {
			detach()
		}
		existed := link != nil
		var f *os.File
		err := ns.run(func() error {
			var err error
			f, err = attachTUN(d.name)
			return err
		})
		if err != nil {
			d.index = 0
			return nil, err
		}
		if link, err = h.LinkByName(d.name); err != nil {
			f.Close()
			d.index = 0
			return nil, fmt.Errorf("look up %s after attaching to it: %w", d.name, err)
		}
		rc, err := f.SyscallConn()
		if err != nil {
			f.Close()
			d.index = 0
			return nil, fmt.Errorf("TUN device %s: %w", d.name, err)
		}
		d.index = link.Attrs().Index
		fresh = &tunFile{f: f, rc: rc, index: d.index}
		if existed {
			log.Info("attached to existing TUN device", "device", d.name, "index", d.index)
		} else {
			log.Info("created TUN device", "device", d.name, "index", d.index, "mtu", d.mtu)
		}
	}
	if err := d.fix(h, ns, link); err != nil {
		return fresh, err
	}
	return fresh, nil
}

// fix sets the queue length, then MTU, address and link state (package
// netdev, shared by every tunnel backend).
func (d *device) fix(h *kernel.Handle, ns *nsExec, link netlink.Link) error {
	if link.Attrs().TxQLen < txQueueLen {
		if err := ns.run(func() error { return setTxQueueLen(d.name, txQueueLen) }); err != nil {
			return err
		}
	}
	return netdev.Ensure(h, link, netdev.Want{Name: d.name, MTU: d.mtu, Addr: d.addr, Network: d.network})
}

func (d *device) kernelDevice() kernel.Device {
	kd := kernel.Device{Index: d.index, Name: d.name, MTU: d.mtu}
	if d.addr.IsValid() {
		kd.Addrs = []netip.Prefix{d.addr}
	}
	return kd
}
