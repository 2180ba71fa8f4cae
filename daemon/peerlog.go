package daemon

import (
	"context"
	"log/slog"
	"net/netip"

	"github.com/flannelng/flannel/subnet"
)

// LevelPeers is the level of the one line per peer added, changed or
// removed: flanneld -v=2 shows it (-v=N enables slog level Info-N), the
// default level (-v=0) does not, so a 5,000-node cluster's start costs no
// 5,000 lines unless the operator asks.
const LevelPeers = slog.LevelInfo - 2

// peerKey identifies a peer as its lease key does: by its subnets.
type peerKey struct{ v4, v6 netip.Prefix }

func keyOf(l subnet.Lease) peerKey { return peerKey{l.Subnet, l.IPv6Subnet} }

// peerLog logs the peers handed to the backend, one line per peer added,
// changed or removed, on full passes and on the delta path alike: it
// remembers what it logged, so a full pass logs only what differs from
// what the deltas before it logged. It keeps nothing, and costs nothing,
// when LevelPeers is off.
type peerLog struct {
	log   *slog.Logger
	known map[peerKey]subnet.Lease // nil when the level is off
}

func newPeerLog(log *slog.Logger) *peerLog {
	p := &peerLog{log: log}
	if log.Enabled(context.Background(), LevelPeers) {
		p.known = map[peerKey]subnet.Lease{}
	}
	return p
}

// full logs the difference between the peers logged so far and peers, the
// whole set a full pass hands to the backend.
func (p *peerLog) full(peers []subnet.Lease) {
	if p.known == nil {
		return
	}
	seen := make(map[peerKey]bool, len(peers))
	for _, l := range peers {
		seen[keyOf(l)] = true
		p.came(l)
	}
	for k, l := range p.known {
		if !seen[k] {
			p.line("Peer removed", l)
			delete(p.known, k)
		}
	}
}

// delta logs a change the backend's delta path applied: a lease in both
// gone and came changed, one only in gone was removed.
func (p *peerLog) delta(gone, came []subnet.Lease) {
	if p.known == nil {
		return
	}
	back := make(map[peerKey]bool, len(came))
	for _, l := range came {
		back[keyOf(l)] = true
	}
	for _, l := range gone {
		if k := keyOf(l); !back[k] {
			if old, ok := p.known[k]; ok {
				l = old
			}
			p.line("Peer removed", l)
			delete(p.known, k)
		}
	}
	for _, l := range came {
		p.came(l)
	}
}

// came logs l as added or changed, or not at all when it is what was
// logged last.
func (p *peerLog) came(l subnet.Lease) {
	k := keyOf(l)
	old, ok := p.known[k]
	switch {
	case !ok:
		p.line("Peer added", l)
	case !sameAttrs(old.Attrs, l.Attrs):
		p.line("Peer changed", l, "was", attrsText(old.Attrs))
	default:
		return
	}
	p.known[k] = l
}

func (p *peerLog) line(msg string, l subnet.Lease, extra ...any) {
	attrs := make([]any, 0, 12)
	if l.Subnet.IsValid() {
		attrs = append(attrs, "subnet", l.Subnet)
	}
	if l.IPv6Subnet.IsValid() {
		attrs = append(attrs, "ipv6Subnet", l.IPv6Subnet)
	}
	if l.Attrs.PublicIP.IsValid() {
		attrs = append(attrs, "publicIP", l.Attrs.PublicIP)
	}
	if l.Attrs.PublicIPv6.IsValid() {
		attrs = append(attrs, "publicIPv6", l.Attrs.PublicIPv6)
	}
	attrs = append(attrs, "backend", l.Attrs.BackendType)
	p.log.Log(context.Background(), LevelPeers, msg, append(attrs, extra...)...)
}

// sameAttrs compares what a backend programs from: the addresses, the
// type and its data (a vxlan VTEP MAC, a wireguard key).
func sameAttrs(a, b subnet.LeaseAttrs) bool {
	return a.PublicIP == b.PublicIP && a.PublicIPv6 == b.PublicIPv6 && a.BackendType == b.BackendType &&
		string(a.BackendData) == string(b.BackendData) && string(a.BackendV6Data) == string(b.BackendV6Data)
}

// attrsText is a changed peer's previous attributes, for its log line.
func attrsText(a subnet.LeaseAttrs) string {
	s := "publicIP=" + a.PublicIP.String()
	if a.PublicIPv6.IsValid() {
		s += " publicIPv6=" + a.PublicIPv6.String()
	}
	s += " backend=" + a.BackendType
	if len(a.BackendData) > 0 {
		s += " backendData=" + string(a.BackendData)
	}
	if len(a.BackendV6Data) > 0 {
		s += " backendV6Data=" + string(a.BackendV6Data)
	}
	return s
}
