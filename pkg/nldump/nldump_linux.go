// Package nldump runs netlink dumps (LinkList, AddrList, RouteList*,
// NeighList), retrying the ones the kernel reports as interrupted.
//
// A dump that a concurrent change interrupts comes back with
// NLM_F_DUMP_INTR; the netlink library then returns what it read together
// with netlink.ErrDumpInterrupted. That partial list must not be trusted: a
// route missing from it would be added twice, or a stale one never removed.
// Every dump in this module goes through Retry.
package nldump

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
)

// Attempts bounds the tries of one dump. Interruptions come from changes
// racing the dump, so a few tries in a row are enough unless something
// rewrites the table constantly, which is then worth an error.
const Attempts = 5

// Retry runs the dump f up to Attempts times while it reports
// netlink.ErrDumpInterrupted. Errors are wrapped with what ("list routes").
func Retry[T any](what string, f func() ([]T, error)) ([]T, error) {
	return RetryN(what, Attempts, f)
}

// RetryN is Retry with a given number of attempts.
func RetryN[T any](what string, attempts int, f func() ([]T, error)) ([]T, error) {
	var err error
	for i := 0; i < attempts; i++ {
		var res []T
		res, err = f()
		if err == nil {
			return res, nil
		}
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
	}
	return nil, fmt.Errorf("%s: interrupted %d times in a row: %w", what, attempts, err)
}
