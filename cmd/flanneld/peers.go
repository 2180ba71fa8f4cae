package main

import (
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/flannelng/flannel/subnet"
)

// peerFilter keeps leases that must never reach the data plane away from
// it. Our allocator never hands them out, but any program can write under
// <prefix>/subnets/:
//   - a subnet outside the network: its route would capture traffic that is
//     not the overlay's, up to the underlay itself (a lease for
//     172.30.0.0/16 replaces the route to the other nodes);
//   - a subnet overlapping our own: a more specific route would send our
//     own pods' traffic away from cni0;
//   - a subnet of another length overlapping a lease of the configured
//     length: it would take part of that node's pods. Leases of the
//     configured length never overlap each other (equal lengths overlap
//     only when equal, and that is one key), so the odd one is the
//     intruder; upstream's allocator, which ignores other lengths, could
//     also have handed it out after the config changed.
//
// Each skipped lease is logged once (again only if its reason changes).
// Not safe for concurrent use; the daemon's main loop owns it.
type peerFilter struct {
	cfg    *subnet.Config
	own    subnet.Lease
	log    *slog.Logger
	logged map[string]string // lease key -> reason logged
}

func newPeerFilter(cfg *subnet.Config, own subnet.Lease, log *slog.Logger) *peerFilter {
	return &peerFilter{cfg: cfg, own: own, log: log, logged: map[string]string{}}
}

// family is one address family's view: the network, the configured subnet
// length, our own subnet and the standard-length leases inside the network.
type family struct {
	name    string
	network netip.Prefix
	bits    int
	own     netip.Prefix
	held    []netip.Prefix
}

// filter returns the usable leases of peers, in place.
func (f *peerFilter) filter(peers []subnet.Lease) []subnet.Lease {
	var fams []*family
	v4 := &family{name: "IPv4", network: f.cfg.Network, bits: f.cfg.SubnetLen, own: f.own.Subnet}
	v6 := &family{name: "IPv6", network: f.cfg.IPv6Network, bits: f.cfg.IPv6SubnetLen, own: f.own.IPv6Subnet}
	if f.cfg.EnableIPv4 {
		fams = append(fams, v4)
	}
	if f.cfg.EnableIPv6 {
		fams = append(fams, v6)
	}
	for _, l := range peers {
		for _, fam := range fams {
			if sn := fam.pick(l); sn.IsValid() && sn.Bits() == fam.bits && fam.network.Contains(sn.Addr()) {
				fam.held = append(fam.held, sn)
			}
		}
	}
	out := peers[:0]
	logged := make(map[string]string, len(f.logged))
	for _, l := range peers {
		why := ""
		for _, fam := range fams {
			if why = fam.check(fam.pick(l)); why != "" {
				break
			}
		}
		if why == "" {
			out = append(out, l)
			continue
		}
		key := l.Key()
		if f.logged[key] != why {
			f.log.Warn("Ignoring lease: "+why, "lease", key, "publicIP", l.Attrs.PublicIP)
		}
		logged[key] = why
	}
	f.logged = logged
	return out
}

func (fam *family) pick(l subnet.Lease) netip.Prefix {
	if fam.name == "IPv6" {
		return l.IPv6Subnet
	}
	return l.Subnet
}

// check says why sn must not be programmed, or "".
func (fam *family) check(sn netip.Prefix) string {
	switch {
	case !sn.IsValid():
		return ""
	case sn.Bits() < fam.network.Bits() || !fam.network.Contains(sn.Addr()):
		return fmt.Sprintf("its %s subnet %s is outside the network %s", fam.name, sn, fam.network)
	case fam.own.IsValid() && sn.Overlaps(fam.own):
		return fmt.Sprintf("its %s subnet %s overlaps our own subnet %s", fam.name, sn, fam.own)
	case sn.Bits() != fam.bits:
		for _, h := range fam.held {
			if sn.Overlaps(h) {
				return fmt.Sprintf("its %s subnet %s overlaps the lease of %s, which has the configured length /%d", fam.name, sn, h, fam.bits)
			}
		}
	}
	return ""
}
