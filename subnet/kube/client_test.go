package kube

import (
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
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

type request struct {
	method, path, query, contentType, accept, body string
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
		seen = append(seen, request{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Content-Type"), r.Header.Get("Accept"), string(b)})
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
		case r.URL.Path == "/api/v1/nodes" && r.URL.Query().Get("watch") == "true":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			raw, _ := json.Marshal(node)
			json.NewEncoder(w).Encode(metav1.WatchEvent{Type: string(watch.Added), Object: runtime.RawExtension{Raw: raw}})
		case r.URL.Path == "/api/v1/nodes":
			// protobuf, as a real server answers our Accept header
			w.Header().Set("Content-Type", runtime.ContentTypeProtobuf)
			l := &corev1.NodeList{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "NodeList"}, ListMeta: metav1.ListMeta{ResourceVersion: "9"}, Items: []corev1.Node{*node}}
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
	l, err := a.listNodes(ctx, metav1.ListOptions{ResourceVersion: "0", Limit: 500})
	if err != nil || len(l.Items) != 1 || l.Items[0].Spec.PodCIDR != "10.244.1.0/24" || l.ResourceVersion != "9" {
		t.Errorf("listNodes = %+v, %v", l, err)
	}
	w, err := a.watchNodes(ctx, metav1.ListOptions{ResourceVersion: "9"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-w.ResultChan():
		if n, ok := ev.Object.(*Node); ev.Type != watch.Added || !ok || n.Name != "n1" {
			t.Errorf("watch event %+v", ev)
		}
	case <-time.After(5 * time.Second):
		t.Error("no watch event")
	}
	w.Stop()
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
		{method: "PATCH", path: "/api/v1/nodes/n1/status", contentType: "application/strategic-merge-patch+json", body: string(body)},
	}
	if len(seen) != len(want) {
		t.Fatalf("requests %+v", seen)
	}
	for i, r := range seen {
		w := want[i]
		if r.method != w.method || r.path != w.path || r.query != w.query || r.contentType != w.contentType || r.body != w.body {
			t.Errorf("request %d: %+v\nwant %+v", i, r, w)
		}
		if !strings.HasPrefix(r.accept, "application/vnd.kubernetes.protobuf") {
			t.Errorf("request %d: Accept %q", i, r.accept)
		}
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
