package etcdv2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v2 "github.com/flannelng/flannel/pkg/etcdv2"
	"github.com/flannelng/flannel/subnet"
)

// reply is one answer of the fake server.
type reply struct {
	status int
	index  uint64
	body   string
}

func ok(index uint64, body string) reply { return reply{200, index, body} }

func etcdErr(code int, index uint64) reply {
	status := map[int]int{100: 404, 101: 412, 105: 412, 401: 400}[code]
	return reply{status, index, fmt.Sprintf(`{"errorCode":%d,"message":"fake","index":%d}`, code, index)}
}

// fakeV2 is a scripted v2 server: requests other than long polls are
// answered by answer; each long poll reports its waitIndex on asked and
// waits for the test to push its answer on polls (or for the client to
// give up).
type fakeV2 struct {
	srv    *httptest.Server
	answer func(method, path string, q url.Values, form url.Values) reply
	polls  chan reply
	asked  chan string

	mu   sync.Mutex
	reqs []string
}

func newFake(t *testing.T, answer func(method, path string, q, form url.Values) reply) (*fakeV2, *v2.Client) {
	f := &fakeV2{answer: answer, polls: make(chan reply), asked: make(chan string, 100)}
	f.srv = httptest.NewServer(f)
	t.Cleanup(f.srv.Close)
	c, err := v2.New(v2.Config{Endpoints: []string{f.srv.URL}})
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

func (f *fakeV2) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	form, _ := url.ParseQuery(string(body))
	path := strings.TrimPrefix(r.URL.Path, "/v2/keys")
	q := r.URL.Query()
	line := r.Method + " " + path + "?" + r.URL.RawQuery
	if len(body) > 0 {
		line += " " + string(body)
	}
	f.mu.Lock()
	f.reqs = append(f.reqs, line)
	f.mu.Unlock()
	var rep reply
	if q.Get("wait") == "true" {
		// Every wait here ends with the request, so that a test that
		// goes wrong fails instead of hanging the server's Close.
		select {
		case f.asked <- path + " " + q.Get("waitIndex"):
		case <-r.Context().Done():
			return
		}
		select {
		case rep = <-f.polls:
			if r.Context().Err() != nil {
				// The client gave up as the reply came: the next poll
				// gets it.
				go func() { f.polls <- rep }()
				return
			}
		case <-r.Context().Done():
			return
		}
	} else {
		rep = f.answer(r.Method, path, q, form)
	}
	w.Header().Set("X-Etcd-Index", fmt.Sprint(rep.index))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rep.status)
	io.WriteString(w, rep.body)
}

func (f *fakeV2) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reqs...)
}

// next waits for the next long poll and returns "<key> <waitIndex>".
func (f *fakeV2) next(t *testing.T) string {
	t.Helper()
	select {
	case a := <-f.asked:
		return a
	case <-time.After(10 * time.Second):
		t.Fatal("no long poll came")
		return ""
	}
}

func nodeJSON(key, value string, mod uint64, ttl bool) string {
	exp := ""
	if ttl {
		exp = `,"expiration":"2030-01-01T00:00:00Z","ttl":86400`
	}
	return fmt.Sprintf(`{"key":%q,"value":%q%s,"modifiedIndex":%d,"createdIndex":%d}`, key, value, exp, mod, mod)
}

func event(action, key, value string, mod uint64) string {
	return fmt.Sprintf(`{"action":%q,"node":%s}`, action, nodeJSON(key, value, mod, value != ""))
}

const (
	valA = `{"PublicIP":"10.210.0.1","BackendType":"vxlan","BackendData":{"VtepMAC":"66:52:c2:e4:ae:d7"}}`
	valB = `{"PublicIP":"10.210.0.2","BackendType":"vxlan","BackendData":{"VtepMAC":"66:52:c2:e4:ae:d8"}}`
	keyA = dir + "/10.244.1.0-24"
	keyB = dir + "/10.244.2.0-24"
)

func subnets(leases []subnet.Lease) string {
	var s []string
	for _, l := range leases {
		s = append(s, l.Subnet.String())
	}
	slices.Sort(s)
	return strings.Join(s, ",")
}

// TestGetConfigErrors: the v2 API missing, the key missing, IPv6.
func TestGetConfigErrors(t *testing.T) {
	cfg := `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`
	var next reply
	_, c := newFake(t, func(method, path string, q, form url.Values) reply { return next })
	m, _ := testManager(c, Options{})
	ctx := context.Background()

	next = reply{404, 0, "404 page not found\n"}
	if _, _, err := m.GetConfig(ctx); !errors.Is(err, v2.ErrNoV2API) {
		t.Errorf("no v2 API: %v", err)
	}
	if !m.Reachable() {
		t.Error("a server without the v2 API answered: it is not an outage")
	}
	next = etcdErr(100, 7)
	_, _, err := m.GetConfig(ctx)
	if !errors.Is(err, ErrNoConfig) || !strings.Contains(err.Error(), "/coreos.com/network/config") || !strings.Contains(err.Error(), "v2 store") {
		t.Errorf("no config: %v", err)
	}
	next = ok(8, `{"action":"get","node":`+nodeJSON("/coreos.com/network/config", `{"Network":"10.244.0.0/16","IPv6Network":"fd00::/56","EnableIPv6":true}`, 8, false)+`}`)
	if _, raw, err := m.GetConfig(ctx); !errors.Is(err, ErrIPv6) || !subnet.IsPermanent(err) || len(raw) == 0 {
		t.Errorf("IPv6 config: %v (permanent: %v)", err, subnet.IsPermanent(err))
	}
	next = ok(8, `{"action":"get","node":`+nodeJSON("/coreos.com/network/config", `{"Network":"10.244.0.0/16","EnableIPv4":false,"IPv6Network":"fd00::/56","EnableIPv6":true}`, 8, false)+`}`)
	if _, _, err := m.GetConfig(ctx); !errors.Is(err, ErrIPv6) {
		t.Errorf("IPv6-only config: %v", err)
	}
	next = ok(9, `{"action":"get","node":`+nodeJSON("/coreos.com/network/config", cfg, 9, false)+`}`)
	if c, raw, err := m.GetConfig(ctx); err != nil || string(raw) != cfg || c.BackendType != "vxlan" || c.SubnetLen != 24 {
		t.Errorf("config: %+v %s %v", c, raw, err)
	}
	if got := m.Name(); !strings.HasPrefix(got, "etcd v2 http://127.0.0.1:") || !strings.HasSuffix(got, " prefix /coreos.com/network") {
		t.Errorf("Name: %q", got)
	}
}

// TestWatcherEvents drives the watcher through each kind of event and
// checks the set after each, and the index of the poll that follows.
func TestWatcherEvents(t *testing.T) {
	lists := make(chan reply, 4)
	f, c := newFake(t, func(method, path string, q, form url.Values) reply {
		if method == "GET" && path == dir && q.Get("recursive") == "true" {
			select {
			case rep := <-lists:
				return rep
			case <-time.After(10 * time.Second):
				t.Error("an unexpected listing")
				return reply{500, 0, "unexpected listing"}
			}
		}
		return reply{500, 0, "unexpected"}
	})
	m, logs := testManager(c, Options{PollTimeout: time.Hour})
	lists <- ok(10, `{"action":"get","node":{"key":"`+dir+`","dir":true,"nodes":[`+nodeJSON(keyA, valA, 5, true)+`,`+nodeJSON(dir+"/junk", "x", 6, false)+`]}}`)
	w := m.NewWatcher()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	defer func() { cancel(); <-done }()

	step := func(name string, ev reply, wantPoll, wantSet string) {
		t.Helper()
		f.polls <- ev
		if got := f.next(t); got != wantPoll {
			t.Fatalf("%s: next poll %q, want %q", name, got, wantPoll)
		}
		if l, synced := w.Leases(); !synced || subnets(l) != wantSet {
			t.Fatalf("%s: set %q (synced %v), want %q", name, subnets(l), synced, wantSet)
		}
	}
	if got := f.next(t); got != dir+" 11" {
		t.Fatalf("first poll %q, want after the list's X-Etcd-Index 10", got)
	}
	step("create", ok(12, event("create", keyB, valB, 12)), dir+" 13", "10.244.1.0/24,10.244.2.0/24")
	// v0.11 wedges on these three; we skip them and go on past them.
	step("garbage key", ok(14, event("set", dir+"/garbage", valB, 14)), dir+" 15", "10.244.1.0/24,10.244.2.0/24")
	step("non-JSON value", ok(15, event("set", keyB, "not json", 15)), dir+" 16", "10.244.1.0/24")
	step("compareAndDelete", ok(16, event("compareAndDelete", keyA, "", 16)), dir+" 17", "")
	step("renewal", ok(20, event("set", keyA, valA, 20)), dir+" 21", "10.244.1.0/24")
	step("expire", ok(21, event("expire", keyA, "", 21)), dir+" 22", "")
	// 401: list again, continue from that listing.
	lists <- ok(1200, `{"action":"get","node":{"key":"`+dir+`","dir":true,"nodes":[`+nodeJSON(keyB, valB, 1100, true)+`]}}`)
	step("index cleared", etcdErr(401, 1199), dir+" 1201", "10.244.2.0/24")
	if !strings.Contains(logs.String(), "Watch of subnet leases failed because etcd index outside history window") {
		t.Errorf("401 not logged:\n%s", logs)
	}
	if _, _, all := w.Changes(); !all {
		t.Error("after a relist consumers must take the whole set")
	}
	// The prefix removed as a whole: no event per lease, so list again.
	lists <- etcdErr(100, 1202)
	step("rm -r prefix", ok(1201, `{"action":"delete","node":{"key":"/coreos.com/network","dir":true,"modifiedIndex":1201,"createdIndex":3}}`), dir+" 1203", "")
	if n := strings.Count(logs.String(), "Ignoring bad subnet node"); n != 3 {
		t.Errorf("bad nodes logged %d times, want 3 (junk, garbage, non-JSON):\n%s", n, logs)
	}
}

// TestWatcherPollBound: a poll with no event ends after PollTimeout and
// the next asks for the same index; an error is retried from it too, and
// an outage is logged once.
func TestWatcherPollBound(t *testing.T) {
	f, c := newFake(t, func(method, path string, q, form url.Values) reply {
		return ok(30, `{"action":"get","node":{"key":"`+dir+`","dir":true}}`)
	})
	m, logs := testManager(c, Options{PollTimeout: 50 * time.Millisecond})
	w := m.NewWatcher()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for i := range 3 {
		if got := f.next(t); got != dir+" 31" {
			t.Fatalf("poll %d: %q, want the same index after each timeout", i, got)
		}
	}
	for range 3 {
		f.polls <- reply{503, 0, "unavailable"}
		if got := f.next(t); got != dir+" 31" {
			t.Fatalf("after an error: %q", got)
		}
	}
	if n := strings.Count(logs.String(), "etcd v2 is unreachable"); n != 1 {
		t.Errorf("outage logged %d times, want once:\n%s", n, logs)
	}
	f.polls <- ok(32, event("create", keyA, valA, 32))
	f.next(t)
	if !strings.Contains(logs.String(), "etcd v2 is reachable again") {
		t.Errorf("end of the outage not logged:\n%s", logs)
	}
}

// TestKeepReadsAfterIndexCleared: a 401 on our key's watch reads the key;
// gone, it is re-created with prevExist=false and the same value.
func TestKeepReadsAfterIndexCleared(t *testing.T) {
	var mu sync.Mutex
	created := false
	f, c := newFake(t, func(method, path string, q, form url.Values) reply {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case method == "GET" && path == keyA && !created:
			return etcdErr(100, 500)
		case method == "PUT" && path == keyA && q.Get("prevExist") == "false":
			created = true
			return reply{201, 501, `{"action":"create","node":` + nodeJSON(keyA, form.Get("value"), 501, true) + `}`}
		}
		return reply{500, 0, "unexpected"}
	})
	m, logs := testManager(c, Options{PollTimeout: time.Hour})
	own := subnet.Lease{Subnet: netip.MustParsePrefix("10.244.1.0/24"), Attrs: attrsOf(valA), Expiration: time.Now().Add(24 * time.Hour)}
	m.hold(held{lease: own, key: keyA, value: valA, index: 40})
	errc := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { errc <- m.Keep(ctx, nil, own) }()
	if got := f.next(t); got != keyA+" 41" {
		t.Fatalf("own watch %q, want after our write's index", got)
	}
	f.polls <- etcdErr(401, 499)
	if got := f.next(t); got != keyA+" 501" {
		t.Fatalf("after the re-read: poll %q, want after the read's index 500", got)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("Keep: %v", err)
	}
	reqs := strings.Join(f.requests(), "\n")
	want := "PUT " + keyA + "?prevExist=false ttl=86400&value=" + url.QueryEscape(valA)
	if !strings.Contains(reqs, "GET "+keyA+"?quorum=true&recursive=false&sorted=false") || !strings.Contains(reqs, want) {
		t.Errorf("requests:\n%s\nwant the read and %s", reqs, want)
	}
	if !strings.Contains(logs.String(), "Lease re-created") {
		t.Errorf("log:\n%s", logs)
	}
}

// TestKeepReservation: Keep of a reservation polls our key and never
// writes it.
func TestKeepReservation(t *testing.T) {
	f, c := newFake(t, func(method, path string, q, form url.Values) reply { return reply{500, 0, "unexpected"} })
	// With TTL 1 s and a margin of an hour a lease would be renewed every
	// 333 ms; 60 polls of 20 ms span several of those.
	m, logs := testManager(c, Options{PollTimeout: 20 * time.Millisecond, TTL: time.Second, RenewMargin: time.Hour})
	own := subnet.Lease{Subnet: netip.MustParsePrefix("10.244.1.0/24"), Attrs: attrsOf(valA)}
	m.hold(held{lease: own, key: keyA, value: valA, index: 40})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- m.Keep(ctx, nil, own) }()
	for range 5 {
		f.next(t)
	}
	// A set without TTL by ourselves (v0.11 reusing it) keeps it one;
	// the poll after it asks for index 42.
	f.polls <- ok(41, `{"action":"set","node":`+nodeJSON(keyA, valA, 41, false)+`}`)
	for f.next(t) != keyA+" 42" {
	}
	for range 60 {
		if got := f.next(t); got != keyA+" 42" {
			t.Fatalf("poll %q", got)
		}
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	for _, r := range f.requests() {
		if !strings.Contains(r, "wait=true") {
			t.Errorf("Keep of a reservation sent %s", r)
		}
	}
	if strings.Contains(logs.String(), "revoked") || strings.Contains(logs.String(), "renew") && !strings.Contains(logs.String(), "not renewed") {
		t.Errorf("log:\n%s", logs)
	}
}

// TestRetractWire: the compare-and-swap with ttl=1 on our write's index;
// after it failed (101), a plain DELETE if the key is still ours, nothing
// if it is another node's. Never a conditional delete.
func TestRetractWire(t *testing.T) {
	var mu sync.Mutex
	cas := reply{200, 51, `{"action":"compareAndSwap","node":` + nodeJSON(keyA, valA, 51, true) + `}`}
	holder := valA
	fk, c := newFake(t, func(method, path string, q, form url.Values) reply {
		mu.Lock()
		defer mu.Unlock()
		switch method {
		case "PUT":
			return cas
		case "GET":
			return ok(60, `{"action":"get","node":`+nodeJSON(keyA, holder, 55, true)+`}`)
		case "DELETE":
			return ok(61, `{"action":"delete","node":`+nodeJSON(keyA, "", 61, false)+`}`)
		}
		return reply{500, 0, "unexpected"}
	})
	m, _ := testManager(c, Options{})
	own := subnet.Lease{Subnet: netip.MustParsePrefix("10.244.1.0/24"), Attrs: attrsOf(valA)}
	ctx := context.Background()
	retract := func() {
		t.Helper()
		m.hold(held{lease: own, key: keyA, value: valA, index: 50})
		if err := m.Retract(ctx, own); err != nil {
			t.Fatal(err)
		}
	}
	retract()
	mu.Lock()
	cas = etcdErr(101, 60)
	mu.Unlock()
	retract()
	mu.Lock()
	holder = valB
	mu.Unlock()
	retract()
	got := strings.Join(fk.requests(), "\n")
	put := "PUT " + keyA + "?prevIndex=50 ttl=1&value=" + url.QueryEscape(valA)
	get := "GET " + keyA + "?quorum=true&recursive=false&sorted=false"
	want := strings.Join([]string{put, put, get, "DELETE " + keyA + "?", put, get}, "\n")
	if got != want {
		t.Errorf("requests:\n%s\nwant\n%s", got, want)
	}
}

func attrsOf(value string) subnet.LeaseAttrs {
	a, err := subnet.DecodeAttrs([]byte(value))
	if err != nil {
		panic(err)
	}
	return a
}

// TestKeepCopySplitClaim: our v2 copy deleted and another node's create
// first: the re-create's 105 and the read that follows end KeepCopy with
// ErrSplitClaim.
func TestKeepCopySplitClaim(t *testing.T) {
	var mu sync.Mutex
	gets := 0
	f, c := newFake(t, func(method, path string, q, form url.Values) reply {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case method == "GET" && path == keyA:
			gets++
			if gets == 1 {
				return ok(70, `{"action":"get","node":`+nodeJSON(keyA, valA, 65, true)+`}`)
			}
			return ok(73, `{"action":"get","node":`+nodeJSON(keyA, valB, 72, true)+`}`)
		case method == "PUT" && q.Get("prevExist") == "false":
			return etcdErr(105, 72)
		}
		return reply{500, 0, "unexpected " + method}
	})
	m, logs := testManager(c, Options{Value: FormatCurrent, PollTimeout: time.Hour})
	own := subnet.Lease{Subnet: netip.MustParsePrefix("10.244.1.0/24"), Attrs: attrsOf(valA)}
	errc := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // before the server closes
	go func() { errc <- m.KeepCopy(ctx, nil, own) }()
	if got := f.next(t); got != keyA+" 71" {
		t.Fatalf("poll %q, want after the first check's index 70", got)
	}
	f.polls <- ok(71, event("delete", keyA, "", 71))
	select {
	case err := <-errc:
		if !errors.Is(err, ErrSplitClaim) {
			t.Fatalf("KeepCopy: %v, want ErrSplitClaim", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("KeepCopy did not end")
	}
	if !strings.Contains(logs.String(), "The v2 copy of our lease is gone") {
		t.Errorf("log:\n%s", logs)
	}
	// KeepCopy reads at start and does not renew a copy with 24 h left.
	for _, r := range f.requests() {
		if strings.Contains(r, "prevExist=true") {
			t.Errorf("renewed a fresh copy: %s", r)
		}
	}
}
