//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/pkg/etcdv2"
	"github.com/flannelng/flannel/pkg/etcdv2/etcdv2test"
	"github.com/flannelng/flannel/pkg/lab"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// helperEnv makes the test binary run flannelctl instead of the tests
// (TestFlannelctlHelperProcess): the privileged tests run it inside the
// lab's fabric namespace, where etcd listens.
const helperEnv = "FLANNELCTL_TEST_HELPER"

// TestFlannelctlHelperProcess is not a test: it is flannelctl's main when
// the test binary is started by runCtl.
func TestFlannelctlHelperProcess(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("runs flannelctl for the privileged tests")
	}
	args := os.Args
	for i, a := range args {
		if a == "--" {
			args = args[i+1:]
			break
		}
	}
	a := &app{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, now: time.Now}
	os.Exit(a.main(context.Background(), args))
}

// v2lab is a lab whose etcd is etcd 3.5 serving the v2 API and v3 on one
// endpoint, with clients of both for the test.
type v2lab struct {
	l  *lab.Lab
	v2 *etcdv2.Client
	v3 *clientv3.Client
}

func newV2Lab(t *testing.T) *v2lab {
	t.Helper()
	lab.SkipUnlessPrivileged(t)
	var bins lab.Binaries
	lab.RequireEtcdV2Binary(t, &bins)
	l := lab.NewT(t, lab.Options{Binaries: bins}) // closed, namespaces and all, by t.Cleanup
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := l.StartEtcdV2(ctx); err != nil {
		t.Fatal(err)
	}
	v2, err := l.EtcdV2()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v2.Close)
	v3, err := l.Etcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &v2lab{l: l, v2: v2, v3: v3}
}

// runCtl runs flannelctl with args in the lab's fabric namespace against
// its etcd, under prefix, and returns the exit code and outputs.
func (e *v2lab) runCtl(t *testing.T, prefix string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	argv := append([]string{"netns", "exec", e.l.FabricNS(), os.Args[0], "-test.run=^TestFlannelctlHelperProcess$", "--"}, args...)
	cmd := exec.CommandContext(ctx, "ip", argv...)
	cmd.Env = []string{helperEnv + "=1", "PATH=" + os.Getenv("PATH"),
		"FLANNELD_ETCD_ENDPOINTS=" + e.l.EtcdEndpoint(), "FLANNELD_ETCD_PREFIX=" + prefix}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode(), stdout.String(), stderr.String()
	case err != nil:
		t.Fatalf("flannelctl %q: %v\n%s", args, err, stderr.String())
	}
	return 0, stdout.String(), stderr.String()
}

// v3Keys returns every v3 key under prefix with its value and etcd lease,
// and the store's revision.
func (e *v2lab) v3Keys(t *testing.T, prefix string) (map[string]*kv, int64) {
	t.Helper()
	r, err := e.v3.Get(context.Background(), prefix+"/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*kv{}
	for _, k := range r.Kvs {
		out[string(k.Key)] = &kv{value: string(k.Value), lease: k.Lease}
	}
	return out, r.Header.Revision
}

type kv struct {
	value string
	lease int64
}

// v2TTL is what is left of a v2 key's TTL.
func (e *v2lab) v2TTL(t *testing.T, key string) int64 {
	t.Helper()
	r, err := e.v2.Get(context.Background(), key, false)
	if err != nil {
		t.Fatal(err)
	}
	return r.Node.TTL
}

// hasRow reports whether migrate-v2's table has the row of key with action,
// a TTL column starting with ttl, and a DETAIL containing detail.
func hasRow(out, key, action, ttl, detail string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != key {
			continue
		}
		rest := strings.TrimSpace(strings.TrimPrefix(line, key))
		rest = strings.TrimSpace(strings.TrimPrefix(rest, f[1]))
		rest = strings.TrimSpace(strings.TrimPrefix(rest, f[2]))
		return f[1] == action && strings.HasPrefix(f[2], ttl) && strings.Contains(rest, detail)
	}
	return false
}

func vx011(ip, mac string) string {
	return etcdv2test.LeaseValue(netip.MustParseAddr(ip), etcdv2test.BackendVxlan, mac)
}

func vxBoth(ip, mac string) string {
	return `{"PublicIP":"` + ip + `","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"` + mac + `"}}`
}

const labConfig = `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`

// migrate-v2 on a real etcd 3.5 serving v2 and v3, with v0.11's keys
// written as v0.11 writes them (etcdv2test): a dry run writes nothing; the
// run copies the config and each lease with the same bytes, a TTL lease
// onto its own new etcd lease of the remaining v2 TTL, a reservation
// without one, and skips a key that is not a lease; a second run writes
// nothing and says so; doctor then names migration step 1.
func TestPrivilegedMigrateV2(t *testing.T) {
	e := newV2Lab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const prefix = etcdv2test.DefaultPrefix
	sub := func(s string) string { return prefix + "/subnets/" + s }

	if err := etcdv2test.WriteConfig(ctx, e.v2, prefix, labConfig); err != nil {
		t.Fatal(err)
	}
	n1 := &etcdv2test.Node{Client: e.v2, PublicIP: netip.MustParseAddr("10.210.0.1"), Backend: etcdv2test.BackendVxlan, VtepMAC: "66:52:c2:e4:ae:d7"}
	n3 := &etcdv2test.Node{Client: e.v2, PublicIP: netip.MustParseAddr("10.210.0.3"), Backend: etcdv2test.BackendUDP}
	n9 := &etcdv2test.Node{Client: e.v2, PublicIP: netip.MustParseAddr("10.210.0.9"), Backend: etcdv2test.BackendVxlan, VtepMAC: "66:52:c2:e4:ae:d9"}
	if _, err := n1.Acquire(ctx, netip.MustParsePrefix("10.244.82.0/24")); err != nil {
		t.Fatal(err)
	}
	if _, err := n3.Acquire(ctx, netip.MustParsePrefix("10.244.3.0/24")); err != nil {
		t.Fatal(err)
	}
	if _, err := n9.Reserve(ctx, netip.MustParsePrefix("10.244.150.0/24")); err != nil {
		t.Fatal(err)
	}
	// A host-gw lease with an hour left, as if written 23 h ago.
	hgw := `{"PublicIP":"10.210.0.2","BackendType":"host-gw"}`
	if _, err := e.v2.Create(ctx, sub("10.244.2.0-24"), hgw, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := e.v2.Set(ctx, sub("garbage"), "x", etcdv2.SetOptions{}); err != nil {
		t.Fatal(err)
	}

	code, out, stderr := e.runCtl(t, prefix, "migrate-v2", "--dry-run")
	if code != 0 || !strings.Contains(out, "dry run, nothing written: 5 to copy, 0 already present, 1 skipped, 0 conflicts\n") ||
		!hasRow(out, sub("10.244.82.0-24"), "would-copy", "23h59m5", "10.210.0.1 vxlan 66:52:c2:e4:ae:d7") {
		t.Errorf("dry run: exit %d\n%s%s", code, out, stderr)
	}
	if keys, _ := e.v3Keys(t, prefix); len(keys) != 0 {
		t.Fatalf("dry run wrote %v", keys)
	}

	code, out, stderr = e.runCtl(t, prefix, "migrate-v2")
	t.Logf("migrate-v2:\n%s%s", out, stderr)
	if code != 0 || !strings.HasSuffix(out, "\n5 copied, 0 already present, 1 skipped, 0 conflicts\n") ||
		!hasRow(out, prefix+"/config", "copied", "-", "") ||
		!hasRow(out, sub("10.244.82.0-24"), "copied", "23h59m5", "10.210.0.1 vxlan 66:52:c2:e4:ae:d7") ||
		!hasRow(out, sub("10.244.2.0-24"), "copied", "59m5", "10.210.0.2 host-gw") ||
		!hasRow(out, sub("10.244.3.0-24"), "copied", "23h59m5", "10.210.0.3") ||
		!hasRow(out, sub("10.244.150.0-24"), "copied", "reservation", "10.210.0.9 vxlan 66:52:c2:e4:ae:d9") ||
		!hasRow(out, sub("garbage"), "skipped", "-", `invalid subnet key "garbage"`) {
		t.Errorf("migrate-v2: exit %d\n%s%s", code, out, stderr)
	}
	keys, rev := e.v3Keys(t, prefix)
	want := map[string]string{
		prefix + "/config":     labConfig,
		sub("10.244.82.0-24"):  vx011("10.210.0.1", "66:52:c2:e4:ae:d7"),
		sub("10.244.3.0-24"):   `{"PublicIP":"10.210.0.3"}`,
		sub("10.244.2.0-24"):   hgw,
		sub("10.244.150.0-24"): vx011("10.210.0.9", "66:52:c2:e4:ae:d9"),
	}
	if len(keys) != len(want) {
		t.Errorf("v3 holds %d keys, want %d: %v", len(keys), len(want), keys)
	}
	leaseIDs := map[int64]bool{}
	for k, v := range want {
		got := keys[k]
		if got == nil || got.value != v {
			t.Errorf("v3 %s = %+v, want the v2 bytes %s", k, got, v)
			continue
		}
		switch k {
		case prefix + "/config", sub("10.244.150.0-24"):
			if got.lease != 0 {
				t.Errorf("%s has etcd lease %x; config and reservation must have none", k, got.lease)
			}
			continue
		}
		if got.lease == 0 || leaseIDs[got.lease] {
			t.Errorf("%s: etcd lease %x, want a lease of its own", k, got.lease)
			continue
		}
		leaseIDs[got.lease] = true
		ttl, err := e.v3.TimeToLive(ctx, clientv3.LeaseID(got.lease))
		if err != nil {
			t.Fatal(err)
		}
		left := e.v2TTL(t, k)
		// The copy expires with the v2 key: its TTL is what the v2 key
		// had left when it was read, a few seconds ago.
		if ttl.TTL > left+1 || ttl.TTL < left-10 || ttl.GrantedTTL > left+5 {
			t.Errorf("%s: etcd lease TTL %d (granted %d), v2 key has %d s left", k, ttl.TTL, ttl.GrantedTTL, left)
		}
	}
	if ttl, _ := e.v3.TimeToLive(ctx, clientv3.LeaseID(keys[sub("10.244.2.0-24")].lease)); ttl.GrantedTTL > 3600 || ttl.GrantedTTL < 3590 {
		t.Errorf("the host-gw lease with an hour left got %d s", ttl.GrantedTTL)
	}

	// A second run finds everything there and writes nothing.
	code, out, stderr = e.runCtl(t, prefix, "migrate-v2", "-o", "json")
	t.Logf("second run, -o json:\n%s%s", out, stderr)
	var rep migrateReport
	if err := json.Unmarshal([]byte(out), &rep); code != 0 || err != nil {
		t.Fatalf("second run: exit %d %v\n%s%s", code, err, out, stderr)
	}
	if !rep.Written || rep.Copied != 0 || rep.AlreadyPresent != 5 || rep.Skipped != 1 || rep.Conflicts != 0 || len(rep.Keys) != 6 {
		t.Errorf("second run: %s", out)
	}
	if _, rev2 := e.v3Keys(t, prefix); rev2 != rev {
		t.Errorf("the second run wrote to v3: revision %d -> %d", rev, rev2)
	}

	code, out, _ = e.runCtl(t, prefix, "doctor", "--subnet-file=/nonexistent", "--proc-sys=/nonexistent", "--cni-bin-dir=/nonexistent")
	for _, line := range []string{
		"ok    keyspaces: v2 and v3, migration step 1 done, no node runs --etcd-api=both yet: 4 v2 leases in v0.11 form, 4 of them with a v3 copy of the same owner (migrate-v2).",
		"ok    config " + prefix + "/config: in v2 and v3, equal\n",
		"FAIL  v2 key " + sub("garbage") + " is not a lease",
		"ok    node checks below use the leases of both keyspaces",
	} {
		if !strings.Contains(out, line) {
			t.Errorf("doctor after migrate-v2 lacks %q:\n%s", line, out)
		}
	}

	// Without a config in v2 there is nothing to migrate.
	code, out, stderr = e.runCtl(t, "/nothing/here", "migrate-v2")
	if code != 1 || out != "" || !strings.Contains(stderr, "no flannel config at /nothing/here/config in etcd's v2 store") {
		t.Errorf("no v2 config: exit %d\n%s%s", code, out, stderr)
	}

	// etcd 3.5 without --enable-v2: migrate-v2 says what is missing,
	// doctor reports v3 only and no problem of it.
	if err := e.l.StopEtcd(); err != nil {
		t.Fatal(err)
	}
	if err := e.l.StartEtcdV2(ctx, "--enable-v2=false"); err != nil {
		t.Fatal(err)
	}
	code, out, stderr = e.runCtl(t, prefix, "migrate-v2")
	if code != 1 || !strings.Contains(stderr, "does not serve the v2 API") || !strings.Contains(stderr, "--enable-v2=true") {
		t.Errorf("v2 off: exit %d\n%s%s", code, out, stderr)
	}
	_, out, _ = e.runCtl(t, prefix, "doctor", "--subnet-file=/nonexistent", "--proc-sys=/nonexistent", "--cni-bin-dir=/nonexistent")
	if !strings.HasPrefix(out, "ok    keyspaces: v3 only (etcd does not serve the v2 API)\n") {
		t.Errorf("doctor, v2 off:\n%s", out)
	}
}

// A v3 key that disagrees with v2 refuses the whole run: nothing is
// written, every disagreement (another owner, an overlapping lease under
// another key) is reported, exit 1. --skip-conflicts copies the rest and
// leaves the conflicting keys as they are; a conflicting config refuses
// even then.
func TestPrivilegedMigrateV2Conflicts(t *testing.T) {
	e := newV2Lab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const prefix = "/conflict/network"
	sub := func(s string) string { return prefix + "/subnets/" + s }
	if err := etcdv2test.WriteConfig(ctx, e.v2, prefix, labConfig); err != nil {
		t.Fatal(err)
	}
	for _, n := range []struct{ key, ip, mac string }{
		{"10.244.1.0-24", "10.210.0.1", "66:52:c2:e4:ae:01"},
		{"10.244.2.0-24", "10.210.0.2", "66:52:c2:e4:ae:02"},
		{"10.244.3.0-24", "10.210.0.3", "66:52:c2:e4:ae:03"},
	} {
		if _, err := e.v2.Create(ctx, sub(n.key), vx011(n.ip, n.mac), 24*time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	e.v3.Put(ctx, prefix+"/config", labConfig)
	e.v3.Put(ctx, sub("10.244.1.0-24"), vxBoth("10.210.0.99", "66:52:c2:e4:ae:99"))
	e.v3.Put(ctx, sub("10.244.2.0-25"), vxBoth("10.210.0.88", "66:52:c2:e4:ae:88"))
	before, rev := e.v3Keys(t, prefix)

	code, out, stderr := e.runCtl(t, prefix, "migrate-v2")
	t.Logf("refused run:\n%s%s", out, stderr)
	if code != 1 || !strings.Contains(stderr, "refused: 2 keys in v3 disagree with v2; nothing was written") ||
		!hasRow(out, sub("10.244.1.0-24"), "conflict", "23h59m5", "10.210.0.1 vxlan 66:52:c2:e4:ae:01; v3 holds another lease: PublicIP 10.210.0.1 vs 10.210.0.99, VtepMAC 66:52:c2:e4:ae:01 vs 66:52:c2:e4:ae:99 (v2 vs v3)") ||
		!hasRow(out, sub("10.244.2.0-24"), "conflict", "23h59m5", "10.210.0.2 vxlan 66:52:c2:e4:ae:02; overlaps the v3 lease "+sub("10.244.2.0-25")+" of 10.210.0.88 vxlan 66:52:c2:e4:ae:88") ||
		!hasRow(out, sub("10.244.3.0-24"), "would-copy", "23h59m5", "10.210.0.3 vxlan 66:52:c2:e4:ae:03") ||
		!strings.HasSuffix(out, "refused, nothing written: 1 to copy, 1 already present, 0 skipped, 2 conflicts\n") {
		t.Errorf("refused run: exit %d\n%s%s", code, out, stderr)
	}
	if _, rev2 := e.v3Keys(t, prefix); rev2 != rev {
		t.Errorf("a refused run wrote to v3: revision %d -> %d", rev, rev2)
	}

	code, out, stderr = e.runCtl(t, prefix, "migrate-v2", "--skip-conflicts")
	if code != 1 || !strings.Contains(stderr, "2 keys in v3 disagree with v2 and were left as they are") ||
		!strings.HasSuffix(out, "\n1 copied, 1 already present, 0 skipped, 2 conflicts\n") {
		t.Errorf("--skip-conflicts: exit %d\n%s%s", code, out, stderr)
	}
	after, _ := e.v3Keys(t, prefix)
	for k, v := range before {
		if *after[k] != *v {
			t.Errorf("%s changed: %+v -> %+v", k, v, after[k])
		}
	}
	if got := after[sub("10.244.3.0-24")]; got == nil || got.value != vx011("10.210.0.3", "66:52:c2:e4:ae:03") || got.lease == 0 {
		t.Errorf("the free key was not copied: %+v", got)
	}

	e.v3.Put(ctx, prefix+"/config", `{"Network":"10.245.0.0/16","Backend":{"Type":"vxlan"}}`)
	_, rev = e.v3Keys(t, prefix)
	code, out, stderr = e.runCtl(t, prefix, "migrate-v2", "--skip-conflicts")
	if code != 1 || !strings.Contains(stderr, "refused: v3 holds another config at "+prefix+"/config") ||
		!hasRow(out, prefix+"/config", "conflict", "-", `v3 holds another config: Network: "10.244.0.0/16" -> "10.245.0.0/16" (v2 vs v3)`) {
		t.Errorf("config conflict: exit %d\n%s%s", code, out, stderr)
	}
	if _, rev2 := e.v3Keys(t, prefix); rev2 != rev {
		t.Errorf("a refused run wrote to v3: revision %d -> %d", rev, rev2)
	}

	// Step 1 alone: --config-only copies the config and no lease.
	const p1 = "/step1/network"
	if err := etcdv2test.WriteConfig(ctx, e.v2, p1, labConfig); err != nil {
		t.Fatal(err)
	}
	if _, err := e.v2.Create(ctx, p1+"/subnets/10.244.1.0-24", vx011("10.210.0.1", "66:52:c2:e4:ae:01"), 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	code, out, stderr = e.runCtl(t, p1, "migrate-v2", "--config-only")
	if keys, _ := e.v3Keys(t, p1); code != 0 || len(keys) != 1 || keys[p1+"/config"] == nil || keys[p1+"/config"].value != labConfig ||
		!strings.HasSuffix(out, "\n1 copied, 0 already present, 0 skipped, 0 conflicts\n") {
		t.Errorf("--config-only: exit %d, v3 %v\n%s%s", code, keys, out, stderr)
	}
	_, out, _ = e.runCtl(t, p1, "doctor", "--subnet-file=/nonexistent", "--proc-sys=/nonexistent", "--cni-bin-dir=/nonexistent")
	if !strings.HasPrefix(out, "ok    keyspaces: v2 and v3, migration step 1 done: the config is in v3, every lease (1) only in v2. Next, step 2") {
		t.Errorf("doctor after step 1:\n%s", out)
	}
}

// doctor on each stage of a migration, each under its own prefix of one
// etcd 3.5: v2 only (step 0), half migrated with a node that joined in
// v3-only mode (step 2, a problem), a split claim, and everything on v3
// with v2 leftovers (step 6).
func TestPrivilegedDoctorKeyspaces(t *testing.T) {
	e := newV2Lab(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	put2 := func(key, value string, ttl time.Duration) {
		t.Helper()
		if _, err := e.v2.Set(ctx, key, value, etcdv2.SetOptions{TTL: ttl}); err != nil {
			t.Fatal(err)
		}
	}
	put3 := func(key, value string, ttl int64) {
		t.Helper()
		var opts []clientv3.OpOption
		if ttl > 0 {
			g, err := e.v3.Grant(ctx, ttl)
			if err != nil {
				t.Fatal(err)
			}
			opts = append(opts, clientv3.WithLease(g.ID))
		}
		if _, err := e.v3.Put(ctx, key, value, opts...); err != nil {
			t.Fatal(err)
		}
	}
	a1, a2 := vx011("10.210.0.1", "66:52:c2:e4:ae:01"), vx011("10.210.0.2", "66:52:c2:e4:ae:02")
	b1, b2, b3 := vxBoth("10.210.0.1", "66:52:c2:e4:ae:01"), vxBoth("10.210.0.2", "66:52:c2:e4:ae:02"), vxBoth("10.210.0.3", "66:52:c2:e4:ae:03")

	// Step 0: a v0.11 cluster.
	put2("/s0/config", labConfig, 0)
	put2("/s0/subnets/10.244.1.0-24", a1, 24*time.Hour)
	put2("/s0/subnets/10.244.2.0-24", a2, 24*time.Hour)

	// Step 2: node 1 replaced by a --etcd-api=both node (the same bytes
	// in both), node 2 still v0.11, node 3 joined in v3-only mode.
	for _, k := range []string{"/s2/config"} {
		put2(k, labConfig, 0)
		put3(k, labConfig, 0)
	}
	put2("/s2/subnets/10.244.1.0-24", b1, 24*time.Hour)
	put3("/s2/subnets/10.244.1.0-24", b1, 86400)
	put2("/s2/subnets/10.244.2.0-24", a2, 24*time.Hour)
	put3("/s2/subnets/10.244.3.0-24", b3, 86400)

	// A split claim: 10.244.1.0/24 held by node 1 in v2, node 3 in v3.
	put2("/split/config", labConfig, 0)
	put3("/split/config", labConfig, 0)
	put2("/split/subnets/10.244.1.0-24", a1, 24*time.Hour)
	put3("/split/subnets/10.244.1.0-24", b3, 86400)

	// Step 6: every node runs v3 mode; the v2 copies lapse.
	put2("/s6/config", labConfig, 0)
	put3("/s6/config", labConfig, 0)
	put2("/s6/subnets/10.244.1.0-24", b1, 3*time.Hour)
	put2("/s6/subnets/10.244.2.0-24", b2, 2*time.Hour)
	put3("/s6/subnets/10.244.1.0-24", b1, 86400)
	put3("/s6/subnets/10.244.2.0-24", b2, 86400)
	put3("/s6/subnets/10.244.3.0-24", b3, 86400)

	for _, c := range []struct {
		prefix string
		want   []string
		absent string
	}{
		{"/s0", []string{
			"ok    keyspaces: v2 only (flannel v0.11's layout): migration not started (step 0). Next, step 1: copy the config into v3 with `flannelctl migrate-v2 --config-only`\n",
			"ok    network config /s0/config (v2 store): backend vxlan, Network 10.244.0.0/16\n",
		}, "FAIL  keyspaces"},
		{"/s2", []string{
			"ok    keyspaces: v2 and v3, migration step 2: 1 v2 lease written by --etcd-api=both nodes, 1 lease in v0.11 form",
			`ok    v2: 2 leases: 1 in v0.11 form (no "PublicIPv6": v0.11 nodes, nodes in --etcd-api=v2, or copies); 1 with "PublicIPv6":null (written by --etcd-api=both nodes)` + "\n",
			"ok    v3: 2 leases: 1 also in v2 with the same owner, 1 only in v3\n",
			"FAIL  lease 10.244.3.0/24 (10.210.0.3 vxlan 66:52:c2:e4:ae:03) is only in v3 while v0.11 nodes hold v2 leases: they do not route to it and may allocate its subnet (step 3)\n" +
				"      fix: restart flanneld on 10.210.0.3 with --etcd-api=both, never v3 only, until every v0.11 node is replaced\n",
		}, ""},
		{"/split", []string{
			"FAIL  split claim on 10.244.1.0/24: v2 says 10.210.0.1 vxlan 66:52:c2:e4:ae:01, v3 says 10.210.0.3 vxlan 66:52:c2:e4:ae:03",
		}, ""},
		{"/s6", []string{
			"ok    keyspaces: v3, with v2 leftovers: every node runs --etcd-api=v3 (no v2 lease is renewed) and the v2 store still holds the config, 2 lease copies that are no longer renewed under /s6. " +
				"Next, step 6: `ETCDCTL_API=2 etcdctl rm --recursive /s6`, restart etcd without --enable-v2, and run `etcdutl check v2store` before upgrading etcd to 3.6\n",
		}, "FAIL  keyspaces"},
	} {
		_, out, stderr := e.runCtl(t, c.prefix, "doctor", "--subnet-file=/nonexistent", "--proc-sys=/nonexistent", "--cni-bin-dir=/nonexistent")
		t.Logf("doctor --etcd-prefix=%s:\n%s%s", c.prefix, out, stderr)
		for _, w := range c.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: doctor lacks %q", c.prefix, w)
			}
		}
		if c.absent != "" && strings.Contains(out, c.absent) {
			t.Errorf("%s: doctor has %q", c.prefix, c.absent)
		}
		// Only the keyspace lines are asserted: the node checks fail
		// here (no subnet.env), which is not what this test is about.
	}
}
