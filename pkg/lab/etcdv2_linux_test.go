//go:build linux

package lab

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flannelng/flannel/pkg/etcdv2"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func etcdV2Bins(t *testing.T) Binaries {
	t.Helper()
	SkipUnlessPrivileged(t)
	var b Binaries
	RequireEtcdV2Binary(t, &b)
	return b
}

// TestPrivilegedEtcdV2 runs etcd 3.5 with the v2 API as the lab's etcd:
// one endpoint serves the v2 store and the v3 keyspace, which stay apart
// (spec 6); v2 data survives an outage; with --enable-v2=false the v2
// client says the API is missing.
func TestPrivilegedEtcdV2(t *testing.T) {
	l := NewT(t, Options{Binaries: etcdV2Bins(t)})
	ctx := testCtx(t, 2*time.Minute)
	if err := l.StartEtcdV2(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.StartEtcdV2(ctx); err == nil {
		t.Fatal("a second etcd started on the same endpoint")
	}
	v2, err := l.EtcdV2()
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	v3, err := l.Etcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v2.Set(ctx, "/coreos.com/network/config", `{"Network":"10.244.0.0/16"}`, etcdv2.SetOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := v3.Put(ctx, "/coreos.com/network/config", `{"Network":"10.245.0.0/16"}`); err != nil {
		t.Fatal(err)
	}
	g, err := v2.Get(ctx, "/coreos.com/network/config", false)
	if err != nil || g.Node.Value != `{"Network":"10.244.0.0/16"}` {
		t.Fatalf("v2 config: %+v, %v", g, err)
	}
	r, err := v3.Get(ctx, "/coreos.com/network/config")
	if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != `{"Network":"10.245.0.0/16"}` {
		t.Fatalf("v3 config: %+v, %v", r, err)
	}

	// An outage: the v2 store comes back from the WAL.
	if err := l.StopEtcd(); err != nil {
		t.Fatal(err)
	}
	if err := l.StartEtcdV2(ctx); err != nil {
		t.Fatal(err)
	}
	if g, err := v2.Get(ctx, "/coreos.com/network/config", false); err != nil || g.Node.Value != `{"Network":"10.244.0.0/16"}` {
		t.Fatalf("v2 config after a restart: %+v, %v", g, err)
	}

	// The v2 API switched off: a clear error, not "invalid JSON".
	if err := l.StopEtcd(); err != nil {
		t.Fatal(err)
	}
	if err := l.StartEtcdV2(ctx, "--enable-v2=false"); err != nil {
		t.Fatal(err)
	}
	_, err = v2.Get(ctx, "/coreos.com/network/config", false)
	if !errors.Is(err, etcdv2.ErrNoV2API) {
		t.Fatalf("v2 off: %v, want ErrNoV2API", err)
	}
	t.Logf("v2 off: %v", err)
	if r, err := v3.Get(ctx, "/coreos.com/network/config"); err != nil || len(r.Kvs) != 1 {
		t.Errorf("v3 with v2 off: %+v, %v", r, err)
	}
}

// TestPrivilegedEtcdV2TLS: the v2 endpoint with TLS and client certificates,
// as v0.11 users run etcd (--etcd-cafile/certfile/keyfile), for both APIs.
func TestPrivilegedEtcdV2TLS(t *testing.T) {
	l := NewT(t, Options{Binaries: etcdV2Bins(t)})
	ctx := testCtx(t, 2*time.Minute)
	dir := t.TempDir()
	caPEM, certPEM, keyPEM := makeCerts(t, fabric4)
	for name, b := range map[string][]byte{"ca.pem": caPEM, "cert.pem": certPEM, "key.pem": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	err := l.StartEtcdV2(ctx,
		"--cert-file="+filepath.Join(dir, "cert.pem"),
		"--key-file="+filepath.Join(dir, "key.pem"),
		"--trusted-ca-file="+filepath.Join(dir, "ca.pem"),
		"--client-cert-auth")
	if err != nil {
		t.Fatal(err)
	}
	if got := l.EtcdEndpoint(); got != "https://172.30.255.254:2379" {
		t.Errorf("EtcdEndpoint = %q", got)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg := &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}

	cfg := l.EtcdV2Config()
	cfg.TLS = tlsCfg
	v2, err := etcdv2.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	if _, err := v2.Create(ctx, "/coreos.com/network/subnets/10.244.1.0-24", `{"PublicIP":"10.210.0.1"}`, 24*time.Hour); err != nil {
		t.Fatal(err)
	}

	// Without a client certificate the server refuses the handshake.
	cfg.TLS = &tls.Config{RootCAs: pool}
	anon, err := etcdv2.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	if _, err := anon.Get(ctx, "/coreos.com/network/subnets", true); err == nil {
		t.Errorf("a client without a certificate was served")
	}

	c3 := l.EtcdConfig()
	c3.TLS = tlsCfg
	v3, err := clientv3.New(c3)
	if err != nil {
		t.Fatal(err)
	}
	defer v3.Close()
	if _, err := v3.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("v3 over TLS: %v", err)
	}
}
