package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if bins.dir != "" {
		_ = os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

// bins holds the plugin binaries built once per test binary: ours, and the
// CNI project's own test-double plugin "noop" (part of the cni module), which
// records each call and can be told to fail.
var bins struct {
	once sync.Once
	dir  string
	err  error
}

func testBinaries(t *testing.T) string {
	t.Helper()
	bins.once.Do(func() {
		bins.dir, bins.err = os.MkdirTemp("", "flannel-cni-bin-")
		if bins.err != nil {
			return
		}
		for _, b := range []struct{ out, pkg string }{
			{"flannel", "./"},
			{"noop", "github.com/containernetworking/cni/plugins/test/noop"},
		} {
			// No VCS stamp: a checkout owned by another user (git's "dubious
			// ownership") must not fail a rootless test run.
			cmd := exec.Command("go", "build", "-buildvcs=false", "-o", filepath.Join(bins.dir, b.out), b.pkg)
			if out, err := cmd.CombinedOutput(); err != nil {
				bins.err = fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
				return
			}
		}
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	return bins.dir
}
