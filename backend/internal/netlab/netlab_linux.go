// Package netlab builds throw-away network namespaces for the backends'
// privileged tests: a "fabric" namespace with a bridge standing for the
// underlay L2 segment, and "host" namespaces attached to it, each with a
// pod-like veth carrying the first address of the host's subnet.
//
// Everything lives in namespaces the test created with internal/testns
// (unique names, removed in t.Cleanup, also on failure); nothing touches the
// root namespace.
package netlab

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/flannelng/flannel/backend"
	"github.com/flannelng/flannel/internal/testns"
	"github.com/flannelng/flannel/pkg/nldump"
)

// RequireRoot skips the test unless it runs as root with iproute2
// (testns.RequireRoot).
func RequireRoot(t testing.TB) { testns.RequireRoot(t) }

// NS is a network namespace made by testns.
type NS = testns.NS

// NewNS makes a namespace with testns.New, removed when the test ends, and
// brings its lo up as the lab's hosts have it.
func NewNS(t testing.TB, prefix string) *NS {
	t.Helper()
	ns := testns.New(t, prefix)
	ns.IP(t, "link", "set", "lo", "up")
	return ns
}

// Host is one simulated node.
type Host struct {
	NS      *NS
	Ext     backend.ExternalInterface
	Subnet  netip.Prefix // IPv4 overlay subnet (its .1 sits on pod0)
	Subnet6 netip.Prefix
}

// PodIP is the first address of the host's subnet (on pod0).
func (h *Host) PodIP() netip.Addr { return h.Subnet.Addr().Next() }

// PodIP6 is the first address of the host's IPv6 subnet.
func (h *Host) PodIP6() netip.Addr { return h.Subnet6.Addr().Next() }

// Lab is a set of hosts on one underlay.
type Lab struct {
	Fabric   *NS
	Hosts    []*Host
	Network  netip.Prefix
	Network6 netip.Prefix
}

// Options shape a lab.
type Options struct {
	Hosts int
	// RoutedLast puts the last host in another underlay subnet
	// (172.30.0.0/24, fd30::/64) that the fabric namespace routes to, so it
	// is not directly reachable from the others.
	RoutedLast bool
	// ExtMTU is the underlay MTU (default 1500).
	ExtMTU int
}

// New builds a lab: the overlay networks are 10.5.0.0/16 and fd10::/48,
// host i (from 0) holds 10.5.<i+1>.0/24 and fd10:0:0:<i+1>::/64, and its
// underlay address is 172.31.0.<i+1>/16 and fd31::<i+1>/64.
func New(t testing.TB, o Options) *Lab {
	t.Helper()
	RequireRoot(t)
	if o.ExtMTU == 0 {
		o.ExtMTU = 1500
	}
	lab := &Lab{
		Network:  netip.MustParsePrefix("10.5.0.0/16"),
		Network6: netip.MustParsePrefix("fd10::/48"),
	}
	fab := NewNS(t, "flt-fab")
	lab.Fabric = fab
	// No multicast snooping: IPv6 neighbour solicitations must not wait
	// for MLD reports.
	fab.IP(t, "link", "add", "br0", "mtu", fmt.Sprint(o.ExtMTU), "type", "bridge", "mcast_snooping", "0")
	fab.IP(t, "link", "set", "br0", "up")
	fab.IP(t, "addr", "add", "172.31.255.254/16", "dev", "br0")
	fab.IP(t, "-6", "addr", "add", "fd31::fffe/64", "dev", "br0", "nodad")
	if o.RoutedLast {
		fab.IP(t, "addr", "add", "172.30.0.254/24", "dev", "br0")
		fab.IP(t, "-6", "addr", "add", "fd30::fffe/64", "dev", "br0", "nodad")
		fab.Sysctl(t, "net.ipv4.ip_forward", "1")
		fab.Sysctl(t, "net.ipv6.conf.all.forwarding", "1")
		fab.Sysctl(t, "net.ipv4.conf.all.send_redirects", "0")
		fab.Sysctl(t, "net.ipv4.conf.br0.send_redirects", "0")
	}
	for i := 0; i < o.Hosts; i++ {
		ns := NewNS(t, fmt.Sprintf("flt-h%d", i))
		port := fmt.Sprintf("p%d", i)
		ns.IP(t, "link", "add", "eth0", "mtu", fmt.Sprint(o.ExtMTU), "type", "veth", "peer", "name", port, "mtu", fmt.Sprint(o.ExtMTU), "netns", fab.Name)
		fab.IP(t, "link", "set", port, "master", "br0", "up")
		ns.IP(t, "link", "set", "eth0", "up")
		v4 := netip.MustParsePrefix(fmt.Sprintf("172.31.0.%d/16", i+1))
		v6 := netip.MustParsePrefix(fmt.Sprintf("fd31::%d/64", i+1))
		gw4, gw6 := "172.31.255.254", "fd31::fffe"
		if o.RoutedLast && i == o.Hosts-1 {
			v4 = netip.MustParsePrefix(fmt.Sprintf("172.30.0.%d/24", i+1))
			v6 = netip.MustParsePrefix(fmt.Sprintf("fd30::%d/64", i+1))
			gw4, gw6 = "172.30.0.254", "fd30::fffe"
		}
		ns.IP(t, "addr", "add", v4.String(), "dev", "eth0")
		ns.IP(t, "-6", "addr", "add", v6.String(), "dev", "eth0", "nodad")
		ns.IP(t, "route", "add", "default", "via", gw4)
		ns.IP(t, "-6", "route", "add", "default", "via", gw6)

		h := &Host{
			NS:      ns,
			Subnet:  netip.MustParsePrefix(fmt.Sprintf("10.5.%d.0/24", i+1)),
			Subnet6: netip.MustParsePrefix(fmt.Sprintf("fd10:0:0:%d::/64", i+1)),
		}
		// A pod-like veth holding the subnet's first address, as cni0
		// would on a real node.
		ns.IP(t, "link", "add", "pod0", "type", "veth", "peer", "name", "pod0p")
		ns.IP(t, "link", "set", "pod0p", "up")
		ns.IP(t, "link", "set", "pod0", "up")
		ns.IP(t, "addr", "add", netip.PrefixFrom(h.PodIP(), 24).String(), "dev", "pod0")
		ns.IP(t, "-6", "addr", "add", netip.PrefixFrom(h.PodIP6(), 64).String(), "dev", "pod0", "nodad")

		nh := ns.Handle(t)
		l, err := nh.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		h.Ext = backend.ExternalInterface{
			Name: "eth0", Index: l.Attrs().Index, MTU: l.Attrs().MTU,
			IfaceAddr: v4.Addr(), IfaceV6Addr: v6.Addr(),
			ExtAddr: v4.Addr(), ExtV6Addr: v6.Addr(),
		}
		lab.Hosts = append(lab.Hosts, h)
	}
	return lab
}

// Ping pings dst from src inside ns (src may be invalid) with
// `ping -c 2 -W 1`, up to three times: the first packets may wait for
// neighbour resolution on the underlay.
func Ping(ns *NS, src, dst netip.Addr) (string, error) {
	args := []string{"ping", "-n", "-c", "2", "-W", "1", "-i", "0.2"}
	if dst.Is6() {
		args = append(args, "-6")
	}
	if src.IsValid() {
		args = append(args, "-I", src.String())
	}
	args = append(args, dst.String())
	var out string
	var err error
	for i := 0; i < 3; i++ {
		if out, err = ns.Exec(args...); err == nil {
			return out, nil
		}
	}
	return out, err
}

// LogBuf collects log output; tests print it when they fail.
type LogBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LogBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Count counts the occurrences of substr in the log.
func (l *LogBuf) Count(substr string) int { return strings.Count(l.String(), substr) }

// Logger returns a debug-level text logger writing to l.
func (l *LogBuf) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// FindRoute returns the main-table route to dst (a prefix in canonical
// form), if any.
func FindRoute(t testing.TB, h *netlink.Handle, dst string) (netlink.Route, bool) {
	t.Helper()
	fam := netlink.FAMILY_V4
	if strings.Contains(dst, ":") {
		fam = netlink.FAMILY_V6
	}
	rs, err := nldump.Retry("list routes", func() ([]netlink.Route, error) { return h.RouteList(nil, fam) })
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Dst != nil && r.Dst.String() == dst {
			return r, true
		}
	}
	return netlink.Route{}, false
}
