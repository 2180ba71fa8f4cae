//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
)

func TestUsageErrors(t *testing.T) {
	ctx := context.Background()
	for _, args := range [][]string{
		nil,
		{"sideways"},
		{"up"},
		{"up", "--dir=/tmp/x", "--hosts=0"},
		{"up", "--dir=/tmp/x", "--pods=1"},
		{"up", "--dir=/tmp/x", "extra"},
		{"down"},
		{"down", "--dir=/a", "--prefix=flx"},
		{"status"},
	} {
		var stderr bytes.Buffer
		err := run(ctx, args, io.Discard, &stderr)
		if !errors.Is(err, errUsage) {
			t.Errorf("%v: error %v, want a usage error", args, err)
		}
		if stderr.Len() == 0 {
			t.Errorf("%v: nothing on stderr", args)
		}
	}
	if err := run(ctx, []string{"status", "--dir", t.TempDir()}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "lab.json") {
		t.Errorf("status of an empty dir: %v", err)
	}
}

func TestPrivilegedUpStatusDown(t *testing.T) {
	lab.SkipUnlessPrivileged(t)
	etcd, err := lab.Build(context.Background(), "lab-etcd")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	prefix := "fltup" + rand.Text()[:6]
	prefix = strings.ToLower(prefix)
	t.Cleanup(func() {
		// Whatever happened, leave nothing running.
		if l, err := lab.Load(dir); err == nil {
			_ = l.Close()
		}
		if left, _ := lab.ListNS(prefix); len(left) > 0 {
			t.Errorf("namespaces left: %v", left)
			_ = downPrefix(prefix, io.Discard)
		}
	})
	var out bytes.Buffer
	err = run(ctx, []string{"up", "--dir", dir, "--hosts", "2", "--prefix", prefix, "--etcd", etcd}, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "ip netns exec "+prefix+"-h2 bash") {
		t.Errorf("up printed:\n%s", out.String())
	}
	if err := run(ctx, []string{"up", "--dir", dir, "--etcd", etcd}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "is up") {
		t.Errorf("a second up in the same dir: %v", err)
	}

	// The lab outlives the command: etcd still answers.
	l, err := lab.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := l.Etcd(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get(ctx, "/coreos.com/network/config")
	c.Close()
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != defaultNetConfig {
		t.Fatalf("network config: %v, %v", resp, err)
	}

	out.Reset()
	if err := run(ctx, []string{"status", "--dir", dir}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "running") || !strings.Contains(out.String(), "present") {
		t.Errorf("status printed:\n%s", out.String())
	}
	etcdProc := l.Processes()[0]

	if err := run(ctx, []string{"down", "--dir", dir}, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	if _, err := etcdProc.Wait(5 * time.Second); err != nil {
		t.Error(err)
	}
	if left, _ := lab.ListNS(prefix); len(left) > 0 {
		t.Errorf("namespaces after down: %v", left)
	}
	if _, err := os.Stat(filepath.Join(dir, "etcd.log")); err != nil {
		t.Errorf("down removed the lab dir's files: %v", err)
	}
}
