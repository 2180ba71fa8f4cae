//go:build linux

// Command flannel-lab brings a namespace lab (pkg/lab) up for people and the
// demo, leaves it running, and takes it down again:
//
//	flannel-lab up --hosts 3 --dir /tmp/lab [--flanneld bin/flanneld --pods 1]
//	flannel-lab status --dir /tmp/lab
//	flannel-lab down --dir /tmp/lab     (or: down --prefix fl3a9c2e)
//
// The lab's namespaces, addresses and PIDs are recorded in <dir>/lab.json.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/flannelng/flannel/pkg/lab"
	"github.com/flannelng/flannel/pkg/version"
)

const usage = `usage:
  flannel-lab --version
  flannel-lab up --dir DIR [--hosts N] [--ipv6] [--flanneld PATH [--pods N] ...]
  flannel-lab status --dir DIR
  flannel-lab down (--dir DIR | --prefix PREFIX)
Run "flannel-lab up -h" for the flags of up.
`

const defaultNetConfig = `{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}`

// errUsage marks a command-line mistake: exit code 2.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, errUsage), errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "flannel-lab:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "up":
		return up(ctx, args[1:], stdout, stderr)
	case "down":
		return down(args[1:], stdout, stderr)
	case "status":
		return status(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	case "--version", "-version":
		fmt.Fprintln(stdout, version.Get())
		return nil
	default:
		fmt.Fprintf(stderr, "unknown command %q\n%s", args[0], usage)
		return errUsage
	}
}

type upFlags struct {
	dir, prefix             string
	hosts, pods             int
	ipv6                    bool
	etcd, flanneld, cni     string
	netConfig, flanneldArgs string
	etcdPrefix              string
	subnetTimeout           time.Duration
}

func parseUp(args []string, stderr io.Writer) (*upFlags, error) {
	f := &upFlags{}
	fs := flag.NewFlagSet("flannel-lab up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.dir, "dir", "", "lab directory: logs, subnet files, etcd data and lab.json (required)")
	fs.StringVar(&f.prefix, "prefix", "", "namespace name prefix (default: fl + 6 random hex digits)")
	fs.IntVar(&f.hosts, "hosts", 2, "number of hosts")
	fs.BoolVar(&f.ipv6, "ipv6", false, "give hosts IPv6 underlay addresses too")
	fs.StringVar(&f.etcd, "etcd", "", "lab-etcd binary (default: next to flannel-lab, then $PATH)")
	fs.StringVar(&f.flanneld, "flanneld", "", "flanneld binary to start on every host (default: none)")
	fs.StringVar(&f.flanneldArgs, "flanneld-args", "", "extra flanneld arguments, separated by spaces")
	fs.StringVar(&f.netConfig, "net-config", defaultNetConfig, "network config written to <etcd-prefix>/config before flanneld starts")
	fs.StringVar(&f.etcdPrefix, "etcd-prefix", "/coreos.com/network", "etcd prefix of the network config")
	fs.IntVar(&f.pods, "pods", 0, "pods per host, added once flanneld wrote subnet.env (needs --flanneld)")
	fs.StringVar(&f.cni, "cni-plugin", "", "flannel CNI plugin binary to wire pods with (default: wire them by hand)")
	fs.DurationVar(&f.subnetTimeout, "subnet-timeout", 30*time.Second, "how long to wait for flanneld to write subnet.env")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	var problem string
	switch {
	case fs.NArg() > 0:
		problem = fmt.Sprintf("unexpected argument %q", fs.Arg(0))
	case f.dir == "":
		problem = "--dir is required"
	case f.hosts < 1:
		problem = fmt.Sprintf("--hosts %d: need at least 1", f.hosts)
	case f.pods < 0:
		problem = fmt.Sprintf("--pods %d: must not be negative", f.pods)
	case f.pods > 0 && f.flanneld == "":
		problem = "--pods needs --flanneld: pods are wired from the subnet.env flanneld writes"
	}
	if problem != "" {
		fmt.Fprintln(stderr, "flannel-lab up:", problem)
		return nil, errUsage
	}
	return f, nil
}

func up(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseUp(args, stderr)
	if err != nil {
		return err
	}
	if s, err := lab.ReadState(f.dir); err == nil {
		if names, _ := lab.ListNS(s.Prefix); len(names) > 0 {
			return fmt.Errorf("a lab (%s) is up in %s; run flannel-lab down --dir %s first", s.Prefix, f.dir, f.dir)
		}
	}
	bins := lab.Binaries{CNIPlugin: absPath(f.cni), Flanneld: absPath(f.flanneld)}
	if bins.LabEtcd, err = findProgram(f.etcd, "lab-etcd"); err != nil {
		return err
	}
	for _, p := range []string{bins.Flanneld, bins.CNIPlugin} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			return err
		}
	}
	l, err := lab.New(ctx, lab.Options{
		Hosts:    f.hosts,
		IPv6:     f.ipv6,
		Dir:      f.dir,
		Prefix:   f.prefix,
		Binaries: bins,
		Detached: true,
		Logf:     func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) },
	})
	if err != nil {
		return err
	}
	if err := bringUp(ctx, l, f); err != nil {
		if cerr := l.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return err
	}
	printLab(stdout, l.State())
	fmt.Fprintf(stdout, "\ntake it down: flannel-lab down --dir %s\n", f.dir)
	return nil
}

func bringUp(ctx context.Context, l *lab.Lab, f *upFlags) error {
	if err := l.StartEtcd(ctx); err != nil {
		return err
	}
	c, err := l.Etcd(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	putCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	key := strings.TrimSuffix(f.etcdPrefix, "/") + "/config"
	if _, err := c.Put(putCtx, key, f.netConfig); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	if f.flanneld == "" {
		return nil
	}
	extra := strings.Fields(f.flanneldArgs)
	if f.etcdPrefix != "/coreos.com/network" {
		extra = append([]string{"--etcd-prefix=" + f.etcdPrefix}, extra...)
	}
	for _, h := range l.Hosts() {
		if _, err := l.StartFlanneld(h, extra...); err != nil {
			return err
		}
	}
	for _, h := range l.Hosts() {
		err := l.WaitFor(ctx, f.subnetTimeout, h.Name+": flanneld writes "+h.SubnetFile(), func() error {
			_, err := lab.ReadSubnetEnv(h.SubnetFile())
			return err
		})
		if err != nil {
			return fmt.Errorf("%w (log: %s)", err, filepath.Join(h.Dir, "flanneld.log"))
		}
		for i := 1; i <= f.pods; i++ {
			if _, err := l.AddPod(ctx, h, "p"+strconv.Itoa(i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func down(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("flannel-lab down", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "lab directory holding lab.json")
	prefix := fs.String("prefix", "", "delete the namespaces with this prefix instead (for a lab without lab.json)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*dir == "") == (*prefix == "") || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "flannel-lab down: give exactly one of --dir and --prefix")
		return errUsage
	}
	if *dir != "" {
		l, err := lab.Load(*dir)
		if err != nil {
			return err
		}
		if err := l.Close(); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "lab %s is down; %s is kept\n", l.Prefix(), *dir)
		return nil
	}
	return downPrefix(*prefix, stdout)
}

// downPrefix removes a lab nobody recorded (a test binary that was killed
// before its cleanup): processes still inside its namespaces are killed by
// PID, then the namespaces are deleted.
func downPrefix(prefix string, stdout io.Writer) error {
	names, err := lab.ListNS(prefix)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		fmt.Fprintf(stdout, "no namespace starts with %s-\n", prefix)
		return nil
	}
	var errs []error
	for _, n := range names {
		out, err := exec.Command("ip", "netns", "pids", n).Output()
		if err != nil {
			errs = append(errs, fmt.Errorf("ip netns pids %s: %w", n, err))
			continue
		}
		for _, f := range strings.Fields(string(out)) {
			pid, err := strconv.Atoi(f)
			if err != nil || pid <= 1 {
				continue
			}
			fmt.Fprintf(stdout, "kill pid %d in %s\n", pid, n)
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("kill %d: %w", pid, err))
			}
		}
	}
	for _, n := range names {
		if out, err := exec.Command("ip", "netns", "delete", n).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip netns delete %s: %w: %s", n, err, strings.TrimSpace(string(out))))
			continue
		}
		fmt.Fprintf(stdout, "deleted netns %s\n", n)
	}
	return errors.Join(errs...)
}

func status(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("flannel-lab status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "lab directory holding lab.json (required)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "flannel-lab status: --dir is required")
		return errUsage
	}
	l, err := lab.Load(*dir)
	if err != nil {
		return err
	}
	printLab(stdout, l.State())
	existing, err := lab.ListNS(l.Prefix())
	if err != nil {
		return err
	}
	present := map[string]bool{}
	for _, n := range existing {
		present[n] = true
	}
	w := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "\nNODE\tNETNS\tSUBNET")
	for _, h := range l.State().Hosts {
		state := "missing"
		if present[h.NS] {
			state = "present"
		}
		subnet := "-"
		if env, err := lab.ReadSubnetEnv(filepath.Join(h.Dir, "subnet.env")); err == nil {
			var parts []string
			for _, p := range []netip.Prefix{env.Subnet, env.Subnet6} {
				if p.IsValid() {
					parts = append(parts, p.String())
				}
			}
			subnet = strings.Join(parts, " ")
		}
		fmt.Fprintf(w, "%s\t%s\t%s\n", h.Name, state, subnet)
	}
	fmt.Fprintln(w, "\nPID\tSTATE\tNETNS\tCOMMAND")
	for _, p := range l.Processes() {
		state := "running"
		if p.Exited() {
			state = "exited"
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\n", p.Pid, state, p.NS, strings.Join(p.Argv, " "))
	}
	return w.Flush()
}

func printLab(w io.Writer, s lab.State) {
	fmt.Fprintf(w, "lab %s in %s\n", s.Prefix, s.Dir)
	fmt.Fprintf(w, "etcd %s (netns %s, log %s)\n", s.EtcdEndpoint, s.FabricNS, filepath.Join(s.Dir, "etcd.log"))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nNAME\tADDRESS\tSHELL")
	for _, h := range s.Hosts {
		fmt.Fprintf(tw, "%s\t%s\tip netns exec %s bash\n", h.Name, addrs(h.IP, h.IPv6), h.NS)
	}
	for _, p := range s.Pods {
		fmt.Fprintf(tw, "%s/%s\t%s\tip netns exec %s bash\n", p.Host, p.Name, addrs(p.IP, p.IPv6), p.NS)
	}
	tw.Flush()
}

// addrs joins the valid ones of as.
func addrs(as ...netip.Addr) string {
	var out []string
	for _, a := range as {
		if a.IsValid() {
			out = append(out, a.String())
		}
	}
	return strings.Join(out, " ")
}

func absPath(p string) string {
	if p == "" {
		return ""
	}
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

// findProgram returns flag if set, else name next to this executable, else
// name in $PATH.
func findProgram(flagValue, name string) (string, error) {
	if flagValue != "" {
		p := absPath(flagValue)
		if _, err := os.Stat(p); err != nil {
			return "", err
		}
		return p, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found next to flannel-lab or in $PATH; build it (go build -o bin/ ./cmd/%s) or pass its path", name, name)
	}
	return absPath(p), nil
}
