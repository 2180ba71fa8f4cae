//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/flannelng/flannel/pkg/nsenter"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where iproute2 keeps named network namespaces.
const netnsDir = "/run/netns"

// InNS runs fn on a dedicated, locked OS thread switched into the named
// network namespace. Sockets that fn creates stay in that namespace after fn
// returns, so this is how the test process dials or listens inside the lab.
// Goroutines that fn starts do NOT run in the namespace.
func InNS(ns string, fn func() error) error {
	target, err := netns.GetFromName(ns)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", ns, err)
	}
	defer target.Close()
	return nsenter.Run(target, ns, fn)
}

// withHandle opens a netlink handle inside the named namespace. netlink
// switches a locked thread only while it creates the socket.
func withHandle(ns string, fn func(h *netlink.Handle) error) error {
	nsh, err := netns.GetFromName(ns)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", ns, err)
	}
	defer nsh.Close()
	h, err := netlink.NewHandleAt(nsh)
	if err != nil {
		return fmt.Errorf("netlink handle in %s: %w", ns, err)
	}
	defer h.Close()
	return fn(h)
}

// addNS creates a named network namespace with iproute2, which also sets up
// the /run/netns mount the way every other tool expects, and brings lo up.
func addNS(ctx context.Context, name string) error {
	if out, err := exec.CommandContext(ctx, "ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	err := withHandle(name, func(h *netlink.Handle) error {
		lo, err := h.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("find lo: %w", err)
		}
		if err := h.LinkSetUp(lo); err != nil {
			return fmt.Errorf("set lo up: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("netns %s: %w", name, err)
	}
	return nil
}

// deleteNS removes a named namespace; one that is already gone counts as
// removed. The kernel frees the namespace, and every link in it, once the
// last process inside has exited.
func deleteNS(name string) error {
	if name == "" || strings.ContainsRune(name, '/') {
		return fmt.Errorf("delete netns: bad name %q", name)
	}
	p := filepath.Join(netnsDir, name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmount netns %s: %w", name, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove netns %s: %w", name, err)
	}
	return nil
}

// ListNS returns the named network namespaces that start with prefix+"-",
// sorted: the ones a lab with that prefix made.
func ListNS(prefix string) ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list netns: %w", err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix+"-") {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// writeSysctls sets /proc/sys values inside a namespace: /proc/sys/net
// resolves against the namespace of the thread that opens it.
func writeSysctls(ns string, kv map[string]string) error {
	return InNS(ns, func() error {
		keys := make([]string, 0, len(kv))
		for k := range kv {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := "/proc/sys/" + strings.ReplaceAll(k, ".", "/")
			if err := os.WriteFile(p, []byte(kv[k]), 0o644); err != nil {
				return fmt.Errorf("sysctl %s=%s in %s: %w", k, kv[k], ns, err)
			}
		}
		return nil
	})
}
