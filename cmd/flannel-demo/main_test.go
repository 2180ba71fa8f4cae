//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
)

// The demo end to end, as `make demo` runs it: three nodes, two pods each,
// a lease table and an all-ok ping matrix, and nothing left behind.
func TestPrivilegedDemo(t *testing.T) {
	lab.SkipUnlessPrivileged(t)
	bin := lab.BuildBinaries(t)
	dir := filepath.Dir(bin.Flanneld)
	if filepath.Dir(bin.LabEtcd) != dir || filepath.Dir(bin.CNIPlugin) != dir {
		t.Skip("binaries are not in one directory")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, options{binDir: dir, hosts: 3, pods: 2, backend: "vxlan"}, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	s := out.String()
	if n := len(regexp.MustCompile(`(?m)^  10\.244\.\d+\.0/24 +172\.30\.0\.1\d +vxlan +[0-9a-f:]{17} +23h59m`).FindAllString(s, -1)); n != 3 {
		t.Errorf("lease table has %d rows:\n%s", n, s)
	}
	if strings.Contains(s, "FAIL") || !strings.Contains(s, "all 30 pod pairs reach each other") {
		t.Errorf("ping matrix:\n%s", s)
	}
	m := regexp.MustCompile(`lab (fl[0-9a-f]+):`).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no lab prefix in:\n%s", s)
	}
	if left, _ := lab.ListNS(m[1]); len(left) > 0 {
		t.Errorf("namespaces left: %v", left)
	}
}

// The kube-mode demo, as `make demo` runs it after the etcd one: a real
// kube-apiserver, one Node per host with its podCIDR, flanneld
// --kube-subnet-mgr; each podCIDR becomes that node's subnet.env, every
// Node shows flanneld's annotations and NetworkUnavailable=False, the ping
// matrix is all ok, and nothing is left behind.
func TestPrivilegedDemoKube(t *testing.T) {
	lab.SkipUnlessPrivileged(t)
	bin := lab.BuildBinaries(t)
	lab.RequireKubeBinaries(t, &bin)
	dir := filepath.Dir(bin.Flanneld)
	if filepath.Dir(bin.LabEtcd) != dir || filepath.Dir(bin.CNIPlugin) != dir {
		t.Skip("binaries are not in one directory")
	}
	// kube-apiserver alone may take a minute and a half to be ready on a
	// busy machine.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, options{binDir: dir, hosts: 3, pods: 2, backend: "vxlan", kube: true}, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	s := out.String()
	for i := 1; i <= 3; i++ {
		row := fmt.Sprintf(`(?m)^  h%d +10\.244\.%d\.0/24 +10\.244\.%d\.1/24 +1450$`, i, i, i)
		if !regexp.MustCompile(row).MatchString(s) {
			t.Errorf("no podCIDR -> subnet.env row for h%d:\n%s", i, s)
		}
	}
	for _, re := range []string{
		`(?m)^    flannel\.alpha\.coreos\.com/backend-data = \{"VNI":1,"VtepMAC":"([0-9a-f]{2}:){5}[0-9a-f]{2}"\}$`,
		`(?m)^    flannel\.alpha\.coreos\.com/backend-type = vxlan$`,
		`(?m)^    flannel\.alpha\.coreos\.com/kube-subnet-manager = true$`,
		`(?m)^    flannel\.alpha\.coreos\.com/public-ip = 172\.30\.0\.1[123]$`,
		`(?m)^    condition NetworkUnavailable = False \(FlannelIsUp: Flannel is running on this node\)$`,
	} {
		if n := len(regexp.MustCompile(re).FindAllString(s, -1)); n != 3 {
			t.Errorf("%d lines match %s, want one per Node:\n%s", n, re, s)
		}
	}
	if strings.Contains(s, "FAIL") || !strings.Contains(s, "all 30 pod pairs reach each other") {
		t.Errorf("ping matrix:\n%s", s)
	}
	m := regexp.MustCompile(`lab (fl[0-9a-f]+):`).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no lab prefix in:\n%s", s)
	}
	if left, _ := lab.ListNS(m[1]); len(left) > 0 {
		t.Errorf("namespaces left: %v", left)
	}
}
