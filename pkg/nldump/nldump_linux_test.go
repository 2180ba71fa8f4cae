package nldump

import (
	"errors"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestRetry(t *testing.T) {
	calls := 0
	got, err := RetryN("list things", 5, func() ([]int, error) {
		calls++
		if calls < 3 {
			return []int{1}, netlink.ErrDumpInterrupted
		}
		return []int{1, 2}, nil
	})
	if err != nil || len(got) != 2 || calls != 3 {
		t.Fatalf("got %v, %v after %d calls", got, err, calls)
	}

	calls = 0
	_, err = RetryN("list things", 5, func() ([]int, error) {
		calls++
		return nil, netlink.ErrDumpInterrupted
	})
	if !errors.Is(err, netlink.ErrDumpInterrupted) || calls != 5 || !strings.Contains(err.Error(), "interrupted 5 times") {
		t.Fatalf("endless interruption: %v after %d calls", err, calls)
	}

	calls = 0
	_, err = RetryN("list things", 5, func() ([]int, error) {
		calls++
		return nil, unix.EPERM
	})
	if !errors.Is(err, unix.EPERM) || calls != 1 {
		t.Fatalf("other errors must not be retried: %v after %d calls", err, calls)
	}

	calls = 0
	_, err = Retry("list routes", func() ([]int, error) {
		calls++
		return []int{1}, netlink.ErrDumpInterrupted
	})
	if calls != Attempts || !strings.HasPrefix(err.Error(), "list routes: ") {
		t.Fatalf("Retry: %v after %d calls, want %d", err, calls, Attempts)
	}
}
