//go:build linux

// Command bench measures flanneld in the namespace lab and prints its
// figures next to upstream flannel's (see docs/benchmarks.md):
//
//	make bench                                   # LAB_BIN_DIR=bin go run ./bench
//	go run ./bench --ks 5000 --backends vxlan --runs 2 --idle 0 --throughput 0 --kube 0
//	go run ./bench --ks "" --idle 0 --throughput 0 --runs 3  # only kube mode
//
// It needs root; everything it creates lives in lab namespaces fl<random>-*
// and is removed at the end.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/flannelng/flannel/bench/suite"
	"github.com/flannelng/flannel/pkg/lab"
	"golang.org/x/sys/unix"
)

type options struct {
	binDir     string
	backends   []string
	ks         []int
	burst      int
	changes    int
	runs       int
	idle       time.Duration
	idleK      int
	throughput time.Duration
	kube       int
	kubeUpd    int
	kubeRate   float64
	dir        string
	profileDir string
	daemonEnv  []string
	verbose    bool
	fleet      fleetOptions
}

func main() {
	o, err := parseFlags(os.Args[1:], os.Getenv, os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	defBin := getenv(lab.BinDirEnv)
	if defBin == "" {
		defBin = "bin"
	}
	var backends, ks string
	var k20000 bool
	fs.StringVar(&o.binDir, "bin", defBin, "directory holding flanneld, flannel (CNI plugin) and lab-etcd (default $"+lab.BinDirEnv+", else bin)")
	fs.StringVar(&backends, "backends", "vxlan,host-gw", "backends to measure, comma-separated")
	fs.StringVar(&ks, "ks", "100,1000,5000", "peer counts K, comma-separated (empty: no scale runs)")
	fs.BoolVar(&k20000, "k20000", false, "also run K=20000")
	fs.IntVar(&o.burst, "burst", 100, "leases added, then deleted, in one etcd transaction each")
	fs.IntVar(&o.changes, "changes", 1000, "single lease changes timed for the latency percentiles")
	fs.IntVar(&o.runs, "runs", 1, "runs of each case (scale, idle, throughput); the summary and the targets use the best, with the spread")
	fs.DurationVar(&o.idle, "idle", 30*time.Second, "idle window for the process and CPU counts (0: skip)")
	fs.IntVar(&o.idleK, "idle-k", 1000, "peers of the idle daemon")
	fs.DurationVar(&o.throughput, "throughput", 5*time.Second, "iperf3 duration per path (0: skip)")
	fs.IntVar(&o.kube, "kube", 5000, "Nodes of the kube-mode case (0: skip); needs kube-apiserver (make kube-bins)")
	fs.IntVar(&o.kubeUpd, "kube-updates", 10000, "irrelevant Node updates of the kube-mode case")
	fs.Float64Var(&o.kubeRate, "kube-rate", 500, "updates per second of the kube-mode case (0: as fast as the API server takes them)")
	fs.StringVar(&o.dir, "dir", "", "keep each lab's logs under this directory (default: temporary, removed)")
	fs.StringVar(&o.profileDir, "profile", "", "write a CPU profile of each scale run's and the idle run's flanneld into this directory (FLANNELD_CPUPROFILE)")
	fs.Func("daemon-env", "KEY=value added to the scale and idle runs' flanneld environment, e.g. GOMEMLIMIT=24MiB (repeatable)", func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return fmt.Errorf("want KEY=value, got %q", v)
		}
		o.daemonEnv = append(o.daemonEnv, v)
		return nil
	})
	fs.BoolVar(&o.verbose, "v", false, "log progress to stderr")
	o.fleet.register(fs)
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		err := fmt.Errorf("unexpected argument %q", fs.Arg(0))
		fmt.Fprintln(stderr, "bench:", err)
		return o, err
	}
	fail := func(format string, a ...any) (options, error) {
		err := fmt.Errorf(format, a...)
		fmt.Fprintln(stderr, "bench:", err)
		return o, err
	}
	for _, b := range strings.Split(backends, ",") {
		b = strings.TrimSpace(b)
		if b == "" {
			continue
		}
		if b != suite.VXLAN && b != suite.HostGW {
			return fail("--backends: unknown backend %q (want vxlan, host-gw)", b)
		}
		o.backends = append(o.backends, b)
	}
	for _, s := range strings.Split(ks, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		k, err := strconv.Atoi(s)
		if err != nil || k < 1 {
			return fail("--ks: %q is not a positive peer count", s)
		}
		o.ks = append(o.ks, k)
	}
	if k20000 {
		o.ks = append(o.ks, 20000)
	}
	switch {
	case o.burst < 0:
		return fail("--burst %d: must not be negative", o.burst)
	case o.changes < 0:
		return fail("--changes %d: must not be negative", o.changes)
	case o.runs < 1:
		return fail("--runs %d: want at least 1", o.runs)
	case o.idle < 0 || o.throughput < 0:
		return fail("--idle and --throughput must not be negative")
	case o.idle > 0 && o.idleK < 0:
		return fail("--idle-k %d: must not be negative", o.idleK)
	case o.throughput > 0 && o.throughput < time.Second:
		return fail("--throughput %s: want at least 1s", o.throughput)
	case o.kube < 0 || o.kube > suite.MaxPeers:
		return fail("--kube %d: want 0 to %d", o.kube, suite.MaxPeers)
	case o.kubeUpd < 0:
		return fail("--kube-updates %d: must not be negative", o.kubeUpd)
	case o.kubeRate < 0:
		return fail("--kube-rate %g: must not be negative", o.kubeRate)
	}
	if err := o.fleet.check(); err != nil {
		return fail("%v", err)
	}
	for _, k := range o.ks {
		if n := k + o.burst + o.changes; n > suite.MaxPeers {
			return fail("K=%d with --burst %d and --changes %d needs %d fake peers; the lab's underlay holds %d", k, o.burst, o.changes, n, suite.MaxPeers)
		}
	}
	return o, nil
}

func run(ctx context.Context, o options, out, errw io.Writer) error {
	if os.Geteuid() != 0 {
		return errors.New("the benchmark builds network namespaces: run it as root")
	}
	abs, err := filepath.Abs(o.binDir)
	if err != nil {
		return err
	}
	bin := lab.Binaries{Flanneld: filepath.Join(abs, "flanneld"), LabEtcd: filepath.Join(abs, "lab-etcd"), CNIPlugin: filepath.Join(abs, "flannel")}
	for _, p := range []string{bin.Flanneld, bin.LabEtcd, bin.CNIPlugin} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%w (run `make build`, or give --bin)", err)
		}
	}
	if o.profileDir != "" {
		if o.profileDir, err = filepath.Abs(o.profileDir); err != nil {
			return err
		}
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return err
		}
	}
	// The kube case also needs kube-apiserver: from --bin, else where the
	// lab looks ($LAB_BIN_DIR, else bin/ at the module root).
	kubeBin := bin
	var kubeErr error
	if o.kube > 0 {
		kubeBin.KubeAPIServer = filepath.Join(abs, "kube-apiserver")
		if _, err := os.Stat(kubeBin.KubeAPIServer); err != nil {
			kubeBin.KubeAPIServer, _, kubeErr = lab.FindKubeBinaries()
		}
	}
	logf := func(string, ...any) {}
	if o.verbose {
		logf = func(format string, a ...any) {
			fmt.Fprintf(errw, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, a...)...)
		}
	}
	fmt.Fprintln(out, "machine:", machine())

	var failed []string
	// withLab runs fn in a fresh lab of n hosts and always removes it.
	withLab := func(name string, n int, bin lab.Binaries, fn func(*lab.Lab) error) {
		if ctx.Err() != nil {
			return
		}
		lo := lab.Options{Hosts: n, Binaries: bin, Logf: func(string, ...any) {}}
		if o.dir != "" {
			lo.Dir = filepath.Join(o.dir, name)
		}
		lctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		l, err := lab.New(lctx, lo)
		cancel()
		if err == nil {
			err = fn(l)
			if cerr := l.Close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
		}
		if err != nil {
			fmt.Fprintf(out, "%s: FAILED: %v\n", name, err)
			failed = append(failed, name)
		}
	}

	var results []suite.ScaleResult
	if len(o.ks) > 0 && len(o.backends) > 0 {
		fmt.Fprintln(out, suite.Header())
	}
	for run := 1; run <= o.runs; run++ {
		for _, b := range o.backends {
			for _, k := range o.ks {
				name := fmt.Sprintf("%s-%d-run%d", b, k, run)
				so := suite.ScaleOptions{Backend: b, K: k, Burst: o.burst, Changes: o.changes, Logf: logf,
					DaemonEnv: append([]string(nil), o.daemonEnv...)}
				if o.profileDir != "" {
					so.DaemonEnv = append(so.DaemonEnv, "FLANNELD_CPUPROFILE="+filepath.Join(o.profileDir, name+".pprof"))
				}
				withLab(name, 1, bin, func(l *lab.Lab) error {
					r, err := suite.Scale(ctx, l, so)
					if err == nil {
						results = append(results, r)
						fmt.Fprintln(out, r.Line())
					}
					return err
				})
			}
		}
	}
	sums := suite.Summarize(results)
	if o.runs > 1 {
		fmt.Fprintln(out)
		for _, s := range sums {
			fmt.Fprintln(out, s.Line())
		}
	}

	var idles []suite.IdleResult
	for run := 1; o.idle > 0 && run <= o.runs; run++ {
		withLab(fmt.Sprintf("idle-run%d", run), 1, bin, func(l *lab.Lab) error {
			io := suite.IdleOptions{K: o.idleK, Window: o.idle, Logf: logf, DaemonEnv: append([]string(nil), o.daemonEnv...)}
			if o.profileDir != "" {
				io.DaemonEnv = append(io.DaemonEnv, "FLANNELD_CPUPROFILE="+filepath.Join(o.profileDir, fmt.Sprintf("idle-run%d.pprof", run)))
			}
			r, err := suite.Idle(ctx, l, io)
			if err == nil {
				idles = append(idles, r)
				fmt.Fprintln(out, r.Line())
			}
			return err
		})
	}
	var tps []suite.ThroughputResult
	for run := 1; o.throughput > 0 && run <= o.runs; run++ {
		withLab(fmt.Sprintf("throughput-run%d", run), 2, bin, func(l *lab.Lab) error {
			r, err := suite.Throughput(ctx, l, suite.ThroughputOptions{Backend: suite.VXLAN, Duration: o.throughput, Rounds: 2, Logf: logf})
			if err == nil {
				tps = append(tps, r)
				fmt.Fprintln(out, r.Line())
			}
			return err
		})
	}

	// The wireguard backend pod to pod against vxlan (issue 16).
	for run := 1; o.throughput > 0 && run <= o.runs; run++ {
		withLab(fmt.Sprintf("wireguard-run%d", run), 4, bin, func(l *lab.Lab) error {
			r, err := suite.Wireguard(ctx, l, suite.WireguardOptions{Duration: o.throughput, Rounds: 2, Logf: logf})
			if err == nil {
				fmt.Fprintln(out, r.Line())
			}
			return err
		})
	}

	var kubes []suite.KubeResult
	if o.kube > 0 && kubeErr != nil {
		fmt.Fprintf(out, "kube: FAILED: %v\n", kubeErr)
		failed = append(failed, "kube")
	}
	for run := 1; o.kube > 0 && kubeErr == nil && run <= o.runs; run++ {
		name := fmt.Sprintf("kube-%d-run%d", o.kube, run)
		ko := suite.KubeOptions{K: o.kube, Updates: o.kubeUpd, Rate: o.kubeRate, Logf: logf, DaemonEnv: append([]string(nil), o.daemonEnv...)}
		if o.profileDir != "" {
			ko.DaemonEnv = append(ko.DaemonEnv, "FLANNELD_CPUPROFILE="+filepath.Join(o.profileDir, name+".pprof"))
		}
		withLab(name, 1, kubeBin, func(l *lab.Lab) error {
			r, err := suite.Kube(ctx, l, ko)
			if err == nil {
				kubes = append(kubes, r)
				fmt.Fprintln(out, r.Line())
			}
			return err
		})
	}

	fleet, fleetFailed := runFleet(ctx, o.fleet, o.dir, o.profileDir, bin, out, logf)
	failed = append(failed, fleetFailed...)

	fmt.Fprintln(out, "\ntargets:")
	for _, t := range append(suite.Targets(sums, idles, tps, kubes), suite.FleetTargets(fleet)...) {
		fmt.Fprintf(out, "  %-13s %-62s %s\n", t.Status(), t.Name, t.Got)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("failed: %s", strings.Join(failed, ", "))
	}
	return nil
}

// machine describes the CPU count and model, memory and kernel.
func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := "?"
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		mem = fmt.Sprintf("%.1f GiB", float64(si.Totalram)*float64(si.Unit)/(1<<30))
	}
	var uts unix.Utsname
	kernel := "?"
	if unix.Uname(&uts) == nil {
		kernel = unix.ByteSliceToString(uts.Release[:])
	}
	return fmt.Sprintf("%d CPUs (%s), %s memory, kernel %s", numCPU(), model, mem, kernel)
}

func numCPU() int {
	var set unix.CPUSet
	if unix.SchedGetaffinity(0, &set) == nil {
		return set.Count()
	}
	return 0
}
