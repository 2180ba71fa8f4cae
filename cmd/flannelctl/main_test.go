package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// captured runs a command line with the given environment and stdin and
// returns the exit code and outputs.
func captured(t *testing.T, args []string, env map[string]string, stdin string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	a := &app{
		stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb,
		getenv: func(k string) string { return env[k] },
		now:    time.Now,
	}
	code = a.main(context.Background(), args)
	return code, out.String(), errb.String()
}

func TestUsageAndExitCodes(t *testing.T) {
	cases := []struct {
		args   []string
		code   int
		stderr string
	}{
		{nil, 2, "flannelctl: no command given"},
		{[]string{"bogus"}, 2, `flannelctl: unknown command "bogus"`},
		{[]string{"--bogus-flag", "leases"}, 2, "flag provided but not defined: -bogus-flag"},
		{[]string{"leases", "--bogus-flag"}, 2, "flag provided but not defined: -bogus-flag"},
		{[]string{"config"}, 2, "config needs a subcommand: get, set or validate"},
		{[]string{"config", "put"}, 2, "config needs a subcommand"},
		{[]string{"config", "set"}, 2, "flannelctl config set: got 0 argument(s), want FILE|-"},
		{[]string{"reserve", "10.5.3.0/24"}, 2, "got 1 argument(s), want SUBNET PUBLIC_IP"},
		{[]string{"reserve", "10.5.3.0/24", "1.2.3.4", "fd00::/64"}, 2, "for dual stack IPV6_SUBNET PUBLIC_IPV6"},
		{[]string{"leases", "extra"}, 2, "got 1 argument(s), want [-o table|wide|json|yaml]"},
		{[]string{"leases", "-o", "xml"}, 2, `invalid -o "xml": want table, wide, json, yaml`},
		{[]string{"doctor", "--public-ip=fd00::1"}, 2, `invalid --public-ip "fd00::1": not an IPv4 address`},
		{[]string{"leases", "--timeout=0s"}, 2, "invalid --timeout 0s"},
	}
	for _, c := range cases {
		code, _, stderr := captured(t, c.args, nil, "")
		if code != c.code || !strings.Contains(stderr, c.stderr) {
			t.Errorf("%q: exit %d, stderr:\n%s\nwant exit %d and %q", c.args, code, stderr, c.code, c.stderr)
		}
		if code == 2 && !strings.Contains(stderr, "Usage: flannelctl") {
			t.Errorf("%q: no usage on stderr:\n%s", c.args, stderr)
		}
	}
	for _, args := range [][]string{{"help"}, {"-h"}, {"leases", "-h"}, {"config", "validate", "--help"}} {
		code, stdout, stderr := captured(t, args, nil, "")
		if code != 0 || !strings.Contains(stdout+stderr, "Usage: flannelctl") {
			t.Errorf("%q: exit %d\n%s%s", args, code, stdout, stderr)
		}
	}
}

// parse runs the flag and environment handling of a command without running it.
func parse(t *testing.T, args []string, env map[string]string) (*options, *cmdFlags, []string) {
	t.Helper()
	var o options
	var c cmdFlags
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	addCommon(fs, &o)
	findCommand("doctor").flags(fs, &c)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := applyEnv(fs, set, func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if err := o.finish(); err != nil {
		t.Fatal(err)
	}
	return &o, &c, pos
}

func TestFlagsAndEnvironment(t *testing.T) {
	env := map[string]string{
		"FLANNELD_ETCD_ENDPOINTS": "https://10.0.0.1:2379, https://10.0.0.2:2379",
		"FLANNELD_ETCD_PREFIX":    "/from/env",
		"FLANNELD_ETCD_CAFILE":    "/env/ca.pem",
		"FLANNELD_ETCD_KEYFILE":   "/env/key.pem",
		"FLANNELD_SUBNET_FILE":    "/env/subnet.env",
		"FLANNELD_PUBLIC_IP":      "192.168.1.5",
		"FLANNELD_ETCD_PASSWORD":  "s3cret",
		"FLANNELD_IP_MASQ":        "true",     // a daemon flag flannelctl does not have: ignored
		"FLANNELD_CNI_BIN_DIR":    "/env/cni", // flannelctl's own flags take no FLANNELD_ value
	}
	o, c, pos := parse(t, []string{"--etcd-prefix=/cli", "a", "-etcd-key-file", "/cli/key.pem", "b", "--", "-c"}, env)
	if got := strings.Join(o.Etcd.Endpoints, " "); got != "https://10.0.0.1:2379 https://10.0.0.2:2379" {
		t.Errorf("endpoints %q", got)
	}
	if o.Prefix != "/cli" || o.Etcd.KeyFile != "/cli/key.pem" || o.Etcd.CAFile != "/env/ca.pem" ||
		o.SubnetFile != "/env/subnet.env" || o.PublicIP != "192.168.1.5" || o.Etcd.Password != "s3cret" {
		t.Errorf("options %+v", o)
	}
	if c.cniBinDir != "/opt/cni/bin:/usr/lib/cni" || c.cniConfDir != "/etc/cni/net.d" {
		t.Errorf("cni dirs %q %q", c.cniBinDir, c.cniConfDir)
	}
	if strings.Join(pos, " ") != "a b -c" {
		t.Errorf("positional %q", pos)
	}
	o, _, _ = parse(t, nil, nil)
	if strings.Join(o.Etcd.Endpoints, ",") != "http://127.0.0.1:4001,http://127.0.0.1:2379" || o.Prefix != "/coreos.com/network" ||
		o.SubnetFile != "/run/flannel/subnet.env" || o.nodeIP().IsValid() {
		t.Errorf("defaults %+v", o)
	}
	o, _, _ = parse(t, []string{"--iface=eth1", "--iface=10.1.2.3"}, nil)
	if o.nodeIP().String() != "10.1.2.3" {
		t.Errorf("--iface IP not used to find the lease: %v", o.nodeIP())
	}
}

// The etcd password appears in no output, also when the command fails.
func TestPasswordNeverPrinted(t *testing.T) {
	const pw = "Sup3r-Secr3t-Passw0rd"
	for _, args := range [][]string{
		{"leases", "--etcd-endpoints=http://127.0.0.1:1", "--timeout=300ms", "--etcd-username=root", "--etcd-password=" + pw},
		{"leases", "--etcd-endpoints=http://" + pw + "@127.0.0.1:1", "--timeout=300ms", "--etcd-password=" + pw},
		{"leases", "--etcd-password=" + pw, "--bogus"},
	} {
		code, stdout, stderr := captured(t, args, nil, "")
		if code == 0 || strings.Contains(stdout+stderr, pw) {
			t.Errorf("%q: exit %d, output:\n%s%s", args, code, stdout, stderr)
		}
	}
	code, stdout, stderr := captured(t, []string{"leases", "--etcd-endpoints=http://127.0.0.1:1", "--timeout=300ms"}, map[string]string{"FLANNELD_ETCD_PASSWORD": pw, "FLANNELD_ETCD_USERNAME": "root"}, "")
	if code != 1 || strings.Contains(stdout+stderr, pw) || !strings.Contains(stderr, "http://127.0.0.1:1") {
		t.Errorf("exit %d, output:\n%s%s", code, stdout, stderr)
	}
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	file := func(s string) string {
		p := filepath.Join(dir, "c.json")
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	code, stdout, stderr := captured(t, []string{"config", "validate", file(`{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}`)}, nil, "")
	want := "Backend:        vxlan\nNetwork:        10.5.0.0/16\nSubnetLen:      24\nSubnetMin:      10.5.1.0\nSubnetMax:      10.5.255.0\nSubnets:        255\n"
	if code != 0 || !strings.HasSuffix(stdout, want) || stderr != "" {
		t.Errorf("exit %d\n%s%s", code, stdout, stderr)
	}
	code, stdout, stderr = captured(t, []string{"config", "validate", "-"}, nil, `{"network":"10.5.0.0/23","EnableIPv6":true,"IPv6Network":"fd00::/112"}`)
	want = "Backend:        udp\nNetwork:        10.5.0.0/23\nSubnetLen:      25\nSubnetMin:      10.5.0.128\nSubnetMax:      10.5.1.128\nSubnets:        3\n" +
		"IPv6Network:    fd00::/112\nIPv6SubnetLen:  114\nIPv6SubnetMin:  fd00::4000\nIPv6SubnetMax:  fd00::c000\nIPv6Subnets:    3\n"
	if code != 0 || !strings.HasSuffix(stdout, want) || !strings.Contains(stderr, `warning: the config has no "Backend": flanneld uses the udp backend`) {
		t.Errorf("exit %d\n%s%s", code, stdout, stderr)
	}
	for cfg, msg := range map[string]string{
		`{"Network":"10.5.0.0/29"}`: "network is too small. Minimum useful network prefix is /28",
		`{"Network":"10.5.0.0/16","SubnetMin":"10.6.0.0","Backend":{"Type":"vxlan"}}`: "SubnetMin is not in the range of the Network",
		`{"Network":"10.5.0.0/16","Backend":{"Type":"vxlam"}}`:                        `unknown backend type "vxlam" in Backend.Type`,
		`{"Network":"10.5.0.0/16","Backend":{}}`:                                      `unknown backend type "" in Backend.Type`,
		`{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan","VNI":16777216}}`:         "invalid Backend.VNI 16777216",
		`{"Network":"10.5.0.0/16",`:                                                   "invalid network config JSON",
		``:                                                                            "empty network config",
	} {
		code, stdout, stderr := captured(t, []string{"config", "validate", file(cfg)}, nil, "")
		if code != 1 || stdout != "" || !strings.Contains(stderr, "invalid network config "+filepath.Join(dir, "c.json")+": ") || !strings.Contains(stderr, msg) {
			t.Errorf("%s: exit %d\n%s%s", cfg, code, stdout, stderr)
		}
	}
	code, _, stderr = captured(t, []string{"config", "validate", filepath.Join(dir, "missing.json")}, nil, "")
	if code != 1 || !strings.Contains(stderr, "no such file or directory") {
		t.Errorf("missing file: exit %d %s", code, stderr)
	}
}

// An invalid config is refused before etcd is contacted.
func TestConfigSetRefusesInvalid(t *testing.T) {
	code, stdout, stderr := captured(t, []string{"config", "set", "-", "--etcd-endpoints=http://127.0.0.1:1", "--timeout=200ms"}, nil, `{"Network":"10.5.0.0/16","SubnetLen":31}`)
	if code != 1 || stdout != "" || !strings.Contains(stderr, "refusing to write an invalid network config (stdin): SubnetLen must be less than /31") ||
		strings.Contains(stderr, "127.0.0.1:1") {
		t.Errorf("exit %d\n%s%s", code, stdout, stderr)
	}
}
