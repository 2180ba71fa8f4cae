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
	"slices"
	"strings"
	"testing"
)

// dockerStage is one FROM ... stage of a Dockerfile.
type dockerStage struct {
	image, name string
	platform    string   // FROM --platform=
	args        []string // ARG names
	env         []string // ENV name=value
	runs        []string
	copies      []dockerCopy
	user        string
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
			if len(f) > 0 {
				if p, ok := strings.CutPrefix(f[0], "--platform="); ok {
					s.platform, f = p, f[1:]
				}
			}
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
			for _, a := range f {
				name, _, _ := strings.Cut(a, "=")
				cur.args = append(cur.args, name)
			}
		case "ENV":
			cur.env = append(cur.env, f...)
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
		case "USER":
			cur.user = rest
		case "ENTRYPOINT":
			cur.entrypoint = rest
		case "WORKDIR":
		default:
			return nil, fmt.Errorf("line %d: instruction %s not covered by this test", numbers[i], instr)
		}
	}
	return stages, nil
}

// mainPackage reports whether dir holds a main package, or errNoGoFiles.
func mainPackage(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	fset := token.NewFileSet()
	goFiles := 0
	for _, e := range entries {
		n := e.Name()
		if !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		goFiles++
		f, err := parser.ParseFile(fset, filepath.Join(dir, n), nil, parser.PackageClauseOnly)
		if err != nil {
			return err
		}
		if f.Name.Name != "main" {
			return fmt.Errorf("%s is package %s, not main", n, f.Name.Name)
		}
	}
	if goFiles == 0 {
		return errNoGoFiles
	}
	return nil
}

var errNoGoFiles = errors.New("no Go files")

// versionVar is the variable the builds stamp with -X; the test checks
// that pkg/version declares it as a string without an initializer that
// calls something (-X cannot override that).
const versionVar = "github.com/flannelng/flannel/pkg/version.Version"

func checkVersionVar(t *testing.T) {
	t.Helper()
	dot := strings.LastIndex(versionVar, ".")
	pkgPath, name := versionVar[:dot], versionVar[dot+1:]
	dir := filepath.Join(repoRoot, filepath.FromSlash(strings.TrimPrefix(pkgPath, "github.com/flannelng/flannel/")))
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("-X %s: %v", versionVar, err)
	}
	fset := token.NewFileSet()
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.VAR {
				continue
			}
			for _, spec := range g.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if n.Name != name {
						continue
					}
					if i < len(vs.Values) {
						if _, ok := vs.Values[i].(*ast.BasicLit); !ok {
							t.Errorf("-X %s: its initializer is not a constant string, so -X cannot set it", versionVar)
						}
					}
					return
				}
			}
		}
	}
	t.Errorf("-X %s: %s declares no variable %s, so the version would be lost", versionVar, dir, name)
}

var goBuildRe = regexp.MustCompile(`^go build -trimpath -tags grpcnotrace -ldflags "-s -w -X ` + regexp.QuoteMeta(versionVar) + `=\$VERSION" -o (\S+) (\./\S+)$`)

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

	// The doc comment names the image that the manifests run.
	if !regexp.MustCompile(`(?m)^#.*-t ` + regexp.QuoteMeta(image) + `( |$)`).MatchString(text) {
		t.Errorf("the Dockerfile's doc comment does not build %s", image)
	}

	// The builder's Go is the one go.mod asks for, and it runs on the
	// build machine's platform: it cross-compiles, nothing is emulated.
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
	if build.platform != "$BUILDPLATFORM" {
		t.Errorf("build stage FROM --platform=%q, want $BUILDPLATFORM (cross-compile instead of emulating the target)", build.platform)
	}
	// The runtime stage is the target platform's: no --platform.
	if final.image != "debian:bookworm-slim" || final.platform != "" {
		t.Errorf("runtime stage FROM --platform=%q %s, want debian:bookworm-slim for the target platform", final.platform, final.image)
	}
	for _, a := range []string{"TARGETOS", "TARGETARCH", "TARGETVARIANT", "VERSION"} {
		if !contains(build.args, a) {
			t.Errorf("build stage has no ARG %s", a)
		}
	}
	checkVersionVar(t)

	// The binaries are built static, for the target platform, from
	// packages that exist, with the version stamped.
	wantBuilds := map[string]string{"./cmd/flanneld": "/out/flanneld", "./cmd/cni-plugin": "/out/flannel", "./cmd/flannelctl": "/out/flannelctl"}
	built := map[string]string{} // output -> package
	var target []string
	for _, run := range build.runs {
		for _, cmd := range strings.Split(run, "&&") {
			cmd = strings.Join(strings.Fields(cmd), " ")
			if env, ok := strings.CutPrefix(cmd, "export "); ok {
				target = strings.Fields(env)
				continue
			}
			if !strings.Contains(cmd, "go build") {
				continue
			}
			m := goBuildRe.FindStringSubmatch(cmd)
			if m == nil {
				t.Errorf("build command %q: want %s", cmd, goBuildRe)
				continue
			}
			out, pkg := m[1], m[2]
			if wantBuilds[pkg] != out {
				t.Errorf("builds %s to %s, want %v", pkg, out, wantBuilds)
			}
			built[out] = pkg
			switch err := mainPackage(filepath.Join(repoRoot, filepath.FromSlash(pkg))); {
			case errors.Is(err, errNoGoFiles):
				// Only a working tree has an empty directory (git keeps
				// none), so a clone without the command fails above.
				t.Logf("%s has no Go files yet", pkg)
			case err != nil:
				t.Errorf("%s: %v", pkg, err)
			}
		}
	}
	if len(built) != len(wantBuilds) {
		t.Errorf("built %v, want %v", built, wantBuilds)
	}
	for _, want := range []string{"GOOS=$TARGETOS", "GOARCH=$TARGETARCH", "GOARM=${TARGETVARIANT#v}", "CGO_ENABLED=0"} {
		if !contains(target, want) {
			t.Errorf("build stage exports %q, want %s among them", target, want)
		}
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

	// The context is the repository root: its ignore file keeps the local
	// builds and .git out of it.
	ignore := strings.Fields(readDistFile(t, "Dockerfile.dockerignore"))
	for _, want := range []string{".git", "bin"} {
		if !contains(ignore, want) {
			t.Errorf("Dockerfile.dockerignore does not exclude %s", want)
		}
	}

	// The runtime image holds what the manifests, the unit and operators
	// run.
	wantFiles := map[string]string{
		"/opt/bin/flanneld":          "build:/out/flanneld",
		"/opt/bin/flannel":           "build:/out/flannel",
		"/opt/bin/flannelctl":        "build:/out/flannelctl",
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
	// kubectl exec ... -- flannelctl doctor: the tools are on PATH.
	if !slices.ContainsFunc(final.env, func(e string) bool { return strings.HasPrefix(e, "PATH=/opt/bin:") }) {
		t.Errorf("runtime ENV %q: want PATH=/opt/bin:$PATH", final.env)
	}
	// Non-root by default; the manifests ask for root where flanneld
	// needs it (manifest_test.go).
	if u, _, _ := strings.Cut(final.user, ":"); u == "" || u == "0" || u == "root" {
		t.Errorf("runtime USER %q, want a non-root user", final.user)
	}

	// The runtime packages, installed lean in one layer: both iptables
	// variants (bookworm's iptables package holds legacy and nft), nft,
	// ip for mk-docker-opts.sh, and CA certificates.
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
