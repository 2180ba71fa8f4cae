//go:build linux

package lab

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BinDirEnv names an environment variable: a directory holding prebuilt
// flanneld, flannel and lab-etcd, used instead of building them, and
// kube-apiserver and kubectl (FindKubeBinaries).
const BinDirEnv = "LAB_BIN_DIR"

const modulePath = "github.com/flannelng/flannel"

// programs maps a binary name to its package in this module.
var programs = map[string]string{
	"flanneld": "./cmd/flanneld",
	"flannel":  "./cmd/cni-plugin",
	"lab-etcd": "./cmd/lab-etcd",
}

// buildTimeout bounds one `go build`; a cold build of lab-etcd (all of
// etcd's server) takes over a minute on two cores.
const buildTimeout = 8 * time.Minute

var builds struct {
	mu   sync.Mutex
	done map[string]*buildResult
}

type buildResult struct {
	once sync.Once
	path string
	err  error
}

// Build returns the path of one of the lab's programs: "flanneld",
// "flannel" (the CNI plugin) or "lab-etcd". It takes it from $LAB_BIN_DIR if
// set; otherwise it runs `go build` from the module root, once per process,
// into a directory shared by all test processes of this checkout (go build
// rewrites nothing that is up to date, and a lock file keeps parallel test
// binaries from building at the same time).
func Build(ctx context.Context, name string) (string, error) {
	pkg, ok := programs[name]
	if !ok {
		return "", fmt.Errorf("build %q: unknown program (want flanneld, flannel or lab-etcd)", name)
	}
	if dir := os.Getenv(BinDirEnv); dir != "" {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", BinDirEnv, dir, err)
		}
		return p, nil
	}
	builds.mu.Lock()
	if builds.done == nil {
		builds.done = map[string]*buildResult{}
	}
	r := builds.done[name]
	if r == nil {
		r = &buildResult{}
		builds.done[name] = r
	}
	builds.mu.Unlock()
	r.once.Do(func() { r.path, r.err = goBuild(ctx, name, pkg) })
	return r.path, r.err
}

// BuildBinaries returns all three programs (see Build) and fails the test if
// one does not build.
func BuildBinaries(tb testing.TB) Binaries {
	tb.Helper()
	ctx := context.Background()
	var b Binaries
	var err error
	var errs []error
	if b.Flanneld, err = Build(ctx, "flanneld"); err != nil {
		errs = append(errs, err)
	}
	if b.CNIPlugin, err = Build(ctx, "flannel"); err != nil {
		errs = append(errs, err)
	}
	if b.LabEtcd, err = Build(ctx, "lab-etcd"); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		tb.Fatalf("build lab binaries: %v", err)
	}
	// Too slow to build here (minutes, cold): taken when present, and
	// required only by the tests that call RequireKubeBinaries.
	b.KubeAPIServer, b.Kubectl, _ = FindKubeBinaries()
	b.EtcdV2, _ = FindEtcdV2Binary()
	return b
}

// The Kubernetes programs of the test rig. They come from the nested module
// tools/kube (k8s.io/kubernetes), which scripts/kube-bins.sh builds into
// bin/; a cold build takes about 15 minutes on two cores, so the lab never
// builds them itself.
const (
	kubeAPIServerProgram = "kube-apiserver"
	kubectlProgram       = "kubectl"
	kubeBinsHint         = "build them with `make kube-bins` (scripts/kube-bins.sh)"
)

// FindKubeBinaries returns the paths of kube-apiserver and kubectl: in
// $LAB_BIN_DIR if it is set, otherwise in bin/ at the module root, where
// `make kube-bins` puts them. The error names what is missing.
func FindKubeBinaries() (apiserver, kubectl string, err error) {
	dir := os.Getenv(BinDirEnv)
	where := BinDirEnv + "=" + dir
	if dir == "" {
		root, err := moduleRoot()
		if err != nil {
			return "", "", err
		}
		dir = filepath.Join(root, "bin")
		where = dir
	}
	var missing []string
	find := func(name string) string {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			missing = append(missing, name)
			return ""
		}
		return p
	}
	apiserver, kubectl = find(kubeAPIServerProgram), find(kubectlProgram)
	if len(missing) > 0 {
		return "", "", fmt.Errorf("%s not in %s: %s", strings.Join(missing, " and "), where, kubeBinsHint)
	}
	return apiserver, kubectl, nil
}

// RequireKubeBinaries sets b.KubeAPIServer and b.Kubectl (FindKubeBinaries)
// or ends the test. As with the lab's other programs, a missing binary under
// $LAB_BIN_DIR (which `make test` sets, after building them) fails the test;
// without it (plain `go test`), the test is skipped with a hint.
func RequireKubeBinaries(tb testing.TB, b *Binaries) {
	tb.Helper()
	apiserver, kubectl, err := FindKubeBinaries()
	switch {
	case err == nil:
		b.KubeAPIServer, b.Kubectl = apiserver, kubectl
	case os.Getenv(BinDirEnv) != "":
		tb.Fatalf("the Kubernetes test rig: %v", err)
	default:
		tb.Skipf("needs the Kubernetes test rig: %v", err)
	}
}

func goBuild(ctx context.Context, name, pkg string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(root))
	dir := filepath.Join(os.TempDir(), "flannel-lab-bin-"+hex.EncodeToString(sum[:4]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	unlock, err := lockFile(filepath.Join(dir, ".lock"))
	if err != nil {
		return "", fmt.Errorf("build %s: %w", name, err)
	}
	defer unlock()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(dir, name)
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	// The same tags as the Makefile, so lab figures describe the binary
	// users get.
	cmd := exec.CommandContext(ctx, goBin, "build", "-tags", "grpcnotrace", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build -tags grpcnotrace -o %s %s: %w\n%s", out, pkg, err, strings.TrimSpace(string(b)))
	}
	return out, nil
}

// lockFile takes an exclusive flock on path; the returned func releases it.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// moduleRoot walks up from the working directory (a test runs in its
// package's directory) to this module's go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if isModuleRoot(dir) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of %s above the working directory; set %s", modulePath, BinDirEnv)
		}
		dir = parent
	}
}

func isModuleRoot(dir string) bool {
	f, err := os.Open(filepath.Join(dir, "go.mod"))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`) == modulePath
		}
	}
	return false
}
