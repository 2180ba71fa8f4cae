package vxlan

import (
	"fmt"
	"net/netip"

	"github.com/flannelng/flannel/backend/kernel"
	"github.com/flannelng/flannel/subnet"
)

// familyPlan is one address family's device, as the wanted state needs it.
type familyPlan struct {
	enabled  bool
	devIndex int          // ifindex of flannel.N / flannel-v6.N; 0 while missing
	own      netip.Prefix // our own subnet in this family
	public   netip.Addr   // our own public address in this family
}

// planner turns leases into wanted kernel rows. It is pure: the only
// kernel question (is this public IP directly reachable?) comes through
// direct.
type planner struct {
	vni           int
	directRouting bool
	v4, v6        familyPlan
	// direct reports whether addr is on a directly connected network and
	// through which link; only called when directRouting is set.
	direct func(addr netip.Addr) (linkIndex int, ok bool)
}

// state computes the rows for the remote leases. skipped maps a lease key
// to the reason (part of) the lease was not programmed.
func (p planner) state(peers []subnet.Lease) (st kernel.State, skipped map[string]string) {
	skipped = map[string]string{}
	n := len(peers)
	st.Routes = make([]kernel.Route, 0, n)
	st.Neighs = make([]kernel.Neigh, 0, n)
	st.FDB = make([]kernel.FDB, 0, n)
	own4, own6 := p.v4.own.Masked(), p.v6.own.Masked()
	for _, l := range peers {
		if l.Attrs.BackendType != BackendType {
			skipped[l.Key()] = fmt.Sprintf("ignoring non-vxlan v4Subnet(%s) v6Subnet(%s): type=%v",
				prefixOrNone(l.Subnet), prefixOrNone(l.IPv6Subnet), l.Attrs.BackendType)
			continue
		}
		if p.v4.enabled && l.Subnet.IsValid() && l.Subnet.Masked() != own4 {
			if why := p.add(&st, p.v4, l.Subnet, l.Attrs.PublicIP, l.Attrs.BackendData); why != "" {
				skipped[l.Key()] = fmt.Sprintf("ignoring IPv4 part of vxlan lease %s: %s", l.Key(), why)
			}
		}
		if p.v6.enabled && l.IPv6Subnet.IsValid() && l.IPv6Subnet.Masked() != own6 {
			if why := p.add(&st, p.v6, l.IPv6Subnet, l.Attrs.PublicIPv6, l.Attrs.BackendV6Data); why != "" {
				if old := skipped[l.Key()]; old != "" {
					why = old + "; IPv6 part: " + why
				} else {
					why = fmt.Sprintf("ignoring IPv6 part of vxlan lease %s: %s", l.Key(), why)
				}
				skipped[l.Key()] = why
			}
		}
	}
	return st, skipped
}

// add appends the rows of one family of one lease, or says why not.
func (p planner) add(st *kernel.State, f familyPlan, sn netip.Prefix, public netip.Addr, data []byte) string {
	sn = sn.Masked()
	if !public.IsValid() {
		return "no public IP"
	}
	if public == f.public {
		// Our previous lease living out its TTL, or a node configured
		// with our address: an FDB entry to ourselves would send our
		// frames back into our own device. The udp backend skips these
		// too.
		return fmt.Sprintf("it has our own public IP %s", public)
	}
	vni, mac, err := decodeBackendData(data)
	if err != nil {
		return err.Error()
	}
	// flannel v0.11 writes no VNI (its BackendData is only the VtepMAC,
	// etcd-v2 spec 1.2), and upstream never compares it: an absent VNI is
	// a v0.11 peer on the same network, not a mismatch.
	if vni != p.vni && vni != 0 {
		return fmt.Sprintf("VNI %d differs from ours (%d)", vni, p.vni)
	}
	if err := checkVtepMAC(mac); err != nil {
		return err.Error()
	}
	if p.directRouting && p.direct != nil {
		if link, ok := p.direct(public); ok {
			st.Routes = append(st.Routes, kernel.Route{Dst: sn, Gw: public, LinkIndex: link})
			return ""
		}
	}
	if f.devIndex == 0 {
		// The device is missing; the pass that recreates it adds these.
		return ""
	}
	vtep := sn.Addr()
	st.Neighs = append(st.Neighs, kernel.Neigh{LinkIndex: f.devIndex, IP: vtep, MAC: mac})
	st.FDB = append(st.FDB, kernel.FDB{LinkIndex: f.devIndex, MAC: mac, Dst: public})
	st.Routes = append(st.Routes, kernel.Route{Dst: sn, Gw: vtep, LinkIndex: f.devIndex, OnLink: true})
	return ""
}

func prefixOrNone(p netip.Prefix) string {
	if !p.IsValid() {
		return "<nil>"
	}
	return p.String()
}
