package version_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Every binary prints the version stamped into this package, alone on
// stdout, for --version. The CNI plugin takes it on its command line only:
// CNI_COMMAND=VERSION is the spec's own command and answers JSON.
func TestBinariesPrintVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds four binaries")
	}
	if runtime.GOOS != "linux" {
		t.Skip("flannel-lab is Linux only")
	}
	const stamp = "v9.9.9-versiontest"
	dir := t.TempDir()
	root := filepath.Join("..", "..")
	for _, cmd := range []string{"flanneld", "cni-plugin", "flannelctl", "flannel-lab"} {
		bin := filepath.Join(dir, cmd)
		// make build's flags, so its compiled packages are reused and
		// only the link is new.
		build := exec.Command("go", "build", "-buildvcs=false", "-trimpath", "-tags", "grpcnotrace",
			"-ldflags", "-s -w -X github.com/flannelng/flannel/pkg/version.Version="+stamp, "-o", bin, "./cmd/"+cmd)
		build.Dir = root
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", cmd, err, out)
		}
		for _, flag := range []string{"--version", "-version"} {
			run := exec.Command(bin, flag)
			var stdout, stderr strings.Builder
			run.Stdout, run.Stderr = &stdout, &stderr
			if err := run.Run(); err != nil || stdout.String() != stamp+"\n" || stderr.Len() != 0 {
				t.Errorf("%s %s: %v, stdout %q, stderr %q; want exit 0 and %q", cmd, flag, err, stdout.String(), stderr.String(), stamp+"\n")
			}
		}
	}

	// The plugin's CNI VERSION command is unchanged by the flag.
	run := exec.Command(filepath.Join(dir, "cni-plugin"))
	run.Env = []string{"CNI_COMMAND=VERSION"}
	run.Stdin = strings.NewReader(`{"cniVersion":"1.0.0"}`)
	out, err := run.Output()
	if err != nil || !strings.Contains(string(out), `"supportedVersions"`) {
		t.Errorf("CNI_COMMAND=VERSION: %v, stdout %q", err, out)
	}
}
