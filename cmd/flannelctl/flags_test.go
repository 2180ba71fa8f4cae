package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// flannelctl takes flanneld's --etcd-password-file (etcdflags), and
// FLANNELD_ETCD_PASSWORD_FILE from a daemon's EnvironmentFile.
func TestEtcdPasswordFile(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, _, _ := parse(t, []string{"--etcd-password-file", pw}, nil)
	if o.Etcd.Password != "s3cret" {
		t.Errorf("flag: password %q", o.Etcd.Password)
	}
	o, _, _ = parse(t, nil, map[string]string{"FLANNELD_ETCD_PASSWORD_FILE": pw})
	if o.Etcd.Password != "s3cret" {
		t.Errorf("variable: password %q", o.Etcd.Password)
	}
	code, stdout, stderr := captured(t, []string{"leases", "--etcd-password-file", filepath.Join(dir, "missing")}, nil, "")
	if code != 2 || !strings.Contains(stderr, "--etcd-password-file: open") || !strings.Contains(stderr, "Usage: flannelctl") {
		t.Errorf("missing file: exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = captured(t, []string{"leases", "--etcd-endpoints=http://127.0.0.1:1", "--timeout=300ms", "--etcd-password-file", pw}, nil, "")
	if code != 1 || strings.Contains(stdout+stderr, "s3cret") {
		t.Errorf("password from a file printed: exit %d\n%s%s", code, stdout, stderr)
	}
}
