package etcdv2

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// seen is one request as the fake server saw it.
type seen struct {
	method, path, query, body, contentType string
	user, pass                             string
	hasAuth                                bool
}

// fakeEtcd answers every request with status, header X-Etcd-Index: index
// and body, and records what it saw.
type fakeEtcd struct {
	mu     sync.Mutex
	got    []seen
	status int
	index  string
	body   string
}

func (f *fakeEtcd) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	u, p, ok := r.BasicAuth()
	f.mu.Lock()
	f.got = append(f.got, seen{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, string(b), r.Header.Get("Content-Type"), u, p, ok})
	status, index, body := f.status, f.index, f.body
	f.mu.Unlock()
	if index != "" {
		w.Header().Set("X-Etcd-Index", index)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, body)
}

func (f *fakeEtcd) requests() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.got...)
}

const leaseValue = `{"PublicIP":"10.210.0.1","BackendType":"vxlan","BackendData":{"VtepMAC":"66:52:c2:e4:ae:d7"}}`

// TestRequests checks each call's wire form against what v0.11's client
// sends (spec 2.2): method, path, query and form in url.Values order.
func TestRequests(t *testing.T) {
	const lease = "/coreos.com/network/subnets/10.244.82.0-24"
	nodeJSON := `{"action":"x","node":{"key":"/k","value":"v","modifiedIndex":5,"createdIndex":5}}`
	tests := []struct {
		name     string
		call     func(context.Context, *Client) (*Response, error)
		method   string
		path     string
		query    string
		body     string
		wantForm bool
	}{
		{
			name: "get config",
			call: func(ctx context.Context, c *Client) (*Response, error) {
				return c.Get(ctx, "/coreos.com/network/config", false)
			},
			method: "GET", path: "/v2/keys/coreos.com/network/config",
			query: "quorum=true&recursive=false&sorted=false",
		},
		{
			name: "list leases",
			call: func(ctx context.Context, c *Client) (*Response, error) {
				return c.Get(ctx, "/coreos.com/network/subnets", true)
			},
			method: "GET", path: "/v2/keys/coreos.com/network/subnets",
			query: "quorum=true&recursive=true&sorted=false",
		},
		{
			name: "create",
			call: func(ctx context.Context, c *Client) (*Response, error) {
				return c.Create(ctx, lease, leaseValue, 24*time.Hour)
			},
			method: "PUT", path: "/v2/keys" + lease, query: "prevExist=false",
			body: "ttl=86400&value=" + formEscape(leaseValue), wantForm: true,
		},
		{
			name: "renew: unconditional set",
			call: func(ctx context.Context, c *Client) (*Response, error) {
				return c.Set(ctx, lease, leaseValue, SetOptions{TTL: 24 * time.Hour})
			},
			method: "PUT", path: "/v2/keys" + lease, query: "",
			body: "ttl=86400&value=" + formEscape(leaseValue), wantForm: true,
		},
		{
			name: "reservation: no ttl",
			call: func(ctx context.Context, c *Client) (*Response, error) {
				return c.Set(ctx, lease, `{"PublicIP":"10.210.0.1"}`, SetOptions{})
			},
			method: "PUT", path: "/v2/keys" + lease, query: "",
			body: "value=" + formEscape(`{"PublicIP":"10.210.0.1"}`), wantForm: true,
		},
		{
			name: "update",
			call: func(ctx context.Context, c *Client) (*Response, error) {
				return c.Update(ctx, lease, "v", 86400*time.Second)
			},
			method: "PUT", path: "/v2/keys" + lease, query: "prevExist=true",
			body: "ttl=86400&value=v", wantForm: true,
		},
		{
			name: "compare and swap",
			call: func(ctx context.Context, c *Client) (*Response, error) {
				return c.Set(ctx, lease, "v", SetOptions{TTL: time.Second, PrevIndex: 7, PrevValue: "old"})
			},
			method: "PUT", path: "/v2/keys" + lease, query: "prevIndex=7&prevValue=old",
			body: "ttl=1&value=v", wantForm: true,
		},
		{
			name: "refresh",
			call: func(ctx context.Context, c *Client) (*Response, error) {
				return c.Set(ctx, lease, "", SetOptions{TTL: 30 * time.Second, Refresh: true, PrevExist: PrevExists})
			},
			method: "PUT", path: "/v2/keys" + lease, query: "prevExist=true",
			body: "refresh=true&ttl=30", wantForm: true,
		},
		{
			name:   "delete",
			call:   func(ctx context.Context, c *Client) (*Response, error) { return c.Delete(ctx, lease, DeleteOptions{}) },
			method: "DELETE", path: "/v2/keys" + lease, query: "",
		},
		{
			name: "compare and delete",
			call: func(ctx context.Context, c *Client) (*Response, error) {
				return c.Delete(ctx, lease, DeleteOptions{PrevIndex: 9, PrevValue: "v"})
			},
			method: "DELETE", path: "/v2/keys" + lease, query: "prevIndex=9&prevValue=v",
		},
		{
			name: "delete recursive",
			call: func(ctx context.Context, c *Client) (*Response, error) {
				return c.Delete(ctx, "/coreos.com/network", DeleteOptions{Recursive: true})
			},
			method: "DELETE", path: "/v2/keys/coreos.com/network", query: "recursive=true",
		},
		{
			name: "watch all",
			call: func(ctx context.Context, c *Client) (*Response, error) {
				return c.Watch(ctx, "/coreos.com/network/subnets", true, 7)
			},
			method: "GET", path: "/v2/keys/coreos.com/network/subnets", query: "recursive=true&wait=true&waitIndex=8",
		},
		{
			name:   "watch own from now",
			call:   func(ctx context.Context, c *Client) (*Response, error) { return c.Watch(ctx, lease, false, 0) },
			method: "GET", path: "/v2/keys" + lease, query: "recursive=false&wait=true",
		},
		{
			name: "key without leading slash, with a trailing one",
			call: func(ctx context.Context, c *Client) (*Response, error) {
				return c.Get(ctx, "coreos.com//network/", false)
			},
			method: "GET", path: "/v2/keys/coreos.com/network",
			query: "quorum=true&recursive=false&sorted=false",
		},
		{
			name:   "key with a space is escaped",
			call:   func(ctx context.Context, c *Client) (*Response, error) { return c.Get(ctx, "/a b", false) },
			method: "GET", path: "/v2/keys/a%20b",
			query: "quorum=true&recursive=false&sorted=false",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeEtcd{status: 200, index: "42", body: nodeJSON}
			srv := httptest.NewServer(f)
			defer srv.Close()
			c, err := New(Config{Endpoints: []string{srv.URL}})
			if err != nil {
				t.Fatal(err)
			}
			resp, err := tc.call(context.Background(), c)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Index != 42 || resp.Node.Key != "/k" || resp.Node.ModifiedIndex != 5 {
				t.Errorf("response = %+v, node %+v; want index 42, key /k, modifiedIndex 5", resp, resp.Node)
			}
			got := f.requests()
			if len(got) != 1 {
				t.Fatalf("%d requests, want 1", len(got))
			}
			r := got[0]
			if r.method != tc.method || r.path != tc.path || r.query != tc.query || r.body != tc.body {
				t.Errorf("request %s %s ? %q body %q\nwant    %s %s ? %q body %q",
					r.method, r.path, r.query, r.body, tc.method, tc.path, tc.query, tc.body)
			}
			if tc.wantForm && r.contentType != "application/x-www-form-urlencoded" {
				t.Errorf("Content-Type %q, want a form", r.contentType)
			}
			if r.hasAuth {
				t.Errorf("basic auth sent without a username")
			}
		})
	}
}

func formEscape(s string) string {
	r := strings.NewReplacer(`{`, "%7B", `}`, "%7D", `"`, "%22", `:`, "%3A", `,`, "%2C")
	return r.Replace(s)
}

// TestResponseDecode checks a v2 answer with a TTL, a directory listing and
// a prevNode, as etcd 3.5 writes them.
func TestResponseDecode(t *testing.T) {
	body := `{"action":"get","node":{"key":"/coreos.com/network/subnets","dir":true,"nodes":[` +
		`{"key":"/coreos.com/network/subnets/10.244.82.0-24","value":"{\"PublicIP\":\"10.210.0.1\"}",` +
		`"expiration":"2026-12-07T10:21:51.785823296Z","ttl":86393,"modifiedIndex":5,"createdIndex":5},` +
		`{"key":"/coreos.com/network/subnets/10.244.83.0-24","value":"r","modifiedIndex":6,"createdIndex":6}],` +
		`"modifiedIndex":5,"createdIndex":5},"prevNode":{"key":"/p","value":"old","modifiedIndex":3,"createdIndex":2}}`
	f := &fakeEtcd{status: 200, index: "7", body: body}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c, _ := New(Config{Endpoints: []string{srv.URL}})
	resp, err := c.Get(context.Background(), "/coreos.com/network/subnets", true)
	if err != nil {
		t.Fatal(err)
	}
	n := resp.Node
	if !n.Dir || len(n.Nodes) != 2 || resp.Index != 7 || resp.Action != ActionGet {
		t.Fatalf("got %+v", resp)
	}
	l := n.Nodes[0]
	want := time.Date(2026, 12, 7, 10, 21, 51, 785823296, time.UTC)
	if l.Expiration == nil || !l.Expiration.Equal(want) || l.TTL != 86393 || l.Value != `{"PublicIP":"10.210.0.1"}` {
		t.Errorf("lease node %+v", l)
	}
	if r := n.Nodes[1]; r.Expiration != nil || r.TTL != 0 {
		t.Errorf("reservation node has a TTL: %+v", r)
	}
	if resp.PrevNode == nil || resp.PrevNode.Value != "old" || resp.PrevNode.CreatedIndex != 2 {
		t.Errorf("prevNode %+v", resp.PrevNode)
	}
}

// TestErrors checks that etcd's error answers become typed errors, with the
// answers etcd 3.5 gives (spec 2.2 and 2.4).
func TestErrors(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		check  func(error) bool
		code   int
		index  uint64
		noV2   bool
	}{
		{name: "key not found", status: 404, body: `{"errorCode":100,"message":"Key not found","cause":"/coreos.com/network/subnets","index":7}`,
			check: IsKeyNotFound, code: 100, index: 7},
		{name: "compare failed", status: 412, body: `{"errorCode":101,"message":"Compare failed","cause":"[1 != 5]","index":9}`,
			check: IsCompareFailed, code: 101, index: 9},
		{name: "node exists", status: 412, body: `{"errorCode":105,"message":"Key already exists","cause":"/coreos.com/network/subnets/10.244.82.0-24","index":12}`,
			check: IsNodeExist, code: 105, index: 12},
		{name: "index cleared", status: 400, body: `{"errorCode":401,"message":"The event in requested index is outdated and cleared","cause":"the requested history has been cleared [115/5]","index":1114}`,
			check: IsIndexCleared, code: 401, index: 1114},
		{name: "v2 disabled", status: 404, body: "404 page not found\n", noV2: true},
		{name: "200 but not v2", status: 200, body: `{"health":"true"}`, noV2: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(&fakeEtcd{status: tc.status, body: tc.body, index: "3"})
			defer srv.Close()
			c, _ := New(Config{Endpoints: []string{srv.URL}})
			_, err := c.Get(context.Background(), "/coreos.com/network/subnets", true)
			if err == nil {
				t.Fatal("no error")
			}
			if tc.noV2 {
				if !errors.Is(err, ErrNoV2API) {
					t.Errorf("err = %v, want ErrNoV2API", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || !tc.check(err) || e.Code != tc.code || e.Index != tc.index || e.HTTPStatus != tc.status {
				t.Errorf("err = %#v", err)
			}
			preds := map[int]func(error) bool{100: IsKeyNotFound, 101: IsCompareFailed, 105: IsNodeExist, 401: IsIndexCleared}
			for code, pred := range preds {
				if pred(err) != (code == tc.code) {
					t.Errorf("predicate for code %d = %v on %v", code, pred(err), err)
				}
			}
		})
	}
}

// TestFailover: requests that may be replayed go on to the next endpoint
// after a 5xx or a refused connection; creates and compares go on only
// when the connection could not be opened.
func TestFailover(t *testing.T) {
	ok := &fakeEtcd{status: 201, index: "5", body: `{"action":"create","node":{"key":"/k","value":"v","modifiedIndex":5,"createdIndex":5}}`}
	good := httptest.NewServer(ok)
	defer good.Close()
	sick := &fakeEtcd{status: 500, body: "raft internal error"}
	bad := httptest.NewServer(sick)
	defer bad.Close()
	// An address with nothing listening: a listener opened and closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String()
	ln.Close()
	ctx := context.Background()

	c, _ := New(Config{Endpoints: []string{bad.URL, good.URL}})
	if _, err := c.Get(ctx, "/k", false); err != nil {
		t.Fatalf("get past a 500: %v", err)
	}
	// The good endpoint is pinned now: the next request goes there first.
	n := len(sick.requests())
	if _, err := c.Get(ctx, "/k", false); err != nil || len(sick.requests()) != n {
		t.Errorf("second get: err %v, sick endpoint asked %d more times", err, len(sick.requests())-n)
	}

	c, _ = New(Config{Endpoints: []string{bad.URL, good.URL}})
	before := len(ok.requests())
	if _, err := c.Create(ctx, "/k", "v", 0); err == nil || !strings.Contains(err.Error(), "HTTP 500") {
		t.Errorf("create after a 500: err %v, want the 500 and no failover", err)
	}
	if len(ok.requests()) != before {
		t.Errorf("create was replayed on the next endpoint")
	}

	c, _ = New(Config{Endpoints: []string{dead, good.URL}})
	if _, err := c.Create(ctx, "/k", "v", 0); err != nil {
		t.Errorf("create past a refused connection: %v", err)
	}

	c, _ = New(Config{Endpoints: []string{dead, bad.URL}})
	_, err = c.Get(ctx, "/k", false)
	if err == nil || !strings.Contains(err.Error(), "every endpoint failed") {
		t.Errorf("all endpoints down: err %v", err)
	}
}

// TestWatchEnds: a long poll ends with its context, and an empty body (etcd
// shutting down) is ErrWatchClosed.
func TestWatchEnds(t *testing.T) {
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Etcd-Index", "9")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer hang.Close()
	defer close(release)
	c, _ := New(Config{Endpoints: []string{hang.URL}, RequestTimeout: 50 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Watch(ctx, "/k", true, 3)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("watch: err %v, want the context's deadline", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("watch ended after %v: RequestTimeout must not bound a long poll", d)
	}

	empty := httptest.NewServer(&fakeEtcd{status: 200, index: "9"})
	defer empty.Close()
	c, _ = New(Config{Endpoints: []string{empty.URL}})
	if _, err := c.Watch(context.Background(), "/k", true, 3); !errors.Is(err, ErrWatchClosed) {
		t.Errorf("empty watch answer: err %v, want ErrWatchClosed", err)
	}
}

func TestBasicAuthAndTLS(t *testing.T) {
	f := &fakeEtcd{status: 200, index: "1", body: `{"action":"get","node":{"key":"/k","value":"v"}}`}
	srv := httptest.NewTLSServer(f)
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	c, err := New(Config{Endpoints: []string{srv.URL}, TLS: &tls.Config{RootCAs: pool}, Username: "flannel", Password: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(context.Background(), "/k", false); err != nil {
		t.Fatal(err)
	}
	r := f.requests()[0]
	if !r.hasAuth || r.user != "flannel" || r.pass != "s3cret" {
		t.Errorf("basic auth %v %q %q", r.hasAuth, r.user, r.pass)
	}
	// Without the CA the handshake fails.
	c, _ = New(Config{Endpoints: []string{srv.URL}})
	if _, err := c.Get(context.Background(), "/k", false); err == nil {
		t.Errorf("TLS without the server's CA succeeded")
	}
}

func TestConfigAndOptionErrors(t *testing.T) {
	for _, eps := range [][]string{nil, {"ftp://x:1"}, {"127.0.0.1:2379"}, {"http://"}} {
		if _, err := New(Config{Endpoints: eps}); err == nil {
			t.Errorf("New(%q) succeeded", eps)
		}
	}
	c, _ := New(Config{Endpoints: []string{"http://127.0.0.1:1"}})
	ctx := context.Background()
	if _, err := c.Set(ctx, "/k", "v", SetOptions{TTL: 1500 * time.Millisecond}); err == nil {
		t.Errorf("a TTL of 1.5 s was accepted")
	}
	if _, err := c.Set(ctx, "/k", "v", SetOptions{TTL: -time.Second}); err == nil {
		t.Errorf("a negative TTL was accepted")
	}
	if _, err := c.Set(ctx, "/k", "v", SetOptions{Refresh: true, TTL: time.Second}); err == nil {
		t.Errorf("a refresh with a value was accepted")
	}
	if got := c.Endpoints(); len(got) != 1 || got[0] != "http://127.0.0.1:1" {
		t.Errorf("Endpoints() = %q", got)
	}
}
