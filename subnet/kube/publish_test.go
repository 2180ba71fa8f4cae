package kube

import (
	"encoding/json"
	"maps"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/flannelng/flannel/subnet"
)

// TestAnnotationPatchSpecExample is spec 4.4's observed body, byte for byte.
func TestAnnotationPatchSpecExample(t *testing.T) {
	k, _ := KeysFor(DefaultPrefix)
	attrs := subnet.LeaseAttrs{
		PublicIP:    netip.MustParseAddr("10.199.0.2"),
		BackendType: "vxlan",
		BackendData: json.RawMessage(`{"VNI":1,"VtepMAC":"36:02:d1:89:dc:55"}`),
	}
	want, notes := k.wanted(mustConfig(t, cfgV4), attrs, nil)
	if len(notes) > 0 {
		t.Errorf("notes %v", notes)
	}
	got := string(annotationPatch(changed(want, nil)))
	const spec = `{"metadata":{"annotations":{"flannel.alpha.coreos.com/backend-data":"{\"VNI\":1,\"VtepMAC\":\"36:02:d1:89:dc:55\"}","flannel.alpha.coreos.com/backend-type":"vxlan","flannel.alpha.coreos.com/kube-subnet-manager":"true","flannel.alpha.coreos.com/public-ip":"10.199.0.2"}}}`
	if got != spec {
		t.Errorf("patch\n got %s\nwant %s", got, spec)
	}
}

func TestWantedAndChanged(t *testing.T) {
	k, _ := KeysFor(DefaultPrefix)
	p := k.Prefix
	mac := json.RawMessage(vxlanData("36:02:d1:89:dc:55"))
	mac6 := json.RawMessage(vxlanData("36:02:d1:89:dc:66"))
	vxlanNode := map[string]string{
		p + "kube-subnet-manager": "true", p + "backend-type": "vxlan", p + "public-ip": "10.199.0.2",
		p + "backend-data": string(mac), "kubeadm.alpha.kubernetes.io/cri-socket": "x",
	}
	ip := netip.MustParseAddr("10.199.0.2")
	for _, tc := range []struct {
		name    string
		cfg     string
		attrs   subnet.LeaseAttrs
		current map[string]string
		patch   string // "" for no PATCH
		notes   int
	}{
		{name: "unchanged restart: no PATCH", cfg: cfgV4, current: vxlanNode,
			attrs: subnet.LeaseAttrs{PublicIP: ip, BackendType: "vxlan", BackendData: mac}},
		{name: "switch to host-gw: only backend-data and backend-type (observed)", cfg: cfgV4, current: vxlanNode,
			attrs: subnet.LeaseAttrs{PublicIP: ip, BackendType: "host-gw"},
			patch: `{"metadata":{"annotations":{"flannel.alpha.coreos.com/backend-data":"null","flannel.alpha.coreos.com/backend-type":"host-gw"}}}`},
		{name: "udp publishes an empty backend-type and null data", cfg: `{"Network":"10.244.0.0/16"}`, current: nil,
			attrs: subnet.LeaseAttrs{PublicIP: ip, BackendType: "udp"},
			patch: `{"metadata":{"annotations":{"flannel.alpha.coreos.com/backend-data":"null","flannel.alpha.coreos.com/backend-type":"","flannel.alpha.coreos.com/kube-subnet-manager":"true","flannel.alpha.coreos.com/public-ip":"10.199.0.2"}}}`},
		{name: "overwrite replaces the published public-ip", cfg: cfgV4,
			current: merge(vxlanNode, map[string]string{p + "public-ip-overwrite": "10.199.5.5"}),
			attrs:   subnet.LeaseAttrs{PublicIP: ip, BackendType: "vxlan", BackendData: mac},
			patch:   `{"metadata":{"annotations":{"flannel.alpha.coreos.com/public-ip":"10.199.5.5"}}}`},
		{name: "overwrite already published: no PATCH (upstream sends one every start)", cfg: cfgV4,
			current: merge(vxlanNode, map[string]string{p + "public-ip-overwrite": "10.199.5.5", p + "public-ip": "10.199.5.5"}),
			attrs:   subnet.LeaseAttrs{PublicIP: ip, BackendType: "vxlan", BackendData: mac}},
		{name: "invalid overwrite is ignored", cfg: cfgV4,
			current: merge(vxlanNode, map[string]string{p + "public-ip-overwrite": "fd99::5"}),
			attrs:   subnet.LeaseAttrs{PublicIP: ip, BackendType: "vxlan", BackendData: mac}, notes: 1},
		{name: "kube-subnet-manager not true", cfg: cfgV4,
			current: merge(vxlanNode, map[string]string{p + "kube-subnet-manager": "True"}),
			attrs:   subnet.LeaseAttrs{PublicIP: ip, BackendType: "vxlan", BackendData: mac},
			patch:   `{"metadata":{"annotations":{"flannel.alpha.coreos.com/kube-subnet-manager":"true"}}}`},
		{name: "dual stack vxlan, only the v6 MAC changed", cfg: cfgDual,
			current: merge(vxlanNode, map[string]string{p + "public-ipv6": "fd99::2", p + "backend-v6-data": vxlanData("aa:aa:aa:aa:aa:aa")}),
			attrs:   subnet.LeaseAttrs{PublicIP: ip, PublicIPv6: netip.MustParseAddr("fd99::2"), BackendType: "vxlan", BackendData: mac, BackendV6Data: mac6},
			patch:   `{"metadata":{"annotations":{"flannel.alpha.coreos.com/backend-v6-data":"{\"VNI\":1,\"VtepMAC\":\"36:02:d1:89:dc:66\"}"}}}`},
		{name: "v6 overwrite", cfg: cfgDual,
			current: merge(vxlanNode, map[string]string{p + "public-ipv6": "fd99::2", p + "backend-v6-data": string(mac6), p + "public-ipv6-overwrite": "FD99::0009"}),
			attrs:   subnet.LeaseAttrs{PublicIP: ip, PublicIPv6: netip.MustParseAddr("fd99::2"), BackendType: "vxlan", BackendData: mac, BackendV6Data: mac6},
			patch:   `{"metadata":{"annotations":{"flannel.alpha.coreos.com/public-ipv6":"fd99::9"}}}`},
		{name: "v6-only vxlan writes no v4 keys", cfg: cfgV6, current: nil,
			attrs: subnet.LeaseAttrs{PublicIPv6: netip.MustParseAddr("fd99::2"), BackendType: "vxlan", BackendV6Data: mac6},
			patch: `{"metadata":{"annotations":{"flannel.alpha.coreos.com/backend-type":"vxlan","flannel.alpha.coreos.com/backend-v6-data":"{\"VNI\":1,\"VtepMAC\":\"36:02:d1:89:dc:66\"}","flannel.alpha.coreos.com/kube-subnet-manager":"true","flannel.alpha.coreos.com/public-ipv6":"fd99::2"}}}`},
		{name: "v6-only host-gw publishes public-ip 0.0.0.0 (upstream)", cfg: `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"host-gw"}}`, current: nil,
			attrs: subnet.LeaseAttrs{PublicIPv6: netip.MustParseAddr("fd99::2"), BackendType: "host-gw"},
			patch: `{"metadata":{"annotations":{"flannel.alpha.coreos.com/backend-data":"null","flannel.alpha.coreos.com/backend-type":"host-gw","flannel.alpha.coreos.com/backend-v6-data":"null","flannel.alpha.coreos.com/kube-subnet-manager":"true","flannel.alpha.coreos.com/public-ip":"0.0.0.0","flannel.alpha.coreos.com/public-ipv6":"fd99::2"}}}`},
	} {
		want, notes := k.wanted(mustConfig(t, tc.cfg), tc.attrs, tc.current)
		if len(notes) != tc.notes {
			t.Errorf("%s: notes %q", tc.name, notes)
		}
		set := changed(want, tc.current)
		got := ""
		if len(set) > 0 {
			got = string(annotationPatch(set))
		}
		if got != tc.patch {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.patch)
		}
		// Whatever was sent, the node then carries every wanted key.
		after := merge(tc.current, set)
		if again := changed(want, after); len(again) > 0 {
			t.Errorf("%s: still differs after the patch: %v", tc.name, slices.Sorted(maps.Keys(again)))
		}
	}
}

func merge(a, b map[string]string) map[string]string {
	out := maps.Clone(a)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, b)
	return out
}

// TestConditionPatch is spec 4.6's body: field order, texts, RFC 3339 times.
func TestConditionPatch(t *testing.T) {
	got := string(conditionPatch(time.Date(2026, 5, 4, 3, 2, 1, 999, time.FixedZone("x", 3600))))
	want := `{"status":{"conditions":[{"type":"NetworkUnavailable","status":"False","lastHeartbeatTime":"2026-05-04T02:02:01Z","lastTransitionTime":"2026-05-04T02:02:01Z","reason":"FlannelIsUp","message":"Flannel is running on this node"}]}}`
	if got != want {
		t.Errorf("condition patch\n got %s\nwant %s", got, want)
	}
}
