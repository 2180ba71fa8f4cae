package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
)

// fakeAPI is a small API server in memory: Nodes with resource versions,
// an event log that watches replay from any version still kept, a
// compaction that makes older watches fail with 410 (the Node watch
// then re-lists), and an outage switch that refuses connections and cuts the
// open watches.
type fakeAPI struct {
	mu      sync.Mutex
	rv      int
	nodes   map[string]*Node
	pods    map[string]*Pod
	log     []watch.Event // log[i] has resource version base+i+1
	base    int           // versions up to base are compacted away
	grew    chan struct{} // closed and replaced when log grows
	down    bool
	watches []*fakeWatch

	patches   []patchCall
	patchErrs []error // returned (and consumed) by the next patches
	lists     int
}

type patchCall struct {
	name string
	body string
}

func newFakeAPI() *fakeAPI {
	return &fakeAPI{nodes: map[string]*Node{}, pods: map[string]*Pod{}, grew: make(chan struct{})}
}

func (f *fakeAPI) server() string { return "https://fake:6443" }

var errRefused = &url.Error{Op: "Get", URL: "https://fake:6443/api/v1/nodes", Err: &net.OpError{
	Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}

func (f *fakeAPI) getPod(ctx context.Context, ns, name string) (*Pod, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, errRefused
	}
	p, ok := f.pods[ns+"/"+name]
	if !ok {
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, name)
	}
	return p.DeepCopyObject().(*Pod), nil
}

// listNodes serves pages of opts.Limit Nodes in name order; the continue
// token is the last name served (enough for tests that do not change
// Nodes between pages).
func (f *fakeAPI) listNodes(ctx context.Context, opts metav1.ListOptions, each func(*Node)) (metav1.ListMeta, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return metav1.ListMeta{}, errRefused
	}
	f.lists++
	names := slices.Sorted(maps.Keys(f.nodes))
	if opts.Continue != "" {
		i, _ := slices.BinarySearch(names, opts.Continue)
		if i < len(names) && names[i] == opts.Continue {
			i++
		}
		names = names[i:]
	}
	meta := metav1.ListMeta{ResourceVersion: strconv.Itoa(f.rv)}
	if opts.Limit > 0 && int64(len(names)) > opts.Limit {
		names = names[:opts.Limit]
		meta.Continue = names[len(names)-1]
	}
	for _, name := range names {
		each(f.nodes[name].DeepCopy())
	}
	return meta, nil
}

type fakeWatch struct {
	ch   chan watch.Event
	stop chan struct{}
	once sync.Once
}

func (w *fakeWatch) Stop()  { w.once.Do(func() { close(w.stop) }) }
func (w *fakeWatch) close() { w.Stop() }

// next is what the REST client's stream gives: io.EOF when the watch
// ended, a *StatusError for an ERROR event.
func (w *fakeWatch) next() (watch.EventType, *Node, error) {
	ev, ok := <-w.ch
	if !ok {
		return "", nil, io.EOF
	}
	if ev.Type == watch.Error {
		return "", nil, apierrors.FromObject(ev.Object)
	}
	return ev.Type, ev.Object.(*Node).DeepCopy(), nil
}

func (f *fakeAPI) watchNodes(ctx context.Context, opts metav1.ListOptions) (nodeEvents, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, errRefused
	}
	from, _ := strconv.Atoi(opts.ResourceVersion)
	w := &fakeWatch{ch: make(chan watch.Event), stop: make(chan struct{})}
	f.watches = append(f.watches, w)
	go func() {
		defer close(w.ch)
		for rv := from + 1; ; rv++ { // rv: the version of the next event to send
			f.mu.Lock()
			for rv-f.base-1 >= len(f.log) {
				grew := f.grew
				f.mu.Unlock()
				select {
				case <-grew:
				case <-w.stop:
					return
				case <-ctx.Done():
					return
				}
				f.mu.Lock()
			}
			i := rv - f.base - 1
			var ev watch.Event
			if i < 0 {
				st := apierrors.NewResourceExpired("too old resource version").ErrStatus
				ev = watch.Event{Type: watch.Error, Object: &st}
			} else {
				ev = f.log[i]
			}
			f.mu.Unlock()
			select {
			case w.ch <- ev:
			case <-w.stop:
				return
			case <-ctx.Done():
				return
			}
			if i < 0 {
				return
			}
		}
	}()
	return w, nil
}

// record appends an event; call with the lock held.
func (f *fakeAPI) record(t watch.EventType, n *Node) {
	f.log = append(f.log, watch.Event{Type: t, Object: n.DeepCopy()})
	close(f.grew)
	f.grew = make(chan struct{})
}

// put creates or replaces a Node, as kubectl or the kubelet would.
func (f *fakeAPI) put(n *Node) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n = n.DeepCopy()
	f.rv++
	n.ResourceVersion = strconv.Itoa(f.rv)
	if n.UID == "" {
		if old, ok := f.nodes[n.Name]; ok {
			n.UID = old.UID
		} else {
			n.UID = types.UID("uid-" + n.Name + "-" + n.ResourceVersion)
		}
	}
	t := watch.Added
	if _, ok := f.nodes[n.Name]; ok {
		t = watch.Modified
	}
	f.nodes[n.Name] = n
	f.record(t, n)
}

func (f *fakeAPI) node(name string) *Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	if n, ok := f.nodes[name]; ok {
		return n.DeepCopy()
	}
	return nil
}

func (f *fakeAPI) remove(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.nodes[name]
	if !ok {
		return
	}
	delete(f.nodes, name)
	f.rv++
	n = n.DeepCopy()
	n.ResourceVersion = strconv.Itoa(f.rv)
	f.record(watch.Deleted, n)
}

// compact drops the event log: a watch from an older version gets 410.
func (f *fakeAPI) compact() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.base = f.rv
	f.log = nil
}

// setDown starts or ends an outage; starting one cuts every open watch.
func (f *fakeAPI) setDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
	if down {
		for _, w := range f.watches {
			w.Stop()
		}
		f.watches = nil
	}
}

func (f *fakeAPI) patchNodeStatus(ctx context.Context, name string, body []byte) error {
	f.mu.Lock()
	if f.down {
		f.mu.Unlock()
		return errRefused
	}
	f.patches = append(f.patches, patchCall{name, string(body)})
	if len(f.patchErrs) > 0 {
		err := f.patchErrs[0]
		f.patchErrs = f.patchErrs[1:]
		f.mu.Unlock()
		return err
	}
	n, ok := f.nodes[name]
	f.mu.Unlock()
	if !ok {
		return apierrors.NewNotFound(schema.GroupResource{Resource: "nodes"}, name)
	}
	// A strategic merge of what we send: annotations by key, conditions by type.
	var p struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
		Status struct {
			Conditions []NodeCondition `json:"conditions"`
		} `json:"status"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return apierrors.NewBadRequest(err.Error())
	}
	n = n.DeepCopy()
	for k, v := range p.Metadata.Annotations {
		if n.Annotations == nil {
			n.Annotations = map[string]string{}
		}
		n.Annotations[k] = v
	}
	for _, c := range p.Status.Conditions {
		replaced := false
		for i := range n.Status.Conditions {
			if n.Status.Conditions[i].Type == c.Type {
				n.Status.Conditions[i], replaced = c, true
			}
		}
		if !replaced {
			n.Status.Conditions = append(n.Status.Conditions, c)
		}
	}
	f.put(n)
	return nil
}

func (f *fakeAPI) patchCalls() []patchCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]patchCall(nil), f.patches...)
}

// logBuffer collects log lines for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *logBuffer) count(s string) int { return strings.Count(l.String(), s) }

func newLog() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelInfo})), b
}

// testNode is a Node as node IPAM and a flannel leave it.
func testNode(name string, cidrs ...string) *Node {
	n := &Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if len(cidrs) > 0 {
		n.Spec.PodCIDR = cidrs[0]
		n.Spec.PodCIDRs = cidrs
	}
	return n
}

// managed adds flannel's annotations under the default prefix.
func managed(n *Node, backendType, ip, data string) *Node {
	if n.Annotations == nil {
		n.Annotations = map[string]string{}
	}
	p := DefaultPrefix + "/"
	n.Annotations[p+"kube-subnet-manager"] = "true"
	n.Annotations[p+"backend-type"] = backendType
	n.Annotations[p+"public-ip"] = ip
	n.Annotations[p+"backend-data"] = data
	return n
}

func vxlanData(mac string) string { return fmt.Sprintf(`{"VNI":1,"VtepMAC":"%s"}`, mac) }

// startManager runs a Manager on fake for node own and waits for Start.
func startManager(t *testing.T, fake *fakeAPI, own string, cfg string, o Options) (*Manager, *logBuffer) {
	t.Helper()
	log, buf := newLog()
	o.Log = log
	o = o.withDefaults()
	k, err := KeysFor(o.AnnotationPrefix)
	if err != nil {
		t.Fatal(err)
	}
	m := newManager(o, k, fake, own, nil)
	m.now = func() time.Time { return time.Date(2026, 5, 4, 3, 2, 1, 0, time.UTC) }
	t.Cleanup(m.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Start(ctx, mustConfig(t, cfg)); err != nil {
		t.Fatalf("Start: %v\n%s", err, buf)
	}
	return m, buf
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// cachedRV is the resource version of name as m's Node watch last saw it.
func cachedRV(m *Manager, name string) string {
	if n := m.peers.node(name); n != nil {
		return n.ResourceVersion
	}
	return ""
}

// synced waits until m's cache has caught up with fake for name.
func synced(t *testing.T, m *Manager, fake *fakeAPI, name string) {
	t.Helper()
	want := ""
	if n := fake.node(name); n != nil {
		want = n.ResourceVersion
	}
	waitFor(t, "cache of "+name+" at "+want, func() bool { return cachedRV(m, name) == want })
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
