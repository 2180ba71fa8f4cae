package etcdv2

import (
	"bytes"
	"encoding/json"
	"net"
	"net/netip"
	"testing"

	"github.com/flannelng/flannel/pkg/etcdv2/etcdv2test"
	"github.com/flannelng/flannel/subnet"
)

// TestEncodeV011 checks our value against the bytes v0.11 writes (spec 1.2)
// for each backend, from the attrs our backends produce.
func TestEncodeV011(t *testing.T) {
	ip := netip.MustParseAddr("10.210.0.1")
	tests := []struct {
		name  string
		attrs subnet.LeaseAttrs
		want  string
	}{
		{"vxlan (our backend writes the VNI; v0.11 does not)",
			subnet.LeaseAttrs{PublicIP: ip, BackendType: "vxlan", BackendData: []byte(`{"VNI":1,"VtepMAC":"66:52:c2:e4:ae:d7"}`)},
			`{"PublicIP":"10.210.0.1","BackendType":"vxlan","BackendData":{"VtepMAC":"66:52:c2:e4:ae:d7"}}`},
		{"vxlan MAC in upper case, VNI 4096",
			subnet.LeaseAttrs{PublicIP: ip, BackendType: "vxlan", BackendData: []byte(`{"VNI":4096,"VtepMAC":"66:52:C2:E4:AE:D7"}`)},
			`{"PublicIP":"10.210.0.1","BackendType":"vxlan","BackendData":{"VtepMAC":"66:52:c2:e4:ae:d7"}}`},
		{"host-gw", subnet.LeaseAttrs{PublicIP: ip, BackendType: "host-gw"},
			`{"PublicIP":"10.210.0.1","BackendType":"host-gw"}`},
		{"host-gw with null data", subnet.LeaseAttrs{PublicIP: ip, BackendType: "host-gw", BackendData: []byte(`null`)},
			`{"PublicIP":"10.210.0.1","BackendType":"host-gw"}`},
		{"udp writes no type", subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("10.210.0.3"), BackendType: "udp"},
			`{"PublicIP":"10.210.0.3"}`},
		{"no type (alloc)", subnet.LeaseAttrs{PublicIP: ip}, `{"PublicIP":"10.210.0.1"}`},
		{"other backend keeps its data", subnet.LeaseAttrs{PublicIP: ip, BackendType: "ipip", BackendData: []byte(`{ "x" : 1 }`)},
			`{"PublicIP":"10.210.0.1","BackendType":"ipip","BackendData":{"x":1}}`},
		{"no address", subnet.LeaseAttrs{BackendType: "host-gw"}, `{"PublicIP":"0.0.0.0","BackendType":"host-gw"}`},
	}
	for _, tt := range tests {
		got, err := EncodeV011(tt.attrs)
		if err != nil || string(got) != tt.want {
			t.Errorf("%s:\n got %s, %v\nwant %s", tt.name, got, err, tt.want)
		}
	}
	// The fixture writes what v0.11 writes; so must we.
	for _, b := range []string{etcdv2test.BackendVxlan, etcdv2test.BackendHostGW, etcdv2test.BackendUDP} {
		want := etcdv2test.LeaseValue(ip, b, "66:52:c2:e4:ae:d7")
		a, err := subnet.DecodeAttrs([]byte(want))
		if err != nil {
			t.Fatal(err)
		}
		if b == etcdv2test.BackendUDP {
			a.BackendType = "udp" // what our udp backend publishes
		}
		if got, err := EncodeV011(a); err != nil || string(got) != want {
			t.Errorf("%s: got %s, %v; v0.11 writes %s", b, got, err, want)
		}
	}
}

func TestEncodeV011Errors(t *testing.T) {
	ip := netip.MustParseAddr("10.210.0.1")
	for name, a := range map[string]subnet.LeaseAttrs{
		"IPv6 address":  {PublicIP: ip, PublicIPv6: netip.MustParseAddr("fd00::1")},
		"IPv6 data":     {PublicIP: ip, BackendType: "vxlan", BackendV6Data: []byte(`{"VtepMAC":"66:52:c2:e4:ae:d7"}`)},
		"IPv6 PublicIP": {PublicIP: netip.MustParseAddr("fd00::1")},
		"vxlan no data": {PublicIP: ip, BackendType: "vxlan"},
		"vxlan bad MAC": {PublicIP: ip, BackendType: "vxlan", BackendData: []byte(`{"VtepMAC":"nope"}`)},
		"vxlan long MAC": {PublicIP: ip, BackendType: "vxlan",
			BackendData: []byte(`{"VtepMAC":"00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01"}`)},
	} {
		if b, err := EncodeV011(a); err == nil {
			t.Errorf("%s: encoded as %s, want an error", name, b)
		}
	}
}

// TestFormats checks what a Manager writes in each Format.
func TestFormats(t *testing.T) {
	a := subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("10.210.0.1"), BackendType: "vxlan",
		BackendData: []byte(`{"VNI":1,"VtepMAC":"66:52:c2:e4:ae:d7"}`)}
	for f, want := range map[Format]string{
		FormatV011:    `{"PublicIP":"10.210.0.1","BackendType":"vxlan","BackendData":{"VtepMAC":"66:52:c2:e4:ae:d7"}}`,
		FormatCurrent: `{"PublicIP":"10.210.0.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"66:52:c2:e4:ae:d7"}}`,
	} {
		m := New(nil, Options{Value: f})
		if got, err := m.encode(a); err != nil || got != want {
			t.Errorf("format %d: %s, %v, want %s", f, got, err, want)
		}
	}
}

// FuzzEncodeV011: whatever value decodes, our v0.11 encoding of it decodes
// to the same address, type (udp: none) and MAC, and encoding is stable.
func FuzzEncodeV011(f *testing.F) {
	for _, s := range []string{
		`{"PublicIP":"10.210.0.1","BackendType":"vxlan","BackendData":{"VtepMAC":"66:52:c2:e4:ae:d7"}}`,
		`{"PublicIP":"10.210.0.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"66:52:c2:e4:ae:d7"}}`,
		`{"PublicIP":"10.210.0.1","BackendType":"host-gw"}`,
		`{"PublicIP":"10.210.0.3"}`,
		`{"PublicIP":"10.210.0.3","BackendType":"udp","BackendData":{"Port":8285}}`,
		`{"publicip":"10.1.1.1","backendtype":"ipip","backenddata":[1,2]}`,
		`{}`, `null`, `"x"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		a, err := subnet.DecodeAttrs(value)
		if err != nil {
			return
		}
		b, err := EncodeV011(a)
		if err != nil {
			return
		}
		a2, err := subnet.DecodeAttrs(b)
		if err != nil {
			t.Fatalf("%s encodes to %s, which does not decode: %v", value, b, err)
		}
		wantType := a.BackendType
		if wantType == "udp" {
			wantType = ""
		}
		if a2.PublicIP != a.PublicIP || a2.BackendType != wantType || a2.PublicIPv6.IsValid() || a2.BackendV6Data != nil {
			t.Fatalf("%s -> %s: %+v, want %+v", value, b, a2, a)
		}
		if a.BackendType == "vxlan" {
			var d1, d2 subnet.VXLANData
			_ = json.Unmarshal(a.BackendData, &d1)
			_ = json.Unmarshal(a2.BackendData, &d2)
			if mac, err := net.ParseMAC(d1.VtepMAC); err != nil || mac.String() != d2.VtepMAC || string(a2.BackendData) != `{"VtepMAC":"`+d2.VtepMAC+`"}` {
				t.Fatalf("%s -> %s: MAC %q became %q", value, b, d1.VtepMAC, d2.VtepMAC)
			}
		}
		if b2, err := EncodeV011(a2); err != nil || !bytes.Equal(b, b2) {
			t.Fatalf("not stable: %s -> %s -> %s, %v", value, b, b2, err)
		}
	})
}
