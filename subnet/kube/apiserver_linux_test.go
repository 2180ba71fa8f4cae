//go:build linux

package kube_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
	"github.com/flannelng/flannel/subnet"
	"github.com/flannelng/flannel/subnet/kube"
)

// childEnv marks the run of this test inside the lab's fabric namespace,
// where the kube-apiserver listens.
const childEnv = "SUBNET_KUBE_APISERVER_CHILD"

// TestPrivilegedAPIServer runs the Manager against a real kube-apiserver
// with exactly the ClusterRole of dist/kube-flannel.yml: protobuf lists
// and streaming watches, the status PATCH, the condition, the transform
// keeping irrelevant updates away, and the audit log showing that the
// only write is PATCH nodes/<self>/status.
func TestPrivilegedAPIServer(t *testing.T) {
	if os.Getenv(childEnv) != "" {
		apiserverChild(t)
		return
	}
	lab.SkipUnlessPrivileged(t)
	var bins lab.Binaries
	lab.RequireKubeBinaries(t, &bins)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	etcd, err := lab.Build(ctx, "lab-etcd")
	if err != nil {
		t.Fatal(err)
	}
	bins.LabEtcd = etcd
	l := lab.NewT(t, lab.Options{Binaries: bins})
	if err := l.StartEtcd(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.StartKubeAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	fl, err := l.KubeconfigForFlannel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := l.KubeconfigForAdmin()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", l.FabricNS(), os.Args[0], "-test.run=^TestPrivilegedAPIServer$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"=1", "KUBECONFIG_FLANNEL="+fl.Path, "ADMIN_TOKEN="+admin.Token, "ADMIN_SERVER="+admin.Server,
		"NET_CONF="+filepath.Join(t.TempDir(), "net-conf.json"))
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	events, err := l.KubeAuditEvents()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range events {
		if e.User != fl.User {
			continue
		}
		n++
		ok := e.Resource == "nodes" && (e.Verb == "list" || e.Verb == "watch" || e.Verb == "get" && e.Subresource == "" ||
			e.Verb == "patch" && e.Subresource == "status" && e.Name == "n1")
		if !ok || e.Code >= 400 {
			t.Errorf("flannel request %s %s/%s %s: %d", e.Verb, e.Resource, e.Subresource, e.Name, e.Code)
		}
	}
	if n == 0 {
		t.Error("no request of the flannel user in the audit log")
	}
}

// admin is the test's own client, with the admin's token.
type admin struct {
	server, token string
	c             *http.Client
}

func (a admin) do(t *testing.T, method, path, ctype string, body any) map[string]any {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, a.server+path, r)
	req.Header.Set("Authorization", "Bearer "+a.token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := a.c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	var out map[string]any
	json.Unmarshal(b, &out)
	return out
}

func annotations(n map[string]any) map[string]any {
	md, _ := n["metadata"].(map[string]any)
	a, _ := md["annotations"].(map[string]any)
	return a
}

func apiserverChild(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	adm := admin{os.Getenv("ADMIN_SERVER"), os.Getenv("ADMIN_TOKEN"), &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}
	p := kube.DefaultPrefix + "/"
	node := func(name string, cidrs []string, ann map[string]string) map[string]any {
		n := map[string]any{"apiVersion": "v1", "kind": "Node", "metadata": map[string]any{"name": name, "annotations": ann}}
		if len(cidrs) > 0 {
			n["spec"] = map[string]any{"podCIDR": cidrs[0], "podCIDRs": cidrs}
		}
		return n
	}
	adm.do(t, "POST", "/api/v1/nodes", "application/json", node("n1", nil, nil)) // no podCIDR, no annotations
	adm.do(t, "POST", "/api/v1/nodes", "application/json", node("n2", []string{"10.244.2.0/24"}, map[string]string{
		p + "kube-subnet-manager": "true", p + "backend-type": "vxlan", p + "public-ip": "10.199.0.3",
		p + "backend-data": `{"VNI":1,"VtepMAC":"36:02:d1:89:dc:02"}`}))
	adm.do(t, "POST", "/api/v1/nodes", "application/json", node("n3", []string{"10.244.3.0/24"}, map[string]string{"kubeadm.alpha.kubernetes.io/cri-socket": "x"}))

	conf := os.Getenv("NET_CONF")
	os.WriteFile(conf, []byte(`{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`), 0o644)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug - 8}))
	env := map[string]string{"NODE_NAME": "n1"}
	m, err := kube.New(ctx, kube.Options{
		KubeconfigFile: os.Getenv("KUBECONFIG_FLANNEL"), NetConfigPath: conf, SetNodeNetworkUnavailable: true,
		Getenv: func(k string) string { return env[k] }, Log: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	cfg, _, err := m.GetConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	attrs := subnet.LeaseAttrs{BackendType: "vxlan", BackendData: json.RawMessage(`{"VNI":1,"VtepMAC":"36:02:d1:89:dc:01"}`)}
	attrs.PublicIP, _ = netipAddr("10.199.0.2")
	got := make(chan subnet.Lease, 1)
	retried := make(chan struct{}, 1)
	go func() {
		l, err := m.Acquire(ctx, cfg, attrs, subnet.Env{}, func(error) {
			select {
			case retried <- struct{}{}:
			default:
			}
		})
		if err != nil {
			t.Error(err)
		}
		got <- l
	}()
	<-retried
	adm.do(t, "PATCH", "/api/v1/nodes/n1", "application/merge-patch+json", map[string]any{"spec": map[string]any{"podCIDR": "10.244.1.0/24", "podCIDRs": []string{"10.244.1.0/24"}}})
	own := <-got
	if own.Subnet.String() != "10.244.1.0/24" {
		t.Fatalf("lease %v", own)
	}
	n1 := adm.do(t, "GET", "/api/v1/nodes/n1", "", nil)
	want := map[string]any{p + "kube-subnet-manager": "true", p + "backend-type": "vxlan", p + "public-ip": "10.199.0.2",
		p + "backend-data": `{"VNI":1,"VtepMAC":"36:02:d1:89:dc:01"}`}
	if a := annotations(n1); fmt.Sprint(a) != fmt.Sprint(want) {
		t.Errorf("n1 annotations %v\nwant %v", a, want)
	}
	if err := m.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	n1 = adm.do(t, "GET", "/api/v1/nodes/n1", "", nil)
	if s := fmt.Sprint(n1["status"]); !strings.Contains(s, "FlannelIsUp") || !strings.Contains(s, "Flannel is running on this node") {
		t.Errorf("n1 status %s", s)
	}

	ps := m.Peers()
	deadline := time.Now().Add(20 * time.Second)
	for {
		leases, synced := ps.TakeAll()
		if synced && len(leases) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("peers %v", leases)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Status-only updates, as a kubelet's heartbeats: nothing happens.
	began := time.Now()
	for i := range 300 {
		adm.do(t, "PATCH", "/api/v1/nodes/n2/status", "application/strategic-merge-patch+json", map[string]any{"status": map[string]any{
			"conditions": []map[string]any{{"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": time.Unix(int64(1e9+i), 0).UTC().Format(time.RFC3339)}}}})
	}
	t.Logf("300 status updates sent in %v", time.Since(began))
	// A change that matters, after them: when it is seen, so were they.
	// Nothing else may have changed.
	ps.TakeAll()
	adm.do(t, "PATCH", "/api/v1/nodes/n2", "application/merge-patch+json", map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		p + "backend-data": `{"VNI":1,"VtepMAC":"36:02:d1:89:dc:22"}`}}})
	gone, came := changes(t, ps, func(_, came []subnet.Lease) bool { return len(came) > 0 })
	if len(gone) != 1 || len(came) != 1 || !strings.Contains(string(came[0].Attrs.BackendData), "dc:22") {
		t.Errorf("after 300 heartbeats and a MAC change: gone %v came %v", gone, came)
	}

	// Keep puts back what someone removes.
	kctx, kcancel := context.WithCancel(ctx)
	kept := make(chan error, 1)
	go func() { kept <- m.Keep(kctx, cfg, own) }()
	adm.do(t, "PATCH", "/api/v1/nodes/n1", "application/merge-patch+json", map[string]any{"metadata": map[string]any{"annotations": map[string]any{p + "backend-data": nil}}})
	deadline = time.Now().Add(20 * time.Second)
	for annotations(adm.do(t, "GET", "/api/v1/nodes/n1", "", nil))[p+"backend-data"] == nil {
		if time.Now().After(deadline) {
			t.Fatal("backend-data not restored")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A deleted peer is gone. Our own Node's restored annotation (Keep's
	// PATCH above) may still be on its way as a change of 10.244.1.0/24:
	// only n2's subnet counts here.
	ps.TakeAll()
	adm.do(t, "DELETE", "/api/v1/nodes/n2", "", nil)
	n2 := func(ls []subnet.Lease) (out []subnet.Lease) {
		for _, l := range ls {
			if l.Subnet.String() == "10.244.2.0/24" {
				out = append(out, l)
			}
		}
		return out
	}
	gone, came = changes(t, ps, func(gone, _ []subnet.Lease) bool { return len(n2(gone)) > 0 })
	if gone, came := n2(gone), n2(came); len(gone) != 1 || len(came) != 0 {
		t.Errorf("delete: gone %v came %v", gone, came)
	}
	kcancel()
	if err := <-kept; err != nil {
		t.Errorf("Keep = %v", err)
	}
}

// changes collects the peer source's changes until done says enough.
func changes(t *testing.T, ps subnet.PeerSource, done func(gone, came []subnet.Lease) bool) (gone, came []subnet.Lease) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for !done(gone, came) {
		select {
		case <-ps.Updated():
		case <-deadline:
			t.Fatalf("no change seen: gone %v came %v", gone, came)
		}
		g, c, all := ps.Changes()
		if all {
			t.Fatal("Changes said all")
		}
		gone, came = append(gone, g...), append(came, c...)
	}
	return gone, came
}

func netipAddr(s string) (netip.Addr, error) { return netip.ParseAddr(s) }
