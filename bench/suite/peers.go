package suite

import (
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/flannelng/flannel/subnet"
)

// Backends the suite knows how to check.
const (
	VXLAN  = "vxlan"
	HostGW = "host-gw"
)

// Network is the overlay of the scale runs: /24 subnets in a /8 leave room
// for the 20,000-peer case. The daemon under test picks its own subnet
// among the first free ones from SubnetMin (10.0.1.0), below every fake peer.
const Network = "10.0.0.0/8"

// MaxPeers bounds the fake peer index: public IPs 172.30.100.1 to
// 172.30.255.250 (250 per /24, below the fabric's 172.30.255.254) and
// subnets 10.1.0.0 to 10.255.255.0.
const MaxPeers = 156 * 250

// NetConfig is the etcd network config of a scale run.
func NetConfig(backend string) string {
	return fmt.Sprintf(`{"Network":%q,"SubnetLen":24,"Backend":{"Type":%q}}`, Network, backend)
}

// Peer is a fake node: a lease in etcd for a machine that does not exist.
// Nothing is ever sent to it; the daemon under test only programs kernel
// entries for it.
type Peer struct {
	Index    int
	Subnet   netip.Prefix // 10.(1+i/256).(i%256).0/24
	PublicIP netip.Addr   // 172.30.(100+i/250).(i%250+1): on the lab's underlay /16, so host-gw gateways are on-link
	MAC      [6]byte      // 02:fb:00:i>>16:i>>8:i, distinct, locally administered
}

// FakePeer returns the i-th fake peer.
func FakePeer(i int) (Peer, error) {
	if i < 0 || i >= MaxPeers {
		return Peer{}, fmt.Errorf("fake peer index %d: want 0 to %d", i, MaxPeers-1)
	}
	return Peer{
		Index:    i,
		Subnet:   netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(1 + i/256), byte(i % 256), 0}), 24),
		PublicIP: netip.AddrFrom4([4]byte{172, 30, byte(100 + i/250), byte(i%250 + 1)}),
		MAC:      [6]byte{0x02, 0xfb, 0x00, byte(i >> 16), byte(i >> 8), byte(i)},
	}, nil
}

// FakePeers returns peers first .. first+n-1.
func FakePeers(first, n int) ([]Peer, error) {
	if n < 0 {
		return nil, fmt.Errorf("fake peers: negative count %d", n)
	}
	out := make([]Peer, n)
	for j := range out {
		p, err := FakePeer(first + j)
		if err != nil {
			return nil, err
		}
		out[j] = p
	}
	return out, nil
}

// MACString formats the MAC as the lease's VtepMAC.
func (p Peer) MACString() string {
	m := p.MAC
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}

// Key is the lease key below <prefix>/subnets/, upstream's "10.1.2.0-24".
func (p Peer) Key() string { return subnet.MakeKey(p.Subnet, netip.Prefix{}) }

// Value is the lease value exactly as an upstream node of the backend
// writes it, e.g.
// {"PublicIP":"172.30.100.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:fb:00:00:00:00"}}.
func (p Peer) Value(backend string) (string, error) {
	a := subnet.LeaseAttrs{PublicIP: p.PublicIP, BackendType: backend}
	switch backend {
	case VXLAN:
		// Upstream's vxlanLeaseAttrs field order: VNI, then VtepMAC.
		data, err := json.Marshal(struct {
			VNI     int
			VtepMAC string
		}{1, p.MACString()})
		if err != nil {
			return "", err
		}
		a.BackendData = data
	case HostGW:
	default:
		return "", fmt.Errorf("backend %q: the suite knows vxlan and host-gw", backend)
	}
	b, err := subnet.EncodeAttrs(a)
	if err != nil {
		return "", fmt.Errorf("encode lease of fake peer %d: %w", p.Index, err)
	}
	return string(b), nil
}
