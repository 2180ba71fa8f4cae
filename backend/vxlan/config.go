// Package vxlan is flannel's vxlan backend: one vxlan device per address
// family (flannel.<VNI>, flannel-v6.<VNI>) whose VTEP address is the node's
// public IP, and for every remote lease a permanent neighbour entry (remote
// subnet network address → remote VTEP MAC), a permanent FDB entry (remote
// VTEP MAC → remote public IP) and a route `<subnet> via <subnet network>
// dev flannel.<VNI> onlink`, exactly as upstream flanneld programs them, so
// mixed clusters work.
//
// Unlike upstream, the kernel state is reconciled (package backend/kernel):
// each pass computes every wanted object from the current leases and
// changes only what differs; a restart touches nothing that is already
// right; objects deleted behind our back, including the device itself,
// come back within a second; and the VTEP MAC stays the one our lease
// advertises across restarts and device re-creation.
package vxlan

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/flannelng/flannel/backend/kernel"
	"github.com/flannelng/flannel/subnet"
)

// BackendType is the lease BackendType of this backend.
const BackendType = "vxlan"

// Encapsulation overheads: outer IPv4 (20) or IPv6 (40) header, UDP (8),
// VXLAN (8) and the inner Ethernet header (14). The kernel clamps a vxlan
// device over IPv6 to lower MTU - 70.
const (
	overheadV4 = 50
	overheadV6 = 70
)

// minTunnelMTU is the smallest device MTU we accept: IPv6 needs 1280 on
// every link, IPv4 68; we only require the IPv4 minimum and let the IPv6
// device check itself.
const minTunnelMTU = 68

// maxVNI is the largest 24-bit VXLAN network identifier.
const maxVNI = 1<<24 - 1

// ChecksumOffload values.
const (
	ChecksumAuto = "auto" // offload off on known-bad kernels or behind NAT
	ChecksumOn   = "on"   // leave the kernel's setting (offload on)
	ChecksumOff  = "off"  // always turn TX checksum offload off
)

// Options are the vxlan keys of the network config's Backend object.
type Options struct {
	VNI           int
	Port          int // 0: the kernel default 8472
	GBP           bool
	Learning      bool
	DirectRouting bool
	// MTU is the underlay MTU, as upstream means it (0: the external
	// interface's MTU). The devices get MTU - 50 (MTU - 70 over IPv6).
	MTU int
	// ChecksumOffload is "auto" (default), "on" or "off": our addition to
	// work around the vxlan UDP checksum bug (see user-pain-points §3).
	ChecksumOffload string
}

// ParseOptions reads the Backend object. Keys match case-insensitively, as
// upstream's JSON decoding does; unknown keys (Type, Windows-only keys) are
// ignored.
func ParseOptions(raw json.RawMessage) (Options, error) {
	o := Options{VNI: 1}
	var j struct {
		VNI             *int
		Port            *int
		GBP             *bool
		Learning        *bool
		DirectRouting   *bool
		MTU             *int
		ChecksumOffload *string
	}
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &j); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) && te.Field != "" {
				return o, fmt.Errorf("error decoding VXLAN backend config: Backend.%s must be of type %s, got %s", te.Field, te.Type, te.Value)
			}
			return o, fmt.Errorf("error decoding VXLAN backend config: %w", err)
		}
	}
	if j.VNI != nil {
		o.VNI = *j.VNI
	}
	if o.VNI < 0 || o.VNI > maxVNI {
		return o, fmt.Errorf("invalid Backend.VNI %d: must be between 0 and %d", o.VNI, maxVNI)
	}
	if j.Port != nil {
		o.Port = *j.Port
	}
	if o.Port < 0 || o.Port > 65535 {
		return o, fmt.Errorf("invalid Backend.Port %d: must be between 0 (kernel default 8472) and 65535", o.Port)
	}
	if j.MTU != nil {
		o.MTU = *j.MTU
	}
	if o.MTU != 0 && o.MTU-overheadV4 < minTunnelMTU {
		return o, fmt.Errorf("invalid Backend.MTU %d: it is the underlay MTU and must be at least %d (0 means the external interface's MTU)",
			o.MTU, minTunnelMTU+overheadV4)
	}
	o.GBP = j.GBP != nil && *j.GBP
	o.Learning = j.Learning != nil && *j.Learning
	o.DirectRouting = j.DirectRouting != nil && *j.DirectRouting
	o.ChecksumOffload = ChecksumAuto
	if j.ChecksumOffload != nil {
		switch v := strings.ToLower(strings.TrimSpace(*j.ChecksumOffload)); v {
		case "", ChecksumAuto:
		case ChecksumOn, ChecksumOff:
			o.ChecksumOffload = v
		default:
			return o, fmt.Errorf("invalid Backend.ChecksumOffload %q: must be \"auto\", \"on\" or \"off\"", *j.ChecksumOffload)
		}
	}
	return o, nil
}

// String is upstream's start-up log line.
func (o Options) String() string {
	return fmt.Sprintf("VXLAN config: VNI=%d Port=%d GBP=%v Learning=%v DirectRouting=%v",
		o.VNI, o.Port, o.GBP, o.Learning, o.DirectRouting)
}

// DeviceName is the name of the IPv4 vxlan device: flannel.<VNI>.
func DeviceName(vni int) string { return "flannel." + strconv.Itoa(vni) }

// DeviceNameV6 is the name of the IPv6 vxlan device: flannel-v6.<VNI>.
func DeviceNameV6(vni int) string { return "flannel-v6." + strconv.Itoa(vni) }

// tunnelMTU is the device MTU over an underlay of the given MTU.
func tunnelMTU(underlay int, v6underlay bool) int {
	if v6underlay {
		return underlay - overheadV6
	}
	return underlay - overheadV4
}

// randomMAC returns a random locally administered unicast MAC, as upstream
// generates one for a new device.
func randomMAC() (kernel.MAC, error) {
	var m kernel.MAC
	if _, err := rand.Read(m[:]); err != nil {
		return m, fmt.Errorf("generate VTEP MAC: %w", err)
	}
	m[0] = (m[0] & 0xfe) | 0x02
	return m, nil
}

// encodeBackendData gives the lease BackendData, byte for byte as upstream:
// {"VNI":1,"VtepMAC":"a2:2a:fd:9f:55:f3"} (subnet.EncodeVXLANData).
func encodeBackendData(vni int, mac kernel.MAC) (json.RawMessage, error) {
	return subnet.EncodeVXLANData(uint32(vni), mac)
}

// decodeBackendData parses a lease's BackendData (or BackendV6Data) with
// subnet.DecodeVXLANData; vni is 0 when the data has none (flannel v0.11).
func decodeBackendData(raw json.RawMessage) (vni int, mac kernel.MAC, err error) {
	p, err := subnet.DecodeVXLANData(raw)
	if err != nil {
		return 0, mac, err
	}
	return int(p.VNI), kernel.MAC(p.MAC), nil
}

// checkVtepMAC refuses a VtepMAC no VTEP can have. An all-zeros FDB entry
// is the vxlan device's default destination: programmed for one peer, it
// would send every frame the device has no entry for to that peer. A
// multicast (or broadcast) MAC is never a device's address, and the
// kernel would refuse it for our own device.
func checkVtepMAC(mac kernel.MAC) error {
	switch {
	case mac.IsZero():
		return fmt.Errorf("VtepMAC %s is all zeros (the vxlan device's default destination)", mac)
	case mac[0]&1 != 0:
		return fmt.Errorf("VtepMAC %s is a multicast address", mac)
	}
	return nil
}
