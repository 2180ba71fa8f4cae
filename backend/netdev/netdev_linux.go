package netdev

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/flannelng/flannel/backend/kernel"
)

// Want is the shared part of a tunnel device as a backend wants it.
type Want struct {
	Name string // for error messages
	MTU  int    // 0 leaves the MTU alone
	// Addr is <own subnet network>/32 (/128 for IPv6). While it is
	// invalid (before our lease is known) addresses and link state are
	// left alone: only the MTU is set.
	Addr netip.Prefix
	// Network is the overlay network of Addr's family. IPv4 addresses on
	// the device inside it, other than Addr, are stale (an old lease's)
	// and removed; for IPv6 every address but link-local ones is, as
	// upstream does.
	Network netip.Prefix
}

// Ensure sets the MTU, keeps Addr as the device's only overlay address and
// sets the link up, writing only what differs. link is the device as last
// read (its MTU and flags are compared, not re-read).
func Ensure(h *kernel.Handle, link netlink.Link, w Want) error {
	attrs := link.Attrs()
	if w.MTU > 0 && attrs.MTU != w.MTU {
		if err := h.LinkSetMTU(link, w.MTU); err != nil {
			return fmt.Errorf("set MTU of %s to %d: %w", w.Name, w.MTU, err)
		}
	}
	if !w.Addr.IsValid() {
		return nil
	}
	if err := EnsureAddr(h, link, w); err != nil {
		return err
	}
	if attrs.Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(link); err != nil {
			return fmt.Errorf("set %s up: %w", w.Name, err)
		}
	}
	return nil
}

// EnsureAddr keeps exactly w.Addr among the device's addresses of its
// family that Stale names; every failure is returned, joined.
func EnsureAddr(h *kernel.Handle, link netlink.Link, w Want) error {
	family := unix.AF_INET
	if w.Addr.Addr().Is6() {
		family = unix.AF_INET6
	}
	addrs, err := h.AddrList(link, family)
	if err != nil {
		return err
	}
	found := false
	var errs []error
	for _, a := range addrs {
		p := kernel.PrefixFromIPNet(a.IPNet)
		if p == w.Addr {
			found = true
			continue
		}
		if Stale(w, p) {
			if err := h.AddrDel(link, p); err != nil {
				errs = append(errs, fmt.Errorf("remove stale address %s from %s: %w", p, w.Name, err))
			}
		}
	}
	if !found {
		if err := h.AddrAdd(link, w.Addr); err != nil && !errors.Is(err, unix.EEXIST) {
			errs = append(errs, fmt.Errorf("add address %s to %s: %w", w.Addr, w.Name, err))
		}
	}
	return errors.Join(errs...)
}
