package subnet

import (
	"encoding/json"
	"errors"
	"net"
	"strings"
	"testing"
)

// The canonical-form fast path must decode exactly what encoding/json
// decodes, and decline nothing it should not.
func FuzzDecodeBackendData(f *testing.F) {
	for _, s := range []string{
		`{"VNI":1,"VtepMAC":"02:fb:00:00:00:01"}`, `{"VNI":4294967295,"VtepMAC":"AA:bb:cc:dd:ee:ff"}`,
		`{"VNI":4294967296,"VtepMAC":"02:fb:00:00:00:01"}`, `{"VNI":01,"VtepMAC":"02:fb:00:00:00:01"}`,
		`{"VNI":1,"VtepMAC":"02-fb-00-00-00-01"}`, `{"vni":1,"vtepmac":"02:fb:00:00:00:01"}`,
		`{"VNI":1,"VtepMAC":"02:fb:00:00:00:0g"}`, `{"VNI":1, "VtepMAC":"02:fb:00:00:00:01"}`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		p, ok := decodeCanonicalVXLAN(raw)
		if !ok {
			return
		}
		var d VXLANData
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%q: fast path took what encoding/json refuses: %v", raw, err)
		}
		want, err := net.ParseMAC(d.VtepMAC)
		if err != nil || len(want) != 6 || d.VNI != p.VNI || want.String() != p.VtepMAC() {
			t.Fatalf("%q: fast path %d %s, encoding/json %d %s (%v)", raw, p.VNI, p.VtepMAC(), d.VNI, want, err)
		}
	})
}

func TestDecodeCanonical(t *testing.T) {
	p, ok := decodeCanonicalVXLAN([]byte(`{"VNI":7,"VtepMAC":"0A:fb:00:00:00:01"}`))
	if !ok || p.VNI != 7 || p.VtepMAC() != "0a:fb:00:00:00:01" {
		t.Fatalf("canonical form: %d %s %v", p.VNI, p.VtepMAC(), ok)
	}
	for _, s := range []string{`{"VNI":01,"VtepMAC":"02:fb:00:00:00:01"}`, `{"VNI":4294967296,"VtepMAC":"02:fb:00:00:00:01"}`, `{"VNI":1,"VtepMAC":"02:fb:00:00:00:01","X":1}`} {
		if _, ok := decodeCanonicalVXLAN([]byte(s)); ok {
			t.Errorf("%s taken by the fast path", s)
		}
	}
	// What the fast path leaves goes through encoding/json, as before.
	if p, err := DecodeVXLANData([]byte(`{"VtepMAC":"02:fb:00:00:00:01", "VNI":3}`)); err != nil || p.VNI != 3 || p.VtepMAC() != "02:fb:00:00:00:01" {
		t.Errorf("other key order: %d %s %v", p.VNI, p.VtepMAC(), err)
	}
}

func TestVXLANDataRoundTrip(t *testing.T) {
	mac := [6]byte{0xa2, 0x2a, 0xfd, 0x9f, 0x55, 0xf3}
	raw, err := EncodeVXLANData(1, mac)
	if err != nil || string(raw) != `{"VNI":1,"VtepMAC":"a2:2a:fd:9f:55:f3"}` {
		t.Fatalf("encode: %s %v", raw, err)
	}
	p, err := DecodeVXLANData(raw)
	if err != nil || p != (VXLANPeer{VNI: 1, HasVNI: true, MAC: mac}) {
		t.Fatalf("decode: %+v %v", p, err)
	}
	// flannel v0.11 writes no VNI.
	p, err = DecodeVXLANData([]byte(`{"VtepMAC":"A2:2A:FD:9F:55:F3"}`))
	if err != nil || p != (VXLANPeer{MAC: mac}) {
		t.Fatalf("v0.11 data: %+v %v", p, err)
	}
}

func TestDecodeVXLANDataErrors(t *testing.T) {
	for _, c := range []struct {
		raw, msg, mac string
		macErr        bool
	}{
		{``, "no backend data", "", false},
		{`[1]`, "decode vxlan backend data [1]: json: cannot unmarshal", "", false},
		{`{}`, "vxlan backend data {} has no VtepMAC", "", true},
		{`{"VNI":1}`, `vxlan backend data {"VNI":1} has no VtepMAC`, "", true},
		{`{"VNI":1,"VtepMAC":"nope"}`, `vxlan backend data {"VNI":1,"VtepMAC":"nope"}: bad VtepMAC: address nope: invalid MAC address`, "nope", true},
		{`{"VNI":1,"VtepMAC":"00:00:5e:00:53:00:00:01"}`, "has 8 bytes, want 6", "00:00:5e:00:53:00:00:01", true},
	} {
		_, err := DecodeVXLANData([]byte(c.raw))
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%q: %v, want %q", c.raw, err, c.msg)
			continue
		}
		var me *VtepMACError
		if errors.As(err, &me) != c.macErr || c.macErr && me.VtepMAC != c.mac {
			t.Errorf("%q: %#v, VtepMACError %v with %q", c.raw, err, c.macErr, c.mac)
		}
	}
}
