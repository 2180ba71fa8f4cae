package dist

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// dockerStage is one FROM ... stage of a Dockerfile.
type dockerStage struct {
	image, name string
	args        []string // ARG names
	runs        []string
	copies      []dockerCopy
	entrypoint  string
}

type dockerCopy struct {
	from  string // --from stage, "" for the build context
	srcs  []string
	dst   string
	flags []string
}

// parseDockerfile reads the instructions this Dockerfile uses. It is no
// general parser: an instruction it does not know is an error, so a new
// one gets a look in this test too.
func parseDockerfile(text string) ([]*dockerStage, error) {
	var stages []*dockerStage
	lines, numbers := logicalLines(text)
	for i, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		instr, rest, _ := strings.Cut(l, " ")
		instr = strings.ToUpper(instr)
		rest = strings.TrimSpace(rest)
		if instr != "FROM" && len(stages) == 0 {
			return nil, errors.New("instruction before FROM")
		}
		var cur *dockerStage
		if len(stages) > 0 {
			cur = stages[len(stages)-1]
		}
		f := strings.Fields(rest)
		switch instr {
		case "FROM":
			s := &dockerStage{}
			switch {
			case len(f) == 1:
				s.image = f[0]
			case len(f) == 3 && strings.EqualFold(f[1], "AS"):
				s.image, s.name = f[0], f[2]
			default:
				return nil, fmt.Errorf("line %d: bad FROM: %s", numbers[i], rest)
			}
			stages = append(stages, s)
		case "ARG":
			name, _, _ := strings.Cut(rest, "=")
			cur.args = append(cur.args, name)
		case "RUN":
			cur.runs = append(cur.runs, rest)
		case "COPY":
			var c dockerCopy
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				if v, ok := strings.CutPrefix(f[0], "--from="); ok {
					c.from = v
				} else {
					c.flags = append(c.flags, f[0])
				}
				f = f[1:]
			}
			if len(f) < 2 {
				return nil, fmt.Errorf("line %d: COPY needs a source and a destination", numbers[i])
			}
			c.srcs, c.dst = f[:len(f)-1], f[len(f)-1]
			cur.copies = append(cur.copies, c)
		case "ENTRYPOINT":
			cur.entrypoint = rest
		case "WORKDIR":
		default:
			return nil, fmt.Errorf("line %d: instruction %s not covered by this test", numbers[i], instr)
		}
	}
	return stages, nil
}

// mainPackageVars returns the package-level variables of the main package
// in dir, or an error if dir holds no main package.
func mainPackageVars(dir string) (map[string]bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	vars := map[string]bool{}
	fset := token.NewFileSet()
	goFiles := 0
	for _, e := range entries {
		n := e.Name()
		if !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		goFiles++
		f, err := parser.ParseFile(fset, filepath.Join(dir, n), nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
		}
		if f.Name.Name != "main" {
			return nil, fmt.Errorf("%s is package %s, not main", n, f.Name.Name)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.VAR {
				continue
			}
			for _, s := range g.Specs {
				for _, name := range s.(*ast.ValueSpec).Names {
					vars[name.Name] = true
				}
			}
		}
	}
	if goFiles == 0 {
		return nil, errNoGoFiles
	}
	return vars, nil
}

var errNoGoFiles = errors.New("no Go files")

var goBuildRe = regexp.MustCompile(`^CGO_ENABLED=0 go build -trimpath (?:-tags grpcnotrace )?-ldflags "-s -w -X main\.(\w+)=\$VERSION" -o (\S+) (\./\S+)$`)

func TestDockerfile(t *testing.T) {
	text := readDistFile(t, "Dockerfile")
	stages, err := parseDockerfile(text)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	if len(stages) != 2 {
		t.Fatalf("%d stages, want a build stage and a runtime stage", len(stages))
	}
	build, final := stages[0], stages[1]

	// The doc comment names the image that kube-flannel.yml runs.
	if !regexp.MustCompile(`(?m)^#.*-t ` + regexp.QuoteMeta(image) + `( |$)`).MatchString(text) {
		t.Errorf("the Dockerfile's doc comment does not build %s", image)
	}

	// The builder's Go is the one go.mod asks for.
	gomod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goLine := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	if goLine == nil {
		t.Fatal("go.mod has no go directive")
	}
	if want := "golang:" + string(goLine[1]) + "-bookworm"; build.image != want || build.name == "" {
		t.Errorf("build stage FROM %s AS %q, want FROM %s AS <name>", build.image, build.name, want)
	}
	if final.image != "debian:bookworm-slim" {
		t.Errorf("runtime stage FROM %s, want debian:bookworm-slim", final.image)
	}
	if !contains(build.args, "VERSION") {
		t.Error("build stage has no ARG VERSION")
	}

	// Both binaries are built static from packages that exist, with the
	// version stamped into a variable that the package declares.
	wantBuilds := map[string]string{"./cmd/flanneld": "/flanneld", "./cmd/cni-plugin": "/flannel"}
	built := map[string]string{} // output -> package
	for _, run := range build.runs {
		for _, cmd := range strings.Split(run, "&&") {
			cmd = strings.Join(strings.Fields(cmd), " ")
			if !strings.Contains(cmd, "go build") {
				continue
			}
			m := goBuildRe.FindStringSubmatch(cmd)
			if m == nil {
				t.Errorf("build command %q: want %s", cmd, goBuildRe)
				continue
			}
			versionVar, out, pkg := m[1], m[2], m[3]
			if wantBuilds[pkg] != out {
				t.Errorf("builds %s to %s, want %v", pkg, out, wantBuilds)
			}
			built[out] = pkg
			vars, err := mainPackageVars(filepath.Join(repoRoot, filepath.FromSlash(pkg)))
			switch {
			case errors.Is(err, errNoGoFiles):
				// Only a working tree has an empty directory (git keeps
				// none), so a clone without the command fails above.
				t.Logf("%s has no Go files yet: cannot check main.%s", pkg, versionVar)
			case err != nil:
				t.Errorf("%s: %v", pkg, err)
			case !vars[versionVar]:
				t.Errorf("-X main.%s: %s declares no variable %s, so the version would be lost", versionVar, pkg, versionVar)
			}
		}
	}
	if len(built) != len(wantBuilds) {
		t.Errorf("built %v, want %v", built, wantBuilds)
	}

	// Every file copied from the build context exists in the repository.
	for _, s := range stages {
		for _, c := range s.copies {
			if c.from != "" {
				continue
			}
			for _, src := range c.srcs {
				if _, err := os.Stat(filepath.Join(repoRoot, filepath.FromSlash(src))); err != nil {
					t.Errorf("COPY %s: %v", src, err)
				}
			}
		}
	}

	// The runtime image holds what the manifest and the unit run.
	wantFiles := map[string]string{
		"/opt/bin/flanneld":          "build:/flanneld",
		"/opt/bin/flannel":           "build:/flannel",
		"/opt/bin/mk-docker-opts.sh": "context:dist/mk-docker-opts.sh",
	}
	for _, c := range final.copies {
		from := "context"
		if c.from != "" {
			from = c.from
			if c.from != build.name {
				t.Errorf("COPY --from=%s: no such stage", c.from)
			}
			if len(c.srcs) == 1 && built[c.srcs[0]] == "" {
				t.Errorf("COPY --from=%s %s: the build stage does not produce it", c.from, c.srcs[0])
			}
		}
		if len(c.srcs) != 1 {
			t.Errorf("COPY %v %s: want one source per file", c.srcs, c.dst)
			continue
		}
		got := from + ":" + c.srcs[0]
		if from == build.name {
			got = "build:" + c.srcs[0]
		}
		if want, ok := wantFiles[c.dst]; ok && want == got {
			delete(wantFiles, c.dst)
		}
	}
	for dst, src := range wantFiles {
		t.Errorf("runtime image: no COPY of %s to %s", src, dst)
	}
	if final.entrypoint != `["/opt/bin/flanneld"]` {
		t.Errorf("ENTRYPOINT %s, want [\"/opt/bin/flanneld\"]", final.entrypoint)
	}

	// The runtime packages, installed lean in one layer.
	var apt string
	for _, run := range final.runs {
		if strings.Contains(run, "apt-get install") {
			apt = strings.Join(strings.Fields(run), " ")
		}
	}
	for _, want := range []string{"apt-get update", "--no-install-recommends", " iptables ", " nftables ", " iproute2 ", " ca-certificates ", "rm -rf /var/lib/apt/lists/*"} {
		if !strings.Contains(apt+" ", want) {
			t.Errorf("runtime apt-get step %q lacks %q", apt, strings.TrimSpace(want))
		}
	}
}
