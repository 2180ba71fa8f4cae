//go:build linux

// An external test package: pkg/lab imports dist (the embedded manifest).
package dist_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
)

// TestPrivilegedManifestsServerDryRun applies both manifests with
// `kubectl apply --dry-run=server` to the lab's real kube-apiserver: the
// server decodes, defaults and validates every object (unknown or misspelt
// fields included: kubectl asks for strict field validation), so a manifest
// the API would reject fails here. A broken copy must fail too, which shows
// the check bites.
func TestPrivilegedManifestsServerDryRun(t *testing.T) {
	lab.SkipUnlessPrivileged(t)
	var bins lab.Binaries
	lab.RequireKubeBinaries(t, &bins) // first: skipping needs no build
	var err error
	if bins.LabEtcd, err = lab.Build(context.Background(), "lab-etcd"); err != nil {
		t.Fatal(err)
	}
	l := lab.NewT(t, lab.Options{Binaries: bins})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := l.StartEtcd(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.StartKubeAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	// A server dry run creates nothing, so the namespaced objects would
	// find no namespace kube-flannel: apply it for real first (with
	// kubectl, which then finds its own last-applied annotation on it).
	ns := filepath.Join(t.TempDir(), "namespace.yml")
	if err := os.WriteFile(ns, []byte(namespaceYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Kubectl(ctx, "apply", "-f", ns); err != nil {
		t.Fatal(err)
	}

	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Dir(file)
	for _, tc := range []struct {
		file string
		want []string // kubectl's line per object
	}{
		{"kube-flannel.yml", []string{
			"namespace/kube-flannel unchanged",
			"clusterrole.rbac.authorization.k8s.io/flannel created",
			"clusterrolebinding.rbac.authorization.k8s.io/flannel created",
			"serviceaccount/flannel created",
			"configmap/kube-flannel-cfg created",
			"daemonset.apps/kube-flannel-ds created",
		}},
		{"kube-flannel-etcd.yml", []string{
			"namespace/kube-flannel unchanged",
			"serviceaccount/flannel created",
			"configmap/kube-flannel-cfg created",
			"daemonset.apps/kube-flannel-ds created",
		}},
	} {
		out, err := l.Kubectl(ctx, "apply", "--dry-run=server", "--validate=strict", "-f", filepath.Join(dir, tc.file))
		if err != nil {
			t.Errorf("%s: %v", tc.file, err)
			continue
		}
		t.Logf("kubectl apply --dry-run=server -f %s:\n%s", tc.file, out)
		for _, w := range tc.want {
			if !strings.Contains(out, w+" (server dry run)\n") {
				t.Errorf("%s: no %q in kubectl's output:\n%s", tc.file, w+" (server dry run)", out)
			}
		}
		if strings.Contains(out, "Warning") {
			t.Errorf("%s: kubectl warns:\n%s", tc.file, out)
		}
	}

	// Two mistakes the API rejects: a misspelt field and a wrong
	// hostPath type.
	orig, err := os.ReadFile(filepath.Join(dir, "kube-flannel.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ from, to, want string }{
		{"hostNetwork: true", "hostNetwrok: true", "unknown field"},
		{"type: FileOrCreate", "type: FileOrMake", "Unsupported value"},
	} {
		broken := strings.Replace(string(orig), bad.from, bad.to, 1)
		if broken == string(orig) {
			t.Fatalf("kube-flannel.yml has no %q", bad.from)
		}
		path := filepath.Join(t.TempDir(), "broken.yml")
		if err := os.WriteFile(path, []byte(broken), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := l.Kubectl(ctx, "apply", "--dry-run=server", "--validate=strict", "-f", path)
		t.Logf("with %q: %v", bad.to, err)
		if err == nil || !strings.Contains(out, bad.want) {
			t.Errorf("%s: kubectl apply --dry-run=server: %v, want a failure with %q:\n%s", bad.to, err, bad.want, out)
		}
	}
}

// namespaceYAML is the manifests' Namespace (so its dry run is
// "unchanged").
const namespaceYAML = `apiVersion: v1
kind: Namespace
metadata:
  name: kube-flannel
  labels:
    k8s-app: flannel
    pod-security.kubernetes.io/enforce: privileged
`
