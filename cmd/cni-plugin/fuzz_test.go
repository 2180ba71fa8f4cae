package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// canonical renders a parsed subnet.env the way the daemon writes it.
func canonical(se *subnetEnv) string {
	var b strings.Builder
	join := func(ps []netip.Prefix) string {
		var ss []string
		for _, p := range ps {
			ss = append(ss, p.String())
		}
		return strings.Join(ss, ",")
	}
	if len(se.Networks) > 0 {
		fmt.Fprintf(&b, "FLANNEL_NETWORK=%s\n", join(se.Networks))
	}
	if se.Subnet.IsValid() {
		fmt.Fprintf(&b, "FLANNEL_SUBNET=%s\n", se.Subnet)
	}
	if len(se.IPv6Networks) > 0 {
		fmt.Fprintf(&b, "FLANNEL_IPV6_NETWORK=%s\n", join(se.IPv6Networks))
	}
	if se.IPv6Subnet.IsValid() {
		fmt.Fprintf(&b, "FLANNEL_IPV6_SUBNET=%s\n", se.IPv6Subnet)
	}
	fmt.Fprintf(&b, "FLANNEL_MTU=%d\nFLANNEL_IPMASQ=%t\n", se.MTU, se.IPMasq)
	return b.String()
}

func FuzzParseSubnetEnv(f *testing.F) {
	for _, c := range goldenCases {
		f.Add(c.env)
	}
	f.Add("FLANNEL_NETWORK = 10.5.0.0/16 \r\nFLANNEL_SUBNET=\"10.5.21.1/24\"\r\nFLANNEL_MTU = '1450'\r\nFLANNEL_IPMASQ=True\r\n")
	f.Add("FLANNEL_NETWORK=10.244.0.0/16, 10.244.9.9/16 ,,172.16.0.0/12,\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=0\nFLANNEL_IPMASQ=FALSE\n")
	f.Add("FLANNEL_NETWORK=::ffff:10.0.0.0/104\nFLANNEL_IPV6_SUBNET=fe80::1/10\nFLANNEL_MTU=9000\nFLANNEL_IPMASQ=false")
	f.Add("FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.")
	f.Fuzz(func(t *testing.T, in string) {
		se, err := parseSubnetEnv([]byte(in), "subnet.env")
		if err != nil {
			if !strings.Contains(err.Error(), "subnet.env") {
				t.Errorf("error %q does not name the file", err)
			}
			return
		}
		if se.Missing() != "" {
			t.Fatalf("accepted with %s missing", se.Missing())
		}
		for _, p := range append(append([]netip.Prefix{se.Subnet, se.IPv6Subnet}, se.Networks...), se.IPv6Networks...) {
			if p.IsValid() && p != p.Masked() {
				t.Errorf("%s keeps host bits", p)
			}
		}
		for _, list := range [][]netip.Prefix{se.Networks, se.IPv6Networks} {
			sorted := slices.Clone(list)
			slices.SortFunc(sorted, netip.Prefix.Compare)
			if len(slices.Compact(sorted)) != len(list) {
				t.Errorf("duplicates kept in %v", list)
			}
		}
		// What we read, written the canonical way, reads back the same.
		again, err := parseSubnetEnv([]byte(canonical(se)), "subnet.env")
		if err != nil {
			t.Fatalf("canonical form %q does not parse: %v", canonical(se), err)
		}
		if canonical(again) != canonical(se) {
			t.Errorf("round trip changed\n%s\nto\n%s", canonical(se), canonical(again))
		}
	})
}

// FuzzLoadNetConf: any stdin config either fails to load with a clear error,
// or renders a delegate config that names our network, has a plugin type and
// host-local style ipam, and that DEL can read back from the saved bytes.
func FuzzLoadNetConf(f *testing.F) {
	for _, c := range goldenCases {
		f.Add(c.stdin)
	}
	f.Add(`{"name":"cbr0","cniVersion":"0.3.1","plugins":[]}`)
	f.Add(`{"name":"n","delegate":{"type":"ipvlan","cniVersion":5,"capabilities":"x"},"ipam":{"routes":[{"dst":"0.0.0.0/0","gw":"10.244.3.254","mtu":1400}]}}`)
	f.Add(`{"name":"n","delegate":{"name":"x"}}`)
	f.Add(`{"name":"n","ipam":{"routes":{}}}`)
	f.Add(`{"name":"n","subnetFile":"","dataDir":"","runtimeConfig":{"portMappings":[]}}`)
	f.Add(`{"name":`)
	env, err := parseSubnetEnv([]byte(goldenCases[1].env), "subnet.env")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, stdin string) {
		n, err := loadNetConf([]byte(stdin))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "failed to load netconf: ") {
				t.Errorf("unclear error %q", err)
			}
			return
		}
		if n.SubnetFile == "" || n.DataDir == "" {
			t.Fatalf("empty path after defaults: %+v", n)
		}
		d, err := buildDelegate(n, env)
		if err != nil {
			return // the error texts are pinned by TestBuildDelegateErrors
		}
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatalf("rendered config does not marshal: %v", err)
		}
		saved, err := parseScratch(b)
		if err != nil {
			t.Fatalf("DEL could not read what ADD saves: %v\n%s", err, b)
		}
		if saved.name != n.Name || saved.typ == "" {
			t.Errorf("saved name %q type %q, want name %q and a type", saved.name, saved.typ, n.Name)
		}
		var back map[string]any
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		ipam, _ := back["ipam"].(map[string]any)
		if ipam == nil || ipam["ranges"] == nil || ipam["routes"] == nil || ipam["type"] == nil {
			t.Errorf("ipam incomplete: %s", b)
		}
		if _, ok := back["ipMasq"]; !ok {
			t.Errorf("no ipMasq: %s", b)
		}
		// Rendering is deterministic: the saved file is compared byte for byte.
		d2, _ := buildDelegate(n, env)
		if b2, _ := json.Marshal(d2); string(b2) != string(b) {
			t.Errorf("rendering is not deterministic:\n%s\n%s", b, b2)
		}
	})
}
