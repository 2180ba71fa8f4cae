package version

import (
	"runtime/debug"
	"testing"
)

func TestResolve(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	const rev = "448079fabcdef0123456789abcdef0123456789a"
	for _, tc := range []struct {
		name    string
		stamped string
		info    *debug.BuildInfo
		want    string
	}{
		{"stamped wins", "v0.1.0-3-g448079f", &debug.BuildInfo{Main: debug.Module{Version: "v0.1.0"}}, "v0.1.0-3-g448079f"},
		{"go install @tag", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.2.0"}, Settings: vcs(rev, "false")}, "v0.2.0"},
		{"pseudo-version from go build", "", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261206144639-448079fabcde+dirty"}}, "v0.0.0-20261206144639-448079fabcde+dirty"},
		{"devel with revision", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "false")}, "448079fabcde"},
		{"devel with dirty revision", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs(rev, "true")}, "448079fabcde-dirty"},
		{"short revision kept", "", &debug.BuildInfo{Settings: vcs("448079f", "false")}, "448079f"},
		{"devel without vcs", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "dev"},
		{"no build info", "", nil, "dev"},
	} {
		if got := resolve(tc.stamped, tc.info); got != tc.want {
			t.Errorf("%s: resolve(%q, ...) = %q, want %q", tc.name, tc.stamped, got, tc.want)
		}
	}
}

// A test binary carries no stamp: Get still answers.
func TestGetNeverEmpty(t *testing.T) {
	if Get() == "" {
		t.Fatal("Get() is empty")
	}
}
