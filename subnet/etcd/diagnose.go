package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"
)

// diagnoseTimeout bounds each endpoint's probe.
const diagnoseTimeout = 2 * time.Second

// Diagnose finds the reason etcd cannot be reached that the client library
// hides behind "context deadline exceeded": it dials every endpoint and,
// for https, completes a TLS handshake with our certificates and waits
// briefly for the server to reject our client certificate (a TLS 1.3
// server does that after the handshake). It returns "" when no endpoint
// shows a problem (then etcd is down in a way a dial does not see, such as
// a lost quorum).
func (c ClientConfig) Diagnose(ctx context.Context) string {
	tc, err := c.TLSConfig()
	if err != nil {
		return err.Error()
	}
	whys := make([]string, len(c.Endpoints))
	var wg sync.WaitGroup
	for i, ep := range c.Endpoints {
		wg.Go(func() { whys[i] = c.probe(ctx, ep, tc) })
	}
	wg.Wait()
	var reasons []string
	for _, why := range whys {
		if why != "" {
			reasons = append(reasons, why)
		}
	}
	return strings.Join(reasons, "; ")
}

func (c ClientConfig) probe(ctx context.Context, ep string, tc *tls.Config) string {
	host, secure := ep, false
	if u, err := url.Parse(ep); err == nil && u.Host != "" {
		switch u.Scheme {
		case "unix", "unixs":
			return "" // a socket path: nothing a dial tells us
		}
		host, secure = u.Host, u.Scheme == "https"
	}
	ctx, cancel := context.WithTimeout(ctx, diagnoseTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return fmt.Sprintf("%s: %v", ep, err)
	}
	defer conn.Close()
	if !secure || tc == nil {
		return ""
	}
	cfg := tc.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(host)
	}
	tconn := tls.Client(conn, cfg)
	if deadline, ok := ctx.Deadline(); ok {
		_ = tconn.SetDeadline(deadline)
	}
	err = tconn.HandshakeContext(ctx)
	if err == nil {
		// Our certificate is judged after the handshake; the verdict is
		// the server's first record: an alert, or its HTTP/2 settings.
		_ = tconn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, err = tconn.Read(make([]byte, 1))
		var ne net.Error
		if err == nil || errors.As(err, &ne) && ne.Timeout() {
			return ""
		}
	}
	return fmt.Sprintf("TLS with %s: %v%s", ep, err, c.tlsHint(err))
}

// tlsHint says which file or flag a TLS failure points at.
func (c ClientConfig) tlsHint(err error) string {
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var alert tls.AlertError
	switch {
	case errors.As(err, &unknownCA) && c.CAFile != "":
		return fmt.Sprintf(" (etcd's certificate is not signed by the CA in --etcd-cafile %s)", c.CAFile)
	case errors.As(err, &unknownCA):
		return " (etcd's certificate is not signed by a CA of this system; give its CA with --etcd-cafile)"
	case errors.As(err, &hostname):
		return " (etcd's certificate does not name the address in --etcd-endpoints)"
	case errors.As(err, &alert) || strings.Contains(err.Error(), "remote error: tls:"):
		if c.CertFile == "" {
			return " (etcd wants a client certificate: give --etcd-certfile and --etcd-keyfile)"
		}
		return fmt.Sprintf(" (etcd refused the client certificate --etcd-certfile %s)", c.CertFile)
	}
	return ""
}
