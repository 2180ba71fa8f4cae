package etcd

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testCA signs certificates for TLS tests and writes them as PEM files.
type testCA struct {
	t    *testing.T
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{t: t, dir: dir, cert: cert, key: key}
	ca.file = ca.write(name+".pem", "CERTIFICATE", der)
	return ca
}

func (ca *testCA) write(name, typ string, der []byte) string {
	p := filepath.Join(ca.dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		ca.t.Fatal(err)
	}
	return p
}

// issue returns a server (with ips) or client certificate and key files.
func (ca *testCA) issue(name string, ips ...net.IP) (certFile, keyFile string) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, IPAddresses: ips,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		ca.t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return ca.write(name+".pem", "CERTIFICATE", der), ca.write(name+"-key.pem", "EC PRIVATE KEY", kder)
}

// tlsServer accepts TLS connections that must present a client
// certificate of ca, completes the handshake and then waits, as an etcd
// waiting for the HTTP/2 preface would.
func tlsServer(t *testing.T, ca *testCA, name string) string {
	cert, key := ca.issue(name, net.ParseIP("127.0.0.1"))
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(3 * time.Second))
				_ = c.(*tls.Conn).Handshake()
				c.Read(make([]byte, 1))
			}()
		}
	}()
	return "https://" + ln.Addr().String()
}

func TestDiagnose(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	other := newTestCA(t, dir, "other-ca")
	ep := tlsServer(t, ca, "server")
	clientCert, clientKey := ca.issue("client")
	strangerCert, strangerKey := other.issue("stranger")
	closed := func() string {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		defer ln.Close()
		return "http://" + ln.Addr().String()
	}()
	tests := []struct {
		name string
		cfg  ClientConfig
		want []string // "" alone: no problem found
	}{
		{"all good", ClientConfig{Endpoints: []string{ep}, CAFile: ca.file, CertFile: clientCert, KeyFile: clientKey}, []string{""}},
		{"wrong CA", ClientConfig{Endpoints: []string{ep}, CAFile: other.file, CertFile: clientCert, KeyFile: clientKey},
			[]string{"TLS with " + ep, "certificate signed by unknown authority", "not signed by the CA in --etcd-cafile " + other.file}},
		{"system CAs", ClientConfig{Endpoints: []string{ep}},
			[]string{"certificate signed by unknown authority", "give its CA with --etcd-cafile"}},
		{"no client certificate", ClientConfig{Endpoints: []string{ep}, CAFile: ca.file},
			[]string{"certificate required", "give --etcd-certfile and --etcd-keyfile"}},
		{"foreign client certificate", ClientConfig{Endpoints: []string{ep}, CAFile: ca.file, CertFile: strangerCert, KeyFile: strangerKey},
			[]string{"etcd refused the client certificate --etcd-certfile " + strangerCert}},
		{"nobody listening", ClientConfig{Endpoints: []string{closed}}, []string{closed, "connection refused"}},
		{"one bad of two", ClientConfig{Endpoints: []string{ep, closed}, CAFile: ca.file, CertFile: clientCert, KeyFile: clientKey},
			[]string{closed + ": ", "connection refused"}},
		{"bad TLS files", ClientConfig{Endpoints: []string{ep}, CAFile: filepath.Join(dir, "missing.pem")}, []string{"read CA file", "missing.pem"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got := tc.cfg.Diagnose(ctx)
			if len(tc.want) == 1 && tc.want[0] == "" {
				if got != "" {
					t.Errorf("Diagnose = %q, want no problem", got)
				}
				return
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("Diagnose = %q, want it to contain %q", got, w)
				}
			}
		})
	}
}

// With a password, creating the client waits for an authentication that an
// unreachable etcd never answers: Dial logs that once, with the reason,
// and gives up only when its context ends.
func TestDialUnreachableWithPassword(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	other := newTestCA(t, dir, "other-ca")
	ep := tlsServer(t, ca, "server")
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout+dialRetry/2)
	defer cancel()
	const pw = "dial-Secr3t"
	cli, err := Dial(ctx, ClientConfig{Endpoints: []string{ep}, CAFile: other.file, Username: "root", Password: pw}, log)
	if err == nil {
		cli.Close()
		t.Fatal("Dial succeeded against a server it cannot trust")
	}
	if ctx.Err() == nil {
		t.Errorf("Dial gave up before its context ended: %v", err)
	}
	out := buf.String()
	if n := strings.Count(out, "etcd is unreachable"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, out)
	}
	if !strings.Contains(out, "not signed by the CA in --etcd-cafile "+other.file) {
		t.Errorf("no reason in the log:\n%s", out)
	}
	if strings.Contains(out, pw) || strings.Contains(err.Error(), pw) {
		t.Errorf("password leaked: %s %v", out, err)
	}
}
