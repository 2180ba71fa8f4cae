//go:build linux

package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// testPKI writes a CA, certificates it signs and their keys as PEM files.
type testPKI struct {
	t    *testing.T
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestPKI(t *testing.T, dir, name string) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := &testPKI{t: t, dir: dir, cert: cert, key: key}
	p.write(name+".pem", "CERTIFICATE", der)
	return p
}

func (p *testPKI) write(name, typ string, der []byte) string {
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		p.t.Fatal(err)
	}
	return path
}

// issue writes name.pem and name-key.pem: a leaf for the given IPs (a
// server) or for client authentication (no IPs).
func (p *testPKI) issue(name string, serial int64, ips ...net.IP) (certFile, keyFile string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		p.t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		IPAddresses:  ips,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if len(ips) > 0 {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		p.t.Fatal(err)
	}
	return p.write(name+".pem", "CERTIFICATE", der), p.write(name+"-key.pem", "EC PRIVATE KEY", kder)
}

// etcd serving TLS and demanding client certificates: a daemon with the
// right CA and a client certificate works; one with another CA, or without
// a client certificate, fails with a message that names the file and the
// reason; no key or certificate content ever reaches a log.
func TestPrivilegedReliabilityEtcdTLS(t *testing.T) {
	l := lab.NewT(t, lab.Options{Hosts: 1})
	h := l.Hosts()[0]
	dir := t.TempDir()
	ca := newTestPKI(t, dir, "ca")
	wrong := newTestPKI(t, dir, "wrong-ca") // trusted by nobody
	serverCert, serverKey := ca.issue("server", 2, net.ParseIP("172.30.255.254"))
	clientCert, clientKey := ca.issue("client", 3)
	strangerCert, strangerKey := wrong.issue("stranger", 4)
	caFile, wrongCA := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "wrong-ca.pem")
	ctx := testCtx(t, 2*time.Minute)
	if err := l.StartEtcd(ctx, "--cert-file="+serverCert, "--key-file="+serverKey, "--trusted-ca-file="+caFile, "--client-cert-auth"); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(l.EtcdEndpoint(), "https://") {
		t.Fatalf("endpoint %s", l.EtcdEndpoint())
	}
	pair, err := tls.LoadX509KeyPair(clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	cfg := l.EtcdConfig()
	cfg.TLS = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}
	cli, err := clientv3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Put(ctx, "/coreos.com/network/config", `{"Network":"10.5.0.0/16","Backend":{"Type":"alloc"}}`); err != nil {
		t.Fatal(err)
	}
	// Password authentication on top, given in the environment.
	const pw = "Tls-Sup3r-Secr3t"
	for _, step := range []func() error{
		func() error { _, err := cli.RoleAdd(ctx, "root"); return err },
		func() error { _, err := cli.UserAdd(ctx, "root", pw); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	secretEnv := []string{"FLANNELD_ETCD_USERNAME=root", "FLANNELD_ETCD_PASSWORD=" + pw}

	good, err := l.StartFlanneldEnv(h, secretEnv, "--etcd-cafile="+caFile, "--etcd-certfile="+clientCert, "--etcd-keyfile="+clientKey)
	if err != nil {
		t.Fatal(err)
	}
	env := waitEnv(t, l, h, good, 30*time.Second)

	bad := []struct {
		name string
		args []string
		want []string // in the log, all of them
	}{
		{"another CA", []string{"--etcd-cafile=" + wrongCA, "--etcd-certfile=" + clientCert, "--etcd-keyfile=" + clientKey},
			[]string{"certificate signed by unknown authority", "not signed by the CA in --etcd-cafile " + wrongCA}},
		{"no client certificate", []string{"--etcd-cafile=" + caFile},
			[]string{"certificate required", "give --etcd-certfile and --etcd-keyfile"}},
		{"client certificate of another CA", []string{"--etcd-cafile=" + caFile, "--etcd-certfile=" + strangerCert, "--etcd-keyfile=" + strangerKey},
			// Go's TLS client sends no certificate the server's CA list
			// rules out, so etcd sees none.
			[]string{"remote error: tls: certificate required", "etcd refused the client certificate --etcd-certfile " + strangerCert}},
	}
	for _, b := range bad {
		args := append([]string{"--subnet-file=" + filepath.Join(h.Dir, "bad.env"), "--healthz-port=0"}, b.args...)
		p, err := l.StartFlanneldEnv(h, secretEnv, args...)
		if err != nil {
			t.Fatal(err)
		}
		err = l.WaitFor(ctx, 20*time.Second, b.name+": clear error", func() error {
			return contains(p.Log(), b.want...)
		})
		p.Kill()
		t.Logf("%s:\n%s", b.name, p.Log())
		if err != nil {
			t.Errorf("%s: %v", b.name, err)
		}
	}
	good.Kill()
	secret := func(path string) string {
		b, _ := os.ReadFile(path)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		return lines[len(lines)/2] // a line from the middle of the base64
	}
	logs, _ := os.ReadFile(filepath.Join(h.Dir, "flanneld.log"))
	for _, f := range []string{clientKey, serverKey, strangerKey} {
		if s := secret(f); strings.Contains(string(logs), s) {
			t.Errorf("key material of %s in the log", f)
		}
	}
	if strings.Contains(string(logs), pw) {
		t.Errorf("the etcd password is in the log:\n%s", logs)
	}
	figure(t, "etcd-tls", "client-cert TLS + password: lease %s; wrong CA, missing and foreign client certificate each refused naming the file or flag and the reason; no password or key in the logs", env.Subnet)
}
