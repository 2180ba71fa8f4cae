package etcdv2

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults of Config.
const (
	// DefaultDialTimeout is v0.11's: a dead endpoint costs a second
	// before the next one is tried.
	DefaultDialTimeout = time.Second
	// DefaultRequestTimeout bounds every request but a Watch.
	DefaultRequestTimeout = 10 * time.Second
)

// maxBody bounds what one answer may hold; a list of 64k leases is about
// 20 MiB.
const maxBody = 64 << 20

// Config says how to reach etcd.
type Config struct {
	// Endpoints are client URLs (http://host:2379, https://...), tried in
	// order; the one that answered last is tried first next time. There
	// is no member discovery, as in v0.11.
	Endpoints []string
	// TLS is used for https endpoints: RootCAs, and Certificates for a
	// server with --client-cert-auth. nil: the system roots, no client
	// certificate.
	TLS *tls.Config
	// Username and Password go as HTTP basic auth to etcd's v2 auth,
	// whose users are not v3's.
	Username, Password string
	// DialContext opens connections; nil: a net.Dialer. The lab passes
	// one that dials inside its fabric namespace.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// DialTimeout bounds opening one connection (default
	// DefaultDialTimeout).
	DialTimeout time.Duration
	// RequestTimeout bounds each request but Watch, whose long poll ends
	// with its context (default DefaultRequestTimeout).
	RequestTimeout time.Duration
}

// Client talks to etcd's v2 keys API. It is safe for concurrent use.
type Client struct {
	endpoints []*url.URL
	hc        *http.Client
	user      string
	pass      string
	timeout   time.Duration

	mu     sync.Mutex
	pinned int // index of the endpoint that answered last
}

// New returns a client for cfg. It opens no connection.
func New(cfg Config) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("etcd v2 client: no endpoints")
	}
	c := &Client{user: cfg.Username, pass: cfg.Password, timeout: cfg.RequestTimeout}
	if c.timeout <= 0 {
		c.timeout = DefaultRequestTimeout
	}
	for _, ep := range cfg.Endpoints {
		u, err := url.Parse(strings.TrimSpace(ep))
		if err != nil {
			return nil, fmt.Errorf("etcd v2 client: endpoint %q: %w", ep, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("etcd v2 client: endpoint %q: want http://host:port or https://host:port", ep)
		}
		u.Path = strings.TrimSuffix(u.Path, "/")
		u.RawQuery, u.Fragment = "", ""
		c.endpoints = append(c.endpoints, u)
	}
	dialTimeout := cfg.DialTimeout
	if dialTimeout <= 0 {
		dialTimeout = DefaultDialTimeout
	}
	dial := cfg.DialContext
	if dial == nil {
		dial = (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, dialTimeout)
			defer cancel()
			return dial(ctx, network, addr)
		},
		TLSClientConfig:     cfg.TLS,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     90 * time.Second,
	}
	if cfg.TLS != nil {
		tr.TLSClientConfig = cfg.TLS.Clone()
	}
	c.hc = &http.Client{Transport: tr}
	return c, nil
}

// Close closes idle connections. Requests in flight go on.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Endpoints returns the endpoints the client was made with.
func (c *Client) Endpoints() []string {
	out := make([]string, len(c.endpoints))
	for i, u := range c.endpoints {
		out[i] = u.String()
	}
	return out
}

// failover says when a request goes on to the next endpoint.
type failover int

const (
	// onAnyFailure: a transport error or a 5xx answer. For requests
	// that may safely be applied twice.
	onAnyFailure failover = iota
	// onDialFailure: only when no connection could be opened, so the
	// request was certainly not sent. For creates and compares, which a
	// replay would turn into a false failure.
	onDialFailure
)

// request is one call of the keys API.
type request struct {
	method   string
	key      string
	query    url.Values
	form     url.Values // PUT body; nil for none
	failover failover
	wait     bool // a long poll: no RequestTimeout
}

// do sends r to each endpoint in turn, from the pinned one, until one
// answers or r's failover rule stops it.
func (c *Client) do(ctx context.Context, r request) (*Response, error) {
	if !r.wait {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	c.mu.Lock()
	first := c.pinned
	c.mu.Unlock()
	var errs []error
	for i := range c.endpoints {
		n := (first + i) % len(c.endpoints)
		resp, err, next := c.doOne(ctx, c.endpoints[n], r)
		if err == nil {
			c.mu.Lock()
			c.pinned = n
			c.mu.Unlock()
			return resp, nil
		}
		if !next || ctx.Err() != nil {
			return nil, err
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("etcd v2 %s %s: every endpoint failed: %w", r.method, r.key, errors.Join(errs...))
}

// doOne sends r to ep. next says whether r may go on to another endpoint.
func (c *Client) doOne(ctx context.Context, ep *url.URL, r request) (resp *Response, err error, next bool) {
	u := *ep
	u.Path = ep.Path + "/v2/keys" + keyPath(r.key)
	u.RawPath = ""
	u.RawQuery = r.query.Encode()
	var body io.Reader
	if r.form != nil {
		body = strings.NewReader(r.form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("etcd v2 %s %s: %w", r.method, r.key, err), false
	}
	if r.form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if c.user != "" || c.pass != "" {
		req.SetBasicAuth(c.user, c.pass)
	}
	hr, err := c.hc.Do(req)
	if err != nil {
		err = fmt.Errorf("etcd v2 %s %s at %s: %w", r.method, r.key, ep.Host, err)
		return nil, err, r.failover == onAnyFailure || isDialError(err)
	}
	defer hr.Body.Close()
	data, err := io.ReadAll(io.LimitReader(hr.Body, maxBody))
	if err != nil {
		err = fmt.Errorf("etcd v2 %s %s at %s: read answer: %w", r.method, r.key, ep.Host, err)
		return nil, err, r.failover == onAnyFailure
	}
	index, _ := strconv.ParseUint(hr.Header.Get("X-Etcd-Index"), 10, 64)
	if hr.StatusCode/100 == 2 {
		if r.wait && len(bytes.TrimSpace(data)) == 0 {
			// etcd sends a watch's headers at once and closes the body
			// without an event when it drops the watcher (shutdown).
			return nil, fmt.Errorf("etcd v2 watch %s at %s: %w", r.key, ep.Host, ErrWatchClosed), false
		}
		resp = &Response{}
		if err := json.Unmarshal(data, resp); err != nil || resp.Node == nil {
			return nil, fmt.Errorf("etcd v2 %s %s at %s: HTTP %d with an answer that is not v2 JSON: %q: %w",
				r.method, r.key, ep.Host, hr.StatusCode, snippet(data), ErrNoV2API), false
		}
		resp.Index = index
		return resp, nil, false
	}
	var e Error
	if json.Unmarshal(data, &e) == nil && e.Code != 0 {
		e.HTTPStatus = hr.StatusCode
		return nil, &e, false
	}
	if hr.StatusCode/100 == 5 {
		err = fmt.Errorf("etcd v2 %s %s at %s: HTTP %d: %q", r.method, r.key, ep.Host, hr.StatusCode, snippet(data))
		return nil, err, r.failover == onAnyFailure
	}
	if hr.StatusCode == http.StatusNotFound {
		return nil, fmt.Errorf("etcd v2 %s %s at %s: HTTP 404 %q: %w", r.method, r.key, ep.Host, snippet(data), ErrNoV2API), false
	}
	return nil, fmt.Errorf("etcd v2 %s %s at %s: HTTP %d: %q", r.method, r.key, ep.Host, hr.StatusCode, snippet(data)), false
}

// ErrWatchClosed means etcd ended a long poll without an event (it was
// shutting down). Watch again from the same index.
var ErrWatchClosed = errors.New("the server closed the watch without an event")

// isDialError reports whether err happened while opening the connection,
// before any byte of the request was sent.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// keyPath is key as a path below /v2/keys: one leading slash, none
// trailing, no empty or dot segments (etcd would redirect those).
func keyPath(key string) string {
	var parts []string
	for _, p := range strings.Split(key, "/") {
		if p != "" && p != "." {
			parts = append(parts, p)
		}
	}
	return "/" + strings.Join(parts, "/")
}

func snippet(b []byte) string {
	const n = 200
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}
