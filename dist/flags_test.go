package dist

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// flagKind tells how a documented default is compared.
type flagKind int

const (
	kindString flagKind = iota
	kindBool
	kindInt
	kindDuration
)

// daemonFlag is one flanneld flag as the packaging files document it.
type daemonFlag struct {
	name string
	def  string
	kind flagKind
}

// The daemon's flag set cannot be imported (it lives in package main of
// cmd/flanneld), so the flags come from the table in
// docs/configuration.md, which cmd/flanneld/docs_test.go checks against
// the daemon's FlagSet (names, types, defaults, variables). This package
// checks flanneld.env, the unit and the manifest against the same table,
// which ties the three together.
var daemonFlags, envFlagExempt, flagTableErr = loadFlagTable(filepath.Join("..", "docs", "configuration.md"))

var docCodeSpan = regexp.MustCompile("`([^`]*)`")

// loadFlagTable reads the flag table under "## Flags": columns flag, type,
// default, variable, origin, meaning. A flag whose variable is "none" has
// no environment variable (envFlagExempt).
func loadFlagTable(path string) ([]daemonFlag, map[string]bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	kinds := map[string]flagKind{"string": kindString, "list": kindString, "bool": kindBool, "int": kindInt, "duration": kindDuration}
	var flags []daemonFlag
	exempt := map[string]bool{}
	section, inTable := false, false
	for n, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "## ") {
			section = l == "## Flags"
			continue
		}
		if !section || !strings.HasPrefix(l, "|") {
			inTable = false
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		switch {
		case !inTable && cells[0] == "flag":
			inTable = true
			continue
		case !inTable || strings.HasPrefix(cells[0], "---"):
			continue
		}
		if len(cells) != 6 {
			return nil, nil, fmt.Errorf("%s:%d: %d cells, want 6 (flag, type, default, variable, origin, meaning)", path, n+1, len(cells))
		}
		name, def := docCodeSpan.FindStringSubmatch(cells[0]), docCodeSpan.FindStringSubmatch(cells[2])
		if name == nil || def == nil {
			return nil, nil, fmt.Errorf("%s:%d: the flag and its default must be code spans", path, n+1)
		}
		kind, ok := kinds[cells[1]]
		if !ok {
			return nil, nil, fmt.Errorf("%s:%d: unknown type %q", path, n+1, cells[1])
		}
		f := daemonFlag{name: strings.TrimLeft(name[1], "-"), def: def[1], kind: kind}
		if f.def == `""` {
			f.def = ""
		}
		if cells[3] == "none" {
			exempt[f.name] = true
		} else if v := docCodeSpan.FindStringSubmatch(cells[3]); v == nil || v[1] != envName(f.name) {
			return nil, nil, fmt.Errorf("%s:%d: --%s: variable %q, want `%s` or none", path, n+1, f.name, cells[3], envName(f.name))
		}
		flags = append(flags, f)
	}
	if len(flags) == 0 {
		return nil, nil, fmt.Errorf("%s: no flag table under \"## Flags\"", path)
	}
	return flags, exempt, nil
}

func TestFlagTableLoads(t *testing.T) {
	if flagTableErr != nil {
		t.Fatalf("the flag list comes from docs/configuration.md: %v", flagTableErr)
	}
	// The table names the flags the other tests here rely on.
	for _, name := range []string{"etcd-endpoints", "etcd-prefix", "healthz-port", "ip-masq", "version"} {
		if _, ok := lookupFlag(name); !ok {
			t.Errorf("--%s missing from the flag table", name)
		}
	}
}

// envName is the variable flanneld reads for a flag: FLANNELD_ + the name
// upper-cased with "-" replaced by "_".
func envName(flag string) string {
	return "FLANNELD_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// lookupFlag returns the flag called name.
func lookupFlag(name string) (daemonFlag, bool) {
	for _, f := range daemonFlags {
		if f.name == name {
			return f, true
		}
	}
	return daemonFlag{}, false
}
