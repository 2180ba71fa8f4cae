package udp

import (
	"errors"
	"fmt"
	"runtime"

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
// namespace, and switches the thread back afterwards. Production code never
// switches a shared thread: the goroutine exists only for fn. Without a
// namespace path fn runs directly.
func (e *nsExec) run(fn func() error) error {
	if !e.ns.IsOpen() {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("get current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(e.ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace %s: %w", e.path, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// The thread stays locked: the runtime destroys it when this
			// goroutine returns, so nothing else runs in the wrong
			// namespace.
			errc <- errors.Join(ferr, fmt.Errorf("return from network namespace %s: %w", e.path, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
