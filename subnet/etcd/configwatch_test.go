package etcd

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	cfgA = `{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`
	cfgB = `{"Network":"10.5.0.0/16","Backend":{"Type":"host-gw"}}`
	cfgC = `{"Network":"10.5.0.0/16","Backend":{"Type":"udp"}}`
	cfgD = `{"Network":"10.5.0.0/16","Backend":{"Type":"ipip"}}`
	cfgX = `{"Network":"10.5.0.0/16","SubnetLen":40}`
)

// delivered records WatchConfig's calls.
type delivered struct {
	mu   sync.Mutex
	got  []string
	errs []error
	ch   chan struct{}
}

func newDelivered() *delivered { return &delivered{ch: make(chan struct{}, 100)} }

func (d *delivered) changed(raw []byte, err error) {
	d.mu.Lock()
	d.got = append(d.got, string(raw))
	d.errs = append(d.errs, err)
	d.mu.Unlock()
	d.ch <- struct{}{}
}

func (d *delivered) list() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.got...)
}

// waitFor waits until the n-th delivery has arrived and is want.
func (d *delivered) waitFor(t *testing.T, n int, want string, log *logBuf) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		if got := d.list(); len(got) >= n {
			if got[n-1] != want {
				t.Fatalf("delivery %d is %s, want %s (all: %q)", n, got[n-1], want, got)
			}
			return
		}
		select {
		case <-d.ch:
		case <-deadline:
			t.Fatalf("delivery %d (%s) never came; got %q; log:\n%s", n, want, d.list(), log)
		}
	}
}

// countingOptions counts the etcd requests of a Manager by kind.
func countingOptions(o Options) (Options, func() map[string]int) {
	var mu sync.Mutex
	n := map[string]int{}
	o.OnRequest = func(kind string, _ time.Duration, _ error) {
		mu.Lock()
		n[kind]++
		mu.Unlock()
	}
	return o, func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]int{}
		for k, v := range n {
			out[k] = v
		}
		return out
	}
}

// Each change is delivered once; the same text written again, and a
// deleted key, are not; an invalid config comes with its error. While
// nothing changes, no request is made.
func TestWatchConfigDeliversEachChangeOnce(t *testing.T) {
	te := startEtcd(t)
	cli := te.client(t)
	putConfig(t, cli, "/coreos.com/network", cfgA)
	ctx := ctxT(t, 60*time.Second)
	o, requests := countingOptions(Options{})
	m, log := newManager(t, cli, o)
	d := newDelivered()
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.WatchConfig(wctx, []byte(cfgA), d.changed) }()

	put := func(v string) {
		t.Helper()
		if _, err := cli.Put(ctx, "/coreos.com/network/config", v); err != nil {
			t.Fatal(err)
		}
	}
	// The running config is no change.
	time.Sleep(300 * time.Millisecond)
	if got := d.list(); len(got) != 0 {
		t.Fatalf("the running config was delivered: %q", got)
	}
	put(cfgB)
	d.waitFor(t, 1, cfgB, log)
	put(cfgB) // same text: a watch event, not a change
	put(cfgX)
	d.waitFor(t, 2, cfgX, log)
	if _, err := cli.Delete(ctx, "/coreos.com/network/config"); err != nil {
		t.Fatal(err)
	}
	put(cfgX) // back after the delete, as it was
	put(cfgA)
	d.waitFor(t, 3, cfgA, log)
	time.Sleep(300 * time.Millisecond)
	if got := d.list(); len(got) != 3 {
		t.Errorf("deliveries %q, want exactly B, X, A", got)
	}
	d.mu.Lock()
	if d.errs[0] != nil || d.errs[2] != nil || d.errs[1] == nil || !strings.Contains(d.errs[1].Error(), "network config at /coreos.com/network/config") {
		t.Errorf("errors %v: want one for the invalid config only", d.errs)
	}
	d.mu.Unlock()
	if r := requests(); r["get"] != 1 || len(r) != 1 {
		t.Errorf("requests %v, want the one read that started the watch", r)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("WatchConfig returned %v at cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WatchConfig did not return at cancel")
	}
}

// A watch from a compacted revision reads the key again and delivers the
// latest config once: the changes made meanwhile are not lost.
func TestWatchConfigAfterCompaction(t *testing.T) {
	te := startEtcd(t)
	cli := te.client(t)
	putConfig(t, cli, "/coreos.com/network", cfgA)
	ctx := ctxT(t, 60*time.Second)
	r, err := cli.Get(ctx, "/coreos.com/network/config")
	if err != nil {
		t.Fatal(err)
	}
	from := r.Header.Revision
	putConfig(t, cli, "/coreos.com/network", cfgB)
	putConfig(t, cli, "/coreos.com/network", cfgC)
	r, _ = cli.Get(ctx, "/coreos.com/network/config")
	if _, err := cli.Compact(ctx, r.Header.Revision); err != nil {
		t.Fatal(err)
	}
	m, log := newManager(t, cli, Options{})
	d := newDelivered()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cw := &configWatch{m: m, last: cfgA, changed: d.changed}
	go cw.run(wctx, from)
	d.waitFor(t, 1, cfgC, log)
	if !strings.Contains(log.String(), "etcd watch fell behind compaction horizon, reading the key again") {
		t.Errorf("compaction not logged:\n%s", log)
	}
	// The watch goes on from the read.
	putConfig(t, cli, "/coreos.com/network", cfgD)
	d.waitFor(t, 2, cfgD, log)
	time.Sleep(200 * time.Millisecond)
	if got := d.list(); len(got) != 2 {
		t.Errorf("deliveries %q, want C then D", got)
	}
}

// etcd stops while nothing else talks to it: the config watch notices,
// the outage's start and end are logged once each (rpc's lines), and a
// change made right after the restart is delivered once.
func TestWatchConfigAcrossRestart(t *testing.T) {
	te := startEtcd(t)
	cli := te.client(t)
	putConfig(t, cli, "/coreos.com/network", cfgA)
	ctx := ctxT(t, 90*time.Second)
	m, log := newManager(t, cli, Options{RPCTimeout: time.Second})
	d := newDelivered()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cw := &configWatch{m: m, last: cfgA, changed: d.changed, grace: time.Second}
	go cw.run(wctx, 0)
	putConfig(t, cli, "/coreos.com/network", cfgB)
	d.waitFor(t, 1, cfgB, log)

	waitLog := func(what string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(log.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("%q never logged:\n%s", what, log)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	te.stop()
	waitLog("etcd is unreachable")
	time.Sleep(3 * time.Second) // several failed reads: still one line
	te.start()
	cli2 := te.client(t)
	if _, err := cli2.Put(ctx, "/coreos.com/network/config", cfgC); err != nil {
		t.Fatal(err)
	}
	d.waitFor(t, 2, cfgC, log)
	waitLog("etcd is reachable again")
	if _, err := cli2.Put(ctx, "/coreos.com/network/config", cfgD); err != nil {
		t.Fatal(err)
	}
	d.waitFor(t, 3, cfgD, log)
	time.Sleep(300 * time.Millisecond)
	if got := d.list(); len(got) != 3 {
		t.Errorf("deliveries %q, want B, C, D once each", got)
	}
	for _, line := range []string{"etcd is unreachable", "etcd is reachable again"} {
		if n := strings.Count(log.String(), line); n != 1 {
			t.Errorf("%q logged %d times, want once:\n%s", line, n, log)
		}
	}
}

// A connection back within the grace costs no request: the client resumes
// the watch where it was, and a change made meanwhile still arrives, once.
func TestWatchConfigRidesOutAShortDrop(t *testing.T) {
	te := startEtcd(t)
	cli := te.client(t)
	putConfig(t, cli, "/coreos.com/network", cfgA)
	ctx := ctxT(t, 60*time.Second)
	o, requests := countingOptions(Options{RPCTimeout: time.Second})
	m, log := newManager(t, cli, o)
	d := newDelivered()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cw := &configWatch{m: m, last: cfgA, changed: d.changed, grace: time.Minute}
	go cw.run(wctx, 0)
	putConfig(t, cli, "/coreos.com/network", cfgB)
	d.waitFor(t, 1, cfgB, log)

	te.stop()
	te.start()
	cli2 := te.client(t)
	if _, err := cli2.Put(ctx, "/coreos.com/network/config", cfgC); err != nil {
		t.Fatal(err)
	}
	d.waitFor(t, 2, cfgC, log)
	time.Sleep(300 * time.Millisecond)
	if got := d.list(); len(got) != 2 {
		t.Errorf("deliveries %q, want B, C", got)
	}
	if r := requests(); r["get"] != 1 || len(r) != 1 {
		t.Errorf("requests %v, want only the first read", r)
	}
	if strings.Contains(log.String(), "unreachable") {
		t.Errorf("a short drop was logged as an outage:\n%s", log)
	}
}
