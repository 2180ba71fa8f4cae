package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	etcdsubnet "github.com/flannelng/flannel/subnet/etcd"
	"github.com/flannelng/flannel/subnet/etcd/etcdflags"
)

// options are the flags every command takes: flanneld's etcd, subnet-file
// and address flags (so an operator can run flannelctl with the daemon's
// command line or EnvironmentFile) and our own.
type options struct {
	Etcd   etcdsubnet.ClientConfig
	Prefix string
	// EtcdPasswordFile is --etcd-password-file; finish reads it into Etcd.
	EtcdPasswordFile string
	SubnetFile       string
	PublicIP         string
	PublicIPv6       string
	Ifaces           []string
	Timeout          time.Duration
}

// ownEnvFlags are the flags besides the etcd ones (etcdflags) that, like
// flanneld's, fall back to FLANNELD_<NAME> when not given on the command
// line. flannelctl's own flags do not, so a daemon's EnvironmentFile cannot
// change what a command does.
var ownEnvFlags = map[string]bool{"subnet-file": true, "public-ip": true, "public-ipv6": true, "iface": true}

func envFlag(name string) bool { return ownEnvFlags[name] || etcdflags.IsFlag(name) }

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// addCommon registers the common flags on fs, bound to o.
func addCommon(fs *flag.FlagSet, o *options) {
	etcdflags.Register(fs, etcdflags.Values{Client: &o.Etcd, Prefix: &o.Prefix, PasswordFile: &o.EtcdPasswordFile})
	fs.StringVar(&o.SubnetFile, "subnet-file", "/run/flannel/subnet.env", "the subnet.env flanneld writes (doctor)")
	fs.StringVar(&o.PublicIP, "public-ip", "", "this node's public IPv4, to find its lease (doctor; default: a lease whose public IP is on this node)")
	fs.StringVar(&o.PublicIPv6, "public-ipv6", "", "this node's public IPv6, to find its lease (doctor)")
	fs.Var((*listFlag)(&o.Ifaces), "iface", "flanneld's --iface; an IP address given here identifies this node's lease like --public-ip (doctor)")
	fs.DurationVar(&o.Timeout, "timeout", 15*time.Second, "give up on etcd (or the Kubernetes API) after this long")
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseInterleaved parses flags that may come before, between and after
// positional arguments (`release 10.5.3.0/24 --force`); everything after
// "--" is positional.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var tail []string
	for i, a := range args {
		if a == "--" {
			args, tail = args[:i], args[i+1:]
			break
		}
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return append(pos, tail...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// applyEnv fills every env-backed flag not given on the command line from
// FLANNELD_<FLAG> (upper case, '-' as '_'), as flanneld does. An empty value
// is ignored.
func applyEnv(fs *flag.FlagSet, set map[string]bool, getenv func(string) string) error {
	return etcdflags.ApplyEnv(fs, set, getenv, envFlag)
}

// finish fills defaults, reads --etcd-password-file and checks the common
// options.
func (o *options) finish() error {
	etcdflags.SetDefaults(&o.Etcd)
	if err := etcdflags.ReadPasswordFile(&o.Etcd, o.EtcdPasswordFile); err != nil {
		return err
	}
	if o.PublicIP != "" {
		if a, err := netip.ParseAddr(o.PublicIP); err != nil || !a.Is4() {
			return fmt.Errorf("invalid --public-ip %q: not an IPv4 address", o.PublicIP)
		}
	}
	if o.PublicIPv6 != "" {
		if a, err := netip.ParseAddr(o.PublicIPv6); err != nil || !a.Is6() {
			return fmt.Errorf("invalid --public-ipv6 %q: not an IPv6 address", o.PublicIPv6)
		}
	}
	if o.Timeout <= 0 {
		return fmt.Errorf("invalid --timeout %s: must be positive", o.Timeout)
	}
	return nil
}

// nodeIP is the address that identifies this node's lease for doctor:
// --public-ip, else --public-ipv6, else an IP given as --iface (flanneld
// advertises that interface address when --public-ip is not set).
func (o *options) nodeIP() netip.Addr {
	for _, s := range append([]string{o.PublicIP, o.PublicIPv6}, o.Ifaces...) {
		if a, err := netip.ParseAddr(s); err == nil {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}

// errUsage marks errors that exit 2 after the usage text.
var errUsage = errors.New("usage")

type usageError struct{ msg string }

func (e usageError) Error() string   { return e.msg }
func (e usageError) Is(t error) bool { return t == errUsage }
