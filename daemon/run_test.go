package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flannelng/flannel/backend"
	"github.com/flannelng/flannel/backend/alloc"
	"github.com/flannelng/flannel/ip"
	"github.com/flannelng/flannel/pkg/firewall"
	"github.com/flannelng/flannel/subnet"
)

// fakeSource is an in-memory lease source. It records the order of the
// daemon's calls and whether anything still ran when it was closed.
type fakeSource struct {
	cfg      string
	startErr error
	keepErr  chan error // Keep returns what arrives here
	// acquire, when set, replaces Acquire's lease.
	acquire func(ctx context.Context) (subnet.Lease, error)
	// keepReacquiring, when set, makes Keep behave as a Keep that lost
	// the lease: it closes the channel and re-acquires until ctx ends,
	// then returns the cancellation as its error.
	keepReacquiring chan struct{}

	mu        sync.Mutex
	calls     []string
	running   int // Keep and Peers().Run in progress
	closed    bool
	ranClosed bool // something was still running at close
	peers     *fakePeers
}

func (f *fakeSource) record(c string) {
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
}

func (f *fakeSource) enter() {
	f.mu.Lock()
	f.running++
	f.mu.Unlock()
}

func (f *fakeSource) leave() {
	f.mu.Lock()
	f.running--
	if f.closed {
		f.ranClosed = true
	}
	f.mu.Unlock()
}

func (f *fakeSource) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	if f.running > 0 {
		f.ranClosed = true
	}
	f.calls = append(f.calls, "close")
}

func (f *fakeSource) Name() string { return "fake" }
func (f *fakeSource) GetConfig(context.Context) (*subnet.Config, []byte, error) {
	f.record("GetConfig")
	c, err := subnet.ParseConfig([]byte(f.cfg))
	return c, []byte(f.cfg), err
}
func (f *fakeSource) PublicIPs() (netip.Addr, netip.Addr) { return netip.Addr{}, netip.Addr{} }
func (f *fakeSource) Start(context.Context, *subnet.Config) error {
	f.record("Start")
	return f.startErr
}
func (f *fakeSource) Previous(*subnet.Config, subnet.LeaseAttrs) *subnet.LeaseAttrs {
	f.record("Previous")
	return nil
}
func (f *fakeSource) Acquire(ctx context.Context, _ *subnet.Config, attrs subnet.LeaseAttrs, _ subnet.Env, _ func(error)) (subnet.Lease, error) {
	f.record("Acquire")
	if f.acquire != nil {
		return f.acquire(ctx)
	}
	return subnet.Lease{Subnet: netip.MustParsePrefix("10.5.3.0/24"), Attrs: attrs}, nil
}
func (f *fakeSource) Peers() subnet.PeerSource {
	f.record("Peers")
	return f.peers
}
func (f *fakeSource) Keep(ctx context.Context, _ *subnet.Config, _ subnet.Lease) error {
	f.record("Keep")
	f.enter()
	defer f.leave()
	if f.keepReacquiring != nil {
		close(f.keepReacquiring)
		<-ctx.Done()
		return fmt.Errorf("re-acquire lease 10.5.3.0/24: %w", ctx.Err())
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-f.keepErr:
		return err
	}
}
func (f *fakeSource) Ready(context.Context) error {
	f.record("Ready")
	return nil
}

type fakePeers struct {
	src     *fakeSource
	updated chan struct{}
	leases  []subnet.Lease
}

func (p *fakePeers) Run(ctx context.Context) {
	p.src.enter()
	defer p.src.leave()
	<-ctx.Done()
}
func (p *fakePeers) Updated() <-chan struct{} { return p.updated }
func (p *fakePeers) TakeAll() ([]subnet.Lease, bool) {
	return append([]subnet.Lease(nil), p.leases...), true
}
func (p *fakePeers) Changes() (gone, came []subnet.Lease, all bool) { return nil, nil, true }

// syncBuffer is a log sink safe for the daemon's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type harness struct {
	src    *fakeSource
	cfg    Config
	deps   Deps
	log    *syncBuffer
	states chan string
	status statusLog // STATUS= lines (status_test.go), kept out of states
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	src := &fakeSource{cfg: `{"Network":"10.5.0.0/16","Backend":{"Type":"alloc"}}`, keepErr: make(chan error, 1)}
	src.peers = &fakePeers{src: src, updated: make(chan struct{}, 1), leases: []subnet.Lease{
		{Subnet: netip.MustParsePrefix("10.5.3.0/24")}, // ours: dropped by subnet
		{Subnet: netip.MustParsePrefix("10.5.4.0/24"), Attrs: subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("192.0.2.4")}},
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	h := &harness{src: src, log: &syncBuffer{}, states: make(chan string, 8)}
	h.cfg = Config{
		SubnetFile: filepath.Join(t.TempDir(), "subnet.env"), ReconcilePeriod: time.Minute,
		IPTablesResync: 5 * time.Second, HealthzAddr: addr,
	}
	h.deps = Deps{
		Connect:  func(context.Context) (subnet.Manager, func(), error) { return src, src.close, nil },
		Backends: backend.Registry{"alloc": alloc.New},
		Log:      slog.New(slog.NewTextHandler(h.log, nil)),
		NewFirewall: func(context.Context, firewall.Mode, firewall.Options) (firewall.Manager, error) {
			return nil, errors.New("no packet filter in this test")
		},
		Notify: func(s string) (bool, error) {
			if h.status.add(s) {
				return true, nil
			}
			h.states <- s
			return true, nil
		},
		SelectInterface: func(ip.SelectOptions) (ip.Selection, error) {
			return ip.Selection{Iface: net.Interface{Index: 2, Name: "eth0", MTU: 1500}, V4: netip.MustParseAddr("192.0.2.3")}, nil
		},
	}
	return h
}

func (h *harness) start(ctx context.Context) chan error {
	done := make(chan error, 1)
	go func() { done <- Run(ctx, h.cfg, h.deps) }()
	return done
}

func (h *harness) waitState(t *testing.T, want string, done chan error) {
	t.Helper()
	select {
	case s := <-h.states:
		if s != want {
			t.Fatalf("notified %q, want %q", s, want)
		}
	case err := <-done:
		t.Fatalf("daemon exited before %s: %v\n%s", want, err, h.log)
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10 s\n%s", want, h.log)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The whole daemon, rootless: a fake lease source, the alloc backend, no
// packet filter. It writes subnet.env, turns ready, tells the source the
// node is ready only after that, and on shutdown stops every part before
// the source is closed.
func TestRunLifecycle(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := h.start(ctx)
	h.waitState(t, "READY=1", done)

	env, err := os.ReadFile(h.cfg.SubnetFile)
	if err != nil {
		t.Fatal(err)
	}
	if want := "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.3.1/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n"; string(env) != want {
		t.Errorf("subnet.env:\n%s\nwant:\n%s", env, want)
	}
	if code, body := get(t, "http://"+h.cfg.HealthzAddr+"/readyz"); code != 200 || !strings.Contains(body, "flanneld is ready") {
		t.Errorf("/readyz: %d %q", code, body)
	}
	if !strings.Contains(h.log.String(), `msg="Data plane programmed" peers=1`) {
		t.Errorf("our own lease was not dropped from the peers:\n%s", h.log)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("clean shutdown returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no shutdown within 10 s")
	}
	h.waitState(t, "STOPPING=1", nil)
	src := h.src
	src.mu.Lock()
	defer src.mu.Unlock()
	want := []string{"GetConfig", "Start", "Previous", "Acquire", "Peers", "Ready", "Keep", "close"}
	got := []string{}
	for _, c := range src.calls {
		if c != "GetConfig" || len(got) == 0 { // the config watcher may poll again
			got = append(got, c)
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("calls %v, want %v", got, want)
	}
	if src.ranClosed || src.running != 0 {
		t.Errorf("a part ran on after the source was closed (running %d)", src.running)
	}
}

// A part that fails stops every part, and Run returns its error.
func TestRunPartFailureStopsAll(t *testing.T) {
	h := newHarness(t)
	done := h.start(context.Background())
	h.waitState(t, "READY=1", done)
	h.src.keepErr <- errors.New("our subnet was taken over by another node")
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "lease 10.5.3.0/24: our subnet was taken over by another node") {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after a part failed")
	}
	h.src.mu.Lock()
	defer h.src.mu.Unlock()
	if h.src.ranClosed || h.src.running != 0 || !h.src.closed {
		t.Errorf("after a failure: running %d, ran after close %v, closed %v", h.src.running, h.src.ranClosed, h.src.closed)
	}
}

// A source that cannot start is a fatal error, and the source is closed.
func TestRunStartError(t *testing.T) {
	h := newHarness(t)
	h.src.startErr = errors.New(`subnet "10.244.0.0/16" specified in the flannel net config doesn't contain "10.250.1.0/24" PodCIDR of the "n1" node`)
	select {
	case err := <-h.start(context.Background()):
		if err == nil || !strings.Contains(err.Error(), "doesn't contain") {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
	if !h.src.closed {
		t.Error("source not closed")
	}
}

// probeBackend is a backend whose Network records the daemon's calls, and
// whose Configure can block until the daemon's context ends (as a backend
// waiting for the kernel would).
type probeBackend struct {
	blockConfigure bool
	configuring    chan struct{} // closed when Configure starts blocking

	mu     sync.Mutex
	calls  []string
	passed chan struct{} // one value per Reconcile
}

func newProbe() *probeBackend {
	return &probeBackend{configuring: make(chan struct{}), passed: make(chan struct{}, 64)}
}

func (b *probeBackend) factory(cfg backend.Config) (backend.Backend, error) { return b, nil }

func (b *probeBackend) Prepare(context.Context, *subnet.LeaseAttrs) (subnet.LeaseAttrs, error) {
	return subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("192.0.2.3"), BackendType: "probe"}, nil
}

func (b *probeBackend) Configure(ctx context.Context, _ subnet.Lease) (backend.Network, error) {
	if b.blockConfigure {
		close(b.configuring)
		<-ctx.Done()
		return nil, fmt.Errorf("wait for the device: %w", ctx.Err())
	}
	return &probeNetwork{b: b, changed: make(chan struct{})}, nil
}

func (b *probeBackend) record(c string) {
	b.mu.Lock()
	b.calls = append(b.calls, c)
	b.mu.Unlock()
}

func (b *probeBackend) takeCalls() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.calls
	b.calls = nil
	return c
}

type probeNetwork struct {
	b       *probeBackend
	changed chan struct{}
}

func (n *probeNetwork) MTU() int                 { return 1450 }
func (n *probeNetwork) Changed() <-chan struct{} { return n.changed }
func (n *probeNetwork) Close() error             { return nil }
func (n *probeNetwork) Resync()                  { n.b.record("Resync") }
func (n *probeNetwork) Reconcile(context.Context, []subnet.Lease) error {
	n.b.record("Reconcile")
	n.b.passed <- struct{}{}
	return nil
}

// Every tick of the --reconcile-period clock runs a full pass: the daemon
// tells the Network so (backend.Resyncer) before the pass. Left to the
// kernel reconciler's own clock, whose phase differs from the ticker's, a
// tick that came a moment before that clock thought a full pass due gave
// a cheap pass, and the kernel was re-read every second period only.
func TestRunPeriodicPassIsFull(t *testing.T) {
	h := newHarness(t)
	probe := newProbe()
	h.src.cfg = `{"Network":"10.5.0.0/16","Backend":{"Type":"probe"}}`
	h.deps.Backends = backend.Registry{"probe": probe.factory}
	ticks := make(chan time.Time)
	periods := make(chan time.Duration, 1)
	h.deps.NewTicker = func(d time.Duration) (<-chan time.Time, func()) {
		periods <- d
		return ticks, func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := h.start(ctx)
	h.waitState(t, "READY=1", done)
	select {
	case p := <-periods:
		if p != h.cfg.ReconcilePeriod {
			t.Errorf("ticker period %s, want --reconcile-period %s", p, h.cfg.ReconcilePeriod)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no ticker made")
	}
	<-probe.passed // the initial pass
	probe.takeCalls()
	for i := range 4 {
		select {
		case ticks <- time.Now():
		case <-time.After(10 * time.Second):
			t.Fatalf("tick %d not taken", i)
		}
		select {
		case <-probe.passed:
		case <-time.After(10 * time.Second):
			t.Fatalf("no pass after tick %d", i)
		}
		if got := strings.Join(probe.takeCalls(), " "); got != "Resync Reconcile" {
			t.Errorf("tick %d: calls %q, want a full pass (Resync Reconcile)", i, got)
		}
	}
}

// SIGTERM (the context ending) is a clean exit, whatever the daemon was
// doing: a part that fails because of the cancellation (a lease re-acquire
// cut short, a backend waiting for the kernel) is no fault, and flanneld
// must exit 0, as upstream does on SIGTERM.
func TestRunSignalExitsZero(t *testing.T) {
	for _, tc := range []string{"acquire retrying", "keep re-acquiring", "backend configuring"} {
		t.Run(tc, func(t *testing.T) {
			h := newHarness(t)
			reached := make(chan struct{})
			switch tc {
			case "acquire retrying":
				h.src.acquire = func(ctx context.Context) (subnet.Lease, error) {
					close(reached)
					<-ctx.Done()
					return subnet.Lease{}, fmt.Errorf("failed to acquire a subnet (retrying): %w", ctx.Err())
				}
			case "keep re-acquiring":
				h.src.keepReacquiring = reached
			case "backend configuring":
				probe := newProbe()
				probe.blockConfigure = true
				probe.configuring = reached
				h.src.cfg = `{"Network":"10.5.0.0/16","Backend":{"Type":"probe"}}`
				h.deps.Backends = backend.Registry{"probe": probe.factory}
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := h.start(ctx)
			select {
			case <-reached:
			case err := <-done:
				t.Fatalf("Run returned %v before the %s phase\n%s", err, tc, h.log)
			case <-time.After(10 * time.Second):
				t.Fatalf("no %s within 10 s\n%s", tc, h.log)
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("SIGTERM while %s: Run returned %v, want nil (exit 0)", tc, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no exit within 10 s of SIGTERM while %s", tc)
			}
		})
	}
}
