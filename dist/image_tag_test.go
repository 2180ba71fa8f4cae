package dist

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The image's tag is written by hand in one place, the newest release
// heading of CHANGELOG.md (v0.1.0 until the first release); `make
// pin-image` copies it into the files below, and this test fails while any
// of them names another tag.

// firstRelease is the tag the manifests name before any release exists.
const firstRelease = "v0.1.0"

var (
	imageNameRe     = regexp.MustCompile(`(?m)^IMAGE\s*\?=\s*(\S+)\s*$`)
	releaseHeadRe   = regexp.MustCompile(`(?m)^## \[(v[0-9][^\]]*)\]`)
	unreleasedHead  = regexp.MustCompile(`(?m)^## \[Unreleased\]\s*$`)
	releaseDateHead = regexp.MustCompile(`^## \[v\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?\] - \d{4}-\d{2}-\d{2}$`)
)

// releaseImage is IMAGE of the Makefile at the newest release of
// CHANGELOG.md, or "" if either file cannot be read (TestImageTag fails
// then).
func releaseImage() string {
	mk, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
	if err != nil {
		return ""
	}
	cl, err := os.ReadFile(filepath.Join(repoRoot, "CHANGELOG.md"))
	if err != nil {
		return ""
	}
	m := imageNameRe.FindSubmatch(mk)
	if m == nil {
		return ""
	}
	tag := firstRelease
	if h := releaseHeadRe.FindSubmatch(cl); h != nil {
		tag = string(h[1])
	}
	return string(m[1]) + ":" + tag
}

func TestImageTag(t *testing.T) {
	if image == "" {
		t.Fatal("no image: the Makefile has no IMAGE ?= line, or Makefile or CHANGELOG.md is unreadable")
	}
	name, _, _ := strings.Cut(image, ":")

	// The Makefile computes the same tag (make pin-image writes it).
	if _, err := exec.LookPath("make"); err == nil {
		out, err := exec.Command("make", "-s", "-C", repoRoot, "print-image").Output()
		if err != nil {
			t.Errorf("make print-image: %v", err)
		} else if got := strings.TrimSpace(string(out)); got != image {
			t.Errorf("make print-image = %q, want %q (Makefile and CHANGELOG.md disagree with this test)", got, image)
		}
	}

	// CHANGELOG.md keeps an Unreleased section, and every release heading
	// has a date.
	cl, err := os.ReadFile(filepath.Join(repoRoot, "CHANGELOG.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !unreleasedHead.Match(cl) {
		t.Error("CHANGELOG.md has no \"## [Unreleased]\" section")
	}
	for _, l := range strings.Split(string(cl), "\n") {
		if strings.HasPrefix(l, "## [v") && !releaseDateHead.MatchString(l) {
			t.Errorf("CHANGELOG.md: release heading %q, want \"## [vX.Y.Z] - YYYY-MM-DD\"", l)
		}
	}

	// Every file that names the image names this tag.
	refRe := regexp.MustCompile(regexp.QuoteMeta(name) + `:([0-9A-Za-z.+<>-]+)`)
	for _, f := range []string{"dist/kube-flannel.yml", "dist/kube-flannel-etcd.yml", "dist/Dockerfile", "dist/README.md", "docs/install.md"} {
		b, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(f)))
		if err != nil {
			t.Fatal(err)
		}
		refs := refRe.FindAllStringSubmatch(string(b), -1)
		if len(refs) == 0 {
			t.Errorf("%s does not name the image %s", f, name)
		}
		for _, r := range refs {
			// <tag> and the like are placeholders in the docs.
			if r[0] != image && !strings.HasPrefix(r[1], "<") {
				t.Errorf("%s names %s, want %s (make pin-image)", f, r[0], image)
			}
		}
	}
}
