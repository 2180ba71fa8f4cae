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

// Lease is one node's subnet lease, whatever its source: a key under
// <prefix>/subnets/ in etcd, or a Node's podCIDRs and annotations. What a
// source needs to keep it (etcd lease IDs, revisions) stays in the source.
type Lease struct {
	Subnet     netip.Prefix // IPv4 subnet; invalid for an IPv6-only lease
	IPv6Subnet netip.Prefix // invalid when the lease has no IPv6 half
	Attrs      LeaseAttrs

	// Expiration is when the source drops the lease unless it is
	// renewed; zero for a lease that does not expire (an etcd
	// reservation, a Node's podCIDR), or when the source did not say.
	Expiration time.Time
}

// Key returns the key name of the lease below <prefix>/subnets/.
func (l Lease) Key() string { return MakeKey(l.Subnet, l.IPv6Subnet) }

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

// MaxLeaseValue is the largest lease value DecodeAttrs accepts. What
// flanneld writes is under 300 bytes (a dual-stack vxlan lease); any
// program with write access to the prefix can put megabytes there, and
// every node would decode them on every listing and watch event, and keep
// them in memory. 64 KiB leaves room for any backend's data.
const MaxLeaseValue = 64 << 10

// DecodeAttrs parses an etcd lease value.
func DecodeAttrs(value []byte) (LeaseAttrs, error) {
	if len(value) > MaxLeaseValue {
		return LeaseAttrs{}, fmt.Errorf("decode lease value: %d bytes, more than the %d a lease value may hold", len(value), MaxLeaseValue)
	}
	var a LeaseAttrs
	if err := json.Unmarshal(value, &a); err != nil {
		return LeaseAttrs{}, fmt.Errorf("decode lease value: %w", err)
	}
	return a, nil
}

// FindOwn returns the index of the lease advertising our public address:
// the IPv4 PublicIP, or for an IPv6-only network the PublicIPv6 (upstream
// compares 0.0.0.0 there and matches any IPv6-only node). It returns -1
// when no lease does.
func FindOwn(leases []Lease, cfg *Config, attrs LeaseAttrs) int {
	for i := range leases {
		l := &leases[i]
		if cfg.EnableIPv4 {
			if attrs.PublicIP.IsValid() && l.Attrs.PublicIP == attrs.PublicIP {
				return i
			}
		} else if attrs.PublicIPv6.IsValid() && l.Attrs.PublicIPv6 == attrs.PublicIPv6 && !l.Subnet.IsValid() {
			return i
		}
	}
	return -1
}
