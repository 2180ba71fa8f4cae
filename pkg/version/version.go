// Package version holds the version of every flannel binary (flanneld, the
// flannel CNI plugin, flannelctl, flannel-lab). There is no VERSION file: a
// release is a git tag, and the Makefile stamps `git describe --tags
// --always --dirty` into Version at link time:
//
//	go build -ldflags "-X github.com/flannelng/flannel/pkg/version.Version=v0.1.0" ./cmd/flanneld
//
// A binary built without the Makefile (go build, go install) still names
// what it was built from: Get falls back to the Go toolchain's build info.
package version

import "runtime/debug"

// Version is set at link time with -X; empty means "not stamped".
var Version = ""

// Get returns the version of this binary: Version if the build stamped it,
// else the module version `go install ...@v0.1.0` records, else the commit
// the toolchain stamped from the checkout (with -dirty when the tree had
// changes), else "dev".
func Get() string {
	info, _ := debug.ReadBuildInfo()
	return resolve(Version, info)
}

// resolve is Get without the process: the stamped version and the build info.
func resolve(stamped string, info *debug.BuildInfo) string {
	if stamped != "" {
		return stamped
	}
	if info == nil {
		return "dev"
	}
	// "(devel)" is what go build in a checkout recorded before Go 1.24;
	// since then it records a pseudo-version (v0.0.0-<time>-<commit>[+dirty])
	// derived from the same tag and commit as git describe.
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev string
	dirty := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	// git describe's --always abbreviation is 7 characters at least; 12
	// stays unique in any repository of this size.
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return rev
}

// Revision returns the commit the toolchain stamped into the binary, or ""
// (go test binaries, builds with -buildvcs=false or outside a checkout).
func Revision() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" {
			return s.Value
		}
	}
	return ""
}
