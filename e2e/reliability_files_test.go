//go:build linux

package e2e

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
)

// listTree returns every path under dir (relative) with its permission
// bits, sorted.
func listTree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == dir {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		out = append(out, rel+" "+info.Mode().String())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// The daemon writes subnet.env (0644, atomically: no temporary file is
// left, also after kill -9) and nothing else: its working directory, HOME
// and TMPDIR stay empty. The CNI plugin keeps its scratch files in a 0700
// directory, each 0600, and removes them on DEL.
func TestPrivilegedReliabilityFiles(t *testing.T) {
	l, _ := newLab(t, 1, vxlanConfig)
	h := l.Hosts()[0]
	base := t.TempDir()
	runDir := filepath.Join(base, "run", "flannel") // does not exist yet
	empty := map[string]string{}
	for _, name := range []string{"cwd", "home", "tmp"} {
		empty[name] = filepath.Join(base, name)
		if err := os.Mkdir(empty[name], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	start := func() *lab.Process {
		t.Helper()
		// sh changes into the working directory, then becomes flanneld.
		p, err := l.StartProcess(h.NS, filepath.Join(h.Dir, "flanneld.log"),
			[]string{"HOME=" + empty["home"], "TMPDIR=" + empty["tmp"]},
			"sh", "-c", `cd "$0" && exec "$@"`, empty["cwd"],
			l.Binaries().Flanneld, "--etcd-endpoints="+l.EtcdEndpoint(), "--subnet-file="+filepath.Join(runDir, "subnet.env"),
			"--ip-masq", "--healthz-port=8471")
		if err != nil {
			t.Fatal(err)
		}
		waitReady(t, l, p, 30*time.Second)
		return p
	}
	p := start()
	for range 3 {
		if err := p.Kill(); err != nil {
			t.Fatal(err)
		}
		p = start()
	}
	if got := listTree(t, filepath.Join(base, "run")); !slices.Equal(got, []string{"flannel drwxr-xr-x", "flannel/subnet.env -rw-r--r--"}) {
		t.Errorf("subnet file directory holds %q, want only subnet.env (0644) in a 0755 directory", got)
	}
	for name, dir := range empty {
		if got := listTree(t, dir); len(got) > 0 {
			t.Errorf("flanneld wrote into its %s %s: %q", name, dir, got)
		}
	}

	// Pods through the CNI plugin, which reads the lab's copy of subnet.env.
	b, err := os.ReadFile(filepath.Join(runDir, "subnet.env"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.SubnetFile(), b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, time.Minute)
	var pods []*lab.Pod
	for _, name := range []string{"p1", "p2"} {
		pod, err := l.AddPod(ctx, h, name)
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, pod)
	}
	scratch := filepath.Join(h.Dir, "cni-flannel")
	got := listTree(t, scratch)
	if len(got) != 2 {
		t.Errorf("CNI scratch directory holds %q, want one file per pod", got)
	}
	for _, f := range got {
		if !strings.HasSuffix(f, " -rw-------") || strings.Contains(f, ".tmp") {
			t.Errorf("CNI scratch file %s: want mode 0600 and no temporary file", f)
		}
	}
	if st, err := os.Stat(scratch); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("CNI scratch directory %s: %v %v, want 0700", scratch, st.Mode(), err)
	}
	for _, pod := range pods {
		if err := l.DelPod(ctx, pod); err != nil {
			t.Fatal(err)
		}
	}
	if got := listTree(t, scratch); len(got) > 0 {
		t.Errorf("CNI scratch files left after DEL: %q", got)
	}
	figure(t, "files", "subnet.env 0644 (dir 0755), nothing else written (cwd, HOME, TMPDIR empty) across 3 kill -9 restarts; CNI scratch dir 0700, files 0600, removed on DEL")
}
