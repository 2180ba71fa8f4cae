package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/flannelng/flannel/subnet/kube"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const fl = "flannel.alpha.coreos.com/"

// node builds a Node as the API server returns it.
func node(name string, cidrs []string, ann map[string]string) kube.Node {
	n := kube.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann}}
	if len(cidrs) > 0 {
		n.Spec.PodCIDR, n.Spec.PodCIDRs = cidrs[0], cidrs
	}
	return n
}

// vxlanAnn is what flanneld publishes for a vxlan node.
func vxlanAnn(ip, mac string) map[string]string {
	return map[string]string{
		fl + "kube-subnet-manager": "true", fl + "backend-type": "vxlan", fl + "public-ip": ip,
		fl + "backend-data":            `{"VNI":1,"VtepMAC":"` + mac + `"}`,
		"node.alpha.kubernetes.io/ttl": "0",
	}
}

func with(m map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "<delete>" {
			delete(out, kv[i])
			continue
		}
		out[kv[i]] = kv[i+1]
	}
	return out
}

func sampleNodes() []kube.Node {
	dual := with(vxlanAnn("192.168.50.3", "0a:75:1e:94:97:31"),
		fl+"public-ipv6", "fd00:50::3", fl+"backend-v6-data", `{"VNI":1,"VtepMAC":"be:cf:ba:d0:c7:8f"}`)
	return []kube.Node{
		node("n10", []string{"10.244.10.0/24"}, vxlanAnn("192.168.50.10", "a2:2a:fd:9f:55:f3")),
		node("n2", []string{"10.244.2.0/24"}, vxlanAnn("192.168.50.2", "f2:8d:cc:63:b3:0d")),
		// dual stack, both families published
		node("n3", []string{"10.244.3.0/24", "fd00:10:244:3::/64"}, dual),
		// dual-stack podCIDRs, flannel on IPv4 only: no v6 keys, no problem
		node("n4", []string{"10.244.4.0/24", "fd00:10:244:4::/64"}, vxlanAnn("192.168.50.4", "9a:3f:e8:a2:65:df")),
		// dual stack whose v6 data is broken: peers use only IPv4
		node("n5", []string{"10.244.5.0/24", "fd00:10:244:5::/64"}, with(dual, fl+"backend-v6-data", "{broken")),
		// managed, but no public-ip: peers skip it
		node("n6", []string{"10.244.6.0/24"}, with(vxlanAnn("", "7a:c9:00:2e:b8:ba"), fl+"public-ip", "<delete>")),
		// "True" is not "true"
		node("n7", []string{"10.244.7.0/24"}, with(vxlanAnn("192.168.50.7", "02:00:00:00:00:07"), fl+"kube-subnet-manager", "True")),
		// a kubelet's Node, no flannel yet
		node("n8", []string{"10.244.8.0/24"}, map[string]string{"node.alpha.kubernetes.io/ttl": "0"}),
		// node IPAM has not got to it
		node("n9", nil, nil),
		// host-gw and udp (upstream's udp publishes an empty backend-type)
		node("n11", []string{"10.244.11.0/24"}, map[string]string{fl + "kube-subnet-manager": "true", fl + "backend-type": "host-gw", fl + "public-ip": "192.168.50.11", fl + "backend-data": "null"}),
		node("n12", []string{"10.244.12.0/24"}, map[string]string{fl + "kube-subnet-manager": "true", fl + "backend-type": "", fl + "public-ip": "192.168.50.12", fl + "backend-data": "null"}),
	}
}

func defaultKeys(t *testing.T) kube.Keys {
	t.Helper()
	k, err := kubeKeys("")
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestNodeLeaseTable(t *testing.T) {
	var b bytes.Buffer
	if err := renderNodeTable(&b, buildNodeViews(sampleNodes(), defaultKeys(t)), false); err != nil {
		t.Fatal(err)
	}
	want := `NODE  SUBNET          IPV6 SUBNET         PUBLIC IP      PUBLIC IPV6  BACKEND  VTEP MAC           VTEP MAC V6        MANAGED
n2    10.244.2.0/24   -                   192.168.50.2   -            vxlan    f2:8d:cc:63:b3:0d  -                  yes
n3    10.244.3.0/24   fd00:10:244:3::/64  192.168.50.3   fd00:50::3   vxlan    0a:75:1e:94:97:31  be:cf:ba:d0:c7:8f  yes
n4    10.244.4.0/24   fd00:10:244:4::/64  192.168.50.4   -            vxlan    9a:3f:e8:a2:65:df  -                  yes
n5    10.244.5.0/24   fd00:10:244:5::/64  192.168.50.3   fd00:50::3   vxlan    0a:75:1e:94:97:31  -                  yes
n6    10.244.6.0/24   -                   -              -            vxlan    7a:c9:00:2e:b8:ba  -                  yes
n7    10.244.7.0/24   -                   192.168.50.7   -            vxlan    02:00:00:00:00:07  -                  no
n8    10.244.8.0/24   -                   -              -            -        -                  -                  no
n10   10.244.10.0/24  -                   192.168.50.10  -            vxlan    a2:2a:fd:9f:55:f3  -                  yes
n11   10.244.11.0/24  -                   192.168.50.11  -            host-gw  -                  -                  yes
n12   10.244.12.0/24  -                   192.168.50.12  -            -        -                  -                  yes
n9    -               -                   -              -            -        -                  -                  no
unusable lease on Node n5 (flanneld on the other nodes uses only the other family): IPv6: node "n5": invalid flannel.alpha.coreos.com/backend-v6-data "{broken" (not JSON)
unusable lease on Node n6 (flanneld on the other nodes ignores this node): node "n6": no flannel.alpha.coreos.com/public-ip annotation
`
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}

	// Without IPv6 values the IPv6 columns other than the subnet go away,
	// as in the etcd table.
	b.Reset()
	if err := renderNodeTable(&b, buildNodeViews(sampleNodes()[:2], defaultKeys(t)), false); err != nil {
		t.Fatal(err)
	}
	want = `NODE  SUBNET          IPV6 SUBNET  PUBLIC IP      BACKEND  VTEP MAC           MANAGED
n2    10.244.2.0/24   -            192.168.50.2   vxlan    f2:8d:cc:63:b3:0d  yes
n10   10.244.10.0/24  -            192.168.50.10  vxlan    a2:2a:fd:9f:55:f3  yes
`
	if b.String() != want {
		t.Errorf("table:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestNodeLeaseJSON(t *testing.T) {
	var b bytes.Buffer
	if err := renderJSON(&b, buildNodeViews(sampleNodes(), defaultKeys(t))); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, b.String())
	}
	if len(got) != 11 {
		t.Fatalf("%d objects", len(got))
	}
	byName := map[string]map[string]any{}
	for _, o := range got {
		byName[o["Node"].(string)] = o
	}
	n2 := byName["n2"]
	wantN2 := map[string]any{
		"Node": "n2", "Subnet": "10.244.2.0/24", "IPv6Subnet": nil, "Managed": true,
		"PublicIP": "192.168.50.2", "PublicIPv6": nil, "BackendType": "vxlan", "VtepMAC": "f2:8d:cc:63:b3:0d",
	}
	// Every key of a plain row: the above plus Annotations; VtepMACv6 and
	// Error only when set.
	if len(n2) != len(wantN2)+1 {
		t.Errorf("keys of n2: %v", n2)
	}
	for k, v := range wantN2 {
		if n2[k] != v {
			t.Errorf("n2 %s = %#v, want %#v", k, n2[k], v)
		}
	}
	ann, _ := n2["Annotations"].(map[string]any)
	if len(ann) != 4 || ann[fl+"backend-data"] != `{"VNI":1,"VtepMAC":"f2:8d:cc:63:b3:0d"}` || ann["node.alpha.kubernetes.io/ttl"] != nil {
		t.Errorf("n2 annotations (only the prefix's, as stored): %v", ann)
	}
	if n3 := byName["n3"]; n3["IPv6Subnet"] != "fd00:10:244:3::/64" || n3["VtepMACv6"] != "be:cf:ba:d0:c7:8f" || n3["PublicIPv6"] != "fd00:50::3" {
		t.Errorf("n3: %v", n3)
	}
	if n9 := byName["n9"]; n9["Subnet"] != nil || n9["Managed"] != false || n9["Error"] != nil || fmt.Sprint(n9["Annotations"]) != "map[]" {
		t.Errorf("n9: %v", n9)
	}
	if e := byName["n6"]["Error"]; e != `node "n6": no flannel.alpha.coreos.com/public-ip annotation` {
		t.Errorf("n6 error %v", e)
	}
	if e := byName["n7"]["Error"]; e != nil || byName["n7"]["Managed"] != false {
		t.Errorf("n7 (True is not managed, not an error): %v", byName["n7"])
	}
	if e := byName["n4"]["Error"]; e != nil {
		t.Errorf("n4 (IPv4 only on dual-stack podCIDRs) is fine: %v", e)
	}
	// Dual-stack podCIDRs, IPv4 published and broken: the reason is the
	// IPv4 key, not the IPv6 keys the node never meant to publish.
	v := nodeViewOf(&[]kube.Node{node("n13", []string{"10.244.13.0/24", "fd00:10:244:d::/64"},
		map[string]string{fl + "kube-subnet-manager": "true", fl + "backend-type": "vxlan", fl + "backend-data": `{"VNI":1,"VtepMAC":"02:00:00:00:00:13"}`})}[0], defaultKeys(t))
	if v.Error != `node "n13": no flannel.alpha.coreos.com/public-ip annotation` || v.partial {
		t.Errorf("n13: %q (partial %v)", v.Error, v.partial)
	}
	b.Reset()
	if err := renderJSON(&b, buildNodeViews(nil, defaultKeys(t))); err != nil || b.String() != "[]\n" {
		t.Errorf("empty: %q %v", b.String(), err)
	}
}

// A custom prefix is normalised as flanneld does: example.com/fl reads
// example.com/fl-* keys, and the default prefix's keys are then foreign.
func TestNodeLeaseCustomPrefix(t *testing.T) {
	k, err := kubeKeys("example.com/fl")
	if err != nil {
		t.Fatal(err)
	}
	ns := []kube.Node{
		node("a", []string{"10.244.1.0/24"}, map[string]string{
			"example.com/fl-kube-subnet-manager": "true", "example.com/fl-backend-type": "host-gw",
			"example.com/fl-public-ip": "10.0.0.1", "example.com/fl-backend-data": "null",
		}),
		node("b", []string{"10.244.2.0/24"}, vxlanAnn("10.0.0.2", "f2:8d:cc:63:b3:0d")),
	}
	vs := buildNodeViews(ns, k)
	if !vs[0].Managed || *vs[0].PublicIP != "10.0.0.1" || vs[0].BackendType != "host-gw" || len(vs[0].Annotations) != 4 {
		t.Errorf("a: %+v", vs[0])
	}
	if vs[1].Managed || vs[1].PublicIP != nil || len(vs[1].Annotations) != 0 {
		t.Errorf("b carries only the default prefix's keys: %+v", vs[1])
	}
	for _, bad := range []string{"nodots", "Bad_Prefix", "a/b/c"} {
		if _, err := kubeKeys(bad); err == nil {
			t.Errorf("prefix %q accepted", bad)
		}
	}
}

// fakeAPIServer serves GET /api/v1/nodes in pages of two, as JSON, the way
// kube-apiserver does (limit and continue), and records what it was asked.
type fakeAPIServer struct {
	*httptest.Server
	mu       sync.Mutex
	requests []string
	auth     []string
	accept   []string
	forbid   bool
}

func newFakeAPIServer(t *testing.T, nodes []kube.Node) *fakeAPIServer {
	f := &fakeAPIServer{}
	f.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.requests = append(f.requests, r.Method+" "+r.URL.RequestURI())
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		f.accept = append(f.accept, r.Header.Get("Accept"))
		forbid := f.forbid
		f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if forbid {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"nodes is forbidden: User \"system:serviceaccount:default:nobody\" cannot list resource \"nodes\" in API group \"\" at the cluster scope","reason":"Forbidden","details":{"kind":"nodes"},"code":403}`)
			return
		}
		if r.Method != http.MethodGet || r.URL.Path != "/api/v1/nodes" || r.URL.Query().Get("limit") != "500" || r.URL.Query().Get("timeout") != "15s" {
			http.Error(w, "unexpected request", http.StatusBadRequest)
			return
		}
		start := 0
		if c := r.URL.Query().Get("continue"); c != "" {
			fmt.Sscanf(c, "page-%d", &start)
		}
		end := min(start+2, len(nodes))
		items := make([]any, 0, 2)
		for _, n := range nodes[start:end] {
			spec := map[string]any{}
			if n.Spec.PodCIDR != "" {
				spec["podCIDR"], spec["podCIDRs"] = n.Spec.PodCIDR, n.Spec.PodCIDRs
			}
			items = append(items, map[string]any{
				"metadata": map[string]any{"name": n.Name, "uid": "u-" + n.Name, "resourceVersion": "7", "annotations": n.Annotations,
					"labels": map[string]string{"kubernetes.io/os": "linux"}},
				"spec":   spec,
				"status": map[string]any{"conditions": []any{map[string]any{"type": "Ready", "status": "True"}}, "images": []any{map[string]any{"names": []string{"x"}}}},
			})
		}
		meta := map[string]any{"resourceVersion": "7"}
		if end < len(nodes) {
			meta["continue"] = fmt.Sprintf("page-%d", end)
		}
		json.NewEncoder(w).Encode(map[string]any{"kind": "NodeList", "apiVersion": "v1", "metadata": meta, "items": items})
	}))
	t.Cleanup(f.Close)
	return f
}

func writeKubeconfig(t *testing.T, server, token string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: %s
    insecure-skip-tls-verify: true
users:
- name: u
  user:
    token: %s
contexts:
- name: x
  context:
    cluster: c
    user: u
current-context: x
`, server, token)
	if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The command against an API server: every page is read, the kubeconfig's
// token is sent, the etcd flags play no part, and failures name the server.
func TestKubeLeasesCommand(t *testing.T) {
	srv := newFakeAPIServer(t, sampleNodes())
	kc := writeKubeconfig(t, srv.URL, "tok3n")

	code, stdout, stderr := captured(t, []string{"leases", "--kubeconfig", kc, "-o", "json", "--etcd-endpoints=http://127.0.0.1:1"}, nil, "")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d\n%s%s", code, stdout, stderr)
	}
	var views []nodeView
	if err := json.Unmarshal([]byte(stdout), &views); err != nil {
		t.Fatal(err)
	}
	if len(views) != len(sampleNodes()) {
		t.Errorf("%d rows, want %d", len(views), len(sampleNodes()))
	}
	want, _ := json.Marshal(buildNodeViews(sampleNodes(), defaultKeys(t)))
	got, _ := json.Marshal(views)
	if string(got) != string(want) {
		t.Errorf("over HTTP:\n%s\nwant:\n%s", got, want)
	}
	srv.mu.Lock()
	if len(srv.requests) != 6 || srv.requests[0] != "GET /api/v1/nodes?limit=500&timeout=15s" || srv.requests[1] != "GET /api/v1/nodes?continue=page-2&limit=500&timeout=15s" {
		t.Errorf("requests: %q", srv.requests)
	}
	for _, a := range srv.auth {
		if a != "Bearer tok3n" {
			t.Errorf("Authorization %q", a)
		}
	}
	// Protobuf first (subnet/kube's decoder), JSON as this server answers.
	if a := srv.accept[0]; a != "application/vnd.kubernetes.protobuf,application/json" {
		t.Errorf("Accept %q", a)
	}
	srv.mu.Unlock()

	code, stdout, stderr = captured(t, []string{"leases", "--kubeconfig=" + kc}, nil, "")
	if code != 0 || !strings.HasPrefix(stdout, "NODE  SUBNET") || !strings.Contains(stdout, "unusable lease on Node n6") {
		t.Errorf("table: exit %d\n%s%s", code, stdout, stderr)
	}

	srv.mu.Lock()
	srv.forbid = true
	srv.mu.Unlock()
	code, stdout, stderr = captured(t, []string{"leases", "--kubeconfig=" + kc}, nil, "")
	if code != 1 || stdout != "" || !strings.Contains(stderr, "flannelctl leases: list Nodes at "+srv.URL+": nodes is forbidden: User") {
		t.Errorf("forbidden: exit %d\n%s%s", code, stdout, stderr)
	}

	// Nothing listens: the error names the server.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "https://" + ln.Addr().String()
	ln.Close()
	code, _, stderr = captured(t, []string{"leases", "--timeout=2s", "--kubeconfig=" + writeKubeconfig(t, dead, "x")}, nil, "")
	if code != 1 || !strings.Contains(stderr, "list Nodes at "+dead+": ") {
		t.Errorf("unreachable: exit %d\n%s", code, stderr)
	}
}

func TestKubeLeasesUsage(t *testing.T) {
	for _, c := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"leases", "--kube-annotation-prefix=example.com/fl"}, 2, "--kube-annotation-prefix needs --kubeconfig"},
		{[]string{"leases", "--kubeconfig=/nonexistent", "--kube-annotation-prefix=nodots"}, 2, `invalid --kube-annotation-prefix "nodots": subnet/kube: prefix must be in a format`},
		{[]string{"leases", "--kubeconfig=/nonexistent", "-o", "xml"}, 2, `invalid -o "xml"`},
		{[]string{"leases", "--kubeconfig=/nonexistent"}, 1, "flannelctl leases: kubeconfig /nonexistent: "},
	} {
		code, _, stderr := captured(t, c.args, nil, "")
		if code != c.code || !strings.Contains(stderr, c.stderr) {
			t.Errorf("%q: exit %d, stderr:\n%s\nwant exit %d and %q", c.args, code, stderr, c.code, c.stderr)
		}
	}
}
