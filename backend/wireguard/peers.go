package wireguard

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/flannelng/flannel/subnet"
)

// Peer is a WireGuard peer as we want it, or as a device holds it.
type Peer struct {
	Key        wgtypes.Key
	Endpoint   netip.AddrPort // invalid: none
	AllowedIPs []netip.Prefix // sorted, masked
	Keepalive  time.Duration
	PSK        wgtypes.Key // zero: none
}

func (p Peer) String() string {
	ips := make([]string, len(p.AllowedIPs))
	for i, a := range p.AllowedIPs {
		ips[i] = a.String()
	}
	return fmt.Sprintf("peer %s endpoint %s allowed-ips %s", p.Key, p.Endpoint, strings.Join(ips, ","))
}

// planner turns remote leases into the peers each device should hold. It
// is pure: no device or kernel is read.
type planner struct {
	opts       Options
	v4, v6     bool
	own4, own6 netip.Prefix // our lease's subnets
	ownKey     wgtypes.Key  // our public key
	ext4, ext6 netip.Addr   // our public addresses (auto mode's choice)
}

// want maps a device name to its peers (sorted by key); skipped maps a
// lease key to why (part of) the lease was not programmed.
func (p planner) want(leases []subnet.Lease) (map[string][]Peer, map[string]string) {
	leases = slices.Clone(leases)
	// Two leases of one node (an old one living out its TTL after a
	// subnet change) name one key; sorting makes the merged peer's
	// endpoint independent of the lease source's order.
	slices.SortFunc(leases, func(a, b subnet.Lease) int { return cmp.Compare(a.Key(), b.Key()) })
	byDev := map[string]map[wgtypes.Key]*Peer{}
	skipped := map[string]string{}
	skip := func(l subnet.Lease, format string, args ...any) {
		if _, done := skipped[l.Key()]; !done {
			skipped[l.Key()] = fmt.Sprintf(format, args...)
		}
	}
	add := func(dev string, pe Peer) {
		m := byDev[dev]
		if m == nil {
			m = map[wgtypes.Key]*Peer{}
			byDev[dev] = m
		}
		if have, ok := m[pe.Key]; ok {
			have.AllowedIPs = append(have.AllowedIPs, pe.AllowedIPs...)
			return
		}
		m[pe.Key] = &pe
	}
	base := Peer{Keepalive: p.opts.Keepalive}
	if p.opts.PSK != nil {
		base.PSK = *p.opts.PSK
	}
	for _, l := range leases {
		if l.Attrs.BackendType != BackendType {
			skip(l, "Ignoring non-wireguard subnet: type=%v", l.Attrs.BackendType)
			continue
		}
		has4 := p.v4 && l.Subnet.IsValid() && l.Subnet.Masked() != p.own4.Masked()
		has6 := p.v6 && l.IPv6Subnet.IsValid() && l.IPv6Subnet.Masked() != p.own6.Masked()
		if !has4 && !has6 {
			continue
		}
		if !p.opts.single() {
			if has4 {
				pe, err := p.endpointPeer(l, false, l.Attrs.BackendData, p.opts.ListenPort)
				if err != nil {
					skip(l, "ignoring IPv4 part of wireguard lease %s: %v", l.Key(), err)
				} else {
					pe.AllowedIPs = []netip.Prefix{l.Subnet.Masked()}
					add(DeviceName, p.with(base, pe))
				}
			}
			if has6 {
				pe, err := p.endpointPeer(l, true, l.Attrs.BackendV6Data, p.opts.ListenPortV6)
				if err != nil {
					skip(l, "ignoring IPv6 part of wireguard lease %s: %v", l.Key(), err)
				} else {
					pe.AllowedIPs = []netip.Prefix{l.IPv6Subnet.Masked()}
					add(DeviceNameV6, p.with(base, pe))
				}
			}
			continue
		}
		pe, err := p.singlePeer(l, has4, has6)
		if err != nil {
			skip(l, "ignoring wireguard lease %s: %v", l.Key(), err)
			continue
		}
		add(DeviceName, p.with(base, pe))
	}
	out := map[string][]Peer{}
	for dev, m := range byDev {
		ps := make([]Peer, 0, len(m))
		for _, pe := range m {
			slices.SortFunc(pe.AllowedIPs, comparePrefix)
			pe.AllowedIPs = slices.Compact(pe.AllowedIPs)
			ps = append(ps, *pe)
		}
		slices.SortFunc(ps, func(a, b Peer) int { return cmp.Compare(a.Key.String(), b.Key.String()) })
		out[dev] = ps
	}
	return out, skipped
}

func (p planner) with(base, pe Peer) Peer {
	pe.Keepalive, pe.PSK = base.Keepalive, base.PSK
	return pe
}

// endpointPeer reads one family's data of a lease in separate mode. A
// Port of 0 (leases of flannel < v0.26.6) falls back to our own device's
// port, as upstream does.
func (p planner) endpointPeer(l subnet.Lease, v6 bool, data []byte, ownPort int) (Peer, error) {
	key, port, err := decodeLeaseData(data)
	if err != nil {
		return Peer{}, err
	}
	if key == p.ownKey {
		return Peer{}, fmt.Errorf("its PublicKey %s is our own (a copied key file?)", key)
	}
	ip := l.Attrs.PublicIP
	if v6 {
		ip = l.Attrs.PublicIPv6
	}
	if !ip.IsValid() || ip.IsUnspecified() || ip.Is6() != v6 {
		return Peer{}, fmt.Errorf("no public IP%s", map[bool]string{true: "v6"}[v6])
	}
	if port == 0 {
		port = uint16(ownPort)
	}
	return Peer{Key: key, Endpoint: netip.AddrPortFrom(ip, port)}, nil
}

// singlePeer is one peer carrying both families (modes auto, ipv4, ipv6).
func (p planner) singlePeer(l subnet.Lease, has4, has6 bool) (Peer, error) {
	// Upstream's key choice: the v6 data's when the lease has IPv6.
	data := l.Attrs.BackendData
	if l.IPv6Subnet.IsValid() && len(l.Attrs.BackendV6Data) > 0 {
		data = l.Attrs.BackendV6Data
	}
	key, _, err := decodeLeaseData(data)
	if err != nil {
		return Peer{}, err
	}
	if key == p.ownKey {
		return Peer{}, fmt.Errorf("its PublicKey %s is our own (a copied key file?)", key)
	}
	// A single device binds only ListenPort, on both families. Upstream
	// dials BackendV6Data's port (ListenPortV6) for a v6 endpoint and so
	// has no tunnel unless the two ports are equal; the port in
	// BackendData is the one really bound.
	_, port4, err4 := decodeLeaseData(l.Attrs.BackendData)
	_, port6, _ := decodeLeaseData(l.Attrs.BackendV6Data)
	port := port4
	if err4 != nil || port == 0 {
		port = port6
	}
	if port == 0 {
		port = uint16(p.opts.ListenPort)
	}
	var ep netip.AddrPort
	switch p.selectV6(l) {
	case true:
		if !l.Attrs.PublicIPv6.Is6() {
			return Peer{}, fmt.Errorf("mode %s needs a public IPv6", p.opts.Mode)
		}
		ep = netip.AddrPortFrom(l.Attrs.PublicIPv6, port)
	default:
		if !l.Attrs.PublicIP.Is4() || l.Attrs.PublicIP.IsUnspecified() {
			return Peer{}, fmt.Errorf("no public IP")
		}
		ep = netip.AddrPortFrom(l.Attrs.PublicIP, port)
	}
	pe := Peer{Key: key, Endpoint: ep}
	if has4 {
		pe.AllowedIPs = append(pe.AllowedIPs, l.Subnet.Masked())
	}
	if has6 {
		pe.AllowedIPs = append(pe.AllowedIPs, l.IPv6Subnet.Masked())
	}
	return pe, nil
}

// selectV6 is upstream's choice of a single-tunnel peer's endpoint family.
func (p planner) selectV6(l subnet.Lease) bool {
	switch p.opts.Mode {
	case ModeIPv4:
		return false
	case ModeIPv6:
		return true
	}
	ula := netip.MustParsePrefix("fc00::/7")
	switch {
	case !l.Attrs.PublicIPv6.IsValid():
		return false
	case l.Attrs.PublicIP.IsValid() && !l.Attrs.PublicIP.IsPrivate() && p.ext4.IsValid():
		return false
	case !ula.Contains(l.Attrs.PublicIPv6) && p.ext6.IsValid() && !ula.Contains(p.ext6):
		return true
	}
	return false
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

// diffPeers returns the changes that turn the device's peers (have) into
// the wanted ones: peers nobody wants are removed first (a peer whose key
// changed leaves its old entry behind otherwise, and its allowed IPs must
// be free for the new one), then missing peers are added and wrong ones
// corrected, each with only what differs.
//
// Endpoints are special: WireGuard updates a peer's endpoint when the peer
// roams (behind NAT, the source port we see is not the one it advertises),
// so an endpoint is written only when the peer is new or has none, or when
// the lease's endpoint differs from the one we last wrote (lastEP).
func diffPeers(want, have []Peer, lastEP map[wgtypes.Key]netip.AddrPort) []wgtypes.PeerConfig {
	haveBy := make(map[wgtypes.Key]Peer, len(have))
	for _, h := range have {
		haveBy[h.Key] = h
	}
	wantBy := make(map[wgtypes.Key]bool, len(want))
	for _, w := range want {
		wantBy[w.Key] = true
	}
	var out []wgtypes.PeerConfig
	for _, h := range have {
		if !wantBy[h.Key] {
			out = append(out, wgtypes.PeerConfig{PublicKey: h.Key, Remove: true})
		}
	}
	for _, w := range want {
		h, ok := haveBy[w.Key]
		pc := wgtypes.PeerConfig{PublicKey: w.Key}
		changed := false
		if !ok || !slices.Equal(sortedPrefixes(h.AllowedIPs), w.AllowedIPs) {
			pc.ReplaceAllowedIPs = true
			pc.AllowedIPs = ipNets(w.AllowedIPs)
			changed = true
		}
		if !ok || h.Keepalive != w.Keepalive {
			ka := w.Keepalive
			pc.PersistentKeepaliveInterval = &ka
			changed = true
		}
		if !ok || h.PSK != w.PSK {
			psk := w.PSK
			pc.PresharedKey = &psk
			changed = true
		}
		if w.Endpoint.IsValid() && (!ok || !h.Endpoint.IsValid() || lastEP[w.Key] != w.Endpoint) && h.Endpoint != w.Endpoint {
			pc.Endpoint = net.UDPAddrFromAddrPort(w.Endpoint)
			changed = true
		}
		if changed {
			out = append(out, pc)
		}
	}
	return out
}

func sortedPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		out[i] = p.Masked()
	}
	slices.SortFunc(out, comparePrefix)
	return out
}

func ipNets(ps []netip.Prefix) []net.IPNet {
	out := make([]net.IPNet, len(ps))
	for i, p := range ps {
		out[i] = net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
	}
	return out
}

// peerFromWG converts what wgctrl reports.
func peerFromWG(p wgtypes.Peer) Peer {
	pe := Peer{Key: p.PublicKey, Keepalive: p.PersistentKeepaliveInterval, PSK: p.PresharedKey}
	if p.Endpoint != nil {
		ap := p.Endpoint.AddrPort()
		pe.Endpoint = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	for _, n := range p.AllowedIPs {
		a, ok := netip.AddrFromSlice(n.IP)
		if !ok {
			continue
		}
		bits, _ := n.Mask.Size()
		if a.Is4In6() && bits <= 32 {
			a = a.Unmap()
		}
		pe.AllowedIPs = append(pe.AllowedIPs, netip.PrefixFrom(a, bits).Masked())
	}
	slices.SortFunc(pe.AllowedIPs, comparePrefix)
	return pe
}
