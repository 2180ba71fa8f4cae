// Package udp is flannel's original backend: a userspace relay between a
// TUN device, flannel0, and a UDP socket on port 8285. Every IP packet the
// kernel routes into flannel0 (a route for the whole overlay network points
// there) is looked up among the remote leases and sent, unchanged but for a
// decremented TTL, as the payload of one UDP datagram to the owner's
// PublicIP:8285; every datagram received is written back into flannel0.
// That is upstream's wire format exactly, so mixed clusters work.
//
// Upstream's relay is a C loop reached through cgo (amd64 only); this one is
// pure Go and differs where upstream is weak (see README.md): the device is
// persistent, so a restarted daemon re-attaches to it and the route never
// disappears; the route, address and device are reconciled (package
// backend/kernel) and come back when deleted; the lookup is a prefix table
// swapped atomically on every Reconcile instead of a linear scan; and the
// per-packet path does not allocate.
package udp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/flannelng/flannel/backend"
	"github.com/flannelng/flannel/subnet"
)

// BackendType is the backend's name (Backend.Type). Its leases carry no
// BackendType, as upstream's (see leaseAttrs); leases with BackendType
// "udp", which our earlier versions wrote, are udp peers as well.
const BackendType = "udp"

// DefaultPort is upstream's UDP port.
const DefaultPort = 8285

// DeviceName is the TUN device's name, as upstream's first flannel%d.
const DeviceName = "flannel0"

// encapOverhead is what the relay adds to each packet on the underlay: an
// IPv4 header (20) and a UDP header (8).
const encapOverhead = 28

// minTunnelMTU is IPv4's minimum link MTU.
const minTunnelMTU = 68

// Options are the udp keys of the network config's Backend object.
type Options struct {
	Port int
}

// ParseOptions reads the Backend object. Keys match case-insensitively, as
// upstream's JSON decoding does; unknown keys (Type) are ignored. Port 0
// means the default: a socket on a random port would be unreachable.
func ParseOptions(raw json.RawMessage) (Options, error) {
	o := Options{Port: DefaultPort}
	var j struct{ Port *int }
	if len(bytes.TrimSpace(raw)) > 0 && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		if err := json.Unmarshal(raw, &j); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) && te.Field != "" {
				return o, fmt.Errorf("error decoding UDP backend config: Backend.%s must be of type %s, got %s", te.Field, te.Type, te.Value)
			}
			return o, fmt.Errorf("error decoding UDP backend config: %w", err)
		}
	}
	if j.Port != nil && *j.Port != 0 {
		o.Port = *j.Port
	}
	if o.Port < 1 || o.Port > 65535 {
		return o, fmt.Errorf("invalid Backend.Port %d: must be between 1 and 65535 (0 or absent means %d)", o.Port, DefaultPort)
	}
	return o, nil
}

// checkConfig refuses what the udp backend cannot carry.
func checkConfig(cfg backend.Config) error {
	if cfg.EnableIPv6 {
		return errors.New("udp backend: IPv6 is not supported (EnableIPv6 is set); upstream's udp backend is IPv4-only too: use the vxlan or host-gw backend for IPv6")
	}
	if !cfg.EnableIPv4 {
		return errors.New("udp backend: IPv4 is not enabled")
	}
	if !cfg.Network.IsValid() || !cfg.Network.Addr().Is4() {
		return fmt.Errorf("udp backend: network %v is not an IPv4 prefix", cfg.Network)
	}
	if !cfg.Ext.IfaceAddr.Is4() {
		return fmt.Errorf("udp backend: external interface %s has no IPv4 address to bind the UDP socket to", cfg.Ext.Name)
	}
	if !cfg.Ext.ExtAddr.Is4() {
		return fmt.Errorf("udp backend: external interface %s has no IPv4 public address", cfg.Ext.Name)
	}
	if cfg.Ext.MTU-encapOverhead < minTunnelMTU {
		return fmt.Errorf("udp backend: MTU %d of external interface %s leaves %d for %s, below IPv4's minimum %d",
			cfg.Ext.MTU, cfg.Ext.Name, cfg.Ext.MTU-encapOverhead, DeviceName, minTunnelMTU)
	}
	return nil
}

// leaseAttrs is what our lease advertises: the public IP and no
// BackendType, byte for byte upstream's udp lease. In Kubernetes mode that
// is the empty backend-type annotation upstream writes too.
func leaseAttrs(cfg backend.Config) subnet.LeaseAttrs {
	return subnet.LeaseAttrs{PublicIP: cfg.Ext.ExtAddr}
}
