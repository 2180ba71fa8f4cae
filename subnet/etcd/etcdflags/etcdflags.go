// Package etcdflags registers the etcd client flags that flanneld and
// flannelctl share, with their FLANNELD_* fallbacks, so that an operator
// can run flannelctl with the daemon's command line or EnvironmentFile and
// both read them the same way.
package etcdflags

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	etcdsubnet "github.com/flannelng/flannel/subnet/etcd"
)

// DefaultEndpoints are upstream's, used when --etcd-endpoints is not given.
var DefaultEndpoints = []string{"http://127.0.0.1:4001", "http://127.0.0.1:2379"}

// Values are where the etcd flags land.
type Values struct {
	Client *etcdsubnet.ClientConfig
	Prefix *string
	// PasswordFile is --etcd-password-file, read by ReadPasswordFile.
	PasswordFile *string
}

// aliases maps our -file spellings to upstream's names; giving one counts
// as giving both.
var aliases = map[string]string{"etcd-key-file": "etcd-keyfile", "etcd-cert-file": "etcd-certfile", "etcd-ca-file": "etcd-cafile"}

var names = map[string]bool{
	"etcd-endpoints": true, "etcd-prefix": true,
	"etcd-keyfile": true, "etcd-certfile": true, "etcd-cafile": true,
	"etcd-key-file": true, "etcd-cert-file": true, "etcd-ca-file": true,
	"etcd-username": true, "etcd-password": true, "etcd-password-file": true,
}

// IsFlag reports whether name is one of the flags Register registers.
func IsFlag(name string) bool { return names[name] }

// alias forwards to another string flag so both names set one field.
type alias struct{ p *string }

func (s alias) String() string {
	if s.p == nil {
		return ""
	}
	return *s.p
}
func (s alias) Set(v string) error { *s.p = v; return nil }

// Register registers the etcd flags on fs, bound to v.
func Register(fs *flag.FlagSet, v Values) {
	c := v.Client
	fs.Func("etcd-endpoints", `a comma-delimited list of etcd endpoints (default "`+strings.Join(DefaultEndpoints, ",")+`")`, func(s string) error {
		c.Endpoints = SplitEndpoints(s)
		return nil
	})
	fs.StringVar(v.Prefix, "etcd-prefix", "/coreos.com/network", "etcd prefix")
	fs.StringVar(&c.KeyFile, "etcd-keyfile", "", "SSL key file used to secure etcd communication")
	fs.StringVar(&c.CertFile, "etcd-certfile", "", "SSL certification file used to secure etcd communication")
	fs.StringVar(&c.CAFile, "etcd-cafile", "", "SSL Certificate Authority file used to secure etcd communication")
	fs.Var(alias{&c.KeyFile}, "etcd-key-file", "alias of -etcd-keyfile")
	fs.Var(alias{&c.CertFile}, "etcd-cert-file", "alias of -etcd-certfile")
	fs.Var(alias{&c.CAFile}, "etcd-ca-file", "alias of -etcd-cafile")
	fs.StringVar(&c.Username, "etcd-username", "", "username for BasicAuth to etcd")
	fs.StringVar(&c.Password, "etcd-password", "", "password for BasicAuth to etcd (never logged or printed)")
	fs.StringVar(v.PasswordFile, "etcd-password-file", "", "file holding the password for BasicAuth to etcd (one line; instead of --etcd-password, which shows in ps)")
}

// SplitEndpoints splits a comma-delimited endpoint list, dropping blanks.
func SplitEndpoints(s string) []string {
	var out []string
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// EnvVar is the variable a flag falls back to: FLANNELD_<NAME>, upper case,
// '-' as '_'.
func EnvVar(flagName string) string {
	return "FLANNELD_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// ApplyEnv fills every flag of fs that set does not hold (the flags given
// on the command line, see flag.FlagSet.Visit) and that want accepts from
// its EnvVar. An etcd alias given on the command line counts for its twin,
// and set is updated to say so. An empty variable is ignored. The command
// line wins; a repeatable flag takes one value from its variable.
func ApplyEnv(fs *flag.FlagSet, set map[string]bool, getenv func(string) string, want func(name string) bool) error {
	for alias, name := range aliases {
		if set[alias] || set[name] {
			set[alias], set[name] = true, true
		}
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || set[f.Name] || !want(f.Name) {
			return
		}
		env := EnvVar(f.Name)
		if v := getenv(env); v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("invalid value for %s: %w", env, e)
			}
		}
	})
	return err
}

// SetDefaults fills what the flags leave empty: the endpoints.
func SetDefaults(c *etcdsubnet.ClientConfig) {
	if len(c.Endpoints) == 0 {
		c.Endpoints = append([]string(nil), DefaultEndpoints...)
	}
}

// ReadPasswordFile sets c.Password from the --etcd-password-file path,
// when one is given: the file's first line, without its line ending. The
// file must not be empty, and the two ways of giving a password exclude
// each other, so a stale --etcd-password never wins silently.
func ReadPasswordFile(c *etcdsubnet.ClientConfig, path string) error {
	if path == "" {
		return nil
	}
	if c.Password != "" {
		return errors.New("--etcd-password and --etcd-password-file are both set; give one")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--etcd-password-file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSuffix(line, "\r")
	if line == "" {
		return fmt.Errorf("--etcd-password-file %s: the first line is empty", path)
	}
	c.Password = line
	return nil
}
