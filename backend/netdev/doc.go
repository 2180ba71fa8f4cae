// Package netdev holds the device set-up every tunnel backend shares: once
// a backend has its link (a vxlan device, a TUN device, an ipip tunnel),
// the MTU, the one overlay address and the link state are the same three
// steps for all of them. vxlan, udp and ipip used to repeat them; each
// copy drifted a little (which addresses count as stale, whether EEXIST is
// an error), so they live here once.
//
// Ensure is idempotent and writes nothing when the device is already
// right, so a backend calls it on every device check.
package netdev
