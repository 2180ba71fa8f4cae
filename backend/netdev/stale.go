package netdev

import "net/netip"

// Stale reports whether address p found on the device must go: an IPv4
// address inside the overlay network that is not ours (a previous lease's),
// or any IPv6 address but a link-local one. Addresses outside the network
// are someone else's and stay.
func Stale(w Want, p netip.Prefix) bool {
	if p == w.Addr {
		return false
	}
	if p.Addr().Is6() {
		return !p.Addr().IsLinkLocalUnicast()
	}
	return w.Network.IsValid() && w.Network.Contains(p.Addr())
}
