package keyspace

import (
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/subnet"
)

func render(fs []Finding) string {
	var b strings.Builder
	for _, f := range fs {
		if f.Problem {
			b.WriteString("FAIL " + f.Text + "\n  fix: " + f.Fix + "\n")
		} else {
			b.WriteString("ok   " + f.Text + "\n")
		}
	}
	return b.String()
}

func problems(fs []Finding) int {
	n := 0
	for _, f := range fs {
		if f.Problem {
			n++
		}
	}
	return n
}

const prefix = "/coreos.com/network"

// Assess on each stage of spec 8.3: the first line names the step, the
// problems are the ones each stage can have, and nothing else fails.
func TestAssessStages(t *testing.T) {
	a1 := v011("10.210.0.1", "66:52:c2:e4:ae:01")
	a2 := v011("10.210.0.2", "66:52:c2:e4:ae:02")
	b1 := both("10.210.0.1", "66:52:c2:e4:ae:01")
	b2 := both("10.210.0.2", "66:52:c2:e4:ae:02")
	b3 := both("10.210.0.3", "66:52:c2:e4:ae:03")
	tests := []struct {
		name     string
		served   bool
		v2, v3   Store
		stage    string   // in the first line
		want     []string // in the output
		problems int
	}{
		{
			name: "v2 not served", served: false,
			v2:    Store{Config: []byte(cfg)}, // ignored
			v3:    Store{Config: []byte(cfg), Subnets: []Key{v3key("10.244.1.0-24", b1, true)}},
			stage: "keyspaces: v3 only (etcd does not serve the v2 API)",
		},
		{
			name: "nothing anywhere", served: true,
			stage: "no flannel data under /coreos.com/network, in the v2 store or in v3",
		},
		{
			name: "v3 cluster, v2 API still on", served: true,
			v3:    Store{Config: []byte(cfg), Subnets: []Key{v3key("10.244.1.0-24", b1, true)}},
			stage: "keyspaces: v3 only; etcd still serves the v2 API, which holds nothing under /coreos.com/network. If this cluster was migrated from flannel v0.11, finish step 6",
		},
		{
			name: "step 0: v0.11 cluster", served: true,
			v2: Store{Config: []byte(cfg), Subnets: []Key{
				v2key("10.244.1.0-24", a1, day), v2key("10.244.2.0-24", a2, day), v2key("10.244.9.0-24", `{"PublicIP":"10.210.0.9"}`, 0)}},
			stage: "v2 only (flannel v0.11's layout): migration not started (step 0). Next, step 1: copy the config into v3 with `flannelctl migrate-v2 --config-only`",
			want: []string{
				"ok   config /coreos.com/network/config: only in v2\n",
				`ok   v2: 3 leases: 3 in v0.11 form (no "PublicIPv6": v0.11 nodes, nodes in --etcd-api=v2, or copies); 1 reservation among them` + "\n",
			},
		},
		{
			name: "step 1 done", served: true,
			v2:    Store{Config: []byte(cfg), Subnets: []Key{v2key("10.244.1.0-24", a1, day), v2key("10.244.2.0-24", a2, day)}},
			v3:    Store{Config: []byte(" " + cfg)},
			stage: "migration step 1 done: the config is in v3, every lease (2) only in v2. Next, step 2: replace the nodes one at a time with flanneld --etcd-api=both",
			want:  []string{"ok   config /coreos.com/network/config: in v2 and v3, equal\n"},
		},
		{
			// One node replaced (both mode: same value in both, with
			// "PublicIPv6":null), one v0.11 node left, one node that
			// joined in v3-only mode: a problem (step 3).
			name: "step 2, half migrated, with a v3-only node", served: true,
			v2: Store{Config: []byte(cfg), Subnets: []Key{v2key("10.244.1.0-24", b1, 20*time.Hour), v2key("10.244.2.0-24", a2, day)}},
			v3: Store{Config: []byte(cfg), Subnets: []Key{
				v3key("10.244.1.0-24", b1, true), v3key("10.244.3.0-24", b3, true), v3key("10.244.4.0-24", `{"PublicIP":"10.210.0.4","PublicIPv6":null}`, false)}},
			stage: "migration step 2: 1 v2 lease written by --etcd-api=both nodes, 1 lease in v0.11 form (v0.11 nodes, nodes in --etcd-api=v2, or copies)",
			want: []string{
				`ok   v2: 2 leases: 1 in v0.11 form (no "PublicIPv6": v0.11 nodes, nodes in --etcd-api=v2, or copies); 1 with "PublicIPv6":null (written by --etcd-api=both nodes)` + "\n",
				"ok   v3: 3 leases: 1 also in v2 with the same owner, 2 only in v3\n",
				"FAIL lease 10.244.3.0/24 (10.210.0.3 vxlan 66:52:c2:e4:ae:03) is only in v3 while v0.11 nodes hold v2 leases: they do not route to it and may allocate its subnet (step 3)\n" +
					"  fix: restart flanneld on 10.210.0.3 with --etcd-api=both, never v3 only, until every v0.11 node is replaced\n",
				"FAIL reservation 10.244.4.0/24 (10.210.0.4 (no BackendType)) is only in v3 while v0.11 nodes hold v2 leases: they may allocate its subnet (step 3)\n" +
					`  fix: write it into v2 as well, without TTL: ` + "`ETCDCTL_API=2 etcdctl set /coreos.com/network/subnets/10.244.4.0-24 '{\"PublicIP\":\"10.210.0.4\",\"PublicIPv6\":null}'`\n",
			},
			problems: 2,
		},
		{
			name: "split claim, copies that disagree, overlap, bad v2 keys, configs that differ", served: true,
			v2: Store{Config: []byte(cfg), Subnets: []Key{
				v2key("10.244.1.0-24", a1, day),
				v2key("10.244.2.0-24", b2, day),
				v2key("10.244.5.0-24", v011("10.210.0.5", "66:52:c2:e4:ae:05"), day),
				v2key("garbage", "x", 0),
				{Path: prefix + "/subnets/lock", Name: "lock", Dir: true},
			}},
			v3: Store{Config: []byte(`{"Network":"10.245.0.0/16","Backend":{"Type":"vxlan"}}`), Subnets: []Key{
				v3key("10.244.1.0-24", both("10.210.0.9", "66:52:c2:e4:ae:09"), true),
				v3key("10.244.2.0-24", both("10.210.0.2", "66:52:c2:e4:ae:22"), true),
				v3key("10.244.4.0-23", both("10.210.0.4", "66:52:c2:e4:ae:04"), true),
			}},
			stage: "migration step 2",
			want: []string{
				`FAIL config /coreos.com/network/config differs between v2 and v3: Network: "10.244.0.0/16" -> "10.245.0.0/16" (v2 vs v3)` + "\n",
				"FAIL v2 key /coreos.com/network/subnets/garbage is not a lease: invalid subnet key \"garbage\": it wedges the lease watch of every v0.11 node (spec 2.4)\n  fix: ETCDCTL_API=2 etcdctl rm /coreos.com/network/subnets/garbage\n",
				"FAIL v2 key /coreos.com/network/subnets/lock is not a lease: a directory, not a lease: it wedges the lease watch of every v0.11 node (spec 2.4)\n  fix: ETCDCTL_API=2 etcdctl rm --recursive /coreos.com/network/subnets/lock\n",
				"FAIL split claim on 10.244.1.0/24: v2 says 10.210.0.1 vxlan 66:52:c2:e4:ae:01, v3 says 10.210.0.9 vxlan 66:52:c2:e4:ae:09: v0.11 nodes route it to the first, v3 nodes to the second\n" +
					"  fix: stop flanneld on one of the two nodes (10.210.0.1 or 10.210.0.9) for good and delete its key (v2: `ETCDCTL_API=2 etcdctl rm /coreos.com/network/subnets/10.244.1.0-24`, v3: `flannelctl release --force 10.244.1.0/24`); started again, it takes another subnet\n",
				"FAIL the v2 and v3 copies of 10.244.2.0/24 disagree: VtepMAC 66:52:c2:e4:ae:02 vs 66:52:c2:e4:ae:22 (v2 vs v3)",
				"FAIL v2 lease /coreos.com/network/subnets/10.244.5.0-24 (10.210.0.5 vxlan 66:52:c2:e4:ae:05) overlaps v3 lease /coreos.com/network/subnets/10.244.4.0-23 (10.210.0.4 vxlan 66:52:c2:e4:ae:04): two nodes own the same addresses\n",
				"FAIL lease 10.244.4.0/23 (10.210.0.4 vxlan 66:52:c2:e4:ae:04) is only in v3 while v0.11 nodes",
			},
			problems: 7,
		},
		{
			name: "step 4 reached", served: true,
			v2: Store{Config: []byte(cfg), Subnets: []Key{v2key("10.244.1.0-24", b1, 20*time.Hour), v2key("10.244.2.0-24", b2, 13*time.Hour)}},
			v3: Store{Config: []byte(cfg), Subnets: []Key{v3key("10.244.1.0-24", b1, true), v3key("10.244.2.0-24", b2, true)}},
			stage: "migration step 4 reached: no lease in v0.11 form is left and each of the 2 v2 leases written by --etcd-api=both nodes has its v3 copy. " +
				"Next, step 5: restart the nodes one at a time with --etcd-api=v3",
			want: []string{"ok   v3: 2 leases: 2 also in v2 with the same owner, 0 only in v3\n"},
		},
		{
			name: "step 4 not reached: a both-mode lease lacks its v3 copy", served: true,
			v2:       Store{Config: []byte(cfg), Subnets: []Key{v2key("10.244.1.0-24", b1, 20*time.Hour), v2key("10.244.2.0-24", b2, 13*time.Hour)}},
			v3:       Store{Config: []byte(cfg), Subnets: []Key{v3key("10.244.1.0-24", b1, true)}},
			stage:    "migration step 4 not reached: no lease in v0.11 form is left, but 1 v2 lease is written by --etcd-api=both nodes without a v3 copy (below)",
			want:     []string{"FAIL lease 10.244.2.0/24 (10.210.0.2 vxlan 66:52:c2:e4:ae:02) was written by a --etcd-api=both node and is renewed in v2, but has no v3 copy"},
			problems: 1,
		},
		{
			// Node 2 runs v3 mode: its v2 copy lapses; node 3 joined in
			// v3 mode. Not a problem once no v0.11 node is left.
			name: "step 5 in progress", served: true,
			v2: Store{Config: []byte(cfg), Subnets: []Key{v2key("10.244.1.0-24", b1, 20*time.Hour), v2key("10.244.2.0-24", b2, 3*time.Hour)}},
			v3: Store{Config: []byte(cfg), Subnets: []Key{
				v3key("10.244.1.0-24", b1, true), v3key("10.244.2.0-24", b2, true), v3key("10.244.3.0-24", b3, true)}},
			stage: "migration step 5: 1 v2 lease still renewed by --etcd-api=both nodes, 2 nodes in --etcd-api=v3 (v3 lease without a renewed v2 copy). Next: restart the others with --etcd-api=v3",
			want:  []string{`1 of them no longer renewed (less than 11h0m0s left)`},
		},
		{
			name: "step 6: all v3, v2 leftovers", served: true,
			v2: Store{Config: []byte(cfg), Subnets: []Key{
				v2key("10.244.1.0-24", b1, 5*time.Hour), v2key("10.244.2.0-24", b2, 3*time.Hour), v2key("10.244.9.0-24", `{"PublicIP":"10.210.0.9","PublicIPv6":null}`, 0)}},
			v3: Store{Config: []byte(cfg), Subnets: []Key{
				v3key("10.244.1.0-24", b1, true), v3key("10.244.2.0-24", b2, true), v3key("10.244.9.0-24", `{"PublicIP":"10.210.0.9","PublicIPv6":null}`, false)}},
			stage: "keyspaces: v3, with v2 leftovers: every node runs --etcd-api=v3 (no v2 lease is renewed) and the v2 store still holds the config, 2 lease copies that are no longer renewed, 1 reservation under /coreos.com/network. " +
				"Next, step 6: `ETCDCTL_API=2 etcdctl rm --recursive /coreos.com/network`, restart etcd without --enable-v2, and run `etcdutl check v2store` before upgrading etcd to 3.6",
		},
		{
			name: "step 6: only the v2 config left", served: true,
			v2:    Store{Config: []byte(cfg)},
			v3:    Store{Config: []byte(cfg), Subnets: []Key{v3key("10.244.1.0-24", b1, true)}},
			stage: "v2 store still holds the config under /coreos.com/network. Next, step 6",
		},
		{
			name: "config only in v2 while v3 has leases", served: true,
			v2:       Store{Config: []byte(cfg), Subnets: []Key{v2key("10.244.1.0-24", a1, day)}},
			v3:       Store{Subnets: []Key{v3key("10.244.1.0-24", b1, true)}},
			stage:    "migration step 1 done, no node runs --etcd-api=both yet: 1 v2 lease in v0.11 form, 1 of them with a v3 copy of the same owner (migrate-v2)",
			want:     []string{"FAIL config /coreos.com/network/config is only in v2, but v3 holds leases: nodes in --etcd-api=v3 cannot start (step 1 was skipped)\n  fix: copy it: `flannelctl migrate-v2 --config-only`\n"},
			problems: 1,
		},
		{
			name: "config only in v3 while v0.11 nodes run", served: true,
			v2:       Store{Subnets: []Key{v2key("10.244.1.0-24", a1, day)}},
			v3:       Store{Config: []byte(cfg), Subnets: []Key{v3key("10.244.1.0-24", b1, true)}},
			stage:    "migration step 1 done",
			want:     []string{"FAIL config /coreos.com/network/config is only in v3, but v2 holds leases in v0.11 form: a v0.11 node that restarts finds no config"},
			problems: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := Assess(prefix, tc.served, tc.v2, tc.v3)
			out := render(fs)
			if len(fs) == 0 || fs[0].Problem || !strings.Contains(fs[0].Text, tc.stage) {
				t.Errorf("stage line missing %q:\n%s", tc.stage, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if n := problems(fs); n != tc.problems {
				t.Errorf("%d problems, want %d:\n%s", n, tc.problems, out)
			}
		})
	}
}

// Union: one lease per key; on a split claim the v2 record wins; the same
// lease in both keeps the v3 record (it has the VNI); reservations are
// those of the record kept; keys that do not parse are left out.
func TestUnion(t *testing.T) {
	v2 := Store{Subnets: []Key{
		v2key("10.244.1.0-24", v011("10.210.0.1", "66:52:c2:e4:ae:01"), day),
		v2key("10.244.2.0-24", v011("10.210.0.2", "66:52:c2:e4:ae:02"), day),
		v2key("10.244.3.0-24", v011("10.210.0.3", "66:52:c2:e4:ae:03"), 0),
		v2key("garbage", "{}", 0),
	}}
	v3 := Store{Subnets: []Key{
		v3key("10.244.1.0-24", both("10.210.0.1", "66:52:c2:e4:ae:01"), true),
		v3key("10.244.2.0-24", both("10.210.0.99", "66:52:c2:e4:ae:99"), false),
		v3key("10.244.4.0-24", both("10.210.0.4", "66:52:c2:e4:ae:04"), true),
		v3key("bad", "{}", false),
	}}
	leases, res := Union(v2, v3)
	got := map[string]subnet.Lease{}
	for _, l := range leases {
		got[l.Key()] = l
	}
	if len(leases) != 4 || len(got) != 4 {
		t.Fatalf("%d leases: %v", len(leases), leases)
	}
	if l := got["10.244.1.0-24"]; string(l.Attrs.BackendData) != `{"VNI":1,"VtepMAC":"66:52:c2:e4:ae:01"}` {
		t.Errorf("same lease: kept %s, want the v3 record", l.Attrs.BackendData)
	}
	if l := got["10.244.2.0-24"]; l.Attrs.PublicIP.String() != "10.210.0.2" {
		t.Errorf("split claim: kept %s, want v2's 10.210.0.2", l.Attrs.PublicIP)
	}
	if got["10.244.4.0-24"].Attrs.PublicIP.String() != "10.210.0.4" {
		t.Errorf("v3-only lease missing")
	}
	if len(res) != 1 || !res["10.244.3.0-24"] {
		t.Errorf("reservations %v, want only 10.244.3.0-24 (v2's record of 10.244.2.0-24 has a TTL)", res)
	}
}

func TestDifferences(t *testing.T) {
	l := func(sn, value string) subnet.Lease {
		p := parseV3(Key{Name: sn, Value: []byte(value)})
		if p.Err != nil {
			t.Fatal(p.Err)
		}
		return p.Lease
	}
	x := l("10.244.1.0-24", v011("10.210.0.1", "66:52:c2:e4:ae:01"))
	for _, c := range []struct {
		y    subnet.Lease
		want string
	}{
		{l("10.244.1.0-24", both("10.210.0.1", "66:52:C2:E4:AE:01")), ""},
		{l("10.244.1.0-25", v011("10.210.0.1", "66:52:c2:e4:ae:01")), "subnet 10.244.1.0/24 vs 10.244.1.0/25"},
		{l("10.244.1.0-24", `{"PublicIP":"10.210.0.1"}`), "BackendType vxlan vs (none)"},
		{l("10.244.1.0-24", `{"PublicIP":"10.210.0.2","BackendType":"vxlan","BackendData":{"VtepMAC":"x"}}`), "PublicIP 10.210.0.1 vs 10.210.0.2, VtepMAC 66:52:c2:e4:ae:01 vs x"},
		{l("10.244.1.0-24", `{"PublicIP":"10.210.0.1","BackendType":"vxlan"}`), "VtepMAC 66:52:c2:e4:ae:01 vs (none)"},
	} {
		if got := strings.Join(Differences(x, c.y), ", "); got != c.want {
			t.Errorf("Differences(%v) = %q, want %q", c.y, got, c.want)
		}
	}
	// host-gw and udp leases have no MAC to compare.
	if d := Differences(l("10.244.1.0-24", `{"PublicIP":"10.210.0.1","BackendType":"host-gw","BackendData":{"a":1}}`),
		l("10.244.1.0-24", `{"PublicIP":"10.210.0.1","PublicIPv6":null,"BackendType":"host-gw"}`)); len(d) != 0 {
		t.Errorf("host-gw: %v", d)
	}
}
