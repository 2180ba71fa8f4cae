package etcdflags

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	etcdsubnet "github.com/flannelng/flannel/subnet/etcd"
)

type parsed struct {
	c            etcdsubnet.ClientConfig
	prefix, file string
}

func parse(t *testing.T, args []string, env map[string]string) (*parsed, error) {
	t.Helper()
	var p parsed
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	Register(fs, Values{Client: &p.c, Prefix: &p.prefix, PasswordFile: &p.file})
	other := fs.String("other", "", "a flag that is not an etcd flag")
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := ApplyEnv(fs, set, func(k string) string { return env[k] }, IsFlag); err != nil {
		return nil, err
	}
	if *other != "" {
		t.Errorf("--other was set from %v", env)
	}
	SetDefaults(&p.c)
	if err := ReadPasswordFile(&p.c, p.file); err != nil {
		return nil, err
	}
	return &p, nil
}

func TestFlagsAndEnvironment(t *testing.T) {
	p, err := parse(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(p.c.Endpoints, ",") != "http://127.0.0.1:4001,http://127.0.0.1:2379" || p.prefix != "/coreos.com/network" || p.c.Password != "" {
		t.Errorf("defaults: %+v", p)
	}
	env := map[string]string{
		"FLANNELD_ETCD_ENDPOINTS": " https://a:2379,, https://b:2379 ",
		"FLANNELD_ETCD_PREFIX":    "/env",
		"FLANNELD_ETCD_KEYFILE":   "/env/key.pem", // the command line's alias wins
		"FLANNELD_ETCD_CA_FILE":   "/env/ca.pem",
		"FLANNELD_ETCD_CERTFILE":  "/env/cert.pem",
		"FLANNELD_ETCD_USERNAME":  "root",
		"FLANNELD_ETCD_PASSWORD":  "s3cret",
		"FLANNELD_OTHER":          "x", // not wanted: ignored
	}
	p, err = parse(t, []string{"--etcd-prefix=/cli", "--etcd-key-file=/cli/key.pem"}, env)
	if err != nil {
		t.Fatal(err)
	}
	want := etcdsubnet.ClientConfig{Endpoints: []string{"https://a:2379", "https://b:2379"}, KeyFile: "/cli/key.pem", CertFile: "/env/cert.pem", CAFile: "/env/ca.pem", Username: "root", Password: "s3cret"}
	if p.c.String() != want.String() || p.c.Password != want.Password || p.prefix != "/cli" {
		t.Errorf("got %s %q %s, want %s %q /cli", p.c, p.c.Password, p.prefix, want, want.Password)
	}
	p, err = parse(t, []string{"--etcd-keyfile=/cli/key.pem"}, map[string]string{"FLANNELD_ETCD_KEY_FILE": "/env/key.pem"})
	if err != nil || p.c.KeyFile != "/cli/key.pem" {
		t.Errorf("an alias's variable overrode the command line: %v %+v", err, p)
	}
}

func TestPasswordFile(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret\r\nsecond line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\nx\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		env  map[string]string
	}{
		{[]string{"--etcd-password-file", pw}, nil},
		{nil, map[string]string{"FLANNELD_ETCD_PASSWORD_FILE": pw}},
	} {
		p, err := parse(t, c.args, c.env)
		if err != nil || p.c.Password != "s3cret" {
			t.Errorf("%q %v: %v %+v", c.args, c.env, err, p)
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--etcd-password-file", filepath.Join(dir, "missing")}, "--etcd-password-file: open"},
		{[]string{"--etcd-password-file", empty}, "the first line is empty"},
		{[]string{"--etcd-password-file", pw, "--etcd-password", "x"}, "both set"},
	} {
		if _, err := parse(t, c.args, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want %q", c.args, err, c.want)
		}
	}
}

func TestInvalidEnvironmentValue(t *testing.T) {
	var n int
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.IntVar(&n, "port", 0, "")
	err := ApplyEnv(fs, map[string]bool{}, func(k string) string { return map[string]string{"FLANNELD_PORT": "x"}[k] }, func(string) bool { return true })
	if err == nil || !strings.HasPrefix(err.Error(), "invalid value for FLANNELD_PORT: ") {
		t.Errorf("got %v", err)
	}
}

func TestIsFlag(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	Register(fs, Values{Client: &etcdsubnet.ClientConfig{}, Prefix: new(string), PasswordFile: new(string)})
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		if !IsFlag(f.Name) {
			t.Errorf("--%s is registered but IsFlag says no", f.Name)
		}
	})
	if n != len(names) {
		t.Errorf("%d flags registered, %d names", n, len(names))
	}
}
