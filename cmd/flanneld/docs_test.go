package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/backend/udp"
	"github.com/flannelng/flannel/backend/vxlan"
	"github.com/flannelng/flannel/subnet"
)

// The operator documentation in docs/ is checked against the code here, so
// that a flag, default, config field or message that changes without the
// docs changing fails the build. dist/flags_test.go checks flanneld.env
// against the same flag table.

const repoRoot = "../.."

func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// docSection returns the text from the heading line to the next heading of
// the same or a higher level.
func docSection(t *testing.T, doc, heading string) string {
	t.Helper()
	level := strings.IndexByte(heading, ' ')
	start := -1
	lines := strings.Split(doc, "\n")
	for i, l := range lines {
		if start < 0 {
			if l == heading {
				start = i + 1
			}
			continue
		}
		if n := strings.IndexByte(l, ' '); strings.HasPrefix(l, "#") && n > 0 && n <= level && strings.Trim(l[:n], "#") == "" {
			return strings.Join(lines[start:i], "\n")
		}
	}
	if start < 0 {
		t.Fatalf("heading %q not found", heading)
	}
	return strings.Join(lines[start:], "\n")
}

// tableRow is one Markdown table row: its cells, trimmed, and its 1-based
// line number within the section.
type tableRow struct {
	cells []string
	line  int
}

// tableRows returns the body rows of the tables in text whose header's
// first cell is firstHeader.
func tableRows(text, firstHeader string) []tableRow {
	var rows []tableRow
	in := false
	for n, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(l, "|") {
			in = false
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		switch {
		case !in && cells[0] == firstHeader:
			in = true
		case in && strings.HasPrefix(cells[0], "---"):
		case in:
			rows = append(rows, tableRow{cells, n + 1})
		}
	}
	return rows
}

var codeSpan = regexp.MustCompile("`([^`]*)`")

// code returns the content of the first code span of a cell, or "" and
// false when there is none.
func code(cell string) (string, bool) {
	m := codeSpan.FindStringSubmatch(cell)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// docFlag is one row of the flag table in docs/configuration.md.
type docFlag struct {
	name, typ, def, env, origin string
}

func docFlags(t *testing.T) []docFlag {
	t.Helper()
	var out []docFlag
	for _, r := range tableRows(docSection(t, readDoc(t, "configuration.md"), "## Flags"), "flag") {
		if len(r.cells) != 6 {
			t.Fatalf("configuration.md flag table: row %q has %d cells, want 6", r.cells, len(r.cells))
		}
		name, ok1 := code(r.cells[0])
		def, ok2 := code(r.cells[2])
		if !ok1 || !ok2 {
			t.Fatalf("configuration.md flag table: row %q: flag and default must be code spans", r.cells)
		}
		if def == `""` {
			def = ""
		}
		env, _ := code(r.cells[3])
		if r.cells[3] == "none" {
			env = ""
		} else if env == "" {
			t.Fatalf("configuration.md flag table: --%s: variable %q must be a code span or none", name, r.cells[3])
		}
		out = append(out, docFlag{name: strings.TrimLeft(name, "-"), typ: r.cells[1], def: def, env: env, origin: r.cells[4]})
	}
	if len(out) == 0 {
		t.Fatal("configuration.md: no flag table under ## Flags")
	}
	return out
}

// flagType names a flag's type as the doc does.
func flagType(f *flag.Flag) string {
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		return "bool"
	}
	switch f.Value.(type) {
	case *listFlag:
		return "list"
	}
	name, _ := flag.UnquoteUsage(f)
	if name == "value" {
		return "string" // a fs.Func flag or an etcd alias, taking one string
	}
	return name
}

// upstreamFlags is upstream flanneld's flag set (v0.28 --help).
var upstreamFlags = map[string]bool{
	"etcd-cafile": true, "etcd-certfile": true, "etcd-endpoints": true, "etcd-keyfile": true, "etcd-password": true,
	"etcd-prefix": true, "etcd-username": true, "healthz-ip": true, "healthz-port": true, "iface": true,
	"iface-can-reach": true, "iface-regex": true, "ip-blackhole-route": true, "ip-masq": true,
	"ip-masq-fully-random-disable": true, "iptables-forward-rules": true, "iptables-resync": true,
	"kube-annotation-prefix": true, "kube-api-url": true, "kube-subnet-mgr": true, "kubeconfig-file": true,
	"log_backtrace_at": true, "net-config-path": true, "public-ip": true, "public-ipv6": true,
	"set-node-network-unavailable": true, "subnet-file": true, "subnet-lease-renew-margin": true, "v": true,
	"version": true, "vmodule": true,
}

func sameDefault(typ, documented, actual string) bool {
	switch typ {
	case "duration":
		a, err1 := time.ParseDuration(documented)
		b, err2 := time.ParseDuration(actual)
		return err1 == nil && err2 == nil && a == b
	case "bool":
		a, err1 := strconv.ParseBool(documented)
		b, err2 := strconv.ParseBool(actual)
		return err1 == nil && err2 == nil && a == b
	}
	return documented == actual
}

// TestDocsFlagTable: every flag of the daemon is in the table and every
// row is a flag, with the flag's type, default, variable and origin.
func TestDocsFlagTable(t *testing.T) {
	fs := newFlagSet(&config{}, io.Discard)
	// Defaults applied after parsing, where the flag itself has none.
	c, err := parseConfig(nil, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	applied := map[string]string{"etcd-endpoints": strings.Join(c.Etcd.Endpoints, ",")}

	seen := map[string]bool{}
	for _, d := range docFlags(t) {
		if seen[d.name] {
			t.Errorf("--%s is documented twice", d.name)
		}
		seen[d.name] = true
		f := fs.Lookup(d.name)
		if f == nil {
			t.Errorf("configuration.md documents --%s, which flanneld does not have", d.name)
			continue
		}
		if got := flagType(f); got != d.typ {
			t.Errorf("--%s: documented type %q, flag is %q", d.name, d.typ, got)
		}
		def := f.DefValue
		if v, ok := applied[d.name]; ok && def == "" {
			def = v
		}
		if !sameDefault(d.typ, d.def, def) {
			t.Errorf("--%s: documented default %q, flag default %q", d.name, d.def, def)
		}
		wantEnv := "FLANNELD_" + strings.ToUpper(strings.ReplaceAll(d.name, "-", "_"))
		if d.name == "version" {
			wantEnv = "" // parseConfig never reads FLANNELD_VERSION
		}
		if d.env != wantEnv {
			t.Errorf("--%s: documented variable %q, flanneld reads %q", d.name, d.env, wantEnv)
		}
		wantOrigin := "ours"
		if upstreamFlags[d.name] {
			wantOrigin = "upstream"
		}
		if d.origin != wantOrigin {
			t.Errorf("--%s: origin %q, want %q", d.name, d.origin, wantOrigin)
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		if !seen[f.Name] {
			t.Errorf("flag --%s is missing from the table in docs/configuration.md", f.Name)
		}
	})
	for name := range upstreamFlags {
		if fs.Lookup(name) == nil {
			t.Errorf("upstream flag --%s is not accepted", name)
		}
	}
}

// TestDocsEnvVariablesWork: each documented variable, set alone to a
// valid value other than the default, changes the parsed config.
func TestDocsEnvVariablesWork(t *testing.T) {
	noEnv := func(string) string { return "" }
	base, err := parseConfig(nil, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	special := map[string]string{"public-ip": "192.0.2.1", "public-ipv6": "2001:db8::1", "etcd-api": "both"}
	pwFile := filepath.Join(t.TempDir(), "etcd-password")
	if err := os.WriteFile(pwFile, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	special["etcd-password-file"] = pwFile
	for _, d := range docFlags(t) {
		if d.env == "" {
			continue
		}
		v, ok := special[d.name]
		if !ok {
			switch d.typ {
			case "bool":
				b, err := strconv.ParseBool(d.def)
				if err != nil {
					t.Fatalf("--%s: default %q", d.name, d.def)
				}
				v = strconv.FormatBool(!b)
			case "int":
				v = "7"
			case "duration":
				v = "1h"
			default:
				v = "x"
			}
		}
		c, err := parseConfig(nil, func(k string) string {
			if k == d.env {
				return v
			}
			return ""
		}, io.Discard)
		if err != nil {
			t.Errorf("%s=%s: %v", d.env, v, err)
			continue
		}
		if reflect.DeepEqual(c, base) {
			t.Errorf("%s=%s changes nothing: the variable is not read", d.env, v)
		}
	}
}

// configJSONFields parses subnet/config.go and returns the field names of
// configJSON, the network config's JSON shape.
func configJSONFields(t *testing.T) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(repoRoot, "subnet", "config.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok || ts.Name.Name != "configJSON" {
			return true
		}
		st, ok := ts.Type.(*ast.StructType)
		if !ok {
			t.Fatal("configJSON is not a struct")
		}
		for _, fl := range st.Fields.List {
			for _, n := range fl.Names {
				names = append(names, n.Name)
			}
		}
		return false
	})
	if len(names) == 0 {
		t.Fatal("subnet/config.go: type configJSON not found")
	}
	return names
}

// TestDocsNetConfigFields: the field table names every key of the network
// config and nothing else, with the documented boolean defaults.
func TestDocsNetConfigFields(t *testing.T) {
	sec := docSection(t, readDoc(t, "configuration.md"), "## Network config")
	documented := map[string]string{}
	for _, r := range tableRows(sec, "field") {
		name, ok := code(r.cells[0])
		if !ok || len(r.cells) != 4 {
			t.Fatalf("network config table: bad row %q", r.cells)
		}
		documented[name] = r.cells[2]
	}
	fields := configJSONFields(t)
	for _, f := range fields {
		if _, ok := documented[f]; !ok {
			t.Errorf("network config field %s is missing from docs/configuration.md", f)
		}
	}
	for name := range documented {
		found := false
		for _, f := range fields {
			found = found || f == name
		}
		if !found {
			t.Errorf("docs/configuration.md documents network config field %s, which subnet.ParseConfig does not read", name)
		}
	}
	cfg, err := subnet.ParseConfig([]byte(`{"Network":"10.5.0.0/16"}`))
	if err != nil {
		t.Fatal(err)
	}
	for name, got := range map[string]bool{"EnableIPv4": cfg.EnableIPv4, "EnableIPv6": cfg.EnableIPv6, "EnableNFTables": cfg.EnableNFTables} {
		if want := fmt.Sprintf("`%t`", got); documented[name] != want {
			t.Errorf("%s: documented default %s, ParseConfig gives %s", name, documented[name], want)
		}
	}
	if !cfg.BackendDefaulted || cfg.BackendType != "udp" || !strings.Contains(documented["Backend"], `{"Type":"udp"}`) {
		t.Errorf("Backend default: ParseConfig gives %q (defaulted %v), doc says %q", cfg.BackendType, cfg.BackendDefaulted, documented["Backend"])
	}
}

// TestDocsNetConfigExamples runs the documented examples through
// subnet.ParseConfig.
func TestDocsNetConfigExamples(t *testing.T) {
	sec := docSection(t, readDoc(t, "configuration.md"), "## Network config")
	rows := tableRows(sec, "config")
	if len(rows) == 0 {
		t.Fatal("no examples table")
	}
	for _, r := range rows {
		js, _ := code(r.cells[0])
		cfg, err := subnet.ParseConfig([]byte(js))
		if err != nil {
			t.Errorf("%s: %v", js, err)
			continue
		}
		l, min, max := cfg.SubnetLen, cfg.SubnetMin, cfg.SubnetMax
		if !cfg.EnableIPv4 {
			l, min, max = cfg.IPv6SubnetLen, cfg.IPv6SubnetMin, cfg.IPv6SubnetMax
		}
		if got := []string{strconv.Itoa(l), min.String(), max.String()}; !reflect.DeepEqual(got, r.cells[1:4]) {
			t.Errorf("%s: ParseConfig gives %q, doc says %q", js, got, r.cells[1:4])
		}
	}
}

// placeholder is a <variable part> of a documented message.
var placeholder = regexp.MustCompile(`<[^<>]*>`)

// messagePattern turns a documented message into a regexp: each
// placeholder matches anything.
func messagePattern(msg string) *regexp.Regexp {
	var b strings.Builder
	b.WriteString("^")
	last := 0
	for _, loc := range placeholder.FindAllStringIndex(msg, -1) {
		b.WriteString(regexp.QuoteMeta(msg[last:loc[0]]))
		b.WriteString(".*")
		last = loc[1]
	}
	b.WriteString(regexp.QuoteMeta(msg[last:]))
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

// TestDocsValidationErrors feeds each documented example to ParseConfig
// and compares the error text.
func TestDocsValidationErrors(t *testing.T) {
	sec := docSection(t, readDoc(t, "configuration.md"), "## Network config")
	rows := tableRows(sec, "problem")
	if len(rows) < 10 {
		t.Fatalf("validation table has %d rows", len(rows))
	}
	for _, r := range rows {
		js, ok1 := code(r.cells[1])
		msg, ok2 := code(r.cells[2])
		if !ok1 || !ok2 {
			t.Fatalf("validation table: bad row %q", r.cells)
		}
		_, err := subnet.ParseConfig([]byte(js))
		if err == nil {
			t.Errorf("%s: accepted, doc says %q", js, msg)
			continue
		}
		if !messagePattern(msg).MatchString(err.Error()) {
			t.Errorf("%s:\n got %q\ndoc %q", js, err, msg)
		}
	}
}

// TestDocsBackendKeys: the per-backend key table matches the options each
// backend parses: every option documented with its default and type, and
// every documented key really read (a value of the wrong type is refused).
func TestDocsBackendKeys(t *testing.T) {
	sec := docSection(t, readDoc(t, "configuration.md"), "### Backends")
	type key struct{ typ, def string }
	doc := map[string]map[string]key{}
	for _, r := range tableRows(sec, "backend") {
		be, ok1 := code(r.cells[0])
		k, ok2 := code(r.cells[1])
		def, ok3 := code(r.cells[3])
		if !ok1 || !ok2 || !ok3 || len(r.cells) != 5 {
			t.Fatalf("backend key table: bad row %q", r.cells)
		}
		if doc[be] == nil {
			doc[be] = map[string]key{}
		}
		doc[be][k] = key{r.cells[2], def}
	}
	vx, err := vxlan.ParseOptions(nil)
	if err != nil {
		t.Fatal(err)
	}
	ud, err := udp.ParseOptions(nil)
	if err != nil {
		t.Fatal(err)
	}
	parsers := map[string]struct {
		defaults any
		parse    func(json.RawMessage) error
	}{
		"vxlan": {vx, func(r json.RawMessage) error { _, err := vxlan.ParseOptions(r); return err }},
		"udp":   {ud, func(r json.RawMessage) error { _, err := udp.ParseOptions(r); return err }},
	}
	for be, p := range parsers {
		v := reflect.ValueOf(p.defaults)
		fields := map[string]bool{}
		for i := 0; i < v.NumField(); i++ {
			name := v.Type().Field(i).Name
			fields[name] = true
			d, ok := doc[be][name]
			if !ok {
				t.Errorf("%s option %s is missing from the backend key table", be, name)
				continue
			}
			if got := fmt.Sprint(v.Field(i).Interface()); got != d.def {
				t.Errorf("%s.%s: documented default %q, parser gives %q", be, name, d.def, got)
			}
			var wrong string
			switch k := v.Field(i).Kind(); {
			case k == reflect.Int && d.typ == "number", k == reflect.Bool && d.typ == "boolean":
				wrong = `"x"`
			case k == reflect.String && d.typ == "string":
				wrong = `1`
			default:
				t.Errorf("%s.%s: documented type %q, option is %s", be, name, d.typ, k)
				continue
			}
			if err := p.parse(json.RawMessage(`{"` + name + `":` + wrong + `}`)); err == nil {
				t.Errorf("%s.%s: a value of the wrong type is accepted, so the key is not read", be, name)
			}
		}
		for name := range doc[be] {
			if !fields[name] {
				t.Errorf("the backend key table documents %s.%s, which the %s backend does not have", be, name, be)
			}
		}
	}
	for be := range doc {
		if _, ok := parsers[be]; !ok {
			t.Errorf("the backend key table documents keys of %s, which this test cannot check; add its parser here", be)
		}
	}
}

// TestDocsBackendTypes: every backend this binary links is documented.
func TestDocsBackendTypes(t *testing.T) {
	sec := docSection(t, readDoc(t, "configuration.md"), "### Backends")
	documented := map[string]bool{}
	for _, r := range tableRows(sec, "type") {
		if name, ok := code(r.cells[0]); ok {
			documented[name] = true
		}
	}
	for _, name := range backends().Known() {
		if !documented[name] {
			t.Errorf("backend %q is linked but not in the backend table of docs/configuration.md", name)
		}
	}
}

// stringLiterals returns every string literal of the repository's non-test
// Go files, unquoted.
func stringLiterals(t *testing.T) []string {
	t.Helper()
	var lits []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != repoRoot && (strings.HasPrefix(n, ".") || n == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			// Another engineer's file mid-edit must not fail the docs.
			t.Logf("skipping %s: %v", path, err)
			return nil
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if bl, ok := n.(*ast.BasicLit); ok && bl.Kind == token.STRING {
				if s, err := strconv.Unquote(bl.Value); err == nil {
					lits = append(lits, s)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return lits
}

// docPlaceholder is a <variable part> of a documented message, with the
// quotes a %q verb would add.
var docPlaceholder = regexp.MustCompile(`"?<[^<>]*>"?`)

// formatVerb is a fmt verb in a source string literal.
var formatVerb = regexp.MustCompile(`%[-+# 0]*[0-9]*(\.[0-9]+)?[vsdqwtxXTfge]`)

// inSource reports whether a documented message is printed by the code:
// with each placeholder and each format verb turned into one marker, the
// message must occur in one string literal. A placeholder at either end
// may also stand for text the code appends or prepends (a concatenation or
// a wrapped error).
func inSource(msg string, lits []string) bool {
	const mark = "\x00"
	d := docPlaceholder.ReplaceAllString(msg, mark)
	d = strings.TrimPrefix(strings.TrimSuffix(d, mark), mark)
	if len(strings.TrimSpace(strings.ReplaceAll(d, mark, ""))) < 4 {
		return false // too little fixed text to mean anything
	}
	for _, l := range lits {
		if strings.Contains(formatVerb.ReplaceAllString(l, mark), d) {
			return true
		}
	}
	return false
}

// TestDocsMessagesInSource: the log lines of configuration.md and the
// message headings of troubleshooting.md are texts the code really prints.
func TestDocsMessagesInSource(t *testing.T) {
	lits := stringLiterals(t)
	var msgs []string
	for _, r := range tableRows(docSection(t, readDoc(t, "configuration.md"), "## Log lines"), "message") {
		m, ok := code(r.cells[0])
		if !ok {
			t.Fatalf("log line table: bad row %q", r.cells)
		}
		msgs = append(msgs, m)
	}
	if len(msgs) < 20 {
		t.Fatalf("only %d log lines found in configuration.md", len(msgs))
	}
	headings := 0
	for _, l := range strings.Split(readDoc(t, "troubleshooting.md"), "\n") {
		// "### `message`" headings quote our code; other headings describe
		// symptoms from elsewhere (the kernel, the runtime).
		if h, ok := strings.CutPrefix(l, "### `"); ok && strings.HasSuffix(h, "`") {
			msgs = append(msgs, strings.TrimSuffix(h, "`"))
			headings++
		}
	}
	if headings < 10 {
		t.Fatalf("only %d message headings found in troubleshooting.md", headings)
	}
	sort.Strings(msgs)
	for _, m := range msgs {
		if !inSource(m, lits) {
			t.Errorf("documented message not found in the source: %q", m)
		}
	}
}

// TestDocsMetrics: the metric table of docs/metrics.md lists exactly the
// metrics pkg/metrics registers (read from its source: the collectors are
// built there).
func TestDocsMetrics(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(repoRoot, "pkg", "metrics", "metrics.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	registered := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		kv, ok := n.(*ast.KeyValueExpr)
		if !ok {
			return true
		}
		if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Name" {
			if bl, ok := kv.Value.(*ast.BasicLit); ok && bl.Kind == token.STRING {
				if s, err := strconv.Unquote(bl.Value); err == nil {
					registered[s] = true
				}
			}
		}
		return true
	})
	if len(registered) == 0 {
		t.Fatal("pkg/metrics/metrics.go: no metric names found")
	}
	doc := map[string]bool{}
	for _, r := range tableRows(readDoc(t, "metrics.md"), "metric") {
		name, ok := code(r.cells[0])
		if !ok {
			t.Fatalf("metric table: bad row %q", r.cells)
		}
		doc[name] = true
		if !registered[name] {
			t.Errorf("docs/metrics.md documents metric %s, which pkg/metrics does not register", name)
		}
	}
	for name := range registered {
		if !doc[name] {
			t.Errorf("metric %s is missing from docs/metrics.md", name)
		}
	}
}
