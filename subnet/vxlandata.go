package subnet

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
)

// VXLANData is the BackendData of a vxlan lease, as upstream writes it:
// {"VNI":1,"VtepMAC":"a2:2a:fd:9f:55:f3"}. Read it with DecodeVXLANData.
type VXLANData struct {
	VNI     uint32 `json:"VNI"`
	VtepMAC string `json:"VtepMAC"`
}

// VXLANPeer is a vxlan lease's BackendData, decoded and checked: the one
// decoding the backend, flannelctl, the doctor and the demo share.
type VXLANPeer struct {
	VNI uint32
	// HasVNI is false for flannel v0.11's data, which holds only the
	// VtepMAC (etcd-v2 spec 1.2); upstream never compares the VNI.
	HasVNI bool
	MAC    [6]byte
}

// VtepMAC is the MAC in its canonical form, a2:2a:fd:9f:55:f3.
func (p VXLANPeer) VtepMAC() string { return net.HardwareAddr(p.MAC[:]).String() }

// EncodeVXLANData gives the BackendData of a vxlan lease, byte for byte as
// upstream: {"VNI":1,"VtepMAC":"a2:2a:fd:9f:55:f3"}.
func EncodeVXLANData(vni uint32, mac [6]byte) (json.RawMessage, error) {
	return json.Marshal(VXLANData{VNI: vni, VtepMAC: net.HardwareAddr(mac[:]).String()})
}

// A VtepMACError is the error for vxlan BackendData whose VtepMAC is
// missing or not a 6-byte hardware address.
type VtepMACError struct {
	Data    string // the BackendData
	VtepMAC string // as written; empty when absent
	Err     error  // why it does not parse; nil when absent
}

func (e *VtepMACError) Error() string {
	if e.VtepMAC == "" {
		return fmt.Sprintf("vxlan backend data %s has no VtepMAC", e.Data)
	}
	return fmt.Sprintf("vxlan backend data %s: bad VtepMAC: %v", e.Data, e.Err)
}

func (e *VtepMACError) Unwrap() error { return e.Err }

// DecodeVXLANData parses a vxlan lease's BackendData (or BackendV6Data).
// Data without a VtepMAC, or with one that is not a 6-byte MAC, gives a
// *VtepMACError; data that is not JSON an error wrapping encoding/json's.
func DecodeVXLANData(raw []byte) (VXLANPeer, error) {
	if p, ok := decodeCanonicalVXLAN(raw); ok {
		return p, nil
	}
	if len(raw) == 0 {
		return VXLANPeer{}, errors.New("no backend data")
	}
	var d struct {
		VNI     *uint32
		VtepMAC string
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return VXLANPeer{}, fmt.Errorf("decode vxlan backend data %s: %w", raw, err)
	}
	if d.VtepMAC == "" {
		return VXLANPeer{}, &VtepMACError{Data: string(raw)}
	}
	hw, err := net.ParseMAC(d.VtepMAC)
	if err == nil && len(hw) != 6 {
		err = fmt.Errorf("hardware address %x has %d bytes, want 6", []byte(hw), len(hw))
	}
	if err != nil {
		return VXLANPeer{}, &VtepMACError{Data: string(raw), VtepMAC: d.VtepMAC, Err: err}
	}
	p := VXLANPeer{HasVNI: d.VNI != nil}
	if d.VNI != nil {
		p.VNI = *d.VNI
	}
	copy(p.MAC[:], hw)
	return p, nil
}

// decodeCanonicalVXLAN reads BackendData in the form every flanneld
// writes, {"VNI":<n>,"VtepMAC":"xx:xx:xx:xx:xx:xx"}, without encoding/json:
// a pass over 5,000 peers decodes 5,000 of them, and this costs no
// allocation where JSON decoding cost two and a few microseconds each.
// Anything else (other spacing, key order, case, extra fields) returns
// false and goes through encoding/json; FuzzDecodeBackendData checks the
// two agree.
func decodeCanonicalVXLAN(raw []byte) (p VXLANPeer, ok bool) {
	const head, mid, tail = `{"VNI":`, `,"VtepMAC":"`, `"}`
	if len(raw) < len(head)+1+len(mid)+17+len(tail) || string(raw[:len(head)]) != head {
		return p, false
	}
	b := raw[len(head):]
	n := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		n++
	}
	if n == 0 || n > 10 || (n > 1 && b[0] == '0') {
		return p, false // JSON allows no leading zeros
	}
	// int64: ten digits overflow a 32-bit int (GOARCH=arm).
	v := int64(0)
	for _, c := range b[:n] {
		v = v*10 + int64(c-'0')
	}
	if v > math.MaxUint32 {
		return p, false
	}
	b = b[n:]
	if len(b) != len(mid)+17+len(tail) || string(b[:len(mid)]) != mid || string(b[len(mid)+17:]) != tail {
		return p, false
	}
	m := b[len(mid) : len(mid)+17]
	for i := range p.MAC {
		if i > 0 && m[3*i-1] != ':' {
			return VXLANPeer{}, false
		}
		hi, ok1 := unhex(m[3*i])
		lo, ok2 := unhex(m[3*i+1])
		if !ok1 || !ok2 {
			return VXLANPeer{}, false
		}
		p.MAC[i] = hi<<4 | lo
	}
	p.VNI, p.HasVNI = uint32(v), true
	return p, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
