//go:build linux

package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

const (
	etcdClientPort = 2379
	// etcdStartTimeout bounds StartEtcd's wait for "etcd ready".
	etcdStartTimeout = 30 * time.Second
	etcdReadyLine    = "etcd ready" // printed by cmd/lab-etcd
)

// EtcdEndpoint is the URL flanneld uses to reach the lab's etcd, on the
// fabric bridge address.
func (l *Lab) EtcdEndpoint() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	scheme := "http"
	if l.etcdTLS {
		scheme = "https"
	}
	return fmt.Sprintf("%s://%s", scheme, netip.AddrPortFrom(fabric4, etcdClientPort))
}

// StartEtcd runs Binaries.LabEtcd in the fabric namespace and waits (bounded)
// until it serves clients. Its data lives in Dir/etcd and survives StopEtcd,
// so a Stop/Start pair simulates an outage. extraArgs are appended to the
// lab-etcd command line (later flags win); a --cert-file among them switches
// the client URLs, and EtcdEndpoint, to https.
func (l *Lab) StartEtcd(ctx context.Context, extraArgs ...string) error {
	if l.bin.LabEtcd == "" {
		return errors.New("start etcd: Options.Binaries.LabEtcd is not set")
	}
	if err := l.claimEtcd(extraArgs); err != nil {
		return err
	}

	clientURL := l.EtcdEndpoint()
	peerURL := "http://127.0.0.1:2380"
	argv := append([]string{l.bin.LabEtcd,
		"--name=lab",
		"--data-dir=" + filepath.Join(l.dir, "etcd"),
		"--listen-client-urls=" + clientURL,
		"--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=lab=" + peerURL,
	}, extraArgs...)
	return l.runEtcd(ctx, argv, filepath.Join(l.dir, "etcd.log"), etcdReadyLine+"\n")
}

// runEtcd starts an etcd server (argv) in the fabric namespace as the lab's
// etcd and waits, at most etcdStartTimeout, until its log has ready.
func (l *Lab) runEtcd(ctx context.Context, argv []string, logPath, ready string) error {
	clientURL := l.EtcdEndpoint()
	p, err := l.StartProcess(l.fabricNS, logPath, nil, argv...)
	if err != nil {
		return fmt.Errorf("start etcd: %w", err)
	}
	l.mu.Lock()
	l.etcd = p
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, etcdStartTimeout)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if strings.Contains(p.Log(), ready) {
			l.logf("lab %s: etcd ready at %s (pid %d)", l.prefix, clientURL, p.Pid)
			return nil
		}
		if p.Exited() {
			code, _ := p.Wait(0)
			return fmt.Errorf("etcd exited with code %d before it was ready:\n%s", code, tail(p.Log(), 20))
		}
		select {
		case <-ctx.Done():
			_, _ = p.Stop(stopGrace)
			return fmt.Errorf("etcd not ready: %w:\n%s", ctx.Err(), tail(p.Log(), 20))
		case <-t.C:
		}
	}
}

// claimEtcd refuses to start a second etcd (lab-etcd and etcd2 share the
// client port) and switches EtcdEndpoint to https when extraArgs have
// --cert-file.
func (l *Lab) claimEtcd(extraArgs []string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.etcd != nil && !l.etcd.Exited() {
		return fmt.Errorf("start etcd: already running as pid %d", l.etcd.Pid)
	}
	tlsOn := false
	for _, a := range extraArgs {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if name == "cert-file" {
			tlsOn = true
		}
	}
	l.etcdTLS = tlsOn
	return nil
}

// StopEtcd stops the lab's etcd (SIGTERM, then SIGKILL after a bound). Its
// data stays for the next StartEtcd. Stopping an etcd that is not running is
// not an error.
func (l *Lab) StopEtcd() error {
	l.mu.Lock()
	p := l.etcd
	l.mu.Unlock()
	if p == nil {
		return nil
	}
	if _, err := p.Stop(stopGrace); err != nil {
		return fmt.Errorf("stop etcd: %w", err)
	}
	return nil
}

// EtcdConfig is a client configuration for the lab's etcd that works from
// the test process: its dialer opens each connection inside the fabric
// namespace, so the root namespace needs no route into the lab. Add TLS to
// it for an etcd started with TLS flags.
func (l *Lab) EtcdConfig() clientv3.Config {
	return clientv3.Config{
		Endpoints:   []string{l.EtcdEndpoint()},
		DialTimeout: 5 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(l.DialFabric)},
		Logger:      zap.NewNop(),
	}
}

// Etcd returns a client of the lab's etcd (see EtcdConfig). Close closes
// clients it handed out that the caller has not closed.
func (l *Lab) Etcd(ctx context.Context) (*clientv3.Client, error) {
	// ctx is not the client's lifetime (clientv3 would close the client
	// when a short ctx ends); it only lets a cancelled caller bail out.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg := l.EtcdConfig()
	c, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd client for %s: %w", cfg.Endpoints[0], err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = c.Close()
		return nil, errors.New("lab is closed")
	}
	l.clients = append(l.clients, c)
	return c, nil
}

// DialFabric opens a TCP connection from inside the fabric namespace. addr is
// host:port (a URL's scheme, as gRPC resolvers sometimes pass, is dropped).
func (l *Lab) DialFabric(ctx context.Context, addr string) (net.Conn, error) {
	if _, rest, ok := strings.Cut(addr, "://"); ok {
		addr = rest
	}
	var conn net.Conn
	err := InNS(l.fabricNS, func() error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		conn = c
		return err
	})
	if err != nil {
		return nil, err
	}
	return conn, nil
}
