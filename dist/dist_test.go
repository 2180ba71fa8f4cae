package dist

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// distDir is this directory, wherever `go test` is run from.
var distDir = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}()

// repoRoot is the module root: the Docker build context.
var repoRoot = filepath.Dir(distDir)

// image is the image that the Dockerfile documents and the manifests run:
// the Makefile's IMAGE at the newest release of CHANGELOG.md (see
// releaseImage in image_tag_test.go).
var image = releaseImage()

func readDistFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(distDir, name))
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return string(b)
}

// contains reports whether list holds s.
func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// logicalLines joins lines continued with a trailing backslash, as systemd
// units and Dockerfiles allow, and returns each with the number of the line
// it starts on.
func logicalLines(text string) (lines []string, numbers []int) {
	var cur strings.Builder
	start := 0
	for i, l := range strings.Split(text, "\n") {
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(l, "\\") {
			cur.WriteString(strings.TrimSuffix(l, "\\"))
			cur.WriteString(" ")
			continue
		}
		cur.WriteString(l)
		lines = append(lines, cur.String())
		numbers = append(numbers, start)
		cur.Reset()
	}
	if cur.Len() > 0 {
		lines = append(lines, cur.String())
		numbers = append(numbers, start)
	}
	return lines, numbers
}
