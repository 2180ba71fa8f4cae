package kernel

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"unsafe"

	"github.com/flannelng/flannel/pkg/nsenter"
	"golang.org/x/sys/unix"
)

// inNetns runs fn on a dedicated OS thread inside the Handle's namespace,
// for the few things netlink cannot do from outside (sysctl files, ethtool
// ioctls). With no namespace path fn runs directly.
func (h *Handle) inNetns(fn func() error) error { return nsenter.Run(h.ns, h.nsPath, fn) }

// DisableAcceptRA sets net.ipv6.conf.<dev>.accept_ra to 0, as upstream
// does for the vxlan devices. A device without IPv6 has no such file.
func (h *Handle) DisableAcceptRA(dev string) error {
	path := "/proc/sys/net/ipv6/conf/" + dev + "/accept_ra"
	return h.inNetns(func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		if strings.TrimSpace(string(b)) == "0" {
			return nil
		}
		if err := os.WriteFile(path, []byte("0"), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		return nil
	})
}

// Legacy ethtool commands (linux/ethtool.h): get and set TX checksumming
// as a whole, what `ethtool -K dev tx off` changes.
const (
	ethtoolGTXCSUM = 0x16
	ethtoolSTXCSUM = 0x17
)

type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqData is struct ifreq with its ifr_data member.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

func ethtool(fd int, dev string, v *ethtoolValue) error {
	if len(dev) >= unix.IFNAMSIZ {
		return fmt.Errorf("interface name %q too long", dev)
	}
	var ifr ifreqData
	copy(ifr.name[:], dev)
	ifr.data = unsafe.Pointer(v)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(v)
	if errno != 0 {
		return errno
	}
	return nil
}

// SetTxChecksum turns TX checksum offload of dev on or off (SIOCETHTOOL,
// no ethtool binary). It reports whether it changed anything.
func (h *Handle) SetTxChecksum(dev string, on bool) (changed bool, err error) {
	err = h.inNetns(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open ethtool socket: %w", err)
		}
		defer unix.Close(fd)
		get := ethtoolValue{cmd: ethtoolGTXCSUM}
		if err := ethtool(fd, dev, &get); err != nil {
			return fmt.Errorf("read tx checksum offload of %s: %w", dev, err)
		}
		if (get.data != 0) == on {
			return nil
		}
		set := ethtoolValue{cmd: ethtoolSTXCSUM}
		if on {
			set.data = 1
		}
		if err := ethtool(fd, dev, &set); err != nil {
			return fmt.Errorf("set tx checksum offload of %s to %v: %w", dev, on, err)
		}
		changed = true
		return nil
	})
	return changed, err
}

// TxChecksum reports whether TX checksum offload of dev is on.
func (h *Handle) TxChecksum(dev string) (on bool, err error) {
	err = h.inNetns(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open ethtool socket: %w", err)
		}
		defer unix.Close(fd)
		get := ethtoolValue{cmd: ethtoolGTXCSUM}
		if err := ethtool(fd, dev, &get); err != nil {
			return fmt.Errorf("read tx checksum offload of %s: %w", dev, err)
		}
		on = get.data != 0
		return nil
	})
	return on, err
}
