package dist

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// unitFile is a parsed systemd unit: section -> key -> values, in order
// (a key such as EnvironmentFile may appear more than once).
type unitFile map[string]map[string][]string

// parseUnit parses the ini syntax of systemd units (systemd.syntax(7)):
// [Section] headers, Key=Value lines, # and ; comments, backslash
// continuations. Anything else is an error naming the line.
func parseUnit(text string) (unitFile, error) {
	u := unitFile{}
	section := ""
	lines, numbers := logicalLines(text)
	for i, raw := range lines {
		l := strings.TrimSpace(raw)
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
			continue
		case strings.HasPrefix(l, "["):
			if !strings.HasSuffix(l, "]") || len(l) < 3 {
				return nil, fmt.Errorf("line %d: bad section header %q", numbers[i], l)
			}
			section = l[1 : len(l)-1]
			if _, dup := u[section]; dup {
				return nil, fmt.Errorf("line %d: section [%s] appears twice", numbers[i], section)
			}
			u[section] = map[string][]string{}
		default:
			key, value, ok := strings.Cut(l, "=")
			key = strings.TrimSpace(key)
			if !ok || key == "" || strings.ContainsAny(key, " \t") {
				return nil, fmt.Errorf("line %d: want Key=Value, got %q", numbers[i], l)
			}
			if section == "" {
				return nil, fmt.Errorf("line %d: %s= before any section", numbers[i], key)
			}
			u[section][key] = append(u[section][key], strings.TrimSpace(value))
		}
	}
	return u, nil
}

// one returns the single value of key in section.
func (u unitFile) one(t *testing.T, section, key string) string {
	t.Helper()
	v := u[section][key]
	if len(v) != 1 {
		t.Errorf("[%s] %s: %d values %q, want exactly one", section, key, len(v), v)
		return ""
	}
	return v[0]
}

func TestSystemdUnit(t *testing.T) {
	u, err := parseUnit(readDistFile(t, "flanneld.service"))
	if err != nil {
		t.Fatalf("flanneld.service: %v", err)
	}
	for _, s := range []string{"Unit", "Service", "Install"} {
		if u[s] == nil {
			t.Errorf("no [%s] section", s)
		}
	}

	exact := []struct{ section, key, want string }{
		{"Service", "Type", "notify"},
		{"Service", "Restart", "always"},
		{"Service", "RestartSec", "5"},
		{"Unit", "Before", "docker.service"},
		{"Unit", "After", "network-online.target"},
		{"Unit", "Wants", "network-online.target"},
		{"Install", "WantedBy", "multi-user.target"},
		{"Service", "ExecStart", "/usr/local/bin/flanneld $FLANNELD_OPTIONS"},
	}
	for _, e := range exact {
		if got := u.one(t, e.section, e.key); got != e.want {
			t.Errorf("[%s] %s=%s, want %s", e.section, e.key, got, e.want)
		}
	}

	// Optional ("-") so that a node without either file still starts.
	envFiles := u["Service"]["EnvironmentFile"]
	for _, want := range []string{"-/etc/sysconfig/flanneld", "-/etc/default/flanneld"} {
		if !contains(envFiles, want) {
			t.Errorf("EnvironmentFile=%s missing (have %q)", want, envFiles)
		}
	}

	if n, err := strconv.Atoi(u.one(t, "Service", "LimitNOFILE")); err != nil || n < 4096 {
		t.Errorf("LimitNOFILE=%q: want a number of at least 4096", u["Service"]["LimitNOFILE"])
	}
	// KillMode=process would leave children of a killed daemon behind for
	// nothing: flanneld's own exit leaves the lease and data plane in place.
	if km := u["Service"]["KillMode"]; len(km) > 0 && !contains(km, "control-group") {
		t.Errorf("KillMode=%q, want the default control-group", km)
	}

	// etcd down at boot must not get flanneld killed by the start
	// timeout: it is "activating" until the lease is held (Type=notify).
	if got := u.one(t, "Service", "TimeoutStartSec"); got != "infinity" {
		t.Errorf("TimeoutStartSec=%s, want infinity", got)
	}

	// ExecStartPost writes Docker's options with the script this
	// directory ships, using options the script knows, behind a guard
	// that skips a script that is not installed.
	guarded, err := unguard(u.one(t, "Service", "ExecStartPost"))
	if err != nil {
		t.Fatalf("ExecStartPost: %v", err)
	}
	post := strings.Fields(guarded)
	if len(post) == 0 || post[0] != "/usr/local/libexec/flannel/mk-docker-opts.sh" {
		t.Fatalf("ExecStartPost runs %q, want /usr/local/libexec/flannel/mk-docker-opts.sh ...", post)
	}
	opts := map[string]string{}
	for i := 1; i < len(post); i++ {
		switch post[i] {
		case "-f", "-d", "-k":
			if i+1 == len(post) {
				t.Fatalf("ExecStartPost: %s without a value", post[i])
			}
			opts[post[i]] = post[i+1]
			i++
		case "-i", "-c", "-m":
			opts[post[i]] = ""
		default:
			t.Errorf("ExecStartPost: mk-docker-opts.sh has no option %q", post[i])
		}
	}
	if opts["-k"] != "DOCKER_NETWORK_OPTIONS" || opts["-d"] != "/run/flannel/docker" {
		t.Errorf("ExecStartPost options %v, want -k DOCKER_NETWORK_OPTIONS -d /run/flannel/docker", opts)
	}
	// systemd executes the script directly.
	script := filepath.Join(distDir, "mk-docker-opts.sh")
	if fi, err := os.Stat(script); err != nil || fi.Mode().Perm()&0o111 == 0 {
		t.Errorf("%s is not executable (%v)", script, err)
	}
	if !strings.HasPrefix(readDistFile(t, "mk-docker-opts.sh"), "#!/bin/sh\n") {
		t.Error("mk-docker-opts.sh does not start with #!/bin/sh")
	}
	// The default -f must be where flanneld writes subnet.env.
	if f, ok := opts["-f"]; ok && f != "/run/flannel/subnet.env" {
		t.Errorf("ExecStartPost reads %s, flanneld writes /run/flannel/subnet.env", f)
	}
}

// guardRE is the ExecStartPost guard: run the script only if it is
// installed, and then with exec, so that its failure is the step's.
var guardRE = regexp.MustCompile(`^/bin/sh -c 'test ! -x (/\S+) \|\| exec (/\S+)((?: [^' ]+)*)'$`)

// unguard returns the command line the guard runs (script and options).
func unguard(v string) (string, error) {
	m := guardRE.FindStringSubmatch(v)
	if m == nil {
		return "", fmt.Errorf("%q is not /bin/sh -c 'test ! -x SCRIPT || exec SCRIPT ARGS...'", v)
	}
	if m[1] != m[2] {
		return "", fmt.Errorf("the guard tests %s but runs %s", m[1], m[2])
	}
	return m[2] + m[3], nil
}

// TestSystemdUnitDockerOptsGuard runs the unit's ExecStartPost line as
// systemd would (its argv, no shell around it), with the script's path
// pointed at a temporary one: a missing script is success, an installed
// one runs with the unit's options and its failure fails the step.
func TestSystemdUnitDockerOptsGuard(t *testing.T) {
	u, err := parseUnit(readDistFile(t, "flanneld.service"))
	if err != nil {
		t.Fatal(err)
	}
	line := u.one(t, "Service", "ExecStartPost")
	if _, err := unguard(line); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "mk-docker-opts.sh")
	out := filepath.Join(dir, "args")
	line = strings.ReplaceAll(line, "/usr/local/libexec/flannel/mk-docker-opts.sh", script)
	inner := strings.TrimSuffix(strings.TrimPrefix(line, "/bin/sh -c '"), "'")
	run := func() error { return exec.Command("/bin/sh", "-c", inner).Run() }

	if err := run(); err != nil {
		t.Errorf("missing script: %v, want success", err)
	}
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$@\" > "+out+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := run(); err != nil {
		t.Errorf("installed script: %v", err)
	}
	if got, _ := os.ReadFile(out); string(got) != "-k DOCKER_NETWORK_OPTIONS -d /run/flannel/docker\n" {
		t.Errorf("script ran with %q", got)
	}
	if err := os.WriteFile(script, []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var ee *exec.ExitError
	if err := run(); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Errorf("failing script: %v, want exit status 3", err)
	}
}

// TestSystemdUnitVerify lets systemd itself parse the unit where
// systemd-analyze is installed. The two commands do not exist on a build
// machine; every other complaint (unknown key, bad value) fails the test.
func TestSystemdUnitVerify(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	dir := t.TempDir()
	unit := filepath.Join(dir, "flanneld.service")
	if err := os.WriteFile(unit, []byte(readDistFile(t, "flanneld.service")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", unit).CombinedOutput()
	missing := regexp.MustCompile(`^flanneld\.service: Command (/usr/local/bin/flanneld|/usr/local/libexec/flannel/mk-docker-opts\.sh) is not executable`)
	bad := regexp.MustCompile(`(?i)ignoring|unknown|invalid|failed to parse|bad`)
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		switch {
		case l == "" || missing.MatchString(l):
		case bad.MatchString(l):
			t.Errorf("systemd-analyze verify: %s", l)
		default:
			t.Logf("systemd-analyze verify: %s", l)
		}
	}
	t.Logf("systemd-analyze verify exit: %v", err)
}

// envLine is one `#FLANNELD_X=value` line of flanneld.env.
type envLine struct {
	name, value string
	line        int
	desc        string // the comment line above it
}

var envVarRe = regexp.MustCompile(`^(#?)\s*(FLANNELD_[A-Za-z0-9_]*)=(.*)$`)

func parseEnvFile(t *testing.T, text string) []envLine {
	t.Helper()
	var vars []envLine
	prev := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		if m := envVarRe.FindStringSubmatch(l); m != nil {
			if m[1] == "" {
				// The shipped file changes nothing: every value is the
				// default, and a node's copy uncomments what it sets.
				t.Errorf("flanneld.env:%d: %s is set; ship it commented out", n, m[2])
			}
			desc := ""
			if strings.HasPrefix(prev, "# ") && !envVarRe.MatchString(prev) {
				desc = strings.TrimPrefix(prev, "# ")
			}
			vars = append(vars, envLine{name: m[2], value: m[3], line: n, desc: desc})
		} else if strings.Contains(l, "FLANNELD_") && !strings.HasPrefix(l, "#") {
			t.Errorf("flanneld.env:%d: %q is neither a comment nor a FLANNELD_ variable", n, l)
		}
		prev = l
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return vars
}

// equalDefault compares a documented default with the flag's, by kind:
// "24h" and "24h0m0s" are the same duration.
func equalDefault(f daemonFlag, documented string) bool {
	switch f.kind {
	case kindDuration:
		a, err1 := time.ParseDuration(documented)
		b, err2 := time.ParseDuration(f.def)
		return err1 == nil && err2 == nil && a == b
	case kindBool:
		a, err1 := strconv.ParseBool(documented)
		b, err2 := strconv.ParseBool(f.def)
		return err1 == nil && err2 == nil && a == b
	default:
		return documented == f.def
	}
}

func TestEnvFileDocumentsEveryFlag(t *testing.T) {
	// FLANNELD_OPTIONS is the unit's $FLANNELD_OPTIONS, not a flag; no flag
	// may be called "options" or the two would clash.
	if _, ok := lookupFlag("options"); ok {
		t.Fatal("a flag named options clashes with the unit's FLANNELD_OPTIONS")
	}
	byEnv := map[string]daemonFlag{}
	for _, f := range daemonFlags {
		if prev, dup := byEnv[envName(f.name)]; dup {
			t.Fatalf("flags %s and %s share the variable %s", prev.name, f.name, envName(f.name))
		}
		byEnv[envName(f.name)] = f
	}

	seen := map[string]int{}
	for _, v := range parseEnvFile(t, readDistFile(t, "flanneld.env")) {
		if prev, dup := seen[v.name]; dup {
			t.Errorf("flanneld.env:%d: %s already documented on line %d", v.line, v.name, prev)
		}
		seen[v.name] = v.line
		if v.desc == "" {
			t.Errorf("flanneld.env:%d: %s has no one-line description above it", v.line, v.name)
		}
		if v.name == "FLANNELD_OPTIONS" {
			continue
		}
		f, ok := byEnv[v.name]
		if !ok {
			t.Errorf("flanneld.env:%d: %s matches no flanneld flag", v.line, v.name)
			continue
		}
		if envFlagExempt[f.name] {
			t.Errorf("flanneld.env:%d: %s does nothing and should not be listed", v.line, v.name)
		}
		if !equalDefault(f, v.value) {
			t.Errorf("flanneld.env:%d: %s=%s, but --%s defaults to %q", v.line, v.name, v.value, f.name, f.def)
		}
	}
	for _, f := range daemonFlags {
		if _, ok := seen[envName(f.name)]; !ok && !envFlagExempt[f.name] {
			t.Errorf("flanneld.env does not document --%s (%s)", f.name, envName(f.name))
		}
	}
	if _, ok := seen["FLANNELD_OPTIONS"]; !ok {
		t.Error("flanneld.env does not document FLANNELD_OPTIONS, which the unit's ExecStart uses")
	}
}
