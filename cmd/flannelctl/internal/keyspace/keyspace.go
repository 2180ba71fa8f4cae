// Package keyspace compares flannel's data in etcd's two keyspaces: the v2
// store, where flannel v0.11 keeps <prefix>/config and its leases, and the
// v3 keyspace our daemon uses, at the same paths (issue 18; "spec N" is a
// section of shared/spec/etcd-v2.md). From one read of each it decides
// what `flannelctl migrate-v2` copies (Plan) and what `flannelctl doctor`
// says about a cluster being migrated (Assess).
//
// It is pure: the command reads etcd into Stores and carries out the
// plan; everything that judges a key is here, with table tests.
package keyspace

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/flannelng/flannel/subnet"
)

// Key is one key below <prefix>/subnets/ in one keyspace, as read.
type Key struct {
	Path  string // the full key, <prefix>/subnets/<Name>
	Name  string // below <prefix>/subnets/
	Value []byte
	// Expires is true for a key that goes away unless renewed: in v2 a
	// key with a TTL, in v3 a key attached to an etcd lease. A key that
	// does not expire is a reservation.
	Expires bool
	// TTL is what is left of a v2 key's TTL when it was read, as etcd
	// reported it (whole seconds, rounded up). Zero for v3 keys, whose
	// etcd lease the caller does not need to ask about.
	TTL time.Duration
	// Dir marks a v2 directory: never a lease.
	Dir bool
}

// Store is what one keyspace holds under a prefix.
type Store struct {
	// Config is <prefix>/config; nil when the key does not exist.
	Config  []byte
	Subnets []Key
}

// Empty reports whether the store holds nothing of flannel's.
func (s Store) Empty() bool { return s.Config == nil && len(s.Subnets) == 0 }

// parsed is a Key with its lease, or why it is not one.
type parsed struct {
	Key
	Lease subnet.Lease
	Err   error
	// V011Form: the value has no "PublicIPv6" field, as flannel v0.11
	// (and our daemon in --etcd-api=v2) writes it; --etcd-api=both
	// writes "PublicIPv6":null into both keyspaces (spec 8.1).
	V011Form bool
}

// parseV2 reads a v2 key strictly: only the canonical name A.B.C.D-LEN
// (what v0.11 writes, and the only form spec 7 lets anyone write under
// <prefix>/subnets) and a value that decodes. subnet.ParseKey alone would
// accept anything with such a name inside it, as upstream's unanchored
// pattern does; copying such a key would carry the garbage into v3.
func parseV2(k Key) parsed {
	p := parsed{Key: k}
	if k.Dir {
		p.Err = fmt.Errorf("a directory, not a lease")
		return p
	}
	v4, v6, err := subnet.ParseKey(k.Name)
	switch {
	case err != nil:
		p.Err = err
	case v6.IsValid() || !v4.IsValid():
		p.Err = fmt.Errorf("invalid subnet key %q: flannel v0.11 keys are A.B.C.D-LEN (IPv4 only)", k.Name)
	case subnet.MakeKey(v4, v6) != k.Name:
		p.Err = fmt.Errorf("invalid subnet key %q: not in the form A.B.C.D-LEN (the key of that subnet is %s)", k.Name, subnet.MakeKey(v4, v6))
	}
	if p.Err != nil {
		return p
	}
	return decodeValue(p, v4, v6)
}

// parseV3 reads a v3 key as the daemon does (subnet.ParseKey, lenient).
func parseV3(k Key) parsed {
	p := parsed{Key: k}
	v4, v6, err := subnet.ParseKey(k.Name)
	if err == nil && strings.Contains(k.Name, "/") {
		err = fmt.Errorf("invalid subnet key %q", k.Name)
	}
	if err != nil {
		p.Err = err
		return p
	}
	return decodeValue(p, v4, v6)
}

func decodeValue(p parsed, v4, v6 netip.Prefix) parsed {
	attrs, err := subnet.DecodeAttrs(p.Value)
	if err != nil {
		p.Err = err
		return p
	}
	p.Lease = subnet.Lease{Subnet: v4, IPv6Subnet: v6, Attrs: attrs}
	var fields map[string]json.RawMessage
	if json.Unmarshal(p.Value, &fields) == nil {
		_, has := fields["PublicIPv6"]
		p.V011Form = !has
	}
	return p
}

// Differences lists how lease b differs from lease a for the data plane:
// subnet, PublicIP, BackendType, and VtepMAC for vxlan. The encoding
// (field order, "PublicIPv6":null, a VNI in BackendData) is not compared:
// v0.11 and our daemon read each other's values (spec 5). Empty when they
// are the same lease.
func Differences(a, b subnet.Lease) []string {
	var out []string
	diff := func(what string, x, y any) {
		out = append(out, fmt.Sprintf("%s %v vs %v", what, orNone(x), orNone(y)))
	}
	if a.Subnet != b.Subnet || a.IPv6Subnet != b.IPv6Subnet {
		diff("subnet", a.String(), b.String())
	}
	if a.Attrs.PublicIP != b.Attrs.PublicIP {
		diff("PublicIP", addrText(a.Attrs.PublicIP), addrText(b.Attrs.PublicIP))
	}
	if a.Attrs.BackendType != b.Attrs.BackendType {
		diff("BackendType", a.Attrs.BackendType, b.Attrs.BackendType)
	}
	if a.Attrs.BackendType == "vxlan" && b.Attrs.BackendType == "vxlan" {
		if ma, mb := VtepMAC(a), VtepMAC(b); !sameMAC(ma, mb) {
			diff("VtepMAC", ma, mb)
		}
	}
	return out
}

func orNone(v any) any {
	if s, ok := v.(string); ok && s == "" {
		return "(none)"
	}
	return v
}

func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// VtepMAC is the VtepMAC of a vxlan lease's BackendData, "" if none.
func VtepMAC(l subnet.Lease) string {
	var d subnet.VXLANData
	if len(l.Attrs.BackendData) == 0 || json.Unmarshal(l.Attrs.BackendData, &d) != nil {
		return ""
	}
	return d.VtepMAC
}

func sameMAC(a, b string) bool {
	ma, err1 := net.ParseMAC(a)
	mb, err2 := net.ParseMAC(b)
	if err1 != nil || err2 != nil {
		return a == b
	}
	return bytes.Equal(ma, mb)
}

// Describe is a lease's owner in one line: "10.210.0.1 vxlan 66:52:c2:e4:ae:d7".
func Describe(l subnet.Lease) string {
	s := []string{addrText(l.Attrs.PublicIP)}
	if s[0] == "" {
		s[0] = "no PublicIP"
	}
	if l.Attrs.BackendType != "" {
		s = append(s, l.Attrs.BackendType)
	} else {
		s = append(s, "(no BackendType)")
	}
	if mac := VtepMAC(l); mac != "" {
		s = append(s, mac)
	}
	return strings.Join(s, " ")
}

// NormalizeConfig is a config's JSON with insignificant whitespace removed
// and object keys sorted, numbers kept as written; a value that is not
// JSON comes back trimmed, unchanged.
func NormalizeConfig(raw []byte) []byte {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil || d.More() {
		return bytes.TrimSpace(raw)
	}
	out, err := json.Marshal(v)
	if err != nil {
		return bytes.TrimSpace(raw)
	}
	return out
}

// SameConfig reports whether two stored configs are equal after
// NormalizeConfig.
func SameConfig(a, b []byte) bool { return bytes.Equal(NormalizeConfig(a), NormalizeConfig(b)) }

// configChanges says how config b differs from a, field by field where
// both are JSON objects.
func configChanges(a, b []byte) string {
	if c := subnet.ConfigChanges(a, b); c != "" {
		return c
	}
	return fmt.Sprintf("%s vs %s", bytes.TrimSpace(a), bytes.TrimSpace(b))
}

// overlaps reports whether two leases share IPv4 or IPv6 addresses.
func overlaps(a, b subnet.Lease) bool {
	return a.Subnet.IsValid() && b.Subnet.IsValid() && a.Subnet.Overlaps(b.Subnet) ||
		a.IPv6Subnet.IsValid() && b.IPv6Subnet.IsValid() && a.IPv6Subnet.Overlaps(b.IPv6Subnet)
}

// sortParsed orders leases by subnet, then keys that are not leases by name.
func sortParsed(ps []parsed) {
	slices.SortStableFunc(ps, func(a, b parsed) int {
		if c := cmp.Compare(boolInt(a.Err != nil), boolInt(b.Err != nil)); c != 0 {
			return c
		}
		if a.Err == nil {
			if c := comparePrefix(a.Lease.Subnet, b.Lease.Subnet); c != 0 {
				return c
			}
			if c := comparePrefix(a.Lease.IPv6Subnet, b.Lease.IPv6Subnet); c != 0 {
				return c
			}
		}
		return cmp.Compare(a.Name, b.Name)
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func comparePrefix(a, b netip.Prefix) int {
	if !a.IsValid() || !b.IsValid() {
		return cmp.Compare(boolInt(!a.IsValid()), boolInt(!b.IsValid()))
	}
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Bits(), b.Bits())
}

func parseAll(ks []Key, parse func(Key) parsed) []parsed {
	out := make([]parsed, 0, len(ks))
	for _, k := range ks {
		out = append(out, parse(k))
	}
	sortParsed(out)
	return out
}

// byName indexes the leases that parse by key name.
func byName(ps []parsed) map[string]*parsed {
	m := make(map[string]*parsed, len(ps))
	for i := range ps {
		m[ps[i].Name] = &ps[i]
	}
	return m
}

// Union is the lease set a node in --etcd-api=both programs (spec 8.1):
// the v3 leases and the v2 leases, one per key. Where both keyspaces hold
// a key with the same owner the v3 record is kept (it carries the VNI);
// where they differ (a split claim) the v2 record wins, as the one every
// v0.11 node routes by. reservations holds the keys (subnet.Lease.Key) of
// the leases that do not expire in the keyspace they were taken from. Keys
// that do not parse are left out, as the daemon leaves them out.
func Union(v2, v3 Store) (leases []subnet.Lease, reservations map[string]bool) {
	reservations = map[string]bool{}
	seen := map[string]int{}
	add := func(p parsed, replace bool) {
		k := p.Lease.Key()
		if i, ok := seen[k]; ok {
			if replace && len(Differences(leases[i], p.Lease)) > 0 {
				leases[i] = p.Lease
				delete(reservations, k)
				if !p.Expires {
					reservations[k] = true
				}
			}
			return
		}
		seen[k] = len(leases)
		leases = append(leases, p.Lease)
		if !p.Expires {
			reservations[k] = true
		}
	}
	for _, p := range parseAll(v3.Subnets, parseV3) {
		if p.Err == nil {
			add(p, false)
		}
	}
	for _, p := range parseAll(v2.Subnets, parseV2) {
		if p.Err == nil {
			add(p, true)
		}
	}
	return leases, reservations
}
