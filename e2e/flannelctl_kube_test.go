//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
)

// kubeLeaseRow is one object of `flannelctl leases --kubeconfig -o json`.
type kubeLeaseRow struct {
	Node        string
	Subnet      *string
	IPv6Subnet  *string
	Managed     bool
	PublicIP    *string
	PublicIPv6  *string
	BackendType string
	VtepMAC     *string
	Annotations map[string]string
	Error       string
}

func deref(p *string) string {
	if p == nil {
		return "<nil>"
	}
	return *p
}

// flannelctl leases --kubeconfig against the lab's kube-apiserver, once
// three kube-mode daemons have published their annotations: one row per
// Node, sorted by subnet, each agreeing with the Node's annotations and the
// host's flannel.1 MAC; a Node no flannel runs on and one without a
// podCIDR are listed as unmanaged. The flannel ServiceAccount's kubeconfig
// (the manifest's ClusterRole: nodes list) gives the same listing; another
// prefix finds no managed Node; a token the server does not know exits 1.
func TestPrivilegedFlannelctlKube(t *testing.T) {
	c := newKubeLab(t, lab.Options{Hosts: 3})
	c.createNodes(t, kubeNodeOpts{bare: true})
	ctx := testCtx(t, 3*time.Minute)
	if err := c.k.CreateNode(ctx, "spare-1", []string{"10.244.99.0/24"}, map[string]string{kubeletAnnotation: "0"}); err != nil {
		t.Fatal(err)
	}
	if err := c.k.CreateNode(ctx, "spare-2", nil, nil); err != nil {
		t.Fatal(err)
	}
	// subnet.env is written after the annotations are published.
	c.start(t, kubeVXLAN)
	ctl := buildFlannelctl(t)
	admin, err := c.l.KubeconfigForAdmin()
	if err != nil {
		t.Fatal(err)
	}
	leases := func(kubeconfig string, args ...string) (int, string) {
		t.Helper()
		return runIn(t, c.l, c.l.FabricNS(), append([]string{ctl, "leases", "--kubeconfig=" + kubeconfig}, args...)...)
	}
	rows := func(kubeconfig string, args ...string) []kubeLeaseRow {
		t.Helper()
		code, out := leases(kubeconfig, append(args, "-o", "json")...)
		if code != 0 {
			t.Fatalf("flannelctl leases: exit %d\n%s", code, out)
		}
		var rs []kubeLeaseRow
		if err := json.Unmarshal([]byte(out), &rs); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return rs
	}

	got := rows(admin.Path)
	var names []string
	for _, r := range got {
		names = append(names, r.Node)
	}
	if strings.Join(names, " ") != "h1 h2 h3 spare-1 spare-2" {
		t.Fatalf("rows %q, want h1 h2 h3 spare-1 spare-2 (sorted by subnet)", names)
	}
	for i, h := range c.l.Hosts() {
		r := got[i]
		mac := linkMAC(t, c.l, h.NS, "flannel.1")
		if !r.Managed || deref(r.Subnet) != podCIDRs(i+1, false)[0] || r.IPv6Subnet != nil || r.BackendType != "vxlan" ||
			deref(r.PublicIP) != h.IP.String() || deref(r.VtepMAC) != mac || r.Error != "" {
			t.Errorf("%s: row %+v (subnet %s, public IP %s, VtepMAC %s), want podCIDR %s, %s, flannel.1 MAC %s",
				h.Name, r, deref(r.Subnet), deref(r.PublicIP), deref(r.VtepMAC), podCIDRs(i+1, false)[0], h.IP, mac)
		}
		want := c.annotations(t, h.Name)
		if len(r.Annotations) != len(want) {
			t.Errorf("%s: annotations %v, the Node has %v", h.Name, r.Annotations, want)
		}
		for k, v := range want {
			if r.Annotations["flannel.alpha.coreos.com/"+k] != v {
				t.Errorf("%s: annotation %s = %q, the Node has %q", h.Name, k, r.Annotations["flannel.alpha.coreos.com/"+k], v)
			}
		}
	}
	if s := got[3]; s.Managed || deref(s.Subnet) != "10.244.99.0/24" || s.PublicIP != nil || len(s.Annotations) != 0 || s.Error != "" {
		t.Errorf("spare-1: %+v", s)
	}
	if s := got[4]; s.Managed || s.Subnet != nil || s.Error != "" {
		t.Errorf("spare-2: %+v", s)
	}

	code, out := leases(admin.Path)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || len(lines) != 6 || !strings.HasPrefix(lines[0], "NODE ") || !strings.HasSuffix(lines[0], " MANAGED") {
		t.Fatalf("table: exit %d\n%s", code, out)
	}
	for i, h := range c.l.Hosts() {
		f := strings.Fields(lines[i+1])
		if len(f) != 7 || f[0] != h.Name || f[3] != h.IP.String() || f[4] != "vxlan" || f[6] != "yes" {
			t.Errorf("table row %q", lines[i+1])
		}
	}
	t.Logf("flannelctl leases --kubeconfig:\n%s", out)

	// The identity the daemons run with can list too: nodes list is in
	// the manifest's ClusterRole.
	fk, err := c.l.KubeconfigForFlannel(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(got)
	b, _ := json.Marshal(rows(fk.Path))
	if string(a) != string(b) {
		t.Errorf("with the flannel ServiceAccount:\n%s\nwith the admin:\n%s", b, a)
	}

	for _, r := range rows(admin.Path, "--kube-annotation-prefix=example.com/fl") {
		if r.Managed || len(r.Annotations) != 0 {
			t.Errorf("prefix example.com/fl: %+v", r)
		}
	}

	bad := filepath.Join(t.TempDir(), "bad.kubeconfig")
	kc := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: %s\n    insecure-skip-tls-verify: true\n"+
		"users:\n- name: nobody\n  user:\n    token: not-a-token\ncontexts:\n- name: lab\n  context:\n    cluster: lab\n    user: nobody\ncurrent-context: lab\n", admin.Server)
	if err := os.WriteFile(bad, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out = leases(bad)
	if code != 1 || !strings.Contains(out, "flannelctl leases: list Nodes at "+admin.Server) || !strings.Contains(out, "Unauthorized") {
		t.Errorf("unknown token: exit %d\n%s", code, out)
	}
}

// linkMAC is a link's MAC address in a namespace.
func linkMAC(t *testing.T, l *lab.Lab, ns, dev string) string {
	t.Helper()
	out, err := l.Exec(testCtx(t, 10*time.Second), ns, "ip", "-j", "link", "show", "dev", dev)
	if err != nil {
		t.Fatal(err)
	}
	var links []struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -j link show %s: %v\n%s", dev, err, out)
	}
	return links[0].Address
}
