// Package wireguard is flannel's wireguard backend: pod traffic between
// nodes is encrypted by WireGuard devices named as upstream names them
// (flannel-wg, and flannel-wg-v6 in the default "separate" mode), with
// upstream's keys, MTU, lease data and peer programming, so our nodes and
// upstream's share one network.
//
// Beyond upstream:
//
//   - Where the kernel has no WireGuard, an embedded userspace device
//     (wireguard-go on a TUN, with its UAPI socket under
//     /var/run/wireguard so `wg show` and wgctrl see it) replaces the
//     kernel's; Backend.Implementation forces one or the other.
//   - Peers are declarative: every pass diffs the peers the leases want
//     (key, endpoint, allowed IPs, keepalive, PSK) against the device and
//     changes only the difference. A peer whose key changed (a reboot
//     empties /run and with it the key file) loses its old entry instead
//     of keeping it forever, and a peer removed by hand comes back within a
//     second. WireGuard has no netlink notifications for peers, so a
//     goroutine reads the device's peers every second (in-process for the
//     userspace device, one generic-netlink dump for the kernel's) and asks
//     for a pass when they differ from the wanted ones.
//   - The overlay route through the device is a row of package
//     backend/kernel, so its deletion is repaired as host-gw's routes are.
//   - A kernel device that survives a restart is adopted, not recreated,
//     so a restart costs no handshake and drops nothing.
package wireguard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// BackendType is the lease BackendType of this backend.
const BackendType = "wireguard"

// Device names, as upstream names them.
const (
	DeviceName   = "flannel-wg"
	DeviceNameV6 = "flannel-wg-v6"
)

// Defaults from upstream.
const (
	DefaultListenPort   = 51820
	DefaultListenPortV6 = 51821
)

// overhead is what upstream subtracts from the underlay MTU for both
// families: outer IPv6 (40) + UDP (8) + WireGuard header (32). Over IPv4
// 60 would do; we keep 80 so that pods on our nodes and upstream's agree.
const overhead = 80

// minTunnelMTU is the smallest device MTU we accept (IPv4's minimum); an
// IPv6 device needs 1280.
const minTunnelMTU = 68

// Mode values (Backend.Mode), case-sensitive as upstream's.
const (
	ModeSeparate = "separate" // one device per family
	ModeAuto     = "auto"     // one device; per peer, v4 or v6 endpoint
	ModeIPv4     = "ipv4"     // one device, v4 endpoints
	ModeIPv6     = "ipv6"     // one device, v6 endpoints
)

// Implementation values (Backend.Implementation): our addition.
const (
	ImplAuto      = "auto"      // the kernel's when it has WireGuard, else userspace
	ImplKernel    = "kernel"    // the kernel's, or fail
	ImplUserspace = "userspace" // the embedded wireguard-go device
)

// DefaultKeyFile is where the private key lives unless $WIREGUARD_KEY_FILE
// says otherwise.
const DefaultKeyFile = "/run/flannel/wgkey"

// KeyFileEnv names the variable that overrides DefaultKeyFile.
const KeyFileEnv = "WIREGUARD_KEY_FILE"

// Options are the wireguard keys of the network config's Backend object.
type Options struct {
	ListenPort   int
	ListenPortV6 int
	// MTU is the underlay MTU (0: the external interface's); devices get
	// MTU - 80.
	MTU int
	// PSK is the preshared key for every peer (nil: none).
	PSK *wgtypes.Key
	// Keepalive is PersistentKeepaliveInterval (0: off).
	Keepalive time.Duration
	Mode      string
	// Implementation is auto, kernel or userspace (our addition).
	Implementation string
}

// errDecode prefixes decode errors as upstream does.
const errDecode = "error decoding backend config"

// ParseOptions reads the Backend object as upstream's encoding/json does:
// keys match case-insensitively, unknown keys (Type) are ignored, and a
// type mismatch is an error.
func ParseOptions(raw json.RawMessage) (Options, error) {
	o := Options{ListenPort: DefaultListenPort, ListenPortV6: DefaultListenPortV6, Mode: ModeSeparate, Implementation: ImplAuto}
	var j struct {
		ListenPort   *int
		ListenPortV6 *int
		MTU          *int
		PSK          *string
		// Upstream decodes a time.Duration from a JSON integer and
		// multiplies it by a second: 25 means 25 s, "25s" and 2.5 are
		// errors. An int64 gives exactly that.
		PersistentKeepaliveInterval *int64
		Mode                        *string
		Implementation              *string
	}
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &j); err != nil {
			return o, fmt.Errorf("%s: %w", errDecode, err)
		}
	}
	if j.ListenPort != nil {
		o.ListenPort = *j.ListenPort
	}
	if j.ListenPortV6 != nil {
		o.ListenPortV6 = *j.ListenPortV6
	}
	// Upstream casts to uint16 without a check; a port that does not fit
	// would advertise one port and bind another.
	for _, p := range []struct {
		name string
		v    int
	}{{"ListenPort", o.ListenPort}, {"ListenPortV6", o.ListenPortV6}} {
		if p.v < 1 || p.v > 65535 {
			return o, fmt.Errorf("invalid Backend.%s %d: must be between 1 and 65535", p.name, p.v)
		}
	}
	if j.MTU != nil {
		o.MTU = *j.MTU
	}
	if o.MTU != 0 && o.MTU-overhead < minTunnelMTU {
		// Upstream sends no MTU then and writes FLANNEL_MTU <= 0.
		return o, fmt.Errorf("invalid Backend.MTU %d: it is the underlay MTU and must be at least %d (0 means the external interface's MTU)", o.MTU, minTunnelMTU+overhead)
	}
	if j.PSK != nil && *j.PSK != "" {
		k, err := wgtypes.ParseKey(*j.PSK)
		if err != nil {
			// Upstream's words. The error names no key material.
			return o, fmt.Errorf("could not parse psk: %w", err)
		}
		o.PSK = &k
	}
	if j.PersistentKeepaliveInterval != nil {
		if *j.PersistentKeepaliveInterval < 0 || *j.PersistentKeepaliveInterval > 65535 {
			return o, fmt.Errorf("invalid Backend.PersistentKeepaliveInterval %d: must be between 0 (off) and 65535 seconds", *j.PersistentKeepaliveInterval)
		}
		o.Keepalive = time.Duration(*j.PersistentKeepaliveInterval) * time.Second
	}
	if j.Mode != nil {
		o.Mode = *j.Mode
	}
	switch o.Mode {
	case ModeSeparate, ModeAuto, ModeIPv4, ModeIPv6:
	default:
		return o, errors.New("no valid Mode configured")
	}
	if j.Implementation != nil {
		o.Implementation = strings.ToLower(strings.TrimSpace(*j.Implementation))
		if o.Implementation == "" {
			o.Implementation = ImplAuto
		}
	}
	switch o.Implementation {
	case ImplAuto, ImplKernel, ImplUserspace:
	default:
		return o, fmt.Errorf("invalid Backend.Implementation %q: must be %q, %q or %q", *j.Implementation, ImplAuto, ImplKernel, ImplUserspace)
	}
	return o, nil
}

// single says whether one device carries both families.
func (o Options) single() bool { return o.Mode != ModeSeparate }

// String describes the options for the log; the PSK is never shown.
func (o Options) String() string {
	return fmt.Sprintf("wireguard config: Mode=%s ListenPort=%d ListenPortV6=%d MTU=%d PersistentKeepaliveInterval=%d PSK=%v Implementation=%s",
		o.Mode, o.ListenPort, o.ListenPortV6, o.MTU, int(o.Keepalive/time.Second), o.PSK != nil, o.Implementation)
}

// leaseData is BackendData / BackendV6Data: {"PublicKey":"…","Port":51820},
// in that field order.
type leaseData struct {
	PublicKey string
	Port      uint16 `json:",omitempty"`
}

func encodeLeaseData(pub wgtypes.Key, port int) (json.RawMessage, error) {
	// Port is always written: upstream writes it, and omitempty would only
	// drop a zero, which ParseOptions refuses.
	return json.Marshal(struct {
		PublicKey string
		Port      uint16
	}{pub.String(), uint16(port)})
}

// decodeLeaseData reads a remote lease's data. Port is 0 in leases of
// flannel < v0.26.6; the caller falls back.
func decodeLeaseData(raw json.RawMessage) (wgtypes.Key, uint16, error) {
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		return wgtypes.Key{}, 0, errors.New("no backend data")
	}
	var d leaseData
	if err := json.Unmarshal(raw, &d); err != nil {
		return wgtypes.Key{}, 0, fmt.Errorf("failed to unmarshal BackendData: %w", err)
	}
	k, err := wgtypes.ParseKey(d.PublicKey)
	if err != nil {
		return wgtypes.Key{}, 0, fmt.Errorf("malformed PublicKey %q: %w", d.PublicKey, err)
	}
	return k, d.Port, nil
}
