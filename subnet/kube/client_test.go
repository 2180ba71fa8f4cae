package kube

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/apimachinery/pkg/util/framer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

type request struct {
	method, path, query, contentType, accept, encoding, body string
}

// TestRESTAPI checks the requests on the wire against a local HTTP server:
// paths, verbs, the strategic-merge content type, protobuf asked for
// (JSON accepted), and the replies decoded in both encodings.
func TestRESTAPI(t *testing.T) {
	var mu sync.Mutex
	var seen []request
	node := &corev1.Node{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"},
		ObjectMeta: metav1.ObjectMeta{Name: "n1", ResourceVersion: "5"}, Spec: corev1.NodeSpec{PodCIDR: "10.244.1.0/24"}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, request{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Content-Type"), r.Header.Get("Accept"), r.Header.Get("Accept-Encoding"), string(b)})
		mu.Unlock()
		switch {
		case r.URL.Path == "/api/v1/namespaces/kube-flannel/pods/flannel-x":
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(&corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}, Spec: corev1.PodSpec{NodeName: "n7"}})
		case r.URL.Path == "/api/v1/namespaces/kube-flannel/pods/gone":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			st := apierrors.NewNotFound(corev1.Resource("pods"), "gone").ErrStatus
			st.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Status"}
			json.NewEncoder(w).Encode(&st)
		case r.URL.Path == "/api/v1/nodes" && r.URL.Query().Get("watch") == "true" && r.URL.Query().Get("resourceVersion") == "10":
			// protobuf, as a real server answers our Accept header
			w.Header().Set("Content-Type", "application/vnd.kubernetes.protobuf;stream=watch")
			w.Write(watchFrames(t, node))
		case r.URL.Path == "/api/v1/nodes" && r.URL.Query().Get("watch") == "true":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			raw, _ := json.Marshal(node)
			json.NewEncoder(w).Encode(metav1.WatchEvent{Type: string(watch.Added), Object: runtime.RawExtension{Raw: raw}})
		case r.URL.Path == "/api/v1/nodes":
			// protobuf, as a real server answers our Accept header
			w.Header().Set("Content-Type", runtime.ContentTypeProtobuf)
			l := &corev1.NodeList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "NodeList"}, ListMeta: metav1.ListMeta{ResourceVersion: "9", Continue: "c1"}, Items: []corev1.Node{*node, *node}}
			if err := protobuf.NewSerializer(nil, nil).Encode(l, w); err != nil {
				t.Error(err)
			}
		case r.URL.Path == "/api/v1/nodes/n1/status" && r.Method == http.MethodPatch:
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(node)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	a, err := newRESTAPI(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if p, err := a.getPod(ctx, "kube-flannel", "flannel-x"); err != nil || p.Spec.NodeName != "n7" {
		t.Errorf("getPod = %+v, %v", p, err)
	}
	if _, err := a.getPod(ctx, "kube-flannel", "gone"); !apierrors.IsNotFound(err) || err.Error() != `pods "gone" not found` {
		t.Errorf("getPod gone = %v", err)
	}
	var items []*Node
	l, err := a.listNodes(ctx, metav1.ListOptions{ResourceVersion: "0", Limit: 500}, func(n *Node) { items = append(items, n) })
	if err != nil || len(items) != 2 || items[1].Spec.PodCIDR != "10.244.1.0/24" || items[1].Name != "n1" || l.ResourceVersion != "9" || l.Continue != "c1" {
		t.Errorf("listNodes = %+v, %v, %v", l, items, err)
	}
	w, err := a.watchNodes(ctx, metav1.ListOptions{ResourceVersion: "9"})
	if err != nil {
		t.Fatal(err)
	}
	if typ, n, err := w.next(); typ != watch.Added || err != nil || n.Name != "n1" {
		t.Errorf("JSON watch event %s %+v %v", typ, n, err)
	}
	if _, _, err := w.next(); err != io.EOF {
		t.Errorf("JSON watch end: %v", err)
	}
	w.close()
	w, err = a.watchNodes(ctx, metav1.ListOptions{ResourceVersion: "10"})
	if err != nil {
		t.Fatal(err)
	}
	checkFrames(t, w)
	w.close()
	body := annotationPatch(map[string]string{"flannel.alpha.coreos.com/kube-subnet-manager": "true"})
	if err := a.patchNodeStatus(ctx, "n1", body); err != nil {
		t.Errorf("patch: %v", err)
	}

	mu.Lock()
	defer mu.Unlock()
	want := []request{
		{method: "GET", path: "/api/v1/namespaces/kube-flannel/pods/flannel-x"},
		{method: "GET", path: "/api/v1/namespaces/kube-flannel/pods/gone"},
		{method: "GET", path: "/api/v1/nodes", query: "limit=500&resourceVersion=0"},
		{method: "GET", path: "/api/v1/nodes", query: "resourceVersion=9&watch=true"},
		{method: "GET", path: "/api/v1/nodes", query: "resourceVersion=10&watch=true"},
		{method: "PATCH", path: "/api/v1/nodes/n1/status", contentType: "application/strategic-merge-patch+json", body: string(body)},
	}
	if len(seen) != len(want) {
		t.Fatalf("requests %+v", seen)
	}
	for i, r := range seen {
		w := want[i]
		if w.encoding == "" {
			w.encoding = "gzip" // Go's transport asks for it, and inflates the answer
		}
		if r.method != w.method || r.path != w.path || r.query != w.query || r.contentType != w.contentType || r.body != w.body || r.encoding != w.encoding {
			t.Errorf("request %d: %+v\nwant %+v", i, r, w)
		}
		if !strings.HasPrefix(r.accept, "application/vnd.kubernetes.protobuf") {
			t.Errorf("request %d: Accept %q", i, r.accept)
		}
	}
}

// watchFrames is a protobuf watch as kube-apiserver writes it: each
// metav1.WatchEvent in the raw serializer, length-delimited, with the
// object in the full one (envelope included): node ADDED, a BOOKMARK at
// version 12, node DELETED, then an ERROR event 410 Gone.
func watchFrames(t testing.TB, node *corev1.Node) []byte {
	s := runtime.NewScheme()
	if err := corev1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	full, raw := protobuf.NewSerializer(s, s), protobuf.NewRawSerializer(s, s)
	var out bytes.Buffer
	fw := framer.NewLengthDelimitedFrameWriter(&out)
	frame := func(typ watch.EventType, obj runtime.Object) {
		var o, f bytes.Buffer
		if err := full.Encode(obj, &o); err != nil {
			t.Fatal(err)
		}
		if err := raw.Encode(&metav1.WatchEvent{Type: string(typ), Object: runtime.RawExtension{Raw: o.Bytes()}}, &f); err != nil {
			t.Fatal(err)
		}
		fw.Write(f.Bytes())
	}
	frame(watch.Added, node)
	frame(watch.Bookmark, &corev1.Node{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"}, ObjectMeta: metav1.ObjectMeta{ResourceVersion: "12"}})
	gone := node.DeepCopy()
	gone.ResourceVersion = "13"
	frame(watch.Deleted, gone)
	st := apierrors.NewResourceExpired("too old resource version: 5 (13)").ErrStatus
	st.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Status"}
	frame(watch.Error, &st)
	return out.Bytes()
}

// checkFrames reads watchFrames' events.
func checkFrames(t *testing.T, w nodeEvents) {
	t.Helper()
	if typ, n, err := w.next(); typ != watch.Added || err != nil || n.Name != "n1" || n.ResourceVersion != "5" || n.Spec.PodCIDR != "10.244.1.0/24" {
		t.Errorf("first event %s %+v %v", typ, n, err)
	}
	if typ, n, err := w.next(); typ != watch.Bookmark || err != nil || n.ResourceVersion != "12" {
		t.Errorf("bookmark %s %+v %v", typ, n, err)
	}
	if typ, n, err := w.next(); typ != watch.Deleted || err != nil || n.Name != "n1" || n.ResourceVersion != "13" {
		t.Errorf("delete %s %+v %v", typ, n, err)
	}
	if _, _, err := w.next(); !apierrors.IsResourceExpired(err) || !strings.Contains(err.Error(), "too old resource version") {
		t.Errorf("error event: %v", err)
	}
	if _, _, err := w.next(); err != io.EOF {
		t.Errorf("end: %v", err)
	}
}

// TestWatchStreamBroken: a stream cut inside a frame is an error, not an
// end; garbage is an error, not a panic.
func TestWatchStreamBroken(t *testing.T) {
	node := &corev1.Node{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"}, ObjectMeta: metav1.ObjectMeta{Name: "n1", ResourceVersion: "5"}}
	frames := watchFrames(t, node)
	for cut := 1; cut < len(frames); cut += 7 {
		w := newWatchStream(io.NopCloser(bytes.NewReader(frames[:cut])), func() {}, 0)
		var err error
		for err == nil {
			_, _, err = w.next()
		}
		if err == io.EOF && !frameBoundary(frames, cut) {
			t.Fatalf("cut at %d of %d: io.EOF", cut, len(frames))
		}
	}
	for _, junk := range []string{"\x00\x00\x00\x03abc", "\x00\x00\x00\x02\x12\x05", "\xff\xff\xff\xff", "{\"type\":1}"} {
		w := newWatchStream(io.NopCloser(strings.NewReader(junk)), func() {}, 0)
		if _, _, err := w.next(); err == nil || err == io.EOF {
			t.Errorf("%q: %v", junk, err)
		}
	}
}

// TestWatchIdle: a watch that brings nothing for the idle time is ended
// with an error that says so; events keep it open.
func TestWatchIdle(t *testing.T) {
	node := &corev1.Node{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Node"}, ObjectMeta: metav1.ObjectMeta{Name: "n1", ResourceVersion: "5"}}
	frames := watchFrames(t, node)
	first := 4 + int(binary.BigEndian.Uint32(frames))
	pr, pw := io.Pipe()
	w := newWatchStream(pr, func() { pw.CloseWithError(errors.New("canceled")) }, 100*time.Millisecond)
	defer w.close()
	go func() {
		for range 3 { // an event every 60 ms: never idle for 100 ms
			time.Sleep(60 * time.Millisecond)
			pw.Write(frames[:first])
		}
	}()
	for i := range 3 {
		if typ, _, err := w.next(); typ != watch.Added || err != nil {
			t.Fatalf("event %d: %s %v", i, typ, err)
		}
	}
	began := time.Now()
	_, _, err := w.next()
	if err == nil || !strings.Contains(err.Error(), "no event for 100ms, not even a bookmark: canceled") {
		t.Errorf("idle watch: %v", err)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("ended after %v", d)
	}
}

// frameBoundary says whether cut falls between two frames.
func frameBoundary(frames []byte, cut int) bool {
	for at := 0; at <= cut; {
		if at == cut {
			return true
		}
		if at+4 > len(frames) {
			return false
		}
		at += 4 + int(binary.BigEndian.Uint32(frames[at:]))
	}
	return false
}

// TestDecodeNodeList reads a list page in protobuf (item by item) and in
// JSON; a cut or a bad answer is an error.
func TestDecodeNodeList(t *testing.T) {
	nodes := []corev1.Node{*kubeletNode(), *kubeletNode()}
	nodes[1].Name = "n2"
	l := &corev1.NodeList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "NodeList"},
		ListMeta: metav1.ListMeta{ResourceVersion: "77", Continue: "next"}, Items: nodes}
	pb := encodeProto(t, l)
	js, _ := json.Marshal(l)
	for name, body := range map[string][]byte{"protobuf": pb, "json": js} {
		var got []string
		meta, err := decodeNodeList(bufio.NewReader(bytes.NewReader(body)), func(n *Node) {
			got = append(got, n.Name+" "+n.Spec.PodCIDR+" "+n.Annotations["flannel.alpha.coreos.com/public-ip"])
		})
		if err != nil || meta.ResourceVersion != "77" || meta.Continue != "next" ||
			strings.Join(got, ",") != "ip-10-0-1-23.ec2.internal 10.244.1.0/24 10.0.1.23,n2 10.244.1.0/24 10.0.1.23" {
			t.Errorf("%s: %+v %q %v", name, meta, got, err)
		}
	}
	for cut := 5; cut < len(pb)-4; cut += 97 { // the last 4: the envelope's empty content type and encoding
		if _, err := decodeNodeList(bufio.NewReader(bytes.NewReader(pb[:cut])), func(*Node) {}); err == nil {
			t.Errorf("cut at %d of %d: no error", cut, len(pb))
		}
	}
	if _, err := decodeNodeList(bufio.NewReader(strings.NewReader("")), func(*Node) {}); err == nil {
		t.Error("empty answer: no error")
	}
}

func TestUnreachable(t *testing.T) {
	for _, tc := range []struct {
		err       error
		unreach   bool
		transient bool
	}{
		{errRefused, true, true},
		{errors.New("dial tcp 10.96.0.1:443: i/o timeout"), true, true},
		{apierrors.NewServiceUnavailable("x"), true, true},
		{apierrors.NewInternalError(errors.New("etcdserver: request timed out")), true, true},
		{apierrors.NewTooManyRequests("x", 1), true, true},
		{apierrors.NewTimeoutError("x", 1), true, true},
		{apierrors.NewConflict(corev1.Resource("nodes"), "n1", errors.New("x")), false, true},
		{apierrors.NewForbidden(corev1.Resource("nodes"), "n1", errors.New("x")), false, false},
		{apierrors.NewUnauthorized("x"), false, false},
		{apierrors.NewNotFound(corev1.Resource("nodes"), "n1"), false, false},
		{apierrors.NewBadRequest("x"), false, false},
		{nil, false, false},
	} {
		if got := unreachable(tc.err); got != tc.unreach {
			t.Errorf("unreachable(%v) = %v", tc.err, got)
		}
		if got := transient(tc.err); got != tc.transient {
			t.Errorf("transient(%v) = %v", tc.err, got)
		}
	}
}
