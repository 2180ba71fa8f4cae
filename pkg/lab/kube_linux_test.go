//go:build linux

package lab

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flannelng/flannel/dist"
	"sigs.k8s.io/yaml"
)

func TestKubeAPIServerArgs(t *testing.T) {
	args := kubeAPIServerArgs("/lab/kube", "http://172.30.255.254:2379")
	flags := map[string]string{}
	for _, a := range args {
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !ok || !strings.HasPrefix(a, "--") {
			t.Errorf("argument %q is not --name=value", a)
		}
		if _, dup := flags[name]; dup {
			t.Errorf("--%s given twice", name)
		}
		flags[name] = value
	}
	for name, want := range map[string]string{
		"etcd-servers":                     "http://172.30.255.254:2379",
		"bind-address":                     "172.30.255.254",
		"advertise-address":                "172.30.255.254",
		"secure-port":                      "6443",
		"cert-dir":                         "/lab/kube/certs",
		"token-auth-file":                  "/lab/kube/tokens.csv",
		"authorization-mode":               "RBAC",
		"service-account-key-file":         "/lab/kube/sa.pub",
		"service-account-signing-key-file": "/lab/kube/sa.key",
		"service-account-issuer":           kubeIssuer,
		"service-cluster-ip-range":         "10.96.0.0/16",
		"audit-log-path":                   "/lab/kube/audit.log",
	} {
		if flags[name] != want {
			t.Errorf("--%s=%q, want %q", name, flags[name], want)
		}
	}
	if got := (&Lab{}).KubeAPIServerURL(); got != "https://172.30.255.254:6443" {
		t.Errorf("KubeAPIServerURL %s", got)
	}
	// The fabric's own address: hosts reach it through their default
	// route, and it is not a loopback address (which kube-apiserver
	// refuses to advertise).
	if flags["bind-address"] != fabric4.String() {
		t.Errorf("bound to %s, not the fabric bridge %s", flags["bind-address"], fabric4)
	}
}

func TestKubeFiles(t *testing.T) {
	dir := t.TempDir()
	token, err := kubeFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(token) != 32 {
		t.Errorf("admin token %q: want 32 hex digits", token)
	}
	tokens, err := os.ReadFile(filepath.Join(dir, "tokens.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if want := token + `,admin,admin,"system:masters"` + "\n"; string(tokens) != want {
		t.Errorf("tokens.csv %q, want %q", tokens, want)
	}

	keyPEM, err := os.ReadFile(filepath.Join(dir, "sa.key"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "sa.key")); fi.Mode().Perm() != 0o600 {
		t.Errorf("sa.key mode %v, want 0600", fi.Mode().Perm())
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		t.Fatal("sa.key is not PEM")
	}
	key, err := x509.ParsePKCS1PrivateKey(kb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := os.ReadFile(filepath.Join(dir, "sa.pub"))
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := pem.Decode(pubPEM)
	if pb == nil || pb.Type != "PUBLIC KEY" {
		t.Fatal("sa.pub is not a PEM public key")
	}
	pub, err := x509.ParsePKIXPublicKey(pb.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if rp, ok := pub.(*rsa.PublicKey); !ok || !rp.Equal(&key.PublicKey) {
		t.Error("sa.pub is not the public half of sa.key")
	}
	policy, err := os.ReadFile(filepath.Join(dir, "audit-policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := yaml.YAMLToJSONStrict(policy); err != nil {
		t.Errorf("audit policy: %v", err)
	}

	// A restart keeps the key pair and the token: tokens handed out stay
	// valid.
	again, err := kubeFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	keyAgain, _ := os.ReadFile(filepath.Join(dir, "sa.key"))
	if again != token || !bytes.Equal(keyAgain, keyPEM) {
		t.Error("a second kubeFiles changed the admin token or the service-account key")
	}
}

func TestFlannelRBACObjects(t *testing.T) {
	objs, err := flannelRBACObjects(dist.KubeFlannelYAML)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range objs {
		got = append(got, o.kind+" "+o.path)
		var m map[string]any
		if err := json.Unmarshal(o.body, &m); err != nil || m["kind"] != o.kind {
			t.Errorf("%s: body is not its JSON object (%v)", o.kind, err)
		}
	}
	want := []string{
		"Namespace /api/v1/namespaces/kube-flannel",
		"ServiceAccount /api/v1/namespaces/kube-flannel/serviceaccounts/flannel",
		"ClusterRole /apis/rbac.authorization.k8s.io/v1/clusterroles/flannel",
		"ClusterRoleBinding /apis/rbac.authorization.k8s.io/v1/clusterrolebindings/flannel",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("objects\n%q\nwant\n%q", got, want)
	}

	// A manifest without the binding, or with a second role, is refused:
	// the rig must not silently grant something else.
	docs := splitYAML(dist.KubeFlannelYAML)
	var noBinding, twoRoles [][]byte
	for _, d := range docs {
		if strings.Contains(string(d), "kind: ClusterRoleBinding") {
			continue
		}
		noBinding = append(noBinding, d)
	}
	for _, d := range docs {
		twoRoles = append(twoRoles, d)
		if strings.Contains(string(d), "\nkind: ClusterRole\n") {
			twoRoles = append(twoRoles, d)
		}
	}
	for name, docs := range map[string][][]byte{"no binding": noBinding, "two roles": twoRoles} {
		if _, err := flannelRBACObjects(bytes.Join(docs, []byte("\n---\n"))); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestRenderKubeconfig(t *testing.T) {
	b := renderKubeconfig("https://172.30.255.254:6443", "system:serviceaccount:kube-flannel:flannel", "eyJhb.x-y_z")
	js, err := yaml.YAMLToJSONStrict(b)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Clusters []struct {
			Name    string `json:"name"`
			Cluster struct {
				Server   string `json:"server"`
				Insecure bool   `json:"insecure-skip-tls-verify"`
			} `json:"cluster"`
		} `json:"clusters"`
		Users []struct {
			Name string `json:"name"`
			User struct {
				Token string `json:"token"`
			} `json:"user"`
		} `json:"users"`
		Contexts []struct {
			Name    string `json:"name"`
			Context struct {
				Cluster string `json:"cluster"`
				User    string `json:"user"`
			} `json:"context"`
		} `json:"contexts"`
		Current string `json:"current-context"`
	}
	if err := json.Unmarshal(js, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Clusters) != 1 || len(cfg.Users) != 1 || len(cfg.Contexts) != 1 {
		t.Fatalf("kubeconfig %s", js)
	}
	cl, u, c := cfg.Clusters[0], cfg.Users[0], cfg.Contexts[0]
	if cl.Cluster.Server != "https://172.30.255.254:6443" || !cl.Cluster.Insecure || u.User.Token != "eyJhb.x-y_z" ||
		cfg.Current != c.Name || c.Context.Cluster != cl.Name || c.Context.User != u.Name {
		t.Errorf("kubeconfig %s", js)
	}
}

func TestNewNodeJSON(t *testing.T) {
	for _, tc := range []struct {
		name        string
		podCIDRs    []string
		annotations map[string]string
		want        string
	}{
		{"n1", []string{"10.244.1.0/24"}, map[string]string{"node.alpha.kubernetes.io/ttl": "0"},
			`{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1","annotations":{"node.alpha.kubernetes.io/ttl":"0"}},"spec":{"podCIDR":"10.244.1.0/24","podCIDRs":["10.244.1.0/24"]},"status":{}}`},
		{"n2", []string{"10.244.2.0/24", "fd00:10:244:2::/64"}, nil,
			`{"apiVersion":"v1","kind":"Node","metadata":{"name":"n2"},"spec":{"podCIDR":"10.244.2.0/24","podCIDRs":["10.244.2.0/24","fd00:10:244:2::/64"]},"status":{}}`},
		{"n3", nil, nil,
			`{"apiVersion":"v1","kind":"Node","metadata":{"name":"n3"},"spec":{},"status":{}}`},
	} {
		b, err := newNodeJSON(tc.name, tc.podCIDRs, tc.annotations)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != tc.want {
			t.Errorf("%s:\n%s\nwant\n%s", tc.name, b, tc.want)
		}
	}
}

func TestKubeAPIErrorDecode(t *testing.T) {
	e := kubeAPIError("PATCH", "/api/v1/nodes/n1", 403,
		[]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"nodes \"n1\" is forbidden","reason":"Forbidden","code":403}`))
	if e.Reason != "Forbidden" || e.Message != `nodes "n1" is forbidden` || KubeStatusCode(fmt.Errorf("x: %w", e)) != 403 {
		t.Errorf("%+v", e)
	}
	if e := kubeAPIError("GET", "/readyz", 500, []byte("[-]etcd failed\n")); e.Message != "[-]etcd failed" || e.Reason != "" {
		t.Errorf("%+v", e)
	}
	if KubeStatusCode(fmt.Errorf("dial: refused")) != 0 {
		t.Error("a transport error has a status code")
	}
}

// TestFlanneldKubeCommand checks the command line and environment
// StartFlanneldKube gives flanneld.
func TestFlanneldKubeCommand(t *testing.T) {
	h := &Host{Name: "h2", Dir: "/lab/h2"}
	argv := flanneldKubeArgv("/bin/flanneld", h, "/lab/kube/flannel.kubeconfig", "/lab/h2/net-conf.json", []string{"--healthz-port=8081", "--iface=eth0"})
	want := []string{"/bin/flanneld", "--kube-subnet-mgr", "--kubeconfig-file=/lab/kube/flannel.kubeconfig",
		"--net-config-path=/lab/h2/net-conf.json", "--subnet-file=/lab/h2/subnet.env", "--healthz-port=8081", "--iface=eth0"}
	if !reflect.DeepEqual(argv, want) {
		t.Errorf("argv\n%q\nwant\n%q", argv, want)
	}
	for _, a := range argv {
		if strings.HasPrefix(a, "--etcd") {
			t.Errorf("kube mode with an etcd flag: %s", a)
		}
	}
	for _, tc := range []struct {
		env  map[string]string
		want []string
	}{
		{nil, []string{"NODE_NAME=h2"}},
		{map[string]string{"NODE_NAME": "n7", "EVENT_QUEUE_DEPTH": "10"}, []string{"EVENT_QUEUE_DEPTH=10", "NODE_NAME=n7"}},
		{map[string]string{"NODE_NAME": "", "POD_NAME": "p", "POD_NAMESPACE": "kube-flannel"}, []string{"POD_NAME=p", "POD_NAMESPACE=kube-flannel"}},
	} {
		if got := flanneldKubeEnv(h, tc.env); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("env %v: %q, want %q", tc.env, got, tc.want)
		}
	}
}

func TestParseKubeAudit(t *testing.T) {
	log := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","stage":"ResponseComplete","requestURI":"/api/v1/nodes/n1/status?fieldManager=flanneld","verb":"patch","user":{"username":"system:serviceaccount:kube-flannel:flannel","groups":["system:serviceaccounts"]},"userAgent":"flanneld/v0.1.0","objectRef":{"resource":"nodes","name":"n1","apiVersion":"v1","subresource":"status"},"responseStatus":{"metadata":{},"code":200}}
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","stage":"ResponseComplete","requestURI":"/api/v1/nodes","verb":"list","user":{"username":"admin"},"objectRef":{"resource":"nodes","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200}}
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Meta`
	evs, err := parseKubeAudit([]byte(log))
	if err != nil {
		t.Fatal(err)
	}
	want := []KubeAuditEvent{
		{Verb: "patch", User: "system:serviceaccount:kube-flannel:flannel", UserAgent: "flanneld/v0.1.0", Resource: "nodes", Subresource: "status", Name: "n1", Code: 200, URI: "/api/v1/nodes/n1/status?fieldManager=flanneld", Stage: "ResponseComplete"},
		{Verb: "list", User: "admin", Resource: "nodes", Code: 200, URI: "/api/v1/nodes", Stage: "ResponseComplete"},
	}
	if !reflect.DeepEqual(evs, want) {
		t.Errorf("events\n%+v\nwant\n%+v", evs, want)
	}
}

// kubeLab starts a lab with etcd and the kube-apiserver, or skips (no
// root; no kube binaries outside `make test`).
func kubeLab(t *testing.T, o Options) (*Lab, context.Context) {
	t.Helper()
	SkipUnlessPrivileged(t)
	bins := o.Binaries
	RequireKubeBinaries(t, &bins) // first: skipping needs no build
	if bins.LabEtcd == "" {
		bins.LabEtcd = labEtcd(t).LabEtcd
	}
	o.Binaries = bins
	l := NewT(t, o)
	ctx := testCtx(t, 4*time.Minute)
	if err := l.StartEtcd(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := l.StartKubeAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver ready in %s", time.Since(start).Round(time.Millisecond))
	return l, ctx
}

// The permissions upstream's ClusterRole grants, and nothing else: checked
// against the API server's own RBAC decision for the ServiceAccount.
var flannelAllowed = []string{"nodes/status:patch", "nodes:get", "nodes:list", "nodes:watch", "pods:get"}

// TestPrivilegedKubeAPIServer runs the real kube-apiserver on the lab's
// etcd: Nodes as node IPAM makes them, the ServiceAccount of
// dist/kube-flannel.yml with exactly its verbs, kubectl, the audit log, and
// an outage (stop, start) that loses nothing.
func TestPrivilegedKubeAPIServer(t *testing.T) {
	l, ctx := kubeLab(t, Options{})
	kc, err := l.Kube(ctx)
	if err != nil {
		t.Fatal(err)
	}

	kubeletAnnotations := map[string]string{
		"node.alpha.kubernetes.io/ttl":                           "0",
		"volumes.kubernetes.io/controller-managed-attach-detach": "true",
	}
	nodes := []struct {
		name        string
		podCIDRs    []string
		annotations map[string]string
	}{
		{"n1", []string{"10.244.1.0/24"}, kubeletAnnotations},
		{"n2", []string{"10.244.2.0/24", "fd00:10:244:2::/64"}, kubeletAnnotations}, // dual stack
		{"n3", []string{"10.244.3.0/24"}, nil},                                      // no annotations at all
		{"n4", nil, kubeletAnnotations},                                             // no podCIDR yet
	}
	for _, n := range nodes {
		if err := kc.CreateNode(ctx, n.name, n.podCIDRs, n.annotations); err != nil {
			t.Fatal(err)
		}
	}
	if err := kc.CreateNode(ctx, "n1", nil, nil); KubeStatusCode(err) != http.StatusConflict {
		t.Errorf("creating n1 twice: %v, want 409", err)
	}
	check := func(when string) {
		t.Helper()
		for _, n := range nodes {
			got, err := kc.GetNode(ctx, n.name)
			if err != nil {
				t.Errorf("%s: %v", when, err)
				continue
			}
			wantCIDR := ""
			if len(n.podCIDRs) > 0 {
				wantCIDR = n.podCIDRs[0]
			}
			if got.PodCIDR != wantCIDR || !reflect.DeepEqual(got.PodCIDRs, n.podCIDRs) {
				t.Errorf("%s: %s podCIDR %q podCIDRs %q, want %q %q", when, n.name, got.PodCIDR, got.PodCIDRs, wantCIDR, n.podCIDRs)
			}
			for k, v := range n.annotations {
				if got.Annotations[k] != v {
					t.Errorf("%s: %s annotation %s=%q, want %q", when, n.name, k, got.Annotations[k], v)
				}
			}
			if n.annotations == nil && got.Annotations != nil {
				t.Errorf("%s: %s has annotations %v, want none", when, n.name, got.Annotations)
			}
		}
	}
	check("created")

	// podCIDR is set once, later, by node IPAM; then it is fixed.
	if err := kc.SetPodCIDR(ctx, "n4", []string{"10.244.4.0/24"}); err != nil {
		t.Fatal(err)
	}
	nodes[3].podCIDRs = []string{"10.244.4.0/24"}
	if err := kc.SetPodCIDR(ctx, "n4", []string{"10.244.40.0/24"}); KubeStatusCode(err) != http.StatusUnprocessableEntity {
		t.Errorf("changing n4's podCIDR: %v, want 422", err)
	}
	check("podCIDR set")
	list, err := kc.ListNodes(ctx)
	if err != nil || len(list) != len(nodes) {
		t.Fatalf("ListNodes: %d nodes, %v", len(list), err)
	}

	// flanneld's identity: the manifest's ServiceAccount and ClusterRole.
	kcfg, err := l.KubeconfigForFlannel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := l.KubeconfigForFlannel(ctx); err != nil || again != kcfg {
		t.Errorf("a second KubeconfigForFlannel: %+v, %v", again, err)
	}
	if kcfg.User != "system:serviceaccount:kube-flannel:flannel" || kcfg.Server != l.KubeAPIServerURL() {
		t.Errorf("flannel kubeconfig %+v", kcfg)
	}
	if b, err := os.ReadFile(kcfg.Path); err != nil || !strings.Contains(string(b), kcfg.Token) {
		t.Errorf("flannel kubeconfig file: %v", err)
	}
	fc := kc.WithToken(kcfg.Token)
	if got := accessMatrix(t, ctx, fc); !reflect.DeepEqual(got, flannelAllowed) {
		t.Errorf("the flannel ServiceAccount may\n%q\nwant exactly upstream's\n%q", got, flannelAllowed)
	}
	// The same with real requests.
	if _, err := fc.ListNodes(ctx); err != nil {
		t.Errorf("flannel lists nodes: %v", err)
	}
	annotate := []byte(`{"metadata":{"annotations":{"flannel.alpha.coreos.com/kube-subnet-manager":"true"}}}`)
	if _, err := fc.Do(ctx, http.MethodPatch, "/api/v1/nodes/n3/status", "application/merge-patch+json", annotate); err != nil {
		t.Errorf("flannel patches nodes/n3/status: %v", err)
	}
	if _, err := fc.Do(ctx, http.MethodPatch, "/api/v1/nodes/n1", "application/merge-patch+json", annotate); KubeStatusCode(err) != http.StatusForbidden {
		t.Errorf("flannel patches nodes/n1: %v, want 403", err)
	}
	if err := fc.DeleteNode(ctx, "n1"); KubeStatusCode(err) != http.StatusForbidden {
		t.Errorf("flannel deletes n1: %v, want 403", err)
	}
	if _, err := fc.Do(ctx, http.MethodGet, "/api/v1/namespaces/kube-flannel/pods/nope", "", nil); KubeStatusCode(err) != http.StatusNotFound {
		t.Errorf("flannel gets a missing pod: %v, want 404 (allowed, not there)", err)
	}
	if n3, err := kc.GetNode(ctx, "n3"); err != nil || n3.Annotations["flannel.alpha.coreos.com/kube-subnet-manager"] != "true" {
		t.Errorf("n3 after flannel's status patch: %+v, %v", n3, err)
	}
	nodes[2].annotations = map[string]string{"flannel.alpha.coreos.com/kube-subnet-manager": "true"}

	// The audit log shows who wrote what.
	err = l.WaitFor(ctx, 10*time.Second, "audit events", func() error {
		evs, err := l.KubeAuditEvents()
		if err != nil {
			return err
		}
		var flannel []string
		for _, e := range evs {
			if e.User == kcfg.User && e.Verb == "patch" {
				flannel = append(flannel, fmt.Sprintf("%s/%s/%s %d", e.Resource, e.Name, e.Subresource, e.Code))
			}
		}
		if want := []string{"nodes/n3/status 200", "nodes/n1/ 403"}; !reflect.DeepEqual(flannel, want) {
			return fmt.Errorf("flannel's patches %q, want %q", flannel, want)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}

	out, err := l.Kubectl(ctx, "get", "nodes", "-o", "name")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if !strings.Contains(out, "node/"+n.name+"\n") {
			t.Errorf("kubectl get nodes: %q has no %s", out, n.name)
		}
	}

	// An outage: the objects, and the token, come back with the server.
	p := l.KubeAPIServer()
	stop := time.Now()
	if err := l.StopKubeAPIServer(); err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver stopped in %s", time.Since(stop).Round(time.Millisecond))
	if code, _ := p.Wait(0); code != 0 {
		t.Errorf("kube-apiserver exit code %d after SIGTERM, want 0", code)
	}
	if _, err := kc.ListNodes(ctx); err == nil || KubeStatusCode(err) != 0 {
		t.Errorf("ListNodes while the API server is down: %v, want a connection error", err)
	}
	start := time.Now()
	if err := l.StartKubeAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("kube-apiserver ready again in %s", time.Since(start).Round(time.Millisecond))
	check("after flannel and a restart")
	if _, err := fc.ListNodes(ctx); err != nil {
		t.Errorf("the flannel token after a restart: %v", err)
	}
	if err := kc.DeleteNode(ctx, "n4"); err != nil {
		t.Error(err)
	}
	if _, err := kc.GetNode(ctx, "n4"); KubeStatusCode(err) != http.StatusNotFound {
		t.Errorf("n4 after delete: %v, want 404", err)
	}
}

// accessMatrix asks the API server (SelfSubjectAccessReview, as c) which
// verbs c has on resources flanneld might touch, and returns the allowed
// ones as resource:verb, sorted.
func accessMatrix(t *testing.T, ctx context.Context, c *KubeClient) []string {
	t.Helper()
	type res struct{ group, resource, subresource, namespace string }
	resources := []res{
		{"", "nodes", "", ""}, {"", "nodes", "status", ""},
		{"", "pods", "", ""}, {"", "pods", "", "kube-flannel"}, {"", "pods", "status", "kube-flannel"},
		{"", "namespaces", "", ""}, {"", "configmaps", "", "kube-flannel"}, {"", "secrets", "", "kube-flannel"},
		{"", "services", "", ""}, {"", "endpoints", "", ""}, {"", "events", "", "kube-flannel"},
		{"coordination.k8s.io", "leases", "", "kube-flannel"}, {"apps", "daemonsets", "", "kube-flannel"},
		{"networking.k8s.io", "networkpolicies", "", ""},
	}
	verbs := []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
	allowed := map[string]bool{}
	for _, r := range resources {
		for _, v := range verbs {
			body, err := json.Marshal(map[string]any{
				"apiVersion": "authorization.k8s.io/v1",
				"kind":       "SelfSubjectAccessReview",
				"spec": map[string]any{"resourceAttributes": map[string]string{
					"group": r.group, "resource": r.resource, "subresource": r.subresource, "namespace": r.namespace, "verb": v,
				}},
			})
			if err != nil {
				t.Fatal(err)
			}
			b, err := c.Do(ctx, http.MethodPost, "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", "application/json", body)
			if err != nil {
				t.Fatal(err)
			}
			var review struct {
				Status struct {
					Allowed bool `json:"allowed"`
				} `json:"status"`
			}
			if err := json.Unmarshal(b, &review); err != nil {
				t.Fatal(err)
			}
			if review.Status.Allowed {
				name := r.resource
				if r.subresource != "" {
					name += "/" + r.subresource
				}
				if r.group != "" {
					name = r.group + "/" + name
				}
				allowed[name+":"+v] = true
			}
		}
	}
	var out []string
	for k := range allowed {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestPrivilegedFlanneldKube starts flanneld with StartFlanneldKube on a
// Node that has its podCIDR (and no annotations): it must write subnet.env
// from the podCIDR, publish its annotations and the NetworkUnavailable
// condition, and write only through PATCH nodes/<self>/status, as the
// manifest's ServiceAccount.
func TestPrivilegedFlanneldKube(t *testing.T) {
	SkipUnlessPrivileged(t)
	skipUnlessProgram(t, "flanneld")
	var bins Binaries
	RequireKubeBinaries(t, &bins)
	bins.LabEtcd = labEtcd(t).LabEtcd
	var err error
	if bins.Flanneld, err = Build(context.Background(), "flanneld"); err != nil {
		t.Fatal(err)
	}
	l, ctx := kubeLab(t, Options{Hosts: 1, Binaries: bins})
	h := l.Hosts()[0]
	kc, err := l.Kube(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := kc.CreateNode(ctx, h.Name, []string{"10.244.7.0/24"}, nil); err != nil {
		t.Fatal(err)
	}
	p, err := l.StartFlanneldKube(h, nil, `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(p.Argv, "--kube-subnet-mgr") || !slices.Contains(p.Argv, "--net-config-path="+filepath.Join(h.Dir, "net-conf.json")) {
		t.Errorf("argv %q", p.Argv)
	}
	if b, err := os.ReadFile(filepath.Join(h.Dir, "net-conf.json")); err != nil || !strings.Contains(string(b), "vxlan") {
		t.Errorf("net-conf.json: %q, %v", b, err)
	}
	var env SubnetEnv
	err = l.WaitFor(ctx, 30*time.Second, h.Name+" subnet.env", func() error {
		if p.Exited() {
			return Permanent(fmt.Errorf("flanneld exited:\n%s", tail(p.Log(), 20)))
		}
		env, err = ReadSubnetEnv(h.SubnetFile())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if env.Subnet.String() != "10.244.7.0/24" || env.Gateway.String() != "10.244.7.1" {
		t.Errorf("subnet.env: subnet %s gateway %s, want 10.244.7.0/24 and .1 (from the podCIDR)", env.Subnet, env.Gateway)
	}
	err = l.WaitFor(ctx, 20*time.Second, "annotations", func() error {
		n, err := kc.GetNode(ctx, h.Name)
		if err != nil {
			return err
		}
		if n.Annotations["flannel.alpha.coreos.com/kube-subnet-manager"] != "true" ||
			n.Annotations["flannel.alpha.coreos.com/public-ip"] != h.IP.String() ||
			n.Annotations["flannel.alpha.coreos.com/backend-type"] != "vxlan" {
			return fmt.Errorf("annotations %v", n.Annotations)
		}
		if c, _ := n.Condition("NetworkUnavailable"); c.Status != "False" || c.Reason != "FlannelIsUp" {
			return fmt.Errorf("condition NetworkUnavailable %+v, want False, FlannelIsUp", c)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	evs, err := l.KubeAuditEvents()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.User != "system:serviceaccount:kube-flannel:flannel" {
			continue
		}
		switch {
		case e.Verb == "get" || e.Verb == "list" || e.Verb == "watch":
		case e.Verb == "patch" && e.Resource == "nodes" && e.Subresource == "status" && e.Name == h.Name:
		default:
			t.Errorf("flanneld wrote %s %s (%d): only PATCH nodes/%s/status is expected", e.Verb, e.URI, e.Code, h.Name)
		}
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Error(err)
	}
	if code, err := p.Wait(10 * time.Second); err != nil || code != 0 {
		t.Errorf("flanneld after SIGTERM: exit %d, %v", code, err)
	}
}
