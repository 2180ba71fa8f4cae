package main

import (
	"bytes"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseConfig(t *testing.T) {
	var stderr bytes.Buffer
	c, err := parseConfig([]string{"--etcd-endpoints=http://a:2379,http://b:2379", "-iface", "eth1", "--iface=10.0.0.1", "--ip-masq", "-etcd-ca-file=/ca.pem", "--iptables-forward-rules=false"},
		env(map[string]string{
			"FLANNELD_ETCD_PREFIX":    "/kubernetes/network",
			"FLANNELD_IFACE":          "eth9,eth8", // one value, commas not split
			"FLANNELD_IP_MASQ":        "false",     // the command line wins
			"FLANNELD_PUBLIC_IP":      "192.168.1.5",
			"FLANNELD_ETCD_CAFILE":    "/other.pem", // its alias was on the command line
			"FLANNELD_ETCD_CERT_FILE": "/cert.pem",
			"FLANNELD_V":              "5",
		}), &stderr)
	if err != nil {
		t.Fatalf("%v: %s", err, stderr.String())
	}
	if strings.Join(c.Etcd.Endpoints, " ") != "http://a:2379 http://b:2379" || c.Prefix != "/kubernetes/network" {
		t.Errorf("etcd: %+v %s", c.Etcd, c.Prefix)
	}
	if strings.Join(c.Ifaces, "|") != "eth1|10.0.0.1" || !c.IPMasq || c.IPTablesForwardRule || c.PublicIP != "192.168.1.5" {
		t.Errorf("got %+v", c)
	}
	if c.Etcd.CAFile != "/ca.pem" || c.Etcd.CertFile != "/cert.pem" || c.Verbosity != 5 {
		t.Errorf("aliases/env: %+v v=%d", c.Etcd, c.Verbosity)
	}
	c, _ = parseConfig(nil, env(map[string]string{"FLANNELD_IFACE": "eth9,eth8"}), &stderr)
	if len(c.Ifaces) != 1 || c.Ifaces[0] != "eth9,eth8" {
		t.Errorf("env iface: %q", c.Ifaces)
	}
	if strings.Join(c.Etcd.Endpoints, ",") != "http://127.0.0.1:4001,http://127.0.0.1:2379" || c.SubnetFile != "/run/flannel/subnet.env" ||
		c.RenewMargin != 60 || c.IPTablesResync != 5 || !c.IPTablesForwardRule || c.LeaseTTL != 24*time.Hour || c.HealthzIP != "0.0.0.0" || c.EtcdAPI != "auto" {
		t.Errorf("defaults: %+v", c)
	}
	for _, api := range []string{"auto", "v3", "v2", "both"} {
		c, err := parseConfig([]string{"--etcd-api", api}, env(nil), &stderr)
		if err != nil || c.EtcdAPI != api {
			t.Errorf("--etcd-api %s: %v %+v", api, err, c)
		}
		c, err = parseConfig(nil, env(map[string]string{"FLANNELD_ETCD_API": api}), &stderr)
		if err != nil || c.EtcdAPI != api {
			t.Errorf("FLANNELD_ETCD_API=%s: %v %+v", api, err, c)
		}
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		args []string
		env  map[string]string
		want string
		code int
	}{
		{[]string{"--bogus-flag"}, nil, "flag provided but not defined: -bogus-flag", 2},
		{[]string{"--logtostderr"}, nil, "flag provided but not defined: -logtostderr", 2},
		{[]string{"--help"}, nil, "Usage: flanneld [OPTION]...", 0},
		{[]string{"--subnet-lease-renew-margin=0"}, nil, "Invalid subnet-lease-renew-margin option, out of acceptable range", 2},
		{[]string{"--subnet-lease-renew-margin=1440"}, nil, "Invalid subnet-lease-renew-margin option, out of acceptable range", 2},
		{[]string{"--public-ip=1.2.3"}, nil, "invalid public IP address: 1.2.3", 2},
		{nil, map[string]string{"FLANNELD_IP_MASQ": "maybe"}, "invalid value for FLANNELD_IP_MASQ", 2},
		{[]string{"extra"}, nil, `unexpected argument "extra"`, 2},
		{[]string{"--etcd-api=v4"}, nil, `invalid --etcd-api "v4": must be auto, v3, v2 or both`, 2},
		{nil, map[string]string{"FLANNELD_ETCD_API": "V2"}, `invalid --etcd-api "V2"`, 2},
	}
	for _, tt := range tests {
		var stderr bytes.Buffer
		_, err := parseConfig(tt.args, env(tt.env), &stderr)
		if err == nil {
			t.Errorf("%v: no error", tt.args)
			continue
		}
		if !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("%v: stderr %q, want %q", tt.args, stderr.String(), tt.want)
		}
		if got := exitCode(err); got != tt.code {
			t.Errorf("%v: exit %d, want %d", tt.args, got, tt.code)
		}
	}
	if !strings.Contains(func() string { var b bytes.Buffer; parseConfig([]string{"-h"}, env(nil), &b); return b.String() }(), "-etcd-endpoints") {
		t.Error("usage lacks flags")
	}
}

// Every upstream flag from the spec's --help listing is accepted.
func TestUpstreamFlagsAccepted(t *testing.T) {
	for _, f := range []string{"etcd-cafile", "etcd-certfile", "etcd-endpoints", "etcd-keyfile", "etcd-password", "etcd-prefix", "etcd-username",
		"healthz-ip", "healthz-port", "iface", "iface-can-reach", "iface-regex", "ip-blackhole-route", "ip-masq", "ip-masq-fully-random-disable",
		"iptables-forward-rules", "iptables-resync", "kube-annotation-prefix", "kube-api-url", "kube-subnet-mgr", "kubeconfig-file",
		"log_backtrace_at", "net-config-path", "public-ip", "public-ipv6", "set-node-network-unavailable", "subnet-file",
		"subnet-lease-renew-margin", "v", "version", "vmodule"} {
		fs := newFlagSet(&config{}, &bytes.Buffer{})
		if fs.Lookup(f) == nil {
			t.Errorf("flag -%s missing", f)
		}
	}
	_ = flag.ErrHelp
}

// The built binary: --version on stdout with exit 0, bad flags exit 2.
func TestBinaryExitCodes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "flanneld")
	if out, err := exec.Command("go", "build", "-ldflags", "-X github.com/flannelng/flannel/pkg/version.Version=v9.9.9-test", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--version")
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Run(); err != nil || so.String() != "v9.9.9-test\n" || se.Len() != 0 {
		t.Errorf("--version: %v stdout %q stderr %q", err, so.String(), se.String())
	}
	cmd = exec.Command(bin, "--no-such-flag")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Errorf("unknown flag: %v", err)
	}
	if err := exec.Command(bin, "--help").Run(); err != nil {
		t.Errorf("--help: %v", err)
	}
}

// Kube mode is selected by the flag or by FLANNELD_KUBE_SUBNET_MGR, and
// its flags have upstream's defaults.
func TestParseConfigKube(t *testing.T) {
	var stderr bytes.Buffer
	c, err := parseConfig([]string{"--ip-masq", "--kube-subnet-mgr", "--healthz-port=8081"}, env(nil), &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if !c.KubeSubnetMgr || c.NetConfigPath != "/etc/kube-flannel/net-conf.json" || c.KubeAnnotationPrefix != "flannel.alpha.coreos.com" ||
		!c.SetNodeNetUnavail || c.KubeAPIURL != "" || c.KubeconfigFile != "" {
		t.Errorf("kube defaults: %+v", c)
	}
	c, err = parseConfig(nil, env(map[string]string{
		"FLANNELD_KUBE_SUBNET_MGR": "true", "FLANNELD_KUBECONFIG_FILE": "/etc/kubernetes/flannel.conf",
		"FLANNELD_NET_CONFIG_PATH": "/etc/flannel/net-conf.json", "FLANNELD_KUBE_ANNOTATION_PREFIX": "example.com/fl",
		"FLANNELD_SET_NODE_NETWORK_UNAVAILABLE": "false", "FLANNELD_KUBE_API_URL": "https://10.0.0.1:6443",
	}), &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if !c.KubeSubnetMgr || c.KubeconfigFile != "/etc/kubernetes/flannel.conf" || c.NetConfigPath != "/etc/flannel/net-conf.json" ||
		c.KubeAnnotationPrefix != "example.com/fl" || c.SetNodeNetUnavail || c.KubeAPIURL != "https://10.0.0.1:6443" {
		t.Errorf("kube from the environment: %+v", c)
	}
}

// The etcd password can come from a file (--etcd-password-file, or
// FLANNELD_ETCD_PASSWORD_FILE), so that it is not in argv; its first line
// is the password. An empty or missing file, or both ways at once, fail
// with a message naming the flag.
func TestEtcdPasswordFile(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret\r\nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	var stderr bytes.Buffer
	c, err := parseConfig([]string{"--etcd-password-file", pw}, env(nil), &stderr)
	if err != nil || c.Etcd.Password != "s3cret" {
		t.Fatalf("flag: %v %q", err, c.Etcd.Password)
	}
	c, err = parseConfig(nil, env(map[string]string{"FLANNELD_ETCD_PASSWORD_FILE": pw}), &stderr)
	if err != nil || c.Etcd.Password != "s3cret" {
		t.Fatalf("env: %v", err)
	}
	if strings.Contains(c.Etcd.String(), "s3cret") {
		t.Errorf("password shown: %s", c.Etcd.String())
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--etcd-password-file", filepath.Join(dir, "missing")}, "--etcd-password-file: open"},
		{[]string{"--etcd-password-file", empty}, "the first line is empty"},
		{[]string{"--etcd-password-file", pw, "--etcd-password", "x"}, "both set"},
	} {
		stderr.Reset()
		if _, err := parseConfig(tc.args, env(nil), &stderr); err == nil || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: %v, stderr %q, want %q", tc.args, err, stderr.String(), tc.want)
		}
	}
}
