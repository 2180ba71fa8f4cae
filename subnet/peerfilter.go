package subnet

import (
	"fmt"
	"log/slog"
	"net/netip"
)

// PeerFilter keeps leases that must never reach the data plane away from
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
type PeerFilter struct {
	cfg    *Config
	own    Lease
	log    *slog.Logger
	logged map[string]string // lease key -> reason logged
	// odd counts the leases of another length than the configured one
	// inside the network at the last filter: while there are any, whether
	// a lease is usable depends on the others, and delta declines.
	odd int
}

// NewPeerFilter returns a filter for the network cfg, on the node that
// holds own.
func NewPeerFilter(cfg *Config, own Lease, log *slog.Logger) *PeerFilter {
	return &PeerFilter{cfg: cfg, own: own, log: log, logged: map[string]string{}}
}

// peerFamily is one address family's view: the network, the configured subnet
// length, our own subnet and the standard-length leases inside the network.
type peerFamily struct {
	name    string
	network netip.Prefix
	bits    int
	own     netip.Prefix
	held    []netip.Prefix
}

func (f *PeerFilter) families() []*peerFamily {
	var fams []*peerFamily
	if f.cfg.EnableIPv4 {
		fams = append(fams, &peerFamily{name: "IPv4", network: f.cfg.Network, bits: f.cfg.SubnetLen, own: f.own.Subnet})
	}
	if f.cfg.EnableIPv6 {
		fams = append(fams, &peerFamily{name: "IPv6", network: f.cfg.IPv6Network, bits: f.cfg.IPv6SubnetLen, own: f.own.IPv6Subnet})
	}
	return fams
}

// Filter returns the usable leases of peers, in place.
func (f *PeerFilter) Filter(peers []Lease) []Lease {
	fams := f.families()
	f.odd = 0
	for _, l := range peers {
		for _, fam := range fams {
			sn := fam.pick(l)
			if sn.IsValid() && sn.Bits() == fam.bits && fam.network.Contains(sn.Addr()) {
				fam.held = append(fam.held, sn)
			}
			if fam.odd(sn) {
				f.odd++
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

// Delta is Filter for a change (see backend.Incremental): it returns the
// usable ones of gone (as filter decided when they came) and of came, and
// false when a decision may depend on other leases: a lease of another
// length than the configured one is known or involved. Not-usable leases
// of came are logged as filter logs them.
func (f *PeerFilter) Delta(gone, came []Lease) (usableGone, usableCame []Lease, ok bool) {
	if f.odd > 0 {
		return nil, nil, false
	}
	fams := f.families()
	for _, ls := range [][]Lease{gone, came} {
		for _, l := range ls {
			for _, fam := range fams {
				if fam.odd(fam.pick(l)) {
					return nil, nil, false
				}
			}
		}
	}
	// Without odd lengths, usable is a property of the lease alone.
	why := func(l Lease) string {
		for _, fam := range fams {
			if w := fam.check(fam.pick(l)); w != "" {
				return w
			}
		}
		return ""
	}
	for _, l := range gone {
		delete(f.logged, l.Key())
		if why(l) == "" {
			usableGone = append(usableGone, l)
		}
	}
	for _, l := range came {
		w, key := why(l), l.Key()
		switch {
		case w == "":
			usableCame = append(usableCame, l)
			delete(f.logged, key)
		case f.logged[key] != w:
			f.log.Warn("Ignoring lease: "+w, "lease", key, "publicIP", l.Attrs.PublicIP)
			fallthrough
		default:
			f.logged[key] = w
		}
	}
	return usableGone, usableCame, true
}

// odd reports whether sn lies inside the network with another length
// than the configured one.
func (fam *peerFamily) odd(sn netip.Prefix) bool {
	return sn.IsValid() && sn.Bits() != fam.bits && sn.Bits() >= fam.network.Bits() && fam.network.Contains(sn.Addr())
}

func (fam *peerFamily) pick(l Lease) netip.Prefix {
	if fam.name == "IPv6" {
		return l.IPv6Subnet
	}
	return l.Subnet
}

// check says why sn must not be programmed, or "".
func (fam *peerFamily) check(sn netip.Prefix) string {
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
