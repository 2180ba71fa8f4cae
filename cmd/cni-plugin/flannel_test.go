package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/flannelng/flannel/pkg/version"
)

func TestLoadNetConf(t *testing.T) {
	n, err := loadNetConf([]byte(`{"name":"cbr0","type":"flannel","unknown":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if n.SubnetFile != defaultSubnetFile || n.DataDir != defaultDataDir {
		t.Errorf("defaults: subnetFile %q dataDir %q", n.SubnetFile, n.DataDir)
	}
	n, err = loadNetConf([]byte(`{"name":"cbr0","subnetFile":"","dataDir":""}`))
	if err != nil {
		t.Fatal(err)
	}
	if n.SubnetFile != defaultSubnetFile || n.DataDir != defaultDataDir {
		t.Errorf("empty strings: subnetFile %q dataDir %q", n.SubnetFile, n.DataDir)
	}
	n, err = loadNetConf([]byte(`{"name":"cbr0","subnetFile":"/a","dataDir":"/b"}`))
	if err != nil {
		t.Fatal(err)
	}
	if n.SubnetFile != "/a" || n.DataDir != "/b" {
		t.Errorf("set: subnetFile %q dataDir %q", n.SubnetFile, n.DataDir)
	}
	for _, bad := range []string{`{"name":`, `{"delegate":5}`, `{"ipam":"x"}`, `{"runtimeConfig":[]}`, `[]`} {
		_, err := loadNetConf([]byte(bad))
		if err == nil || !strings.HasPrefix(err.Error(), "failed to load netconf: ") {
			t.Errorf("loadNetConf(%s) = %v, want a 'failed to load netconf' error", bad, err)
		}
	}
}

func TestAbout(t *testing.T) {
	defer func(p, v, c string) { Program, version.Version, Commit = p, v, c }(Program, version.Version, Commit)
	version.Version, Commit = "v1.2.3", "abc123"
	want := "CNI Plugin flannel version v1.2.3 (" // then GOOS/GOARCH
	if got := about(); !strings.HasPrefix(got, want) || !strings.HasSuffix(got, ") commit abc123") {
		t.Errorf("about() = %q", got)
	}
}

func TestDelegateDelDone(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"success", nil, true},
		{"version rejected", &types.Error{Code: types.ErrIncompatibleCNIVersion, Msg: "incompatible CNI versions"}, true},
		{"undecodable config", &types.Error{Code: types.ErrDecodingFailure, Msg: "error unmarshall network config"}, true},
		{"masquerade chain already gone (Debian bridge 1.1.1, iptables-nft)", &types.Error{Code: 999, Msg: "running [/usr/sbin/iptables -t nat -D POSTROUTING ...]: exit status 2: iptables v1.8.9 (nf_tables): Chain 'CNI-ac38' does not exist"}, true},
		{"link gone", errors.New("Link not found"), true},
		{"real failure", &types.Error{Code: 999, Msg: "failed to acquire lock: permission denied"}, false},
		{"delegate not installed", errors.New(`failed to find plugin "bridge" in path [/opt/cni/bin]`), false},
		{"iptables missing", &types.Error{Code: 999, Msg: `exec: "iptables": executable file not found in $PATH`}, false},
	}
	for _, tt := range tests {
		if got := delegateDelDone(tt.err); got != tt.want {
			t.Errorf("%s: delegateDelDone = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// What libcni hands CHECK: the result ADD printed, in the config's version.
const prevResult100 = `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/var/run/netns/p"}],` +
	`"ips":[{"interface":0,"address":"10.244.3.2/24","gateway":"10.244.3.1"},{"interface":0,"address":"fd00:10:244:3::2/64","gateway":"fd00:10:244:3::1"}],` +
	`"routes":[{"dst":"0.0.0.0/0"},{"dst":"10.244.0.0/16"},{"dst":"fd00:10:244::/56"},{"dst":"192.0.2.0/24","gw":"10.244.3.254"}],"dns":{}}`

func TestCheckPrevResult(t *testing.T) {
	n, err := loadNetConf([]byte(`{"cniVersion":"1.0.0","name":"cbr0","prevResult":` + prevResult100 + `}`))
	if err != nil {
		t.Fatal(err)
	}
	before := fmt.Sprint(n.RawPrevResult)
	for _, tt := range []struct {
		saved, wantVersion string
	}{{"1.0.0", "1.0.0"}, {"", "1.0.0"}, {"0.4.0", "0.4.0"}} {
		prev, err := checkPrevResult(n, tt.saved)
		if err != nil {
			t.Fatalf("saved version %q: %v", tt.saved, err)
		}
		b, _ := json.Marshal(prev)
		var got struct {
			CNIVersion string `json:"cniVersion"`
			Routes     []struct{ Dst, GW string }
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		want := []struct{ Dst, GW string }{
			{"0.0.0.0/0", "10.244.3.1"}, {"10.244.0.0/16", "10.244.3.1"},
			{"fd00:10:244::/56", "fd00:10:244:3::1"}, {"192.0.2.0/24", "10.244.3.254"},
		}
		if got.CNIVersion != tt.wantVersion || !slices.Equal(got.Routes, want) {
			t.Errorf("saved version %q: got %s", tt.saved, b)
		}
	}
	if fmt.Sprint(n.RawPrevResult) != before {
		t.Errorf("checkPrevResult changed the config's prevResult: %v", n.RawPrevResult)
	}

	// Nothing to fill and the same version: the runtime's prevResult as is.
	raw := `{"cniVersion":"1.0.0","ips":[{"address":"10.244.3.2/24"}],"routes":[{"dst":"10.244.0.0/16","gw":"10.244.3.1"}],"custom":"kept"}`
	n, err = loadNetConf([]byte(`{"cniVersion":"1.0.0","name":"cbr0","prevResult":` + raw + `}`))
	if err != nil {
		t.Fatal(err)
	}
	prev, err := checkPrevResult(n, "1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := json.Marshal(prev); !strings.Contains(string(b), `"custom":"kept"`) {
		t.Errorf("prevResult rewritten although nothing changed: %s", b)
	}

	n, err = loadNetConf([]byte(`{"cniVersion":"1.0.0","name":"cbr0","prevResult":{"cniVersion":"1.0.0","ips":[{"address":"bogus"}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := checkPrevResult(n, "1.0.0"); err == nil || !strings.HasPrefix(err.Error(), "parse prevResult: ") {
		t.Errorf("bad prevResult: %v", err)
	}
}
