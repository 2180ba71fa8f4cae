// Package testns makes throw-away network namespaces for privileged tests,
// the one way every test in this module does it.
//
// A namespace gets a unique name (<prefix>-<8 random hex digits>, so
// parallel tests and packages never collide and a leftover names its test),
// and t.Cleanup removes it, also when the test fails or skips. Tests call
// RequireRoot (New does too) so that plain `go test ./...` skips them
// without root. Nothing here touches the root namespace.
//
// New makes a bare namespace: not even lo is up, as `ip netns add` leaves
// it. What a test needs inside (lo, devices, sysctls) it sets up itself,
// with IP and Sysctl.
package testns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// cmdTimeout bounds every command run here.
const cmdTimeout = 20 * time.Second

// RequireRoot skips the test unless it runs as root on Linux with iproute2.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if runtime.GOOS != "linux" {
		tb.Skip("needs Linux (network namespaces)")
	}
	if os.Geteuid() != 0 {
		tb.Skip("needs root (creates network namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		tb.Skip("needs iproute2's ip")
	}
}

// Run runs a command and fails the test on error.
func Run(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := Try(args...)
	if err != nil {
		tb.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// Try runs a command and returns its combined output.
func Try(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	return string(out), err
}

// NS is a network namespace made by New.
type NS struct {
	Name string // for ip -n and ip netns exec
	Path string // the bind mount, for netns.GetFromPath and backends' NetnsPath
}

// New makes a namespace named <prefix>-<random> and removes it when the
// test ends. It skips the test without root.
func New(tb testing.TB, prefix string) *NS {
	tb.Helper()
	RequireRoot(tb)
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		tb.Fatalf("random namespace name: %v", err)
	}
	name := fmt.Sprintf("%s-%s", prefix, hex.EncodeToString(b[:]))
	Run(tb, "ip", "netns", "add", name)
	tb.Cleanup(func() {
		if out, err := Try("ip", "netns", "del", name); err != nil {
			tb.Errorf("remove network namespace %s: %v\n%s", name, err, out)
		}
	})
	return &NS{Name: name, Path: "/var/run/netns/" + name}
}

// IP runs `ip -n <ns> args...` and fails the test on error.
func (ns *NS) IP(tb testing.TB, args ...string) string {
	tb.Helper()
	return Run(tb, append([]string{"ip", "-n", ns.Name}, args...)...)
}

// Exec runs a command inside the namespace (ip netns exec).
func (ns *NS) Exec(args ...string) (string, error) {
	return Try(append([]string{"ip", "netns", "exec", ns.Name}, args...)...)
}

// Sysctl writes a /proc/sys value inside the namespace.
func (ns *NS) Sysctl(tb testing.TB, key, value string) {
	tb.Helper()
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	if out, err := ns.Exec("sh", "-c", "echo "+value+" > "+path); err != nil {
		tb.Fatalf("sysctl %s=%s in %s: %v %s", key, value, ns.Name, err, out)
	}
}

// NsHandle opens the namespace, closed when the test ends.
func (ns *NS) NsHandle(tb testing.TB) netns.NsHandle {
	tb.Helper()
	h, err := netns.GetFromPath(ns.Path)
	if err != nil {
		tb.Fatalf("open network namespace %s: %v", ns.Name, err)
	}
	tb.Cleanup(func() { h.Close() })
	return h
}

// Handle opens a netlink handle in the namespace, closed when the test
// ends.
func (ns *NS) Handle(tb testing.TB) *netlink.Handle {
	tb.Helper()
	nsh, err := netns.GetFromPath(ns.Path)
	if err != nil {
		tb.Fatal(err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(h.Close)
	return h
}
