package main

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

const subnetsPrefix = "/coreos.com/network/subnets/"

func ent(name, value string, lease int64) entry {
	return parseEntry(subnetsPrefix, subnetsPrefix+name, []byte(value), lease, 10)
}

func sampleEntries() []entry {
	return []entry{
		ent("10.5.21.0-24", `{"PublicIP":"192.168.50.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"a2:2a:fd:9f:55:f3"}}`, 0x694d9b7f1f4a7c05),
		ent("10.5.3.0-24", `{"PublicIP":"192.168.50.9","PublicIPv6":null}`, 0),
		ent("10.5.100.0-24", `{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"host-gw"}`, 0x11),
		ent("10.5.4.0-24", `{"PublicIP":"192.168.50.4","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:75:1e:94:97:31"}}`, 0x694d9b7f1f4a7c05),
		ent("garbage", `{}`, 0),
		ent("10.5.5.0-24", `not json`, 0x12),
	}
}

var now = time.Date(2026, 11, 23, 12, 0, 0, 400e6, time.UTC)

func TestLeaseTable(t *testing.T) {
	ttls := map[int64]int64{0x694d9b7f1f4a7c05: 86390, 0x11: -1, 0x12: 5}
	var b bytes.Buffer
	if err := renderTable(&b, buildViews(sampleEntries(), ttls, now)); err != nil {
		t.Fatal(err)
	}
	want := `SUBNET         IPV6 SUBNET  PUBLIC IP     BACKEND  VTEP MAC           EXPIRES
10.5.3.0/24    -            192.168.50.9  -        -                  reservation
10.5.4.0/24    -            192.168.50.4  vxlan    0a:75:1e:94:97:31  2026-11-24T11:59:50Z (23h59m50s)
10.5.21.0/24   -            192.168.50.1  vxlan    a2:2a:fd:9f:55:f3  2026-11-24T11:59:50Z (23h59m50s)
10.5.100.0/24  -            192.168.64.3  host-gw  -                  expired
unreadable key /coreos.com/network/subnets/10.5.5.0-24 (flanneld ignores it): decode lease value: invalid character 'o' in literal null (expecting 'u')
unreadable key /coreos.com/network/subnets/garbage (flanneld ignores it): invalid subnet key "garbage"
`
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestLeaseTableDualStack(t *testing.T) {
	es := []entry{
		ent("10.5.27.0-24&fd00:10:0:5a::-64", `{"PublicIP":"192.168.50.1","PublicIPv6":"fd00:50::1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:75:1e:94:97:31"},"BackendV6Data":{"VNI":1,"VtepMAC":"be:cf:ba:d0:c7:8f"}}`, 0),
		ent("0.0.0.0-0&fd00:10:0:1::-64", `{"PublicIP":"0.0.0.0","PublicIPv6":"fd00:50::2"}`, 0),
	}
	var b bytes.Buffer
	if err := renderTable(&b, buildViews(es, nil, now)); err != nil {
		t.Fatal(err)
	}
	want := `SUBNET        IPV6 SUBNET        PUBLIC IP     PUBLIC IPV6  BACKEND  VTEP MAC           VTEP MAC V6        EXPIRES
10.5.27.0/24  fd00:10:0:5a::/64  192.168.50.1  fd00:50::1   vxlan    0a:75:1e:94:97:31  be:cf:ba:d0:c7:8f  reservation
-             fd00:10:0:1::/64   -             fd00:50::2   -        -                  -                  reservation
`
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestLeaseJSON(t *testing.T) {
	ttls := map[int64]int64{0x694d9b7f1f4a7c05: 86390, 0x11: -1, 0x12: 5}
	var b bytes.Buffer
	if err := renderJSON(&b, buildViews(sampleEntries(), ttls, now)); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if len(got) != 6 {
		t.Fatalf("%d objects", len(got))
	}
	first := got[0]
	wantFirst := map[string]any{
		"Key": subnetsPrefix + "10.5.3.0-24", "Value": `{"PublicIP":"192.168.50.9","PublicIPv6":null}`,
		"Subnet": "10.5.3.0/24", "IPv6Subnet": nil, "PublicIP": "192.168.50.9", "PublicIPv6": nil,
		"BackendType": "", "VtepMAC": nil, "Reservation": true, "EtcdLease": nil, "Live": nil, "Expires": nil, "TTLSeconds": nil,
	}
	if len(first) != len(wantFirst) {
		t.Errorf("keys of a reservation: %v", first)
	}
	for k, v := range wantFirst {
		if first[k] != v {
			t.Errorf("reservation %s = %#v, want %#v", k, first[k], v)
		}
	}
	second := got[1]
	for k, v := range map[string]any{
		"Subnet": "10.5.4.0/24", "BackendType": "vxlan", "VtepMAC": "0a:75:1e:94:97:31", "Reservation": false,
		"EtcdLease": "694d9b7f1f4a7c05", "Live": true, "Expires": "2026-11-24T11:59:50Z", "TTLSeconds": float64(86390),
	} {
		if second[k] != v {
			t.Errorf("lease %s = %#v, want %#v", k, second[k], v)
		}
	}
	if got[3]["Expires"] != nil || got[3]["TTLSeconds"] != float64(-1) || got[3]["Live"] != false {
		t.Errorf("expired lease: %v", got[3])
	}
	if got[4]["Error"] == nil || got[5]["Error"] != `invalid subnet key "garbage"` || got[5]["Value"] != "{}" {
		t.Errorf("unreadable keys: %v %v", got[4], got[5])
	}
	b.Reset()
	if err := renderJSON(&b, buildViews(nil, nil, now)); err != nil || b.String() != "[]\n" {
		t.Errorf("empty: %q %v", b.String(), err)
	}
}
