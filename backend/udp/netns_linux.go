package udp

import (
	"fmt"

	"github.com/flannelng/flannel/pkg/nsenter"
	"github.com/vishvananda/netns"
)

// nsExec runs the few operations that must happen inside the target
// network namespace itself rather than through a netlink socket opened
// there: opening the TUN device (the device is created in the namespace of
// the thread that opens /dev/net/tun) and creating the UDP socket. The file
// descriptors keep their namespace and work from any thread afterwards.
type nsExec struct {
	path string
	ns   netns.NsHandle // netns.None() for the caller's namespace
}

func openNS(path string) (*nsExec, error) {
	e := &nsExec{path: path, ns: netns.None()}
	if path == "" {
		return e, nil
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	e.ns = ns
	return e, nil
}

func (e *nsExec) close() {
	if e.ns.IsOpen() {
		e.ns.Close()
		e.ns = netns.None()
	}
}

// run calls fn on a dedicated, locked OS thread switched into the
// namespace (see nsenter.Run). Without a namespace path fn runs directly.
func (e *nsExec) run(fn func() error) error { return nsenter.Run(e.ns, e.path, fn) }
