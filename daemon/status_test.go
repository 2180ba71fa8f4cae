package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flannelng/flannel/subnet"
)

// statusLog records the STATUS= lines the daemon sends through
// Deps.Notify, in order.
type statusLog struct {
	mu    sync.Mutex
	lines []string
	added chan struct{} // signalled (without blocking) on each line
}

// add records s if it is a STATUS= line and reports whether it was.
func (l *statusLog) add(s string) bool {
	msg, ok := strings.CutPrefix(s, "STATUS=")
	if !ok {
		return false
	}
	l.mu.Lock()
	l.lines = append(l.lines, msg)
	if l.added == nil {
		l.added = make(chan struct{}, 1)
	}
	ch := l.added
	l.mu.Unlock()
	select {
	case ch <- struct{}{}:
	default:
	}
	return true
}

func (l *statusLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.lines)
}

// wait waits until a STATUS= line satisfies ok and returns it.
func (l *statusLog) wait(t *testing.T, what string, ok func(string) bool) string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		for _, s := range l.all() {
			if ok(s) {
				return s
			}
		}
		l.mu.Lock()
		if l.added == nil {
			l.added = make(chan struct{}, 1)
		}
		ch := l.added
		l.mu.Unlock()
		select {
		case <-ch:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no STATUS= line %s within 10 s; got %q", what, l.all())
		}
	}
}

// While the lease source does not answer (etcd down at boot), systemd's
// status says what the daemon waits for; then it says how many peers are
// programmed, before READY=1.
func TestStatusWaitingForEtcd(t *testing.T) {
	h := newHarness(t)
	h.deps.Source = "etcd at http://192.0.2.10:2379"
	release := make(chan struct{})
	connect := h.deps.Connect
	h.deps.Connect = func(ctx context.Context) (subnet.Manager, func(), error) {
		select {
		case <-release:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
		return connect(ctx)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := h.start(ctx)
	h.status.wait(t, "waiting for etcd", func(s string) bool { return s == "Waiting for etcd at http://192.0.2.10:2379" })
	close(release)
	h.waitState(t, "READY=1", done)
	got := h.status.all()
	want := []string{"Waiting for etcd at http://192.0.2.10:2379", "Acquiring a subnet lease", "1 peer programmed"}
	if !slices.Equal(got, want) {
		t.Errorf("STATUS= lines %q, want %q", got, want)
	}
	cancel()
	<-done
}

// Without Deps.Source the line names etcd, the default source.
func TestStatusDefaultSource(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := h.start(ctx)
	h.waitState(t, "READY=1", done)
	if got := h.status.all(); len(got) == 0 || got[0] != "Waiting for etcd" {
		t.Errorf("STATUS= lines %q, want Waiting for etcd first", got)
	}
	cancel()
	<-done
}

// podCIDRSource is a Kubernetes-like source whose Node has no podCIDR for
// its first attempts.
type podCIDRSource struct {
	*fakeSource
	misses int
}

func (p *podCIDRSource) Acquire(ctx context.Context, cfg *subnet.Config, attrs subnet.LeaseAttrs, prev subnet.Env, onRetry func(error)) (subnet.Lease, error) {
	for range p.misses {
		onRetry(errors.New("no spec.podCIDR"))
	}
	return p.fakeSource.Acquire(ctx, cfg, attrs, prev, onRetry)
}

func TestStatusWaitingForPodCIDR(t *testing.T) {
	h := newHarness(t)
	h.deps.Source = "the Kubernetes API server"
	src := &podCIDRSource{fakeSource: h.src, misses: 2}
	h.deps.Connect = func(context.Context) (subnet.Manager, func(), error) { return src, h.src.close, nil }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := h.start(ctx)
	h.waitState(t, "READY=1", done)
	got := h.status.all()
	want := []string{"Waiting for the Kubernetes API server", "Acquiring a subnet lease",
		"Waiting for podCIDR: no spec.podCIDR", "Waiting for podCIDR: no spec.podCIDR", "1 peer programmed"}
	if !slices.Equal(got, want) {
		t.Errorf("STATUS= lines %q, want %q", got, want)
	}
	cancel()
	<-done
}

// The peer count follows the changes after READY=1, and only a change
// sends a line.
func TestStatusPeersProgrammed(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := h.start(ctx)
	h.waitState(t, "READY=1", done)

	h.src.mu.Lock()
	for i := 5; i < 8; i++ {
		h.src.peers.leases = append(h.src.peers.leases, subnet.Lease{Subnet: netip.MustParsePrefix(fmt.Sprintf("10.5.%d.0/24", i))})
	}
	h.src.mu.Unlock()
	h.src.peers.updated <- struct{}{}
	h.status.wait(t, "with 4 peers", func(s string) bool { return s == "4 peers programmed" })
	if n := strings.Count(strings.Join(h.status.all(), "\n"), "programmed"); n != 2 {
		t.Errorf("%d peer count lines, want 2: %q", n, h.status.all())
	}
	cancel()
	<-done
}

func TestStatusLineIsOneLine(t *testing.T) {
	var got []string
	d := Deps{Notify: func(s string) (bool, error) { got = append(got, s); return true, nil }}
	sendStatus(d, "Waiting for the network config from etcd: key not found\n  (is the config written?)")
	if want := []string{"STATUS=Waiting for the network config from etcd: key not found (is the config written?)"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}
