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

// config is everything flanneld is told on its command line and in its
// FLANNELD_* environment.
type config struct {
	Etcd   etcdsubnet.ClientConfig
	Prefix string
	// EtcdAPI is the keyspace the leases live in: auto, v3, v2 or both
	// (our addition, for clusters of flannel v0.11; docs/migration.md).
	EtcdAPI string
	// EtcdPasswordFile holds the etcd password, so that it need not sit in
	// argv (visible in ps) or the environment.
	EtcdPasswordFile string

	Ifaces     []string
	IfaceRegex []string
	CanReach   string
	PublicIP   string
	PublicIPv6 string

	SubnetFile      string
	RenewMargin     int // minutes
	LeaseTTL        time.Duration
	ReconcilePeriod time.Duration

	IPMasq              bool
	FullyRandomDisable  bool
	IPTablesResync      int // seconds
	IPTablesForwardRule bool
	BlackholeRoute      bool

	HealthzIP   string
	HealthzPort int

	KubeSubnetMgr        bool
	KubeAPIURL           string
	KubeAnnotationPrefix string
	KubeconfigFile       string
	NetConfigPath        string
	SetNodeNetUnavail    bool

	Verbosity   int
	VModule     string
	BacktraceAt string

	Version bool
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// newFlagSet registers every upstream flag (and our additions) on a fresh
// FlagSet bound to c. No globals: tests build as many as they like.
func newFlagSet(c *config, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("flanneld", flag.ContinueOnError)
	fs.SetOutput(stderr)
	etcdflags.Register(fs, etcdflags.Values{Client: &c.Etcd, Prefix: &c.Prefix, PasswordFile: &c.EtcdPasswordFile})
	fs.StringVar(&c.EtcdAPI, "etcd-api", "auto", "etcd keyspace of the config and leases: auto (v3; the v2 store of flannel v0.11 when only it has the config), v3, v2 (as a v0.11 node), both (migration from v2 to v3)")
	fs.Var((*listFlag)(&c.Ifaces), "iface", "interface to use (IP or name) for inter-host communication. Can be specified multiple times to check each option in order. Returns the first match found.")
	fs.Var((*listFlag)(&c.IfaceRegex), "iface-regex", "regex expression to match the first interface to use (IP or name) for inter-host communication. Can be specified multiple times to check each regex in order. Returns the first match found. Regexes are checked after specific interfaces specified by the iface option have already been checked.")
	fs.StringVar(&c.CanReach, "iface-can-reach", "", "detect interface to use (IP or name) for inter-host communication based on which will be used for provided IP. This is exactly the interface to use of command 'ip route get <ip-address>'")
	fs.StringVar(&c.SubnetFile, "subnet-file", "/run/flannel/subnet.env", "filename where env variables (subnet, MTU, ... ) will be written to")
	fs.StringVar(&c.PublicIP, "public-ip", "", "IP accessible by other nodes for inter-host communication")
	fs.StringVar(&c.PublicIPv6, "public-ipv6", "", "IPv6 accessible by other nodes for inter-host communication")
	fs.IntVar(&c.RenewMargin, "subnet-lease-renew-margin", 60, "subnet lease renewal margin, in minutes, ranging from 1 to 1439")
	fs.DurationVar(&c.LeaseTTL, "subnet-lease-ttl", 24*time.Hour, "TTL of the subnet lease in etcd (upstream fixes it at 24h)")
	fs.DurationVar(&c.ReconcilePeriod, "reconcile-period", time.Minute, "period of the full data-plane pass (kernel dump and diff); lease changes and kernel notifications trigger passes in between")
	fs.BoolVar(&c.IPMasq, "ip-masq", false, "setup IP masquerade rule for traffic destined outside of overlay network")
	fs.BoolVar(&c.FullyRandomDisable, "ip-masq-fully-random-disable", false, "disable fully-random mode for MASQUERADE")
	fs.BoolVar(&c.KubeSubnetMgr, "kube-subnet-mgr", false, "contact the Kubernetes API for subnet assignment instead of etcd")
	fs.StringVar(&c.KubeAPIURL, "kube-api-url", "", "Kubernetes API server URL (kube mode only)")
	fs.StringVar(&c.KubeAnnotationPrefix, "kube-annotation-prefix", "flannel.alpha.coreos.com", "Kubernetes annotation prefix (kube mode only)")
	fs.StringVar(&c.KubeconfigFile, "kubeconfig-file", "", "kubeconfig file location (kube mode only)")
	fs.BoolVar(&c.Version, "version", false, "print version and exit")
	fs.StringVar(&c.HealthzIP, "healthz-ip", "0.0.0.0", "the IP address for healthz server to listen")
	fs.IntVar(&c.HealthzPort, "healthz-port", 0, "the port for healthz server to listen(0 to disable)")
	fs.IntVar(&c.IPTablesResync, "iptables-resync", 5, "resync period for iptables rules, in seconds")
	fs.BoolVar(&c.IPTablesForwardRule, "iptables-forward-rules", true, "add default accept rules to FORWARD chain in iptables")
	fs.BoolVar(&c.BlackholeRoute, "ip-blackhole-route", false, "add blackhole route on the node for the local pod subnet")
	fs.StringVar(&c.NetConfigPath, "net-config-path", "/etc/kube-flannel/net-conf.json", "path to the network configuration file (kube mode only)")
	fs.BoolVar(&c.SetNodeNetUnavail, "set-node-network-unavailable", true, "set NodeNetworkUnavailable after ready (kube mode only)")
	fs.IntVar(&c.Verbosity, "v", 0, "number for the log level verbosity (4 and above: debug)")
	fs.StringVar(&c.VModule, "vmodule", "", "accepted for compatibility; ignored")
	fs.StringVar(&c.BacktraceAt, "log_backtrace_at", "", "accepted for compatibility; ignored")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: %s [OPTION]...\n", "flanneld")
		fs.PrintDefaults()
	}
	return fs
}

// errHelp is returned for -h/--help: usage printed, exit 0.
var errHelp = flag.ErrHelp

// parseConfig parses args, then fills every flag not given on the command
// line from FLANNELD_<FLAG> (upper case, '-' as '_'; etcdflags.ApplyEnv).
// The command line wins; a repeatable flag takes one value from its variable.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := newFlagSet(c, stderr)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.Version {
		return c, nil
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if err := etcdflags.ApplyEnv(fs, set, getenv, func(name string) bool { return name != "version" }); err != nil {
		fmt.Fprintln(stderr, err)
		return nil, err
	}
	etcdflags.SetDefaults(&c.Etcd)
	if err := c.validate(); err != nil {
		fmt.Fprintln(stderr, err)
		return nil, err
	}
	if err := etcdflags.ReadPasswordFile(&c.Etcd, c.EtcdPasswordFile); err != nil {
		fmt.Fprintln(stderr, err)
		return nil, err
	}
	return c, nil
}

func (c *config) validate() error {
	switch c.EtcdAPI {
	case "auto", "v3", "v2", "both":
	default:
		return fmt.Errorf("invalid --etcd-api %q: must be auto, v3, v2 or both", c.EtcdAPI)
	}
	if c.RenewMargin <= 0 || c.RenewMargin >= 1440 {
		return errors.New("Invalid subnet-lease-renew-margin option, out of acceptable range (1 to 1439 minutes)")
	}
	if c.LeaseTTL < 10*time.Second {
		return fmt.Errorf("invalid --subnet-lease-ttl %s: must be at least 10s", c.LeaseTTL)
	}
	if c.ReconcilePeriod < 100*time.Millisecond {
		return fmt.Errorf("invalid --reconcile-period %s: must be at least 100ms", c.ReconcilePeriod)
	}
	if c.IPTablesResync <= 0 {
		return fmt.Errorf("invalid --iptables-resync %d: must be a positive number of seconds", c.IPTablesResync)
	}
	if c.HealthzPort < 0 || c.HealthzPort > 65535 {
		return fmt.Errorf("invalid --healthz-port %d", c.HealthzPort)
	}
	if c.PublicIP != "" {
		if a, err := netip.ParseAddr(c.PublicIP); err != nil || !a.Is4() {
			return fmt.Errorf("invalid public IP address: %s", c.PublicIP)
		}
	}
	if c.PublicIPv6 != "" {
		if a, err := netip.ParseAddr(c.PublicIPv6); err != nil || !a.Is6() {
			return fmt.Errorf("invalid public IPv6 address: %s", c.PublicIPv6)
		}
	}
	return nil
}

// exitCode maps parse errors to exit codes: 0 for --help, 2 otherwise.
func exitCode(err error) int {
	if errors.Is(err, errHelp) {
		return 0
	}
	return 2
}
