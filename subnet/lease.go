package subnet

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// LeaseAttrs is the value stored under a lease key. Its JSON form is an
// interface shared with upstream flanneld nodes, so MarshalJSON reproduces
// upstream's bytes exactly (field order, "PublicIPv6":null, omitted empty
// backend fields).
type LeaseAttrs struct {
	PublicIP      netip.Addr // IPv4; the zero Addr is written as "0.0.0.0"
	PublicIPv6    netip.Addr // IPv6; the zero Addr is written as null
	BackendType   string
	BackendData   json.RawMessage
	BackendV6Data json.RawMessage
}

// Lease is one subnet lease as stored in etcd.
type Lease struct {
	Subnet     netip.Prefix // IPv4 subnet; invalid for an IPv6-only lease
	IPv6Subnet netip.Prefix // invalid when the lease has no IPv6 half
	Attrs      LeaseAttrs

	// Expiration is zero for a reservation (a key without an etcd lease).
	Expiration time.Time
	// EtcdLease is the etcd lease ID the key is attached to, 0 for a reservation.
	EtcdLease int64
	// ModRevision is the etcd revision of the last write to the key.
	ModRevision int64
}

// Key returns the key name of the lease below <prefix>/subnets/.
func (l Lease) Key() string { return MakeKey(l.Subnet, l.IPv6Subnet) }

// IsReservation reports whether the key has no etcd lease attached.
func (l Lease) IsReservation() bool { return l.EtcdLease == 0 }

// String gives a short human form for logs.
func (l Lease) String() string {
	var b strings.Builder
	if l.Subnet.IsValid() && l.Subnet.Bits() > 0 {
		b.WriteString(l.Subnet.String())
	}
	if l.IPv6Subnet.IsValid() {
		if b.Len() > 0 {
			b.WriteString("+")
		}
		b.WriteString(l.IPv6Subnet.String())
	}
	return b.String()
}

type leaseAttrsJSON struct {
	PublicIP      string          `json:"PublicIP"`
	PublicIPv6    *string         `json:"PublicIPv6"`
	BackendType   string          `json:"BackendType,omitempty"`
	BackendData   json.RawMessage `json:"BackendData,omitempty"`
	BackendV6Data json.RawMessage `json:"BackendV6Data,omitempty"`
}

// MarshalJSON writes the attributes byte-for-byte as upstream does.
func (a LeaseAttrs) MarshalJSON() ([]byte, error) {
	j := leaseAttrsJSON{PublicIP: "0.0.0.0", BackendType: a.BackendType}
	if a.PublicIP.IsValid() {
		if !a.PublicIP.Is4() {
			return nil, fmt.Errorf("PublicIP %s is not an IPv4 address", a.PublicIP)
		}
		j.PublicIP = a.PublicIP.String()
	}
	if a.PublicIPv6.IsValid() {
		s := a.PublicIPv6.String()
		j.PublicIPv6 = &s
	}
	if len(a.BackendData) > 0 {
		j.BackendData = a.BackendData
	}
	if len(a.BackendV6Data) > 0 {
		j.BackendV6Data = a.BackendV6Data
	}
	return json.Marshal(j)
}

// UnmarshalJSON parses leniently, as upstream does: key names match
// case-insensitively, unknown keys are ignored, PublicIPv6 may be null or
// absent. An address that does not parse is an error.
func (a *LeaseAttrs) UnmarshalJSON(data []byte) error {
	var j struct {
		PublicIP      *string
		PublicIPv6    *string
		BackendType   string
		BackendData   json.RawMessage
		BackendV6Data json.RawMessage
	}
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	var out LeaseAttrs
	if j.PublicIP != nil && *j.PublicIP != "" {
		ip, err := parseAddr(*j.PublicIP)
		if err != nil || !ip.Is4() {
			return fmt.Errorf("invalid PublicIP %q", *j.PublicIP)
		}
		if !ip.IsUnspecified() {
			out.PublicIP = ip
		}
	}
	if j.PublicIPv6 != nil && *j.PublicIPv6 != "" {
		ip, err := parseAddr(*j.PublicIPv6)
		if err != nil || !ip.Is6() {
			return fmt.Errorf("invalid PublicIPv6 %q", *j.PublicIPv6)
		}
		if !ip.IsUnspecified() {
			out.PublicIPv6 = ip
		}
	}
	out.BackendType = j.BackendType
	out.BackendData = compactRaw(j.BackendData)
	out.BackendV6Data = compactRaw(j.BackendV6Data)
	*a = out
	return nil
}

// parseAddr accepts the textual forms Go's net.ParseIP accepts, including
// IPv4-mapped IPv6 for IPv4 values.
func parseAddr(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	if ip.Is4In6() {
		ip = ip.Unmap()
	}
	return ip.WithZone(""), nil
}

func compactRaw(r json.RawMessage) json.RawMessage {
	if len(r) == 0 || string(r) == "null" {
		return nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, r); err != nil {
		return nil
	}
	return buf.Bytes()
}

// EncodeAttrs returns the etcd value for attrs.
func EncodeAttrs(a LeaseAttrs) ([]byte, error) { return json.Marshal(a) }

// DecodeAttrs parses an etcd lease value.
func DecodeAttrs(value []byte) (LeaseAttrs, error) {
	var a LeaseAttrs
	if err := json.Unmarshal(value, &a); err != nil {
		return LeaseAttrs{}, fmt.Errorf("decode lease value: %w", err)
	}
	return a, nil
}

// VXLANData is the BackendData of a vxlan lease.
type VXLANData struct {
	VNI     uint32 `json:"VNI"`
	VtepMAC string `json:"VtepMAC"`
}
