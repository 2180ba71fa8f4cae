// Package etcd keeps flannel's subnet leases in etcd v3 with upstream's key
// layout and value format: <prefix>/config holds the network config and
// <prefix>/subnets/<key> one lease each, attached to an etcd lease.
package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// ClientConfig is how to reach etcd.
type ClientConfig struct {
	Endpoints []string
	KeyFile   string
	CertFile  string
	CAFile    string
	Username  string
	Password  string
}

// String never shows the password.
func (c ClientConfig) String() string {
	pw := ""
	if c.Password != "" {
		pw = " password=<redacted>"
	}
	return fmt.Sprintf("endpoints=%s user=%q ca=%q cert=%q key=%q%s", strings.Join(c.Endpoints, ","), c.Username, c.CAFile, c.CertFile, c.KeyFile, pw)
}

// TLSConfig returns the TLS settings, or nil for plain http. Unlike
// upstream, an https endpoint with only a CA file still uses TLS.
func (c ClientConfig) TLSConfig() (*tls.Config, error) {
	https := false
	for _, e := range c.Endpoints {
		if strings.HasPrefix(e, "https://") {
			https = true
		}
	}
	if c.CertFile == "" && c.KeyFile == "" && c.CAFile == "" && !https {
		return nil, nil
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, fmt.Errorf("etcd TLS: --etcd-certfile and --etcd-keyfile must be given together (certfile=%q keyfile=%q)", c.CertFile, c.KeyFile)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd TLS: load client certificate %s / key %s: %w", c.CertFile, c.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("etcd TLS: read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd TLS: CA file %s holds no PEM certificate", c.CAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// dialTimeout bounds what clientv3.New itself waits for: with a password
// it authenticates before it returns, and without a bound it would wait
// for an unreachable etcd forever, silently.
const dialTimeout = 5 * time.Second

// NewClient builds an etcd client that does not block: calls fail with a
// timeout while etcd is unreachable and reconnect quickly when it returns.
// With a password it authenticates first, which fails after dialTimeout
// when etcd cannot be reached (Dial retries that).
func NewClient(c ClientConfig) (*clientv3.Client, error) {
	if len(c.Endpoints) == 0 {
		return nil, errors.New("no etcd endpoints given")
	}
	for _, e := range c.Endpoints {
		if e == "" {
			return nil, fmt.Errorf("empty etcd endpoint in %q", strings.Join(c.Endpoints, ","))
		}
	}
	tc, err := c.TLSConfig()
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   c.Endpoints,
		Username:    c.Username,
		Password:    c.Password,
		TLS:         tc,
		DialTimeout: dialTimeout,
		// A member cut off by a partition sends no reset: only keepalive
		// notices, and until then our watches are silently stale. 5 s is
		// the most often etcd lets a client ping (--grpc-keepalive-min-time).
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		// grpc's default reconnect back-off grows to 120 s; an overlay
		// daemon must notice a returning etcd within seconds.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 2 * time.Second,
		})},
		// We log etcd trouble ourselves, once per outage, in our format.
		Logger: zap.NewNop(),
	})
	if err != nil {
		// The client's errors can quote its config; keep the password out.
		msg := err.Error()
		if c.Password != "" {
			msg = strings.ReplaceAll(msg, c.Password, "<redacted>")
		}
		return nil, fmt.Errorf("create etcd client (%s): %w", strings.Join(c.Endpoints, ","), redacted{msg, err})
	}
	return cli, nil
}

// redacted is an error whose text had the password removed; it still
// unwraps to the original, so callers can tell a timeout from a refusal.
type redacted struct {
	msg string
	err error
}

func (r redacted) Error() string { return r.msg }
func (r redacted) Unwrap() error { return r.err }

// dialRetry is how long Dial waits between attempts.
const dialRetry = 2 * time.Second

// Dial is NewClient for the daemon: while etcd cannot be reached (only
// possible here with a password, see NewClient) it logs that once, with
// Diagnose's reason, and tries again until ctx ends. Other errors (a
// refused password, bad TLS files) return at once.
func Dial(ctx context.Context, c ClientConfig, log *slog.Logger) (*clientv3.Client, error) {
	logged := false
	for {
		cli, err := NewClient(c)
		if err == nil {
			if logged {
				log.Info("etcd is reachable again")
			}
			return cli, nil
		}
		if !isUnavailable(err) || ctx.Err() != nil {
			return nil, err
		}
		if !logged {
			attrs := []any{"endpoints", strings.Join(c.Endpoints, ","), "err", err}
			if reason := c.Diagnose(ctx); reason != "" {
				attrs = append(attrs, "reason", reason)
			}
			log.Error("etcd is unreachable; retrying until it answers", attrs...)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(dialRetry):
		}
	}
}
