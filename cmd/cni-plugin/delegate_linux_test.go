package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// render runs the pure part of ADD: stdin and subnet.env content to the
// delegate JSON.
func render(t *testing.T, stdin, env string) (string, error) {
	t.Helper()
	n, err := loadNetConf([]byte(stdin))
	if err != nil {
		t.Fatalf("loadNetConf: %v", err)
	}
	se, err := parseSubnetEnv([]byte(env), "subnet.env")
	if err != nil {
		t.Fatalf("parseSubnetEnv: %v", err)
	}
	d, err := buildDelegate(n, se)
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return string(b), nil
}

func TestBuildDelegateGolden(t *testing.T) {
	for _, tt := range goldenCases {
		t.Run(tt.name, func(t *testing.T) {
			got, err := render(t, tt.stdin, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.golden {
				t.Errorf("delegate config\n got  %s\n want %s", got, tt.golden)
			}
		})
	}
}

const ipv4Env = "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"

func TestBuildDelegateRules(t *testing.T) {
	tests := []struct {
		name  string
		stdin string
		env   string
		want  string
	}{
		{
			name:  "no cniVersion anywhere: none in the delegate",
			stdin: `{"name":"n"}`,
			want:  `{"ipMasq":false,"ipam":{"ranges":[[{"subnet":"10.244.3.0/24"}]],"routes":[{"dst":"10.244.0.0/16"}],"type":"host-local"},"isGateway":true,"mtu":1450,"name":"n","type":"bridge"}`,
		},
		{
			name:  "top-level cniVersion overrides the delegate's; user ipMasq, mtu, isGateway win",
			stdin: `{"name":"n","cniVersion":"0.4.0","delegate":{"cniVersion":"0.2.0","ipMasq":true,"mtu":9000,"isGateway":false}}`,
			want:  `{"cniVersion":"0.4.0","ipMasq":true,"ipam":{"ranges":[[{"subnet":"10.244.3.0/24"}]],"routes":[{"dst":"10.244.0.0/16"}],"type":"host-local"},"isGateway":false,"mtu":9000,"name":"n","type":"bridge"}`,
		},
		{
			name:  "isGateway only for bridge",
			stdin: `{"name":"n","delegate":{"type":"ipvlan","master":"eth1"}}`,
			want:  `{"ipMasq":false,"ipam":{"ranges":[[{"subnet":"10.244.3.0/24"}]],"routes":[{"dst":"10.244.0.0/16"}],"type":"host-local"},"master":"eth1","mtu":1450,"name":"n","type":"ipvlan"}`,
		},
		{
			name:  "user ipam: keys pass through, type kept, ranges overwritten, routes first",
			stdin: `{"name":"n","ipam":{"type":"my-ipam","unknown-param":{"x":[1,2]},"ranges":[[{"subnet":"1.2.3.0/24"}]],"routes":[{"dst":"0.0.0.0/0"},{"dst":"10.9.9.9/8","gw":"10.244.3.254"}]}}`,
			want:  `{"ipMasq":false,"ipam":{"ranges":[[{"subnet":"10.244.3.0/24"}]],"routes":[{"dst":"0.0.0.0/0"},{"dst":"10.9.9.9/8","gw":"10.244.3.254"},{"dst":"10.244.0.0/16"}],"type":"my-ipam","unknown-param":{"x":[1,2]}},"isGateway":true,"mtu":1450,"name":"n","type":"bridge"}`,
		},
		{
			name:  "ipam routes null",
			stdin: `{"name":"n","ipam":{"routes":null}}`,
			want:  `{"ipMasq":false,"ipam":{"ranges":[[{"subnet":"10.244.3.0/24"}]],"routes":[{"dst":"10.244.0.0/16"}],"type":"host-local"},"isGateway":true,"mtu":1450,"name":"n","type":"bridge"}`,
		},
		{
			name:  "ipmasq false in subnet.env: the bridge masquerades",
			stdin: `{"name":"n"}`,
			env:   strings.Replace(ipv4Env, "IPMASQ=true", "IPMASQ=false", 1),
			want:  `{"ipMasq":true,"ipam":{"ranges":[[{"subnet":"10.244.3.0/24"}]],"routes":[{"dst":"10.244.0.0/16"}],"type":"host-local"},"isGateway":true,"mtu":1450,"name":"n","type":"bridge"}`,
		},
		{
			name:  "top-level runtimeConfig replaces the delegate's",
			stdin: `{"name":"n","delegate":{"runtimeConfig":{"a":1}},"runtimeConfig":{"b":2}}`,
			want:  `{"ipMasq":false,"ipam":{"ranges":[[{"subnet":"10.244.3.0/24"}]],"routes":[{"dst":"10.244.0.0/16"}],"type":"host-local"},"isGateway":true,"mtu":1450,"name":"n","runtimeConfig":{"b":2},"type":"bridge"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := tt.env
			if env == "" {
				env = ipv4Env
			}
			got, err := render(t, tt.stdin, env)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("delegate config\n got  %s\n want %s", got, tt.want)
			}
		})
	}
}

func TestBuildDelegateErrors(t *testing.T) {
	tests := []struct {
		name, stdin, want string
	}{
		{"delegate with name", `{"name":"n","delegate":{"name":"x"}}`, "'delegate' dictionary must not have 'name' field, it'll be set by flannel"},
		{"delegate with ipam", `{"name":"n","delegate":{"ipam":{}}}`, "'delegate' dictionary must not have 'ipam' field, it'll be set by flannel"},
		{"delegate type not a string", `{"name":"n","delegate":{"type":5}}`, "'delegate' dictionary, if present, must have (string) 'type' field"},
		{"delegate type null", `{"name":"n","delegate":{"type":null}}`, "'delegate' dictionary, if present, must have (string) 'type' field"},
		{"delegate type empty", `{"name":"n","delegate":{"type":""}}`, "'delegate' dictionary, if present, must have (string) 'type' field"},
		{"type checked before name", `{"name":"n","delegate":{"type":1,"name":"x"}}`, "'delegate' dictionary, if present, must have (string) 'type' field"},
		{"routes not a list", `{"name":"n","ipam":{"routes":{"dst":"0.0.0.0/0"}}}`, "failed to assemble Delegate IPAM: failed to read IPAM routes: failed to parse ipam.routes: json: cannot unmarshal object into Go value of type []types.Route"},
		{"route with a bad dst", `{"name":"n","ipam":{"routes":[{"dst":"nope"}]}}`, "failed to assemble Delegate IPAM: failed to read IPAM routes: failed to parse ipam.routes: invalid CIDR address: nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := render(t, tt.stdin, ipv4Env)
			if err == nil {
				t.Fatalf("rendered %s, want error %q", got, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got  %q\n want %q", err, tt.want)
			}
		})
	}
}

// buildDelegate runs for ADD, STATUS and GC of one process only, but it must
// still not write into the caller's maps: a shared map would leak keys from
// one rendering into the next.
func TestBuildDelegateLeavesInputAlone(t *testing.T) {
	stdin := `{"name":"n","delegate":{"hairpinMode":true},"ipam":{"dataDir":"/x"},"runtimeConfig":{"a":1}}`
	n, err := loadNetConf([]byte(stdin))
	if err != nil {
		t.Fatal(err)
	}
	before, _ := loadNetConf([]byte(stdin))
	se, err := parseSubnetEnv([]byte(ipv4Env), "subnet.env")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := buildDelegate(n, se); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(n.Delegate, before.Delegate) || !reflect.DeepEqual(n.IPAM, before.IPAM) {
		t.Errorf("buildDelegate changed its input: delegate %v ipam %v", n.Delegate, n.IPAM)
	}
}

func TestStaleBridge(t *testing.T) {
	env := &subnetEnv{Subnet: netip.MustParsePrefix("10.244.3.0/24"), IPv6Subnet: netip.MustParsePrefix("fd00:10:244:3::/64")}
	bridge := func(want string, addrs ...string) func(string) ([]netip.Prefix, error) {
		return func(name string) ([]netip.Prefix, error) {
			if name != want {
				return nil, fmt.Errorf("no link %s", name)
			}
			var out []netip.Prefix
			for _, a := range addrs {
				out = append(out, netip.MustParsePrefix(a))
			}
			return out, nil
		}
	}
	gw := map[string]any{"type": "bridge", "isGateway": true}
	tests := []struct {
		name  string
		d     map[string]any
		addrs func(string) ([]netip.Prefix, error)
		stale bool
	}{
		{"no bridge yet", gw, bridge("other"), false},
		{"bridge in order", gw, bridge("cni0", "10.244.3.1/24", "fe80::1/64", "fd00:10:244:3::1/64"), false},
		{"old IPv4 subnet", gw, bridge("cni0", "10.244.9.1/24"), true},
		{"old IPv6 subnet only: the bridge plugin copes", gw, bridge("cni0", "10.244.3.1/24", "fd00:10:244:9::1/64"), false},
		{"named bridge", map[string]any{"type": "bridge", "isGateway": true, "bridge": "br-flannel"}, bridge("br-flannel", "10.244.9.1/24"), true},
		{"user set forceAddress false", map[string]any{"type": "bridge", "isGateway": true, "forceAddress": false}, bridge("cni0", "10.244.9.1/24"), false},
		{"no gateway address", map[string]any{"type": "bridge", "isGateway": false}, bridge("cni0", "10.244.9.1/24"), false},
		{"not a bridge", map[string]any{"type": "ipvlan", "isGateway": true}, bridge("cni0", "10.244.9.1/24"), false},
	}
	for _, tc := range tests {
		why := staleBridge(tc.d, env, tc.addrs)
		if (why != "") != tc.stale {
			t.Errorf("%s: staleBridge = %q, want stale %v", tc.name, why, tc.stale)
		}
	}
	if why := staleBridge(gw, env, bridge("cni0", "10.244.9.1/24")); why != "bridge cni0 has address 10.244.9.1/24, outside FLANNEL_SUBNET 10.244.3.0/24" {
		t.Errorf("reason %q", why)
	}
}
