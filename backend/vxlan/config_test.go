package vxlan

import (
	"encoding/json"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/flannelng/flannel/backend/kernel"
	"github.com/flannelng/flannel/subnet"
)

func TestParseOptions(t *testing.T) {
	tests := []struct {
		raw     string
		want    Options
		wantErr string
	}{
		{raw: ``, want: Options{VNI: 1, ChecksumOffload: "auto"}},
		{raw: `{"Type":"vxlan"}`, want: Options{VNI: 1, ChecksumOffload: "auto"}},
		{
			raw:  `{"type":"vxlan","vni":42,"port":4789,"gbp":true,"learning":true,"directrouting":true,"mtu":9000,"checksumoffload":"OFF"}`,
			want: Options{VNI: 42, Port: 4789, GBP: true, Learning: true, DirectRouting: true, MTU: 9000, ChecksumOffload: "off"},
		},
		{raw: `{"VNI":0}`, want: Options{VNI: 0, ChecksumOffload: "auto"}},
		{raw: `{"VNI":-1}`, wantErr: "invalid Backend.VNI -1"},
		{raw: `{"VNI":16777216}`, wantErr: "invalid Backend.VNI 16777216"},
		{raw: `{"Port":70000}`, wantErr: "invalid Backend.Port 70000"},
		{raw: `{"MTU":100}`, wantErr: "invalid Backend.MTU 100"},
		{raw: `{"VNI":"1"}`, wantErr: "Backend.VNI must be of type int, got string"},
		{raw: `{"DirectRouting":"yes"}`, wantErr: "Backend.DirectRouting must be of type bool"},
		{raw: `{"ChecksumOffload":"maybe"}`, wantErr: `invalid Backend.ChecksumOffload "maybe"`},
		{raw: `{"VNI":1`, wantErr: "error decoding VXLAN backend config"},
	}
	for _, tc := range tests {
		got, err := ParseOptions(json.RawMessage(tc.raw))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseOptions(%s) error = %v, want %q", tc.raw, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseOptions(%s) = %+v, %v; want %+v", tc.raw, got, err, tc.want)
		}
	}
}

func TestOptionsLogLine(t *testing.T) {
	o, _ := ParseOptions(nil)
	if got := o.String(); got != "VXLAN config: VNI=1 Port=0 GBP=false Learning=false DirectRouting=false" {
		t.Fatalf("log line = %q", got)
	}
}

func TestNamesAndMTU(t *testing.T) {
	if DeviceName(1) != "flannel.1" || DeviceNameV6(7) != "flannel-v6.7" {
		t.Fatal("device names")
	}
	if tunnelMTU(1500, false) != 1450 || tunnelMTU(1500, true) != 1430 || tunnelMTU(1400, false) != 1350 {
		t.Fatal("tunnel MTU")
	}
}

func TestRandomMAC(t *testing.T) {
	seen := map[kernel.MAC]bool{}
	for i := 0; i < 64; i++ {
		m, err := randomMAC()
		if err != nil {
			t.Fatal(err)
		}
		if m[0]&0x01 != 0 || m[0]&0x02 == 0 {
			t.Fatalf("%s is not a locally administered unicast MAC", m)
		}
		seen[m] = true
	}
	if len(seen) < 60 {
		t.Fatalf("only %d distinct MACs out of 64", len(seen))
	}
}

func TestBackendDataBytes(t *testing.T) {
	mac, _ := kernel.ParseMAC("a2:2a:fd:9f:55:f3")
	raw, err := encodeBackendData(1, mac)
	if err != nil {
		t.Fatal(err)
	}
	if string(raw) != `{"VNI":1,"VtepMAC":"a2:2a:fd:9f:55:f3"}` {
		t.Fatalf("BackendData = %s", raw)
	}
	// The whole lease value, as etcd stores it.
	v, err := subnet.EncodeAttrs(subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("192.168.50.1"), BackendType: BackendType, BackendData: raw})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"PublicIP":"192.168.50.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"a2:2a:fd:9f:55:f3"}}`; string(v) != want {
		t.Fatalf("lease value = %s\nwant %s", v, want)
	}
	vni, got, err := decodeBackendData(raw)
	if err != nil || vni != 1 || got != mac {
		t.Fatalf("decode = %d %s %v", vni, got, err)
	}
	for _, bad := range []string{``, `{}`, `{"VNI":1}`, `{"VNI":1,"VtepMAC":"nope"}`, `[1]`} {
		if _, _, err := decodeBackendData(json.RawMessage(bad)); err == nil {
			t.Errorf("decodeBackendData(%q) accepted", bad)
		}
	}
	if !regexp.MustCompile(`^\{"VNI":\d+,"VtepMAC":"([0-9a-f]{2}:){5}[0-9a-f]{2}"\}$`).Match(raw) {
		t.Fatal("format")
	}
}

func TestKernelHasCsumFix(t *testing.T) {
	tests := map[string]bool{
		"6.18.44-fc-v769":   true,
		"5.7.0":             true,
		"5.6.12":            false,
		"5.6.13-arch1":      true,
		"5.4.40":            false,
		"5.4.41-generic":    true,
		"4.19.122":          false,
		"4.19.123":          true,
		"4.14.181":          true,
		"4.9.300":           false,
		"3.10.0-1160.el7":   false,
		"5.5.19":            false,
		"weird":             true,
		"5.4.0+":            false,
		"4.18.0-553.el8_10": false,
	}
	for rel, want := range tests {
		if got := kernelHasCsumFix(rel); got != want {
			t.Errorf("kernelHasCsumFix(%q) = %v, want %v", rel, got, want)
		}
	}
}

func TestChecksumDecision(t *testing.T) {
	if off, on, _ := checksumDecision(ChecksumAuto, "6.1.0", false); off || on {
		t.Fatal("auto on a fixed kernel without NAT must leave the setting alone")
	}
	if off, _, why := checksumDecision(ChecksumAuto, "6.1.0", true); !off || !strings.Contains(why, "NAT") {
		t.Fatal("auto behind NAT must turn offload off")
	}
	if off, _, why := checksumDecision(ChecksumAuto, "5.4.1", false); !off || !strings.Contains(why, "5.4.1") {
		t.Fatal("auto on a known-bad kernel must turn offload off")
	}
	if off, on, _ := checksumDecision(ChecksumOn, "5.4.1", true); off || !on {
		t.Fatal("on must force on")
	}
	if off, on, _ := checksumDecision(ChecksumOff, "6.1.0", false); !off || on {
		t.Fatal("off must force off")
	}
}
