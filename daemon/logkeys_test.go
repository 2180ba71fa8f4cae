package daemon

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// errorKeyRE finds "error" used as a slog key: a string literal "error"
// followed by a comma (an attribute pair, log.Warn(msg, "error", err)) or
// passed to slog.Any/slog.String. A JSON tag (`json:"error"`) or a map
// literal ("error": ...) does not match.
var errorKeyRE = regexp.MustCompile(`(^|[\s(,])"error",|slog\.[A-Za-z]+\("error"`)

// TestLogErrorKey: errors are logged under one key, "err", everywhere
// (issue 17), so that an operator's query (err=..., jq .err) finds them
// all. This reads every Go file of the module and fails on the other
// spelling.
func TestLogErrorKey(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found: %v", err)
	}
	self, _ := filepath.Abs("logkeys_test.go")
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || path == self {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for i, line := range strings.Split(string(data), "\n") {
			if errorKeyRE.MatchString(line) {
				rel, _ := filepath.Rel(root, path)
				t.Errorf("%s:%d: log key \"error\"; use \"err\": %s", rel, i+1, strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 {
		t.Fatalf("read only %d Go files under %s", files, root)
	}
}

func TestErrorKeyRE(t *testing.T) {
	for line, want := range map[string]bool{
		`log.Warn("x", "error", err)`:      true,
		`	"path", p, "error", err)`:        true,
		`slog.Any("error", err)`:           true,
		`log.Warn("x", "err", err)`:        false,
		"Error string `json:\"error\"`":    false,
		`{"error":"refused"}`:              false,
		`log.Warn("x", "move_error", err)`: false,
	} {
		if got := errorKeyRE.MatchString(line); got != want {
			t.Errorf("%q: match %v, want %v", line, got, want)
		}
	}
}
