package kube

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flannelng/flannel/subnet"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var vxlanAttrs = subnet.LeaseAttrs{
	PublicIP:    netip.MustParseAddr("10.199.0.2"),
	BackendType: "vxlan",
	BackendData: json.RawMessage(`{"VNI":1,"VtepMAC":"36:02:d1:89:dc:55"}`),
}

const vxlanPatch = `{"metadata":{"annotations":{"flannel.alpha.coreos.com/backend-data":"{\"VNI\":1,\"VtepMAC\":\"36:02:d1:89:dc:55\"}","flannel.alpha.coreos.com/backend-type":"vxlan","flannel.alpha.coreos.com/kube-subnet-manager":"true","flannel.alpha.coreos.com/public-ip":"10.199.0.2"}}}`

type acquired struct {
	lease subnet.Lease
	err   error
}

func acquireAsync(m *Manager, ctx context.Context, cfg *subnet.Config, attrs subnet.LeaseAttrs, retries *atomic.Int32) <-chan acquired {
	ch := make(chan acquired, 1)
	go func() {
		l, err := m.Acquire(ctx, cfg, attrs, subnet.Env{}, func(error) { retries.Add(1) })
		ch <- acquired{l, err}
	}()
	return ch
}

// TestAcquireWaitsForPodCIDR: a Node with no podCIDR and no annotations at
// all (upstream exits, then panics on the nil map): one line, onRetry, and
// the lease as soon as node IPAM sets the podCIDR, with one PATCH.
func TestAcquireWaitsForPodCIDR(t *testing.T) {
	fake := newFakeAPI()
	fake.put(testNode("n1"))
	m, logs := startManager(t, fake, "n1", cfgV4, Options{})
	var retries atomic.Int32
	res := acquireAsync(m, t.Context(), mustConfig(t, cfgV4), vxlanAttrs, &retries)
	waitFor(t, "onRetry", func() bool { return retries.Load() > 0 })
	fake.put(fake.node("n1")) // an unrelated update while waiting
	time.Sleep(20 * time.Millisecond)
	if n := logs.count("waiting for spec.podCIDR on node n1"); n != 1 {
		t.Errorf("waiting line logged %d times:\n%s", n, logs)
	}
	if len(fake.patchCalls()) != 0 {
		t.Fatal("published before the podCIDR was known")
	}
	n := fake.node("n1")
	n.Spec.PodCIDR, n.Spec.PodCIDRs = "10.244.1.0/24", []string{"10.244.1.0/24"}
	fake.put(n)
	var r acquired
	select {
	case r = <-res:
	case <-time.After(10 * time.Second):
		t.Fatal("Acquire did not pick up the podCIDR")
	}
	if r.err != nil || r.lease.Subnet != pfx("10.244.1.0/24") || r.lease.IPv6Subnet.IsValid() || !r.lease.Expiration.IsZero() ||
		!sameLease(r.lease, subnet.Lease{Subnet: pfx("10.244.1.0/24"), Attrs: vxlanAttrs}) {
		t.Fatalf("Acquire = %+v, %v", r.lease, r.err)
	}
	calls := fake.patchCalls()
	if len(calls) != 1 || calls[0].name != "n1" || calls[0].body != vxlanPatch {
		t.Fatalf("patches %+v", calls)
	}

	// A restart with the same values sends nothing (spec 4.4).
	synced(t, m, fake, "n1")
	m2, _ := startManager(t, fake, "n1", cfgV4, Options{})
	if _, err := m2.Acquire(t.Context(), mustConfig(t, cfgV4), vxlanAttrs, subnet.Env{}, nil); err != nil {
		t.Fatal(err)
	}
	if len(fake.patchCalls()) != 1 {
		t.Errorf("restart patched: %+v", fake.patchCalls()[1:])
	}
	// Previous gives back what we published: vxlan keeps its MAC.
	if prev := m2.Previous(mustConfig(t, cfgV4), subnet.LeaseAttrs{}); prev == nil || string(prev.BackendData) != string(vxlanAttrs.BackendData) {
		t.Errorf("Previous = %+v", prev)
	}
}

// TestAcquireOutsideNetwork: nothing is published for a podCIDR outside
// Network (upstream publishes first, then exits).
func TestAcquireOutsideNetwork(t *testing.T) {
	fake := newFakeAPI()
	fake.put(testNode("n11", "10.250.1.0/24"))
	m, _ := startManager(t, fake, "n11", cfgV4, Options{})
	_, err := m.Acquire(t.Context(), mustConfig(t, cfgV4), vxlanAttrs, subnet.Env{}, nil)
	want := `subnet "10.244.0.0/16" specified in the flannel net config doesn't contain "10.250.1.0/24" PodCIDR of the "n11" node`
	if err == nil || err.Error() != want {
		t.Errorf("err %v\nwant %s", err, want)
	}
	if len(fake.patchCalls()) != 0 {
		t.Errorf("published: %+v", fake.patchCalls())
	}
}

// TestAcquireSizesConfig: node IPAM's mask size (here /25) becomes the
// config's subnet length, so the daemon's peer filter does not take every
// peer for an intruder of another length.
func TestAcquireSizesConfig(t *testing.T) {
	fake := newFakeAPI()
	fake.put(testNode("n1", "10.244.1.128/25"))
	m, _ := startManager(t, fake, "n1", cfgV4, Options{})
	cfg := mustConfig(t, cfgV4)
	if _, err := m.Acquire(t.Context(), cfg, vxlanAttrs, subnet.Env{}, nil); err != nil {
		t.Fatal(err)
	}
	if cfg.SubnetLen != 25 {
		t.Errorf("SubnetLen %d after a /25 podCIDR, want 25", cfg.SubnetLen)
	}
}

// TestAcquireRetriesPatch: transient failures are retried; a forbidden
// PATCH (RBAC) is returned.
func TestAcquireRetriesPatch(t *testing.T) {
	fake := newFakeAPI()
	fake.put(testNode("n1", "10.244.1.0/24"))
	fake.patchErrs = []error{apierrors.NewServiceUnavailable("etcd down"), apierrors.NewTooManyRequests("slow down", 1)}
	m, logs := startManager(t, fake, "n1", cfgV4, Options{})
	var retries atomic.Int32
	l, err := m.Acquire(t.Context(), mustConfig(t, cfgV4), vxlanAttrs, subnet.Env{}, func(error) { retries.Add(1) })
	if err != nil || l.Subnet != pfx("10.244.1.0/24") || retries.Load() != 2 || len(fake.patchCalls()) != 3 {
		t.Errorf("Acquire = %v, %v after %d retries, %d patches", l, err, retries.Load(), len(fake.patchCalls()))
	}
	// Once, or twice if the Node watch got through between the
	// two failures (it ends the outage).
	if n := logs.count("Kubernetes API server unreachable"); n < 1 || n > 2 {
		t.Errorf("outage logged %d times:\n%s", n, logs)
	}

	fake2 := newFakeAPI()
	fake2.put(testNode("n1", "10.244.1.0/24"))
	fake2.patchErrs = []error{apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "n1", errors.New("no"))}
	m2, _ := startManager(t, fake2, "n1", cfgV4, Options{})
	if _, err := m2.Acquire(t.Context(), mustConfig(t, cfgV4), vxlanAttrs, subnet.Env{}, nil); !apierrors.IsForbidden(err) {
		t.Errorf("forbidden PATCH: %v", err)
	}
}

// TestAcquireMissingNode: a Node that is not there yet is waited for, with
// one line, not reported as a failed PATCH (upstream, spec 3.1).
func TestAcquireMissingNode(t *testing.T) {
	fake := newFakeAPI()
	fake.put(testNode("other", "10.244.9.0/24"))
	log, logs := newLog()
	k, _ := KeysFor(DefaultPrefix)
	m := newManager(Options{Log: log}, k, fake, "n1", nil)
	defer m.Close()
	started := make(chan error, 1)
	go func() { started <- m.Start(t.Context(), mustConfig(t, cfgV4)) }()
	waitFor(t, "the missing line", func() bool { return logs.count("waiting for our Node to be registered") == 1 })
	fake.put(testNode("n1", "10.244.1.0/24"))
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "Waiting for node controller to sync") || !strings.Contains(logs.String(), "Node controller sync successful") {
		t.Errorf("sync lines missing:\n%s", logs)
	}
}

// TestKeep: removed annotations are put back; a deleted Node is waited
// for and re-annotated when it comes back with the same podCIDR; a Node
// that comes back with another podCIDR ends the lease.
func TestKeep(t *testing.T) {
	fake := newFakeAPI()
	fake.put(testNode("n1", "10.244.1.0/24"))
	m, logs := startManager(t, fake, "n1", cfgV4, Options{})
	cfg := mustConfig(t, cfgV4)
	own, err := m.Acquire(t.Context(), cfg, vxlanAttrs, subnet.Env{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	kept := make(chan error, 1)
	go func() { kept <- m.Keep(ctx, cfg, own) }()

	// Our own PATCH reaching the cache is not a drift.
	synced(t, m, fake, "n1")
	time.Sleep(20 * time.Millisecond)
	if n := len(fake.patchCalls()); n != 1 {
		t.Fatalf("%d patches after Acquire", n)
	}
	// Someone deletes our MAC and sets an overwrite.
	n := fake.node("n1")
	delete(n.Annotations, DefaultPrefix+"/backend-data")
	n.Annotations[DefaultPrefix+"/public-ip-overwrite"] = "10.199.5.5"
	fake.put(n)
	waitFor(t, "the repair", func() bool { return len(fake.patchCalls()) == 2 })
	if got := fake.patchCalls()[1].body; got != `{"metadata":{"annotations":{"flannel.alpha.coreos.com/backend-data":"{\"VNI\":1,\"VtepMAC\":\"36:02:d1:89:dc:55\"}","flannel.alpha.coreos.com/public-ip":"10.199.5.5"}}}` {
		t.Errorf("repair patch %s", got)
	}

	// Deleted, then back with the same podCIDR and no annotations.
	fake.remove("n1")
	waitFor(t, "the deleted line", func() bool { return logs.count("our Node was deleted") == 1 })
	fake.put(testNode("n1", "10.244.1.0/24"))
	waitFor(t, "the re-publish", func() bool { return len(fake.patchCalls()) == 3 })
	if got := fake.patchCalls()[2].body; got != vxlanPatch {
		t.Errorf("re-publish patch %s", got)
	}
	if logs.count("our Node is back") != 1 {
		t.Errorf("back line missing:\n%s", logs)
	}
	select {
	case err := <-kept:
		t.Fatalf("Keep returned %v", err)
	default:
	}

	// Back with another podCIDR: the lease is lost.
	fake.remove("n1")
	fake.put(testNode("n1", "10.244.7.0/24"))
	select {
	case err := <-kept:
		if err == nil || !strings.Contains(err.Error(), "lease lost") || !strings.Contains(err.Error(), "10.244.7.0/24") {
			t.Errorf("Keep = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Keep did not notice the new podCIDR")
	}
	cancel()

	// ctx ending is a clean return.
	ctx2, cancel2 := context.WithCancel(t.Context())
	go func() { kept <- m.Keep(ctx2, cfg, subnet.Lease{Subnet: pfx("10.244.7.0/24")}) }()
	cancel2()
	if err := <-kept; err != nil {
		t.Errorf("Keep after cancel = %v", err)
	}
}

func TestReady(t *testing.T) {
	fake := newFakeAPI()
	fake.put(testNode("n1", "10.244.1.0/24"))
	m, _ := startManager(t, fake, "n1", cfgV4, Options{SetNodeNetworkUnavailable: true})
	if err := m.Ready(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := `{"status":{"conditions":[{"type":"NetworkUnavailable","status":"False","lastHeartbeatTime":"2026-05-04T03:02:01Z","lastTransitionTime":"2026-05-04T03:02:01Z","reason":"FlannelIsUp","message":"Flannel is running on this node"}]}}`
	if c := fake.patchCalls(); len(c) != 1 || c[0].body != want || c[0].name != "n1" {
		t.Fatalf("patches %+v", c)
	}
	// Already False for flannel: nothing sent, lastTransitionTime stays.
	synced(t, m, fake, "n1")
	if err := m.Ready(t.Context()); err != nil || len(fake.patchCalls()) != 1 {
		t.Errorf("second Ready: %v, %d patches", err, len(fake.patchCalls()))
	}
	// Off: nothing.
	fake2 := newFakeAPI()
	fake2.put(testNode("n1", "10.244.1.0/24"))
	m2, _ := startManager(t, fake2, "n1", cfgV4, Options{})
	if err := m2.Ready(t.Context()); err != nil || len(fake2.patchCalls()) != 0 {
		t.Errorf("Ready with the flag off: %v, %d patches", err, len(fake2.patchCalls()))
	}
	// A failure is returned, not retried forever.
	fake3 := newFakeAPI()
	fake3.put(testNode("n1", "10.244.1.0/24"))
	fake3.patchErrs = []error{apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "n1", errors.New("no"))}
	m3, _ := startManager(t, fake3, "n1", cfgV4, Options{SetNodeNetworkUnavailable: true})
	if err := m3.Ready(t.Context()); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `set NetworkUnavailable=False on node "n1"`) {
		t.Errorf("Ready = %v", err)
	}
}

func TestPublicIPs(t *testing.T) {
	fake := newFakeAPI()
	n := testNode("n1", "10.244.1.0/24")
	n.Annotations = map[string]string{
		DefaultPrefix + "/node-public-ip":   "10.199.7.7",
		DefaultPrefix + "/node-public-ipv6": "10.1.1.1", // wrong family
	}
	fake.put(n)
	m, logs := startManager(t, fake, "n1", cfgV4, Options{})
	v4, v6 := m.PublicIPs()
	if v4 != netip.MustParseAddr("10.199.7.7") || v6.IsValid() {
		t.Errorf("PublicIPs = %v %v", v4, v6)
	}
	m.PublicIPs()
	if logs.count("flannel.alpha.coreos.com/node-public-ipv6 value=10.1.1.1") != 1 || logs.count("key=flannel.alpha.coreos.com/node-public-ip ip=10.199.7.7") != 1 {
		t.Errorf("logs:\n%s", logs)
	}
}

func TestNodeName(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	fake := newFakeAPI()
	fake.pods["kube-flannel/flannel-x"] = &Pod{ObjectMeta: metav1.ObjectMeta{Name: "flannel-x"}}
	fake.pods["kube-flannel/flannel-x"].Spec.NodeName = "n7"
	fake.pods["kube-flannel/pending"] = &Pod{}
	rep := &reporter{log: discard(), server: fake.server()}
	for _, tc := range []struct {
		env  func(string) string
		want string
		err  string
	}{
		{env: env("NODE_NAME", "n1", "POD_NAME", "flannel-x", "POD_NAMESPACE", "kube-flannel"), want: "n1"},
		{env: env("POD_NAME", "flannel-x", "POD_NAMESPACE", "kube-flannel"), want: "n7"},
		{env: env("POD_NAME", "flannel-x"), err: "env variables POD_NAME and POD_NAMESPACE must be set"},
		{env: env(), err: "env variables POD_NAME and POD_NAMESPACE must be set"},
		{env: env("POD_NAME", "gone", "POD_NAMESPACE", "kube-flannel"), err: `error retrieving pod spec for 'kube-flannel/gone': pods "gone" not found`},
		{env: env("POD_NAME", "pending", "POD_NAMESPACE", "kube-flannel"), err: "node name not present in pod spec 'kube-flannel/pending'"},
	} {
		got, err := nodeName(t.Context(), tc.env, fake, rep)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("err %v, want %s", err, tc.err)
			}
		} else if err != nil || got != tc.want {
			t.Errorf("nodeName = %q, %v; want %q", got, err, tc.want)
		}
	}

	// Unreachable: retried (spec 8 #8), the endpoint logged once.
	log, logs := newLog()
	rep = &reporter{log: log, server: fake.server()}
	fake.setDown(true)
	got := make(chan string, 1)
	go func() {
		n, _ := nodeName(t.Context(), env("POD_NAME", "flannel-x", "POD_NAMESPACE", "kube-flannel"), fake, rep)
		got <- n
	}()
	time.Sleep(700 * time.Millisecond) // three attempts
	fake.setDown(false)
	if n := <-got; n != "n7" {
		t.Errorf("after the outage: %q", n)
	}
	if logs.count("Kubernetes API server unreachable") != 1 || logs.count("reachable again") != 1 || !strings.Contains(logs.String(), "request=\"get pod kube-flannel/flannel-x\"") {
		t.Errorf("logs:\n%s", logs)
	}
	// ... but not past ctx.
	fake.setDown(true)
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := nodeName(ctx, env("POD_NAME", "flannel-x", "POD_NAMESPACE", "kube-flannel"), fake, rep); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("with ctx ended: %v", err)
	}
}

func TestNewBadConfig(t *testing.T) {
	for _, tc := range []struct {
		o   Options
		err string
	}{
		{Options{AnnotationPrefix: "nodots"}, "subnet/kube: prefix must be in a format: fqdn/[0-9a-z-_]*"},
		{Options{KubeconfigFile: "/nonexistent/kubeconfig"}, "kubeconfig /nonexistent/kubeconfig:"},
		{Options{Getenv: func(string) string { return "" }}, "neither --kubeconfig-file nor --kube-api-url is set, and the in-cluster config failed"},
	} {
		if tc.o.Getenv == nil {
			tc.o.Getenv = func(string) string { return "" }
		}
		tc.o.Log = discard()
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		m, err := New(ctx, tc.o)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("New(%+v) = %v, %v; want %q", tc.o, m, err, tc.err)
		}
	}
}

// TestReporterAlternatingFailures: a ServiceAccount without nodes list and
// watch fails both in turn, forever; each text is logged once, and again
// only after a success.
func TestReporterAlternatingFailures(t *testing.T) {
	log, logs := newLog()
	r := &reporter{log: log, server: "https://10.0.0.1:6443"}
	list := apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "", errors.New("cannot list"))
	watch := apierrors.NewForbidden(schema.GroupResource{Resource: "nodes"}, "", errors.New("cannot watch"))
	for range 10 {
		r.observe(t.Context(), "list nodes", list)
		r.observe(t.Context(), "watch nodes", watch)
	}
	if n := logs.count("Kubernetes API request failed"); n != 2 {
		t.Errorf("%d lines for 20 alternating failures, want 2:\n%s", n, logs)
	}
	r.observe(t.Context(), "get node", nil)
	r.observe(t.Context(), "list nodes", list)
	if n := logs.count("Kubernetes API request failed"); n != 3 {
		t.Errorf("a failure after a success is not logged again:\n%s", logs)
	}
}
