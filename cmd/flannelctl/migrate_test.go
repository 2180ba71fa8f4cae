package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/cmd/flannelctl/internal/keyspace"
	"github.com/flannelng/flannel/pkg/etcdv2"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// fakeV2 answers GETs of /v2/keys<key> from a map of key to body (404
// with etcd's "key not found" otherwise), as etcd 3.5 with --enable-v2.
func fakeV2(t *testing.T, answers map[string]string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := strings.TrimPrefix(r.URL.Path, "/v2/keys")
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Etcd-Index", "42")
		if body, ok := answers[key]; ok {
			io.WriteString(w, body)
			return
		}
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"errorCode":100,"message":"Key not found","cause":%q,"index":42}`, key)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// readV2 turns a recursive listing into keys named for their v3 path, with
// TTLs; no directory is an empty store, not an error.
func TestReadV2(t *testing.T) {
	ctx := context.Background()
	url := fakeV2(t, map[string]string{
		"/coreos.com/network/config": `{"action":"get","node":{"key":"/coreos.com/network/config","value":"{\"Network\":\"10.244.0.0/16\"}","modifiedIndex":4,"createdIndex":4}}`,
		"/coreos.com/network/subnets": `{"action":"get","node":{"key":"/coreos.com/network/subnets","dir":true,"nodes":[` +
			`{"key":"/coreos.com/network/subnets/10.244.82.0-24","value":"{\"PublicIP\":\"10.210.0.1\"}","expiration":"2026-12-07T10:21:51.785823296Z","ttl":86393,"modifiedIndex":5,"createdIndex":5},` +
			`{"key":"/coreos.com/network/subnets/10.244.150.0-24","value":"{\"PublicIP\":\"10.210.0.9\"}","modifiedIndex":6,"createdIndex":6},` +
			`{"key":"/coreos.com/network/subnets/lock","dir":true,"modifiedIndex":7,"createdIndex":7}]}}`,
		"/other/config":  `{"action":"get","node":{"key":"/other/config","dir":true}}`,
		"/third/subnets": `{"action":"get","node":{"key":"/third/subnets","value":"x"}}`,
	})
	c, err := etcdv2.New(etcdv2.Config{Endpoints: []string{url}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := readV2(ctx, c, "/coreos.com/network", "/v3path/subnets/")
	if err != nil {
		t.Fatal(err)
	}
	want := []keyspace.Key{
		{Path: "/v3path/subnets/10.244.82.0-24", Name: "10.244.82.0-24", Value: []byte(`{"PublicIP":"10.210.0.1"}`), Expires: true, TTL: 86393 * time.Second},
		{Path: "/v3path/subnets/10.244.150.0-24", Name: "10.244.150.0-24", Value: []byte(`{"PublicIP":"10.210.0.9"}`)},
		{Path: "/v3path/subnets/lock", Name: "lock", Value: []byte{}, Dir: true},
	}
	if string(st.Config) != `{"Network":"10.244.0.0/16"}` || len(st.Subnets) != len(want) {
		t.Fatalf("store %+v", st)
	}
	for i, k := range st.Subnets {
		w := want[i]
		if k.Path != w.Path || k.Name != w.Name || !bytes.Equal(k.Value, w.Value) || k.Expires != w.Expires || k.TTL != w.TTL || k.Dir != w.Dir {
			t.Errorf("key %d: %+v, want %+v", i, k, w)
		}
	}
	if st, err := readV2(ctx, c, "/empty", "/empty/subnets/"); err != nil || !st.Empty() {
		t.Errorf("empty prefix: %+v %v", st, err)
	}
	if _, err := readV2(ctx, c, "/other", "/other/subnets/"); err == nil || !strings.Contains(err.Error(), "is a directory") {
		t.Errorf("config directory: %v", err)
	}
	if _, err := readV2(ctx, c, "/third", "/third/subnets/"); err == nil || !strings.Contains(err.Error(), "not the directory of leases") {
		t.Errorf("subnets value: %v", err)
	}
}

// Without the v2 API (etcd 3.7 here) migrate-v2 says what etcd needs, and
// doctor says the cluster is v3 only, which is no problem.
func TestMigrateWithoutV2API(t *testing.T) {
	endpoint, cli := startEtcd(t)
	env := map[string]string{"FLANNELD_ETCD_ENDPOINTS": endpoint}
	code, stdout, stderr := captured(t, []string{"migrate-v2"}, env, "")
	if code != 1 || stdout != "" || !strings.Contains(stderr, "does not serve the v2 API") ||
		!strings.Contains(stderr, "--enable-v2=true") || !strings.Contains(stderr, "etcd 3.6 and later cannot serve it") {
		t.Errorf("migrate-v2: exit %d\n%s%s", code, stdout, stderr)
	}
	cli.Put(context.Background(), "/coreos.com/network/config", `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`)
	_, stdout, _ = captured(t, []string{"doctor", "--subnet-file=/nonexistent", "--cni-bin-dir=/nonexistent", "--cni-conf-dir=/nonexistent", "--proc-sys=/nonexistent"}, env, "")
	if !strings.HasPrefix(stdout, "ok    keyspaces: v3 only (etcd does not serve the v2 API)\n") ||
		!strings.Contains(stdout, "ok    network config /coreos.com/network/config: backend vxlan") {
		t.Errorf("doctor:\n%s", stdout)
	}
}

func TestMigrateUsage(t *testing.T) {
	for _, c := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"migrate-v2", "extra"}, "got 1 argument(s), want [--dry-run] [-o table|wide|json|yaml]"},
		{[]string{"migrate-v2", "-o", "xml"}, `invalid -o "xml": want table, wide, json, yaml`},
		{[]string{"migrate-v2", "--force"}, "flag provided but not defined: -force"},
	} {
		code, _, stderr := captured(t, c.args, nil, "")
		if code != 2 || !strings.Contains(stderr, c.stderr) || !strings.Contains(stderr, "Usage: flannelctl migrate-v2") {
			t.Errorf("%q: exit %d\n%s", c.args, code, stderr)
		}
	}
	code, _, stderr := captured(t, []string{"migrate-v2", "-h"}, nil, "")
	for _, f := range []string{"-dry-run", "-skip-conflicts", "-config-only"} {
		if code != 0 || !strings.Contains(stderr, f) {
			t.Errorf("help lacks %s: exit %d\n%s", f, code, stderr)
		}
	}
}

// The write half against a real v3: a lease gets an etcd lease of its
// remaining TTL, a reservation none, values unchanged; a key written in v3
// after the plan is compared again and never overwritten, and the etcd
// lease granted for it is revoked.
func TestCopyItem(t *testing.T) {
	_, cli := startEtcd(t)
	ctx := context.Background()
	const (
		prefix = "/coreos.com/network"
		cfg    = `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`
		a1     = `{"PublicIP":"10.210.0.1","BackendType":"vxlan","BackendData":{"VtepMAC":"66:52:c2:e4:ae:d7"}}`
		r9     = `{"PublicIP":"10.210.0.9"}`
	)
	k := func(name, value string, ttl time.Duration) keyspace.Key {
		return keyspace.Key{Path: prefix + "/subnets/" + name, Name: name, Value: []byte(value), Expires: ttl > 0, TTL: ttl}
	}
	v2 := keyspace.Store{Config: []byte(cfg), Subnets: []keyspace.Key{
		k("10.244.82.0-24", a1, 3600*time.Second),
		k("10.244.150.0-24", r9, 0),
		k("10.244.5.0-24", `{"PublicIP":"10.210.0.5"}`, 3600*time.Second),
		k("10.244.6.0-24", `{"PublicIP":"10.210.0.6"}`, 3600*time.Second),
		k("10.244.7.0-24", `{"PublicIP":"10.210.0.7"}`, 2*time.Second),
	}}
	readAt := time.Now()
	plan := keyspace.MakePlan(prefix+"/config", v2, keyspace.Store{}, 0)
	// Daemons write two of the keys after the plan: one with the same
	// owner, one with another.
	cli.Put(ctx, prefix+"/subnets/10.244.5.0-24", `{"PublicIP":"10.210.0.5","PublicIPv6":null}`)
	cli.Put(ctx, prefix+"/subnets/10.244.6.0-24", `{"PublicIP":"10.210.0.66","PublicIPv6":null}`)
	m := &migrator{cli: cli, timeout: 5 * time.Second, readAt: readAt.Add(-1500 * time.Millisecond)}
	rows := map[string]migrateRow{}
	for _, it := range plan.Items {
		row, err := m.copyItem(ctx, it)
		if err != nil {
			t.Fatalf("%s: %v", it.Key, err)
		}
		rows[strings.TrimPrefix(it.Key, prefix+"/")] = row
	}
	get := func(key string) (string, int64) {
		r, err := cli.Get(ctx, prefix+"/"+key)
		if err != nil || len(r.Kvs) != 1 {
			t.Fatalf("get %s: %v %v", key, r, err)
		}
		return string(r.Kvs[0].Value), r.Kvs[0].Lease
	}

	if v, lease := get("config"); rows["config"].Action != "copied" || v != cfg || lease != 0 {
		t.Errorf("config: %+v; v3 %q lease %x", rows["config"], v, lease)
	}
	v, lease := get("subnets/10.244.82.0-24")
	row := rows["subnets/10.244.82.0-24"]
	if row.Action != "copied" || v != a1 || lease == 0 || row.EtcdLease == nil || *row.EtcdLease != fmt.Sprintf("%x", lease) {
		t.Errorf("lease: %+v; v3 %q lease %x", row, v, lease)
	}
	ttl, err := cli.TimeToLive(ctx, clientv3.LeaseID(lease))
	if err != nil || ttl.GrantedTTL != 3598 || ttl.TTL > 3598 || ttl.TTL < 3590 || *row.TTLSeconds != 3598 {
		t.Errorf("etcd lease: granted %d, left %d (%v), row %d; want 3600 s less the 1.5 s since v2 was read, rounded down", ttl.GrantedTTL, ttl.TTL, err, *row.TTLSeconds)
	}
	if v, lease := get("subnets/10.244.150.0-24"); rows["subnets/10.244.150.0-24"].Action != "copied" || v != r9 || lease != 0 {
		t.Errorf("reservation: %+v; v3 %q lease %x", rows["subnets/10.244.150.0-24"], v, lease)
	}
	if r := rows["subnets/10.244.5.0-24"]; r.Action != "already-present" || r.EtcdLease != nil || !strings.Contains(r.Detail, "written in v3 meanwhile") {
		t.Errorf("same owner written meanwhile: %+v", r)
	}
	if r := rows["subnets/10.244.6.0-24"]; r.Action != "conflict" || !strings.Contains(r.Detail, "PublicIP 10.210.0.6 vs 10.210.0.66") {
		t.Errorf("other owner written meanwhile: %+v", r)
	}
	if v, _ := get("subnets/10.244.6.0-24"); v != `{"PublicIP":"10.210.0.66","PublicIPv6":null}` {
		t.Errorf("conflicting key overwritten: %s", v)
	}
	if r := rows["subnets/10.244.7.0-24"]; r.Action != "skipped" || r.Detail != "expired in v2 before it was copied" {
		t.Errorf("expired meanwhile: %+v", r)
	}
	// Only the copied lease's etcd lease is left: the ones granted for
	// keys found taken were revoked.
	leases, err := cli.Leases(ctx)
	if err != nil || len(leases.Leases) != 1 || int64(leases.Leases[0].ID) != lease {
		t.Errorf("etcd leases %+v (%v), want only %x", leases, err, lease)
	}
}

func TestRenderMigrate(t *testing.T) {
	ttl := int64(86390)
	rep := migrateReport{Written: true, Copied: 2, Skipped: 1, Conflicts: 1, Keys: []migrateRow{
		{Key: "/coreos.com/network/config", Action: "copied", config: true},
		{Key: "/coreos.com/network/subnets/10.244.82.0-24", Action: "copied", TTLSeconds: &ttl, EtcdLease: strp("694d9b7f1f4a7c05"),
			Subnet: strp("10.244.82.0/24"), PublicIP: strp("10.210.0.1"), BackendType: strp("vxlan"), VtepMAC: strp("66:52:c2:e4:ae:d7")},
		{Key: "/coreos.com/network/subnets/10.244.150.0-24", Action: "conflict", Reservation: true,
			Subnet: strp("10.244.150.0/24"), PublicIP: strp("10.210.0.9"), Detail: "v3 holds another lease: PublicIP 10.210.0.9 vs 10.210.0.99 (v2 vs v3)"},
		{Key: "/coreos.com/network/subnets/garbage", Action: "skipped", Detail: `invalid subnet key "garbage"`},
	}}
	var b bytes.Buffer
	if err := renderMigrate(&b, rep, "table"); err != nil {
		t.Fatal(err)
	}
	want := `KEY                                          ACTION    TTL          DETAIL
/coreos.com/network/config                   copied    -
/coreos.com/network/subnets/10.244.82.0-24   copied    23h59m50s    10.210.0.1 vxlan 66:52:c2:e4:ae:d7
/coreos.com/network/subnets/10.244.150.0-24  conflict  reservation  10.210.0.9; v3 holds another lease: PublicIP 10.210.0.9 vs 10.210.0.99 (v2 vs v3)
/coreos.com/network/subnets/garbage          skipped   -            invalid subnet key "garbage"
2 copied, 0 already present, 1 skipped, 1 conflict
`
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
	rep.Written, rep.DryRun, rep.Copied, rep.WouldCopy = false, true, 0, 2
	b.Reset()
	renderMigrate(&b, rep, "table")
	if !strings.HasSuffix(b.String(), "\ndry run, nothing written: 2 to copy, 0 already present, 1 skipped, 1 conflict\n") {
		t.Errorf("dry run:\n%s", b.String())
	}
	b.Reset()
	if err := renderMigrate(&b, rep, "json"); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	keys := got["Keys"].([]any)
	first, second := keys[0].(map[string]any), keys[1].(map[string]any)
	if got["DryRun"] != true || got["Written"] != false || got["WouldCopy"] != float64(2) || len(keys) != 4 ||
		first["TTLSeconds"] != nil || first["Subnet"] != nil || second["TTLSeconds"] != float64(86390) || second["EtcdLease"] != "694d9b7f1f4a7c05" {
		t.Errorf("json:\n%s", b.String())
	}
	if len(second) != 10 {
		t.Errorf("a row has %d keys, want all 10:\n%v", len(second), second)
	}
}
