//go:build linux

package lab

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// newTimeout bounds building a lab in NewT.
const newTimeout = 2 * time.Minute

// logTailLines is how much of each daemon log a failed test shows.
const logTailLines = 40

// NewT builds a lab for a test. It skips the test unless it runs as root
// with iproute2 installed, fills in o.Binaries by building every program if
// none is set (BuildBinaries), logs progress with t.Logf unless o.Logf is
// set, and fails the test if the lab cannot be built. Cleanup closes the lab;
// if the test failed, it first logs the tail of every daemon log.
func NewT(t testing.TB, o Options) *Lab {
	t.Helper()
	SkipUnlessPrivileged(t)
	if o.Binaries == (Binaries{}) {
		o.Binaries = BuildBinaries(t)
	}
	if o.Logf == nil {
		o.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), newTimeout)
	defer cancel()
	l, err := New(ctx, o)
	if err != nil {
		t.Fatalf("new lab: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			l.dumpLogs(t)
		}
		if err := l.Close(); err != nil {
			t.Errorf("close lab: %v", err)
		}
	})
	return l
}

// SkipUnlessPrivileged skips the test unless it can build labs: root and
// the ip command.
func SkipUnlessPrivileged(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (the ip command)")
	}
}

// dumpLogs logs the tail of every log the lab's processes and CNI plugins
// wrote.
func (l *Lab) dumpLogs(t testing.TB) {
	t.Helper()
	seen := map[string]bool{}
	var paths []string
	for _, p := range l.Processes() {
		if !seen[p.LogPath] {
			seen[p.LogPath] = true
			paths = append(paths, p.LogPath)
		}
	}
	cniLogs, _ := filepath.Glob(filepath.Join(l.dir, "*", "cni.log"))
	paths = append(paths, cniLogs...)
	for _, path := range paths {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Logf("lab log %s: %v", path, err)
			continue
		}
		t.Logf("---- tail of %s ----\n%s", path, tail(string(b), logTailLines))
	}
}
