package etcdv2

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/flannelng/flannel/subnet"
)

// Format is how a Manager writes our lease value. Reading accepts both
// (subnet.DecodeAttrs): v0.11 ignores the fields it does not know.
type Format int

const (
	// FormatV011 writes flannel v0.11's bytes (EncodeV011), for
	// --etcd-api=v2: our node then looks like any other v0.11 node.
	FormatV011 Format = iota
	// FormatCurrent writes v0.28's bytes (subnet.EncodeAttrs), for the
	// migration mode: a v2 value with "PublicIPv6":null then means "written
	// by a node that also holds a v3 copy" (spec 8.1, 8.3 step 4).
	FormatCurrent
)

// EncodeV011 returns attrs as flannel v0.11 writes a lease value (spec
// 1.2): PublicIP, then BackendType and BackendData when set, nothing else.
//
//	vxlan   {"PublicIP":"10.210.0.1","BackendType":"vxlan","BackendData":{"VtepMAC":"66:52:c2:e4:ae:d7"}}
//	host-gw {"PublicIP":"10.210.0.1","BackendType":"host-gw"}
//	udp     {"PublicIP":"10.210.0.3"}
//
// v0.11's vxlan data is only the MAC (it neither writes nor reads a VNI),
// and its udp backend writes no BackendType. v0.11 has no IPv6 fields, so
// attrs with an IPv6 address or IPv6 backend data are an error.
func EncodeV011(a subnet.LeaseAttrs) ([]byte, error) {
	if a.PublicIPv6.IsValid() || len(a.BackendV6Data) > 0 {
		return nil, errors.New("encode lease value for flannel v0.11: it has no IPv6 fields (PublicIPv6, BackendV6Data)")
	}
	// Field order and omissions are v0.11's LeaseAttrs struct.
	v := struct {
		PublicIP    string
		BackendType string          `json:",omitempty"`
		BackendData json.RawMessage `json:",omitempty"`
	}{PublicIP: "0.0.0.0"}
	if a.PublicIP.IsValid() {
		if !a.PublicIP.Is4() {
			return nil, fmt.Errorf("encode lease value for flannel v0.11: PublicIP %s is not an IPv4 address", a.PublicIP)
		}
		v.PublicIP = a.PublicIP.String()
	}
	switch a.BackendType {
	case "udp":
		// v0.11's udp backend publishes only its address.
	case "vxlan":
		v.BackendType = a.BackendType
		d, err := subnet.DecodeVXLANData(a.BackendData)
		if me := (*subnet.VtepMACError)(nil); errors.As(err, &me) {
			return nil, fmt.Errorf("encode vxlan lease value for flannel v0.11: invalid VtepMAC %q", me.VtepMAC)
		}
		if err != nil {
			return nil, fmt.Errorf("encode vxlan lease value for flannel v0.11: %w", err)
		}
		// v0.11 marshals a net.HardwareAddr: lower case, colons.
		v.BackendData, _ = json.Marshal(struct{ VtepMAC string }{d.VtepMAC()})
	default:
		v.BackendType = a.BackendType
		if len(a.BackendData) > 0 && string(a.BackendData) != "null" {
			v.BackendData = a.BackendData
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode lease value for flannel v0.11: %w", err)
	}
	return b, nil
}

// encode returns our lease value in the Manager's Format.
func (m *Manager) encode(a subnet.LeaseAttrs) (string, error) {
	var b []byte
	var err error
	if m.opt.Value == FormatCurrent {
		b, err = subnet.EncodeAttrs(a)
	} else {
		b, err = EncodeV011(a)
	}
	return string(b), err
}
