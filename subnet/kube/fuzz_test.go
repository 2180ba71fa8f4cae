package kube

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/flannelng/flannel/subnet"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// FuzzNodeLease feeds arbitrary annotation values and podCIDRs through
// everything that reads a Node: conversion (both families), our own
// podCIDR check, what we would publish, Previous and the transform. Nothing
// may panic, and a lease that comes out must be usable as it is: each
// family's address of that family, backend data that is JSON, attributes
// that encode.
func FuzzNodeLease(f *testing.F) {
	f.Add("true", "vxlan", `{"VNI":1,"VtepMAC":"36:02:d1:89:dc:55"}`, "10.199.0.2", `{"VNI":1,"VtepMAC":"36:02:d1:89:dc:66"}`, "fd99::2", "10.199.5.5", "", "10.244.1.0/24", "10.244.1.0/24,fd00:10:244:1::/64", false)
	f.Add("true", "", "null", "10.199.0.3", "", "", "", "", "10.244.2.0/24", "", false)
	f.Add("True", "host-gw", "null", "0.0.0.0", "null", "::", "fd99::1", "::ffff:1.2.3.4", "", "fd00::/64", true)
	f.Add("true", "vxlan", `{"VNI":1,`, "10.199.0.300", "[]", "fe80::1%eth0", "junk", "10.1.1.1", "10.244.1.7/24", "a,b,c", false)
	f.Fuzz(func(t *testing.T, managedV, btype, data, ip, data6, ip6, overwrite, overwrite6, podCIDR, podCIDRs string, nilMap bool) {
		k, _ := KeysFor(DefaultPrefix)
		n := &Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: NodeSpec{PodCIDR: podCIDR}}
		if podCIDRs != "" {
			n.Spec.PodCIDRs = strings.Split(podCIDRs, ",")
		}
		if !nilMap {
			n.Annotations = map[string]string{
				k.Managed: managedV, k.BackendType: btype, k.BackendData: data, k.PublicIP: ip,
				k.BackendV6Data: data6, k.PublicIPv6: ip6, k.PublicIPOverwrite: overwrite, k.PublicIPv6Overwrite: overwrite6,
				k.NodePublicIP: ip, k.NodePublicIPv6: ip6,
			}
		}
		for _, fam := range [][2]bool{{true, false}, {false, true}, {true, true}} {
			l, err := NodeLease(n, k, fam[0], fam[1])
			if err != nil {
				continue
			}
			if !l.Subnet.IsValid() && !l.IPv6Subnet.IsValid() {
				t.Fatalf("lease without a subnet: %+v", l)
			}
			if l.Subnet.IsValid() && (!fam[0] || !l.Subnet.Addr().Is4() || !l.Attrs.PublicIP.Is4() || l.Attrs.PublicIP.IsUnspecified()) {
				t.Fatalf("bad IPv4 half: %+v", l)
			}
			if l.IPv6Subnet.IsValid() && (!fam[1] || !l.IPv6Subnet.Addr().Is6() || !l.Attrs.PublicIPv6.Is6() || l.Attrs.PublicIPv6.Is4In6()) {
				t.Fatalf("bad IPv6 half: %+v", l)
			}
			for _, d := range []json.RawMessage{l.Attrs.BackendData, l.Attrs.BackendV6Data} {
				if len(d) > 0 && !json.Valid(d) {
					t.Fatalf("backend data not JSON: %q", d)
				}
			}
			if _, err := subnet.EncodeAttrs(l.Attrs); err != nil {
				t.Fatalf("attrs do not encode: %v (%+v)", err, l.Attrs)
			}
		}
		for _, cfg := range []string{cfgV4, cfgDual, cfgV6} {
			c := mustConfig(t, cfg)
			if v4, v6, err := ownCIDRs(c, n); err == nil {
				if c.EnableIPv4 && !c.Network.Contains(v4.Addr()) || c.EnableIPv6 && !c.IPv6Network.Contains(v6.Addr()) {
					t.Fatalf("ownCIDRs %v %v outside %s", v4, v6, cfg)
				}
			}
			if attrs := ownAttrs(n, k); attrs != nil {
				want, _ := k.wanted(c, *attrs, n.Annotations)
				for key, v := range changed(want, n.Annotations) {
					if key == k.PublicIP && v != "0.0.0.0" {
						if _, err := parseIP(v, true); err != nil {
							t.Fatalf("would publish %s=%q", key, v)
						}
					}
					if key == k.PublicIPv6 {
						if _, err := parseIP(v, false); err != nil {
							t.Fatalf("would publish %s=%q", key, v)
						}
					}
				}
				var back map[string]any
				if err := json.Unmarshal(annotationPatch(want), &back); err != nil {
					t.Fatal(err)
				}
			}
		}
		if c := k.compact(n); !sameView(c, k.compact(c)) {
			t.Fatal("compact node differs from itself")
		}
	})
}

// FuzzNormalizePrefix: whatever is accepted makes annotation keys the API
// server takes, and normalising again changes nothing.
func FuzzNormalizePrefix(f *testing.F) {
	for _, s := range []string{"flannel.alpha.coreos.com", "example.com/fl", "nodots", "Bad_Prefix", "a/b/c", "a.b/c-", "x.y/" + strings.Repeat("z", 60)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		p, err := NormalizePrefix(in)
		if err != nil {
			return
		}
		if again, err := NormalizePrefix(p); err != nil || again != p {
			t.Fatalf("NormalizePrefix(%q) = %q, then %q, %v", in, p, again, err)
		}
		k, err := KeysFor(in)
		if err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{k.Managed, k.BackendType, k.BackendData, k.BackendV6Data, k.PublicIP, k.PublicIPv6} {
			if errs := validation.IsQualifiedName(key); len(errs) > 0 {
				t.Fatalf("prefix %q accepted, key %q refused: %v", in, key, errs)
			}
		}
	})
}
