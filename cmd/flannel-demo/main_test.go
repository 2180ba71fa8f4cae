//go:build linux

package main

import (
	"bytes"
	"context"
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
