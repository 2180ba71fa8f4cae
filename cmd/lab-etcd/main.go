// Command lab-etcd is a small single-binary etcd server for the namespace test
// lab (pkg/lab) and the demo. It embeds go.etcd.io/etcd/server/v3/embed so the
// tests need no etcd installed on the machine, starts fast (short raft ticks)
// and logs quietly. It prints "etcd ready" on stdout once the server serves
// clients, and shuts down cleanly on SIGTERM or SIGINT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// ReadyLine is what lab-etcd prints on stdout when it serves clients; pkg/lab
// waits for it.
const ReadyLine = "etcd ready"

// startTimeout bounds how long we wait for the server to become ready: a
// single member elects itself within a few election timeouts.
const startTimeout = 60 * time.Second

type options struct {
	name                string
	dataDir             string
	listenClientURLs    string
	advertiseClientURLs string
	listenPeerURLs      string
	advertisePeerURLs   string
	initialCluster      string
	initialClusterState string
	autoCompaction      string
	certFile            string
	keyFile             string
	trustedCAFile       string
	clientCertAuth      bool
	tickMs              uint
	electionMs          uint
	logLevel            string
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("lab-etcd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.name, "name", "default", "member name")
	fs.StringVar(&o.dataDir, "data-dir", "", "data directory (default: <name>.etcd in the working directory)")
	fs.StringVar(&o.listenClientURLs, "listen-client-urls", "http://127.0.0.1:2379", "comma-separated URLs to serve clients on")
	fs.StringVar(&o.advertiseClientURLs, "advertise-client-urls", "", "comma-separated client URLs to advertise (default: --listen-client-urls)")
	fs.StringVar(&o.listenPeerURLs, "listen-peer-urls", "http://127.0.0.1:2380", "comma-separated URLs to serve peers on")
	fs.StringVar(&o.advertisePeerURLs, "initial-advertise-peer-urls", "", "comma-separated peer URLs to advertise (default: --listen-peer-urls)")
	fs.StringVar(&o.initialCluster, "initial-cluster", "", "name=peerURL,... (default: this member alone)")
	fs.StringVar(&o.initialClusterState, "initial-cluster-state", "new", "new or existing")
	fs.StringVar(&o.autoCompaction, "auto-compaction-retention", "", "periodic auto-compaction retention, e.g. 1h or 5m (default: off)")
	fs.StringVar(&o.certFile, "cert-file", "", "client server TLS certificate")
	fs.StringVar(&o.keyFile, "key-file", "", "client server TLS key")
	fs.StringVar(&o.trustedCAFile, "trusted-ca-file", "", "CA that client certificates must chain to")
	fs.BoolVar(&o.clientCertAuth, "client-cert-auth", false, "require client certificates")
	fs.UintVar(&o.tickMs, "heartbeat-interval", 50, "raft heartbeat in ms (etcd's default is 100)")
	fs.UintVar(&o.electionMs, "election-timeout", 500, "raft election timeout in ms (etcd's default is 1000)")
	fs.StringVar(&o.logLevel, "log-level", "warn", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		err := fmt.Errorf("unexpected argument %q", fs.Arg(0))
		fmt.Fprintln(fs.Output(), err)
		return nil, err
	}
	return o, nil
}

// config turns the flags into an embed.Config and validates what etcd would
// otherwise reject with a less helpful message.
func (o *options) config() (*embed.Config, error) {
	cfg := embed.NewConfig()
	cfg.Name = o.name
	cfg.Dir = o.dataDir
	if cfg.Dir == "" {
		cfg.Dir = o.name + ".etcd"
	}
	var err error
	if cfg.ListenClientUrls, err = parseURLs("--listen-client-urls", o.listenClientURLs); err != nil {
		return nil, err
	}
	cfg.AdvertiseClientUrls = cfg.ListenClientUrls
	if o.advertiseClientURLs != "" {
		if cfg.AdvertiseClientUrls, err = parseURLs("--advertise-client-urls", o.advertiseClientURLs); err != nil {
			return nil, err
		}
	}
	if cfg.ListenPeerUrls, err = parseURLs("--listen-peer-urls", o.listenPeerURLs); err != nil {
		return nil, err
	}
	cfg.AdvertisePeerUrls = cfg.ListenPeerUrls
	if o.advertisePeerURLs != "" {
		if cfg.AdvertisePeerUrls, err = parseURLs("--initial-advertise-peer-urls", o.advertisePeerURLs); err != nil {
			return nil, err
		}
	}
	for _, u := range cfg.AdvertiseClientUrls {
		if isUnspecifiedHost(u.Hostname()) {
			return nil, fmt.Errorf("--advertise-client-urls: %s is not an address clients can dial; set --advertise-client-urls", u.String())
		}
	}
	cfg.InitialCluster = o.initialCluster
	if cfg.InitialCluster == "" {
		cfg.InitialCluster = cfg.InitialClusterFromName(o.name)
	}
	switch o.initialClusterState {
	case embed.ClusterStateFlagNew, embed.ClusterStateFlagExisting:
		cfg.ClusterState = o.initialClusterState
	default:
		return nil, fmt.Errorf("--initial-cluster-state: %q is neither %q nor %q", o.initialClusterState, embed.ClusterStateFlagNew, embed.ClusterStateFlagExisting)
	}
	if o.autoCompaction != "" {
		if _, err := time.ParseDuration(o.autoCompaction); err != nil {
			return nil, fmt.Errorf("--auto-compaction-retention: %q is not a duration like 1h or 5m: %w", o.autoCompaction, err)
		}
		cfg.AutoCompactionMode = "periodic"
		cfg.AutoCompactionRetention = o.autoCompaction
	}
	if (o.certFile == "") != (o.keyFile == "") {
		return nil, errors.New("--cert-file and --key-file must be given together")
	}
	if o.clientCertAuth && o.trustedCAFile == "" {
		return nil, errors.New("--client-cert-auth needs --trusted-ca-file")
	}
	if o.certFile == "" && (o.clientCertAuth || o.trustedCAFile != "") {
		return nil, errors.New("--trusted-ca-file and --client-cert-auth need --cert-file and --key-file")
	}
	cfg.ClientTLSInfo.CertFile = o.certFile
	cfg.ClientTLSInfo.KeyFile = o.keyFile
	cfg.ClientTLSInfo.TrustedCAFile = o.trustedCAFile
	cfg.ClientTLSInfo.ClientCertAuth = o.clientCertAuth
	if o.tickMs == 0 || o.electionMs < 5*o.tickMs {
		return nil, fmt.Errorf("--election-timeout %d must be at least 5 times --heartbeat-interval %d (and that above 0)", o.electionMs, o.tickMs)
	}
	cfg.TickMs = o.tickMs
	cfg.ElectionMs = o.electionMs
	cfg.LogLevel = o.logLevel
	cfg.LogOutputs = []string{"stderr"}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("etcd config: %w", err)
	}
	return cfg, nil
}

func parseURLs(flagName, s string) ([]url.URL, error) {
	var out []url.URL
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		u, err := url.Parse(part)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", flagName, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "unix" && u.Scheme != "unixs" {
			return nil, fmt.Errorf("%s: %q needs a scheme http:// or https://", flagName, part)
		}
		if u.Host == "" {
			return nil, fmt.Errorf("%s: %q has no host:port", flagName, part)
		}
		out = append(out, *u)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no URL given", flagName)
	}
	return out, nil
}

func isUnspecifiedHost(h string) bool {
	return h == "0.0.0.0" || h == "::" || h == ""
}

func run(ctx context.Context, o *options, stdout io.Writer) error {
	cfg, err := o.config()
	if err != nil {
		return err
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("start etcd: %w", err)
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
		fmt.Fprintln(stdout, ReadyLine)
	case err := <-e.Err():
		return fmt.Errorf("etcd: %w", err)
	case <-time.After(startTimeout):
		return fmt.Errorf("etcd not ready after %s", startTimeout)
	case <-ctx.Done():
		return nil
	}
	select {
	case err := <-e.Err():
		return fmt.Errorf("etcd: %w", err)
	case <-e.Server.StopNotify():
		return errors.New("etcd server stopped")
	case <-ctx.Done():
		return nil
	}
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		// The flag package has printed the problem already.
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "lab-etcd:", err)
		stop()
		os.Exit(1)
	}
}
