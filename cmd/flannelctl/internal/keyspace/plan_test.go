package keyspace

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const (
	subnets   = "/coreos.com/network/subnets/"
	configKey = "/coreos.com/network/config"
	cfg       = `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`
	day       = 24 * time.Hour
)

// v011 is a lease value as flannel v0.11 writes it (spec 1.2).
func v011(ip, mac string) string {
	return `{"PublicIP":"` + ip + `","BackendType":"vxlan","BackendData":{"VtepMAC":"` + mac + `"}}`
}

// both is the same lease as our daemon writes it (v0.28 bytes, spec 8.1).
func both(ip, mac string) string {
	return `{"PublicIP":"` + ip + `","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"` + mac + `"}}`
}

// v2key is a v2 key with ttl left; 0 makes a reservation.
func v2key(name, value string, ttl time.Duration) Key {
	return Key{Path: subnets + name, Name: name, Value: []byte(value), Expires: ttl != 0, TTL: ttl}
}

// v3key is a v3 key, with an etcd lease or without (a reservation).
func v3key(name, value string, leased bool) Key {
	return Key{Path: subnets + name, Name: name, Value: []byte(value), Expires: leased}
}

// row renders an item for comparison: "key action ttl reason".
func row(it Item) string {
	ttl := "-"
	switch {
	case it.Config, it.Action == Skip:
	case !it.Expires && it.Lease.Subnet.IsValid():
		ttl = "reservation"
	case it.Expires:
		ttl = it.TTL.String()
	}
	return strings.TrimSpace(fmt.Sprintf("%s %s %s %s", strings.TrimPrefix(it.Key, subnets), it.Action, ttl, it.Reason))
}

func rows(p Plan) string {
	var b strings.Builder
	for _, it := range p.Items {
		b.WriteString(row(it) + "\n")
	}
	return b.String()
}

func TestRemainingTTL(t *testing.T) {
	for _, c := range []struct {
		ttl, elapsed, want time.Duration
	}{
		{86393 * time.Second, 0, 86393 * time.Second},
		{86393 * time.Second, 1500 * time.Millisecond, 86391 * time.Second}, // rounded down: never outlives v2
		{86393 * time.Second, 999 * time.Millisecond, 86392 * time.Second},
		{2 * time.Second, 500 * time.Millisecond, time.Second},
		{time.Second, 999 * time.Millisecond, 0}, // less than a second left: expired
		{time.Second, 3 * time.Second, -2 * time.Second},
	} {
		if got := RemainingTTL(c.ttl, c.elapsed); got != c.want {
			t.Errorf("RemainingTTL(%v, %v) = %v, want %v", c.ttl, c.elapsed, got, c.want)
		}
	}
}

// A v0.11 cluster into an empty v3: the config and every lease are copied,
// each lease with its remaining TTL, a reservation without one; keys that
// are not leases and expired keys are skipped. Order: config, leases by
// subnet, then the rest.
func TestPlanFresh(t *testing.T) {
	v2 := Store{Config: []byte(cfg), Subnets: []Key{
		v2key("10.244.82.0-24", v011("10.210.0.1", "66:52:c2:e4:ae:d7"), 86393*time.Second),
		v2key("10.244.150.0-24", `{"PublicIP":"10.210.0.9"}`, 0),
		v2key("10.244.7.0-24", `{"PublicIP":"10.210.0.3"}`, 3600*time.Second), // udp: no BackendType
		v2key("10.244.100.0-24", `{"PublicIP":"10.210.0.2","BackendType":"host-gw"}`, 2*time.Second),
		v2key("garbage", `{}`, 0),
		v2key("x10.244.1.0-24", v011("10.210.0.5", "66:52:c2:e4:ae:01"), day),
		v2key("10.244.9.5-24", v011("10.210.0.5", "66:52:c2:e4:ae:01"), day),
		v2key("10.244.10.0-24&fd00::-64", v011("10.210.0.5", "66:52:c2:e4:ae:01"), day),
		v2key("10.244.11.0-24", `not json`, day),
		v2key("10.244.12.0-24", `{"PublicIP":"fd00::1"}`, day),
		{Path: subnets + "dir", Name: "dir", Dir: true},
	}}
	p := MakePlan(configKey, v2, Store{}, 1500*time.Millisecond)
	want := `/coreos.com/network/config copy -
10.244.7.0-24 copy 59m58s
10.244.82.0-24 copy 23h59m51s
10.244.100.0-24 skipped - expired in v2
10.244.150.0-24 copy reservation
10.244.10.0-24&fd00::-64 skipped - invalid subnet key "10.244.10.0-24&fd00::-64": flannel v0.11 keys are A.B.C.D-LEN (IPv4 only)
10.244.11.0-24 skipped - decode lease value: invalid character 'o' in literal null (expecting 'u')
10.244.12.0-24 skipped - decode lease value: invalid PublicIP "fd00::1"
10.244.9.5-24 skipped - invalid subnet key "10.244.9.5-24": not in the form A.B.C.D-LEN (the key of that subnet is 10.244.9.0-24)
dir skipped - a directory, not a lease
garbage skipped - invalid subnet key "garbage"
x10.244.1.0-24 skipped - invalid subnet key "x10.244.1.0-24": not in the form A.B.C.D-LEN (the key of that subnet is 10.244.1.0-24)
`
	if got := rows(p); got != want {
		t.Errorf("plan:\n%s\nwant:\n%s", got, want)
	}
	if p.Count(Copy) != 4 || p.Count(Skip) != 8 || p.Count(Conflict) != 0 || p.ConfigConflict() {
		t.Errorf("counts: copy %d skip %d conflict %d", p.Count(Copy), p.Count(Skip), p.Count(Conflict))
	}
	// The value is carried as read, byte for byte.
	for _, it := range p.Items {
		if strings.HasSuffix(it.Key, "10.244.82.0-24") && string(it.Value) != v011("10.210.0.1", "66:52:c2:e4:ae:d7") {
			t.Errorf("value %s", it.Value)
		}
	}
}

// A second run finds everything there: v3 copies in either encoding (our
// daemon's, with "PublicIPv6":null and a VNI; a MAC in upper case), a
// config with other whitespace and key order, and a reservation on one
// side only, count as already present.
func TestPlanIdempotent(t *testing.T) {
	v2 := Store{Config: []byte(cfg), Subnets: []Key{
		v2key("10.244.82.0-24", v011("10.210.0.1", "66:52:c2:e4:ae:d7"), day),
		v2key("10.244.83.0-24", v011("10.210.0.2", "66:52:c2:e4:ae:d8"), day),
		v2key("10.244.150.0-24", `{"PublicIP":"10.210.0.9"}`, 0),
		v2key("10.244.151.0-24", `{"PublicIP":"10.210.0.10","BackendType":"host-gw"}`, day),
	}}
	v3 := Store{Config: []byte("{ \"Backend\": {\"Type\": \"vxlan\"},\n  \"Network\": \"10.244.0.0/16\" }\n"), Subnets: []Key{
		v3key("10.244.82.0-24", v011("10.210.0.1", "66:52:c2:e4:ae:d7"), true),
		v3key("10.244.83.0-24", both("10.210.0.2", "66:52:C2:E4:AE:D8"), true),
		v3key("10.244.150.0-24", `{"PublicIP":"10.210.0.9","PublicIPv6":null}`, true),
		v3key("10.244.151.0-24", `{"PublicIP":"10.210.0.10","BackendType":"host-gw"}`, false),
	}}
	p := MakePlan(configKey, v2, v3, 0)
	want := `/coreos.com/network/config already-present -
10.244.82.0-24 already-present 24h0m0s
10.244.83.0-24 already-present 24h0m0s
10.244.150.0-24 already-present reservation a reservation in v2; the v3 key has an etcd lease
10.244.151.0-24 already-present 24h0m0s the v3 key is a reservation (no etcd lease)
`
	if got := rows(p); got != want {
		t.Errorf("plan:\n%s\nwant:\n%s", got, want)
	}
}

// v3 keys that disagree are conflicts, each with what differs; so is a v3
// lease under another key that overlaps a v2 lease. Keys v3 lacks are
// still planned as copies: the caller decides whether to refuse the run.
func TestPlanConflicts(t *testing.T) {
	v2 := Store{Config: []byte(cfg), Subnets: []Key{
		v2key("10.244.1.0-24", v011("10.210.0.1", "66:52:c2:e4:ae:01"), day),
		v2key("10.244.2.0-24", v011("10.210.0.2", "66:52:c2:e4:ae:02"), day),
		v2key("10.244.3.0-24", v011("10.210.0.3", "66:52:c2:e4:ae:03"), day),
		v2key("10.244.4.0-24", v011("10.210.0.4", "66:52:c2:e4:ae:04"), day),
		v2key("10.244.5.0-24", v011("10.210.0.5", "66:52:c2:e4:ae:05"), day),
		v2key("10.244.6.0-24", v011("10.210.0.6", "66:52:c2:e4:ae:06"), day),
	}}
	v3 := Store{Config: []byte(`{"Network":"10.244.0.0/16","SubnetLen":25,"Backend":{"Type":"host-gw"}}`), Subnets: []Key{
		v3key("10.244.1.0-24", both("10.210.0.99", "66:52:c2:e4:ae:01"), true),                              // split claim
		v3key("10.244.2.0-24", both("10.210.0.2", "66:52:c2:e4:ae:99"), true),                               // other MAC
		v3key("10.244.3.0-24", `{"PublicIP":"10.210.0.3","PublicIPv6":null,"BackendType":"host-gw"}`, true), // other type
		v3key("10.244.4.0-24", `{`, true),                                                                   // not a lease
		v3key("10.244.5.0-25", both("10.210.0.55", "66:52:c2:e4:ae:55"), true),                              // overlaps, other length
		v3key("10.244.0.0-16&fd00::-64", both("10.210.0.66", "66:52:c2:e4:ae:66"), true),                    // overlaps everything
	}}
	p := MakePlan(configKey, v2, v3, 0)
	big := "; overlaps the v3 lease /coreos.com/network/subnets/10.244.0.0-16&fd00::-64 of 10.210.0.66 vxlan 66:52:c2:e4:ae:66"
	want := `/coreos.com/network/config conflict - v3 holds another config: Backend.Type: "vxlan" -> "host-gw"; SubnetLen: (unset) -> 25 (v2 vs v3)
10.244.1.0-24 conflict 24h0m0s v3 holds another lease: PublicIP 10.210.0.1 vs 10.210.0.99 (v2 vs v3)` + big + `
10.244.2.0-24 conflict 24h0m0s v3 holds another lease: VtepMAC 66:52:c2:e4:ae:02 vs 66:52:c2:e4:ae:99 (v2 vs v3)` + big + `
10.244.3.0-24 conflict 24h0m0s v3 holds another lease: BackendType vxlan vs host-gw (v2 vs v3)` + big + `
10.244.4.0-24 conflict 24h0m0s v3 holds a value that is not a lease: decode lease value: unexpected end of JSON input` + big + `
10.244.5.0-24 conflict 24h0m0s ` + big[2:] + `; overlaps the v3 lease /coreos.com/network/subnets/10.244.5.0-25 of 10.210.0.55 vxlan 66:52:c2:e4:ae:55
10.244.6.0-24 conflict 24h0m0s overlaps the v3 lease /coreos.com/network/subnets/10.244.0.0-16&fd00::-64 of 10.210.0.66 vxlan 66:52:c2:e4:ae:66
`
	if got := rows(p); got != want {
		t.Errorf("plan:\n%s\nwant:\n%s", got, want)
	}
	if !p.ConfigConflict() || p.Count(Conflict) != 7 {
		t.Errorf("ConfigConflict %v, %d conflicts", p.ConfigConflict(), p.Count(Conflict))
	}

	// Without the /16, only the keys that disagree conflict; the free one
	// is copied and an overlap is named.
	v3.Subnets = v3.Subnets[:5]
	v3.Config = []byte(cfg)
	p = MakePlan(configKey, v2, v3, 0)
	got := rows(p)
	for _, line := range []string{
		"/coreos.com/network/config already-present -\n",
		"10.244.5.0-24 conflict 24h0m0s overlaps the v3 lease /coreos.com/network/subnets/10.244.5.0-25 of 10.210.0.55 vxlan 66:52:c2:e4:ae:55\n",
		"10.244.6.0-24 copy 24h0m0s\n",
	} {
		if !strings.Contains(got, line) {
			t.Errorf("plan lacks %q:\n%s", line, got)
		}
	}
	if p.ConfigConflict() || p.Count(Conflict) != 5 || p.Count(Copy) != 1 {
		t.Errorf("plan:\n%s", got)
	}
}

// A key a daemon wrote between plan and copy is compared again.
func TestRecheck(t *testing.T) {
	lease := MakePlan(configKey, Store{Config: []byte(cfg), Subnets: []Key{
		v2key("10.244.82.0-24", v011("10.210.0.1", "66:52:c2:e4:ae:d7"), day),
	}}, Store{}, 0)
	cfgItem, leaseItem := lease.Items[0], lease.Items[1]
	for _, c := range []struct {
		it      Item
		value   string
		expires bool
		want    Action
		reason  string
	}{
		{cfgItem, " " + cfg + "\n", false, Present, ""},
		{cfgItem, `{"Network":"10.245.0.0/16","Backend":{"Type":"vxlan"}}`, false, Conflict, `Network: "10.244.0.0/16" -> "10.245.0.0/16"`},
		{cfgItem, `not json`, false, Conflict, "vs not json"},
		{leaseItem, both("10.210.0.1", "66:52:c2:e4:ae:d7"), true, Present, ""},
		{leaseItem, both("10.210.0.1", "66:52:c2:e4:ae:d7"), false, Present, "the v3 key is a reservation"},
		{leaseItem, both("10.210.0.7", "66:52:c2:e4:ae:d7"), true, Conflict, "PublicIP 10.210.0.1 vs 10.210.0.7"},
	} {
		a, reason := Recheck(c.it, []byte(c.value), c.expires)
		if a != c.want || !strings.Contains(reason, c.reason) || (c.reason == "" && reason != "") {
			t.Errorf("Recheck(%s, %s) = %s %q, want %s %q", c.it.Key, c.value, a, reason, c.want, c.reason)
		}
	}
}

func TestSameConfig(t *testing.T) {
	for _, c := range []struct {
		a, b string
		same bool
	}{
		{cfg, cfg, true},
		{cfg, "\n  " + cfg + "  \n", true},
		{`{"Network":"10.244.0.0/16","SubnetLen":24}`, `{"SubnetLen":24, "Network":"10.244.0.0/16"}`, true},
		{`{"SubnetLen":24}`, `{"SubnetLen":24.0}`, false}, // numbers as written
		{`{"Network":"10.244.0.0/16"}`, `{"network":"10.244.0.0/16"}`, false},
		{`not json`, ` not json `, true},
		{`{"a":1}{"b":2}`, `{"a":1}`, false},
	} {
		if got := SameConfig([]byte(c.a), []byte(c.b)); got != c.same {
			t.Errorf("SameConfig(%s, %s) = %v", c.a, c.b, got)
		}
	}
}

// Whatever the keys hold, a plan has one item per v2 key after the config,
// copies only valid leases whose name v3 lacks, and Assess and Union do
// not panic.
func FuzzMakePlan(f *testing.F) {
	f.Add("10.244.1.0-24", v011("10.210.0.1", "66:52:c2:e4:ae:01"), int64(86400), "10.244.1.0-24", both("10.210.0.2", "66:52:c2:e4:ae:02"), true)
	f.Add("10.244.1.0-24", `{"PublicIP":"10.210.0.1"}`, int64(0), "10.244.0.0-16", `{}`, false)
	f.Add("garbage", "x", int64(5), "10.244.2.0-24&fd00::-64", `{"PublicIP":"10.210.0.1","PublicIPv6":"fd00::1"}`, true)
	f.Fuzz(func(t *testing.T, name2, value2 string, ttl int64, name3, value3 string, leased bool) {
		v2 := Store{Config: []byte(cfg), Subnets: []Key{v2key(name2, value2, time.Duration(ttl)*time.Second)}}
		v3 := Store{Config: []byte(value3), Subnets: []Key{v3key(name3, value3, leased)}}
		p := MakePlan(configKey, v2, v3, time.Second)
		if len(p.Items) != 2 || !p.Items[0].Config || p.Items[1].Key != subnets+name2 {
			t.Fatalf("plan %+v", p)
		}
		it := p.Items[1]
		if it.Action == Copy {
			if parseV2(v2.Subnets[0]).Err != nil || name2 == name3 || (it.Expires && it.TTL < time.Second) || string(it.Value) != value2 {
				t.Fatalf("copies %+v", it)
			}
		}
		if it.Action == Present && name2 != name3 {
			t.Fatalf("present without a twin: %+v", it)
		}
		Assess("/p", true, v2, v3)
		Union(v2, v3)
	})
}
