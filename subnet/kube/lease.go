package kube

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/flannelng/flannel/subnet"
)

// ErrUnmanaged is wrapped by NodeLease for a Node whose kube-subnet-manager
// annotation is not exactly "true": no flannel runs there (upstream peers
// ignore "True" too).
var ErrUnmanaged = errors.New("not managed by flannel")

// errNoPodCIDR means the node has no podCIDR yet: node IPAM has not got to
// it. Our own node waits for it instead of exiting (upstream #728).
var errNoPodCIDR = errors.New("no spec.podCIDR")

// PodCIDRs returns a Node's IPv4 and IPv6 subnets the way upstream picks
// its own (spec 3.1): spec.podCIDRs when set, else spec.podCIDR; per
// family the last entry of that family (the API server allows at most one
// of each). A node without any podCIDR gives an error wrapping
// errNoPodCIDR; more than two entries, or one that is not a CIDR, is an
// error that waiting cannot fix (podCIDRs are immutable once set).
func PodCIDRs(n *Node) (v4, v6 netip.Prefix, err error) {
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	switch {
	case len(cidrs) == 0:
		return v4, v6, fmt.Errorf("node %q has %w", n.Name, errNoPodCIDR)
	case len(cidrs) > 2:
		return v4, v6, fmt.Errorf("node %q pod cidrs should be IPv4/IPv6 only or dualstack", n.Name)
	}
	for _, s := range cidrs {
		p, err := parseCIDR(s)
		if err != nil {
			return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("node %q: invalid podCIDR %q", n.Name, s)
		}
		if p.Addr().Is4() {
			v4 = p
		} else {
			v6 = p
		}
	}
	return v4, v6, nil
}

// parseCIDR accepts what a podCIDR can hold: a plain IPv4 or IPv6 CIDR,
// host bits cleared. IPv4-mapped IPv6 and zones are refused: they name no
// family a route could be programmed for.
func parseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if p.Addr().Zone() != "" || p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
	}
	return p.Masked(), nil
}

// contain checks that the podCIDR lies inside the configured network, with
// upstream's text (spec 3.1 step 5), which operators search for.
func contain(network, cidr netip.Prefix, node string, v6 bool) error {
	if network.IsValid() && cidr.Bits() >= network.Bits() && network.Contains(cidr.Addr()) {
		return nil
	}
	if !network.IsValid() {
		network = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if v6 {
			network = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
	}
	fam := ""
	if v6 {
		fam = "IPv6 "
	}
	return fmt.Errorf("subnet %q specified in the flannel net config doesn't contain %q %sPodCIDR of the %q node", network, cidr, fam, node)
}

// ownCIDRs returns our lease's subnets: the podCIDRs of the families the
// config enables, each checked against its network before anything is
// published (upstream publishes first, spec 8).
func ownCIDRs(cfg *subnet.Config, n *Node) (v4, v6 netip.Prefix, err error) {
	a4, a6, err := PodCIDRs(n)
	if err != nil {
		return v4, v6, err
	}
	if cfg.EnableIPv4 {
		if !a4.IsValid() {
			return v4, v6, fmt.Errorf("node %q has no IPv4 podCIDR (spec.podCIDRs %v) but IPv4 is enabled in the net config", n.Name, cidrList(n))
		}
		if err := contain(cfg.Network, a4, n.Name, false); err != nil {
			return v4, v6, err
		}
		v4 = a4
	}
	if cfg.EnableIPv6 {
		if !a6.IsValid() {
			return v4, v6, fmt.Errorf("node %q has no IPv6 podCIDR (spec.podCIDRs %v) but IPv6 is enabled in the net config", n.Name, cidrList(n))
		}
		if err := contain(cfg.IPv6Network, a6, n.Name, true); err != nil {
			return v4, v6, err
		}
		v6 = a6
	}
	return v4, v6, nil
}

func cidrList(n *Node) []string {
	if len(n.Spec.PodCIDRs) > 0 {
		return n.Spec.PodCIDRs
	}
	if n.Spec.PodCIDR != "" {
		return []string{n.Spec.PodCIDR}
	}
	return []string{}
}

// NodeLease converts a Node into the lease a peer holds: for each family
// enabled here (v4, v6), the family's podCIDR, published address and
// backend data. It is lenient where upstream is not: a family whose data
// is missing or invalid is left out instead of dropping the node (a
// dual-stack node keeps its IPv4-only peers), and nothing on the Node can
// make it panic. It fails when the node is not managed (ErrUnmanaged) or
// no enabled family is usable.
func NodeLease(n *Node, k Keys, v4, v6 bool) (subnet.Lease, error) {
	l, problem := nodeLease(n, k, v4, v6)
	if !l.Subnet.IsValid() && !l.IPv6Subnet.IsValid() {
		return subnet.Lease{}, errors.New(problem)
	}
	return l, nil
}

// nodeLease is NodeLease that also says why a family was left out: problem
// is empty when every enabled family made it into the lease. A lease with
// neither subnet valid is unusable. Its errors name the node, and the key
// and value at fault.
func nodeLease(n *Node, k Keys, v4, v6 bool) (l subnet.Lease, problem string) {
	a := n.Annotations // reading a nil map is fine; upstream #818 wrote to it
	if m := a[k.Managed]; m != "true" {
		if m == "" {
			return l, fmt.Sprintf("node %q: %s (no %s annotation)", n.Name, ErrUnmanaged, k.Managed)
		}
		return l, fmt.Sprintf("node %q: %s (%s is %q, not \"true\")", n.Name, ErrUnmanaged, k.Managed, m)
	}
	sn4, sn6, err := PodCIDRs(n)
	if err != nil {
		return l, err.Error()
	}
	l.Attrs.BackendType = a[k.BackendType]
	var problems []string
	if v4 {
		ip, data, err := family(sn4, "IPv4", a, k.PublicIP, k.BackendData, true)
		if err != nil {
			problems = append(problems, err.Error())
		} else {
			l.Subnet, l.Attrs.PublicIP, l.Attrs.BackendData = sn4, ip, data
		}
	}
	if v6 {
		ip, data, err := family(sn6, "IPv6", a, k.PublicIPv6, k.BackendV6Data, false)
		if err != nil {
			problems = append(problems, err.Error())
		} else {
			l.IPv6Subnet, l.Attrs.PublicIPv6, l.Attrs.BackendV6Data = sn6, ip, data
		}
	}
	if len(problems) > 0 {
		problem = fmt.Sprintf("node %q: %s", n.Name, strings.Join(problems, "; "))
	}
	return l, problem
}

// family reads one family's half of a peer's lease.
func family(sn netip.Prefix, name string, a map[string]string, ipKey, dataKey string, is4 bool) (netip.Addr, json.RawMessage, error) {
	if !sn.IsValid() {
		return netip.Addr{}, nil, fmt.Errorf("no %s podCIDR", name)
	}
	v, ok := a[ipKey]
	if !ok {
		return netip.Addr{}, nil, fmt.Errorf("no %s annotation", ipKey)
	}
	ip, err := parseIP(v, is4)
	if err != nil {
		return netip.Addr{}, nil, fmt.Errorf("invalid %s %q", ipKey, v)
	}
	data, ok := rawJSON(a[dataKey])
	if !ok {
		return netip.Addr{}, nil, fmt.Errorf("invalid %s %q (not JSON)", dataKey, a[dataKey])
	}
	return ip, data, nil
}

// parseIP accepts a usable address of one family: IPv4 for is4 (also in
// its IPv4-mapped form, as Go's net.ParseIP does), IPv6 otherwise; never
// the unspecified address, which no packet can be sent to.
func parseIP(s string, is4 bool) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	if is4 {
		ip = ip.Unmap()
	}
	if ip.Zone() != "" || ip.Is4() != is4 || ip.IsUnspecified() {
		return netip.Addr{}, fmt.Errorf("not a usable %s address", map[bool]string{true: "IPv4", false: "IPv6"}[is4])
	}
	return ip, nil
}

// rawJSON turns a backend-data value into a lease's BackendData: nil for
// an absent or "null" value (host-gw, udp), the compacted JSON otherwise;
// ok is false for a value that is not JSON.
func rawJSON(s string) (json.RawMessage, bool) {
	if s == "" || s == "null" {
		return nil, true
	}
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		return nil, false
	}
	return b.Bytes(), true
}

// ownAttrs reads back what our node published (Previous): a value that does
// not parse is left zero, so that a damaged annotation never stops the
// start; the backend then makes a new MAC.
func ownAttrs(n *Node, k Keys) *subnet.LeaseAttrs {
	a := n.Annotations
	if a[k.Managed] != "true" {
		return nil
	}
	attrs := &subnet.LeaseAttrs{BackendType: a[k.BackendType]}
	if ip, err := parseIP(a[k.PublicIP], true); err == nil {
		attrs.PublicIP = ip
	}
	if ip, err := parseIP(a[k.PublicIPv6], false); err == nil {
		attrs.PublicIPv6 = ip
	}
	attrs.BackendData, _ = rawJSON(a[k.BackendData])
	attrs.BackendV6Data, _ = rawJSON(a[k.BackendV6Data])
	return attrs
}
