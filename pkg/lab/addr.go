package lab

import (
	"fmt"
	"net"
	"net/netip"
)

// The underlay every lab uses. It lives only inside the lab's namespaces, so
// all labs can use the same range side by side.
var (
	underlay4 = netip.MustParsePrefix("172.30.0.0/16")
	fabric4   = netip.MustParseAddr("172.30.255.254")
	underlay6 = netip.MustParsePrefix("fd00:30::/64")
	fabric6   = netip.MustParseAddr("fd00:30::ffff:fffe")
)

// maxNodes bounds hosts plus externals: a Linux bridge takes at most 1024
// ports (BR_MAX_PORTS), and the fabric bridge has one port per node.
const maxNodes = 1000

// nodeOffset keeps the first addresses of the range free, so host h1 is
// 172.30.0.11 and addresses read like the node numbers.
const nodeOffset = 10

// nodeAddrs returns the underlay addresses of the node with the given index
// (1-based, shared by hosts and externals).
func nodeAddrs(index int) (v4, v6 netip.Addr, err error) {
	if index < 1 || index > maxNodes {
		return netip.Addr{}, netip.Addr{}, fmt.Errorf("node index %d out of range 1..%d", index, maxNodes)
	}
	n := uint32(index + nodeOffset)
	b4 := underlay4.Addr().As4()
	base := uint32(b4[0])<<24 | uint32(b4[1])<<16 | uint32(b4[2])<<8 | uint32(b4[3])
	a := base + n
	v4 = netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
	b6 := underlay6.Addr().As16()
	b6[14], b6[15] = byte(n>>8), byte(n)
	v6 = netip.AddrFrom16(b6)
	return v4, v6, nil
}

// nthAddr returns the address n places after the network address of p, or an
// error if that is outside p or is p's IPv4 broadcast address.
func nthAddr(p netip.Prefix, n int) (netip.Addr, error) {
	p = p.Masked()
	if n < 1 {
		return netip.Addr{}, fmt.Errorf("address index %d in %s: must be at least 1", n, p)
	}
	a := p.Addr().As16()
	carry := uint64(n)
	for i := 15; i >= 0 && carry > 0; i-- {
		s := uint64(a[i]) + carry&0xff
		a[i] = byte(s)
		carry = carry>>8 + s>>8
	}
	addr := netip.AddrFrom16(a)
	if p.Addr().Is4() {
		addr = addr.Unmap()
	}
	if carry > 0 || !p.Contains(addr) {
		return netip.Addr{}, fmt.Errorf("address index %d does not fit in %s", n, p)
	}
	if addr.Is4() {
		next := addr.Next()
		if !next.IsValid() || !p.Contains(next) {
			return netip.Addr{}, fmt.Errorf("address index %d in %s is the broadcast address", n, p)
		}
	}
	return addr, nil
}

// nodeMAC is the fixed MAC of a node's eth0: locally administered, 02:00
// followed by the node's IPv4 underlay address, so it is unique in the lab
// and the same every time the node is (re)created.
func nodeMAC(v4 netip.Addr) net.HardwareAddr {
	a := v4.As4()
	return net.HardwareAddr{0x02, 0x00, a[0], a[1], a[2], a[3]}
}
