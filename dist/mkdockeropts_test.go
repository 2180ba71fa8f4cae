package dist

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flannelng/flannel/internal/testns"
)

// The script is run as `sh mk-docker-opts.sh` from this directory, so $0 in
// its usage text is always "mk-docker-opts.sh".
const scriptName = "mk-docker-opts.sh"

// scriptRunner runs mk-docker-opts.sh with an empty routing table that the
// test controls: inside a network namespace of its own, never the root
// namespace's (the script's last step reads `ip route show`).
type scriptRunner struct {
	prefix []string // command that enters the namespace, or nil
}

// newNetns creates a network namespace with a unique name and removes it
// when the test ends, also on failure (testns).
func newNetns(t *testing.T) string {
	t.Helper()
	return testns.New(t, "flt-dist").Name
}

// ipNS runs `ip -n ns args...` and fails the test on error.
func ipNS(t *testing.T, ns string, args ...string) {
	t.Helper()
	full := append([]string{"-n", ns}, args...)
	if out, err := exec.Command("ip", full...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(full, " "), err, out)
	}
}

// newScriptRunner returns a runner inside a fresh network namespace: one
// made with `ip netns add` as root, else an unprivileged user+net namespace
// if the kernel allows it. Failing both, the script reads the host's route
// table (read only) and a route there for a test subnet would show up as a
// failure naming that route.
func newScriptRunner(t *testing.T) scriptRunner {
	t.Helper()
	if os.Geteuid() == 0 {
		return scriptRunner{prefix: []string{"ip", "netns", "exec", newNetns(t)}}
	}
	unshare := []string{"unshare", "--user", "--map-root-user", "--net"}
	if err := exec.Command(unshare[0], append(unshare[1:], "true")...).Run(); err == nil {
		return scriptRunner{prefix: unshare}
	}
	t.Log("not root and no user namespaces: mk-docker-opts.sh reads the host's route table")
	return scriptRunner{}
}

type scriptResult struct {
	stdout, stderr string
	exitCode       int
}

// run runs the script under shell with args and only PATH plus env in its
// environment.
func (r scriptRunner) run(t *testing.T, shell string, env []string, args ...string) scriptResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	argv := append(append(append([]string{}, r.prefix...), shell, scriptName), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = distDir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := scriptResult{stdout: stdout.String(), stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr) && ctx.Err() == nil:
		res.exitCode = exitErr.ExitCode()
	default:
		t.Fatalf("run %s: %v (stderr: %s)", strings.Join(argv, " "), err, stderr.String())
	}
	return res
}

// shells are the shells the script must behave the same under: sh (dash on
// Debian, the shell it runs as) and bash where installed.
func shells(t *testing.T) []string {
	t.Helper()
	list := []string{"sh"}
	if _, err := exec.LookPath("bash"); err == nil {
		list = append(list, "bash")
	}
	return list
}

func readTestdata(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(distDir, "testdata", name))
	if err != nil {
		t.Fatalf("read testdata: %v", err)
	}
	return string(b)
}

func TestMkDockerOptsGolden(t *testing.T) {
	tests := []struct {
		name    string
		input   string   // testdata env file; "" for one that does not exist
		args    []string // besides -f and -d
		env     []string
		golden  string // testdata file with the expected output; "" for none
		want    string // expected output when there is no golden file
		exit    int
		stderr  string // expected stderr, exactly
		noWrite bool   // the output file must not be created
	}{
		{name: "upstream sample", input: "sample.env", golden: "sample.golden"},
		{name: "dual stack", input: "dualstack.env", golden: "dualstack.golden"},
		{name: "individual only", input: "sample.env", args: []string{"-i"}, golden: "sample-i.golden"},
		{name: "combined only", input: "sample.env", args: []string{"-c"}, golden: "sample-c.golden"},
		{name: "both flags", input: "sample.env", args: []string{"-i", "-c"}, golden: "sample.golden"},
		{name: "no ip-masq", input: "sample.env", args: []string{"-m"}, golden: "sample-m.golden"},
		{
			name: "distro key with ip-masq true", input: "ipmasq-true.env",
			args: []string{"-k", "DOCKER_NETWORK_OPTIONS"}, golden: "ipmasq-true-k.golden",
		},
		{
			name: "existing DOCKER_OPTS", input: "sample.env",
			env: []string{"DOCKER_OPTS=--debug --log-level=warn"}, golden: "sample-existing-opts.golden",
		},
		{
			// Only the combined key's own variable is prepended.
			name: "existing DOCKER_OPTS with another key", input: "sample.env",
			args: []string{"-k", "DOCKER_NETWORK_OPTIONS"},
			env:  []string{"DOCKER_OPTS=--debug"},
			want: "DOCKER_OPT_BIP=\"--bip=10.1.74.1/24\"\nDOCKER_OPT_IPMASQ=\"--ip-masq=true\"\nDOCKER_OPT_MTU=\"--mtu=1472\"\n" +
				"DOCKER_NETWORK_OPTIONS=\" --bip=10.1.74.1/24 --ip-masq=true --mtu=1472\"\n",
		},
		{
			name: "extra DOCKER_OPT_ from the environment", input: "sample.env",
			env: []string{"DOCKER_OPT_DNS=--dns=192.0.2.53"}, golden: "sample-extra-opt.golden",
		},
		{
			name: "invalid FLANNEL_IPMASQ", input: "ipmasq-invalid.env",
			exit: 1, stderr: "Invalid value of FLANNEL_IPMASQ: yes\n", noWrite: true,
		},
		{
			// -m skips the ip-masq option and so its check, as upstream.
			name: "invalid FLANNEL_IPMASQ with -m", input: "ipmasq-invalid.env",
			args: []string{"-m"}, golden: "ipmasq-invalid-m.golden",
		},
		{name: "missing env file", want: "DOCKER_OPTS=\"\"\n"},
		{name: "missing env file, individual only", args: []string{"-i"}, want: ""},
		{
			name: "key is not a variable name", input: "sample.env", args: []string{"-k", "DOCKER OPTS"},
			exit: 1, stderr: "Invalid combined options key: 'DOCKER OPTS' is not a shell variable name\n", noWrite: true,
		},
		{name: "-h", input: "sample.env", args: []string{"-h"}, exit: 1, noWrite: true},
		{name: "-?", input: "sample.env", args: []string{"-?"}, exit: 1, noWrite: true},
	}
	usage := readTestdata(t, "usage.golden")
	runner := newScriptRunner(t)
	for _, shell := range shells(t) {
		for _, tc := range tests {
			t.Run(shell+"/"+tc.name, func(t *testing.T) {
				dir := t.TempDir()
				in := filepath.Join(dir, "subnet.env")
				if tc.input != "" {
					if err := os.WriteFile(in, []byte(readTestdata(t, tc.input)), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				out := filepath.Join(dir, "docker_opts.env")
				args := append([]string{"-f", in, "-d", out}, tc.args...)
				res := runner.run(t, shell, tc.env, args...)

				wantStderr := tc.stderr
				if tc.name == "-h" || tc.name == "-?" {
					wantStderr = usage
				}
				if res.exitCode != tc.exit || res.stderr != wantStderr {
					t.Errorf("exit %d, stderr:\n%s\nwant exit %d, stderr:\n%s", res.exitCode, res.stderr, tc.exit, wantStderr)
				}
				if res.stdout != "" {
					t.Errorf("stdout: %q, want nothing", res.stdout)
				}
				got, err := os.ReadFile(out)
				if tc.noWrite {
					if !errors.Is(err, os.ErrNotExist) {
						t.Errorf("output file written (err %v): %q", err, got)
					}
					return
				}
				if err != nil {
					t.Fatalf("read output: %v", err)
				}
				want := tc.want
				if tc.golden != "" {
					want = readTestdata(t, tc.golden)
				}
				if string(got) != want {
					t.Errorf("output:\n%s\nwant:\n%s", got, want)
				}
			})
		}
	}
}

// TestMkDockerOptsSameFile covers `-d /run/flannel/subnet.env`: the
// FLANNEL_* lines stay, the DOCKER_* lines follow them, and running again
// gives the same file (the DOCKER_* lines of the first run are not read
// back as an existing value).
func TestMkDockerOptsSameFile(t *testing.T) {
	runner := newScriptRunner(t)
	want := readTestdata(t, "same-file.golden")
	for _, shell := range shells(t) {
		t.Run(shell, func(t *testing.T) {
			dir := t.TempDir()
			env := filepath.Join(dir, "subnet.env")
			if err := os.WriteFile(env, []byte(readTestdata(t, "sample.env")), 0o640); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(env, 0o640); err != nil {
				t.Fatal(err)
			}
			for _, target := range []string{env, dir + "/./subnet.env", env} {
				res := runner.run(t, shell, nil, "-f", env, "-d", target, "-k", "DOCKER_NETWORK_OPTIONS")
				if res.exitCode != 0 || res.stderr != "" {
					t.Fatalf("-d %s: exit %d, stderr %q", target, res.exitCode, res.stderr)
				}
				got, err := os.ReadFile(env)
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != want {
					t.Fatalf("-d %s: subnet.env is now:\n%s\nwant:\n%s", target, got, want)
				}
			}
			fi, err := os.Stat(env)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != 0o640 {
				t.Errorf("mode %v, want the file's old mode 0640", fi.Mode().Perm())
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 1 {
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Errorf("directory holds %v, want only subnet.env (a temporary file was left?)", names)
			}
		})
	}
}

// TestPrivilegedMkDockerOptsRouteCheck runs the script's last step against
// route tables built in a namespace of the test's own.
func TestPrivilegedMkDockerOptsRouteCheck(t *testing.T) {
	testns.RequireRoot(t)
	tests := []struct {
		name   string
		routes [][]string
		exit   int
		stderr string // prefix of stderr
	}{
		{name: "empty table"},
		{
			name:   "subnet via a gateway",
			routes: [][]string{{"10.1.74.0/24", "via", "192.0.2.2"}},
			exit:   1,
			stderr: "Your routing table already contains the subnet: 10.1.74.0/24 via 192.0.2.2 dev v0",
		},
		{
			name: "subnet via a gateway among others",
			routes: [][]string{
				{"10.1.73.0/24", "via", "192.0.2.3"},
				{"10.1.74.0/24", "via", "192.0.2.2", "metric", "7"},
			},
			exit:   1,
			stderr: "Your routing table already contains the subnet: 10.1.74.0/24 via 192.0.2.2 dev v0",
		},
		// docker0's own route for the subnet has no gateway.
		{name: "subnet on a device", routes: [][]string{{"10.1.74.0/24", "dev", "v0"}}},
		{name: "other subnet via a gateway", routes: [][]string{{"10.1.75.0/24", "via", "192.0.2.2"}}},
		{name: "wider network via a gateway", routes: [][]string{{"10.1.0.0/16", "via", "192.0.2.2"}}},
		{name: "longer address ending the same", routes: [][]string{{"110.1.74.0/24", "via", "192.0.2.2"}}},
	}
	golden := readTestdata(t, "sample.golden")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNetns(t)
			// Both ends of the veth stay in the namespace; 192.0.2.0/24 is
			// a documentation range and no packet is sent.
			ipNS(t, ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
			ipNS(t, ns, "addr", "add", "192.0.2.1/24", "dev", "v0")
			ipNS(t, ns, "link", "set", "v0", "up")
			ipNS(t, ns, "link", "set", "v1", "up")
			for _, r := range tc.routes {
				ipNS(t, ns, append([]string{"route", "add"}, r...)...)
			}

			dir := t.TempDir()
			in := filepath.Join(dir, "subnet.env")
			if err := os.WriteFile(in, []byte(readTestdata(t, "sample.env")), 0o644); err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "docker_opts.env")
			runner := scriptRunner{prefix: []string{"ip", "netns", "exec", ns}}
			res := runner.run(t, "sh", nil, "-f", in, "-d", out)
			if res.exitCode != tc.exit {
				t.Errorf("exit %d, want %d (stderr %q)", res.exitCode, tc.exit, res.stderr)
			}
			if tc.stderr == "" && res.stderr != "" || !strings.HasPrefix(res.stderr, tc.stderr) {
				t.Errorf("stderr %q, want it to start with %q", res.stderr, tc.stderr)
			}
			// The options are written before the check, as upstream does.
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatalf("read output: %v", err)
			}
			if string(got) != golden {
				t.Errorf("output:\n%s\nwant:\n%s", got, golden)
			}
		})
	}
}
