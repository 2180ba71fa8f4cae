package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap/zapcore"
)

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startEtcd runs a single-member etcd on loopback for the test and returns
// its client URL and a client.
func startEtcd(t *testing.T) (string, *clientv3.Client) {
	client := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", freePort(t))}
	cfg := embed.NewConfig()
	cfg.Dir = t.TempDir()
	cfg.Name = "test"
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = "test=" + peer.String()
	cfg.LogLevel = zapcore.FatalLevel.String()
	cfg.TickMs, cfg.ElectionMs = 10, 100
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("start etcd: %v", err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(20 * time.Second):
		t.Fatal("etcd did not become ready")
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{client.String()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return client.String(), cli
}

// The commands against a real etcd: config get/set, leases, reserve and
// release, with a custom prefix given through FLANNELD_ETCD_PREFIX.
func TestCommandsAgainstEtcd(t *testing.T) {
	endpoint, cli := startEtcd(t)
	ctx := context.Background()
	env := map[string]string{"FLANNELD_ETCD_ENDPOINTS": endpoint, "FLANNELD_ETCD_PREFIX": "/test/net"}
	run := func(stdin string, args ...string) (int, string, string) {
		return captured(t, args, env, stdin)
	}
	get := func(key string) *clientv3.GetResponse {
		t.Helper()
		r, err := cli.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}

	if code, _, stderr := run("", "config", "get"); code != 1 || !strings.Contains(stderr, "flannel config not found in etcd store") ||
		!strings.Contains(stderr, "/test/net/config") {
		t.Errorf("config get without config: %d %s", code, stderr)
	}
	cfgFile := filepath.Join(t.TempDir(), "net.json")
	os.WriteFile(cfgFile, []byte("{\"Network\":\"10.5.0.0/16\",\"Backend\":{\"Type\":\"vxlan\"}}\n"), 0o644)
	code, stdout, stderr := run("", "config", "set", cfgFile)
	if code != 0 || stdout != "wrote /test/net/config: backend vxlan, Network 10.5.0.0/16\n" || stderr != "" {
		t.Errorf("config set: %d %q %q", code, stdout, stderr)
	}
	if v := string(get("/test/net/config").Kvs[0].Value); v != `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}` {
		t.Errorf("stored config %q", v)
	}
	if code, _, stderr := run(`{"Network":"10.5.0.0/30"}`, "config", "set", "-"); code != 1 || !strings.Contains(stderr, "refusing to write an invalid network config") {
		t.Errorf("invalid config set: %d %s", code, stderr)
	}
	if code, stdout, _ := run("", "config", "get"); code != 0 || stdout != `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`+"\n" {
		t.Errorf("config get: %d %q", code, stdout)
	}
	if code, _, stderr := run(`{"Network":"10.5.0.0/16","SubnetLen":20,"Backend":{"Type":"vxlan"}}`, "config", "set", "-"); code != 0 ||
		!strings.Contains(stderr, "running flanneld daemons keep the previous one until restarted") {
		t.Errorf("changed config: %d %s", code, stderr)
	}
	cli.Put(ctx, "/test/net/config", `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`)

	// Two nodes share one etcd lease here, a third has its own.
	g1, err := cli.Grant(ctx, 3600)
	if err != nil {
		t.Fatal(err)
	}
	g2, _ := cli.Grant(ctx, 7200)
	vx := func(ip, mac string) string {
		return `{"PublicIP":"` + ip + `","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"` + mac + `"}}`
	}
	cli.Put(ctx, "/test/net/subnets/10.5.21.0-24", vx("192.168.50.1", "0a:00:00:00:00:01"), clientv3.WithLease(g1.ID))
	cli.Put(ctx, "/test/net/subnets/10.5.4.0-24", vx("192.168.50.2", "0a:00:00:00:00:02"), clientv3.WithLease(g1.ID))
	cli.Put(ctx, "/test/net/subnets/10.5.30.0-24", vx("192.168.50.3", "0a:00:00:00:00:03"), clientv3.WithLease(g2.ID))
	cli.Put(ctx, "/test/net/subnetsX/10.5.99.0-24", vx("192.168.50.99", "0a:00:00:00:00:99")) // not below subnets/

	code, stdout, stderr = run("", "reserve", "10.5.7.0/24", "192.168.50.7")
	if code != 0 || !strings.Contains(stdout, `reserved 10.5.7.0/24 for 192.168.50.7: /test/net/subnets/10.5.7.0-24 = {"PublicIP":"192.168.50.7","PublicIPv6":null}`) {
		t.Errorf("reserve: %d %s %s", code, stdout, stderr)
	}
	if r := get("/test/net/subnets/10.5.7.0-24"); len(r.Kvs) != 1 || r.Kvs[0].Lease != 0 || string(r.Kvs[0].Value) != `{"PublicIP":"192.168.50.7","PublicIPv6":null}` {
		t.Errorf("reservation in etcd: %v", r.Kvs)
	}
	if code, _, stderr := run("", "reserve", "10.5.4.0/24", "192.168.50.8"); code != 1 ||
		!strings.Contains(stderr, "subnet 10.5.4.0/24 overlaps the lease 10.5.4.0/24 of 192.168.50.2") {
		t.Errorf("overlapping reserve: %d %s", code, stderr)
	}
	if code, _, stderr := run("", "reserve", "10.6.4.0/24", "192.168.50.8"); code != 1 || !strings.Contains(stderr, "is outside Network 10.5.0.0/16") {
		t.Errorf("outside reserve: %d %s", code, stderr)
	}

	code, stdout, _ = run("", "leases", "-o", "json", "--ttl")
	var views []map[string]any
	if code != 0 || json.Unmarshal([]byte(stdout), &views) != nil || len(views) != 4 {
		t.Fatalf("leases -o json: %d\n%s", code, stdout)
	}
	resp, _ := cli.Get(ctx, "/test/net/subnets/", clientv3.WithPrefix())
	byKey := map[string]*clientv3.GetResponse{}
	for _, kv := range resp.Kvs {
		byKey[string(kv.Key)] = &clientv3.GetResponse{Kvs: resp.Kvs[:0:0]}
		byKey[string(kv.Key)].Kvs = append(byKey[string(kv.Key)].Kvs, kv)
	}
	wantOrder := []string{"10.5.4.0-24", "10.5.7.0-24", "10.5.21.0-24", "10.5.30.0-24"}
	for i, v := range views {
		key := v["Key"].(string)
		if key != "/test/net/subnets/"+wantOrder[i] {
			t.Errorf("row %d is %s, want %s", i, key, wantOrder[i])
		}
		kv := byKey[key].Kvs[0]
		if v["Value"] != string(kv.Value) {
			t.Errorf("%s value %v, etcd %s", key, v["Value"], kv.Value)
		}
		if kv.Lease == 0 {
			if v["Reservation"] != true || v["Expires"] != nil || v["EtcdLease"] != nil {
				t.Errorf("%s: %v", key, v)
			}
			continue
		}
		if v["EtcdLease"] != fmt.Sprintf("%x", kv.Lease) || v["Reservation"] != false {
			t.Errorf("%s: %v", key, v)
		}
		ttl := v["TTLSeconds"].(float64)
		exp, err := time.Parse(time.RFC3339, v["Expires"].(string))
		if ttl <= 0 || ttl > 7200 || err != nil || time.Until(exp) > 7201*time.Second {
			t.Errorf("%s: ttl %v expires %v (%v)", key, ttl, v["Expires"], err)
		}
	}
	code, stdout, _ = run("", "leases", "--ttl")
	if code != 0 || !strings.HasPrefix(stdout, "SUBNET        IPV6 SUBNET  PUBLIC IP     BACKEND  VTEP MAC           EXPIRES\n10.5.4.0/24   -            192.168.50.2  vxlan    0a:00:00:00:00:02  ") ||
		!strings.Contains(stdout, "\n10.5.7.0/24   -            192.168.50.7  -        -                  reservation\n") {
		t.Errorf("leases:\n%s", stdout)
	}

	// A node's own live lease can be pinned: the key loses its etcd lease
	// and keeps its value.
	code, stdout, _ = run("", "reserve", "10.5.30.0/24", "192.168.50.3")
	if r := get("/test/net/subnets/10.5.30.0-24"); code != 0 || r.Kvs[0].Lease != 0 || string(r.Kvs[0].Value) != vx("192.168.50.3", "0a:00:00:00:00:03") {
		t.Errorf("pin own lease: %d %s %v", code, stdout, r.Kvs)
	}

	if code, _, stderr := run("", "release", "10.5.21.0/24"); code != 1 || !strings.Contains(stderr, "is a live lease") ||
		len(get("/test/net/subnets/10.5.21.0-24").Kvs) != 1 {
		t.Errorf("release of a live lease: %d %s", code, stderr)
	}
	if code, stdout, stderr := run("", "release", "10.5.21.0/24", "--force"); code != 0 || !strings.Contains(stderr, "warning: deleting a live lease") ||
		!strings.Contains(stdout, "released the lease /test/net/subnets/10.5.21.0-24") || len(get("/test/net/subnets/10.5.21.0-24").Kvs) != 0 {
		t.Errorf("forced release: %d %s %s", code, stdout, stderr)
	}
	if code, stdout, _ := run("", "release", "10.5.7.0-24"); code != 0 || !strings.Contains(stdout, "released the reservation /test/net/subnets/10.5.7.0-24") ||
		len(get("/test/net/subnets/10.5.7.0-24").Kvs) != 0 {
		t.Errorf("release: %d %s", code, stdout)
	}
	if code, _, stderr := run("", "release", "10.5.7.0/24"); code != 1 || !strings.Contains(stderr, "no lease or reservation for 10.5.7.0/24") {
		t.Errorf("second release: %d %s", code, stderr)
	}
}
