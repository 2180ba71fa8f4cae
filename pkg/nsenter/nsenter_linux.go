// Package nsenter runs a function inside another network namespace without
// ever leaving a shared OS thread in it.
package nsenter

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Run calls fn on a dedicated, locked OS thread switched into ns (named
// name in errors), and switches the thread back afterwards. Sockets and
// devices fn creates keep that namespace; goroutines fn starts do not run
// in it. With a closed ns handle fn runs directly.
func Run(ns netns.NsHandle, name string, fn func() error) error {
	if !ns.IsOpen() {
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
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace %s: %w", name, err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// The thread stays locked: the runtime destroys it when this
			// goroutine returns, so nothing else ever runs in the wrong
			// namespace.
			errc <- errors.Join(ferr, fmt.Errorf("return from network namespace %s: %w", name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
