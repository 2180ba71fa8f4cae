package firewall

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/flannelng/flannel/pkg/nldump"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// BlackholeMetric is the metric of the blackhole route for our own subnet.
// Upstream adds it with metric 0, which breaks the node: with IPv4 a metric-0
// blackhole added before cni0 gets its address shadows the bridge's
// connected route (same metric, listed first), and added after it fails with
// "file exists". A metric above the kernel's prefix routes (0 for IPv4, 256
// for IPv6) and IPv6's default 1024 lets the bridge route win whenever it
// exists; the blackhole only catches traffic for our pods while no bridge
// holds the subnet, so it never leaks out of the default route.
const BlackholeMetric = 4096

// EnsureBlackholeRoute adds `blackhole <subnet> metric BlackholeMetric` to the
// main table of h's namespace unless a blackhole route for subnet exists
// there already (with any metric). It reports whether it added one. A nil h
// means the caller's namespace. It is cheap (one netlink dump), so the
// daemon may call it every resync period, as upstream's
// --ip-blackhole-route loop does.
func EnsureBlackholeRoute(h *netlink.Handle, subnet netip.Prefix) (bool, error) {
	if !subnet.IsValid() {
		return false, fmt.Errorf("blackhole route: invalid subnet %s", subnet)
	}
	subnet = subnet.Masked()
	if h == nil {
		h = &netlink.Handle{}
	}
	fam := netlink.FAMILY_V4
	if subnet.Addr().Is6() && !subnet.Addr().Is4In6() {
		fam = netlink.FAMILY_V6
	}
	dst := &net.IPNet{IP: subnet.Addr().AsSlice(), Mask: net.CIDRMask(subnet.Bits(), subnet.Addr().BitLen())}
	route := netlink.Route{
		Dst:      dst,
		Type:     unix.RTN_BLACKHOLE,
		Table:    unix.RT_TABLE_MAIN,
		Priority: BlackholeMetric,
		Family:   fam,
	}
	// A dump interrupted by a concurrent change may be incomplete; nldump
	// retries it rather than add a duplicate on partial data.
	existing, err := nldump.Retry("list blackhole routes for "+subnet.String(), func() ([]netlink.Route, error) {
		return h.RouteListFiltered(fam, &route, netlink.RT_FILTER_DST|netlink.RT_FILTER_TYPE|netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return false, err
	}
	if len(existing) > 0 {
		return false, nil
	}
	if err := h.RouteAdd(&route); err != nil {
		return false, fmt.Errorf("add blackhole route %s: %w", subnet, err)
	}
	return true, nil
}
