package kernel

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/flannelng/flannel/internal/testns"
)

// scratchNS makes a namespace for the test (testns: removed afterwards) with
// lo up, and a runner of commands that fails the test on error.
func scratchNS(t *testing.T) (name string, run func(args ...string) string) {
	t.Helper()
	ns := testns.New(t, "flk")
	run = func(args ...string) string {
		t.Helper()
		return testns.Run(t, args...)
	}
	// Without lo up the kernel cannot classify an onlink gateway.
	ns.IP(t, "link", "set", "lo", "up")
	return ns.Name, run
}

// One datagram of writes: each gets the kernel's own answer, a bad one
// does not stop those after it, and the objects are exactly what the
// per-request path makes (the vxlan tests check a second pass finds
// nothing to change).
func TestPrivilegedBatchWriter(t *testing.T) {
	ns, run := scratchNS(t)
	run("ip", "-n", ns, "link", "add", "br0", "type", "bridge")
	run("ip", "-n", ns, "link", "set", "br0", "up")
	run("ip", "-n", ns, "link", "add", "vx0", "type", "vxlan", "id", "9", "dstport", "4789", "nolearning")
	run("ip", "-n", ns, "link", "set", "vx0", "up")
	h, err := Open("/var/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	br, err := h.LinkByName("br0")
	if err != nil {
		t.Fatal(err)
	}
	vx, _ := h.LinkByName("vx0")
	bi, vi := br.Attrs().Index, vx.Attrs().Index
	mac := MAC{0x02, 0xfb, 0, 0, 0, 5}
	ops := []op{
		{kind: opNeighSet, link: bi, ip: addr("10.9.1.0"), mac: mac},
		{kind: opNeighSet, link: bi, ip: addr("fd09:1::"), mac: mac},
		{kind: opFDBSet, link: vi, mac: mac, ip: addr("172.31.9.9")},
		{kind: opRouteSet, route: vxRoute("10.9.1.0/24", bi)},
		{kind: opRouteSet, route: vxRoute("10.9.2.0/24", 9999)}, // no such device
		{kind: opRouteSet, route: Route{Dst: pfx("fd09:2::/64"), Gw: addr("fd09:1::"), LinkIndex: bi, OnLink: true}},
		{kind: opRouteSet, route: vxRoute("10.9.3.0/24", bi)},
	}
	errs := h.setBatch(ops)
	if len(errs) != len(ops) {
		t.Fatalf("%d results for %d writes", len(errs), len(ops))
	}
	for i, err := range errs {
		if i == 4 {
			if !errors.Is(err, unix.ENODEV) {
				t.Errorf("route via a missing device: %v, want ENODEV", err)
			}
			continue
		}
		if err != nil {
			t.Errorf("write %d (%s): %v", i, ops[i].String(), err)
		}
	}
	routes := run("ip", "-n", ns, "route", "show", "proto", "45")
	for _, want := range []string{"10.9.1.0/24 via 10.9.1.0 dev br0 onlink", "10.9.3.0/24 via 10.9.3.0 dev br0 onlink"} {
		if !strings.Contains(routes, want) {
			t.Errorf("routes:\n%s\nwant %q", routes, want)
		}
	}
	if r6 := run("ip", "-n", ns, "-6", "route", "show", "proto", "45"); !strings.Contains(r6, "fd09:2::/64 via fd09:1:: dev br0 metric 1024 onlink") {
		t.Errorf("IPv6 routes:\n%s", r6)
	}
	if n := run("ip", "-n", ns, "neigh", "show", "dev", "br0"); !strings.Contains(n, "10.9.1.0 lladdr 02:fb:00:00:00:05 PERMANENT") ||
		!strings.Contains(n, "fd09:1:: lladdr 02:fb:00:00:00:05 PERMANENT") {
		t.Errorf("neighbours:\n%s", n)
	}
	if f := run("bridge", "-n", ns, "fdb", "show", "dev", "vx0"); !strings.Contains(f, "02:fb:00:00:00:05 dst 172.31.9.9 self permanent") {
		t.Errorf("fdb:\n%s", f)
	}

	// Replacing is idempotent and replaces in place.
	again := []op{{kind: opFDBSet, link: vi, mac: mac, ip: addr("172.31.9.10")}, {kind: opRouteSet, route: vxRoute("10.9.1.0/24", bi)}}
	for i, err := range h.setBatch(again) {
		if err != nil {
			t.Errorf("second batch write %d: %v", i, err)
		}
	}
	if f := run("bridge", "-n", ns, "fdb", "show", "dev", "vx0"); !strings.Contains(f, "dst 172.31.9.10 self permanent") || strings.Contains(f, "172.31.9.9 ") {
		t.Errorf("fdb after replace:\n%s", f)
	}
	if got := h.Stats().Writes; got != uint64(len(ops)+len(again)) {
		t.Errorf("Stats().Writes = %d, want %d", got, len(ops)+len(again))
	}
}
